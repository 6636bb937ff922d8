"""The truth dictionary of :func:`socialgradient.data.synthetic.records.simulate_records`.

Kept apart from the generator so that both stay short; every key is defined in
:data:`~socialgradient.data.synthetic.truth_definitions.DEFINITIONS` (also in
``data/README.md``, section "Child-level records").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from socialgradient.data import records as r
from socialgradient.data.deprivation import UNIT, Decomposition
from socialgradient.data.synthetic import england, pseudo_true
from socialgradient.data.synthetic.truth_definitions import DEFINITIONS


def _threshold(
    t: str, effects: dict[str, Any], dec: Decomposition, clipped: dict[str, float], var: dict
) -> dict[str, Any]:
    p = england.PARAMETERS[t]
    b_w, b_x = math.log(p["gradient"]), england.B_X
    a_la, b_la = effects[t]
    return {
        "a": p["a"] + r.SHIFTS[t],
        "a_study": p["a"],
        "b_w": b_w,
        "b_b": p["b_b"],
        "b_x": b_x,
        "sigma_a": p["sigma_a"],
        "sigma_b": p["sigma_b"],
        "rho": p["rho"],
        "phi": p["phi"],
        "phi_effective": 1 / var[t],
        "parent": r.PARENT.get(t),
        "clipped_share": clipped,
        "gradient_mean_la": p["gradient"],
        "gradient_less_deprived_la": math.exp(b_w - b_x),
        "gradient_more_deprived_la": math.exp(b_w + b_x),
        "between_la_gradient": math.exp(p["b_b"]),
        "contextual_effect": p["b_b"] - b_w,
        "la": {
            str(c): {
                "a_la": float(a_la[j]),
                "b_la": float(b_la[j]),
                "gradient": float(np.exp(b_la[j])),
                "m_c": float(dec.m_c[j]),
            }
            for j, c in enumerate(dec.la)
        },
    }


def _lsoa_level(expected: np.ndarray, geo: pd.DataFrame, dec: Decomposition) -> dict[str, float]:
    """Return the gradient implied for LSOA totals.

    Per LA, the weighted least squares of log(E/n) on w (weights E), then OLS of the LA slopes
    on m_c.
    """
    n = geo["children"].to_numpy(float) * 18 / 16
    y, w, la = np.log(expected / n), dec.w, dec.la_index

    def s(v):
        return np.bincount(la, weights=expected * v, minlength=len(dec.la))

    sw, sx, sy = s(1.0), s(w), s(y)
    with np.errstate(divide="ignore", invalid="ignore"):  # an LA of one LSOA or no events:
        slope = (s(w * y) - sx * sy / sw) / (s(w * w) - sx**2 / sw)  # no slope, left out
    ok = np.isfinite(slope)
    b_x, b_w = np.polyfit(dec.m_c[ok], slope[ok], 1)
    return {
        "b_w": float(b_w),
        "b_x": float(b_x),
        "gradient_mean_la": float(np.exp(b_w)),
        "gradient_less_deprived_la": float(np.exp(b_w - b_x)),
        "gradient_more_deprived_la": float(np.exp(b_w + b_x)),
    }


FLAGS = {"rereferral": r.REREFERRAL, "repeat_cp": r.REPEAT_CP}


def la_outcome_coefficient(
    part: dict[str, Any],
    covariates: dict[str, dict[str, float]] | None = None,
    term: str = "b_la",
) -> float:
    """Return the realised coefficient of ``term`` (``b_la``, ``m_c`` or a covariate).

    The coefficient in the least squares over LAs of ``expected_logit`` on 1, ``b_la``,
    ``m_c`` and ``covariates`` (``{name: {la code: value}}``), over the LAs with children at
    risk: what the la_outcome model (:mod:`socialgradient.model.la_outcome`) estimates.
    ``part`` is ``truth["la_outcomes"][flag]``.
    """
    covariates = covariates or {}
    codes = sorted(c for c, v in part["la"].items() if v["at_risk"] > 0)
    las = part["la"]
    x = np.column_stack(
        [
            np.ones(len(codes)),
            [las[c]["b_la"] for c in codes],
            [las[c]["m_c"] for c in codes],
            *[[values[c] for c in codes] for values in covariates.values()],
        ]
    )
    y = np.array([las[c]["expected_logit"] for c in codes])
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    return float(beta[["intercept", "b_la", "m_c", *covariates].index(term)])


def _la_outcomes(
    effects: dict[str, Any], dec: Decomposition, parts: list[dict[str, Any]]
) -> dict[str, Any]:
    """Per flag: c_g, the LAs' departures and true mean probabilities, the realised k_g."""
    b_la = effects["referrals"][1]
    out: dict[str, Any] = {
        "statement": "logit p = logit(p0) + c_w w + c_x w m_c + c_g dev_l, dev_l = "
        "b_la[referrals] - (b_w + b_x m_c) of the child's LA; the la_outcome "
        "model regresses the LA totals' logit on the LA's log gradient, m_c "
        "and LA covariates"
    }
    for flag, par in FLAGS.items():
        p_sum = sum(part["expected_la"][flag][0] for part in parts)
        n = sum(part["expected_la"][flag][1] for part in parts)
        mean = np.divide(p_sum, n, out=np.full(len(n), np.nan), where=n > 0)
        las = {
            str(c): {
                "departure": float(effects["referral_departure"][j]),
                "b_la": float(b_la[j]),
                "m_c": float(dec.m_c[j]),
                "at_risk": int(n[j]),
                "expected_p": float(mean[j]) if n[j] else None,
                "expected_logit": float(np.log(mean[j] / (1 - mean[j]))) if n[j] else None,
            }
            for j, c in enumerate(dec.la)
        }
        part = {"c_g": par["c_g"], "la": las}
        out[flag] = part | {
            "realised_k_g": la_outcome_coefficient(part),
            "realised_k_m": la_outcome_coefficient(part, term="m_c"),
        }
    return out


