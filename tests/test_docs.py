"""The README and the documentation site say only what the committed result files say.

Default tier (no Sphinx needed):

* the README's prose carries no number of its own: outside code, the only numbers are the
  findings table, and every figure of that table is the value of its row in
  ``bench/suite/findings.csv`` (read here independently of ``socialgradient.findings``;
  ``tests/test_findings.py`` checks the block is exactly what that module generates);
* the README's test command is the one CI's ``.ci/run`` calls, its links point at files that
  exist, and it stays short;
* every ``{sgnum}`` role on a docs page resolves to a value of its file (the site's numbers),
  and the hand-written pages carry no other measured number;
* ``docs/requirements.lock`` pins the runtime packages at ``requirements.lock``'s versions,
  every pin hashed;
* every notebook has its committed execution (``docs/notebooks/*.ipynb``), made from the
  script as it is now (same cells, same SHA-256), with outputs.

Slow tier: ``make docs`` builds the whole site offline with no warning (it creates
``.venv-docs`` from the lock on first use, which needs the package index once).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
FINDINGS_CSV = ROOT / "bench" / "suite" / "findings.csv"
BEGIN, END = "<!-- findings:begin -->", "<!-- findings:end -->"
NUMBER = re.compile(r"(?<![\w.-])[-+]?\d(?:[\d,]*\d)?(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])")

sys.path.insert(0, str(DOCS / "_ext"))
import sgnumbers  # noqa: E402  (docs/_ext: the resolver the Sphinx extension uses)


def prose(text: str) -> str:
    """Markdown without code (fenced, indented, inline), link targets, HTML comments, roles."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"(?:^|\n\n)((?:    [^\n]*\n?)+)", "\n\n", text)  # indented code blocks
    text = sgnumbers.ROLE.sub("", text)
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return text


def numbers_in(text: str) -> list[str]:
    return NUMBER.findall(prose(text))


def readme_parts() -> tuple[str, str]:
    text = README.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    block, tail = rest.split(END, 1)
    return head + tail, block


# ------------------------------------------------------------------------------- README
def test_readme_prose_has_no_number_of_its_own():
    """Any number outside code and the generated findings table would be typed by hand:
    refused, so the README cannot go stale against the result files."""
    outside, _ = readme_parts()
    assert numbers_in(outside) == []


def test_prose_filter_sees_numbers():
    """The filter above is not blind: prose numbers are found, code and roles are not."""
    sample = (
        "A fit took 36.8 s, R-hat 1,007 and 2e-5.\n\n```sh\nmake 42\n```\n"
        "`--draws 1000` and {sgnum}`bench/whole.json runs` [x](a/b2.md)\n\n"
        "    indented 77\n"
    )
    assert numbers_in(sample) == ["36.8", "1,007", "2e-5"]


def _figures(cell: str) -> list[float]:
    return [float(x.replace(",", "")) for x in NUMBER.findall(cell)]


def _close(shown: float, value: float) -> bool:
    """``shown`` is ``value`` rounded to the table's 4 significant figures (or 3 decimals)."""
    return math.isclose(shown, value, rel_tol=6e-4, abs_tol=6e-4 if abs(value) >= 1e-3 else 0)


def test_readme_findings_table_is_the_result_file():
    _, block = readme_parts()
    rows = [line for line in block.strip().splitlines()[2:] if line.startswith("|")]
    with FINDINGS_CSV.open(newline="", encoding="utf-8") as fh:
        records = list(csv.DictReader(fh))
    assert len(rows) == len(records), "one table row per finding of bench/suite/findings.csv"
    for line, rec in zip(rows, records, strict=True):
        finding, study, estimate, truth = (c.strip() for c in line.strip("|").split("|"))
        assert finding == rec["finding"]
        published = _figures(study)  # the study's figure, shown to 2 decimals
        assert len(published) == (1 if rec["published"] else 0), finding
        if rec["published"]:
            assert math.isclose(published[0], float(rec["published"]), abs_tol=0.0051), finding
        if rec["median"] and rec["lo95"]:
            want = [float(rec[k]) for k in ("median", "lo95", "hi95")]
        else:
            want = [float(rec["median"] or rec["probability"])]
        got = _figures(estimate)
        assert len(got) == len(want), (finding, got, want)
        assert all(map(_close, got, want)), (finding, got, want)
        assert ("misses truth" in estimate) == (rec["covered"] == "False"), finding
        got_truth = _figures(truth)
        assert len(got_truth) == (1 if rec["truth"] else 0), finding
        if rec["truth"]:
            assert _close(got_truth[0], float(rec["truth"])), (finding, got_truth, rec["truth"])


