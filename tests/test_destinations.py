"""Never delete what we did not write; release folders that cannot lie (issue 27, items 3, 5).

Each attack a red team found is tried here and must now fail to destroy or to lie:

* a user's folder given as ``--out`` (``release/``, ``internal/``, ``.tmp-*``, a foreign
  manifest or ``.lock`` of theirs): refused before any work, naming what is there, nothing
  changed;
* an output on or inside its input (``census aggregate D --out D``, ``--out`` inside the input
  folder, an input where the write replaces it): refused;
* a spec ``name`` of ``../x`` or an absolute path: refused by the spec, and again where the
  suite joins it with ``--out`` (resolved: a link does not lead out either);
* a link or a FIFO in ``release/``/``internal/``: refused by ``verify`` (never followed, never
  opened) and by the writer;
* a planted ``.commit-*``: neither rolled forward nor deleted; refused with a message;
* an empty manifest, one naming files outside the set, with ``..``, absolute, or twice:
  refused; a manifest recomputed by whoever can write the folder is not detectable (no
  secret): said in the docs, and pinned here so nobody believes otherwise;
* ``--report`` (or ``--figures``) inside a ``release/``: refused;
* absolute paths in the disclosure logs of a set: none.

And what must keep working: a set rewritten in place, the main job twice on the same ``out/``
(with ``out/suite/`` beside it), ``report DIR --out DIR``, ``socialgradient verify``.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

from socialgradient import cli
from socialgradient.release import table_sets
from socialgradient.spec import Spec, SpecError
from socialgradient.study import suite
from socialgradient.util import outputs
from socialgradient.util.files import sha256_of
from test_outputs import generation_of, write_set
from test_release import fit_like, tiny_table


def tree_of(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` (links as their target text, folders as None)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                out[rel] = b"-> " + os.readlink(path).encode()
            elif path.is_dir():
                out[rel] = None
            else:
                out[rel] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A fit's output set (a fake fit, written by report.write as fit would)."""
    from socialgradient.release import report

    root = tmp_path_factory.mktemp("saved")
    report.write(fit_like(tiny_table(5)), root / "fit")
    return root / "fit"


# -- 1. a user's folder is never written over -----------------------------------------------


USERS = {
    "release file": {"release/mine.txt": b"my draft"},
    "internal file": {"internal/notes/mine.csv": b"a,b\n1,2\n"},
    "tmp folder": {".tmp-data/mine.bin": b"\x00\x01"},
    "tmp folder with our key shape": {".tmp-0123456789ab/mine.txt": b"mine"},
    "old folder": {".old-backup/mine.txt": b"mine"},
    "foreign manifest": {"MANIFEST.json": b'{"mine": true}', "release/a.txt": b"a"},
    "lock with content": {".lock": b"my lock notes"},
}


@pytest.mark.parametrize("case", sorted(USERS))
def test_report_refuses_a_users_folder_and_changes_nothing(saved, tmp_path, capsys, case):
    user = tmp_path / "userdir"
    for rel, data in USERS[case].items():
        (user / rel).parent.mkdir(parents=True, exist_ok=True)
        (user / rel).write_bytes(data)
    before = tree_of(user)
    assert cli.main(["report", str(saved), "--out", str(user)]) == 2
    err = capsys.readouterr().err
    assert "socialgradient did not write" in err
    first = next(iter(USERS[case])).split("/")[0]
    assert first in err, err  # the message names what is there
    assert tree_of(user) == before


def test_a_users_other_files_are_kept_beside_a_set(saved, tmp_path):
    """Entries a write never touches do not make a folder "not ours": the set is added
    beside them (as out/suite/ beside the main job's set), and they stay as they were."""
    user = tmp_path / "userdir"
    (user / "suite").mkdir(parents=True)
    (user / "suite" / "keep.csv").write_text("mine")
    (user / "notes.txt").write_text("mine")
    assert cli.main(["report", str(saved), "--out", str(user)]) == 0
    outputs.verify(user)
    assert (user / "suite" / "keep.csv").read_text() == "mine"
    assert (user / "notes.txt").read_text() == "mine"


def test_a_writer_refuses_a_set_with_a_file_it_does_not_list(tmp_path):
    out = tmp_path / "out"
    write_set(out, 1)
    (out / "release" / "mine.txt").write_text("mine")  # someone's file inside our release/
    before = tree_of(out)
    with pytest.raises(outputs.OutputSetError, match=r"release/mine\.txt"):
        write_set(out, 2)
    assert tree_of(out) == before


