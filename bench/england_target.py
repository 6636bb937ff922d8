"""England to the sampling target: leapfrog steps (tuning included) and draws to the target.

The default England (``data/neighbourhoods.parquet``, referrals, NB, every LA centred) is
sampled with nutpie for fixed draws (4 chains, ``--tune`` tuning, ``--draws`` kept, warm-up
saved), and the target (:class:`socialgradient.sampling.target.Target`: R-hat <= 1.01, bulk
and tail ESS >= 400 for every reported quantity) is checked on the first ``d`` draws of every
chain for every ``d`` in 200, 300, ... : the first ``d`` that passes, the leapfrog steps up to
it (nutpie's ``n_steps``, tuning's included), which quantities bind before it, the step size,
divergences, the LA SDs' bulk ESS and the posterior means. Load-independent, unlike seconds;
the CPU seconds of the process (all threads) are shown too. ``--start nutpie`` starts the
chains as ``fit`` does (nutpie's start: PyMC's support points, jittered +/-1 on the sampler's
scale); ``--start near`` near the posterior (:func:`near_start`, measured, not adopted).

    PYTHONPATH=src .venv/bin/python bench/england_target.py --tune 500   # before
    PYTHONPATH=src .venv/bin/python bench/england_target.py --tune 200   # after
    PYTHONPATH=src .venv/bin/python bench/england_target.py --tune 100 --start near

One JSON line per seed is appended to ``--out``; results in ``bench/england_target.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def near_start(data, family: str, model):
    """Return nutpie's initial-point function starting each chain near the posterior.

    Each LA's ridge-stabilised Newton estimate (``parameterisation.la_fit``) shrunk to the
    precision-weighted national line by ``tau^2 / (tau^2 + se^2)`` (which gives ``a``,
    ``b_b``, ``b_w``, ``b_x``), the LA SDs' moment estimates ``tau`` and the NB's moment
    ``phi``; each chain adds uniform(-2, 2) times 0.03, 0.05, 0.02, 0.04 to ``a``, ``b_b``,
    ``b_w``, ``b_x``, 0.1 to the packed LA covariance factor, 0.05 to log(1/sqrt(phi)) and
    the LA effects' approximate posterior SDs ``sqrt(1 / (1 / se^2 + 1 / tau^2))``, from
    ``default_rng(seed)`` of nutpie's per-chain seed.
    """
    from socialgradient.model import families
    from socialgradient.model import parameterisation as par

    fam = families.get(family)
    theta, mean, _ = par.la_fit(data, fam)
    se, tau = par.information(data, fam)
    x = np.column_stack([np.ones_like(data.m_c), data.m_c])
    centre, coef = np.empty_like(theta), []
    for k in range(2):
        weight = 1.0 / (se[:, k] ** 2 + tau[k] ** 2)
        beta = np.linalg.solve(x.T @ (weight[:, None] * x), x.T @ (weight * theta[:, k]))
        centre[:, k] = x @ beta
        coef.append(beta)
    effect = centre + tau**2 / (tau**2 + se**2) * (theta - centre)
    effect_sd = np.sqrt(1.0 / (1.0 / se**2 + 1.0 / tau**2))
    r = float(np.clip(np.corrcoef((effect - centre).T)[0, 1], -0.9, 0.9))
    y = data.y.astype(float)
    phi = np.sum(mean**2) / np.sum((y - mean) ** 2 - mean)
    start = {
        "a": (coef[0][0], 0.03),
        "b_b": (coef[0][1], 0.05),
        "b_w": (coef[1][0], 0.02),
        "b_x": (coef[1][1], 0.04),
        "la_cov_cholesky-cov-packed__": (
            np.array([np.log(tau[0]), r * tau[1], np.log(tau[1] * np.sqrt(1 - r * r))]),
            0.1,
        ),
        "la_effect": (effect, effect_sd),
        "inv_sqrt_phi_log__": (-0.5 * np.log(phi), 0.05),
    }
    names = [model.rvs_to_values[v].name for v in model.free_RVs]

    def initial_point(seed=None):
        rng = np.random.default_rng(seed)
        point = {
            name: value + 2.0 * sd * rng.uniform(-1, 1, np.shape(value))
            for name, (value, sd) in start.items()
        }
        return np.concatenate([np.ravel(np.asarray(point[n], float)) for n in names])

    return initial_point


def main() -> None:
    """Sample England per seed and write what the target would have seen at each block."""
    import nutpie

    from socialgradient.data import schema
    from socialgradient.model.data import NeighbourhoodData
    from socialgradient.sampling import compiled as compiled_module
    from socialgradient.sampling import convergence
    from socialgradient.sampling import fit as fit_module
    from socialgradient.sampling import target as tg
    from socialgradient.spec import load_spec
    from socialgradient.util.threads import one_blas_thread

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--start", choices=("near", "nutpie"), default="nutpie")
    p.add_argument("--tune", type=int, default=200)
    p.add_argument("--draws", type=int, default=900)
    p.add_argument("--seeds", default="2021,1,2")
    p.add_argument("--out", type=Path, default=Path("/tmp/england_target.jsonl"))
    args = p.parse_args()

    spec = load_spec(ROOT / "models" / "national_referrals.toml")
    table = schema.read_table(ROOT / "data" / "neighbourhoods.parquet")
    data = NeighbourhoodData.from_table(table, spec.outcome)
    model, _ = fit_module.model_of(data, spec)
    names = fit_module.checked(model)
    compiled, _ = compiled_module.compile_nutpie(model)
    if args.start == "near":
        initial = near_start(data, spec.family, model)
        compiled = dataclasses.replace(compiled, initial_point_func=initial)
    target = tg.Target()
    for seed in map(int, args.seeds.split(",")):
        before = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter()
        with one_blas_thread():
            tree = nutpie.sample(
                compiled,
                draws=args.draws,
                tune=args.tune,
                chains=4,
                cores=4,
                seed=seed,
                save_warmup=True,
                progress_bar=False,
                target_accept=spec.target_accept,
            )
        wall = time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        warm = tree["warmup_sample_stats"].to_dataset()
        stats = tree["sample_stats"].to_dataset()
        tune_steps = int(warm["n_steps"].sum())
        post = tree["posterior"].to_dataset()[names]
        checks, first = [], None
        for d in range(200, args.draws + 1, 100):
            worst, unmet = tg.diagnose(post.isel(draw=slice(0, d)), target)
            steps = tune_steps + int(stats["n_steps"].isel(draw=slice(0, d)).sum())
            checks.append(
                {
                    "draws": d,
                    "steps": steps,
                    "worst": {k: round(v, 4) for k, v in worst.items()},
                    "unmet": {k: len(v) for k, v in unmet.items()},
                    "binding": {k: v[:3] for k, v in unmet.items()},
                }
            )
            if first is None and not unmet:
                first = checks[-1]
        _, bulk, _ = convergence.diagnostics(post[["la_sd"]], prob=convergence.TAIL_PROB)
        means = {
            k: np.round(np.ravel(post[k].mean(("chain", "draw")).values), 5).tolist()
            for k in ("a", "b_w", "b_b", "b_x", "la_sd", "la_corr", "phi")
        }
        record = {
            "start": args.start,
            "tune": args.tune,
            "draws": args.draws,
            "seed": seed,
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "load": os.getloadavg()[0],
            "tune_steps": tune_steps,
            "steps_per_draw": round(float(stats["n_steps"].mean()), 2),
            "step_size": round(float(stats["step_size"].mean()), 4),
            "tune_divergences": int(warm["diverging"].sum()),
            "divergences": int(stats["diverging"].sum()),
            "first_pass": None if first is None else first["draws"],
            "steps_to_target": None if first is None else first["steps"],
            "la_sd_ess_bulk": np.round(np.ravel(bulk["la_sd"].values)).astype(int).tolist(),
            "means": means,
            "checks": checks,
        }
        with args.out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps({k: v for k, v in record.items() if k != "checks"}), flush=True)


if __name__ == "__main__":
    main()
