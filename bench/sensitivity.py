"""Benchmark: power-scaling prior sensitivity on the default data, and what it costs.

The first 40 LAs of the default synthetic England (every LSOA), referrals, the default spec
(negative binomial, nutpie 4 chains x 500 tune / 1000 draws), fitted twice: with the default
priors and with a deliberately strong, wrong prior on the gradient (``b_w_mean = -0.5``,
``b_w = 0.15``: a gradient of 0.61 per 10 points, +-0.15 on the log scale, where the data
say about 1.6). Records each headline quantity's prior and likelihood sensitivity and
diagnosis, the verdict with and without the sensitivity check, and the seconds
:func:`socialgradient.results.sensitivity.power_scaling` takes (best of three, on the fit's
existing pointwise log-likelihood). Writes ``bench/sensitivity.json``; run
``python bench/sensitivity.py`` from the repository root.
"""

import json
import math
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import socialgradient.api as sg
from socialgradient.results import checks, sensitivity
from socialgradient.spec import Priors, Spec

OUT = Path(__file__).with_name("sensitivity.json")
N_LA = 40
PRIORS = {"default": Priors(), "strong_wrong_b_w": Priors(b_w_mean=-0.5, b_w=0.15)}


def main() -> None:
    t = sg.default_data()
    table = t[t["la"].isin(t["la"].unique()[:N_LA])].reset_index(drop=True)
    out: dict = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "las": N_LA,
        "lsoas": len(table),
        "fits": {},
    }
    for label, priors in PRIORS.items():
        start = time.perf_counter()
        tree = sg.fit(table, Spec("referrals", priors=priors), progressbar=False)
        fit_seconds = time.perf_counter() - start
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            sens = sensitivity.power_scaling(tree)
            seconds.append(time.perf_counter() - start)
        convergence = checks.diagnose(tree)
        flagged = sensitivity.flag(convergence, sens)
        out["fits"][label] = {
            "priors": {k: v for k, v in vars(priors).items() if not k.startswith("_")},
            "prior_gradient": round(math.exp(priors.b_w_mean), 3),
            "gradient_mean_la_median": round(float(np.exp(tree["posterior"]["b_w"]).median()), 3),
            "fit_seconds": round(fit_seconds, 1),
            "sensitivity_seconds": round(min(seconds), 3),
            "draws": sens["draws"],
            "quantities": sens["quantities"],
            "conflict": sens["conflict"],
            "verdict_convergence": convergence["verdict"],
            "verdict": flagged["verdict"],
            "reasons": flagged["reasons"],
        }
        print(label, json.dumps(out["fits"][label]), flush=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
