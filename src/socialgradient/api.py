"""The Python API, one call per step, mirroring the command line.

>>> import socialgradient.api as sg
>>> table = sg.default_data()                       # or sg.load("my_table.csv", ["referrals"])
>>> tree = sg.fit(table, "referrals", draws=500)     # validated, encoded, sampled
>>> sg.summarise(tree)["gradient_mean_la"]           # medians and 95%/80% ETIs
>>> sg.la_gradients(tree)                            # one row per LA
>>> sg.plot(tree, "la_caterpillar")                  # a matplotlib Figure
>>> recs = sg.simulate_records(years=(2019, 2020))   # CIN-Census-shaped child records
>>> cells, report = sg.aggregate(recs, by=("ethnicity",))  # -> model input, linkage report
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pymc as pm
import xarray as xr

from socialgradient import checks, report
from socialgradient import fit as _fit
from socialgradient.data import schema
from socialgradient.data.census import linkage
from socialgradient.data.synthetic import england, records
from socialgradient.model import NeighbourhoodData, build_model
from socialgradient.spec import Spec

load = schema.load
load_fit = _fit.load
save_fit = _fit.save
diagnose = checks.diagnose
ppc = checks.ppc
loo_compare = checks.loo_compare
summarise = report.summary
la_gradients = report.la_gradients
write = report.write
simulate = england.simulate
simulate_records = records.simulate_records
aggregate = linkage.aggregate

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "data" / "neighbourhoods.parquet"


def default_data() -> pd.DataFrame:
    """The embedded default synthetic England (``data/neighbourhoods.parquet``).

    Outside a repository checkout the same table is regenerated with the default seed.
    """
    if DEFAULT_DATA.exists():
        return pd.read_parquet(DEFAULT_DATA)
    return england.simulate().table


def _spec(spec: Spec | str, **changes) -> Spec:
    spec = Spec(outcome=spec) if isinstance(spec, str) else spec
    return spec.replace(**changes)


def encode(table: pd.DataFrame, outcome: str, stratum: str = "",
           exposure: str = "children") -> NeighbourhoodData:
    """Validate ``table`` for ``outcome`` (``stratum`` cells, ``exposure``) and encode it."""
    valid = schema.validate(table, [outcome], stratum or None, exposure)
    return NeighbourhoodData.from_table(valid, outcome, stratum or None, exposure)


def build(table: pd.DataFrame, spec: Spec | str = "referrals", **changes) -> pm.Model:
    """The PyMC model for a table; ``spec`` is a Spec or an outcome name."""
    spec = _spec(spec, **changes)
    return build_model(encode(table, spec.outcome, spec.stratum, spec.exposure), spec)


def fit(
    table: pd.DataFrame, spec: Spec | str = "referrals", *, progressbar: bool = True, **changes
) -> xr.DataTree:
    """Validate, encode and fit; ``changes`` override spec fields (family=, draws=, seed=...)."""
    spec = _spec(spec, **changes)
    data = encode(table, spec.outcome, spec.stratum, spec.exposure)
    return _fit.fit(data, spec, progressbar=progressbar)


def plot(tree: xr.DataTree, kind: str):
    """One figure: ``gradient_curve``, ``la_caterpillar``, ``inverse_intervention`` or ``ppc``."""
    from socialgradient import plots

    kinds = {
        "gradient_curve": plots.gradient_curve,
        "la_caterpillar": plots.la_caterpillar,
        "inverse_intervention": plots.inverse_intervention,
        "ppc": plots.ppc_plot,
    }
    if kind not in kinds:
        raise ValueError(f"unknown plot {kind!r}: choose one of {sorted(kinds)}")
    return kinds[kind](tree)
