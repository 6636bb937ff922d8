"""Derived quantities: social gradient scores, the per-LA table, ranks, rates.

Everything here is pure xarray: posterior draws in (dims ``chain, draw[, ...]``), draws or
summaries out. Nothing here plots or writes.

Definitions (``b_*`` from :mod:`socialgradient.model.build`; deprivation in 10-point units):

=============================  ===============================================  ===========
quantity                        draws                                            scale
=============================  ===============================================  ===========
gradient_mean_la                exp(b_w): LA at the national mean deprivation    score
gradient_less_deprived_la       exp(b_w - b_x): LA 10 points less deprived       score
gradient_more_deprived_la       exp(b_w + b_x): LA 10 points more deprived       score
interaction                     exp(b_x): ratio of gradients per 10 points of    score ratio
                                LA deprivation
between_la_gradient             exp(b_b): rate ratio between LAs 10 points       score
                                apart in mean deprivation
contextual_effect               b_b - b_w: log rate ratio for an LA 10 points    log
                                more deprived, at equal neighbourhood
                                deprivation (< 0: the inverse intervention
                                effect)
stratum_gradient                exp(b_w + delta_s) per stratum (stratified fits) score
la_gradient                     exp(b_la) per LA (reference stratum if any)      score
la_rank                         rank of each LA's gradient, 1 = steepest         rank
gradient_deprivation_corr       correlation over LAs of b_la with m_c             r
=============================  ===============================================  ===========

Intervals are equal-tailed (ETI): 95% and 80% by default, as DataArrays with a ``ci_bound``
dim (``lower``, ``upper``) and ``ci_kind``/``ci_prob`` attrs.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import cast

import arviz_stats as az  # the diagnostics alone: arviz would also import arviz_plots (pyplot)
import numpy as np
import pandas as pd
import xarray as xr

from socialgradient.data.deprivation import UNIT

SAMPLE_DIMS = ("chain", "draw")
PROBS = (0.95, 0.80)
PER = 10_000  # rates are per 10,000 children (units of exposure)


def _exp(x: xr.DataArray) -> xr.DataArray:
    """``np.exp`` of a DataArray, typed as one (numpy's stubs say ndarray; xarray dispatches)."""
    return cast(xr.DataArray, np.exp(x))


def national(posterior: xr.Dataset) -> xr.Dataset:
    """Return the national quantities (see module table) as draws, dims (chain, draw)."""
    b_w, b_b, b_x = posterior["b_w"], posterior["b_b"], posterior["b_x"]
    return xr.Dataset(
        {
            "gradient_mean_la": np.exp(b_w),
            "gradient_less_deprived_la": np.exp(b_w - b_x),
            "gradient_more_deprived_la": np.exp(b_w + b_x),
            "interaction": np.exp(b_x),
            "between_la_gradient": np.exp(b_b),
            "contextual_effect": b_b - b_w,
        }
    )


def stratum_gradient(posterior: xr.Dataset) -> xr.DataArray:
    """Gradient of each stratum in an averagely deprived LA, exp(b_w + delta_s).

    Dims (chain, draw, stratum). Only for stratified fits (``stratum_effect`` present).
    """
    slope = posterior["stratum_effect"].sel(effect="slope", drop=True)
    return _exp(posterior["b_w"] + slope).rename("stratum_gradient")


def la_gradient(posterior: xr.Dataset) -> xr.DataArray:
    """Each LA's social gradient score exp(b_la), dims (chain, draw, la)."""
    return _exp(posterior["la_effect"].sel(effect="slope", drop=True)).rename("la_gradient")


def la_rank(gradient: xr.DataArray) -> xr.DataArray:
    """Rank of each LA's gradient within each draw, 1 = steepest, dims (chain, draw, la)."""
    order = (-gradient).argsort(axis=gradient.get_axis_num("la"))
    ranks = order.argsort(axis=gradient.get_axis_num("la")) + 1
    return gradient.copy(data=ranks.values).rename("la_rank")


def gradient_deprivation_corr(posterior: xr.Dataset, m_c: xr.DataArray) -> xr.DataArray:
    """Correlation over LAs between the LA slope b_la and LA deprivation m_c, dims (chain, draw)."""
    slope = posterior["la_effect"].sel(effect="slope", drop=True)
    return xr.corr(slope, m_c, dim="la").rename("gradient_deprivation_corr")


def rate_curve(
    posterior: xr.Dataset,
    income: np.ndarray,
    la_deprivation: dict[str, float],
    x_bar: float,
    link: str = "log",
) -> xr.DataArray:
    """Modelled rate per 10,000 children across neighbourhood deprivation.

    For a typical LA (LA effects at their hierarchical means) whose mean deprivation is
    ``x_bar + m_c`` (``m_c`` in 10-point units), the rate in a neighbourhood with income
    share ``income`` is ``1e4 * exp(a + b_b m_c + (b_w + b_x m_c) (x - x_bar - m_c))``.

    Parameters
    ----------
    income : array of float
        Neighbourhood income-deprivation shares (0-1) to evaluate.
    la_deprivation : dict
        Label -> ``m_c`` of the LA (e.g. ``{"affluent": -1, "average": 0, "deprived": 1}``).
    x_bar : float
        National mean deprivation (10-point units), from the fit's attrs.
    link : {"log", "logit"}
        The family's link: a binomial curve is the proportion per 10,000 trials.

    Returns
    -------
    DataArray
        Dims (chain, draw, la_type, income).
    """
    x = xr.DataArray(np.asarray(income) * 100 / UNIT, dims="income", coords={"income": income})
    m_c = xr.DataArray(
        list(la_deprivation.values()), dims="la_type", coords={"la_type": list(la_deprivation)}
    )
    p = posterior
    eta = p["a"] + p["b_b"] * m_c + (p["b_w"] + p["b_x"] * m_c) * (x - x_bar - m_c)
    mean = 1 / (1 + _exp(-eta)) if link == "logit" else _exp(eta)
    return (PER * mean).rename("rate_per_10k")


def describe(draws: xr.DataArray, probs=PROBS) -> xr.Dataset:
    """Median and equal-tailed intervals over (chain, draw).

    Returns
    -------
    Dataset
        ``median`` with the non-sample dims of ``draws``, and ``eti95``, ``eti80`` (one per
        prob) with an extra ``ci_bound`` dim (``lower``, ``upper``).
    """
    out = {"median": draws.median(SAMPLE_DIMS)}
    for prob in probs:
        # ArviZ's ETI: numpy's linear quantiles at (1 - prob) / 2 and 1 - (1 - prob) / 2
        # (NaN-skipping, as xarray's quantile was); ci_bound first, as the tables expect.
        q = az.eti(draws, prob=prob, dim=list(SAMPLE_DIMS), skipna=True)
        q = q.transpose("ci_bound", ...).assign_coords(ci_bound=["lower", "upper"])
        q.attrs.update(ci_kind="eti", ci_prob=prob)
        out[f"eti{round(prob * 100)}"] = q
    return xr.Dataset(out)


def exposure(const: xr.Dataset) -> xr.DataArray:
    """Return the fit's exposure per row.

    The fit's exposure per row: ``constant_data["exposure"]`` if the fit named one, else
    ``children``.
    """
    return const["exposure"] if "exposure" in const else const["children"]


#: The tree whose LA table :func:`reusing_la_table` keeps, and the table once computed.
_REUSED: ContextVar[dict | None] = ContextVar("la_table_reused", default=None)


@contextlib.contextmanager
def reusing_la_table(tree: xr.DataTree):
    """Compute :func:`la_table` of ``tree`` (this object) once within the block.

    An output set reads the LA table five times (``summary.json``, ``la_gradients.csv`` and
    three figures): about 0.2 s each on England. The tree must not change within the
    block; each reader gets its own copy of the Dataset.
    """
    token = _REUSED.set({"tree": tree, "table": None})
    try:
        yield
    finally:
        _REUSED.reset(token)


def la_table(tree: xr.DataTree) -> xr.Dataset:
    """Per-LA gradient scores and ranks with intervals, plus observed rates.

    Returns
    -------
    Dataset
        Dims (la[, ci_bound]): ``n_lsoa``, ``children``, ``cases``, ``rate_per_10k``
        (observed, per 10,000 of the exposure: children unless the fit named another),
        ``m_c``, ``gradient_median``, ``gradient_eti95``, ``gradient_eti80``,
        ``rank_median``, ``rank_eti95`` (ranks among the ``ranked`` LAs, NaN for the
        others), ``ranked`` (False: no within-LA spread of deprivation); the fit's
        ``la_name`` coordinate when it has one.
    """
    held = _REUSED.get()
    if held is None or held["tree"] is not tree:
        return _la_table(tree)
    if held["table"] is None:
        held["table"] = _la_table(tree)
    return held["table"].copy(deep=False)


def _la_table(tree: xr.DataTree) -> xr.Dataset:
    # names are set aside and put back at the end: the ranks' reindexing would pad them
    const = tree["constant_data"].to_dataset()
    names = const.coords.get("la_name")
    post = tree["posterior"].to_dataset().drop_vars("la_name", errors="ignore")
    const = const.drop_vars("la_name", errors="ignore")
    y = tree["observed_data"][tree.attrs["outcome"]]
    la = const["lsoa_la"].values
    by_la = (
        pd.DataFrame(
            {
                "la": la,
                "lsoa": const["lsoa"].values,
                "children": const["children"].values,
                "exposure": exposure(const).values,
            }
        )
        .assign(cases=y.values)
        .groupby("la")
        .agg(
            n_lsoa=("lsoa", "nunique"),
            children=("children", "sum"),
            cases=("cases", "sum"),
            exposure=("exposure", "sum"),
        )
        .reindex(const["la"].values)
    )
    by_la = xr.Dataset.from_dataframe(by_la.rename_axis("la"))
    grad = la_gradient(post)
    # An LA whose rows share one deprivation has no within-LA gradient in its data: its
    # "gradient" is the model's pooling; it is flagged (ranked False) and not ranked.
    w = pd.Series(const["w"].values).groupby(la)
    ranked = (w.max() - w.min()).reindex(const["la"].values).to_numpy() > 1e-9
    ranked = xr.DataArray(ranked, dims="la", coords={"la": const["la"].values})
    g = describe(grad)
    r = describe(la_rank(grad.sel(la=ranked.values))).reindex(la=const["la"].values)
    table = xr.Dataset(
        {
            "n_lsoa": by_la["n_lsoa"],
            "children": by_la["children"],
            "cases": by_la["cases"],
            "rate_per_10k": PER * by_la["cases"] / by_la["exposure"],
            "m_c": const["m_c"],
            "gradient_median": g["median"],
            "gradient_eti95": g["eti95"],
            "gradient_eti80": g["eti80"],
            "rank_median": r["median"],
            "rank_eti95": r["eti95"],
            "ranked": ranked,
        }
    )
    return table if names is None else table.assign_coords(la_name=names)
