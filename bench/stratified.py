"""Benchmark: a ~330k-cell stratified national model (issue target: < 10 minutes).

Child-level records for full England (`simulate_records(scale=1)`) aggregated to
LSOA x ethnicity x gender cells (323,470 cells, 10 strata), negative binomial with stratum
offsets to the intercept and slope, nutpie 4 chains sampled to the target as `socialgradient
fit` does by default (R-hat <= 1.01, bulk and tail ESS >= 400; issue 32: peak memory <= 2 GB).
Writes `bench/stratified.json`; run `python bench/stratified.py` from the repository root.
"""

import json
import resource
import time
from pathlib import Path

from socialgradient import api
from socialgradient.data.census import linkage
from socialgradient.data.synthetic import records
from socialgradient.results import checks
from socialgradient.spec import Spec

OUT = Path(__file__).with_name("stratified.json")


def main() -> None:
    start = time.perf_counter()
    recs = records.simulate_records(seed=2021, scale=1.0)
    table, report = linkage.aggregate(recs, by=("ethnicity", "gender"))
    table["stratum"] = table["ethnicity"] + "|" + table["gender"]
    prepare = time.perf_counter() - start
    del recs  # the records are not the model's: free them before the fit's memory is read
    rss_prepared = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    spec = Spec("referrals", family="negbin", stratum="stratum").replace(stop="target")
    start = time.perf_counter()
    tree = api.fit(table, spec, progressbar=False)
    wall = time.perf_counter() - start
    d = checks.diagnose(tree)
    result = {
        "cells": len(table),
        "lsoas": int(table["lsoa"].nunique()),
        "strata": int(table["stratum"].nunique()),
        "linked": report.linked,
        "prepare_s": prepare,
        "fit_wall_s": wall,
        "compile_s": float(tree.attrs["compile_seconds"]),
        "sampling_s": float(tree.attrs["sampling_seconds"]),
        "predictive_draws": int(
            tree["log_likelihood"].sizes["draw"] * tree["log_likelihood"].sizes["chain"]
        ),
        "peak_rss_prepare_mb": rss_prepared,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **{k: d[k] for k in ("rhat_max", "ess_bulk_min", "ess_tail_min", "divergences", "verdict")},
        "reasons": d["reasons"],
        "draws_per_chain": int(tree["posterior"].sizes["draw"]),
        "settings": f"nutpie, negbin, {spec.sampling.chains} chains, {spec.sampling.tune} tuning, "
        f"stop = {spec.sampling.stop!r}",
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
