r"""The deprivation-curve figure: modelled rates and local gradients across the income deciles.

For an averagely deprived LA (:mod:`socialgradient.results.curve`): the left panel is the
modelled rate per 10,000 (median, 80% and 95% bands) against neighbourhood income
deprivation, with the observed rate of each income decile as points; the right panel is the
local gradient score :math:`\exp(b_w + f'(w))` with its bands, the headline
``gradient_mean_la`` (its child-weighted log-linear summary) as a dashed line, and ticks at
the deciles' mean incomes. Both curve forms are drawn the same way: a log-linear fit's rate
is a straight line on the log axis and its local gradient is flat.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from socialgradient.data.deprivation import UNIT
from socialgradient.results import curve
from socialgradient.results.gradients import _exp, describe

#: Points of the drawn curves between the lowest and highest decile's mean income.
N_GRID = 80


def _band(ax, x: np.ndarray, draws: xr.DataArray, color: str, label: str) -> None:
    """Median line with 95% (light) and 80% (darker) equal-tailed bands, as in ``plots``."""
    summary = describe(draws)
    for name, alpha in (("eti95", 0.18), ("eti80", 0.3)):
        bounds = summary[name]
        lower, upper = bounds.sel(ci_bound="lower"), bounds.sel(ci_bound="upper")
        ax.fill_between(x, lower, upper, color=color, alpha=alpha, linewidth=0)
    ax.plot(x, summary["median"].values, color=color, label=label)


def _local_gradient(tree: xr.DataTree, income: np.ndarray) -> xr.DataArray:
    """Return the local gradient score at ``income`` (an averagely deprived LA), draws."""
    w = income * 100 / UNIT - float(tree.attrs["x_bar"])
    basis = curve.spline(tree)
    post = tree["posterior"].to_dataset()
    slope = post["b_w"].expand_dims(income=len(income), axis=-1)
    if basis is not None:
        coef = post["curve_coef"].transpose("chain", "draw", "curve_basis").values
        slope = slope + coef @ basis.slopes(w).T
    return _exp(slope).assign_coords(income=income)


def deprivation_curve(tree: xr.DataTree, observed=None) -> Figure:
    """Draw the fit's deprivation curve and local gradients against the income deciles.

    Parameters
    ----------
    tree : DataTree
        A fit, log-linear or spline.
    observed : (x, rate) arrays, optional
        Each income decile's mean income in % and observed rate per 10,000 (NaN: not drawn);
        default: from the tree's observed data (unprotected: for release, pass the gated
        rates, as :func:`socialgradient.release.report.write` does for ``gradient_curve``).

    Returns
    -------
    Figure
        Two axes: rates (log axis) and local gradient scores, each with 80%/95% bands.
    """
    if observed is None:
        point, rate = curve.observed(tree)
        observed = (100 * point, rate)
    x_obs, rate_obs = (np.asarray(v, dtype=float) for v in observed)
    finite = np.isfinite(x_obs)
    if not finite.any():
        raise ValueError("deprivation_curve: no decile has a mean income to draw")
    income = np.linspace(x_obs[finite].min(), x_obs[finite].max(), N_GRID) / 100
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    _band(left, 100 * income, curve.rates(tree, income), "C0", "model (80%, 95%)")
    keep = finite & np.isfinite(rate_obs) & (rate_obs > 0)
    left.plot(x_obs[keep], rate_obs[keep], "o", color="k", label="observed, by income decile")
    left.set_yscale("log")  # plain-number ticks (200, not 2 x 10^2), as in ``plots``
    left.yaxis.set_major_formatter(LogFormatter())
    left.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    left.set_xlabel("Neighbourhood income deprivation (% of families)")
    left.set_ylabel(f"{tree.attrs['outcome']} per 10,000 {tree.attrs.get('exposure', 'children')}")
    left.legend(loc="upper left", fontsize="small")
    _band(right, 100 * income, _local_gradient(tree, income), "C1", "local gradient (80%, 95%)")
    headline = float(describe(_exp(tree["posterior"].to_dataset()["b_w"]))["median"])
    right.axhline(headline, color="k", linestyle="--", label=f"headline exp(b_w) {headline:.2f}")
    right.axhline(1.0, color="0.6", linewidth=0.8)
    right.plot(x_obs[finite], np.full(finite.sum(), 1.0), "|", color="k", markersize=12)
    right.set_xlabel("Neighbourhood income deprivation (% of families)")
    right.set_ylabel("Gradient score per 10 points")
    right.legend(loc="best", fontsize="small")
    form = "spline" if curve.spline(tree) is not None else "log-linear"
    fig.suptitle(f"Deprivation curve ({form}), LA of average deprivation")
    return fig
