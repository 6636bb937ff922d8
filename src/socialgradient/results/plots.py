"""Figures of a fitted result.

Each function takes a fitted ``xarray.DataTree`` (:func:`socialgradient.sampling.fit.fit` or
:func:`socialgradient.sampling.fit.load`) and returns a :class:`matplotlib.figure.Figure`. The
statistics come from :mod:`socialgradient.results.gradients` and
:mod:`socialgradient.results.checks`; this module only draws them. Figures are built as plain
``Figure`` objects (no pyplot), so no GUI backend is involved and nothing is registered with
pyplot that needs closing.

Deprivation is shown in percent of families in income deprivation; the models' unit is
10 percentage points, so a gradient score is the rate ratio per 10 points.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from socialgradient.data.deprivation import UNIT
from socialgradient.model import families
from socialgradient.results import curve
from socialgradient.results.gradients import describe, la_table, national, rate_curve
from socialgradient.results.maps import find_boundaries, la_map
from socialgradient.results.plot_checks import (  # noqa: F401 (moved there; the names stay here)
    PPC_STATISTICS,
    RATIO_TICKS,
    ppc_plot,
)
from socialgradient.results.plot_checks import ratio_axis as _ratio_axis
from socialgradient.results.plot_curve import deprivation_curve
from socialgradient.util.files import atomic_write
from socialgradient.util.imports import forget_unloaded_jax

#: LA type -> (m_c, the matching score in :func:`socialgradient.results.gradients.national`).
LA_TYPES = {
    "affluent": (-1.0, "gradient_less_deprived_la"),
    "average": (0.0, "gradient_mean_la"),
    "deprived": (1.0, "gradient_more_deprived_la"),
}
DPI = 120


def _log_y(ax) -> None:
    """Log y axis with plain-number tick labels (200, not 2 x 10^2)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))


def _band(ax, x, summary: xr.Dataset, color: str, label: str | None = None) -> None:
    """Median line with 95% (light) and 80% (darker) equal-tailed bands."""
    for name, alpha in (("eti95", 0.18), ("eti80", 0.3)):
        bounds = summary[name]
        lower, upper = bounds.sel(ci_bound="lower"), bounds.sel(ci_bound="upper")
        ax.fill_between(x, lower, upper, color=color, alpha=alpha, linewidth=0)
    ax.plot(x, summary["median"].values, color=color, label=label)


def _observed_by_decile(tree: xr.DataTree) -> tuple[np.ndarray, np.ndarray]:
    """Child-weighted mean income (%) and observed rate per 10,000 (exposure) of each decile."""
    point, rate = curve.observed(tree)
    return 100 * point, rate


def gradient_curve(tree: xr.DataTree, income=None, observed=None) -> Figure:
    """Modelled rate against neighbourhood deprivation, for an LA of average deprivation.

    Parameters
    ----------
    income : array of float, optional
        Income shares (0-1) to evaluate; default 100 points from 1% to 60%.
    observed : (x, rate) arrays, optional
        The observed points (decile mean income in %, rate per 10,000; NaN: not drawn);
        default: computed from the tree's observed data (unprotected: for release, pass the
        gated rates, as :func:`socialgradient.release.report.write` does).

    Returns
    -------
    Figure
        One axes: the median curve with 95%/80% bands (``rate_curve`` at ``m_c = 0``) on a
        log rate axis, observed decile rates as points, the gradient score in the title.
    """
    income = np.linspace(0.01, 0.60, 100) if income is None else np.asarray(income)
    post = tree["posterior"].to_dataset()
    curve = rate_curve(post, income, {"average": 0.0}, float(tree.attrs["x_bar"]), _link(tree))
    summary = describe(curve.sel(la_type="average", drop=True))
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    _band(ax, 100 * income, summary, "C0", "model (median, 80% and 95% intervals)")
    x_obs, rate_obs = _observed_by_decile(tree) if observed is None else observed
    keep = np.isfinite(rate_obs) & (rate_obs > 0)  # nor a hidden or zero rate on a log axis
    ax.plot(x_obs[keep], rate_obs[keep], "o", color="k", label="observed, by deprivation decile")
    _log_y(ax)
    ax.set_xlabel("Neighbourhood income deprivation (% of families)")
    ax.set_ylabel(f"{tree.attrs['outcome']} per 10,000 {tree.attrs.get('exposure', 'children')}")
    g = describe(national(post)["gradient_mean_la"])
    (lo, hi), med = g["eti95"].values, float(g["median"])
    ax.set_title(f"Social gradient {med:.2f} (95% CI {lo:.2f}-{hi:.2f}) per 10 points")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def la_names(tree: xr.DataTree) -> np.ndarray:
    """LA names of the fit (its ``la_name`` coordinate), or the LA codes when it has none."""
    const = tree["constant_data"].to_dataset()
    names = const["la_name"] if "la_name" in const.coords else const["la"]
    return np.asarray(names.values).astype(str)


def _national_gradient(post: xr.Dataset) -> float:
    return float(describe(national(post)["gradient_mean_la"])["median"])


