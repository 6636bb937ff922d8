"""Every notebook runs top to bottom (tiny draw counts), importing only the public API."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.py"))
# The theme notebooks fit two to four models each (on 12 LAs or a 5% records simulation), 02
# (the synthetic England) and 07 (the real LA panel) take 36-46 s each: within the default
# suite's time budget (~15 min on 2 cores) they run in the slow tier (make test-slow); 01,
# the main walkthrough, stays in the default tier.
SLOW = ("02_", "03_", "04_", "05_", "06_", "07_", "08_", "09_")
CASES = [pytest.param(p, marks=pytest.mark.slow) if p.name.startswith(SLOW) else p
         for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", CASES, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(notebook, tmp_path):
    # tiny draws; the theme notebooks on a few LAs and a small records simulation
    env = {**os.environ, "SG_DRAWS": "100", "SG_TUNE": "100", "SG_LAS": "12",
           "SG_SCALE": "0.05", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, str(notebook)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_notebooks_are_jupytext_percent_scripts():
    assert NOTEBOOKS
    for notebook in NOTEBOOKS:
        text = notebook.read_text()
        assert "format_name: percent" in text, notebook.name
        assert "# %%" in text, notebook.name
