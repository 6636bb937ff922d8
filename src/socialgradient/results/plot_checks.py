"""Figures on ratio scales: the posterior predictive check and the findings' forest plots.

Split from :mod:`socialgradient.results.plots` (which re-exports :func:`ppc_plot`,
:data:`RATIO_TICKS` and the ratio axis). Ratios are drawn on a log axis labelled at plain
ratios (1, 1.25, 1.5, 2, 2.5 ...); legends sit outside the data; long labels are wrapped,
never cut.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from socialgradient.results.checks import ppc

RATIO_TICKS = (0.25, 0.33, 0.5, 0.67, 0.8, 1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8)
PPC_STATISTICS = ("dispersion", "zero_share")
WRAP = 48  # characters per line of a finding's label


def ratio_axis(axis) -> None:
    """Log scale for a rate-ratio axis, labelled at plain ratios (0.8, 1, 1.25, 1.5, 2, ...)."""
    if axis is axis.axes.xaxis:
        axis.axes.set_xscale("log")
    else:
        axis.axes.set_yscale("log")
    axis.set_major_locator(FixedLocator(RATIO_TICKS))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def ppc_plot(tree: xr.DataTree, statistics=PPC_STATISTICS, checks=None) -> Figure:
    """Posterior predictive checks on a ratio scale: decile totals and summary statistics.

    Parameters
    ----------
    tree : DataTree
        A fitted result.
    statistics : tuple of str
        The summary statistics of the right panel.
    checks : dict, optional
        The checks to draw (e.g. gated for release by
        :func:`socialgradient.release.report.release_ppc`); default :func:`ppc` of the tree.

    Returns
    -------
    Figure
        Two axes, every value divided by its replicated median (1 = the model's median; a
        replicated median of 0 leaves the value unscaled). Left: by deprivation decile, the
        replicated 95% interval (bar) and the observed total (point) on a log ratio axis, so
        that totals from hundreds to tens of thousands share one scale. Right: the same for
        each statistic. Observed values that are NaN (withheld for release) are not drawn,
        and "observed" is in a legend only where some observed value is drawn.
    """
    checks = ppc(tree) if checks is None else checks
    dec = checks["decile"]
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    med, x = dec["replicated_median"].values, dec["decile"].values
    scale = np.where(med > 0, med, 1.0)
    left.vlines(
        x,
        dec["replicated_lower"].values / scale,
        dec["replicated_upper"].values / scale,
        color="C0",
        lw=6,
        alpha=0.5,
        label="replicated 95% interval",
    )
    obs = dec["observed"].values / scale
    if np.isfinite(obs).any():
        left.plot(x, obs, "o", color="k", label="observed")
    left.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ratio_axis(left.yaxis)
    left.set_xticks(x)
    left.set_xlabel("Deprivation decile (1 = least deprived)")
    left.set_ylabel(f"total {tree.attrs['outcome']} / replicated median")
    stat = checks["statistic"].sel(statistic=list(statistics))
    rep_med = stat["replicated_median"].values
    scale = np.where(rep_med > 0, rep_med, 1.0)
    y = np.arange(len(statistics))
    lower, upper = stat["replicated_lower"].values, stat["replicated_upper"].values
    right.hlines(y, lower / scale, upper / scale, color="C0", lw=3, label="replicated 95%")
    right.plot(rep_med / scale, y, "|", color="C0", ms=12)
    values, pv = stat["observed"].values, stat["p_value"].values
    if np.isfinite(values).any():
        right.plot(values / scale, y, "o", color="k", label="observed")
    labels = [
        f"{s}\n({f'obs {values[i]:.3g}, ' if np.isfinite(values[i]) else ''}p={pv[i]:.2f})"
        if np.isfinite(pv[i])
        else f"{s}\n(not released)"
        for i, s in enumerate(statistics)
    ]
    right.set_yticks(y, labels)
    right.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
    right.set_ylim(len(statistics) - 0.4, -0.6)
    right.set_xlabel("relative to replicated median")
    handles, names = [], []
    for ax in (left, right):
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="outside lower center", ncols=len(names), fontsize="small")
    return fig


def additive(quantity: str) -> bool:
    """Whether a quantity is on an additive scale (log effects, correlations: 0 = none)."""
    return quantity.endswith(("contextual_effect", "gradient_deprivation_corr", ".slope"))


def findings_figure(findings: pd.DataFrame, theme: str) -> Figure:
    """Forest plot of one theme's findings.

    Parameters
    ----------
    findings : DataFrame
        Columns ``theme``, ``finding``, ``quantity``, ``median``, ``lo95``, ``hi95``,
        ``truth`` and ``published`` (as :mod:`socialgradient.study.findings` writes them).
    theme : str
        The theme drawn.

    Returns
    -------
    Figure
        Each finding's median and 95% interval, the truth (x) and the study's figure
        (diamond); ratios on a log axis labelled at 1, 1.25, 1.5, 2, 2.5 ..., additive
        quantities in a second panel around 0; labels wrapped at :data:`WRAP` characters
        (never cut); the legend below the axes, outside the data. Probabilities are left out.
    """
    part = findings[(findings["theme"] == theme) & findings["lo95"].notna()]
    groups = [
        (False, part[~part["quantity"].map(additive)]),
        (True, part[part["quantity"].map(additive)]),
    ]
    groups = [(add, g) for add, g in groups if len(g)]
    labels = {add: [textwrap.fill(str(f), WRAP) for f in g["finding"]] for add, g in groups}
    heights = [sum(label.count("\n") + 1 for label in labels[add]) for add, _ in groups]
    fig = Figure(figsize=(11, 1.6 + 0.24 * sum(heights)), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (add, g) in zip(axes, groups, strict=True):
        y = np.arange(len(g))[::-1]
        ax.hlines(y, g["lo95"], g["hi95"], color="tab:blue", lw=2, label="95% interval")
        ax.plot(g["median"], y, "o", color="tab:blue", label="posterior median")
        ax.plot(g["truth"], y, "x", color="black", ms=7, label="synthetic truth")
        if g["published"].notna().any():
            ax.plot(g["published"], y, "D", mfc="none", color="tab:red", label="study")
        ax.axvline(0.0 if add else 1.0, color="grey", lw=0.8, ls=":")
        ax.set_yticks(y, labels[add], fontsize=8)
        ax.set_ylim(-0.6, len(g) - 0.4)
        if add:
            ax.set_xlabel("log-scale effect or correlation (0 = none)")
        else:
            ratio_axis(ax.xaxis)
            ax.set_xlabel("ratio per 10-point rise in deprivation (1 = none)")
        ax.grid(axis="x", color="0.9", linewidth=0.5)
        ax.set_axisbelow(True)
    handles, names = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="outside lower center", ncols=len(names), fontsize=8)
    axes[0].set_title(f"Findings: {theme}")
    return fig
