"""The truth dictionary of :func:`socialgradient.data.synthetic.records.simulate_records`.

Kept apart from the generator so that both stay short; every key is defined in
:data:`DEFINITIONS` (also in ``data/README.md``, section "Child-level records").
"""

from __future__ import annotations

import math

import numpy as np

from socialgradient.data import records as r
from socialgradient.data.deprivation import UNIT
from socialgradient.data.synthetic import england

DEFINITIONS = {
    "seed": "seed of simulate_records",
    "scale": "LSOAs-per-LA multiplier of the synthetic geography (ignored with a supplied one)",
    "years": "collection years: the year ending 31 March of each (drawn independently)",
    "geography": "'synthetic' (synthetic.simulate(seed, scale)) or 'supplied'",
    "n_lsoa": "LSOAs in the geography",
    "n_la": "local authorities in the geography",
    "x_bar": "child-weighted national mean of x = 10 * income (10-point units)",
    "unit": "percentage points of income deprivation per model unit of x",
    "la_effect_shared": "correlation of an LA's standardised (a_la, b_la) draws between "
    "thresholds (1: one draw per LA, which keeps thresholds nestable)",
    "definitions": "one-line definition of every key of this truth",
    "model": "the rate model for a child in stratum s of LSOA i in LA l (text)",
    "thresholds": "per threshold: synthetic.py's true parameters and realised LA effects",
    "a": "log rate per child per year at w = 0, m_c = 0, population-average stratum",
    "b_w": "mean within-LA slope per 10 points at m_c = 0 (population-average stratum)",
    "b_b": "between-LA slope: change in a_la's mean per 10 points of m_c",
    "b_x": "cross-level interaction: change in b_la's mean per 10 points of m_c",
    "sigma_a": "SD of a_la around a + b_b * m_c",
    "sigma_b": "SD of b_la around b_w + b_x * m_c",
    "rho": "correlation of the LA intercept and slope deviations",
    "phi": "NB2 dispersion of the LSOA totals (variance mu + mu^2 / phi)",
    "phi_effective": "dispersion actually reached after thinning (phi, unless phi exceeds the "
    "parent threshold's)",
    "lsoa_level": "gradient implied for LSOA totals over all strata (composition included): "
    "per-LA log-linear fits to the expected totals, LA slopes regressed on m_c; "
    "the target of the national model fitted to aggregate(by=())",
    "parent": "threshold the children are thinned from (None for referrals)",
    "clipped_share": "per year: share of cells where the thinning probability exceeded 1 and "
    "was clipped (expected counts there fall below the model)",
    "gradient_mean_la": "exp(b_w): social gradient score at an averagely deprived LA",
    "gradient_less_deprived_la": "exp(b_w - b_x): gradient at an LA 10 points less deprived",
    "gradient_more_deprived_la": "exp(b_w + b_x): gradient at an LA 10 points more deprived",
    "between_la_gradient": "exp(b_b): rate ratio per 10 points of LA mean deprivation",
    "contextual_effect": "b_b - b_w: between minus within slope (< 0: inverse intervention)",
    "la": "realised LA effects keyed by LA code",
    "a_la": "realised LA intercept",
    "b_la": "realised LA within-LA slope per 10 points",
    "gradient": "a gradient exp(slope): rate ratio per 10 points of within-LA deprivation",
    "m_c": "LA child-weighted mean x minus x_bar (10-point units)",
    "strata": "per dimension (age_band, gender, ethnicity) and level: offsets and gradients",
    "age_trend": "the age profile by single year of age (0-17) and its least-squares line: "
    "the truth of a linear stratum trend in age fitted to aggregate(by=('age',))",
    "ages": "single years of age 0-17",
    "band": "age band of each single year",
    "alpha_by_age": "true log rate-ratio offset of each single year (its band's alpha: the rate "
    "does not change within a band)",
    "d_by_age": "true slope offset of each single year (its band's d)",
    "weight_by_age": "weight of each year in the line: nominal share (1/18) x exp(alpha), the "
    "expected referrals of that age, normalised to sum 1",
    "slope": "change in the log gradient per year of age: weighted least-squares slope of "
    "d_by_age on age (the target of trend_effect[slope], any threshold)",
    "intercept_slope": "change in the log rate per year of age at w = 0: the same line through "
    "alpha_by_age (the target of trend_effect[intercept])",
    "max_departure": "largest distance of d_by_age from its line (the staircase's steps)",
    "gradient_ratio_0_to_17": "exp(17 * slope): the line's ratio of the gradient at 17 to "
    "that at 0",
    "alpha": "log rate-ratio offset of the stratum level (centred on nominal_share)",
    "d": "slope offset of the stratum level, added to b_la (centred on nominal_share)",
    "nominal_share": "population share used to centre alpha (sum share*exp(alpha) = 1) and d "
    "(sum share*d = 0)",
    "realised_share": "share of the simulated child population 0-17 in this level",
    "gradients": "per threshold: exp(b_w + d) at an average LA (other dimensions averaged)",
    "area": "rural/urban slope offsets d (by LSOA, centred on the rural share 0.17)",
    "factors": "per census factor code: factor identified at assessment (assessed children)",
    "name": "short name; the aggregate column is factor_<name> (cp_<name> for CP categories)",
    "c3_column": "column of DfE file C3 (factors identified at the end of assessment)",
    "share_w0": "probability (factor) / share (CP category) at w = 0",
    "delta": "slope offset of the factor over the assessment slope: "
    "log(gradient) - b_w(assessments)",
    "cp_categories": "per census category of abuse code of a CP plan (CP-plan children)",
    "d_effective": "local slope offset at w = 0 after the softmax (d - sum share_w0 * d)",
    "durations": "episode duration, days from referral_date to closure_date: piecewise "
    "exponential, hazard base_rate * exp(level_log_hr + (g_w + u_b) w + g_b m_c "
    "+ u_a), censored at 31 March",
    "pieces_days": "start (days since referral) of each piece of the baseline hazard",
    "base_rate": "hazard per day in each piece for an 'nfa' episode at w = 0, m_c = 0",
    "level_log_hr": "log hazard ratio by episode outcome (nfa, cin_plan, cp_plan, looked_after)",
    "g_w": "log hazard ratio per 10 points of w (< 0: longer in more deprived neighbourhoods)",
    "g_b": "log hazard ratio per 10 points of m_c (> 0: shorter in more deprived LAs)",
    "u_a": "durations: the LA's log hazard ratio (closing practice)",
    "u_b": "durations: the LA's change of the log hazard ratio per 10 points of w",
    "rereferral": "re-referral within 12 months (referred children): logit p = logit(p0) + "
    "c_w w + c_x w m_c + c_g dev_l",
    "repeat_cp": "second or subsequent CP plan (CP-plan children): same form as rereferral",
    "p0": "probability at w = 0",
    "c_g": "log-odds per unit of the LA's referral log-gradient departure dev_l = "
    "b_la[referrals] - (b_w + b_x m_c), added to the flag's logit (the LA-level "
    "association of issue 10)",
    "la_outcomes": "per flag (rereferral, repeat_cp): the LA-level question's truth, per LA "
    "and as the realised coefficient the la_outcome model estimates",
    "departure": "the LA's referral log-gradient departure dev_l = b_la - (b_w + b_x m_c)",
    "expected_p": "the LA's true mean flag probability over its children at risk (referred "
    "children; CP-plan children for repeat_cp), all years",
    "expected_logit": "logit(expected_p)",
    "at_risk": "the LA's children at risk of the flag (the binomial's trials), all years",
    "realised_k_g": "least squares over LAs of expected_logit on 1, b_la (referrals) and m_c: "
    "the coefficient of b_la (log-odds per unit log gradient), the truth of "
    "the la_outcome model adjusted for m_c only (with LA covariates: "
    "records_truth.la_outcome_coefficient)",
    "realised_k_m": "that regression's coefficient of m_c",
    "statement": "la_outcomes: the flags' model and the question, in words",
    "c_w": "logit slope per 10 points of w at m_c = 0",
    "c_x": "change of c_w per 10 points of m_c (< 0: steeper in affluent LAs)",
    "ethnicity_mix": "logit(non-White share) = base + urban + income (income - 0.123) + "
    "N(0, la_sd) per LA; non-White children split by 'split'",
    "base": "ethnicity_mix: logit of the non-White share in a rural LSOA of mean income",
    "urban": "ethnicity_mix: added to that logit in urban LSOAs",
    "income": "ethnicity_mix: logit change per unit (0-1) of LSOA income deprivation",
    "la_sd": "ethnicity_mix: SD of the LA's normal deviation of that logit; durations: SDs of "
    "an LA's own log hazard ratio u_a and of its slope u_b on w",
    "split": "ethnicity_mix: shares of Mixed, Asian, Black, Other among non-White children",
    "age_bands": "age band -> [lowest, highest] age at 31 March",
    "realised": "per year: children (rows), referrals (episodes), children reaching each later "
    "threshold, cp_plan_starts (plans, incl. earlier same-year ones), factor rows",
    "la_intercepts_from_dfe": "LA codes whose standardised intercept deviation is the "
    "standardised residual of log(DfE 2018-19 referral rate) on m_c "
    "(the rest are N(0, 1) draws)",
    "a_study": "the intercept of synthetic.PARAMETERS (study population), before level_shift",
    "level_shift": "added to every threshold's intercept so that the records mimic DfE's census "
    "population: log(dfe_referred_children_per_10k / "
    "study_referred_children_per_10k)",
    "cp_plan_shift": "added to the cp_plans intercept on top of level_shift: log of DfE's CP "
    "plan starts per referred child (66,680 / 575,290) over the 0.1000 the "
    "study's ratios give",
    "dfe_referred_children_per_10k": "DfE 2018-19: children referred per 10,000 aged 0-17 "
    "(575,290 / 11.79 million)",
    "study_referred_children_per_10k": "children referred per 10,000 aged 0-17 that "
    "synthetic.PARAMETERS give on the default geography",
    "history": "per year: flagged re-referrals / repeat CP plans and where their earlier "
    "episode is (data.history): linked to the previous year's child, an earlier "
    "episode in the same year, or not in the records",
    "rereferrals": "flagged re-referrals (children) in the year",
    "rereferrals_linked_previous_year": "re-referred children matched to a child of the "
    "previous year (same child_id)",
    "rereferrals_earlier_episode_same_year": "re-referred children given an earlier episode "
    "in the same year",
    "rereferrals_earlier_not_in_records": "re-referred children whose earlier referral is not "
    "in the records (before the first year, or unmatched)",
    "repeat_cp_plans": "flagged repeat CP plans (children) in the year",
    "repeat_cp_linked_previous_year": "repeat plans whose earlier plan is the matched "
    "previous-year child's",
    "repeat_cp_earlier_plan_same_year": "repeat plans given an earlier CP-plan episode in the "
    "same year",
    "repeat_cp_earlier_not_in_records": "repeat plans whose earlier plan is not in the records",
}


