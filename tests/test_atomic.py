"""Outputs are written atomically and idempotently.

A write that fails midway (the writer raises after some bytes, or the process is killed
with SIGKILL) leaves the previous complete file or no file, never a partial one under the
output's name; temporary files start with ``.`` and end ``.tmp`` and are removed after an
ordinary failure. Writing the same thing twice gives byte-identical files where the output
is deterministic (CSV, JSON, Parquet).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fakes import fake_tree
from socialgradient.data.sources import build
from socialgradient.data.synthetic import england
from socialgradient.release import disclosure, report
from socialgradient.sampling import fit
from socialgradient.util.files import atomic_write

TEMP = re.compile(r"^\..+\.tmp$")


class Boom(OSError):
    """A disk filling up halfway through a write."""


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TEMP.match(p.name))


def half_then_raise(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data[: max(len(data) // 2, 1)])
        f.flush()
    raise Boom("No space left on device")


# -- atomic_write -------------------------------------------------------------------------


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt, ValueError])
def test_atomic_write_failure_keeps_previous_file(tmp_path, error):
    target = tmp_path / "out" / "table.csv"
    atomic_write(target, lambda p: Path(p).write_bytes(b"a,b\n1,2\n"))
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert TEMP.match(Path(tmp).name)
        assert Path(tmp).parent == target.parent
        Path(tmp).write_bytes(b"a,b\n3,")
        raise error("midway")

    with pytest.raises(error):
        atomic_write(target, write)
    assert target.read_bytes() == b"a,b\n1,2\n"
    assert not Path(seen[0]).exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]


def test_atomic_write_failure_leaves_no_file(tmp_path):
    target = tmp_path / "new" / "summary.json"

    def write(tmp):
        Path(tmp).write_text('{"half": ')
        raise Boom("midway")

    with pytest.raises(Boom):
        atomic_write(target, write)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_write_is_idempotent_and_readable(tmp_path):
    target = tmp_path / "t.json"
    for _ in range(2):
        atomic_write(target, lambda p: Path(p).write_text('{"a": 1}\n'))
    assert target.read_text() == '{"a": 1}\n'
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]


KILL_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from socialgradient.util.files import atomic_write

    def write(tmp):
        with open(tmp, "wb") as f:
            for i in range(100_000):
                f.write(b"new,row\\n" * 8192)
                f.flush()
                if i == 3:
                    print("writing", flush=True)
                time.sleep(0.002)

    atomic_write(sys.argv[1], write)
    """
)


@pytest.mark.parametrize("previous", [True, False])
def test_sigkill_mid_write_leaves_previous_file_or_none(tmp_path, previous):
    target = tmp_path / "big.csv"
    if previous:
        atomic_write(target, lambda p: Path(p).write_bytes(b"old,complete\n"))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(0.1)
        left = temps(tmp_path)
        assert len(left) == 1
        assert (tmp_path / left[0]).stat().st_size > 0
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    if previous:
        assert target.read_bytes() == b"old,complete\n"
    else:
        assert not target.exists()
    # the killed run's temp file stays, but is hidden and named as a temp, not an output
    others = [p.name for p in tmp_path.iterdir() if p != target]
    assert others
    assert all(TEMP.match(n) for n in others)


SYNTHETIC_LOOP = textwrap.dedent(
    """
    import sys
    from socialgradient.data.synthetic import england
    s = england.simulate(seed=3, scale=0.3)
    print("ready", flush=True)
    while True:
        england.write(s, sys.argv[1])
    """
)