def test_a_damaged_set_of_ours_is_replaced(tmp_path):
    """A file of ours altered or missing: still our set (the manifest lists every file
    there), so a rewrite replaces it."""
    out = tmp_path / "out"
    write_set(out, 1)
    (out / "release" / "r0.txt").write_text("edited\n")
    (out / "internal" / "big.bin").unlink()
    assert generation_of(out, write_set(out, 2)) == 2


# -- 2. no output on or inside its input ----------------------------------------------------


def records_like_set(folder: Path) -> dict:
    """An output set shaped as census write's (its returns in internal/)."""
    with outputs.Writer(folder, readme=table_sets.RECORDS_README, command="census write") as w:
        (w.internal / "E06000001_2019.xml").write_text("<Message/>\n")
        (w.internal / "child_lsoa.csv").write_text("la,child_id,lsoa\n")
        (w.release / "disclosure_log.jsonl").write_text("{}\n")
        return w.commit()


def test_census_aggregate_refuses_its_own_input_as_out(tmp_path, capsys):
    d = tmp_path / "D"
    manifest = records_like_set(d)
    before = tree_of(d)
    base = [
        "census",
        "aggregate",
        str(d),
        "--child-lsoa",
        str(d / "internal" / "child_lsoa.csv"),
        "--geography",
        str(tmp_path / "geo.parquet"),
    ]
    assert cli.main([*base, "--out", str(d)]) == 2
    assert "is also the input" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(d / "table")]) == 2  # inside the input folder
    assert "lies inside the input" in capsys.readouterr().err
    assert tree_of(d) == before
    assert outputs.verify(d) == manifest


def test_fit_refuses_an_input_the_write_would_replace(tmp_path, capsys, monkeypatch):
    from socialgradient import api

    monkeypatch.setattr(api, "fit", lambda *a, **k: pytest.fail("fitted before the check"))
    d = tmp_path / "D"
    records_like_set(d)
    before = tree_of(d)
    table = d / "internal" / "child_lsoa.csv"
    assert cli.main(["fit", str(table), "--outcome", "referrals", "--out", str(d)]) == 2
    err = capsys.readouterr().err
    assert "which the write replaces" in err
    assert "internal" in err
    assert tree_of(d) == before


def test_suite_refuses_a_table_inside_a_spec_set_it_would_replace(tmp_path, capsys):
    out = tmp_path / "suite"
    spec_set = out / "national_referrals"
    write_set(spec_set, 1)
    table = spec_set / "internal" / "t.csv"
    tiny_table().to_csv(table, index=False)
    assert cli.main(["suite", "--data", str(table), "--out", str(out)]) == 2
    assert "national_referrals/internal of --out" in capsys.readouterr().err


def test_an_input_through_a_link_is_still_the_input(tmp_path, capsys):
    d = tmp_path / "D"
    records_like_set(d)
    (tmp_path / "alias").symlink_to(d, target_is_directory=True)
    assert (
        cli.main(
            [
                "census",
                "aggregate",
                str(tmp_path / "alias"),
                "--child-lsoa",
                str(d / "internal" / "child_lsoa.csv"),
                "--geography",
                str(tmp_path / "g.parquet"),
                "--out",
                str(d),
            ]
        )
        == 2
    )
    assert "is also the input" in capsys.readouterr().err


# -- 3. spec names are plain names, twice over --------------------------------------------


@pytest.mark.parametrize(
    "name", ["../x", "../../etc", "/tmp/abs", "a/b", "a\\b", ".hidden", "..", "a..b", ""]
)
def test_a_spec_name_that_is_not_plain_is_refused(name, tmp_path):
    if name:
        with pytest.raises(SpecError, match="name"):
            Spec("referrals", name=name)
    with pytest.raises(ValueError, match="spec name"):
        suite.spec_folder(tmp_path, name)


def test_a_spec_path_escape_is_refused_by_the_suite_before_any_work(tmp_path, monkeypatch):
    from socialgradient import api

    monkeypatch.setattr(api, "encode", lambda *a, **k: pytest.fail("built a table"))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("mine")
    for name in ("../victim", str(victim)):
        models = tmp_path / "models"
        shutil.rmtree(models, ignore_errors=True)
        models.mkdir()
        (models / "x.toml").write_text(f'name = {json.dumps(name)}\noutcome = "referrals"\n')
        with pytest.raises(ValueError, match="name"):
            suite.run(models, tiny_table(), tmp_path / "out")
        assert tree_of(victim) == {"precious.txt": b"mine"}


