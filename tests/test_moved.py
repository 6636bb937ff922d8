"""Old import paths (before the house by concern, issue 28) still work, with a DeprecationWarning
naming the new path; no file is left at an old path."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import socialgradient
from socialgradient import _moved

PACKAGE = Path(socialgradient.__file__).parent
#: Every module directly under src/socialgradient before the move (git show d2294bd).
BEFORE = (
    "aggregates",
    "api",
    "audit",
    "calibrate",
    "callbacks",
    "checks",
    "cli",
    "clusters",
    "compiled",
    "deprivation",
    "disclosure",
    "families",
    "files",
    "findings",
    "fit",
    "forward",
    "gradients",
    "joint",
    "la_outcome",
    "ledger",
    "maps",
    "model",
    "moderators",
    "outputs",
    "panel",
    "panel_data",
    "parameterisation",
    "perturbation",
    "plots",
    "predict",
    "progress",
    "report",
    "spec",
    "suite",
    "summaries",
    "table_sets",
    "testing",
)
STAYED = {"api", "cli", "spec"}


def _forget(name: str) -> None:
    """Import ``name`` afresh: drop it from sys.modules and from its parent's attributes."""
    sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    if parent in sys.modules and child in vars(sys.modules[parent]):
        delattr(sys.modules[parent], child)


def test_every_old_module_has_a_new_home():
    old = {
        n.removeprefix("socialgradient.") for n in [*_moved.MOVED, *_moved.SPLIT, *_moved.PACKAGES]
    }
    assert old >= set(BEFORE) - STAYED
    for name in STAYED:  # a module, or a package of the same name (api, cli: issue 28)
        assert (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def test_no_file_at_an_old_path():
    for old in _moved.MOVED | _moved.SPLIT:
        path = PACKAGE.parent.joinpath(*old.split("."))
        assert not path.with_suffix(".py").exists(), old
        assert not path.is_dir(), old


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_old_path_warns_and_is_the_new_module(old):
    new = importlib.import_module(_moved.MOVED[old])
    _forget(old)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {_moved.MOVED[old]}"):
        module = importlib.import_module(old)
    assert module is new
    assert sys.modules[old] is new


def test_from_old_import_name():
    from socialgradient.sampling.fit import sample

    _forget("socialgradient.fit")
    with pytest.warns(DeprecationWarning, match="socialgradient.sampling.fit") as seen:
        from socialgradient.fit import sample as old_sample
    assert old_sample is sample
    assert len(seen) == 1  # once, though the import system looks the name up twice
    assert seen[0].filename == __file__  # the importer's line, not importlib's


def test_from_package_import_old_module():
    """``from socialgradient import fit``: the import system asks the package first, then
    imports socialgradient.fit, which warns (once)."""
    from socialgradient.sampling import fit as new

    _forget("socialgradient.fit")
    with pytest.warns(DeprecationWarning, match="socialgradient.fit moved to") as seen:
        from socialgradient import fit
    assert fit is new
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("package", "name", "home"),
    [
        ("socialgradient.model", "NeighbourhoodData", "socialgradient.model.data"),
        ("socialgradient.model", "build_model", "socialgradient.model.build"),
        ("socialgradient.panel", "fit_panel", "socialgradient.panel.model"),
    ],
)
def test_old_module_now_a_package(package, name, home):
    expected = getattr(importlib.import_module(home), name)
    with pytest.warns(DeprecationWarning, match=f"{package}.{name} moved to {home}.{name}") as seen:
        value = getattr(importlib.import_module(package), name)
    assert value is expected
    assert len(seen) == 1


def test_new_paths_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from socialgradient.model import build, data, families  # noqa: F401
        from socialgradient.panel import model  # noqa: F401
    with pytest.raises(AttributeError):
        socialgradient.model.no_such_name  # noqa: B018


@pytest.fixture
def _no_split_module_left():
    """The old split module is forgotten after the test, as no other test imports it."""
    yield
    _forget("socialgradient.joint")


@pytest.mark.usefixtures("_no_split_module_left")
def test_tools_scanning_modules_do_not_warn():
    """Tools look at every module in sys.modules (hypothesis reads each ``__file__``): no
    dunder of an old module warns."""
    _forget("socialgradient.joint")
    with pytest.warns(DeprecationWarning, match="socialgradient.joint moved"):
        old = importlib.import_module("socialgradient.joint")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(old, "__file__", None) is None
        assert not hasattr(socialgradient.model, "__file_that_is_not_there__")


@pytest.mark.usefixtures("_no_split_module_left")
@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("check_spec", "socialgradient.model.joint"),
        ("fit", "socialgradient.sampling.joint"),
        ("view", "socialgradient.sampling.joint"),
        ("write", "socialgradient.release.joint"),
        ("steepening", "socialgradient.results.summaries"),
    ],
)
def test_split_module_finds_each_name(name, home):
    _forget("socialgradient.joint")
    with pytest.warns(DeprecationWarning, match="socialgradient.joint moved"):
        old = importlib.import_module("socialgradient.joint")
    with pytest.warns(DeprecationWarning, match=f"socialgradient.joint.{name} moved to {home}"):
        value = getattr(old, name)
    assert value is getattr(importlib.import_module(home), name)


def test_a_fresh_interpreter_warns_at_the_users_line():
    code = "import warnings; warnings.simplefilter('always')\nimport socialgradient.fit\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(PACKAGE.parent)},
    )
    assert (
        "<string>:2: DeprecationWarning: socialgradient.fit moved to "
        "socialgradient.sampling.fit" in out.stderr
    )
