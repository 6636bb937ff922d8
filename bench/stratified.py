"""Benchmark: a ~330k-cell stratified national model (issue target: < 10 minutes, <= 2 GB).

Child-level records for full England (`simulate_records(scale=1)`) aggregated to
LSOA x ethnicity x gender cells (about 322,000 cells, 10 strata), negative binomial with
stratum offsets to the intercept and slope, nutpie 4 chains sampled to the target as
`socialgradient fit` does by default (R-hat <= 1.01, bulk and tail ESS >= 400).

The records are simulated and aggregated in this process and the table written to
`bench/_work/stratified/table.parquet`; the model is fitted in a child process that reads
that file, as a user fitting a table would, so its peak memory (`peak_vmhwm_mb`, the
child's `VmHWM`; `peak_rss_mb` is its `ru_maxrss`) is the fit's own, not the 675,000 simulated records' (`peak_rss_prepare_mb`,
this process's). Writes `bench/stratified.json`; run `python bench/stratified.py` from the
repository root.
"""

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

OUT = Path(__file__).with_name("stratified.json")
WORK = Path(__file__).with_name("_work") / "stratified"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _hwm_mb() -> float:
    """The kernel's high-water mark of this process's own memory since its exec (``VmHWM``).

    ``ru_maxrss`` of an exec'd child also keeps the image it was forked from (Linux carries
    the old image's high-water mark across ``execve``); ``VmHWM`` is the new image's alone.
    """
    with open("/proc/self/status") as f:
        line = next((line for line in f if line.startswith("VmHWM")), "VmHWM: 0 kB")
    return int(line.split()[1]) / 1024


def fit(path: Path) -> dict:
    """Fit the stratified table at ``path``; return the fit's measurements (child process)."""
    from socialgradient import api
    from socialgradient.results import checks
    from socialgradient.spec import Spec

    table = pd.read_parquet(path)
    spec = Spec("referrals", family="negbin", stratum="stratum").replace(stop="target")
    start = time.perf_counter()
    tree = api.fit(table, spec, progressbar=False)
    wall = time.perf_counter() - start
    d = checks.diagnose(tree)
    loglik = tree["log_likelihood"]["referrals"]
    return {
        "fit_wall_s": wall,
        "compile_s": float(tree.attrs["compile_seconds"]),
        "sampling_s": float(tree.attrs["sampling_seconds"]),
        "predictive_draws": int(loglik.sizes["draw"] * loglik.sizes["chain"]),
        "log_likelihood_dtype": str(loglik.dtype),
        "peak_rss_mb": _peak_mb(),
        "peak_vmhwm_mb": _hwm_mb(),
        **{k: d[k] for k in ("rhat_max", "ess_bulk_min", "ess_tail_min", "divergences", "verdict")},
        "reasons": d["reasons"],
        "draws_per_chain": int(tree["posterior"].sizes["draw"]),
        "settings": f"nutpie, negbin, {spec.sampling.chains} chains, {spec.sampling.tune} tuning, "
        f"stop = {spec.sampling.stop!r}",
    }


def main() -> None:
    from socialgradient.data.census import linkage
    from socialgradient.data.synthetic import records

    start = time.perf_counter()
    recs = records.simulate_records(seed=2021, scale=1.0)
    table, report = linkage.aggregate(recs, by=("ethnicity", "gender"))
    table["stratum"] = table["ethnicity"] + "|" + table["gender"]
    prepare = time.perf_counter() - start
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "table.parquet"
    table.to_parquet(path)
    child = subprocess.run(
        [sys.executable, __file__, "--fit", str(path)], check=True, capture_output=True, text=True
    )
    result = {
        "cells": len(table),
        "lsoas": int(table["lsoa"].nunique()),
        "strata": int(table["stratum"].nunique()),
        "linked": report.linked,
        "prepare_s": prepare,
        "peak_rss_prepare_mb": _peak_mb(),
        **json.loads(child.stdout.strip().splitlines()[-1]),
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fit"]:
        print(json.dumps(fit(Path(sys.argv[2]))))
    else:
        main()
