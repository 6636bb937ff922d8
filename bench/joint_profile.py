"""Where the joint threshold model's time goes: per evaluation, per draw, tuning, the target.

    PYTHONPATH=src .venv/bin/python bench/joint_profile.py eval [CALLS [joint|referrals [ROUNDS]]]
    PYTHONPATH=src .venv/bin/python bench/joint_profile.py parts [CALLS]
    PYTHONPATH=src .venv/bin/python bench/joint_profile.py fit OUT.json

``eval``: builds ``models/joint_thresholds.toml`` on the default England as
``socialgradient.sampling.joint.fit`` does, and the single-threshold referrals model
(``models/national_referrals.toml``, the package's ``build_model``), compiles each for nutpie
(numba, as a fit does) and times CALLS calls of the compiled log density and gradient
(``compiled.logp_func``, PyTensor's numba function) at points near the initial point
(the median of ROUNDS rounds, default 5, and the fastest). Prints one JSON line per model:
free dimensions, rows, ms per evaluation and ns per row-threshold.

``parts``: the joint model's priors and Jacobians (``model.logp(vars=model.free_RVs)``), its
likelihood potential, and each free variable's prior alone, each compiled with numba with
its gradient (with respect to every free variable), CPU ms per call.

``fit``: samples the joint model exactly as the spec says (4 chains x 1,000 draws after 400
tuning, seed 2021, target_accept of the spec) with nutpie, keeping the warm-up's sample
stats, and writes OUT.json: compile and sampling seconds, leapfrog steps per draw and tree
depth in tuning and in sampling, the tuning's share of the leapfrog steps (so of the
sampling seconds, the cost per step being the same), divergences, and for every 100 draws
per chain the worst R-hat and bulk/tail ESS of the quantities a target check reads
(``socialgradient.sampling.fit.checked``) and which variable: the draws the default target
(``Sampling.stop = "target"``: R-hat <= 1.01, ESS >= 400) would keep and what binds. It also
records the posterior mean, sd and MCSE of the national coefficients, the LA SDs and
correlations and phi, to compare two versions of the model.

The model is the one of the ``socialgradient`` on ``PYTHONPATH``: to compare with an earlier
version, run this file with that version's ``src`` (e.g. ``git archive COMMIT src | tar -x
-C /tmp/DIR``). Results and load averages: ``bench/joint_profile.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _commit() -> str:
    import socialgradient

    where = Path(socialgradient.__file__).resolve().parents[2]
    try:
        return subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return str(where)


def joint_model():
    """The joint model of the default England, as ``sampling.joint.fit`` builds it."""
    from socialgradient import api
    from socialgradient.model import joint
    from socialgradient.spec import load_spec

    spec = load_spec(ROOT / "models" / "joint_thresholds.toml")
    datas = api.encode(api.default_data(), spec)
    return joint.build(datas, spec, joint.choose(datas, spec)), spec, datas


def referrals_model():
    """The single-threshold referrals model of the default England."""
    from socialgradient import api
    from socialgradient.model.build import build_model
    from socialgradient.spec import load_spec

    spec = load_spec(ROOT / "models" / "national_referrals.toml")
    data = api.encode(api.default_data(), spec)
    return build_model(data, spec), data


def time_evaluations(model, calls: int, rounds: int = 5) -> dict:
    """Compile ``model`` with nutpie (numba) and time its log density and gradient.

    ``logp_func`` of nutpie's public compilation: PyTensor's numba function of the flat
    point that nutpie's C callback wraps (the call's own overhead is microseconds).
    """
    import nutpie

    start = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    compile_s = time.perf_counter() - start
    fn = compiled.logp_func
    fn.trust_input = True
    # PyMC's initial point (finite log density; nutpie's jittered one may not be), in
    # nutpie's flat layout: the free variables' values in model order
    start_point = model.initial_point()
    x0 = np.concatenate(
        [np.ravel(start_point[model.rvs_to_values[v].name]) for v in model.free_RVs]
    )
    assert x0.size == compiled.n_dim
    rng = np.random.default_rng(1)
    points = [x0 + rng.normal(0, 0.01, x0.size) for _ in range(16)]
    fn(points[0])  # warm
    per_call, cpu_per_call = [], []
    for _ in range(rounds):
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(calls):
            fn(points[i % len(points)])
        per_call.append((time.perf_counter() - start) / calls)
        cpu_per_call.append((time.process_time() - cpu) / calls)
    logp, grad = fn(points[0])
    return {
        "compile_s": compile_s,
        "n_dim": int(x0.size),
        "ms_per_eval": 1e3 * float(np.median(per_call)),
        "ms_per_eval_rounds": [1e3 * t for t in per_call],
        # this process's CPU time per call: less sensitive than the wall to a shared machine
        "cpu_ms_per_eval": 1e3 * float(np.median(cpu_per_call)),
        "cpu_ms_per_eval_min": 1e3 * float(np.min(cpu_per_call)),
        "cpu_ms_per_eval_rounds": [1e3 * t for t in cpu_per_call],
        "logp_at_point": float(logp),
        "grad_norm_at_point": float(np.linalg.norm(grad)),
    }


def run_eval(calls: int, which: str = "both", rounds: int = 5) -> None:
    if which in ("joint", "both"):
        _eval_joint(calls, rounds)
    if which in ("referrals", "both"):
        _eval_referrals(calls, rounds)


def _eval_joint(calls: int, rounds: int) -> None:
    model, _, datas = joint_model()
    rows = len(datas[0].y) * len(datas)
    out = time_evaluations(model, calls, rounds)
    out |= {"model": "joint", "row_thresholds": rows, "load": _load(), "commit": _commit()}
    out["ns_per_row_threshold"] = 1e6 * out["cpu_ms_per_eval"] / rows
    print(json.dumps(out), flush=True)


def _eval_referrals(calls: int, rounds: int) -> None:
    model, data = referrals_model()
    out = time_evaluations(model, calls, rounds)
    out |= {"model": "referrals", "row_thresholds": len(data.y), "load": _load()}
    out["ns_per_row_threshold"] = 1e6 * out["cpu_ms_per_eval"] / len(data.y)
    out["commit"] = _commit()
    print(json.dumps(out), flush=True)


def run_parts(calls: int) -> None:
    """Time the joint model's priors and Jacobians and its likelihood potential apart."""
    import pytensor
    import pytensor.tensor as pt

    model, _, _ = joint_model()
    values = [model.rvs_to_values[v] for v in model.free_RVs]
    start_point = model.initial_point()
    args = [start_point[v.name] for v in values]
    terms = [
        ("priors and Jacobians", model.logp(vars=model.free_RVs)),
        ("likelihood potential", model.logp(vars=model.potentials)),
        *((f"prior of {rv.name}", model.logp(vars=[rv])) for rv in model.free_RVs),
    ]
    for name, term in terms:
        outputs = [term, *pt.grad(term, values, disconnected_inputs="ignore")]
        fn = pytensor.function(values, outputs, mode="NUMBA", on_unused_input="ignore")
        fn.trust_input = True
        fn(*args)
        cpu = []
        for _ in range(3):
            start = time.process_time()
            for _ in range(calls):
                fn(*args)
            cpu.append((time.process_time() - start) / calls)
        out = {"part": name, "cpu_ms_per_eval": 1e3 * float(np.median(cpu)), "load": _load()}
        print(json.dumps(out | {"commit": _commit()}), flush=True)


