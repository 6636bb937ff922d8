"""The Python API, one call per step, mirroring the command line.

>>> import socialgradient.api as sg
>>> table = sg.default_data()                       # or sg.load("my_table.csv", ["referrals"])
>>> tree = sg.fit(table, "referrals", draws=500)     # validated, encoded, sampled
>>> sg.summarise(tree)["gradient_mean_la"]           # medians and 95%/80% ETIs
>>> sg.la_gradients(tree)                            # one row per LA
>>> sg.predict(tree, new_neighbourhoods)             # rate and gradient draws
>>> sg.prior_predictive(table, "referrals")          # what the priors imply
>>> sg.plot(tree, "la_caterpillar")                  # a matplotlib Figure
>>> recs = sg.simulate_records(years=(2019, 2020))   # CIN-Census-shaped child records
>>> cells, report = sg.aggregate(recs, by=("ethnicity",))  # -> model input, linkage report
>>> spec = sg.load_spec("models/strata_age_band.toml")  # a spec with a [records] table
>>> agg = sg.records_table(spec)                     # .table, .truth, .dropped, .linkage
>>> sg.assert_converged(tree); sg.assert_ppc(tree)   # for your own test suite

The between-LA panel on the published DfE tables has its own calls (``sg.load_panel_spec``,
``sg.build_panel``, ``sg.fit_panel``, ``sg.gradient_by_year``, ``sg.write_panel``, ...), as do
census returns (``sg.write_returns``, ``sg.read_returns``). Every fit is an ArviZ DataTree:
``az.summary(tree)``, ``az.plot_forest(tree)`` and ``az.plot_ppc_rootogram(tree)`` work on it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pymc as pm
import xarray as xr

from socialgradient import resources
from socialgradient.data import schema
from socialgradient.data.census import linkage
from socialgradient.data.synthetic import england, records
from socialgradient.model import encode as _encode
from socialgradient.model import parameterisation
from socialgradient.model.build import build_model
from socialgradient.model.data import NeighbourhoodData  # noqa: F401 (API)
from socialgradient.release import joint as joint_release
from socialgradient.release import report
from socialgradient.results import checks
from socialgradient.results.testing import assert_converged, assert_covers, assert_ppc  # noqa: F401 (API)
from socialgradient.sampling import fit as _fit
from socialgradient.sampling import joint as joint_fit
from socialgradient.sampling import predict as _predict
from socialgradient.spec import RecordsTable, Spec, load_spec  # noqa: F401 (API)

load = schema.load
load_fit = _fit.load
save_fit = _fit.save
diagnose = checks.diagnose
ppc = checks.ppc
predict = _predict.predict
loo_compare = checks.loo_compare
simulate = england.simulate
simulate_records = records.simulate_records
aggregate = linkage.aggregate
headline = report.headline  # summarise()'s headline quantities as a plain-text table

# In the wheel (socialgradient/resources/data/) or the checkout (data/): see resources.
DEFAULT_DATA = resources.path("data", "neighbourhoods.parquet")
MODELS = resources.root("models")  # the study's specs: sg.load_spec(sg.MODELS / "...toml")


def default_truth() -> dict:
    """The truth of the embedded default data (``data/truth.json``): what its counts were
    drawn from, per threshold (``["thresholds"][outcome]``) and per LA."""
    import json

    return json.loads(resources.path("data", "truth.json").read_text(encoding="utf-8"))


def default_data() -> pd.DataFrame:
    """The embedded default synthetic England (``data/neighbourhoods.parquet``).

    A wheel carries it (:mod:`socialgradient.resources`); should it be missing (a bare copy
    of ``src/``) the same table is regenerated with the default seed.
    """
    if DEFAULT_DATA.exists():
        return pd.read_parquet(DEFAULT_DATA)
    return england.simulate().table


def records_table(spec: Spec | RecordsTable, scale: float | None = None):
    """The aggregate of the synthetic child records a spec with ``[records]`` is fitted to
    (:func:`socialgradient.study.aggregates.build`): ``.table`` (model input), ``.truth`` (the
    records' truth), ``.dropped`` (rows left out, by reason), ``.linkage`` (the linkage
    report's counts). ``scale`` overrides the simulation's scale (e.g. 0.05 for a quick look).
    """
    from dataclasses import replace

    from socialgradient.study import aggregates

    source = spec.records if isinstance(spec, Spec) else spec
    if source is None:
        raise ValueError(
            f"spec {spec.name!r} has no [records] table: it is fitted to a "
            "neighbourhood table (e.g. sg.default_data())"
        )
    return aggregates.build(replace(source, scale=scale) if scale else source)


def _spec(spec: Spec | str, **changes) -> Spec:
    spec = Spec(outcome=spec) if isinstance(spec, str) else spec
    return spec.replace(**changes)


encode = _encode.encode


def build(
    table: pd.DataFrame,
    spec: Spec | str = "referrals",
    *,
    likelihood: str = "sufficient",
    **changes,
) -> pm.Model:
    """The PyMC model for a table; ``spec`` is a Spec or an outcome name.

    Extend it inside ``with model:`` and sample it yourself, then :func:`assemble` turns the
    draws into a result tree that :func:`summarise`, :func:`la_gradients`, :func:`plot` and
    LOO accept. ``likelihood="pointwise"`` gives an observed per-row variable for PyMC's
    own ``pm.sample_posterior_predictive`` / ``pm.compute_log_likelihood``.
    """
    spec = _spec(spec, **changes)
    return build_model(encode(table, spec), spec, likelihood=likelihood)


def assemble(
    sampled: xr.DataTree, table: pd.DataFrame, spec: Spec | str = "referrals", **changes
) -> xr.DataTree:
    """The result tree of a model built by :func:`build` and sampled by hand (``sampled``:
    the sampler's DataTree) on ``table`` with ``spec``: as :func:`fit` returns."""
    spec = _spec(spec, **changes)
    data = encode(table, spec)
    centred = parameterisation.choose(data, spec.family, spec.la_effects)
    return _fit.assemble(sampled, data, spec, centred=centred)


def fit(
    table: pd.DataFrame,
    spec: Spec | str = "referrals",
    *,
    progressbar: bool = True,
    la_table: pd.DataFrame | None = None,
    pointwise: bool = True,
    **changes,
) -> xr.DataTree:
    """Validate, encode and fit; ``changes`` override spec fields (family=, draws=, seed=,
    neighbourhood_moderators=, priors={...}, ...). ``la_table`` gives the LA moderators'
    table directly instead of the spec's ``la_data`` path. ``pointwise=False`` leaves the
    pointwise log-likelihood out (LOO comparisons and ``load`` compute it when missing)."""
    spec = _spec(spec, **changes)
    data = encode(table, spec, la_table=la_table)
    if spec.outcomes:
        return joint_fit.fit(data, spec, progressbar=progressbar)
    return _fit.fit(data, spec, progressbar=progressbar, pointwise=pointwise)


def la_gradients(tree: xr.DataTree) -> pd.DataFrame:
    """One row per LA (per threshold, in a ``threshold`` column, for a joint fit): gradient
    and rank with 95%/80% ETIs, size and observed rate (unprotected: see ``write``)."""
    names = joint_fit.outcomes(tree)
    if not names:
        return report.la_gradients(tree)
    return pd.concat(
        [report.la_gradients(joint_fit.view(tree, o)).assign(threshold=o) for o in names],
        ignore_index=True,
    ).pipe(lambda t: t[["threshold", *[c for c in t.columns if c != "threshold"]]])


def plot(tree: xr.DataTree, kind: str):
    """One figure: ``gradient_curve``, ``la_caterpillar``, ``la_forest``, ``la_map`` (needs
    the ONS boundaries, see :func:`socialgradient.results.maps.find_boundaries`),
    ``inverse_intervention`` or ``ppc``."""
    from socialgradient.results import plots

    kinds = plots.FIGURES
    if kind not in kinds:
        raise ValueError(f"unknown plot {kind!r}: choose one of {sorted(kinds)}")
    return kinds[kind](tree)


def prior_predictive(
    table: pd.DataFrame,
    spec: Spec | str = "referrals",
    draws: int = 1000,
    seed: int = 0,
    la_table: pd.DataFrame | None = None,
    **changes,
) -> dict:
    """What the priors of ``spec`` imply on ``table`` before seeing its counts:
    :func:`socialgradient.results.checks.prior_predictive` on the validated, encoded table (whose
    counts may be all zero). ``draws``: 1 to 1,000,000; ``seed``: 0 to 2**32 - 1 (as a
    spec's ``sampling.draws`` and ``sampling.seed``), else a ValueError naming them."""
    _setting("draws", draws, 1, 1_000_000)
    _setting("seed", seed, 0, 2**32 - 1)
    spec = _spec(spec, **changes)
    return checks.prior_predictive(
        encode(table, spec, la_table=la_table, events=False), spec, draws, seed
    )


def _setting(name: str, value, lo: int, hi: int) -> None:
    """A whole-number keyword argument in [lo, hi] (not a bool), else a ValueError naming it."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise ValueError(
            f"{name} must be an integer from {lo} to {hi}, got {value!r} ({type(value).__name__})"
        )


def summarise(tree: xr.DataTree, diagnostics: dict | None = None) -> dict:
    """The headline quantities with 95%/80% ETIs and the diagnostics (``summary.json``);
    for a joint threshold fit also every threshold and the steepening probabilities."""
    if joint_fit.outcomes(tree):
        return joint_release.summary(tree, diagnostics)
    return report.summary(tree, diagnostics)


def write(tree: xr.DataTree, out_dir, **kwargs) -> dict:
    """Write the fit's output set (``release/``, ``internal/``, manifest), all or nothing."""
    if joint_fit.outcomes(tree):
        return joint_release.write(tree, out_dir, **kwargs)
    return report.write(tree, out_dir, **kwargs)


# -- census returns (CIN Census XML): write synthetic ones, read and validate real ones -----
def publish(out_dir, site_dir, **kwargs) -> dict:
    """Publish an output set's ``release/`` as a static website and EES data files.

    Parameters
    ----------
    out_dir : path-like
        A verified output set (the folder :func:`write` wrote); never its ``internal/``.
    site_dir : path-like
        The site's folder (created, or replaced if a previous site is there).
    **kwargs
        ``year`` (reporting year of the EES files), ``boundaries`` (the ONS boundary file
        for the map): see :func:`socialgradient.release.publish.publish`.

    Returns
    -------
    dict
        The site's path, its number of pages, LAs and figures, and the EES screening results.
    """
    from socialgradient.release.publish import publish as _publish

    return _publish(out_dir, site_dir, **kwargs)


def write_returns(records, out_dir, **kwargs):
    """One CIN Census XML return per LA and year from child records (e.g. from
    :func:`simulate_records`), plus the linkage files beside them:
    :func:`socialgradient.data.census.returns.write_returns`."""
    from socialgradient.data.census import returns

    return returns.write_returns(records, out_dir, **kwargs)


def read_returns(*args, **kwargs):
    """Read, validate and link a folder of CIN Census XML returns: (records, read report).
    :func:`socialgradient.data.census.returns.read_returns` says the arguments."""
    from socialgradient.data.census import returns

    return returns.read_returns(*args, **kwargs)


# -- the between-LA panel on the real DfE tables (socialgradient.panel.model) ----------------------
def load_panel_spec(path):
    """A panel spec (``models/la_panel_*.toml``, e.g. ``sg.MODELS / "la_panel_referrals.toml"``)."""
    from socialgradient.panel import model as panel

    return panel.load_panel_spec(path)


def build_panel(shared_dir, spec) -> tuple[pd.DataFrame, dict]:
    """The LA x year panel of ``spec`` (a :class:`~socialgradient.panel.model.PanelSpec`) from the
    shared public data folder ``shared_dir``: ``(panel, report)``, as ``socialgradient
    panel`` builds it (reorganised areas merged onto one geography when the spec says so)."""
    from socialgradient.data.sources.geo import DFE_MERGES
    from socialgradient.panel.data import build_panel as build

    return build(
        shared_dir,
        spec.measure,
        spec.first_year,
        spec.last_year or None,
        DFE_MERGES if spec.dfe_merges else (),
    )


def panel_data_missing(shared_dir) -> list[str]:
    """The folders of ``shared_dir`` the panel needs that are not there (empty: all there)."""
    needed = ("dfe_csc", "population_la", "iod2019", "la_lookups", "ruc2011")
    return [str(p) for name in needed if not (p := Path(shared_dir) / name).is_dir()]


def fit_panel(
    panel: pd.DataFrame, spec, report: dict | None = None, progressbar: bool = False
) -> xr.DataTree:
    """Fit the panel model: :func:`socialgradient.panel.model.fit_panel`."""
    from socialgradient.panel import model as _panel

    return _panel.fit_panel(panel, spec, report, progressbar=progressbar)


def diagnose_panel(tree: xr.DataTree) -> dict:
    """:func:`diagnose` over the panel model's parameters."""
    from socialgradient.panel import model as panel

    return panel.diagnose_panel(tree)


def summarise_panel(tree: xr.DataTree, diagnostics: dict | None = None) -> dict:
    """The panel's headline numbers (gradient by year, its change, la_sd, phi, diagnostics)."""
    from socialgradient.panel import model as panel

    return panel.summarise_panel(tree, diagnostics)


def gradient_by_year(tree: xr.DataTree) -> pd.DataFrame:
    """The between-LA gradient per year: median, 95% and 80% ETIs."""
    from socialgradient.panel import model as panel

    return panel.gradient_by_year(tree)


def panel_la_table(tree: xr.DataTree, panel: pd.DataFrame) -> pd.DataFrame:
    """One row per LA of a panel fit: deprivation, observed rate, LA effect with 95% ETI."""
    from socialgradient.panel import model as _panel

    return _panel.la_table(tree, panel)


def plot_panel(tree: xr.DataTree, kind: str, panel: pd.DataFrame | None = None):
    """A panel figure: ``gradient_by_year`` or ``la_scatter`` (needs ``panel``)."""
    from socialgradient.panel import model as _panel

    if kind == "gradient_by_year":
        return _panel.plot_gradient(tree)
    if kind == "la_scatter":
        if panel is None:
            raise ValueError("plot_panel(tree, 'la_scatter', panel): the panel is needed")
        return _panel.plot_scatter(tree, panel)
    raise ValueError(f"unknown panel plot {kind!r}: choose gradient_by_year or la_scatter")


def write_panel(tree: xr.DataTree, panel: pd.DataFrame, out_dir, boundaries=None) -> dict:
    """Write the panel's output set (``release/``, ``internal/``), all or nothing."""
    from socialgradient.panel import model as _panel

    return _panel.write_panel(tree, panel, out_dir, boundaries)
