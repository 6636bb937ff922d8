"""An output set on disk: its parts walked without following a link, its manifest checked.

``DIR/MANIFEST.json`` lists every file of the set under ``release/`` and ``internal/`` with
its SHA-256 and size (:func:`_manifest_problems` parses it: no ``..``, no absolute path, no
name twice, ``internal/README.txt`` and at least one file of ``release/`` listed);
:func:`_walk_parts` finds the files on disk there (``os.scandir``/``os.lstat``, never following
a link: links, FIFOs, devices and sockets are named, as is a file of ``release/`` that is the
same file, inode, as one of ``internal/``); :func:`_differences` compares the two. File names
in the manifest use ``/`` on every system. The protocol that writes a set is
:mod:`socialgradient.util.outputs`.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from socialgradient.util.files import sha256_of

PARTS = ("release", "internal")
MANIFEST = "MANIFEST.json"
FORMAT = "socialgradient-output-set/1"
README = "internal/README.txt"
INTERNAL_README = """NOT FOR RELEASE

This folder holds LSOA-level information: the full posterior tree (posterior.nc, whose
observed data, constant data and pointwise log-likelihood each reveal LSOA counts, codes and
incomes) and the posterior predictive checks with unprotected observed values (ppc_full.json:
totals by deprivation decile and LA, the largest single-LSOA count). Keep it inside the secure
environment.

What may be published is in ../release/, built only from numbers that passed the disclosure
gate. `socialgradient report DIR --out DIR` rebuilds it from this folder (e.g. under a
stricter rule).
"""


class OutputSetError(ValueError):
    """An output folder that cannot be written, or is not a complete, intact output set."""


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _kind(mode: int) -> str:
    for test, what in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return what
    return "not a regular file"


def _walk(root: Path, part: str) -> tuple[dict[str, os.stat_result], set[str], list[str]]:
    """Return every regular file under ``root/part``, and the links and special files there.

    The files as ``part/...`` -> its ``lstat``, walked with ``os.scandir`` without following
    a link; the paths that are links or special files, and a line for each.
    """
    files: dict[str, os.stat_result] = {}
    bad: set[str] = set()
    problems: list[str] = []
    st = _lstat(root / part)
    if st is None:
        return files, bad, problems
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        what = "a link" if stat.S_ISLNK(st.st_mode) else "not a folder"
        return files, {part}, [f"{part}/ is {what}"]
    stack = [root / part]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = Path(entry.path).relative_to(root).as_posix()
                junction = getattr(entry, "is_junction", lambda: False)()
                if entry.is_symlink() or junction:
                    bad.add(rel)
                    problems.append(
                        f"{rel} is a link (links are never part of a set: copied "
                        "with cp -rL or tar -h, a link ships what it points to)"
                    )
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    st = os.lstat(entry.path)  # full lstat: inode and links on Windows too
                    if stat.S_ISREG(st.st_mode):
                        files[rel] = st
                    else:
                        bad.add(rel)
                        problems.append(f"{rel} is {_kind(st.st_mode)}, not a regular file")
    return files, bad, problems


def _walk_parts(root: Path) -> tuple[dict[str, os.stat_result], set[str], list[str]]:
    """Return :func:`_walk` of ``release/`` and ``internal/``, with hard links between them.

    A line for any file of ``release/`` that is the same file (inode) as one of
    ``internal/``.
    """
    files: dict[str, os.stat_result] = {}
    bad: set[str] = set()
    problems: list[str] = []
    for part in PARTS:
        f, b, p = _walk(root, part)
        files.update(f)
        bad |= b
        problems += p
    inodes = {
        (st.st_dev, st.st_ino): rel
        for rel, st in files.items()
        if rel.startswith("internal/") and st.st_ino
    }
    for rel, st in sorted(files.items()):
        twin = inodes.get((st.st_dev, st.st_ino)) if rel.startswith("release/") else None
        if twin is not None and st.st_ino:
            problems.append(f"{rel} is the same file as {twin} (a hard link)")
    return files, bad, problems


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _Duplicate(sorted({k for k in keys if keys.count(k) > 1}))
    return dict(pairs)


def _entry_problem(rel: object, entry: object) -> str | None:
    """Why a manifest's file entry is not one a writer of ours writes (None if it is)."""
    if not isinstance(rel, str):
        return f"{rel!r} is not a path"
    if "\\" in rel or "\0" in rel or rel.startswith("/") or re.match(r"[A-Za-z]:", rel):
        return f"{rel!r} is not a relative path with /"
    parts = rel.split("/")
    if parts[0] not in PARTS or len(parts) < 2:
        return f"{rel!r} lies outside release/ and internal/"
    if any(p in ("", ".", "..") for p in parts):
        return f"{rel!r} holds an empty, . or .. step"
    if not isinstance(entry, dict):
        return f"{rel!r} has no hash and size"
    sha, size = entry.get("sha256"), entry.get("bytes")
    if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        return f"{rel!r} has no SHA-256"
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return f"{rel!r} has no size"
    return None