def test_the_suite_resolves_a_spec_folder_and_refuses_a_link_out(tmp_path):
    """Defence in depth: a name the spec allows, whose folder under --out is a link
    elsewhere, does not lead the write out of --out."""
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "national").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match="outside --out"):
        suite.spec_folder(out, "national")
    assert suite.spec_folder(out, "other") == out / "other"
    for reserved in ("_tables", "figures", "suite.csv"):
        with pytest.raises(ValueError, match="spec name"):
            suite.spec_folder(out, reserved)


# -- 4. no link, FIFO or other special file in a set -----------------------------------------


def test_a_link_in_release_fails_verify_and_report(saved, tmp_path, capsys):
    s = tmp_path / "set"
    shutil.copytree(saved, s)
    (s / "release" / "more").symlink_to("../internal", target_is_directory=True)
    with pytest.raises(outputs.OutputSetError, match="release/more is a link"):
        outputs.verify(s)
    assert cli.main(["report", str(s), "--out", str(tmp_path / "o")]) == 2
    assert "release/more is a link" in capsys.readouterr().err
    assert cli.main(["verify", str(s)]) == 1
    assert "release/more is a link" in capsys.readouterr().err
    # a listed file replaced by a link to the posterior: refused too (not followed, not hashed)
    (s / "release" / "more").unlink()
    (s / "release" / "ppc.json").unlink()
    (s / "release" / "ppc.json").symlink_to("../internal/posterior.nc")
    with pytest.raises(outputs.OutputSetError, match=r"release/ppc\.json is a link"):
        outputs.verify(s)
    # the whole part a link
    shutil.rmtree(s / "release")
    (s / "release").symlink_to("internal", target_is_directory=True)
    with pytest.raises(outputs.OutputSetError, match="release/ is a link"):
        outputs.verify(s)


def test_a_writer_commits_no_link(tmp_path):
    out = tmp_path / "out"
    write_set(out, 1)

    def with_a_link(w):
        (w.release / "more").symlink_to("../internal", target_is_directory=True)

    with pytest.raises(outputs.OutputSetError, match="is a link"):
        write_with(out, 2, with_a_link)
    assert generation_of(out, outputs.verify(out)) == 1
    assert not list(out.glob(".tmp-*"))


def write_with(out: Path, gen: int, also) -> dict:
    """write_set's set, with ``also(writer)`` done before the commit."""
    with outputs.Writer(out, generation=gen) as w:
        (w.release / "r0.txt").write_text(f"{gen}\n")
        also(w)
        return w.commit()