def test_readme_test_command_is_cis():
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip().startswith("make")
    ]
    assert ci, ".ci/run calls make"
    commands = re.search(r"## Two commands\n+```sh\n(.*?)```", README.read_text(), re.S)
    assert commands, "the README's Two commands block"
    lines = [line.split("#")[0].strip() for line in commands.group(1).splitlines()]
    for command in ci:
        assert command in lines, f"{command!r} (what .ci/run calls) is not in the README"
    assert "make run" in lines


def test_readme_is_short_and_links_resolve():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 220
    for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", text):
        if not re.match(r"[a-z]+:", target):
            assert (ROOT / target).exists(), target


# ------------------------------------------------------------------------------- site
HAND_WRITTEN = [
    "index.md",
    "getting-started.md",
    "outputs.md",
    "model.md",
    "model-language.md",
    "findings.md",
    "input.md",
    "validation.md",
    "performance.md",
    "spec.md",
    "user-guide.md",
    "examples.md",
    "reference.md",
    "data-and-disclosure.md",
    "benchmarks.md",
]
# Numbers that define something (units, rules, limits, file formats), not measurements.
DEFINITIONS = {
    "10",  # units of deprivation (10 percentage points) and the suppression threshold
    "95",
    "80",  # interval levels
    "0.1",  # the LA outcome's odds ratio per 0.1 of log gradient
    "0.001",
    "1,000,000",
    "1e10",  # input contract limits
    "2011",  # LSOA codes' census
    "1e-8",  # tolerance of the likelihood equivalence test
    "1e-4",
    "1e6",  # the cheap NB2 form's stated exactness
    "5",  # optional rounding of released counts
    "1.0",  # c_g, the records' stated association (a simulation setting)
    "2",
    "1",  # the LKJ's "2K coefficients"; rank 1 = steepest
    "0.7",  # ArviZ's Pareto-k threshold formula
}


def page_numbers(name: str) -> list[str]:
    text = (DOCS / name).read_text(encoding="utf-8")
    # file names and codes such as IoD2019, RUC2011, mid-2015, DfE tables 2013-2025
    text = re.sub(r"\b[A-Za-z]+\d{4}\b|\b(?:mid-)?\d{4}(?:-\d{4})?\b(?! s\b)", "", text)
    return [n for n in numbers_in(text) if n not in DEFINITIONS]


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_hand_written_pages_take_measurements_from_files(name):
    assert page_numbers(name) == [], f"docs/{name}: a number typed by hand"


def test_every_number_role_resolves():
    roles = [
        r
        for page in DOCS.glob("*.md")
        for r in sgnumbers.ROLE.findall(page.read_text(encoding="utf-8"))
    ]
    assert len(roles) > 20
    for role in roles:
        shown = sgnumbers.value(role)
        assert (shown and NUMBER.search(shown)) or shown in ("PASS", "WARN", "FAIL"), role