def _manifest_problems(path: Path) -> tuple[dict | None, list[str]]:
    """Return the manifest at ``path`` and what is wrong with it.

    None and the reasons where it cannot be used at all.
    """
    st = _lstat(path)
    if st is None:
        return None, [f"no {MANIFEST}"]
    if not stat.S_ISREG(st.st_mode):
        return None, [f"{MANIFEST} is a link or not a file"]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates)
    except _Duplicate as err:
        return None, [f"a damaged {MANIFEST} (names given twice: {err.args[0]})"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, [f"a damaged {MANIFEST} ({err})"]
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None, [f"a {MANIFEST} that is not a socialgradient output-set manifest"]
    files = manifest.get("files")
    if not isinstance(files, dict):
        return None, [f"a damaged {MANIFEST} (no file list)"]
    problems = [
        f"{MANIFEST}: {why}" for rel, entry in files.items() if (why := _entry_problem(rel, entry))
    ]
    if README not in files:
        problems.append(f"{MANIFEST} lists no {README} (every set has one)")
    if not any(rel.startswith("release/") for rel in files if isinstance(rel, str)):
        problems.append(f"{MANIFEST} lists nothing in release/ (every set has a file there)")
    return (None if problems else manifest), problems


def _manifest_of(root: Path) -> tuple[dict | None, list[str]]:
    return _manifest_problems(root / MANIFEST)


def _load_manifest(path: Path) -> dict:
    manifest, problems = _manifest_problems(path)
    if manifest is None:
        raise OutputSetError(f"{path}: {'; '.join(problems)}")
    return manifest


def _mismatch(root: Path, manifest: dict, parts=PARTS) -> str | None:
    """Why the files under ``root`` do not match ``manifest`` (None if they do)."""
    problems = _differences(root, manifest, parts)
    return problems[0] if problems else None


def _differences(root: Path, manifest: dict, parts=PARTS, walked: tuple | None = None) -> list[str]:
    listed = {k: v for k, v in manifest["files"].items() if k.split("/", 1)[0] in parts}
    if walked is None:
        files, bad, problems = {}, set(), []
        for part in parts:
            f, b, p = _walk(root, part)
            files.update(f)
            bad |= b
            problems += p
    else:
        files, bad, problems = walked
        problems = list(problems)
    missing = sorted(set(listed) - set(files) - bad)
    unlisted = sorted(set(files) - set(listed))
    if missing or unlisted:
        problems.append(f"files differ from the manifest (missing {missing}, unlisted {unlisted})")
    for rel in sorted(set(listed) & set(files)):
        entry = listed[rel]
        if files[rel].st_size != entry["bytes"] or sha256_of(root / rel) != entry["sha256"]:
            problems.append(f"{rel} does not match its SHA-256 in the manifest")
    return problems
