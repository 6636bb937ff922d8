"""Sphinx extension of the socialgradient docs: every number and table from a committed file.

* ``{sgnum}`FILE PATH [FORMAT]``` (role): one value read from a committed result file at
  build time (``sgnumbers.value``), e.g. ``{sgnum}`bench/calibration/calibration.json
  models.national.per_la.coverage95.p .1%```. A missing file, key or row is a build error,
  so a page can never show a number its file lost.
* At ``builder-inited`` the pages generated from files are written to ``docs/_generated/``
  (git-ignored): the command-line reference (``socialgradient [COMMAND] --help`` of every
  command), the API reference (the public names of ``socialgradient.api``), the model's full
  statement (the docstring of the module defining ``socialgradient.api.build_model``,
  wherever it lives), and copies of the
  committed result reports (``bench/**/*.md``, ``data/README.md``) with links to files outside
  the site turned into file names.

The package is imported as a user would (``socialgradient.api``, ``socialgradient.spec``,
``socialgradient.cli``); no internal module is named here.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from docutils import nodes
from sgnumbers import NumberError, value
from sphinx.errors import ExtensionError
from sphinx.util import logging

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GEN = DOCS / "_generated"
logger = logging.getLogger(__name__)

# (committed file, generated page, title when the file has no H1, what the file is)
RESULT_PAGES = [
    ("bench/README.md", "bench/index.md", None, "the guide to the benchmarks"),
    ("bench/whole.md", "bench/whole.md", None,
     "written by `bench/whole.py` from `bench/whole.json`, with its reading"),
    ("bench/results.md", "bench/results.md", None,
     "written by `bench/run.py` from `bench/results.json`"),
    ("bench/findings.md", "bench/reading.md", "Reading of the benchmark numbers",
     "the reading of `bench/results.json`"),
    ("bench/language.md", "bench/language.md", None,
     "measurements of `bench/language.py` and `bench/nb_normaliser.py`"),
    ("bench/calibration.md", "bench/calibration.md", None, "the calibration study's method"),
    ("bench/calibration/calibration.md", "bench/calibration_results.md", None,
     "written by `socialgradient calibrate` with `bench/calibration/calibration.json`"),
    ("bench/suite/findings.md", "bench/suite_findings.md", None,
     "written by `socialgradient suite` with `bench/suite/findings.csv`"),
    ("bench/suite/timing.md", "bench/suite_timing.md", None,
     "the suite's measured run, from `bench/suite/suite.csv`"),
    ("bench/peers/README.md", "bench/peers.md", None, "the guide to the R peers"),
    ("bench/peers/terms.md", "bench/peers_terms.md", None,
     "written by `bench/peers/terms.py` with `bench/peers/terms.json`"),
    ("data/README.md", "data.md", None,
     "the data dictionary of the default data; truths in `data/truth.json`"),
]

LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def sgnum_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    try:
        return [nodes.Text(value(text))], []
    except NumberError as exc:
        msg = inliner.reporter.error(str(exc), line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]


# --------------------------------------------------------------------------- pages
def _rewrite(text: str, src: Path, dst: Path) -> str:
    """Links to files outside the site become the file's repository path; images are copied
    beside the generated page."""

    def repl(m: re.Match) -> str:
        bang, label, target = m.groups()
        if re.match(r"[a-z]+:|#", target):
            return m.group(0)
        file = (src.parent / target.split("#")[0]).resolve()
        if bang:
            shutil.copy2(file, dst.parent / file.name)
            return f"![{label}]({file.name})"
        rel = file.relative_to(ROOT).as_posix() if file.is_relative_to(ROOT) else target
        return f"{label} (`{rel}`)" if label.strip("`") != rel else f"`{rel}`"

    return LINK.sub(repl, text)


def result_pages() -> None:
    for rel, out, title, producer in RESULT_PAGES:
        src, dst = ROOT / rel, GEN / out
        dst.parent.mkdir(parents=True, exist_ok=True)
        text = _rewrite(src.read_text(encoding="utf-8"), src, dst)
        lines = text.splitlines()
        if title and not (lines and lines[0].startswith("# ")):
            lines = [f"# {title}", "", *lines]
        note = (f"*The committed file `{rel}` ({producer}), copied as it is when the site "
                "is built.*")
        lines[1:1] = ["", note]
        dst.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _help(args: list[str]) -> str:
    env = {**os.environ, "COLUMNS": "100", "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "socialgradient.cli", *args, "--help"],
                         capture_output=True, text=True, env=env, check=False)
    if run.returncode != 0:
        raise ExtensionError(f"socialgradient {' '.join(args)} --help failed: {run.stderr}")
    return run.stdout


def _commands(args: list[str]) -> list[str]:
    """The sub-commands of ``socialgradient ARGS``, from the parser the CLI builds."""
    import argparse

    from socialgradient import cli

    parser = cli.parser()
    for arg in args:
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[arg]
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [name for sub in subs for name in sub.choices]


def cli_page() -> None:
    out = ["# Command line", "",
           "Generated at build time: the output of `socialgradient --help` and of "
           "`socialgradient COMMAND --help` for every command, so it says what this version "
           "accepts.", ""]

    def add(args: list[str], depth: int) -> None:
        text = _help(args)
        title = "socialgradient " + " ".join(args) if args else "socialgradient"
        out.extend(["#" * min(depth, 4) + f" `{title}`", "", "```text", text.rstrip(), "```", ""])
        for command in _commands(args):
            add([*args, command], depth + 1)

    add([], 2)
    (GEN / "cli.md").write_text("\n".join(out), encoding="utf-8")


def api_page() -> None:
    import socialgradient.api as api

    functions, classes, data = [], [], []
    for name in sorted(vars(api)):
        obj = getattr(api, name)
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        module = getattr(obj, "__module__", "") or ""
        if inspect.isclass(obj) and module.startswith("socialgradient"):
            classes.append(name)
        elif callable(obj) and module.startswith("socialgradient"):
            functions.append(name)
        elif name.isupper():
            data.append(name)
    out = ["# `socialgradient.api`", "",
           "```{eval-rst}", ".. automodule:: socialgradient.api", "   :no-members:", "```", ""]
    out += ["## Functions", "", "```{eval-rst}", ".. currentmodule:: socialgradient.api", ""]
    out += [f".. autofunction:: {n}" for n in functions] + ["```", ""]
    out += ["## Classes", "", "```{eval-rst}", ".. currentmodule:: socialgradient.api", ""]
    out += [f".. autoclass:: {n}\n   :no-index:" if n in ("Spec", "RecordsTable")
            else f".. autoclass:: {n}" for n in classes] + ["```", ""]
    out += ["## Constants", "", "```{eval-rst}", ".. currentmodule:: socialgradient.api", ""]
    out += [f".. autodata:: {n}\n   :no-value:" for n in data] + ["```", ""]
    (GEN / "api.md").write_text("\n".join(out), encoding="utf-8")


def generate(app) -> None:
    if GEN.exists():
        shutil.rmtree(GEN)
    GEN.mkdir(parents=True)
    result_pages()
    cli_page()
    api_page()
    model_statement()


BORDER = re.compile(r"^=+(?: +=+)+ *$")


def rst_errors(text: str) -> list[str]:
    """docutils' errors in ``text`` (Sphinx roles such as ``:func:`` read as plain literals),
    checked in a fresh process (plain docutils, not Sphinx's directives): an include inside
    MyST's eval-rst reports none of them, so they are looked for here."""
    check = (
        "import json, sys\n"
        "from docutils import nodes\n"
        "from docutils.core import publish_doctree\n"
        "tree = publish_doctree(sys.stdin.read(),\n"
        "                       settings_overrides={'report_level': 5, 'halt_level': 5})\n"
        "print(json.dumps([m.astext() for m in tree.findall(nodes.system_message)\n"
        "                  if m['level'] >= 3]))\n")
    plain = re.sub(r":(?:[a-z]+:)?[a-z]+:`", "`", text)
    run = subprocess.run([sys.executable, "-c", check], input=plain, capture_output=True,
                         text=True, check=True)
    return json.loads(run.stdout)


def tables_as_literal(text: str) -> str:
    """Each simple table (border, header, border, rows, border) as a literal block."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        if not BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        borders = [i, *[j for j in range(i + 1, len(lines)) if BORDER.match(lines[j])][:2]]
        end = borders[-1]
        out += ["::", "", *("    " + line for line in lines[i:end + 1]), ""]
        i = end + 1
    return "\n".join(out)


def model_statement() -> None:
    """The docstring of the module that defines ``socialgradient.api.build_model`` (the
    model's full statement: priors, units, parameterisation), wherever that module lives, as
    reST for ``docs/model.md`` to include. A simple table docutils cannot read (text in a
    column margin) is shown as the docstring's own text, preformatted, and said at build."""
    import socialgradient.api as api

    module = sys.modules[api.build_model.__module__]
    text = inspect.getdoc(module)
    if not text:
        raise ExtensionError(f"{module.__name__} has no docstring")
    errors = rst_errors(text)
    if errors and all("Malformed table" in e for e in errors):
        logger.info(f"sgdocs: {module.__name__}'s docstring has a malformed reST table; "
                    "shown preformatted")
        text = tables_as_literal(text)
        errors = rst_errors(text)
    if errors:
        raise ExtensionError(f"{module.__name__}'s docstring: {errors}")
    (GEN / "model_statement.rst.inc").write_text(text + "\n", encoding="utf-8")


def setup(app):
    app.add_role("sgnum", sgnum_role)
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
