"""``socialgradient warm`` (socialgradient.cli.warm): the install step that compiles the default
models into the caches a fit reads, so the first fit starts warm.

One small model is compiled (into a temporary callbacks' cache; PyTensor's is the session's,
as every fit's): the rest loads it or compiles nothing."""

from __future__ import annotations

import os

import pytest

from socialgradient.cli import main
from socialgradient.cli import warm as warm_cli
from socialgradient.sampling import _nutpie as callbacks
from socialgradient.sampling import compiled
from socialgradient.spec import Spec

SPEC = Spec("referrals", la_effects="centred")  # test_callbacks' small model's spec


def _table():
    from socialgradient.data.synthetic.england import simulate

    t = simulate(seed=5, scale=0.2).table
    return t[t["la"].isin(t["la"].unique()[:6])].reset_index(drop=True)


def _model(table, spec=SPEC):
    """The model ``socialgradient.sampling.fit.fit`` builds for ``table``."""
    from socialgradient.model import parameterisation
    from socialgradient.model.build import build_model
    from socialgradient.model.encode import encode

    data = encode(table, spec)
    centred = parameterisation.choose(data, spec.family, spec.la_effects)
    return build_model(data, spec, centred=centred)


def _snapshot(root):
    """Every file under ``root`` (but the entries' ``used`` markers) with its bytes."""
    found = {}
    for top, _, files in os.walk(root):
        for f in files:
            if f != callbacks.MARKER:
                path = os.path.join(top, f)
                with open(path, "rb") as fh:
                    found[os.path.relpath(path, root)] = fh.read()
    return found


def _refuse(*args, **kwargs):
    raise AssertionError("compiled a model that was cached")


@pytest.fixture(scope="module")
def warmed(tmp_path_factory):
    """A callbacks' cache warmed once for the small table: (folder, table, first result)."""
    root = tmp_path_factory.mktemp("callbacks")
    table = _table()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(callbacks.ENV_DIR, str(root))
        mp.delenv(callbacks.ENV_SWITCH, raising=False)
        result = warm_cli.warm(table, [SPEC])
    return root, table, result


def test_warm_compiles_the_entry_a_fit_of_that_table_loads(warmed, monkeypatch):
    root, table, (first,) = warmed
    assert first.status == "compiled"
    model = _model(table)
    entry = callbacks._name(compiled.code_key(model))
    assert first.entry == entry
    assert sorted(p.name for p in root.iterdir()) == [entry]
    callbacks.verify(root / entry)  # sealed as a fit seals it
    # a fit in a new process (no compilation in memory) loads it: no PyTensor function built
    monkeypatch.setenv(callbacks.ENV_DIR, str(root))
    monkeypatch.setattr(callbacks, "_build", _refuse)
    loaded = callbacks.compile_model(model, compiled.code_key(model))
    assert loaded.logp_func is None
    assert loaded.compiled_logp_func.cache_hits == 1


def test_a_second_warm_compiles_and_writes_nothing(warmed, monkeypatch, tmp_path, capsys):
    root, table, _ = warmed
    before = _snapshot(root)
    monkeypatch.setenv(callbacks.ENV_DIR, str(root))
    monkeypatch.setattr(callbacks, "compile_model", _refuse)
    (again,) = warm_cli.warm(table, [SPEC])
    assert again.status == "cached"
    assert _snapshot(root) == before
    # the command, as make's install step runs it: exit 0, says so
    csv = tmp_path / "small.csv"
    table.to_csv(csv, index=False)
    spec = tmp_path / "small.toml"
    spec.write_text('name = "small"\noutcome = "referrals"\nla_effects = "centred"\n')
    assert main(["warm", "--data", str(csv), "--spec", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "small: cached" in out
    assert str(root) in out
    assert _snapshot(root) == before


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root writes into a read-only folder"
)
def test_a_read_only_cache_is_skipped_with_a_message(tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    monkeypatch.setenv(callbacks.ENV_DIR, str(ro))
    monkeypatch.setattr(callbacks, "compile_model", _refuse)
    try:
        assert main(["warm", "--data", "unread.csv"]) == 0
    finally:
        ro.chmod(0o700)
    out = capsys.readouterr().out
    assert f"the callbacks' cache {ro} is not writable" in out
    assert "skipped" in out
    assert list(ro.iterdir()) == []


def _read_only(monkeypatch, under: str) -> None:
    """Make files in folders under ``under`` fail to be created, as on a read-only mount."""
    import errno
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if str(dir).startswith(under):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(warm_cli.tempfile, "mkstemp", mkstemp)


def test_a_read_only_mount_is_skipped_with_a_message(tmp_path, monkeypatch, capsys):
    """As the test above, for root too (a read-only file system stops root as well)."""
    monkeypatch.setenv(callbacks.ENV_DIR, str(tmp_path / "callbacks"))
    monkeypatch.setattr(callbacks, "compile_model", _refuse)
    _read_only(monkeypatch, str(tmp_path))
    assert main(["warm", "--data", str(tmp_path / "missing.csv")]) == 0  # never read
    out = capsys.readouterr().out
    assert f"the callbacks' cache {tmp_path / 'callbacks'} is not writable" in out
    assert "Read-only file system" in out
    assert "skipped (a fit compiles as it goes)" in out


def test_a_cache_that_cannot_be_made_is_skipped_with_a_message(tmp_path, monkeypatch, capsys):
    """Under a file (for root too, who writes into read-only folders), or not private."""
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(callbacks, "compile_model", _refuse)
    monkeypatch.setenv(callbacks.ENV_DIR, str(tmp_path / "file" / "callbacks"))
    # the table is never read: nothing is done
    assert main(["warm", "--data", str(tmp_path / "missing.csv")]) == 0
    out = capsys.readouterr().out
    assert "cannot be used" in out
    assert "skipped (a fit compiles as it goes)" in out
    open_ = tmp_path / "open"
    open_.mkdir()
    open_.chmod(0o777)  # others could replace the cache: refused, as a fit refuses it
    monkeypatch.setenv(callbacks.ENV_DIR, str(open_ / "callbacks"))
    assert main(["warm", "--data", str(tmp_path / "missing.csv")]) == 0
    assert "writable by others" in capsys.readouterr().out


def test_a_pytensor_folder_that_cannot_be_written_is_skipped(tmp_path, monkeypatch, capsys):
    """PyTensor's base_compiledir is checked as the callbacks' folder is."""
    import pytensor

    base = str(pytensor.config.base_compiledir)
    _read_only(monkeypatch, base)
    monkeypatch.setenv(callbacks.ENV_DIR, str(tmp_path / "callbacks"))
    monkeypatch.setattr(callbacks, "compile_model", _refuse)
    assert main(["warm", "--data", str(tmp_path / "missing.csv")]) == 0
    out = capsys.readouterr().out
    assert f"PyTensor's compilation folder {base} is not writable" in out
    assert "skipped" in out


def test_the_fast_path_off_warms_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(callbacks.ENV_SWITCH, "0")
    monkeypatch.setenv(callbacks.ENV_DIR, str(tmp_path / "callbacks"))
    monkeypatch.setattr(callbacks, "compile_model", _refuse)
    assert main(["warm"]) == 0
    assert "turns the cached callbacks off; skipped" in capsys.readouterr().out
    assert not (tmp_path / "callbacks").exists()
