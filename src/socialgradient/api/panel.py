"""The between-LA panel on the published DfE tables, one call per step (part of the facade).

Re-exported by :mod:`socialgradient.api` (``sg.load_panel_spec``, ``sg.build_panel``,
``sg.fit_panel``, ...); the model is :mod:`socialgradient.panel.model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import xarray as xr

if TYPE_CHECKING:
    from socialgradient.panel.model import PanelSpec


def load_panel_spec(path: str | Path) -> PanelSpec:
    """Read a panel spec.

    Parameters
    ----------
    path : str or Path
        A panel spec's TOML file (``models/la_panel_*.toml``, e.g.
        ``sg.MODELS / "la_panel_referrals.toml"``).

    Returns
    -------
    PanelSpec
        The spec (:class:`socialgradient.panel.model.PanelSpec`).

    Examples
    --------
    >>> import socialgradient.api as sg
    >>> spec = sg.load_panel_spec(sg.MODELS / "la_panel_referrals.toml")  # doctest: +SKIP
    """
    from socialgradient.panel import model as panel

    return panel.load_panel_spec(path)


def build_panel(shared_dir: str | Path, spec: PanelSpec) -> tuple[pd.DataFrame, dict]:
    """Build the LA x year panel of a panel spec from the shared public data folder.

    As ``socialgradient panel`` builds it: reorganised areas are merged onto one geography
    when the spec says so (``dfe_merges``).

    Parameters
    ----------
    shared_dir : str or Path
        The shared public data folder (``dfe_csc/``, ``population_la/``, ``iod2019/``,
        ``la_lookups/``, ``ruc2011/``; :func:`panel_data_missing` names those absent).
    spec : PanelSpec
        The panel spec (:func:`load_panel_spec`): its measure and years.

    Returns
    -------
    panel : pandas.DataFrame
        One row per LA and year.
    report : dict
        How the panel was assembled from the shared folder's files.
    """
    from socialgradient.data.sources.geo import DFE_MERGES
    from socialgradient.panel.data import build_panel as build

    return build(
        shared_dir,
        spec.measure,
        spec.first_year,
        spec.last_year or None,
        DFE_MERGES if spec.dfe_merges else (),
    )


def panel_data_missing(shared_dir: str | Path) -> list[str]:
    """Name the folders of ``shared_dir`` that the panel needs and that are not there.

    Parameters
    ----------
    shared_dir : str or Path
        The shared public data folder.

    Returns
    -------
    list of str
        The missing folders' paths; empty when all are there.
    """
    needed = ("dfe_csc", "population_la", "iod2019", "la_lookups", "ruc2011")
    return [str(p) for name in needed if not (p := Path(shared_dir) / name).is_dir()]


def fit_panel(
    panel: pd.DataFrame, spec: PanelSpec, report: dict | None = None, progressbar: bool = False
) -> xr.DataTree:
    """Fit the panel model (:func:`socialgradient.panel.model.fit_panel`).

    Parameters
    ----------
    panel : pandas.DataFrame
        The LA x year panel of :func:`build_panel`.
    spec : PanelSpec
        The panel spec.
    report : dict, optional
        The build report of :func:`build_panel`, kept with the fit.
    progressbar : bool, default False
        Show the sampler's progress bar.

    Returns
    -------
    xarray.DataTree
        The fit: ``posterior``, ``sample_stats``, ``observed_data``, ``constant_data``.
    """
    from socialgradient.panel import model as _panel

    return _panel.fit_panel(panel, spec, report, progressbar=progressbar)


def diagnose_panel(tree: xr.DataTree) -> dict:
    """Check the convergence of a panel fit over the panel model's parameters.

    The same PASS/WARN/FAIL rules as :func:`socialgradient.api.diagnose`.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit of :func:`fit_panel`.

    Returns
    -------
    dict
        The diagnostics and their ``verdict``.
    """
    from socialgradient.panel import model as panel

    return panel.diagnose_panel(tree)


def summarise_panel(tree: xr.DataTree, diagnostics: dict | None = None) -> dict:
    """Summarise a panel fit in its headline numbers.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit of :func:`fit_panel`.
    diagnostics : dict, optional
        The fit's :func:`diagnose_panel` (computed when not given).

    Returns
    -------
    dict
        The gradient by year, its change from the first to the last year, ``la_sd``,
        ``phi`` and the diagnostics.
    """
    from socialgradient.panel import model as panel

    return panel.summarise_panel(tree, diagnostics)


def gradient_by_year(tree: xr.DataTree) -> pd.DataFrame:
    """Tabulate the between-LA gradient per year.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit of :func:`fit_panel`.

    Returns
    -------
    pandas.DataFrame
        One row per year: the median and 95% and 80% equal-tailed intervals of the rate
        ratio per 10 points of deprivation.
    """
    from socialgradient.panel import model as panel

    return panel.gradient_by_year(tree)


def panel_la_table(tree: xr.DataTree, panel: pd.DataFrame) -> pd.DataFrame:
    """Tabulate the LAs of a panel fit.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit of :func:`fit_panel`.
    panel : pandas.DataFrame
        The panel it was fitted to.

    Returns
    -------
    pandas.DataFrame
        One row per LA: deprivation, observed rate, LA effect with its 95% interval.
    """
    from socialgradient.panel import model as _panel

    return _panel.la_table(tree, panel)


def plot_panel(tree: xr.DataTree, kind: str, panel: pd.DataFrame | None = None):
    """Draw a panel figure.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit of :func:`fit_panel`.
    kind : {"gradient_by_year", "la_scatter"}
        The gradient by year, or the LAs' rates against their deprivation.
    panel : pandas.DataFrame, optional
        The panel the fit was made on; needed by ``la_scatter``.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    Raises
    ------
    ValueError
        An unknown ``kind``, or ``la_scatter`` without ``panel``.
    """
    from socialgradient.panel import model as _panel

    if kind == "gradient_by_year":
        return _panel.plot_gradient(tree)
    if kind == "la_scatter":
        if panel is None:
            raise ValueError("plot_panel(tree, 'la_scatter', panel): the panel is needed")
        return _panel.plot_scatter(tree, panel)
    raise ValueError(f"unknown panel plot {kind!r}: choose gradient_by_year or la_scatter")


def write_panel(
    tree: xr.DataTree, panel: pd.DataFrame, out_dir: str | Path, boundaries=None
) -> dict:
    """Write the panel's output set (``release/``, ``internal/``), all or nothing.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit of :func:`fit_panel`.
    panel : pandas.DataFrame
        The panel it was fitted to.
    out_dir : str or Path
        The output folder.
    boundaries : str or Path, optional
        The LA boundary GeoJSON: with it, ``la_map.png`` (and ``map_report.json``) too.

    Returns
    -------
    dict
        ``{"summary": ..., "paths": {file name: final path}}``.
    """
    from socialgradient.panel import model as _panel

    return _panel.write_panel(tree, panel, out_dir, boundaries)