def test_number_roles_read_the_file():
    calibration = json.loads((ROOT / "bench/calibration/calibration.json").read_text())
    p = calibration["models"]["national"]["per_la"]["coverage95"]["p"]
    assert (
        sgnumbers.value(
            "bench/calibration/calibration.json models.national.per_la.coverage95.p .1%"
        )
        == f"{p:.1%}"
    )
    with FINDINGS_CSV.open(newline="", encoding="utf-8") as fh:
        n = len(list(csv.DictReader(fh)))
    assert sgnumbers.value("bench/suite/findings.csv rows") == str(n)
    for bad in (
        "bench/suite/findings.csv count",
        "bench/nothing.json a",
        "bench/results.json headline.no_such_key",
        "bench/results.json headline",
    ):
        with pytest.raises(sgnumbers.NumberError):
            sgnumbers.value(bad)


# ------------------------------------------------------------------------------- the lock
def _pins(path: Path) -> dict[str, set[str]]:
    pins: dict[str, set[str]] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", line)
        if m:
            pins.setdefault(m.group(1).lower().replace("_", "-"), set()).add(m.group(2))
    return pins


def test_docs_lock_has_the_runtime_pins_hashed():
    docs, runtime = _pins(DOCS / "requirements.lock"), _pins(ROOT / "requirements.lock")
    differ = {
        k: (runtime[k], docs[k]) for k in docs.keys() & runtime.keys() if docs[k] != runtime[k]
    }
    assert not differ, f"docs/requirements.lock and requirements.lock disagree: {differ}"
    import tomllib

    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {Requirement(d).name.lower().replace("_", "-") for d in deps}
    assert names <= docs.keys(), f"runtime dependencies not in the docs lock: {names - docs.keys()}"
    assert {"sphinx", "myst-nb", "numpydoc", "jupytext"} <= docs.keys()
    entries = re.split(r"\n(?=[A-Za-z0-9])", (DOCS / "requirements.lock").read_text())
    for entry in entries:
        if "==" in entry and not entry.startswith("#"):
            assert "--hash=sha256:" in entry, entry.splitlines()[0]


# ------------------------------------------------------------------------------- notebooks
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


@pytest.mark.parametrize("script", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_execution_is_fresh(script):
    """The site renders docs/notebooks/NAME.ipynb without running it: it must be an
    execution of the script as it is now (re-run docs/execute_notebooks.py NAME)."""
    import jupytext
    import nbformat

    executed = DOCS / "notebooks" / f"{script.stem}.ipynb"
    assert executed.exists(), f"run: .venv/bin/python docs/execute_notebooks.py {script.stem}"
    nb = nbformat.read(executed, as_version=4)
    meta = nb.metadata["socialgradient"]
    assert meta["script_sha256"] == hashlib.sha256(script.read_bytes()).hexdigest(), (
        f"{script.name} changed since it was executed: docs/execute_notebooks.py {script.stem}"
    )
    source = jupytext.read(script)
    notes = [c for c in nb.cells if "sg-executed" in c.metadata.get("tags", [])]
    assert len(notes) == 1, "one note of how the notebook was executed"
    assert f"in {meta['wall_seconds']} s" in notes[0].source
    assert [(c.cell_type, c.source) for c in nb.cells if c not in notes] == [
        (c.cell_type, c.source) for c in source.cells
    ]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert any(
        o.output_type == "display_data" and "image/png" in o.data for c in code for o in c.outputs
    ), "no figure in the executed notebook"


# ------------------------------------------------------------------------------- the build
@pytest.mark.slow
def test_make_docs_builds_with_no_warning():
    """``make docs``: Sphinx with -W --keep-going (warnings are errors) from .venv-docs."""
    run = subprocess.run(
        ["make", "docs"], cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert "build succeeded." in log, log[-4000:]
    assert not re.findall(r": (?:WARNING|ERROR|CRITICAL):", log), log[-4000:]
    html = ROOT / "docs" / "_build" / "html"
    for page in (
        "index.html",
        "validation.html",
        "_generated/api.html",
        "_generated/cli.html",
        "notebooks/01_national_gradient.html",
    ):
        assert (html / page).exists(), page
    assert "sgnum" not in (html / "validation.html").read_text(encoding="utf-8")
