"""The joint threshold model's geometry under nutpie: steps per draw and ESS per evaluation.

    .venv/bin/python bench/joint_adaptation.py base 400 200
    .venv/bin/python bench/joint_adaptation.py c9 400 200
    .venv/bin/python bench/joint_adaptation.py allc 400 200
    .venv/bin/python bench/joint_adaptation.py base 400 200 maxdepth=7
    .venv/bin/python bench/joint_adaptation.py base 300 300 adaptation='"low_rank"'
    .venv/bin/python bench/joint_adaptation.py base 400 200 seed=2022 maxdepth=7

Builds ``models/joint_thresholds.toml`` on the default England as
``socialgradient.sampling.joint.fit`` does, with the LAs' centring VARIANT:

* ``base``: :func:`socialgradient.model.joint.choose`'s (every LA its leading whole
  thresholds: on the default England 138 LAs the first four, 12 all five);
* ``c9``: as ``base``, and an LA whose next threshold's rule centres its intercept alone
  (:func:`socialgradient.model.parameterisation.choose` = 1) centres that intercept too
  (132 LAs' looked-after intercepts);
* ``allc``: every LA all ten coefficients.

Every variant is the same model (:func:`socialgradient.model.terms.la_effects.la_theta`).
Samples 4 chains of DRAWS after TUNE (seed 2021 unless ``seed=N``, one BLAS thread), extra
``key=json`` pairs passed to ``nutpie.sample`` (e.g. ``maxdepth=7``,
``adaptation='"low_rank"'``, ``early_window_switch_freq=20``; the names nutpie 0.16's
settings accept are those of ``nutpie._lib.PyNutsSettings.update``), and prints
one JSON line: leapfrog steps per draw in tuning and sampling (nutpie's ``n_steps``, which
no machine load changes), the final step size, tree depth, divergences, the smallest bulk
and tail ESS over the quantities the target checks
(:func:`socialgradient.sampling.fit.checked`) and which, the largest R-hat, ESS per 1,000
gradient evaluations of the sampling phase and of tuning and sampling together, the tuning's
steps and step size per window of its draws, each checked quantity's smallest bulk ESS, and
wall and CPU seconds (which the load does change: give ``uptime`` beside them). Also writes
``/tmp/joint_adaptation_<TAG>.npz`` (``TAG`` from the environment, default the variant):
the unconstrained draws and the steps of every tuning and sampling draw. Results are in
``bench/joint_profile.md``.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as a fit runs (bench/blas_threads.md)

import numpy as np
import nutpie
from arviz_stats import ess, rhat

from socialgradient import api
from socialgradient.model import joint, parameterisation
from socialgradient.sampling.fit import checked
from socialgradient.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def counts(variant: str, datas: list, spec) -> np.ndarray:
    """Each LA's count of leading coefficients sampled centred under ``variant``."""
    whole = joint.choose(datas, spec)
    if variant == "base":
        return 2 * whole
    if variant == "c9":
        last = parameterisation.choose(datas[-1], spec.family, spec.la_effects)
        return 2 * whole + ((whole == len(datas) - 1) & (last >= 1))
    if variant == "allc":
        return np.full_like(whole, 2 * len(datas))
    raise SystemExit(f"unknown variant {variant!r}")


def main(variant: str, tune: int, draws: int, nuts: dict) -> dict:
    spec = load_spec(ROOT / "models" / "joint_thresholds.toml")
    datas = api.encode(api.default_data(), spec)
    centred = counts(variant, datas, spec)
    la_theta = joint.la_theta  # the build passes whole thresholds; give it the variant's
    joint.la_theta = lambda centre, chol, _, la, dim: la_theta(centre, chol, centred, la, dim)
    try:
        model = joint.build(datas, spec, joint.choose(datas, spec))
    finally:
        joint.la_theta = la_theta
    start = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    compile_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    adaptation = nuts.pop("adaptation", "diag")
    seed = nuts.pop("seed", 2021)
    tree = nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=4,
        seed=seed,
        progress_bar=False,
        save_warmup=True,
        adaptation=adaptation,
        target_accept=spec.target_accept,
        store_unconstrained=True,
        **nuts,
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    post, stats = tree["posterior"].to_dataset(), tree["sample_stats"].to_dataset()
    warm = tree["warmup_sample_stats"].to_dataset()
    names = [n for n in checked(model) if n in post]
    bulk, tail, r = (
        ess(post[names], method="bulk"),
        ess(post[names], method="tail"),
        rhat(post[names]),
    )
    bulk_min = {v: float(bulk[v].min()) for v in names}
    tail_min = {v: float(tail[v].min()) for v in names}
    worst, tail_worst = min(bulk_min, key=bulk_min.get), min(tail_min, key=tail_min.get)
    evals = float(stats["n_steps"].sum())
    evals_tuning = float(warm["n_steps"].sum())
    tag = os.environ.get("TAG", variant)
    np.savez(
        f"/tmp/joint_adaptation_{tag}.npz",
        unconstrained=stats["unconstrained_draw"].values,
        steps=stats["n_steps"].values,
        warmup_steps=warm["n_steps"].values,
        warmup_step_size=warm["step_size"].values,
    )
    windows = [(0, 50), (50, 100), (100, 200), (200, 300), (300, tune)]
    by_window = {
        f"{lo}-{hi - 1}": {
            "steps": round(float(warm["n_steps"][:, lo:hi].mean()), 1),
            "max_steps": int(warm["n_steps"][:, lo:hi].max()),
            "step_size": round(float(warm["step_size"][:, lo:hi].mean()), 4),
        }
        for lo, hi in windows
        if hi > lo and hi <= tune
    }
    return {
        "variant": variant,
        "centred": np.bincount(centred, minlength=2 * len(datas) + 1).tolist(),
        "adaptation": adaptation,
        "nuts": nuts,
        "seed": seed,
        "tune": tune,
        "draws": draws,
        "steps_per_draw_tuning": float(warm["n_steps"].mean()),
        "steps_per_draw": float(stats["n_steps"].mean()),
        "step_size": float(stats["step_size"].mean()),
        "depth": float(stats["depth"].mean()),
        "divergences": int(stats["diverging"].sum()),
        "ess_bulk_min": bulk_min[worst],
        "ess_bulk_var": worst,
        "ess_tail_min": tail_min[tail_worst],
        "ess_tail_var": tail_worst,
        "rhat_max": max(float(r[v].max()) for v in names),
        "bulk_per_1000_evals": 1000 * bulk_min[worst] / evals,
        "tail_per_1000_evals": 1000 * tail_min[tail_worst] / evals,
        "evals_tuning": evals_tuning,
        "evals_sampling": evals,
        "bulk_per_1000_total_evals": 1000 * bulk_min[worst] / (evals + evals_tuning),
        "tail_per_1000_total_evals": 1000 * tail_min[tail_worst] / (evals + evals_tuning),
        "tuning_windows": by_window,
        "ess_bulk_by_var": {v: round(bulk_min[v]) for v in names},
        "compile_s": compile_s,
        "wall_s": wall,
        "cpu_s": cpu,
        "load": os.getloadavg(),
    }


if __name__ == "__main__":
    extra = dict(arg.split("=", 1) for arg in sys.argv[4:])
    nuts = {key: json.loads(value) for key, value in extra.items()}
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), nuts)))
