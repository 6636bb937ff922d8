"""Fake fitted results, for tests that need a fit's layout but not a sampler.

:func:`fake_tree` draws a posterior from numpy around a known truth and assembles it
exactly as :func:`socialgradient.sampling.fit.fit` does (via ``fit.assemble``), so the tree has
the real groups, dims, coords and attrs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from socialgradient.model.data import EFFECTS, NeighbourhoodData
from socialgradient.sampling.fit import assemble
from socialgradient.spec import Spec

TRUTH = {"a": -4.0, "b_w": 0.5, "b_b": 0.3, "b_x": -0.1, "phi": 8.0}


def fake_table(n_la: int = 6, n_lsoa_per_la: int = 20, seed: int = 0) -> pd.DataFrame:
    """A small neighbourhood table: lsoa, la, children, income, referrals."""
    rng = np.random.default_rng(seed)
    n = n_la * n_lsoa_per_la
    la = np.repeat([f"E06{i + 1:06d}" for i in range(n_la)], n_lsoa_per_la)
    la_mean = np.repeat(rng.uniform(0.08, 0.30, n_la), n_lsoa_per_la)
    income = np.clip(la_mean + rng.normal(0, 0.06, n), 0.01, 0.7)
    children = rng.integers(150, 600, n).astype(float)
    x = income * 10
    rate = np.exp(TRUTH["a"] + TRUTH["b_w"] * (x - x.mean()))
    return pd.DataFrame(
        {
            "lsoa": [f"E019{i:05d}" for i in range(n)],
            "la": la,
            "children": children,
            "income": income,
            "referrals": rng.poisson(children * rate),
        }
    )


def fake_tree(
    n_la: int = 6,
    n_lsoa_per_la: int = 20,
    chains: int = 2,
    draws: int = 50,
    family: str = "negbin",
    seed: int = 0,
) -> xr.DataTree:
    """A fitted-looking DataTree for :func:`fake_table`, with posterior drawn from numpy."""
    rng = np.random.default_rng(seed)
    table = fake_table(n_la, n_lsoa_per_la, seed)
    table["la_name"] = "Authority " + table["la"].str[-2:]  # names travel as a coordinate
    data = NeighbourhoodData.from_table(table, "referrals")
    shape = (chains, draws)
    sd = 0.05
    scalars = {k: TRUTH[k] + rng.normal(0, sd, shape) for k in ("a", "b_w", "b_b", "b_x")}
    la_sd = np.abs(np.array([0.2, 0.1]) + rng.normal(0, 0.02, (*shape, 2)))
    centre = np.stack(
        [
            scalars["a"][..., None] + scalars["b_b"][..., None] * data.m_c,
            scalars["b_w"][..., None] + scalars["b_x"][..., None] * data.m_c,
        ],
        axis=-1,
    )
    la_effect = centre + la_sd[:, :, None, :] * rng.normal(size=(*shape, n_la, 2))
    sample = ("chain", "draw")
    posterior = xr.Dataset(
        {
            **{k: (sample, v) for k, v in scalars.items()},
            "la_effect": ((*sample, "la", "effect"), la_effect),
            "la_sd": ((*sample, "effect"), la_sd),
            "la_corr": (sample, np.tanh(rng.normal(0, 0.2, shape))),
            "phi": (sample, TRUTH["phi"] * np.exp(rng.normal(0, 0.1, shape))),
        },
        coords={
            "chain": np.arange(chains),
            "draw": np.arange(draws),
            "la": data.la,
            "effect": list(EFFECTS),
        },
    )
    if family == "poisson":
        posterior = posterior.drop_vars("phi")
    sample_stats = xr.Dataset(
        {
            "diverging": (sample, np.zeros(shape, dtype=bool)),
            "energy": (sample, rng.normal(100, 5, shape)),
        },
        coords={"chain": np.arange(chains), "draw": np.arange(draws)},
    )
    raw = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": sample_stats})
    spec = Spec("referrals", family=family)
    return assemble(raw, data, spec)
