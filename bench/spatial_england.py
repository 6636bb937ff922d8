"""England-sized BYM2 benchmark: time and peak memory with and without the spatial term.

On the synthetic England (``data/neighbourhoods.parquet``, 32,844 LSOAs, 150 LAs) with its
real-adjacency graph (``data/synthetic_neighbours.csv.gz``), counts are drawn from

    y_i ~ Poisson(children_i * exp(a + a_la + (b_w + b_la) * w_i + b_i))

with a BYM2 field ``b`` of known ``sd`` and ``rho`` (``draw_bym2``). Two models are fitted by
nutpie, each in a fresh subprocess so that its peak resident memory is its own: the same
model without the spatial term (the non-spatial fit) and with ``add_bym2``. LA effects are
independent non-centred normals here (not the package's LKJ model, which the spatial term is
not wired into yet): the comparison is of the spatial term's cost and of the within-LA
gradient ``b_w`` with and without it.

Usage::

    PYTHONPATH=src python bench/spatial_england.py --draws 300 --tune 300 --chains 2

Prints one JSON line per model: seconds to build, compile and sample, peak RSS (MiB), the
posterior of ``b_w`` (truth 0.4), and of ``spatial_sd``/``spatial_rho`` (truth given).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TRUTH = {"a": -3.0, "b_w": 0.4, "la_sd": 0.3, "slope_sd": 0.1, "sd": 0.3, "rho": 0.8}


def simulate(seed: int):
    """Return the table, graph, scaling factors and counts of the benchmark."""
    from socialgradient.data.icar import scaling_factors
    from socialgradient.data.neighbours import adjacency_from_file
    from socialgradient.data.synthetic.spatial import draw_bym2

    table = pd.read_parquet(ROOT / "data" / "neighbourhoods.parquet")
    adj = adjacency_from_file(ROOT / "data" / "synthetic_neighbours.csv.gz", table["lsoa"])
    scaling = scaling_factors(adj)
    rng = np.random.default_rng(seed)
    la, la_idx = np.unique(table["la"], return_inverse=True)
    w = ((table["income"] - table.groupby("la")["income"].transform("mean")) * 10).to_numpy()
    a_la = rng.normal(0, TRUTH["la_sd"], len(la))[la_idx]
    b_la = rng.normal(0, TRUTH["slope_sd"], len(la))[la_idx]
    field = draw_bym2(adj, TRUTH["sd"], TRUTH["rho"], seed=rng, scaling=scaling).effect
    eta = TRUTH["a"] + a_la + (TRUTH["b_w"] + b_la) * w + field
    y = rng.poisson(table["children"].to_numpy() * np.exp(eta))
    return table, adj, scaling, la, la_idx, w, y


def fit(spatial: bool, draws: int, tune: int, chains: int, seed: int) -> dict:
    """Build, compile and sample one model; return timings and posterior summaries."""
    import nutpie
    import pymc as pm

    from socialgradient.model.spatial import add_bym2

    start = time.perf_counter()
    table, adj, scaling, la, la_idx, w, y = simulate(seed)
    t_data = time.perf_counter() - start
    start = time.perf_counter()
    with pm.Model(coords={"lsoa": list(adj.codes), "la": list(la)}) as model:
        a = pm.Normal("a", -3.0, 2.0)
        b_w = pm.Normal("b_w", 0.0, 1.0)
        la_sd = pm.HalfNormal("la_sd", 0.5)
        slope_sd = pm.HalfNormal("slope_sd", 0.5)
        z_a = pm.Normal("z_a", 0.0, 1.0, dims="la")
        z_b = pm.Normal("z_b", 0.0, 1.0, dims="la")
        eta = a + la_sd * z_a[la_idx] + (b_w + slope_sd * z_b[la_idx]) * w
        if spatial:
            eta = eta + add_bym2(adj, scaling=scaling)
        mu = table["children"].to_numpy() * pm.math.exp(eta)
        pm.Poisson("y", mu, observed=y, dims="lsoa")
    t_build = time.perf_counter() - start
    start = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    t_compile = time.perf_counter() - start
    start = time.perf_counter()
    idata = nutpie.sample(
        compiled, draws=draws, tune=tune, chains=chains, seed=seed, progress_bar=False
    )
    t_sample = time.perf_counter() - start
    post = idata.posterior

    def interval(name: str) -> dict:
        x = post[name].values.ravel()
        lo, med, hi = np.quantile(x, [0.025, 0.5, 0.975])
        return {"median": float(med), "lo95": float(lo), "hi95": float(hi)}

    stats = idata.sample_stats
    out = {
        "model": "bym2" if spatial else "non-spatial",
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "seconds": {
            "data": round(t_data, 1),
            "build": round(t_build, 1),
            "compile": round(t_compile, 1),
            "sample": round(t_sample, 1),
        },
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "divergences": int(stats["diverging"].values.sum()),
        "mean_tree_depth": float(stats["depth"].values.mean()),
        "b_w": interval("b_w") | {"truth": TRUTH["b_w"]},
    }
    if spatial:
        out["spatial_sd"] = interval("spatial_sd") | {"truth": TRUTH["sd"]}
        out["spatial_rho"] = interval("spatial_rho") | {"truth": TRUTH["rho"]}
    return out


def main() -> None:
    """Run both models in subprocesses (or one, with ``--one``) and print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--one", choices=["bym2", "non-spatial"])
    args = parser.parse_args()
    if args.one:
        result = fit(args.one == "bym2", args.draws, args.tune, args.chains, args.seed)
        print(json.dumps(result), flush=True)
        return
    for which in ("non-spatial", "bym2"):
        cmd = [sys.executable, __file__, "--one", which]
        cmd += ["--draws", str(args.draws), "--tune", str(args.tune)]
        cmd += ["--chains", str(args.chains), "--seed", str(args.seed)]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