def _stats(ds, name: str) -> dict:
    v = ds[name].values
    return {"mean": float(v.mean()), "max": float(v.max())}


def run_fit(path: str) -> None:
    import arviz_stats as azs
    import nutpie

    from socialgradient.sampling import compiled as compiled_module
    from socialgradient.sampling.fit import checked
    from socialgradient.sampling.target import Target, diagnose

    load_before = _load()
    model, spec, _ = joint_model()
    s = spec.sampling
    start = time.perf_counter()
    compiled, _ = compiled_module.compile_nutpie(model)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    tree = nutpie.sample(
        compiled,
        draws=s.draws,
        tune=s.tune,
        chains=s.chains,
        seed=s.seed,
        progress_bar=False,
        save_warmup=True,
        target_accept=spec.target_accept,
    )
    sampling_s = time.perf_counter() - start
    warm = tree["warmup_sample_stats"].to_dataset()
    stats = tree["sample_stats"].to_dataset()
    steps_tune = float(warm["n_steps"].sum())
    steps_draw = float(stats["n_steps"].sum())
    post = tree["posterior"].to_dataset()[checked(model)]
    target = Target.of(s)
    by_draws = []
    for draws in range(200, s.draws + 1, 100):
        worst, unmet = diagnose(post.isel(draw=slice(0, draws)), target)
        row: dict = {"draws": draws, **worst}
        for which, fn in (
            ("rhat", lambda d: azs.rhat(d)),
            ("ess_bulk", lambda d: azs.ess(d, method="bulk")),
            ("ess_tail", lambda d: azs.ess(d, method="tail")),
        ):
            ds = fn(post.isel(draw=slice(0, draws)))
            best = None
            for name in ds.data_vars:
                values = np.ravel(ds[name].values)
                i = int(np.argmax(values) if which == "rhat" else np.argmin(values))
                if best is None or (
                    values[i] > best[1] if which == "rhat" else values[i] < best[1]
                ):
                    best = (f"{name}[{i}]" if ds[name].ndim else str(name), float(values[i]))
            row[f"{which}_var"] = best[0] if best else ""
        row["unmet"] = {k: len(v) for k, v in unmet.items()}
        by_draws.append(row)
    needed = next((r["draws"] for r in by_draws if not r["unmet"]), None)
    full = tree["posterior"].to_dataset()
    keep = [v for v in ("a", "b_w", "b_b", "b_x", "la_sd", "la_corr", "phi") if v in full]
    mean, sd = full[keep].mean(("chain", "draw")), full[keep].std(("chain", "draw"))
    mcse = azs.mcse(full[keep])
    estimates = {
        v: {
            "mean": np.ravel(mean[v].values).tolist(),
            "sd": np.ravel(sd[v].values).tolist(),
            "mcse": np.ravel(mcse[v].values).tolist(),
        }
        for v in keep
    }
    out = {
        "commit": _commit(),
        "load_before": load_before,
        "load_after": _load(),
        "compile_s": compile_s,
        "sampling_s": sampling_s,
        "draws": s.draws,
        "tune": s.tune,
        "chains": s.chains,
        "n_steps_tune": _stats(warm, "n_steps"),
        "n_steps_draw": _stats(stats, "n_steps"),
        "depth_tune": _stats(warm, "depth"),
        "depth_draw": _stats(stats, "depth"),
        "step_size_draw": float(stats["step_size"].mean()),
        "tuning_share_of_steps": steps_tune / (steps_tune + steps_draw),
        "divergences": int(stats["diverging"].sum()),
        "target_draws_needed": needed,
        "by_draws": by_draws,
        "estimates": estimates,
    }
    Path(path).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k not in ("by_draws", "estimates")}))


if __name__ == "__main__":
    if sys.argv[1] == "eval":
        args = sys.argv[2:]
        run_eval(int(args[0]) if args else 200, *args[1:2], *map(int, args[2:3]))
    elif sys.argv[1] == "parts":
        run_parts(int(sys.argv[2]) if len(sys.argv) > 2 else 20)
    else:
        run_fit(sys.argv[2])
