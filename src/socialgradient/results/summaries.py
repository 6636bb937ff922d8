"""Posterior summaries as ``summary.json`` holds them: one quantity (median and equal-tailed
95% and 80% intervals), and the model's extra terms -- strata and their contrasts, a stratum
trend, moderators -- each with the probabilities a reader asks for."""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from socialgradient.results import gradients
from socialgradient.results.gradients import national
from socialgradient.sampling.joint import _select, outcomes


def interval(da: xr.DataArray) -> dict:
    """``{"median", "ci95", "ci80"}`` of a quantity's draws (equal-tailed intervals)."""
    d = gradients.describe(da)
    return {
        "median": float(d["median"]),
        "ci95": [float(v) for v in d["eti95"].values],
        "ci80": [float(v) for v in d["eti80"].values],
    }


def stratum_contrasts(strata: xr.DataArray) -> dict:
    """``{"A/B": ratio of A's gradient to B's, with p_steeper = P(A's gradient > B's)}`` for
    every pair of strata (in the fit's stratum order), from the same posterior draws."""
    levels = [str(v) for v in strata["stratum"].values]
    out = {}
    for i, j in itertools.combinations(range(len(levels)), 2):
        ratio = strata.isel(stratum=i, drop=True) / strata.isel(stratum=j, drop=True)
        out[f"{levels[i]}/{levels[j]}"] = interval(ratio) | {
            "p_steeper": float((ratio > 1).mean())}
    return out


def strata_summary(strata: xr.DataArray, columns: dict[str, list[str]]) -> dict:
    """``{column: {"reference", "gradient": {level: ...}, "contrast": {"A/B": ...}}}`` for a
    fit with several stratum columns: each level's gradient at the reference levels of the
    other columns, and every pair of one column's levels (their ratio holds at every level
    of the other columns: the offsets are additive), with ``p_steeper``."""
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
    """The stratum trend per unit of its column (e.g. per year of age): ``intercept`` the
    change in the log rate (at w = 0), ``slope`` the change in the log gradient, with
    ``p_negative`` = P(slope < 0) (the gradient falls as the column rises) and
    ``p_positive``; ``gradient_ratio`` = exp(slope), the factor on the gradient per unit."""
    draws = post["trend_effect"]
    slope = draws.sel(effect="slope", drop=True)
    out = {"column": column,
           "intercept": interval(draws.sel(effect="intercept", drop=True)),
           "slope": interval(slope) | {"p_negative": float((slope < 0).mean()),
                                        "p_positive": float((slope > 0).mean())},
           "gradient_ratio": interval(np.exp(slope))}
    return out


def moderator_summary(post: xr.Dataset) -> dict:
    """``{name: {"level", "intercept", "slope"}}`` for every moderator, on the log (logit)
    scale per unit of the moderator: ``intercept`` the main effect (neighbourhood) or the
    shift of the LA intercepts' mean (LA); ``slope`` the change in the log gradient."""
    out = {}
    for var, dim, level in (("moderator_effect", "moderator", "neighbourhood"),
                            ("la_moderator_effect", "la_moderator", "la")):
        if var not in post:
            continue
        for name in post[dim].values:
            draws = post[var].sel({dim: name})
            out[str(name)] = {
                "level": level,
                "intercept": interval(draws.sel(effect="intercept")),
                "slope": interval(draws.sel(effect="slope")),
            }
            out[str(name)]["slope"]["p_positive"] = float(
                (draws.sel(effect="slope") > 0).mean())
    return out


def steepening(tree: xr.DataTree) -> dict:
    """``p_steepens`` per consecutive pair (``"a<b"``: P(b_w[b] > b_w[a])),
    ``p_steepens_every_step``, and ``gradient_ratio`` (``"b/a"``: b's gradient at an
    averagely deprived LA over a's, median and ETIs), from the joint posterior."""
    names = outcomes(tree)
    b_w = tree["posterior"]["b_w"]
    steps = [b_w.sel(threshold=hi) > b_w.sel(threshold=lo)
             for lo, hi in itertools.pairwise(names)]
    every = xr.concat(steps, "step").all("step")
    return {
        "p_steepens": {f"{lo}<{hi}": float(s.mean())
                       for (lo, hi), s in zip(itertools.pairwise(names), steps, strict=True)},
        "p_steepens_every_step": float(every.mean()),
        "gradient_ratio": {
            f"{hi}/{lo}": interval(np.exp(b_w.sel(threshold=hi) - b_w.sel(threshold=lo)))
            for lo, hi in itertools.pairwise(names)},
    }


def threshold_summary(tree: xr.DataTree) -> dict:
    """``{outcome: {gradient_mean_la, gradient_less_deprived_la, gradient_more_deprived_la,
    contextual_effect}}`` with medians and 95%/80% ETIs."""
    out = {}
    for name in outcomes(tree):
        nat = national(_select(tree["posterior"].to_dataset(), name))
        out[name] = {key: interval(nat[key]) for key in (
            "gradient_mean_la", "gradient_less_deprived_la", "gradient_more_deprived_la",
            "contextual_effect")}
    return out
