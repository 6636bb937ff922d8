"""The LA panel model's figures: the gradient by year, and LA rates against deprivation."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd
import xarray as xr

from socialgradient.panel.summaries import _posterior, _quantiles, gradient_by_year

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_gradient(tree: xr.DataTree) -> Figure:
    """Plot the between-LA gradient by year, median with 80% and 95% ETIs."""
    import matplotlib.pyplot as plt

    g = gradient_by_year(tree)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(g["year"], g["lo95"], g["hi95"], alpha=0.2, color="C0", label="95% ETI")
    ax.fill_between(g["year"], g["lo80"], g["hi80"], alpha=0.35, color="C0", label="80% ETI")
    ax.plot(g["year"], g["median"], "o-", color="C0", label="median")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(
        xlabel="year ending 31 March",
        ylabel="rate ratio per 10 points of LA deprivation",
        title=f"Between-LA social gradient: {tree.attrs['measure']}",
    )
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def plot_scatter(tree: xr.DataTree, panel: pd.DataFrame, year: int | None = None) -> Figure:
    """Plot LA rates per 10,000 against LA deprivation in ``year`` (default: the last).

    With the fitted population line exp(a + c_t + (b + d_t) m) and its 95% band.
    """
    import matplotlib.pyplot as plt

    post = _posterior(tree)
    year = int(post["year"].values[-1]) if year is None else int(year)
    rows = panel[(panel["year"] == year) & panel["observed"]]
    grid = np.linspace(panel["m"].min(), panel["m"].max(), 50)
    lin = (
        post["a"]
        + post["year_effect"].sel(year=year)
        + post["log_gradient"].sel(year=year) * xr.DataArray(grid, dims="m")
    )
    # np.exp of a DataArray is a DataArray (numpy's stubs say ndarray)
    band = (
        _quantiles(cast(xr.DataArray, np.exp(lin)))[["lo95", "median", "hi95"]].to_numpy().T * 1e4
    )
    x_bar = float(json.loads(tree.attrs.get("report", "{}")).get("x_bar") or 0.0)
    to_income = grid / 10 + x_bar
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(rows["income"], rows["count"] / rows["exposure"] * 1e4, s=12, alpha=0.7)
    ax.fill_between(to_income, band[0], band[2], alpha=0.25, color="C1", label="95% ETI")
    ax.plot(to_income, band[1], color="C1", label="fitted (LA effect 0)")
    ax.set_yscale("log")
    ax.set(
        xlabel="LA income deprivation (child-weighted mean IoD2019 income score)",
        ylabel="rate per 10,000 children (log scale)",
        title=f"{tree.attrs['measure']} by LA, year to 31 March {year}",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
