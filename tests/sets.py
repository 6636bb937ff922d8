"""Checks shared by the tests of output sets: what release/ may hold, and SIGKILL at random
moments of a command's writing (see tests/test_release.py, tests/test_outputs.py)."""

from __future__ import annotations

import contextlib
import io
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from socialgradient.util import outputs

SRC = str(Path(__file__).resolve().parents[1] / "src")
LSOA_CODE = re.compile(rb"[EW]01\d{6}")


def assert_release_clean(out: Path, codes=(), counts=(), threshold: int = 10) -> list[Path]:
    """Nothing under ``out/release`` holds an LSOA code (those in ``codes``, or any code's
    shape) and every visible value of a ``counts`` column of a CSV there is 0 or at least
    ``threshold``. Returns the files looked at."""
    files = sorted(p for p in (out / "release").rglob("*") if p.is_file())
    codes = [str(c).encode() for c in codes]
    for p in files:
        blob = p.read_bytes()
        assert not [c for c in codes if c in blob], p.name
        assert not LSOA_CODE.search(blob), p.name
        if p.suffix == ".csv":
            table = pd.read_csv(io.BytesIO(blob))
            for c in set(counts) & set(table.columns):
                visible = table[c].dropna()
                assert ((visible == 0) | (visible >= threshold)).all(), (p.name, c)
    return files


def kill_while_writing(argv: list[str], out: Path, rng: random.Random, window: float) -> dict:
    """Run ``python ARGV`` (writing an output set into ``out``), SIGKILL it at a random moment
    up to ``window`` seconds after its writing began (or after it ended), then check what the
    next reader sees: the previous complete set or the new one (:func:`outputs.read`, which
    rolls a pending commit forward), no leftovers. Returns the manifest."""
    before = outputs.verify(out)["created"] if (out / "MANIFEST.json").exists() else None
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".tmp-*")) and proc.poll() is None:  # writing has begun
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(rng.uniform(0, window))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    with contextlib.suppress(outputs.OutputSetError):
        outputs.verify(out)
    manifest = outputs.read(out)  # recovery, as the next run does
    assert before is None or manifest["created"] >= before
    assert not [p for p in out.iterdir() if p.name.startswith((".tmp-", ".commit-", ".old-"))]
    return manifest
