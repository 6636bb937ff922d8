"""Packaging: the wheel carries the default specs and data, the version has one source, the
CLI says it, and the optional numpyro sampler names its extra when absent.

The wheel is built here without build isolation (the lock's setuptools, no network) from a
copy of the files it is made of, in ~5 s; tests/test_wheel.py (slow) installs such a wheel
in a fresh venv and fits with it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import socialgradient
from socialgradient import api, cli, resources
from socialgradient.sampling import fit

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "socialgradient"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def build_wheel(dest: Path, isolated: bool = False) -> Path:
    """Build the wheel of this checkout into ``dest``, from a copy (no build/ or egg-info
    left in the checkout). ``isolated`` builds with a fresh setuptools from the index."""
    src = dest / "src-copy"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("src", "models", "data"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), str(src)]
    if not isolated:
        cmd.insert(-1, "--no-build-isolation")
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    (wheel,) = dest.glob("socialgradient-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_carries_models_data_and_code(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        prefix = "socialgradient/resources/"
        for spec in sorted((ROOT / "models").rglob("*.toml")):
            rel = spec.relative_to(ROOT).as_posix()
            assert prefix + rel in names, rel
            assert zf.read(prefix + rel) == spec.read_bytes(), rel
        for name in resources.DATA_FILES:
            assert zf.read(f"{prefix}data/{name}") == (ROOT / "data" / name).read_bytes(), name
        for module in PACKAGE.rglob("*.py"):
            assert module.relative_to(PACKAGE.parent).as_posix() in names, module
        assert "socialgradient/py.typed" in names
        assert "socialgradient/data/synthetic/la_calibration.csv" in names
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(meta).decode()
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert f"Version: {socialgradient.__version__}\n" in metadata
    assert "License-Expression: MIT" in metadata
    assert "Requires-Dist: jax" not in metadata.split("Provides-Extra")[0]
    # Not shipped: the records sample and the data dictionary stay in the repository.
    assert not any("records_sample" in n or n.endswith("data/README.md") for n in names)


def test_every_package_is_listed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools].packages: {sorted(found - listed)}"


def test_package_data_lists_the_default_data():
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["socialgradient.resources.data"]
    assert sorted(data) == sorted(resources.DATA_FILES)


def test_resources_resolve_in_the_checkout():
    assert resources.root("models") == ROOT / "models"
    assert api.DEFAULT_DATA == ROOT / "data" / "neighbourhoods.parquet"
    assert cli.DEFAULT_SPEC.is_file()
    assert cli.DEFAULT_DATA.is_file()
    assert (resources.root("models") / "la_panel_referrals.toml").is_file()  # panel's default
    with pytest.raises(ValueError, match="unknown resource kind"):
        resources.root("figures")


def test_one_version_source():
    project = PYPROJECT["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "socialgradient.__version__"


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"socialgradient {socialgradient.__version__}"


def test_licence_and_typed_marker():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert (PACKAGE / "py.typed").is_file()


def test_numpyro_sampler_names_its_extra(monkeypatch):
    real = fit.importlib.util.find_spec
    monkeypatch.setattr(
        fit.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("jax", "numpyro") else real(name, *a),
    )
    with pytest.raises(ImportError, match=r"socialgradient\[numpyro\]"):
        fit.require_numpyro()
