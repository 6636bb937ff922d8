"""Benchmark: power-scaling prior sensitivity on the default data, and what it costs.

Referrals, the default spec (negative binomial, nutpie 4 chains x 500 tune / 1000 draws),
fitted three times: on the first 40 LAs of the default synthetic England (every LSOA of
them) with the default priors and with a deliberately strong, wrong prior on the gradient
(``b_w_mean = -0.5``, ``b_w = 0.15``: a gradient of 0.61 per 10 points, +-0.15 on the log
scale, where the data say about 1.6), and on the whole default England with the default
priors. Records each headline quantity's prior and likelihood sensitivity and diagnosis,
the verdict with and without the sensitivity check, and the seconds
:func:`socialgradient.results.sensitivity.power_scaling` takes (best of three): on the
fit's existing pointwise log-likelihood (``socialgradient.api.fit``'s default), and
computing it first (``socialgradient fit``, which fits without it). Writes
``bench/sensitivity.json``; run ``python bench/sensitivity.py`` from the repository root.

``python bench/sensitivity.py joint`` measures the joint threshold model instead
(``models/joint_thresholds.toml``: five thresholds, its sampling) on the first
:data:`JOINT_LAS` LAs of the default England (every LSOA of them; England whole is too slow
for a shared machine), with the default priors and with the strong, wrong ``b_w`` prior on
every threshold, and records each threshold's sensitivities, the gradient ratios', the
scaled priors, the seconds and the verdicts under ``joint`` in the same file (the single
fits' entries are kept as they were measured).
"""

import json
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import socialgradient.api as sg
from socialgradient.results import checks, sensitivity
from socialgradient.spec import Priors, Spec, load_spec

OUT = Path(__file__).with_name("sensitivity.json")
N_LA = 40
#: label -> (LAs: the first N of the default England, None for all; the priors)
FITS = {
    "default": (N_LA, Priors()),
    "strong_wrong_b_w": (N_LA, Priors(b_w_mean=-0.5, b_w=0.15)),
    "england_default": (None, Priors()),
}
#: LAs of the joint fits (the first of the default England)
JOINT_LAS = 40
JOINT_FITS = {"default": Priors(), "strong_wrong_b_w": Priors(b_w_mean=-0.5, b_w=0.15)}


def best_of(times: int, call) -> tuple[float, dict]:
    """Return the shortest of ``times`` runs of ``call()`` in seconds, and its result."""
    seconds = []
    for _ in range(times):
        start = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
    return min(seconds), result


def main() -> None:
    england = sg.default_data()
    out: dict = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "las": N_LA,
        "fits": {},
    }
    for label, (n_la, priors) in FITS.items():
        keep = england["la"].unique()[:n_la] if n_la else england["la"].unique()
        table = england[england["la"].isin(keep)].reset_index(drop=True)
        start = time.perf_counter()
        tree = sg.fit(table, Spec("referrals", priors=priors), progressbar=False)
        fit_seconds = time.perf_counter() - start
        seconds, sens = best_of(3, lambda tree=tree: sensitivity.power_scaling(tree))
        bare = tree.copy()
        del bare["log_likelihood"]
        seconds_bare, _ = best_of(2, lambda bare=bare: sensitivity.power_scaling(bare))
        convergence = checks.diagnose(tree)
        flagged = sensitivity.flag(convergence, sens)
        out["fits"][label] = {
            "priors": {k: v for k, v in vars(priors).items() if not k.startswith("_")},
            "prior_gradient": round(math.exp(priors.b_w_mean), 3),
            "gradient_mean_la_median": round(float(np.exp(tree["posterior"]["b_w"]).median()), 3),
            "las": len(keep),
            "lsoas": len(table),
            "fit_seconds": round(fit_seconds, 1),
            "sensitivity_seconds": round(seconds, 3),
            "sensitivity_seconds_computing_log_likelihood": round(seconds_bare, 3),
            "draws": sens["draws"],
            "quantities": sens["quantities"],
            "prior_max": max(q["prior"] for q in sens["quantities"].values()),
            "conflict": sens["conflict"],
            "verdict_convergence": convergence["verdict"],
            "verdict": flagged["verdict"],
            "reasons": flagged["reasons"],
        }
        print(label, json.dumps(out["fits"][label]), flush=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")


def joint() -> None:
    """Measure the joint threshold model's sensitivity; update ``joint`` in the JSON."""
    import dataclasses

    england = sg.default_data()
    keep = england["la"].unique()[:JOINT_LAS]
    table = england[england["la"].isin(keep)].reset_index(drop=True)
    base = load_spec(Path(__file__).parents[1] / "models" / "joint_thresholds.toml")
    out = json.loads(OUT.read_text())
    out["joint"] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "load_average_at_start": round(os.getloadavg()[0], 1),
        "spec": "models/joint_thresholds.toml",
        "las": JOINT_LAS,
        "lsoas": len(table),
        "sampling": dataclasses.asdict(base.sampling),
        "fits": {},
    }
    for label, priors in JOINT_FITS.items():
        spec = dataclasses.replace(base, priors=priors)
        start = time.perf_counter()
        tree = sg.fit(table, spec, progressbar=False)
        fit_seconds = time.perf_counter() - start
        seconds, sens = best_of(3, lambda tree=tree: sensitivity.power_scaling(tree))
        convergence = checks.diagnose(tree)
        flagged = sensitivity.flag(convergence, sens)
        medians = np.exp(tree["posterior"]["b_w"]).median(("chain", "draw"))
        out["joint"]["fits"][label] = {
            "priors": {k: v for k, v in vars(priors).items() if not k.startswith("_")},
            "prior_gradient": round(math.exp(priors.b_w_mean), 3),
            "gradient_mean_la_median": {
                str(t): round(float(medians.sel(threshold=t)), 3)
                for t in medians["threshold"].values
            },
            "fit_seconds": round(fit_seconds, 1),
            "sensitivity_seconds": round(seconds, 3),
            "draws": sens["draws"],
            "scaled_priors": sens["scaled_priors"],
            "thresholds": sens["thresholds"],
            "quantities": sens["quantities"],
            "prior_max": max(
                q["prior"] for per in sens["thresholds"].values() for q in per.values()
            ),
            "conflict": sens["conflict"],
            "verdict_convergence": convergence["verdict"],
            "verdict": flagged["verdict"],
            "reasons": flagged["reasons"],
        }
        print(label, json.dumps(out["joint"]["fits"][label]), flush=True)
        OUT.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    joint() if sys.argv[1:] == ["joint"] else main()