def _intervals(ax, pos, table: xr.Dataset, vertical: bool, color: str = "C0") -> None:
    """95% (thin) and 80% (thick) intervals of ``gradient_eti*`` at positions ``pos``."""
    for name, width in (("gradient_eti95", 0.8), ("gradient_eti80", 2.2)):
        lower = table[name].sel(ci_bound="lower").values
        upper = table[name].sel(ci_bound="upper").values
        lines = ax.vlines if vertical else ax.hlines
        lines(pos, lower, upper, color=color, linewidth=width, alpha=0.6)


def la_forest(tree: xr.DataTree) -> Figure:
    """Per-LA gradient scores by name, steepest first.

    Returns
    -------
    Figure
        One axes, one row per LA (dim ``la``), labelled with the LA's name (the fit's
        ``la_name`` coordinate; its code when the fit has none): median (point), 80% (thick)
        and 95% (thin) equal-tailed intervals on a log axis, ordered by median gradient
        (steepest at the top); LAs with no within-LA spread of deprivation (not ranked:
        their score is the model's pooling) as open points; the national gradient (LA at
        mean deprivation, exp(b_w)) as a dashed line with its 95% interval shaded. Height
        grows with the number of LAs (about 0.12 inch a row) so 150 names stay legible.
    """
    table = la_table(tree)
    order = np.argsort(-table["gradient_median"].values, kind="stable")
    table = table.isel(la=order)
    names = la_names(tree)[order]
    n = table.sizes["la"]
    pos = np.arange(n)
    fontsize = 7 if n <= 60 else 5.5
    fig = Figure(figsize=(6.5, max(3.0, 0.12 * n + 1.4)), layout="constrained")
    ax = fig.add_subplot()
    post = tree["posterior"].to_dataset()
    g = describe(national(post)["gradient_mean_la"])
    lo, hi = g["eti95"].values
    ax.axvspan(lo, hi, color="0.85", linewidth=0, zorder=0)
    ax.axvline(
        float(g["median"]),
        color="k",
        linestyle="--",
        linewidth=1,
        label=f"national (LA at mean deprivation) {float(g['median']):.2f}, 95% shaded",
    )
    _intervals(ax, pos, table, vertical=False)
    ranked = table["ranked"].values.astype(bool)
    med = table["gradient_median"].values
    ax.plot(
        med[ranked],
        pos[ranked],
        "o",
        color="C0",
        ms=2.5,
        label="LA (median, 80% and 95% intervals)",
    )
    if (~ranked).any():
        ax.plot(
            med[~ranked],
            pos[~ranked],
            "o",
            mfc="white",
            color="C0",
            ms=2.5,
            label="LA without spread of deprivation (pooled, not ranked)",
        )
    ax.axvline(1.0, color="0.5", linewidth=0.8)  # no gradient
    ax.set_yticks(pos, names, fontsize=fontsize)
    ax.set_ylim(n - 0.5, -0.5)
    _ratio_axis(ax.xaxis)
    ax.tick_params(axis="x", labelsize=fontsize + 1, top=True, labeltop=n > 40)
    ax.grid(axis="x", which="major", color="0.9", linewidth=0.5)
    ax.set_axisbelow(True)
    ax.set_xlabel("Social gradient score (rate ratio per 10 points of deprivation)")
    ax.set_title(
        f"{tree.attrs['outcome']}: social gradient by local authority ({n} LAs)", fontsize="medium"
    )
    ax.legend(loc="lower right", fontsize="x-small", framealpha=0.9)
    return fig


def la_caterpillar(tree: xr.DataTree, n: int = 100) -> Figure:
    """Per-LA gradient scores against LA mean deprivation.

    Parameters
    ----------
    n : int
        Points of the expected curve.

    Returns
    -------
    Figure
        One axes, x: the LA's child-weighted mean income deprivation (% of families,
        ``(x_bar + m_c)`` in points), y (log): per-LA medians (points) with 95% (thin) and
        80% (thick) intervals; the national gradient median exp(b_w) (horizontal line); the
        model's expected gradient at each LA deprivation, exp(b_w + b_x m_c), median with
        95% band (the cross-level interaction).
    """
    table = la_table(tree).sortby("m_c")
    post = tree["posterior"].to_dataset()
    x_bar = float(tree.attrs["x_bar"])
    la_pct = (x_bar + table["m_c"].values) * UNIT
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    lo, hi = float(table["m_c"].min()), float(table["m_c"].max())
    m_c = xr.DataArray(np.linspace(lo, hi, n), dims="m_c")
    # The hierarchical mean slope of an LA with deprivation m_c (model definition).
    expected = describe(xr.DataArray(np.exp(post["b_w"] + post["b_x"] * m_c)), probs=(0.95,))
    bounds = expected["eti95"]
    grid = (x_bar + m_c.values) * UNIT
    ax.fill_between(
        grid,
        bounds.sel(ci_bound="lower"),
        bounds.sel(ci_bound="upper"),
        color="C3",
        alpha=0.15,
        linewidth=0,
    )
    ax.plot(
        grid,
        expected["median"].values,
        color="C3",
        label="expected at LA deprivation: exp(b_w + b_x m_c), 95% band",
    )
    national_g = _national_gradient(post)
    ax.axhline(
        national_g,
        color="k",
        linestyle="--",
        linewidth=1,
        label=f"national (LA at mean deprivation) {national_g:.2f}",
    )
    _intervals(ax, la_pct, table, vertical=True)
    ax.plot(
        la_pct,
        table["gradient_median"].values,
        "o",
        color="C0",
        ms=3,
        label="LA gradient (median, 80% and 95% intervals)",
    )
    ax.set_xlabel("LA mean income deprivation (% of families, child-weighted)")
    ax.set_ylabel("Social gradient score (rate ratio per 10 points)")
    _ratio_axis(ax.yaxis)
    ax.legend(loc="best", fontsize="small")
    return fig


