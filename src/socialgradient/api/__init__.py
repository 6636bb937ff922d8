"""The Python API, one call per step, mirroring the command line.

The facade is this package: the panel's calls are :mod:`socialgradient.api.panel`, the
census returns' :mod:`socialgradient.api.census`, all importable from here.

>>> import socialgradient.api as sg
>>> table = sg.default_data()                       # or sg.load("my_table.csv", ["referrals"])
>>> tree = sg.fit(table, "referrals", draws=500)     # validated, encoded, sampled
>>> sg.summarise(tree)["gradient_mean_la"]           # medians and 95%/80% ETIs
>>> sg.la_gradients(tree)                            # one row per LA
>>> sg.predict(tree, new_neighbourhoods)             # rate and gradient draws
>>> sg.predict(tree, new_cells, counts=True)         # ... and predictive counts
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

import typing
from collections.abc import Callable
from typing import cast

import pandas as pd
import xarray as xr

from socialgradient import resources
from socialgradient.api.census import read_returns, write_returns  # noqa: F401 (API)
from socialgradient.api.modelling import (  # noqa: F401 (API)
    _setting,
    _spec,
    assemble,
    build,
    prior_predictive,
)
from socialgradient.api.panel import (  # noqa: F401 (API)
    build_panel,
    diagnose_panel,
    fit_panel,
    gradient_by_year,
    load_panel_spec,
    panel_data_missing,
    panel_la_table,
    plot_panel,
    summarise_panel,
    write_panel,
)
from socialgradient.api.publishing import publish  # noqa: F401 (API)
from socialgradient.data import schema
from socialgradient.data.census import linkage
from socialgradient.data.synthetic import england, records
from socialgradient.model import encode as _encode
from socialgradient.model.build import build_model  # noqa: F401 (API; the docs read its module)
from socialgradient.model.data import NeighbourhoodData  # noqa: F401 (API)
from socialgradient.release import joint as joint_release
from socialgradient.release import report
from socialgradient.results import checks
from socialgradient.results import compare as _compare
from socialgradient.results.testing import assert_converged, assert_covers, assert_ppc  # noqa: F401 (API)
from socialgradient.sampling import fit as _fit
from socialgradient.sampling import joint as joint_fit
from socialgradient.sampling import predict as _predict
from socialgradient.spec import RecordsTable, Sampling, Spec, load_spec  # noqa: F401 (API)

if typing.TYPE_CHECKING:  # (not `from typing import`: the docs list api's capitals)
    from matplotlib.figure import Figure

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
    """Return the truth of the embedded default data (``data/truth.json``).

    Returns
    -------
    dict
        What the default table's counts were drawn from: per threshold
        (``["thresholds"][outcome]``) and per LA.

    Examples
    --------
    >>> import socialgradient.api as sg
    >>> sg.default_truth()["thresholds"]["referrals"]["gradient_mean_la"]  # doctest: +SKIP
    """
    import json

    return json.loads(resources.path("data", "truth.json").read_text(encoding="utf-8"))


def default_data() -> pd.DataFrame:
    """Return the embedded default synthetic England (``data/neighbourhoods.parquet``).

    A wheel carries it (:mod:`socialgradient.resources`); should it be missing (a bare copy
    of ``src/``) the same table is regenerated with the default seed.

    Returns
    -------
    pandas.DataFrame
        One row per LSOA: ``lsoa``, ``la``, ``income``, ``children``, the counts, ...

    Examples
    --------
    >>> import socialgradient.api as sg
    >>> table = sg.default_data()  # doctest: +SKIP
    """
    if DEFAULT_DATA.exists():
        return pd.read_parquet(DEFAULT_DATA)
    return england.simulate().table


def records_table(spec: Spec | RecordsTable, scale: float | None = None):
    """Return the aggregate of the synthetic child records a spec with ``[records]`` is fitted to.

    :func:`socialgradient.study.aggregates.build` of the spec's records table.

    Parameters
    ----------
    spec : Spec or RecordsTable
        A spec with a ``[records]`` table, or that table.
    scale : float, optional
        Overrides the simulation's scale (e.g. 0.05 for a quick look).

    Returns
    -------
    object
        ``.table`` (model input), ``.truth`` (the records' truth), ``.dropped`` (rows left
        out, by reason), ``.linkage`` (the linkage report's counts).

    Raises
    ------
    ValueError
        A spec without a ``[records]`` table (it is fitted to a neighbourhood table).

    Examples
    --------
    >>> import socialgradient.api as sg
    >>> spec = sg.load_spec(sg.MODELS / "strata_age_band.toml")  # doctest: +SKIP
    >>> agg = sg.records_table(spec, scale=0.05)  # doctest: +SKIP
    >>> tree = sg.fit(agg.table, spec)  # doctest: +SKIP
    """
    from dataclasses import replace

    from socialgradient.study import aggregates

    if not isinstance(spec, Spec):
        source = spec
    elif spec.records is None:
        raise ValueError(
            f"spec {spec.name!r} has no [records] table: it is fitted to a "
            "neighbourhood table (e.g. sg.default_data())"
        )
    else:
        source = spec.records
    return aggregates.build(replace(source, scale=scale) if scale else source)


encode = _encode.encode


def fit(
    table: pd.DataFrame,
    spec: Spec | str = "referrals",
    *,
    progressbar: bool = True,
    la_table: pd.DataFrame | None = None,
    pointwise: bool = True,
    **changes,
) -> xr.DataTree:
    """Validate, encode and fit a table.

    Parameters
    ----------
    table : pandas.DataFrame
        The neighbourhood table (or a records aggregate's ``.table``).
    spec : Spec or str, default "referrals"
        A spec, or an outcome name: a spec of the defaults that samples to the target
        (``stop = "target"``: R-hat <= 1.01, bulk and tail ESS >= 400; ``draws=N`` for N
        fixed draws). A spec with several ``outcomes`` is fitted as the joint threshold model.
    progressbar : bool, default True
        Show the sampler's progress bar.
    la_table : pandas.DataFrame, optional
        The LA moderators' table, instead of the spec's ``la_data`` path.
    pointwise : bool, default True
        ``False`` leaves the pointwise log-likelihood out (LOO comparisons and
        :func:`load_fit` compute it when missing).
    **changes
        Spec fields to override (``family=``, ``draws=``, ``seed=``,
        ``neighbourhood_moderators=``, ``priors={...}``, ...).

    Returns
    -------
    xarray.DataTree
        The fit: posterior, sample stats, observed and constant data, predictions.

    Raises
    ------
    InputError
        The table breaks the input contract (:mod:`socialgradient.data.schema`).
    ValueError
        An invalid spec field.

    Examples
    --------
    >>> import socialgradient.api as sg
    >>> tree = sg.fit(sg.default_data(), "referrals", draws=500)  # doctest: +SKIP
    >>> sg.summarise(tree)["gradient_mean_la"]  # doctest: +SKIP
    """
    if isinstance(spec, str):
        spec = Spec(outcome=spec, sampling=Sampling(stop="target"))
    spec = _spec(spec, **changes)
    data = encode(table, spec, la_table=la_table)
    if isinstance(data, list):  # a joint spec: one NeighbourhoodData per threshold
        return joint_fit.fit(data, spec, progressbar=progressbar)
    return _fit.fit(data, spec, progressbar=progressbar, pointwise=pointwise)


def la_gradients(tree: xr.DataTree) -> pd.DataFrame:
    """Tabulate each LA's gradient and rank.

    Unprotected: :func:`write` passes it through the disclosure gate.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit of :func:`fit`.

    Returns
    -------
    pandas.DataFrame
        One row per LA (per threshold, in a ``threshold`` column, for a joint fit):
        gradient and rank with 95%/80% ETIs, size and observed rate.
    """
    names = joint_fit.outcomes(tree)
    if not names:
        return report.la_gradients(tree)
    return pd.concat(
        [report.la_gradients(joint_fit.view(tree, o)).assign(threshold=o) for o in names],
        ignore_index=True,
    ).pipe(lambda t: t[["threshold", *[c for c in t.columns if c != "threshold"]]])


def plot(tree: xr.DataTree, kind: str):
    """Draw one figure of a fit.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit of :func:`fit`.
    kind : str
        ``gradient_curve``, ``la_caterpillar``, ``la_forest``, ``la_map`` (needs the ONS
        boundaries, see :func:`socialgradient.results.maps.find_boundaries`),
        ``inverse_intervention``, ``ppc`` or ``deprivation_curve`` (the curve and its local
        gradients by income decile, :mod:`socialgradient.results.plot_curve`).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    Raises
    ------
    ValueError
        An unknown ``kind``.
    """
    from socialgradient.results import plots

    kinds = plots.FIGURES
    if kind not in kinds:
        raise ValueError(f"unknown plot {kind!r}: choose one of {sorted(kinds)}")
    # FIGURES mixes figure functions of different keyword arguments: each takes the tree
    return cast("Callable[[xr.DataTree], Figure]", kinds[kind])(tree)


def summarise(tree: xr.DataTree, diagnostics: dict | None = None) -> dict:
    """Summarise a fit: the content of ``summary.json``.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit of :func:`fit`.
    diagnostics : dict, optional
        The fit's :func:`diagnose` (computed when not given).

    Returns
    -------
    dict
        The headline quantities with 95%/80% ETIs and the diagnostics; for a joint
        threshold fit also every threshold and the steepening probabilities.
    """
    if joint_fit.outcomes(tree):
        return joint_release.summary(tree, diagnostics)
    return report.summary(tree, diagnostics)


def write(tree: xr.DataTree, out_dir, **kwargs) -> dict:
    """Write the fit's output set (``release/``, ``internal/``, manifest), all or nothing.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit of :func:`fit`.
    out_dir : str or Path
        The output folder (an output set).
    **kwargs
        ``extra`` (keys added to ``summary.json``), ``rule`` (the disclosure rule),
        ``posterior``, ``command`` and ``ledger``, as
        :func:`socialgradient.release.report.write` takes them.

    Returns
    -------
    dict
        Output name -> final path.

    Raises
    ------
    DisclosureError
        A release the disclosure rule or the release ledger refuses.
    OSError
        ``out_dir`` cannot hold an output set.
    """
    if joint_fit.outcomes(tree):
        return joint_release.write(tree, out_dir, **kwargs)
    return report.write(tree, out_dir, **kwargs)


def compare(a, b, names: tuple[str, str] = ("A", "B")) -> dict:
    """Compare two fits of the same rows by PSIS-LOO: ``elpd_diff``, its ``se``, Pareto k.

    Any two fits that predict the same rows (the same observed counts, row labels and
    order) can be compared: other covariates or moderators, another family, strata of the
    model terms, priors. What the numbers mean: :mod:`socialgradient.results.compare`.

    Parameters
    ----------
    a, b : DataTree, str or Path
        Fits, output folders written by ``fit``, ``run`` or ``suite`` (their manifests are
        checked), or saved fits (``posterior.nc``).
    names : tuple of str
        Labels of the two fits in the result.

    Returns
    -------
    dict
        ``elpd_diff`` (elpd of ``a`` minus ``b``: positive favours ``a``), ``se``, ``z``,
        ``preferred`` (a name when abs(elpd_diff) > 2 se, else None), ``fits`` (each fit's
        elpd, se, p_loo and ``pareto_k`` counts at ArviZ's sample-size threshold), ``rows``
        (how many and how they are identified) and ``meaning``.

    Raises
    ------
    ValueError
        When the fits predict different rows, or a folder is not a whole output set.

    Examples
    --------
    >>> out = sg.compare("out/referrals", "out/referrals_rural")
    >>> out["elpd_diff"], out["se"], out["preferred"]
    """
    return _compare.compare(a, b, names)
