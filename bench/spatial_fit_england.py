"""England-sized BYM2 through the package's fit: time and peak RSS against the non-spatial fit.

The default synthetic England (32,844 LSOAs, 150 LAs) with its referrals redrawn around a
BYM2 field of sd 0.3 and rho 0.8 on the shipped real-adjacency graph
(``socialgradient.data.synthetic.spatial.with_field``, seed 1); the package's model (LKJ LA
effects, negative binomial) fitted with and without ``spatial = "bym2"``, each in its own
process so that its peak RSS is its own::

    PYTHONPATH=src python bench/spatial_fit_england.py --draws 200 --tune 200 --chains 2

prints one JSON line per fit (and writes them to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(kind: str, draws: int, tune: int, chains: int) -> dict:
    import numpy as np

    import socialgradient.api as sg
    from socialgradient.data.neighbours import read_neighbours, resolve
    from socialgradient.data.synthetic.spatial import with_field
    from socialgradient.results import checks

    start = time.perf_counter()
    table, truth = with_field(
        sg.default_data(), sg.default_truth(), read_neighbours(resolve("synthetic")), 0.3, 0.8, 1
    )
    t_data = time.perf_counter() - start
    start = time.perf_counter()
    tree = sg.fit(
        table,
        "referrals",
        spatial=kind,
        neighbours="synthetic",
        draws=draws,
        tune=tune,
        chains=chains,
        progressbar=False,
        pointwise=False,
    )
    t_fit = time.perf_counter() - start
    start = time.perf_counter()
    moran = checks.ppc(tree)["spatial"]
    t_ppc = time.perf_counter() - start
    post = tree["posterior"]
    stats = tree["sample_stats"]

    def q(name: str) -> list[float]:
        return [round(float(v), 4) for v in np.quantile(post[name].values, [0.5, 0.025, 0.975])]

    out = {
        "spatial": kind or "none",
        "data_s": round(t_data, 1),
        "fit_s": round(t_fit, 1),
        "compile_s": round(float(tree.attrs["compile_seconds"]), 1),
        "sampling_s": round(float(tree.attrs["sampling_seconds"]), 1),
        "ppc_s": round(t_ppc, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "divergences": int(stats["diverging"].values.sum()),
        "b_w": q("b_w"),
        "moran_observed": round(float(moran["observed"].values[0]), 4),
        "moran_p": float(moran["p_value"].values[0]),
        "truth_b_w_in_sample": truth["thresholds"]["referrals"].get("b_w"),
    }
    if kind:
        out |= {"spatial_sd": q("spatial_sd"), "spatial_rho": q("spatial_rho")}
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--tune", type=int, default=200)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--one", choices=["none", "bym2"])
    p.add_argument("--out", default="")
    a = p.parse_args()
    if a.one:
        kind = "" if a.one == "none" else "bym2"
        print(json.dumps(one(kind, a.draws, a.tune, a.chains)), flush=True)
        return 0
    lines = []
    for kind in ("none", "bym2"):
        cmd = [sys.executable, __file__, "--one", kind, "--draws", str(a.draws)]
        cmd += ["--tune", str(a.tune), "--chains", str(a.chains)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        lines.append(done.stdout.strip().splitlines()[-1])
        print(lines[-1], flush=True)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