def age_trend(offsets: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Return the records' age profile by single year and its line (truth ``age_trend``).

    ``offsets``: the centred age-band offsets (``alpha``, ``d`` per band). Every single year
    has its band's offsets; the line is the least-squares fit over the years 0-17, each
    weighted by its expected referrals (nominal share x exp(alpha)), which is what a
    log-linear trend fitted to LSOA x single-year counts targets: with the population's age
    mix the same in every LSOA, the Poisson score equations of the trend's main effect and
    slope are those of this weighted regression of alpha and d on age.
    """
    ages = np.array(r.AGES)
    band = r.band_of(ages)
    alpha = np.array([offsets["alpha"][b] for b in band])
    d = np.array([offsets["d"][b] for b in band])
    weight = np.exp(alpha) / np.exp(alpha).sum()  # nominal shares are equal (1/18 a year)
    centre = float(weight @ ages)

    def line(y):
        slope = float(weight @ ((ages - centre) * y) / (weight @ (ages - centre) ** 2))
        return slope, float(weight @ y) + slope * (ages - centre)

    slope, fitted = line(d)
    return {
        "ages": ages.tolist(),
        "band": band.tolist(),
        "alpha_by_age": alpha.tolist(),
        "d_by_age": d.tolist(),
        "weight_by_age": weight.tolist(),
        "slope": slope,
        "intercept_slope": line(alpha)[0],
        "max_departure": float(np.abs(d - fitted).max()),
        "gradient_ratio_0_to_17": math.exp(17 * slope),
    }


def build_truth(
    seed: int,
    scale: float,
    years: tuple[int, ...],
    synthetic_geo: bool,
    geo: pd.DataFrame,
    dec: Decomposition,
    effects: dict[str, Any],
    off: dict[str, dict[str, dict[str, float]]],
    parts: list[dict[str, Any]],
    population: pd.DataFrame,
    history: dict[str, Any],
    la_from_dfe: list[str],
) -> dict[str, Any]:
    """Return the records' truth: every true parameter, with its definition.

    Parameters
    ----------
    seed, scale, years
        As given to :func:`~socialgradient.data.synthetic.records.simulate_records`.
    synthetic_geo
        Whether the geography is the synthetic England (not a supplied one).
    geo, dec
        The LSOA table and its deprivation decomposition.
    effects
        The LA effects per threshold, the referral departures and the duration effects.
    off
        The centred stratum offsets (``alpha``, ``d``) per stratum dimension.
    parts
        Each year's draws (:func:`~socialgradient.data.synthetic.records_year._year`).
    population
        The child population by cell and year.
    history
        What linking the years' histories reported.
    la_from_dfe
        The LAs whose intercept follows the DfE referral rate.

    Returns
    -------
    dict
        The truth, keyed as in
        :data:`~socialgradient.data.synthetic.truth_definitions.DEFINITIONS`.
    """
    first = population[population["year"] == years[0]]
    total = float(first["children"].sum())
    strata = {}
    for dim, levels in off.items():
        share = first.groupby(dim, observed=True)["children"].sum() / total
        strata[dim] = {
            k: {
                "alpha": levels["alpha"][k],
                "d": levels["d"][k],
                "nominal_share": r.NOMINAL_SHARES[dim][k],
                "realised_share": float(share.get(k, 0)),
                "gradients": {
                    t: math.exp(math.log(england.PARAMETERS[t]["gradient"]) + levels["d"][k])
                    for t in r.THRESHOLDS
                },
            }
            for k in levels["alpha"]
        }
    area_d = {"rural": r.RURAL_SLOPE * (1 - r.RURAL_SHARE), "urban": -r.RURAL_SLOPE * r.RURAL_SHARE}
    area = {
        k: {
            "d": v,
            "gradients": {
                t: math.exp(math.log(england.PARAMETERS[t]["gradient"]) + v) for t in r.THRESHOLDS
            },
        }
        for k, v in area_d.items()
    }
    b_a = math.log(england.PARAMETERS["assessments"]["gradient"])
    # the first year's true expected counts per LSOA x category (factor): what a log-linear
    # fit to the LSOA table converges to (pseudo_true.pseudo_true_gradient)
    kids = first.groupby("lsoa", observed=False)["children"].sum().reindex(geo["lsoa"]).to_numpy()
    expected = parts[0]["expected"]

    def projected(parent: str, share: np.ndarray) -> list[float]:
        return [
            pseudo_true.pseudo_true_gradient(
                expected[parent] * share[:, k], kids, dec.w, dec.la_index, dec.m_c
            )["gradient"]
            for k in range(share.shape[1])
        ]

    f_pt = projected("assessments", r.factor_probabilities(dec.w, b_a))
    factors = {
        c: {
            "name": n,
            "c3_column": col,
            "share_w0": q,
            "delta": math.log(g) - b_a,
            "gradient": g,
            "gradient_pseudo_true": pt,
        }
        for (c, (n, col, q, g)), pt in zip(r.FACTORS.items(), f_pt, strict=True)
    }
    dbar = sum(q * d for _, q, d in r.CP_CATEGORIES.values())
    b_cp = math.log(england.PARAMETERS["cp_plans"]["gradient"])
    c_pt = projected("cp_plans", r.cp_category_shares(dec.w))
    cats = {
        c: {
            "name": n,
            "share_w0": q,
            "d": d,
            "d_effective": d - dbar,
            "gradient": math.exp(b_cp + d - dbar),
            "gradient_pseudo_true": pt,
        }
        for (c, (n, q, d)), pt in zip(r.CP_CATEGORIES.items(), c_pt, strict=True)
    }
    realised = {}
    for y, part in zip(years, parts, strict=True):
        e = part["episodes"]
        reached = e[["cin_plan_start", "cp_plan_start", "looked_after_start"]].notna()
        child = (
            reached.assign(assessment=e["assessment"].astype(bool))
            .groupby(e["child_id"].to_numpy())
            .max()
        )
        realised[str(y)] = {
            "children": len(part["children"]),
            "referrals": len(e),
            "assessments": int(child["assessment"].sum()),
            "cin_plans": int(child["cin_plan_start"].sum()),
            "cp_plans": int(child["cp_plan_start"].sum()),
            "looked_after": int(child["looked_after_start"].sum()),
            "cp_plan_starts": int(e["cp_plan_start"].notna().sum()),
            "factors": len(part["factors"]),
        }
    return {
        "seed": int(seed),
        "scale": float(scale),
        "years": list(years),
        "geography": "synthetic" if synthetic_geo else "supplied",
        "n_lsoa": len(geo),
        "n_la": len(dec.la),
        "x_bar": float(dec.x_bar),
        "unit": UNIT,
        "la_effect_shared": 1.0,
        "model": "log E[y_s,i] = log n_s,i + a_la + alpha_s + (b_la + d_s + d_area) * w_i; "
        "y NB2 by LSOA; later thresholds thinned from their parent",
        "definitions": DEFINITIONS,
        "thresholds": {
            t: _threshold(
                t,
                effects,
                dec,
                {str(y): p["clipped"].get(t, 0.0) for y, p in zip(years, parts, strict=True)},
                parts[0]["var"],
            )
            | {"lsoa_level": _lsoa_level(parts[0]["expected"][t], geo, dec)}
            for t in r.THRESHOLDS
        },
        "strata": strata,
        "age_trend": age_trend(off["age_band"]),
        "area": area,
        "factors": factors,
        "cp_categories": cats,
        "durations": {
            "la_sd": list(r.DURATION["la_sd"]),
            "la": {
                str(c): {
                    "u_a": float(effects["durations"][0][j]),
                    "u_b": float(effects["durations"][1][j]),
                }
                for j, c in enumerate(dec.la)
            },
            "pieces_days": list(r.PIECES),
            "base_rate": list(r.DURATION["base_rate"]),
            "level_log_hr": dict(r.DURATION["level_log_hr"]),
            "g_w": r.DURATION["g_w"],
            "g_b": r.DURATION["g_b"],
        },
        "rereferral": dict(r.REREFERRAL),
        "repeat_cp": dict(r.REPEAT_CP),
        "la_outcomes": _la_outcomes(effects, dec, parts),
        "ethnicity_mix": {k: v for k, v in r.ETHNICITY.items()},
        "age_bands": {k: list(v) for k, v in r.AGE_RANGE.items()},
        "realised": realised,
        "history": history,
        "la_intercepts_from_dfe": la_from_dfe,
        "level_shift": r.LEVEL_SHIFT,
        "cp_plan_shift": r.CP_PLAN_SHIFT,
        "dfe_referred_children_per_10k": r.DFE_REFERRED_CHILDREN_PER_10K,
        "study_referred_children_per_10k": r.STUDY_REFERRED_CHILDREN_PER_10K,
    }
