"""The cached-callback fast path against the NEWEST nutpie and PyTensor on the index.

socialgradient.sampling._nutpie uses private APIs of nutpie, PyTensor and numba; pyproject.toml caps
them at their next minor, and a mismatch falls back to nutpie's public compilation with a
FastPathWarning. This test installs the package into a fresh venv (a real one, no system
site packages) with its dependencies, then upgrades nutpie and PyTensor to the newest the
index has (past the caps if there are newer ones: pip reports the conflict and installs
them), and in new processes compiles and samples a small model: it must complete, by the
fast path or by the fallback with its one warning, never a crash, and draw what nutpie's
public compilation draws. The second process fits through ``socialgradient.sampling.fit`` and so
loads what the first cached. It prints the versions and the path taken. Slow and needs the
network (``make test-slow``); skipped when the index cannot be reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from test_packaging import build_wheel

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import importlib.metadata as md, json, sys, time, warnings
    import numpy as np
    import nutpie
    from socialgradient.sampling import _nutpie as callbacks
    from socialgradient.data.synthetic.england import simulate
    from socialgradient.model.data import NeighbourhoodData
    from socialgradient.model.build import build_model
    from socialgradient.spec import Sampling, Spec

    t = simulate(seed=5, scale=0.2).table
    t = t[t["la"].isin(t["la"].unique()[:6])].reset_index(drop=True)
    data = NeighbourhoodData.from_table(t, "referrals")
    spec = Spec("referrals", la_effects="centred",
                sampling=Sampling(draws=60, tune=60, chains=2, seed=3))
    draws = dict(draws=60, tune=60, chains=2, seed=3, progress_bar=False)
    out = {n: md.version(n) for n in ("nutpie", "pytensor", "numba", "pymc", "numpy")}
    out["probe"] = callbacks.probe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        if sys.argv[1] == "compare":
            compiled = callbacks.compile_model(build_model(data, spec))
            out["compile_s"] = round(time.perf_counter() - start, 1)
            ours = nutpie.sample(compiled, **draws)["posterior"]["b_w"].values
            import pytensor  # nutpie's own compilation, under the flags ours uses
            with pytensor.config.change_flags(**callbacks.NUMERICS):
                public = nutpie.compile_pymc_model(build_model(data, spec))
            theirs = nutpie.sample(public, **draws)["posterior"]["b_w"].values
            out["same_draws_as_public"] = bool(np.array_equal(ours, theirs))
            out["loaded"] = callbacks._is_ours(compiled) and compiled.logp_func is None
        else:
            from socialgradient.sampling.fit import fit
            tree = fit(data, spec, progressbar=False)
            out["compile_s"] = round(float(tree.attrs["compile_seconds"]), 1)
            out["b_w_mean"] = float(tree["posterior"]["b_w"].mean())
    fell_back = [str(w.message) for w in caught
                 if issubclass(w.category, callbacks.FastPathWarning)]
    out["path"] = "fallback" if fell_back else "fast"
    out["warnings"] = fell_back
    print(json.dumps(out))
""")


def _index_reachable(tmp_path) -> bool:
    """Whether pip can fetch a package from its configured index (a small one, no cache)."""
    probe = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-cache-dir",
            "-d",
            str(tmp_path / "probe"),
            "packaging",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    return probe.returncode == 0


def _pip(python, *args, env):
    run = subprocess.run(
        [str(python), "-m", "pip", *args], capture_output=True, text=True, env=env, timeout=1800
    )
    assert run.returncode == 0, (args, run.stdout[-2000:], run.stderr[-3000:])
    return run


def test_the_newest_nutpie_and_pytensor_fit_by_the_fast_path_or_the_fallback(tmp_path):
    if not _index_reachable(tmp_path):
        pytest.skip(
            "the package index cannot be reached: installing the newest nutpie and "
            "PyTensor needs it"
        )
    wheel = build_wheel(tmp_path / "dist", isolated=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("SOCIALGRADIENT_")
    }
    _pip(python, "install", "-q", str(wheel), env=env)  # the package, its capped ranges
    upgrade = _pip(python, "install", "--upgrade", "nutpie", "pytensor", env=env)
    # past the caps, pip installs anyway and says so: keep the package's own install as is
    conflicts = [ln for ln in upgrade.stderr.splitlines() if "requires" in ln]
    # PyTensor's and the callbacks' compilations in a folder of their own
    env["PYTENSOR_FLAGS"] = f"base_compiledir={tmp_path / 'compiledir'}"
    env["SOCIALGRADIENT_NUTPIE_CACHE_DIR"] = str(tmp_path / "callbacks")
    away = tmp_path / "elsewhere"
    away.mkdir()
    results = []
    for mode in ("compare", "fit"):
        run = subprocess.run(
            [str(python), "-c", SCRIPT, mode],
            capture_output=True,
            text=True,
            env=env,
            cwd=away,
            timeout=1800,
        )
        assert run.returncode == 0, (mode, run.stderr[-4000:])  # never a crash
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
    compare, fitted = results
    print(json.dumps({"pip_conflicts": conflicts, "compare": compare, "fit": fitted}, indent=1))
    assert compare["same_draws_as_public"]
    for result in results:
        if result["path"] == "fallback":
            assert len(result["warnings"]) == 1, result["warnings"]
        else:
            assert result["probe"] is None
    if compare["path"] == "fast" and fitted["path"] == "fast":
        assert fitted["compile_s"] < compare["compile_s"]  # loaded what the first cached
