"""Shared by the benchmark modules: paths, targets, and running one fit in a subprocess.

:func:`fit_config` runs ``python bench/run.py _fit ...`` (the worker of :mod:`workers`) and
records its wall time and the peak resident set of its process tree (:func:`run_sub`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
WORK = BENCH / "_work"  # git-ignored scratch: data copies, per-fit JSON, logs
RESULTS_JSON = BENCH / "results.json"
RESULTS_MD = BENCH / "results.md"
PY = sys.executable
PARAMS = ("a", "b_w", "b_b", "b_x")
TARGETS = {"poisson_wall_s": 30.0, "negbin_wall_s": 60.0, "peak_rss_mb": 2048.0}


def _tree_rss_kb(pid: int) -> int:
    """Resident set size (kB) of ``pid`` and all its descendants, from /proc."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return total


def run_sub(
    cmd: list[str], log: Path, timeout: float | None = None, env: dict | None = None
) -> dict:
    """Run ``cmd`` (in ``env``, default this one); return rc, wall and peak tree RSS (MB)
    polled every 0.1 s."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as lf:
        proc = subprocess.Popen(
            cmd, stdout=lf, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True, env=env
        )
        peak = [0]
        done = threading.Event()

        def poll():
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
                done.wait(0.1)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 15)
            time.sleep(5)
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
            rc = "timeout"
        done.set()
        th.join()
    return {
        "rc": rc,
        "process_wall_s": time.perf_counter() - t0,
        "tree_peak_rss_mb": peak[0] / 1024,
    }


def fit_config(
    name: str,
    data: Path,
    *,
    family="negbin",
    sampler="nutpie",
    chains=4,
    tune=1000,
    draws=1000,
    adaptation="diag",
    outcome="referrals",
    seed=2021,
    max_predictive_draws=1000,
    timeout=1800,
) -> dict:
    out = WORK / "fits" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    cmd = [
        PY,
        str(BENCH / "run.py"),
        "_fit",
        "--data",
        str(data),
        "--outcome",
        outcome,
        "--family",
        family,
        "--sampler",
        sampler,
        "--chains",
        str(chains),
        "--tune",
        str(tune),
        "--draws",
        str(draws),
        "--adaptation",
        adaptation,
        "--seed",
        str(seed),
        "--max-predictive-draws",
        str(max_predictive_draws),
        "--out",
        str(out),
    ]
    print(
        f"[{now()}] fit {name}: {family}/{sampler}/{adaptation} {chains}x{tune}/{draws} "
        f"on {data.name}",
        flush=True,
    )
    proc = run_sub(cmd, WORK / "logs" / f"{name}.log", timeout=timeout)
    res = {
        "name": name,
        "data": str(data.relative_to(ROOT)) if data.is_relative_to(ROOT) else str(data),
        **proc,
    }
    if out.exists():
        res.update(json.loads(out.read_text()))
        res["peak_rss_mb"] = max(
            res["tree_peak_rss_mb"],
            res["self_maxrss_mb"] + res["children_maxrss_mb"]
            if sampler == "pymc"
            else res["self_maxrss_mb"],
        )
        print(
            f"    wall {res['wall_s']:.1f}s (compile {res['compile_s'] or 0:.1f}, sampling "
            f"{res['sampling_s']:.1f}), ESS {res['ess_bulk_min']:.0f}, R-hat "
            f"{res['rhat_max']:.3f}, {res['verdict']}, peak {res['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    else:
        res["status"] = "timeout" if proc["rc"] == "timeout" else "error"
        res["log_tail"] = (WORK / "logs" / f"{name}.log").read_text()[-1500:]
        print(f"    {res['status']}: {res['log_tail'][-300:]}", flush=True)
    return res


def now() -> str:
    return _dt.datetime.now().strftime("%H:%M:%S")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def default_data_path() -> Path:
    return ROOT / "data" / "neighbourhoods.parquet"
