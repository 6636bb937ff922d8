"""Output sets (:mod:`socialgradient.util.outputs`): whole or not at all, verified by a manifest.

The kill test SIGKILLs a writer of output sets at random moments (60 times, half of them
with the two-rename fallback instead of ``renameat2``): before any recovery a reader either
refuses the folder or gets one complete generation, never a mixture; after recovery (what
the next writer, ``suite`` or ``report`` does) the folder is one complete set, at least as
new as the last complete one, with no leftovers.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from socialgradient.util import outputs

SRC = str(Path(__file__).resolve().parents[1] / "src")

LOOP = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from socialgradient.util import outputs
    if os.environ.get("NO_EXCHANGE"):
        outputs._EXCHANGE_AVAILABLE = False
    out, gen = Path(sys.argv[1]), int(sys.argv[2])
    print("ready", flush=True)
    while True:
        gen += 1
        with outputs.Writer(out, generation=gen) as w:
            for i in range(4):
                (w.release / f"r{i}.txt").write_text(f"{gen}\\n" * (1 + 3000 * i))
            (w.internal / "big.bin").write_bytes(f"{gen}\\n".encode() * 100_000)
            w.commit()
    """
)


def generation_of(out: Path, manifest: dict) -> int:
    """The one generation every file of the set carries (AssertionError on a mixture)."""
    gens = {
        int((out / rel).read_text().split("\n", 1)[0])
        for rel in manifest["files"]
        if not rel.endswith("README.txt")
    }
    assert gens == {manifest["generation"]}, f"mixed set: {gens}"
    return manifest["generation"]


def write_set(out: Path, gen: int) -> dict:
    with outputs.Writer(out, generation=gen) as w:
        (w.release / "r0.txt").write_text(f"{gen}\n")
        (w.internal / "big.bin").write_text(f"{gen}\n")
        return w.commit()


def test_a_set_round_trips_and_leaves_other_files_alone(tmp_path):
    out = tmp_path / "out"
    (out / "suite").mkdir(parents=True)
    (out / "suite" / "keep.csv").write_text("mine")
    manifest = write_set(out, 1)
    assert outputs.verify(out) == manifest
    assert set(manifest["files"]) == {"release/r0.txt", "internal/big.bin", "internal/README.txt"}
    assert "NOT FOR RELEASE" in (out / "internal" / "README.txt").read_text()
    write_set(out, 2)
    assert generation_of(out, outputs.verify(out)) == 2
    assert (out / "suite" / "keep.csv").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock",
        "MANIFEST.json",
        "internal",
        "release",
        "suite",
    ]


def test_a_failed_write_changes_nothing(tmp_path):
    out = tmp_path / "out"
    write_set(out, 1)

    def fail_midway():
        with outputs.Writer(out, generation=2) as w:
            (w.release / "r0.txt").write_text("2\n")
            raise RuntimeError("the fit's summary failed")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert generation_of(out, outputs.verify(out)) == 1
    with outputs.Writer(out, generation=3) as w:  # no commit: nothing happens
        (w.release / "r0.txt").write_text("3\n")
    assert generation_of(out, outputs.verify(out)) == 1
    assert not list(out.glob(".tmp-*"))


@pytest.mark.parametrize(
    "damage", ["altered", "unlisted", "missing", "manifest", "pending", "none"]
)
def test_a_reader_refuses_an_altered_or_partial_set(tmp_path, damage):
    out = tmp_path / "out"
    if damage != "none":
        write_set(out, 1)
    if damage == "altered":
        (out / "release" / "r0.txt").write_text("9\n")
    elif damage == "unlisted":
        (out / "release" / "summary.json").write_text("{}")
    elif damage == "missing":
        (out / "internal" / "big.bin").unlink()
    elif damage == "manifest":
        (out / "MANIFEST.json").write_text('{"format": "socialgr')
    elif damage == "pending":
        (out / ".commit-abc").mkdir()
    with pytest.raises(outputs.OutputSetError) as err:
        outputs.verify(out)
    assert str(out) in str(err.value)


def test_destination_is_checked_before_any_work(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(outputs.OutputSetError, match="is a file"):
        outputs.check_destination(afile)
    with pytest.raises(outputs.OutputSetError, match="lies under"):
        outputs.check_destination(afile / "out")
    assert outputs.check_destination(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(outputs.OutputSetError, match="permission denied"):
            outputs.check_destination(locked / "out")


def _kill_once(out: Path, gen: int, rng: random.Random, no_exchange: bool) -> tuple[int, bool]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if no_exchange:
        env["NO_EXCHANGE"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-c", LOOP, str(out), str(gen)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.25))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    mid_commit = bool(outputs.pending(out))
    # a reader that does not recover: a complete set, or a refusal
    with contextlib.suppress(outputs.OutputSetError):
        generation_of(out, outputs.verify(out))
    manifest = outputs.read(out)  # what the next writer, suite or report does first
    now = generation_of(out, manifest)
    assert now >= gen, "an older set replaced a newer complete one"
    left = [p.name for p in out.iterdir() if p.name.startswith((".tmp-", ".commit-", ".old-"))]
    assert left == []
    return now, mid_commit


def test_sigkill_at_random_moments_never_leaves_a_mixed_set(tmp_path):
    out = tmp_path / "out"
    gen = generation_of(out, write_set(out, 0))
    rng = random.Random(11)
    commits = 0
    for i in range(60):
        gen, mid = _kill_once(out, gen, rng, no_exchange=i % 2 == 1)
        commits += mid
    assert gen > 0  # the writer did complete sets between kills
    print(f"60 kills; {commits} landed mid-commit and were rolled forward")
    json.loads((out / "MANIFEST.json").read_text())
