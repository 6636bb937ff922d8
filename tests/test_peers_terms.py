"""Moderators and the binomial against glmmTMB on the same data (slow; needs Rscript with
glmmTMB: ``bench/peers/install.sh``). The recorded run is ``bench/peers/terms.md``."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript not installed"),
]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "peers"))


@pytest.fixture(scope="module", autouse=True)
def glmmtmb():
    ok = subprocess.run(["Rscript", "-e", "library(glmmTMB)"], capture_output=True)
    if ok.returncode:
        pytest.skip("R package glmmTMB not installed")


@pytest.mark.parametrize("kind", ["moderators", "binomial"])
def test_agrees_with_glmmtmb(kind):
    import terms

    result = terms.compare(kind, seed=2)
    assert result["ours"]["diagnostics"]["verdict"] == "PASS"
    for row in result["rows"]:
        assert abs(row["diff_in_sd"]) < 0.5, row
    covered = [row["covered"] for row in result["rows"]]
    assert sum(covered) >= len(covered) - 1, result["rows"]  # 95% intervals: one miss allowed
