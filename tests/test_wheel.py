"""The wheel in a house of its own: build it, install it into a fresh venv (no system site
packages, no checkout on the path) beside numpy and pandas one minor version older than
requirements.lock pins, and from a folder outside the repository run ``socialgradient
--version`` and a small fit on the packaged default data. Slow (a fresh install of PyMC,
nutpie and friends from the index, then numba/PyTensor compilation): ``make test-slow``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import socialgradient
from test_packaging import ROOT, build_wheel

SCRIPT = r"""
import importlib.metadata as md, importlib.util, json, time
import socialgradient, socialgradient.api as sg
from socialgradient import resources
from socialgradient.spec import load_spec

assert "site-packages" in socialgradient.__file__, socialgradient.__file__
table = sg.default_data()
assert resources.path("data", "neighbourhoods.parquet").is_file()  # packaged, not regenerated
small = table[table["la"].isin(sorted(table["la"].unique())[:6])]
# A packaged spec whose la_data ("../data/las.parquet") must resolve inside the wheel.
places = load_spec(resources.path("models", "national_referrals_places.toml"))
sg.encode(small, places)
start = time.perf_counter()
tree = sg.fit(small, "referrals", draws=50, tune=50, chains=2, progressbar=False)
verdict = sg.diagnose(tree)
names = ("numpy", "pandas", "pymc", "pytensor", "nutpie", "arviz", "xarray", "socialgradient")
print(json.dumps({**{n: md.version(n) for n in names}, "lsoas": len(small),
                  "fit_s": round(time.perf_counter() - start, 1),
                  "jax": importlib.util.find_spec("jax") is not None,
                  "verdict": verdict["verdict"], "rhat_max": float(verdict["rhat_max"])}))
"""


def _one_minor_older(name: str) -> str:
    """``X.(Y-1)`` for the lock's ``name==X.Y.Z``."""
    lock = (ROOT / "requirements.lock").read_text()
    major, minor = map(int, re.search(rf"(?m)^{name}==(\d+)\.(\d+)", lock).groups())
    if not minor:
        pytest.skip(f"the lock's {name} is an X.0 release: no older minor of the same major")
    return f"{major}.{minor - 1}"


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
        timeout=120,
    )
    return probe.returncode == 0


def test_wheel_installs_beside_other_numpy_pandas_and_fits(tmp_path):
    if not _index_reachable(tmp_path):
        pytest.skip("the package index cannot be reached: the wheel install needs it")
    wheel = build_wheel(tmp_path / "dist", isolated=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_ = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    older = {name: _one_minor_older(name) for name in ("numpy", "pandas")}
    pins = [f"{name}=={series}.*" for name, series in older.items()]
    subprocess.run(
        [bin_ / "python", "-m", "pip", "install", "-q", str(wheel), *pins],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    away = tmp_path / "elsewhere"
    away.mkdir()
    version = subprocess.run(
        [bin_ / "socialgradient", "--version"],
        check=True,
        env=env,
        cwd=away,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert version == f"socialgradient {socialgradient.__version__}"
    out = subprocess.run(
        [bin_ / "python", "-c", SCRIPT], env=env, cwd=away, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(result)
    for name, series in older.items():
        assert result[name].startswith(series + "."), (name, result[name])
    assert result["verdict"] in ("PASS", "WARN", "FAIL")  # 50 draws: it ran, not converged
    assert not result["jax"], "the core install pulled in jax: it belongs to the numpyro extra"
    # The numpyro extra is not installed: its sampler says how to get it.
    err = subprocess.run(
        [
            bin_ / "python",
            "-c",
            "from socialgradient.sampling.fit import require_numpyro; require_numpyro()",
        ],
        env=env,
        cwd=away,
        capture_output=True,
        text=True,
    )
    assert "socialgradient[numpyro]" in err.stderr
