"""Execute ``notebooks/*.py`` (jupytext percent scripts) and commit them, with their outputs
and figures, as ``docs/notebooks/<name>.ipynb`` for the documentation site.

``make docs`` does not execute notebooks: each fits models at the notebooks' own draw counts,
which takes minutes per notebook on 2 cores, so the site renders these committed executions
(myst-nb, ``nb_execution_mode = "off"``) and ``tests/test_docs.py`` checks that every one
still has its script's cells (a changed notebook must be executed again).

Run from the repository root with the project's environment::

    .venv/bin/python docs/execute_notebooks.py            # every notebook
    .venv/bin/python docs/execute_notebooks.py 01 03      # those whose name starts so

    SG_DRAWS=500 SG_TUNE=500 SG_LAS=40 .venv/bin/python docs/execute_notebooks.py 03

Each notebook runs in a fresh ipykernel kernel in a temporary folder (where it writes its
outputs), as "Run All" in Jupyter does; a failing cell stops with its traceback and nothing
is written for that notebook. The environment (SG_* settings: the notebooks' own defaults
unless set, e.g. fewer draws or LAs where the full run takes too long), the wall time, the
versions and the script's SHA-256 are recorded in the notebook's metadata
(``socialgradient``) and said on the page, in a note after the title (a markdown cell tagged
``sg-executed``, the one cell that is not the script's).
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import jupytext
import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "docs" / "notebooks"
CELL_TIMEOUT = 3600  # a guard against a hung kernel, not a budget


def source_sha256(script: Path) -> str:
    return hashlib.sha256(script.read_bytes()).hexdigest()


def execute(script: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = jupytext.read(script)
    with tempfile.TemporaryDirectory(prefix=f"sg-nb-{script.stem}-") as tmp:
        start = time.perf_counter()
        client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                                         resources={"metadata": {"path": tmp}})
        client.execute(env=env)
        seconds = time.perf_counter() - start
    import socialgradient

    nb.metadata["socialgradient"] = {
        "script": f"notebooks/{script.name}",
        "script_sha256": source_sha256(script),
        "executed_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_seconds": round(seconds, 1),
        "settings": {k: v for k, v in sorted(env.items()) if k.startswith("SG_")},
        "socialgradient": socialgradient.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    return nb


TAG = "sg-executed"


def with_banner(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook with one note after its title: when, where and how it was executed."""
    meta = nb.metadata["socialgradient"]
    settings = ", ".join(f"`{k}={v}`" for k, v in meta["settings"].items()
                         if k != "SG_SHARED_DATA") or "the notebook's defaults"
    text = (f"*Executed {meta['executed_utc'].replace('T', ' ').rstrip('Z')} UTC with "
            f"socialgradient {meta['socialgradient']}, Python {meta['python']}, on "
            f"{meta['machine']} (shared), in {meta['wall_seconds']} s; settings: {settings} "
            f"(`docs/execute_notebooks.py`).*")
    cells = [c for c in nb.cells if TAG not in c.metadata.get("tags", [])]
    note = nbformat.v4.new_markdown_cell(text, metadata={"tags": [TAG]})
    nb.cells = [*cells[:1], note, *cells[1:]]
    return nb


def main(argv: list[str]) -> int:
    scripts = sorted(NOTEBOOKS.glob("*.py"))
    if argv:
        scripts = [s for s in scripts if any(s.stem.startswith(a) for a in argv)]
    env = {**os.environ}
    shared = ROOT.parent / "shared" / "data"
    if shared.is_dir():
        env.setdefault("SG_SHARED_DATA", str(shared))
    env.pop("MPLBACKEND", None)  # the kernel's inline backend, so figures are kept
    OUT.mkdir(parents=True, exist_ok=True)
    for script in scripts:
        print(f"{script.name}: executing", flush=True)
        nb = with_banner(execute(script, env))
        target = OUT / f"{script.stem}.ipynb"
        nbformat.write(nb, target)
        meta = nb.metadata["socialgradient"]
        print(f"{script.name}: {meta['wall_seconds']} s -> {target.relative_to(ROOT)}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