def _threshold(t: str, effects: dict, dec, clipped: dict, var: dict) -> dict:
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


def _lsoa_level(expected: np.ndarray, geo, dec) -> dict:
    """Gradient implied for LSOA totals: per LA, weighted LS of log(E/n) on w (weights E),
    then OLS of the LA slopes on m_c."""
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


def la_outcome_coefficient(part: dict, covariates: dict | None = None, term: str = "b_la") -> float:
    """The realised coefficient of ``term`` (``b_la``, ``m_c`` or a covariate) in the least
    squares over LAs of ``expected_logit`` on 1, ``b_la``, ``m_c`` and ``covariates``
    (``{name: {la code: value}}``), over the LAs with children at risk: what the la_outcome
    model (:mod:`socialgradient.model.la_outcome`) estimates. ``part`` is
    ``truth["la_outcomes"][flag]``."""
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


def _la_outcomes(effects: dict, dec, parts: list) -> dict:
    """Per flag: c_g, the LAs' departures and true mean probabilities, the realised k_g."""
    b_la = effects["referrals"][1]
    out = {
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


def age_trend(offsets: dict) -> dict:
    """The records' age profile by single year and its line (truth ``age_trend``).

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
    seed,
    scale,
    years,
    synthetic_geo,
    geo,
    dec,
    effects,
    off,
    parts,
    population,
    history: dict,
    la_from_dfe: list,
) -> dict:
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
    factors = {
        c: {"name": n, "c3_column": col, "share_w0": q, "delta": math.log(g) - b_a, "gradient": g}
        for c, (n, col, q, g) in r.FACTORS.items()
    }
    dbar = sum(q * d for _, q, d in r.CP_CATEGORIES.values())
    b_cp = math.log(england.PARAMETERS["cp_plans"]["gradient"])
    cats = {
        c: {
            "name": n,
            "share_w0": q,
            "d": d,
            "d_effective": d - dbar,
            "gradient": math.exp(b_cp + d - dbar),
        }
        for c, (n, q, d) in r.CP_CATEGORIES.items()
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
