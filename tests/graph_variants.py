"""Small tables and specs that exercise every term of the model, and a fingerprint of the
PyMC graph each builds (free variables in order with their shapes, deterministics and
potentials with their dims, coords, and the log density at two fixed points), for
``tests/test_model_graph.py``."""

from __future__ import annotations

import numpy as np
import pandas as pd

import socialgradient.api as sg
from socialgradient.model.build import build_model
from socialgradient.spec import Spec

LA_DATA = "data/las.parquet"


def base(n_la: int = 6, per_la: int = 25) -> pd.DataFrame:
    """The first ``per_la`` rows of every third LA of the default data."""
    t = sg.default_data()
    las = t["la"].unique()[::3][:n_la]
    return t[t["la"].isin(las)].groupby("la").head(per_la).reset_index(drop=True)


def cells(t: pd.DataFrame) -> pd.DataFrame:
    """LSOA x age band x gender cells with a numeric ``age``, counts split deterministically."""
    out = []
    for k, (band, age) in enumerate((("0-4", 2.0), ("5-9", 7.0), ("10-15", 12.5))):
        for j, gender in enumerate(("M", "F")):
            share = (0.2 + 0.15 * k) * (0.55 if j == 0 else 0.45)
            out.append(
                t.assign(
                    children=(t["children"] * share).round() + 1,
                    referrals=(t["referrals"] * share).round().astype(int),
                    age_band=band,
                    gender=gender,
                    age=age,
                )
            )
    return pd.concat(out, ignore_index=True)


def variants() -> dict[str, tuple[pd.DataFrame, Spec, dict]]:
    """name -> (table, spec, extra keyword arguments of ``sg.encode``)."""
    t = base()
    c = cells(t)
    boys = c[c["gender"] == "M"].reset_index(drop=True)
    binomial = t.assign(trials=t["referrals"] + 7)
    la_out = t.assign(re=t["referrals"] // 3, tr=t["referrals"])
    las = pd.read_parquet(sg.MODELS.parent / "data" / "las.parquet")
    return {
        "negbin": (t, Spec("referrals"), {}),
        "poisson": (t, Spec("referrals", family="poisson"), {}),
        "binomial": (binomial, Spec("referrals", family="binomial", trials="trials"), {}),
        "noncentred": (t, Spec("referrals", la_effects="noncentred"), {}),
        "stratum": (boys, Spec("referrals", stratum="age_band"), {}),
        "strata_trend": (
            c,
            Spec("referrals", strata=["age_band", "gender"], stratum_trend="age"),
            {},
        ),
        "trend": (boys, Spec("referrals", stratum_trend="age"), {}),
        "moderators": (
            t,
            Spec(
                "referrals",
                neighbourhood_moderators=("rural", "density"),
                la_data=LA_DATA,
                la_moderators=("spend_per_child", "turnover"),
            ),
            {"la_table": las},
        ),
        "la_outcome": (
            la_out,
            Spec(
                "referrals",
                la_data=LA_DATA,
                la_outcome={"count": "re", "trials": "tr", "adjust": ["turnover"]},
            ),
            {"la_table": las},
        ),
    }


def fingerprint(model) -> dict:
    """The graph's names, shapes, dims and coords, and its log density at the initial point
    and at a fixed point beside it."""
    point = model.initial_point()
    logp = model.compile_logp()
    moved = {
        k: v + 0.05 * np.sin(np.arange(v.size) + 1.0).reshape(v.shape) for k, v in point.items()
    }
    return {
        "free": [(v.name, tuple(point[model.rvs_to_values[v].name].shape)) for v in model.free_RVs],
        "deterministics": sorted(
            (v.name, tuple(model.named_vars_to_dims.get(v.name) or ()))
            for v in model.deterministics
        ),
        "potentials": sorted(v.name for v in model.potentials),
        "data": sorted(model.data_vars and [v.name for v in model.data_vars]),
        "coords": {k: len(v) for k, v in sorted(model.coords.items())},
        "logp_initial": float(logp(point)),
        "logp_moved": float(logp(moved)),
    }


def build(name: str, likelihood: str = "sufficient"):
    """The model of variant ``name``."""
    table, spec, kw = variants()[name]
    return build_model(sg.encode(table, spec, **kw), spec, likelihood=likelihood)
