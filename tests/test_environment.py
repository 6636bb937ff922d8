"""The dependency lists agree: pyproject.toml (ranges), requirements.lock and environment.yml
(exact pins).

* ``[project].dependencies`` and the extras are ranges (``pip install socialgradient`` must
  live beside other numpy/pandas versions): no ``==`` there, a lower bound on each.
* requirements.lock pins exactly what the Makefile installs (core + the ``numpyro`` extra +
  the ``dev`` dependency group (PEP 735), and everything they pull in), and every pin is
  admitted by pyproject's ranges.
* environment.yml (the conda route) pins the same versions as the lock for the packages it
  names, and names every direct dependency of core + ``numpyro`` + ``dev``, all of them as
  conda-forge packages: its pip section installs only the package itself (``-e .``).
"""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^\s*-?\s*([A-Za-z0-9_.\-]+)==([^\s#;\\]+)")
LOCKED_EXTRAS = ("numpyro",)  # what the Makefile installs besides the core and the dev group


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines) -> dict[str, str]:
    return {_norm(m[1]): m[2] for line in lines if (m := PIN.match(line))}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _groups() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]


def _requirements(extras=LOCKED_EXTRAS) -> list[Requirement]:
    project = _project()
    deps = list(project["dependencies"])
    for extra in extras:
        deps += project["optional-dependencies"][extra]
    deps += _groups()["dev"]
    return [Requirement(d) for d in deps]


def _lock() -> dict[str, str]:
    return _pins((ROOT / "requirements.lock").read_text().splitlines())


def test_dependencies_are_ranges_not_pins():
    project = _project()
    every = [*project["dependencies"]]
    for extra in [*project["optional-dependencies"].values(), *_groups().values()]:
        every += extra
    pinned = [d for d in every if "==" in d or "===" in d]
    assert not pinned, pinned
    unbounded = [
        d
        for d in every
        if not any(s.operator in (">=", "~=", ">") for s in Requirement(d).specifier)
    ]
    assert not unbounded, unbounded


def test_extras_exist():
    extras = _project()["optional-dependencies"]
    assert {"numpyro", "notebooks"} <= set(extras)
    assert "dev" in _groups(), "the dev tools are a dependency group"
    assert "dev" not in extras, "the dev tools are a dependency group, not an extra"
    core = {_norm(Requirement(d).name) for d in _project()["dependencies"]}
    assert not core & {"jax", "jaxlib", "numpyro"}, "the JAX stack is the numpyro extra's"


def test_lock_pins_admitted_by_ranges():
    lock = _lock()
    missing = [r.name for r in _requirements() if _norm(r.name) not in lock]
    assert not missing, f"in pyproject but not in requirements.lock: {missing}"
    refused = {
        r.name: (str(r.specifier), lock[_norm(r.name)])
        for r in _requirements()
        if not r.specifier.contains(lock[_norm(r.name)], prereleases=True)
    }
    assert not refused, refused


def test_lock_is_exact_and_hashed():
    lines = [
        ln
        for ln in (ROOT / "requirements.lock").read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith(("#", "--hash"))
    ]
    requirements = [ln for ln in lines if not ln.startswith(" ")]
    assert requirements
    assert all(PIN.match(ln) for ln in requirements), requirements[:5]
    text = (ROOT / "requirements.lock").read_text()
    assert "--hash=sha256:" in text, "the lock carries hashes (pip --require-hashes)"
    assert "generated" in text[:800].lower(), "the lock's header says how it is generated"


def test_environment_yml_matches_lock():
    env = _pins((ROOT / "environment.yml").read_text().splitlines())
    lock = _lock()
    differ = {k: (v, lock.get(k)) for k, v in env.items() if lock.get(k) != v}
    assert not differ, differ
    direct = {_norm(r.name) for r in _requirements()}
    assert direct <= set(env), f"missing from environment.yml: {sorted(direct - set(env))}"


def _environment_sections() -> tuple[list[str], list[str]]:
    """environment.yml's ``dependencies`` entries: (conda, pip), comments dropped."""
    conda, pip, section = [], [], None
    for line in (ROOT / "environment.yml").read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].rstrip()
        if not text.strip():
            continue
        indent = len(text) - len(text.lstrip())
        if indent == 0:
            section = "dependencies" if text == "dependencies:" else None
        elif section and text.strip() == "- pip:":
            section = "pip"
        elif section == "pip" and indent >= 6:
            pip.append(text.strip().removeprefix("- ").strip())
        elif section in ("dependencies", "pip") and indent == 2:
            section = "dependencies"
            conda.append(text.strip().removeprefix("- ").strip())
    return conda, pip


def test_environment_yml_takes_the_stack_from_conda_forge():
    conda, pip = _environment_sections()
    assert "conda-forge" in (ROOT / "environment.yml").read_text(encoding="utf-8")
    assert pip == ["-e ."], f"pip should install only the package itself, got {pip}"
    in_conda = {_norm(m[1]) for entry in conda if (m := PIN.match(entry))}
    direct = {_norm(r.name) for r in _requirements()}
    assert direct <= in_conda, f"not from conda-forge: {sorted(direct - in_conda)}"
    assert any(entry.startswith("python=3.1") for entry in conda), conda


def test_python_version_file_meets_requirement():
    version = (ROOT / ".python-version").read_text().strip()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (3, 12)
