"""England-sized BYM2 through the package's fit: time and peak RSS against the non-spatial fit.

The default synthetic England (32,844 LSOAs, 150 LAs) with its referrals redrawn around a
BYM2 field of sd 0.3 and rho 0.8 on the shipped real-adjacency graph
(``socialgradient.data.synthetic.spatial.with_field``, seed 1); the package's model (LKJ LA
effects, negative binomial) fitted with and without ``spatial = "bym2"``, each in its own
process so that its peak RSS is its own::

    PYTHONPATH=src python bench/spatial_fit_england.py --draws 200 --tune 200 --chains 2

prints one JSON line per fit (and writes them to ``--out``).

The BYM2 term refuses the negative binomial (its iid part and the NB overdispersion are the
same thing, issue 29), so ``--family`` defaults to ``poisson`` for both fits (the same family
on both sides of the comparison); ``--family negbin`` fits only the non-spatial model.

``--no-field`` fits the default England's table unchanged instead (its truth is spatially
independent: what the BYM2 term should then find is ``spatial_sd`` near 0), and its lines
carry ``"field": false``. ``--save DIR`` also writes each fit with its pointwise
log-likelihood to ``DIR/<kind>.nc`` (after its time and peak RSS are taken) and, once both
are done, prints and writes one more line: ``sg.compare`` of the two (PSIS-LOO, BYM2 minus
non-spatial), from a third process.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(
    kind: str,
    draws: int,
    tune: int,
    chains: int,
    field: bool,
    save: str,
    family: str = "poisson",
    max_draws: int = 0,
) -> dict:
    import numpy as np

    import socialgradient.api as sg
    from socialgradient.data.neighbours import read_neighbours, resolve
    from socialgradient.data.synthetic.spatial import with_field
    from socialgradient.results import checks

    start = time.perf_counter()
    table, truth = sg.default_data(), sg.default_truth()
    if field:
        table, truth = with_field(table, truth, read_neighbours(resolve("synthetic")), 0.3, 0.8, 1)
    t_data = time.perf_counter() - start
    start = time.perf_counter()
    # max_draws > 0: the package's default, sampled to the target within that budget per chain
    sampling = (
        {"max_draws": max_draws} if max_draws else dict(draws=draws, tune=tune, chains=chains)
    )
    if max_draws:
        from socialgradient.spec import Sampling

        tune = Sampling().tune
    tree = sg.fit(
        table,
        "referrals",
        spatial=kind,
        neighbours="synthetic",
        progressbar=False,
        pointwise=False,
        family=family,
        **sampling,
    )
    t_fit = time.perf_counter() - start
    start = time.perf_counter()
    moran = checks.ppc(tree)["spatial"]
    t_ppc = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t_save = None
    if save:  # first, so that a failure below leaves the fit on disk
        from pathlib import Path

        from socialgradient.results.compare import load

        start = time.perf_counter()
        sg.save_fit(load(tree), Path(save) / f"{kind or 'none'}.nc")
        t_save = round(time.perf_counter() - start, 1)
    post = tree["posterior"]
    stats = tree["sample_stats"]
    names = checks.PARAMETERS + (("spatial_sd", "spatial_rho") if kind else ())
    diag = checks.diagnose(tree, names)

    def q(name: str) -> list[float]:
        return [round(float(v), 4) for v in np.quantile(post[name].values, [0.5, 0.025, 0.975])]

    out = {
        "spatial": kind or "none",
        "field": field,
        "data_s": round(t_data, 1),
        "fit_s": round(t_fit, 1),
        "compile_s": round(float(tree.attrs["compile_seconds"]), 1),
        "sampling_s": round(float(tree.attrs["sampling_seconds"]), 1),
        "ppc_s": round(t_ppc, 1),
        "save_s": t_save,
        "peak_rss_mib": round(rss / 1024),
        "divergences": int(stats["diverging"].values.sum()),
        "draws": f"{post.sizes['chain']} x ({tune} + {post.sizes['draw']})",
        "target": json.loads(tree.attrs.get("sampling_target", "null") or "null"),
        "verdict": diag["verdict"],
        "rhat_max": round(diag["rhat_max"], 4),
        "ess_bulk_min": round(diag["ess_bulk_min"]),
        "ess_tail_min": round(diag["ess_tail_min"]),
        "worst_rhat": diag["worst_rhat"],
        "worst_ess": diag["worst_ess"],
        "reasons": diag["reasons"],
        "b_w": q("b_w"),
        "moran_observed": round(float(moran["observed"].values[0]), 4),
        "moran_p": float(moran["p_value"].values[0]),
        "truth_b_w_in_sample": truth["thresholds"]["referrals"].get("b_w"),
        "family": family,
        "la_centred": bool(kind),
    }
    if kind:
        out |= {"spatial_sd": q("spatial_sd"), "spatial_rho": q("spatial_rho")}
        out |= spatial_diagnostics(tree)
    return out


def spatial_diagnostics(tree) -> dict:
    """R-hat and bulk ESS of ``spatial_sd`` and ``spatial_rho``: ``{name}_rhat_ess``."""
    import arviz_stats as az

    post = tree["posterior"].to_dataset()[["spatial_sd", "spatial_rho"]]
    rhat, ess = az.rhat(post), az.ess(post, method="bulk")
    return {
        f"{name}_rhat_ess": [round(float(rhat[name]), 4), round(float(ess[name]))]
        for name in ("spatial_sd", "spatial_rho")
    }


def compare(save: str) -> dict:
    """PSIS-LOO of the saved BYM2 fit against the saved non-spatial one (``sg.compare``)."""
    from pathlib import Path

    import socialgradient.api as sg

    start = time.perf_counter()
    c = sg.compare(Path(save) / "bym2.nc", Path(save) / "none.nc", names=("bym2", "none"))
    pareto = {n: f["pareto_k"] for n, f in c["fits"].items()}
    return {
        "spatial": "loo_bym2_minus_none",
        "elpd_diff": round(c["elpd_diff"], 2),
        "se": round(c["se"], 2),
        "z": round(c["z"], 2),
        "preferred": c["preferred"],
        "elpd": {n: [round(f["elpd"], 1), round(f["se"], 1)] for n, f in c["fits"].items()},
        "p_loo": {n: round(f["p_loo"], 1) for n, f in c["fits"].items()},
        "pareto_k": pareto,
        "diag_diff": c["diag_diff"],
        "compare_s": round(time.perf_counter() - start, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--tune", type=int, default=200)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--one", choices=["none", "bym2"])
    p.add_argument("--out", default="")
    p.add_argument("--no-field", action="store_true", help="the default data, no BYM2 field")
    p.add_argument("--save", default="", help="folder for the fits (.nc) and the LOO line")
    p.add_argument("--compare", action="store_true", help="only the LOO line of --save's fits")
    p.add_argument("--family", default="poisson", help="the family of both fits")
    p.add_argument(
        "--max-draws",
        type=int,
        default=0,
        help="sample to the default target with this draw budget per chain (ignores --draws)",
    )
    a = p.parse_args()
    if a.compare:
        print(json.dumps(compare(a.save)), flush=True)
        return 0
    if a.one:
        kind = "" if a.one == "none" else "bym2"
        line = one(kind, a.draws, a.tune, a.chains, not a.no_field, a.save, a.family, a.max_draws)
        print(json.dumps(line), flush=True)
        return 0
    lines = []
    kinds = ("none",) if a.family == "negbin" else ("none", "bym2")  # BYM2 refuses the NB
    runs = [["--one", kind, "--draws", str(a.draws)] for kind in kinds]
    for run in runs:
        run += ["--tune", str(a.tune), "--chains", str(a.chains), "--family", a.family]
        run += ["--max-draws", str(a.max_draws)]
        run += ["--no-field"] * a.no_field + ["--save", a.save] * bool(a.save)
    if a.save and len(kinds) == 2:
        runs.append(["--compare", "--save", a.save])
    for run in runs:
        done = subprocess.run([sys.executable, __file__, *run], capture_output=True, text=True)
        if done.returncode:
            sys.stderr.write(done.stderr)
            done.check_returncode()
        lines.append(done.stdout.strip().splitlines()[-1])
        print(lines[-1], flush=True)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
