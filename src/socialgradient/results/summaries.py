"""Summaries of a fit: the headline quantities and each term's.

Posterior summaries as ``summary.json`` holds them: one quantity (median and equal-tailed
95% and 80% intervals), the model's extra terms -- strata and their contrasts, a stratum
trend, moderators -- each with the probabilities a reader asks for, a joint fit's steepening,
and a fit's whole summary (:func:`summary`), LA table (:func:`la_gradients`) and plain-text
headline; :mod:`socialgradient.release.report` publishes them through the disclosure gate.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any, cast

import numpy as np
import pandas as pd
import xarray as xr

from socialgradient.model import families, la_outcome, parameterisation
from socialgradient.results import checks, curve, gradients, sensitivity, spatial
from socialgradient.results.gradients import national
from socialgradient.sampling.joint import _select, outcomes


def interval(da: xr.DataArray | np.ndarray) -> dict:
    """Return ``{"median", "ci95", "ci80"}`` of a quantity's draws (equal-tailed intervals).

    ``da`` is a DataArray with dims (chain, draw, ...); numpy's ufuncs of one (``np.exp``)
    stay DataArrays at run time, which their type stubs do not say.
    """
    d = gradients.describe(cast(xr.DataArray, da))
    return {
        "median": float(d["median"]),
        "ci95": [float(v) for v in d["eti95"].values],
        "ci80": [float(v) for v in d["eti80"].values],
    }


def stratum_contrasts(strata: xr.DataArray) -> dict:
    """Return the ratios of gradients between every pair of strata.

    ``{"A/B": ratio of A's gradient to B's, with p_steeper = P(A's gradient > B's)}`` for
    every pair of strata (in the fit's stratum order), from the same posterior draws.
    """
    levels = [str(v) for v in strata["stratum"].values]
    out = {}
    for i, j in itertools.combinations(range(len(levels)), 2):
        ratio = strata.isel(stratum=i, drop=True) / strata.isel(stratum=j, drop=True)
        out[f"{levels[i]}/{levels[j]}"] = interval(ratio) | {"p_steeper": float((ratio > 1).mean())}
    return out


def strata_summary(strata: xr.DataArray, columns: dict[str, list[str]]) -> dict:
    """Return the gradients and contrasts of each stratum column.

    ``{column: {"reference", "gradient": {level: ...}, "contrast": {"A/B": ...}}}`` for a
    fit with several stratum columns: each level's gradient at the reference levels of the
    other columns, and every pair of one column's levels (their ratio holds at every level
    of the other columns: the offsets are additive), with ``p_steeper``.
    """
    out = {}
    for column, levels in columns.items():
        one = strata.sel(stratum=[f"{column}={level}" for level in levels])
        one = one.assign_coords(stratum=list(levels))
        out[column] = {
            "reference": levels[0],
            "gradient": {level: interval(one.sel(stratum=level)) for level in levels},
            "contrast": stratum_contrasts(one),
        }
    return out


def trend_summary(post: xr.Dataset, column: str) -> dict:
    """Return the stratum trend per unit of its column.

    The stratum trend per unit of its column (e.g. per year of age): ``intercept`` the
    change in the log rate (at w = 0), ``slope`` the change in the log gradient, with
    ``p_negative`` = P(slope < 0) (the gradient falls as the column rises) and
    ``p_positive``; ``gradient_ratio`` = exp(slope), the factor on the gradient per unit.
    """
    draws = post["trend_effect"]
    slope = draws.sel(effect="slope", drop=True)
    out = {
        "column": column,
        "intercept": interval(draws.sel(effect="intercept", drop=True)),
        "slope": interval(slope)
        | {"p_negative": float((slope < 0).mean()), "p_positive": float((slope > 0).mean())},
        "gradient_ratio": interval(np.exp(slope)),
    }
    return out


def moderator_summary(post: xr.Dataset) -> dict:
    """Return every moderator's effects per unit.

    ``{name: {"level", "intercept", "slope"}}`` for every moderator, on the log (logit)
    scale per unit of the moderator: ``intercept`` the main effect (neighbourhood) or the
    shift of the LA intercepts' mean (LA); ``slope`` the change in the log gradient.
    """
    out: dict[str, dict] = {}
    for var, dim, level in (
        ("moderator_effect", "moderator", "neighbourhood"),
        ("la_moderator_effect", "la_moderator", "la"),
    ):
        if var not in post:
            continue
        for name in post[dim].values:
            draws = post[var].sel({dim: name})
            out[str(name)] = {
                "level": level,
                "intercept": interval(draws.sel(effect="intercept")),
                "slope": interval(draws.sel(effect="slope"))
                | {"p_positive": float((draws.sel(effect="slope") > 0).mean())},
            }
    return out


def steepening(tree: xr.DataTree) -> dict:
    """Return the joint fit's steepening probabilities and gradient ratios.

    ``p_steepens`` per consecutive pair (``"a<b"``: P(b_w[b] > b_w[a])),
    ``p_steepens_every_step``, and ``gradient_ratio`` (``"b/a"``: b's gradient at an
    averagely deprived LA over a's, median and ETIs), from the joint posterior.
    """
    names = outcomes(tree)
    b_w = tree["posterior"].to_dataset()["b_w"]
    steps = [b_w.sel(threshold=hi) > b_w.sel(threshold=lo) for lo, hi in itertools.pairwise(names)]
    every = xr.concat(steps, "step").all("step")
    return {
        "p_steepens": {
            f"{lo}<{hi}": float(s.mean())
            for (lo, hi), s in zip(itertools.pairwise(names), steps, strict=True)
        },
        "p_steepens_every_step": float(every.mean()),
        "gradient_ratio": {
            f"{hi}/{lo}": interval(np.exp(b_w.sel(threshold=hi) - b_w.sel(threshold=lo)))
            for lo, hi in itertools.pairwise(names)
        },
    }


def threshold_summary(tree: xr.DataTree) -> dict:
    """Return the joint fit's summary per threshold and its steepening.

    ``{outcome: {gradient_mean_la, gradient_less_deprived_la, gradient_more_deprived_la,
    contextual_effect}}`` with medians and 95%/80% ETIs.
    """
    out = {}
    for name in outcomes(tree):
        nat = national(_select(tree["posterior"].to_dataset(), name))
        out[name] = {
            key: interval(nat[key])
            for key in (
                "gradient_mean_la",
                "gradient_less_deprived_la",
                "gradient_more_deprived_la",
                "contextual_effect",
            )
        }
    return out


NO_SPREAD = (
    "no within-LA spread of deprivation: the gradient is the model's prior "
    "pooling, not this LA's data; not ranked"
)
NATIONAL_KEYS = (
    "gradient_mean_la",
    "gradient_less_deprived_la",
    "gradient_more_deprived_la",
    "interaction",
    "between_la_gradient",
    "contextual_effect",
)


def summary(tree: xr.DataTree, diagnostics: dict | None = None) -> dict:
    """Return the headline quantities with medians and 95%/80% ETIs, and the diagnostics.

    Gradient keys are on the gradient-score scale (rate ratio per 10 percentage points);
    ``contextual_effect`` is on the log scale with ``p_negative`` = P(b_b - b_w < 0).
    """
    post = tree["posterior"].to_dataset()
    nat = gradients.national(post)
    out: dict[str, Any] = {key: interval(nat[key]) for key in NATIONAL_KEYS}
    out["contextual_effect"]["p_negative"] = float((nat["contextual_effect"] < 0).mean())
    const = tree["constant_data"].to_dataset()
    corr = gradients.gradient_deprivation_corr(post, const["m_c"])
    out["gradient_deprivation_corr"] = interval(corr)
    out["family"] = tree.attrs["family"]
    out["scale"] = families.get(tree.attrs["family"]).scale
    if "moderator_effect" in post or "la_moderator_effect" in post:
        out["moderators"] = moderator_summary(post)
    if "la_outcome_effect" in post:
        out["la_outcome"] = la_outcome.summary(
            post,
            tree["constant_data"].to_dataset(),
            json.loads(tree.attrs["spec"])["la_outcome"],
            interval,
        )
    columns = json.loads(tree.attrs.get("stratum_columns", "{}"))
    if "stratum_effect" in post and columns:
        out["strata"] = strata_summary(gradients.stratum_gradient(post), columns)
    elif "stratum_effect" in post:
        strata = gradients.stratum_gradient(post)
        out["stratum_gradient"] = {
            str(level): interval(strata.sel(stratum=level)) for level in strata["stratum"].values
        }
        out["stratum_contrast"] = stratum_contrasts(strata)
    if "trend_effect" in post:
        out["stratum_trend"] = trend_summary(post, tree.attrs.get("stratum_trend", ""))
    if "spatial_sd" in post:  # the BYM2 LSOA effect (socialgradient.results.spatial)
        out["spatial"] = spatial.spatial_summary(tree, interval)
    if "curve_coef" in post:  # a spline fit: its local gradients at the income deciles
        out["curve"] = curve.summary(tree)
    out["diagnostics"] = diagnostics if diagnostics is not None else checks.diagnose(tree)
    out["sensitivity"] = sensitivity.power_scaling(tree)
    out["diagnostics"] = sensitivity.flag(out["diagnostics"], out["sensitivity"])
    out["model"] = {
        "outcome": tree.attrs["outcome"],
        "family": tree.attrs["family"],
        "spec": json.loads(tree.attrs["spec"]),
        "spec_hash": tree.attrs["spec_hash"],
        "data_hash": tree.attrs["data_hash"],
        "n_lsoa": len(set(const["lsoa"].values)),
        "n_rows": int(tree["observed_data"][tree.attrs["outcome"]].size),
        "stratum": tree.attrs.get("stratum_name", ""),
        **({"strata": list(columns)} if columns else {}),
        **(
            {"stratum_trend": tree.attrs["stratum_trend"]}
            if tree.attrs.get("stratum_trend")
            else {}
        ),
        "n_la": int(tree["constant_data"].sizes["la"]),
        "national_mean_income": float(tree.attrs["x_bar"]) / 10,
        "compile_seconds": _number(tree.attrs.get("compile_seconds")),
        "sampling_seconds": _number(tree.attrs.get("sampling_seconds")),
    }
    const = tree["constant_data"].to_dataset()
    if "centred" in const:
        counts = parameterisation.as_counts(const["centred"].values)
        out["model"]["la_effects"] = {
            "centred": int((counts == 2).sum()),
            "intercept_centred": int((counts == 1).sum()),
            "noncentred": int((counts == 0).sum()),
        }
    scale = out["scale"]
    log_scale = "log odds ratio" if scale == "odds ratio" else "log rate ratio"
    out["units"] = (
        f"gradient scores: {scale} per 10-percentage-point rise in the share of "
        f"income-deprived families; contextual_effect: {log_scale}; moderators: {log_scale} "
        "per unit of the moderator (intercept) and change in the log gradient per unit (slope); "
        + (
            "stratum_trend: the same per unit of its column (e.g. per year of age); "
            if "trend_effect" in post
            else ""
        )
        + "intervals: equal-tailed 95% (ci95) and 80% (ci80)"
    )
    return out


def _number(value) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def finite(obj):
    """``obj`` with every non-finite float (NaN, inf) replaced by None: valid JSON."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def to_json(obj) -> str:
    """Strict JSON (no NaN): non-finite numbers become null."""
    return json.dumps(finite(obj), indent=2, allow_nan=False)


def la_gradients(tree: xr.DataTree) -> pd.DataFrame:
    """One row per LA: size, observed count and rate, gradient and rank (1 = steepest) with ETIs.

    Unprotected: :func:`write` passes it through the disclosure gate before it leaves.
    """
    t = gradients.la_table(tree)
    lower, upper = {"ci_bound": "lower"}, {"ci_bound": "upper"}
    frame = pd.DataFrame(
        {
            "la": t["la"].values.astype(str),
            "n_lsoa": t["n_lsoa"].values.astype(int),
            "children": t["children"].values,
            "cases": t["cases"].values.astype(int),
            "rate_per_10k": t["rate_per_10k"].values,
            "la_income": (float(tree.attrs["x_bar"]) + t["m_c"].values) / 10,
            "gradient_median": t["gradient_median"].values,
            "gradient_lo95": t["gradient_eti95"].sel(lower).values,
            "gradient_hi95": t["gradient_eti95"].sel(upper).values,
            "gradient_lo80": t["gradient_eti80"].sel(lower).values,
            "gradient_hi80": t["gradient_eti80"].sel(upper).values,
            "rank_median": t["rank_median"].values,
            "rank_lo95": t["rank_eti95"].sel(lower).values,
            "rank_hi95": t["rank_eti95"].sel(upper).values,
            "note": np.where(t["ranked"].values, "", NO_SPREAD),
        }
    )
    return frame.round({"children": 1, "rate_per_10k": 2, "la_income": 4})


def headline(s: dict) -> str:
    """Return a plain-text table of the headline quantities and the verdict."""
    rows = [
        ("Gradient, averagely deprived LA", "gradient_mean_la"),
        ("Gradient, LA 10 points less deprived", "gradient_less_deprived_la"),
        ("Gradient, LA 10 points more deprived", "gradient_more_deprived_la"),
        ("Between-LA gradient exp(b_b)", "between_la_gradient"),
        ("Contextual effect b_b - b_w (log)", "contextual_effect"),
    ]
    lines = [f"{'quantity':<40}{'median':>8}  {'95% ETI':>17}  {'80% ETI':>17}"]
    for label, key in rows:
        v = s[key]
        lines.append(
            f"{label:<40}{v['median']:>8.3f}  [{v['ci95'][0]:6.3f}, {v['ci95'][1]:6.3f}]"
            f"  [{v['ci80'][0]:6.3f}, {v['ci80'][1]:6.3f}]"
        )
    lines.append(f"P(contextual effect < 0) = {s['contextual_effect']['p_negative']:.3f}")
    d = s["diagnostics"]

    def num(v, fmt):
        return "n/a" if v is None or not math.isfinite(v) else format(v, fmt)

    lines.append(
        f"Diagnostics: {d['verdict']}  (R-hat max {num(d['rhat_max'], '.4f')}, bulk ESS min "
        f"{num(d['ess_bulk_min'], '.0f')}, tail ESS min {num(d['ess_tail_min'], '.0f')}, "
        f"divergences {d['divergences']}, E-BFMI min {num(d['ebfmi_min'], '.2f')})"
    )
    lines.extend(f"  - {reason}" for reason in d["reasons"])
    return "\n".join(lines)


def units(tree: xr.DataTree) -> np.ndarray:
    """Return each row's unit id for the ledger and the perturbation keys.

    Each row's unit id for the ledger and the perturbation keys: its LSOA code, with
    ``|`` and its stratum where rows are LSOA x stratum cells.
    """
    const = tree["constant_data"].to_dataset()
    lsoa = const["lsoa"].values.astype(str)
    names = sorted(c for c in map(str, const.coords) if c == "stratum" or c.startswith("stratum_"))
    if not names and "trend_value" in const:
        names = ["trend_value"]
    if not names:
        ids = lsoa
    else:
        labels = pd.DataFrame({n: np.asarray(const[n].values).astype(str) for n in names})
        ids = np.char.add(
            np.char.add(lsoa, "|"), labels.agg(",".join, axis=1).to_numpy().astype(str)
        )
    seen = pd.Series(ids).groupby(ids).cumcount().to_numpy()
    return np.where(seen > 0, np.char.add(ids, np.char.add("#", seen.astype(str))), ids)