@pytest.mark.parametrize("delay", [0.0, 0.13, 0.41])
def test_sigkill_during_synthetic_write_loop(tmp_path, delay):
    """Killed at an arbitrary moment of repeated writes, every output present is complete."""
    expected = england.simulate(seed=3, scale=0.3)
    proc = subprocess.Popen(
        [sys.executable, "-c", SYNTHETIC_LOOP, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    table = tmp_path / "neighbourhoods.parquet"
    if table.exists():
        pd.testing.assert_frame_equal(pd.read_parquet(table), expected.table)
    las = tmp_path / "las.parquet"
    if las.exists():
        pd.testing.assert_frame_equal(pd.read_parquet(las), expected.las)
    truth = tmp_path / "truth.json"
    if truth.exists():
        assert json.loads(truth.read_text()) == json.loads(json.dumps(expected.truth))
    outputs = {"neighbourhoods.parquet", "las.parquet", "truth.json"}
    assert all(p.name in outputs or TEMP.match(p.name) for p in tmp_path.iterdir())


# -- disclosure.write_table ----------------------------------------------------------------


def la_table(shift: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "la": [f"E0600000{i}" for i in range(1, 7)],
            "cases": np.array([3, 25, 40, 12, 7, 90]) + shift,
            "children": [1200, 5400, 8000, 3000, 2500, 15000],
        }
    )


def test_disclosure_write_table_failure_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "la.csv"
    disclosure.write_table(la_table(), path, level="la", count_columns=["cases"])
    before = snapshot(tmp_path)

    def broken(self, path_or_buf=None, *args, **kwargs):
        half_then_raise(path_or_buf, b"la,cases,children\nE06000001,,1200\nE0600")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(Boom):
        disclosure.write_table(la_table(5), path, level="la", count_columns=["cases"])
    assert snapshot(tmp_path) == before  # table and log unchanged, no temp left


def test_disclosure_write_table_is_idempotent(tmp_path):
    path = tmp_path / "la.csv"
    disclosure.write_table(la_table(), path, level="la", count_columns=["cases"])
    first = path.read_bytes()
    disclosure.write_table(la_table(), path, level="la", count_columns=["cases"])
    assert path.read_bytes() == first
    log = [json.loads(x) for x in (tmp_path / disclosure.LOG_NAME).read_text().splitlines()]
    assert len(log) == 2
    assert log[0]["sha256"] == log[1]["sha256"]
    assert temps(tmp_path) == []


def test_disclosure_refusal_writes_no_file(tmp_path):
    path = tmp_path / "children.csv"
    with pytest.raises(disclosure.DisclosureError):
        disclosure.write_table(la_table(), path, level="child")
    assert not path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [disclosure.LOG_NAME]


# -- england.write -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_synthetic():
    return england.simulate(seed=11, scale=0.05)


def test_synthetic_write_is_idempotent(tmp_path, small_synthetic):
    england.write(small_synthetic, tmp_path)
    first = snapshot(tmp_path)
    england.write(small_synthetic, tmp_path)
    assert snapshot(tmp_path) == first
    assert set(first) == {"neighbourhoods.parquet", "las.parquet", "truth.json"}
    again = england.simulate(seed=11, scale=0.05)
    england.write(again, tmp_path / "again")
    assert snapshot(tmp_path / "again") == first  # same seed, same bytes


def test_synthetic_write_failure_keeps_previous(tmp_path, small_synthetic, monkeypatch):
    england.write(small_synthetic, tmp_path)
    before = snapshot(tmp_path)
    other = england.simulate(seed=12, scale=0.05)

    def broken(self, path, *args, **kwargs):
        half_then_raise(path, before["neighbourhoods.parquet"])

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(Boom):
        england.write(other, tmp_path)
    assert snapshot(tmp_path) == before
    monkeypatch.undo()
    monkeypatch.setattr(
        Path, "write_text", lambda self, text, *a, **k: half_then_raise(self, text.encode())
    )
    with pytest.raises(Boom):  # the second file fails: the first is the new complete one
        england.write(other, tmp_path)
    monkeypatch.undo()
    assert pd.read_parquet(tmp_path / "neighbourhoods.parquet").equals(other.table)
    assert pd.read_parquet(tmp_path / "las.parquet").equals(other.las)
    assert (tmp_path / "truth.json").read_bytes() == before["truth.json"]
    assert temps(tmp_path) == []


# -- fit.save and report.write --------------------------------------------------------------


@pytest.fixture(scope="module")
def trees():
    return fake_tree(n_la=4, n_lsoa_per_la=8, draws=20), fake_tree(
        n_la=4, n_lsoa_per_la=8, draws=20, seed=1
    )


def test_fit_save_failure_keeps_previous(tmp_path, trees, monkeypatch):
    path = tmp_path / "posterior.nc"
    fit.save(trees[0], path)
    before = snapshot(tmp_path)

    def broken(self, filepath=None, *args, **kwargs):
        half_then_raise(filepath, before["posterior.nc"])

    monkeypatch.setattr(xr.DataTree, "to_netcdf", broken)
    with pytest.raises(Boom):
        fit.save(trees[1], path)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    back = fit.load(path)
    xr.testing.assert_identical(back["posterior"].to_dataset(), trees[0]["posterior"].to_dataset())


def test_fit_save_twice_gives_the_same_fit(tmp_path, trees):
    fit.save(trees[0], tmp_path / "a.nc")
    fit.save(trees[0], tmp_path / "a.nc")
    fit.save(trees[0], tmp_path / "b.nc")
    a, b = fit.load(tmp_path / "a.nc"), fit.load(tmp_path / "b.nc")
    for group in ("posterior", "observed_data", "constant_data"):
        xr.testing.assert_identical(a[group].to_dataset(), b[group].to_dataset())
    assert (tmp_path / "a.nc").read_bytes() == (tmp_path / "b.nc").read_bytes()
    assert temps(tmp_path) == []


DETERMINISTIC = ("release/summary.json", "release/la_gradients.csv", "release/ppc.json")


def tree_snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_report_write_is_idempotent(tmp_path, trees):
    paths = report.write(trees[0], tmp_path / "a")
    first = tree_snapshot(tmp_path / "a")
    report.write(trees[0], tmp_path / "a")
    second = tree_snapshot(tmp_path / "a")
    report.write(trees[0], tmp_path / "b")
    other = tree_snapshot(tmp_path / "b")
    for name in DETERMINISTIC:
        assert second[name] == first[name] == other[name], name
    assert set(first) == set(second) == set(other)
    assert all(p.exists() for p in paths.values())
    assert {"summary", "la_gradients", "ppc_json", "ppc", "posterior"} <= set(paths)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        ".lock",
        "MANIFEST.json",
        "internal",
        "release",
    ]  # no temp or old set left