def _verify_in_time(out: Path) -> list[str]:
    """outputs.check in a thread: a FIFO opened for hashing would block forever."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(c=outputs.check(out)), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "verify blocked: it opened a FIFO"
    return result["c"][1]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_a_set_is_refused_without_being_opened(tmp_path):
    out = tmp_path / "out"
    write_set(out, 1)
    os.mkfifo(out / "internal" / "pipe")
    problems = _verify_in_time(out)
    assert any("internal/pipe is a FIFO" in p for p in problems), problems
    with pytest.raises(outputs.OutputSetError, match="internal/pipe is a FIFO"):
        write_set(out, 2)  # not ours: refused, not swapped out and deleted
    assert (out / "internal" / "pipe").exists()
    (out / "internal" / "pipe").unlink()
    with pytest.raises(outputs.OutputSetError, match="FIFO"):
        write_with(out, 3, lambda w: os.mkfifo(w.internal / "pipe"))
    assert generation_of(out, outputs.verify(out)) == 1


def test_a_hard_link_from_release_into_internal_is_refused(tmp_path):
    out = tmp_path / "out"
    with outputs.Writer(out, generation=1) as w:
        (w.internal / "secret.bin").write_text("1\n")
        (w.release / "r0.txt").write_text("1\n")
        os.link(w.internal / "secret.bin", w.release / "copy.bin")
        with pytest.raises(outputs.OutputSetError, match=r"same file as internal/secret\.bin"):
            w.commit()


# -- 5. a planted commit is neither rolled forward nor deleted ------------------------------


def plant_commit(out: Path, gen: int, token: bytes | None = None) -> Path:
    """A complete other set of generation ``gen`` as a ``.commit-*`` folder in ``out``."""
    other = out.parent / f"other{gen}"
    write_set(other, gen)
    planted = out / ".commit-0123456789ab"
    planted.mkdir()
    for name in ("release", "internal", "MANIFEST.json"):
        (other / name).rename(planted / name)
    if token is not None:
        (planted / outputs.TOKEN).write_bytes(token)
    return planted


@pytest.mark.parametrize("token", [None, b"socialgradient output-set writer " + b"a" * 32 + b"\n"])
def test_a_planted_commit_is_refused_not_rolled_forward(tmp_path, capsys, token):
    out = tmp_path / "out"
    write_set(out, 1)
    planted = plant_commit(out, 9, token)
    before = tree_of(out)
    for reader in (outputs.read, outputs.verify):
        with pytest.raises(outputs.OutputSetError, match="not left by socialgradient's writer"):
            reader(out)
    with pytest.raises(outputs.OutputSetError, match=r"\.commit-0123456789ab"):
        write_set(out, 2)
    assert cli.main(["verify", str(out)]) == 1
    assert "not left by socialgradient's writer" in capsys.readouterr().err
    assert tree_of(out) == before  # nothing rolled forward, nothing deleted
    shutil.rmtree(planted)
    assert generation_of(out, outputs.read(out)) == 1


# -- 6. manifests that cannot be a set's ------------------------------------------------------


def _manifest(out: Path, files: dict | str) -> None:
    text = (
        files if isinstance(files, str) else json.dumps({"format": outputs.FORMAT, "files": files})
    )
    (out / "MANIFEST.json").write_text(text)


def test_an_empty_manifest_fails(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "release").mkdir(parents=True)
    (out / "internal").mkdir()
    _manifest(out, {})
    with pytest.raises(outputs.OutputSetError) as err:
        outputs.verify(out)
    assert "lists no internal/README.txt" in str(err.value)
    assert "lists nothing in release/" in str(err.value)
    assert cli.main(["verify", str(out)]) == 1
    assert "lists nothing in release/" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rel", "words"),
    [
        ("../outside.txt", "outside release/ and internal/"),
        ("/etc/passwd", "not a relative path"),
        ("release/../internal/x", ".. step"),
        ("other/x.txt", "outside release/ and internal/"),
        ("release\\x.txt", "not a relative path"),
        ("MANIFEST.json", "outside release/ and internal/"),
    ],
)
def test_a_manifest_naming_files_outside_the_set_fails(tmp_path, rel, words):
    out = tmp_path / "out"
    manifest = write_set(out, 1)
    files = dict(manifest["files"])
    files[rel] = {"sha256": "0" * 64, "bytes": 0}
    _manifest(out, files)
    with pytest.raises(outputs.OutputSetError, match=words):
        outputs.verify(out)


def test_a_manifest_naming_a_file_twice_fails(tmp_path):
    out = tmp_path / "out"
    manifest = write_set(out, 1)
    text = json.dumps({"format": outputs.FORMAT, "files": manifest["files"]})
    entry = json.dumps(manifest["files"]["release/r0.txt"])
    _manifest(out, text[:-2] + f', "release/r0.txt": {entry}}}}}')
    with pytest.raises(outputs.OutputSetError, match="names given twice"):
        outputs.verify(out)


def test_a_recomputed_manifest_is_not_detectable_without_a_secret(tmp_path):
    """The honest limit (outputs' docstring, README): whoever can write the folder can add a
    file and recompute the manifest; verify then passes. Links, special files and
    release/internal twins stay refused even then."""
    out = tmp_path / "out"
    manifest = write_set(out, 1)
    (out / "release" / "added.txt").write_text("added\n")
    files = dict(manifest["files"])
    files["release/added.txt"] = {"sha256": sha256_of(out / "release" / "added.txt"), "bytes": 6}
    _manifest(out, files)
    assert "release/added.txt" in outputs.verify(out)["files"]


# -- 7. no output flag inside a release/ -----------------------------------------------------


def test_report_flag_inside_release_is_refused(saved, tmp_path, capsys):
    out = tmp_path / "o"
    for target in (
        out / "release" / "linkage.json",
        saved / "release" / "linkage.json",
        out / "internal" / "linkage.json",
    ):
        args = [
            "data",
            "build",
            str(tmp_path / "shared"),
            "--out",
            str(out),
            "--report",
            str(target),
        ]
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert "--report" in err
        assert "lies inside" in err, err
        assert not target.exists()
    assert not out.exists()


def test_figures_inside_release_are_refused(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli.main(["run", "--out", str(out), "--figures", str(out / "release")]) == 2
    assert "--figures" in capsys.readouterr().err
    assert not out.exists()


def test_out_inside_a_sets_release_is_refused(saved, tmp_path):
    with pytest.raises(outputs.OutputSetError, match="lies inside"):
        outputs.check_destination(saved / "release" / "sub")
    with pytest.raises(outputs.OutputSetError, match="lies inside"):
        outputs.Writer(saved / "internal" / "sub")


# -- 8. no absolute path in a set's logs -----------------------------------------------------


def test_the_table_sets_logs_name_no_absolute_path(tmp_path):
    out = tmp_path / "census"
    table = tiny_table(2)
    table["referrals"] = table["referrals"] * 7  # counts that pass the gate
    table_sets.write_table_set(
        out, table, counts=["referrals"], report={"note": "x"}, command="census aggregate"
    )
    logs = sorted(out.glob("*/*.jsonl"))
    assert [p.relative_to(out).as_posix() for p in logs] == [
        "internal/disclosure_log.jsonl",
        "release/disclosure_log.jsonl",
    ]
    for log in logs:
        text = log.read_text()
        assert str(tmp_path) not in text
        assert str(Path(tmp_path).resolve()) not in text
        for entry in map(json.loads, text.splitlines()):
            path = entry.get("path")
            assert path is None or not Path(path).is_absolute(), entry
    entries = [
        json.loads(x) for x in (out / "internal" / "disclosure_log.jsonl").read_text().splitlines()
    ]
    assert entries[-1]["path"] == "internal/neighbourhoods.parquet"


# -- what keeps working ---------------------------------------------------------------------


def test_report_rebuilds_a_set_in_place(saved, tmp_path):
    d = tmp_path / "d"
    shutil.copytree(saved, d)
    posterior = (d / "internal" / "posterior.nc").read_bytes()
    first = outputs.verify(d)
    assert cli.main(["report", str(d), "--out", str(d), "--round-to", "5"]) == 0
    again = outputs.verify(d)
    assert again["created"] >= first["created"]
    assert again["command"] == "report"
    assert (d / "internal" / "posterior.nc").read_bytes() == posterior
    # and from the file itself
    assert cli.main(["report", str(d / "internal" / "posterior.nc"), "--out", str(d)]) == 0
    outputs.verify(d)


def test_the_main_job_twice_on_the_same_out(tmp_path, monkeypatch):
    from socialgradient import api
    from socialgradient.results import checks

    table = tiny_table(3)
    data = tmp_path / "t.csv"
    table.to_csv(data, index=False)
    monkeypatch.setattr(api, "fit", lambda t, spec, **k: fit_like(table))
    monkeypatch.setattr(
        checks,
        "loo_compare",
        lambda fits: pd.DataFrame({"rank": [0, 1], "elpd_loo": [-1.0, -2.0]}, index=list(fits)),
    )
    out, figures = tmp_path / "out", tmp_path / "figures"
    (out / "suite").mkdir(parents=True)  # the suite's folder beside the main job's set
    (out / "suite" / "suite.csv").write_text("spec\n")
    args = ["run", "--data", str(data), "--out", str(out), "--figures", str(figures)]
    for _ in range(2):
        assert cli.main(args) in (0, 1)  # 1: a FAIL verdict of the fake fit, outputs written
        outputs.verify(out)
        assert (out / "suite" / "suite.csv").read_text() == "spec\n"
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock",
        "MANIFEST.json",
        "internal",
        "release",
        "suite",
    ]
    assert list(figures.glob("*.png"))


def test_verify_command_summarises_a_clean_set(saved, capsys):
    assert cli.main(["verify", str(saved)]) == 0
    said = capsys.readouterr().out
    assert "a whole, clean output set" in said
    assert "every SHA-256 checked" in said
    assert "no pending commit" in said


def test_verify_command_names_each_problem(tmp_path, capsys):
    out = tmp_path / "out"
    write_set(out, 1)
    (out / "release" / "r0.txt").write_text("9\n")
    (out / "internal" / "extra.txt").write_text("x")
    assert cli.main(["verify", str(out)]) == 1
    err = capsys.readouterr().err
    assert "release/r0.txt does not match its SHA-256" in err
    assert "internal/extra.txt" in err
    assert (out / "internal" / "extra.txt").exists()  # read-only: nothing changed
    assert cli.main(["verify", str(tmp_path / "nothing")]) == 1
    assert "not a folder" in capsys.readouterr().err
