"""The three dependency lists agree: pyproject.toml, environment.yml, requirements.lock."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^\s*-?\s*([A-Za-z0-9_.\-]+)==([^\s#]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines) -> dict[str, str]:
    return {_norm(m[1]): m[2] for line in lines if (m := PIN.match(line))}


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    return _pins(deps)


def test_every_dependency_is_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    assert len(_pins(deps)) == len(deps), [d for d in deps if "==" not in d]


def test_environment_yml_matches_pyproject():
    assert _pins((ROOT / "environment.yml").read_text().splitlines()) == _pyproject()


def test_lock_contains_pyproject_pins():
    lock = _pins((ROOT / "requirements.lock").read_text().splitlines())
    mismatched = {k: (v, lock.get(k)) for k, v in _pyproject().items() if lock.get(k) != v}
    assert not mismatched, mismatched


def test_python_version_file_meets_requirement():
    version = (ROOT / ".python-version").read_text().strip()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (3, 12)