def test_report_write_failure_keeps_previous_set(tmp_path, trees, monkeypatch):
    """A failure while writing any piece leaves the previous set whole: every file as it was
    (not only the failing piece), no temp left behind, the manifest still checking."""
    from socialgradient.util import outputs

    out = tmp_path / "fit"
    report.write(trees[0], out)
    real_write_text, real_to_csv = Path.write_text, pd.DataFrame.to_csv
    for name in ("summary.json", "la_gradients.csv", "ppc.json", "posterior.nc"):
        before = tree_snapshot(out)

        def write_text(self, text, *args, name=name, **kwargs):
            if self.name == name:
                half_then_raise(self, text.encode())
            return real_write_text(self, text, *args, **kwargs)

        def to_csv(self, path_or_buf=None, *args, name=name, **kwargs):
            if isinstance(path_or_buf, str | Path) and Path(path_or_buf).name == name:
                half_then_raise(path_or_buf, b"la,cases\nE0600")
            return real_to_csv(self, path_or_buf, *args, **kwargs)

        def to_netcdf(self, filepath=None, *args, before=before, **kwargs):
            half_then_raise(filepath, before["internal/posterior.nc"])

        monkeypatch.setattr(Path, "write_text", write_text)
        monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
        monkeypatch.setattr(xr.DataTree, "to_netcdf", to_netcdf)
        with pytest.raises(Boom):
            report.write(trees[1], out)
        monkeypatch.undo()
        assert tree_snapshot(out) == before, name
        assert not [p for p in out.iterdir() if p.name.startswith((".tmp-", ".commit-", ".old-"))]
        outputs.verify(out)
        fit.load(out / "internal" / "posterior.nc")


# -- data build outputs ----------------------------------------------------------------------


def test_data_build_write_is_idempotent_and_atomic(tmp_path, monkeypatch):
    from test_sources import make_shared

    table, rep = build.build_neighbourhoods(make_shared(tmp_path / "shared"))
    out = tmp_path / "out"
    for suffix in (".parquet", ".csv", ".csv.gz"):
        build.write(table, rep, out / f"n{suffix}", out / "report.json")
        first = snapshot(out)
        build.write(table, rep, out / f"n{suffix}", out / "report.json")
        assert snapshot(out) == first, suffix
    before = snapshot(out)

    def broken(self, path, *args, **kwargs):
        half_then_raise(path, before["n.parquet"])

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(Boom):
        build.write(table.iloc[:3], rep, out / "n.parquet", out / "report.json")
    assert snapshot(out) == before


def test_data_build_report_failure_leaves_no_temp(tmp_path, monkeypatch):
    from test_sources import make_shared

    table, rep = build.build_neighbourhoods(make_shared(tmp_path / "shared"))
    out = tmp_path / "out"
    build.write(table, rep, out / "n.parquet", out / "report.json")
    before = snapshot(out)
    monkeypatch.setattr(
        Path, "write_text", lambda self, text, *a, **k: half_then_raise(self, text.encode())
    )
    with pytest.raises(Boom):
        build.write(table, {**rep, "la_year": 2024}, out / "n.parquet", out / "report.json")
    monkeypatch.undo()
    assert (out / "report.json").read_bytes() == before["report.json"]
    assert temps(out) == []