def inverse_intervention(tree: xr.DataTree, half_range: float = 15.0, n: int = 60) -> Figure:
    """Modelled rate curves for an affluent, an average and a deprived LA.

    Parameters
    ----------
    half_range : float
        Each curve spans its LA's mean deprivation +/- this many percentage points,
        clipped to 0.5%-65%.
    n : int
        Points per curve.

    Returns
    -------
    Figure
        One axes with three median curves (LA ``m_c`` = -1, 0, +1) and their 95% bands;
        the legend gives each LA type's mean deprivation and median gradient score.
    """
    post = tree["posterior"].to_dataset()
    x_bar = float(tree.attrs["x_bar"])
    scores = national(post)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, (m_c, score)) in enumerate(LA_TYPES.items()):
        mean_pct = (x_bar + m_c) * UNIT
        lo, hi = np.clip([mean_pct - half_range, mean_pct + half_range], 0.5, 65.0)
        income = np.linspace(lo, hi, n) / 100
        curve = rate_curve(post, income, {name: m_c}, x_bar, _link(tree)).sel(
            la_type=name, drop=True
        )
        summary = describe(curve, probs=(0.95,))
        color, bounds = f"C{i}", summary["eti95"]
        lower, upper = bounds.sel(ci_bound="lower"), bounds.sel(ci_bound="upper")
        ax.fill_between(100 * income, lower, upper, color=color, alpha=0.2, linewidth=0)
        g = float(scores[score].median())
        ax.plot(
            100 * income,
            summary["median"].values,
            color=color,
            label=f"{name} LA (mean {mean_pct:.0f}%): gradient {g:.2f}",
        )
    _log_y(ax)
    ax.set_xlabel("Neighbourhood income deprivation (% of families)")
    ax.set_ylabel(f"{tree.attrs['outcome']} per 10,000 {tree.attrs.get('exposure', 'children')}")
    ax.set_title("Rates by neighbourhood deprivation in LAs of differing deprivation")
    ax.legend(loc="upper left", fontsize="small")
    return fig


FIGURES: dict[str, Callable[..., Figure]] = {
    "gradient_curve": gradient_curve,
    "la_caterpillar": la_caterpillar,
    "la_forest": la_forest,
    "la_map": la_map,
    "inverse_intervention": inverse_intervention,
    "ppc": ppc_plot,
    "deprivation_curve": deprivation_curve,  # written by save_all for spline fits only
}


def save_all(
    tree: xr.DataTree,
    out_dir: str | Path,
    dpi: int = DPI,
    observed=None,
    checks=None,
    boundaries=None,
) -> dict[str, Path]:
    """Write every figure as ``<name>.png`` in ``out_dir``, each atomically.

    ``observed`` (for ``gradient_curve``) and ``checks`` (for ``ppc``): the observed numbers
    to draw, e.g. gated for release; default: computed from the tree. ``boundaries`` (for
    ``la_map``): the ONS boundary file or a folder holding it
    (:func:`socialgradient.results.maps.find_boundaries`, which also looks under
    ``$SOCIALGRADIENT_SHARED``); without one the map is not drawn.

    Returns
    -------
    dict
        Figure name (``gradient_curve``, ``la_caterpillar``, ``la_forest``, ``la_map`` when
        the boundaries were found, ``inverse_intervention``, ``ppc``, ``deprivation_curve``
        for a spline fit) -> path written.
    """
    forget_unloaded_jax()
    paths = {}
    found = find_boundaries(boundaries)
    options = {
        "gradient_curve": {"observed": observed},
        "ppc": {"checks": checks},
        "la_map": {"boundaries": found},
        "deprivation_curve": {"observed": observed},
    }
    for name, draw in FIGURES.items():
        if (name == "la_map" and found is None) or (
            name == "deprivation_curve" and "curve_coef" not in tree["posterior"]
        ):
            continue
        fig = draw(tree, **options.get(name, {}))
        try:
            write = partial(fig.savefig, dpi=dpi, format="png")
            paths[name] = atomic_write(Path(out_dir) / f"{name}.png", write)
        finally:
            fig.clear()  # a bare Figure is not registered with pyplot: clearing frees it
    return paths


def _link(tree: xr.DataTree) -> str:
    return families.get(tree.attrs["family"]).link
