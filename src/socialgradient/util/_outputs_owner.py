"""What in an output folder socialgradient put there: writer tokens, leftovers, the lock.

What a write may replace or delete, and only when socialgradient put it there (*ours*):

* ``release/``, ``internal/`` and ``MANIFEST.json``: only as an output set of ours, i.e. a
  manifest that parses (:mod:`~socialgradient.util._outputs_manifest`) and lists every file
  under ``release/`` and ``internal/`` (files it lists may be missing or altered: a damaged
  set of ours is replaced), with no link or special file there. ``release/`` or
  ``internal/`` without a manifest, or with a file the manifest does not list, is someone
  else's: the write is refused before any work
  (:func:`~socialgradient.util.outputs.check_destination`), naming what is there. Other
  entries of ``DIR`` do not make it "not ours": they are never opened, moved or deleted, so
  ``out/suite/`` beside the main job's set, or a user's notes, stay as they are.
* ``.tmp-X``, ``.commit-X``, ``.old-X`` (``X``: 12 random hex digits): only with the token of
  the writer that made them. Under the lock a writer first records a random token in
  ``DIR/.pending-X`` (fsynced), then creates ``.tmp-X`` with the same token in
  ``.tmp-X/.writer-token``. A ``.commit-X`` is rolled forward only when both tokens are
  present and equal; a ``.tmp-X`` or ``.old-X`` is deleted only when ``.pending-X`` holds a
  token and the folder's own token, if still there, is (a prefix of) it. Anything else of
  those names (a user's ``.tmp-data``, a planted ``.commit-*``) is neither completed nor
  deleted: :func:`~socialgradient.util.outputs.verify` names it and a writer refuses the
  folder. A planted pair of files with matching tokens is again a forgery the tokens cannot
  tell.
* ``.lock`` (the lock file, empty) and ``.probe-X``
  (:func:`~socialgradient.util.outputs.check_destination`'s probe, only with the probe's own
  text).

Writers of one ``DIR`` are serialised by a lock on ``DIR/.lock`` (:func:`_locked`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from pathlib import Path

from filelock import FileLock

from socialgradient.util._outputs_manifest import (
    MANIFEST,
    PARTS,
    _lstat,
    _manifest_of,
    _walk_parts,
)

LOCK = ".lock"
PROBE = ".probe-"  # check_destination's write probe (deleted at once; a killed one is a leftover)
PENDING = ".pending-"  # DIR/.pending-X: the token of the writer of .tmp-X / .commit-X / .old-X
TOKEN = ".writer-token"  # the same token inside that folder
_PROBE_TEXT = b"socialgradient: can this folder be written?\n"
_TOKEN_HEAD = b"socialgradient output-set writer "
_TOKEN = re.compile(rb"socialgradient output-set writer [0-9a-f]{32}\n")
_KEY = re.compile(r"[0-9a-f]{12}")
_WRITER_FOLDERS = (".tmp-", ".commit-", ".old-")


def pending(out: str | Path) -> list[Path]:
    """Return the commits begun but not finished in ``out`` (``.commit-*``), ours or not."""
    out = Path(out)
    return sorted(out.glob(".commit-*")) if out.is_dir() else []


def foreign(out: str | Path) -> list[str]:
    """Return what in ``out`` a write would replace or delete that socialgradient did not write.

    One line each (the module docstring says what is ours); [] for an absent or empty folder,
    or one holding only an output set of ours, leftovers of our writer and entries a write
    never touches (``out/suite/``, a user's notes).
    """
    out = Path(out)
    if not out.is_dir():
        return []
    found, mid_commit = [], False
    try:
        names = sorted(os.listdir(out))
    except OSError as err:
        return [f"cannot list the folder ({err})"]
    for name in names:
        path = out / name
        if name.startswith(_WRITER_FOLDERS):
            exact = name.startswith(".commit-")
            if _ours(out, path, exact=exact):
                mid_commit |= exact
            else:
                found.append(
                    f"{name} (not left by socialgradient's writer: no token matching {PENDING}*)"
                )
        elif name == LOCK:
            st = _lstat(path)
            if st is not None and not stat.S_ISREG(st.st_mode):
                found.append(f"{LOCK} (a link or not a file; socialgradient's lock is a file)")
            elif st is not None and st.st_size:
                found.append(f"{LOCK} ({st.st_size} bytes; socialgradient's lock file is empty)")
    here = [n for n in (*PARTS, MANIFEST) if _lstat(out / n) is not None]
    if here and not mid_commit:  # a pending commit of ours: the writer checks after recovery
        found += _not_a_set_of_ours(out, here)
    return found


def _not_a_set_of_ours(out: Path, here: list[str]) -> list[str]:
    what = ", ".join(f"{n}/" if n in PARTS else n for n in here)
    manifest, problems = _manifest_of(out)
    if manifest is None:
        return [f"{what} with {problems[0]}: not an output set of socialgradient"]
    files, _, problems = _walk_parts(out)
    unlisted = sorted(set(files) - set(manifest["files"]))
    if unlisted:
        shown = ", ".join(unlisted[:8]) + (
            f" and {len(unlisted) - 8} more" if len(unlisted) > 8 else ""
        )
        problems.append(f"file(s) its {MANIFEST} does not list: {shown}")
    return [f"{what}: {p}" for p in problems]


@contextlib.contextmanager
def _locked(out: Path):
    """Hold ``out/.lock`` (blocking).

    ``flock`` on POSIX, ``LockFileEx`` on Windows, through :mod:`filelock`; the OS releases
    either when the holder dies. No soft (marker-file) fallback, which a killed writer would
    leave held; the file stays, as before.
    """
    out.mkdir(parents=True, exist_ok=True)
    try:  # filelock >= 4: say so explicitly (3.x has no soft fallback and keeps the file on POSIX)
        lock = FileLock(out / LOCK, mode=0o644, fallback_to_soft=False, preserve_lock_file=True)
    except TypeError:
        lock = FileLock(out / LOCK, mode=0o644)
    with lock:
        yield


def _read_small(path: Path, limit: int = 256) -> bytes | None:
    """Return the bytes of ``path`` if it is a regular file (not a link) of at most ``limit``."""
    st = _lstat(path)
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > limit:
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def _token(out: Path, key: str) -> bytes | None:
    """Return the whole token in ``out/.pending-KEY``, or None."""
    data = _read_small(out / f"{PENDING}{key}")
    return data if data is not None and _TOKEN.fullmatch(data) else None


def _token_prefix(data: bytes) -> bool:
    """Tell whether ``data`` is a token as a killed write may leave it: whole or its start."""
    full = _TOKEN_HEAD + b"0" * 32 + b"\n"
    if len(data) > len(full) or data[: len(_TOKEN_HEAD)] != _TOKEN_HEAD[: len(data)]:
        return False
    rest = data[len(_TOKEN_HEAD) :]
    return all(c in b"0123456789abcdef" for c in rest[:32]) and rest[32:] in (b"", b"\n")


def _ours(out: Path, folder: Path, exact: bool) -> bool:
    """Tell whether ``folder`` (``.tmp-X``, ``.commit-X``, ``.old-X`` in ``out``) is our writer's.

    A real folder, ``out/.pending-X`` holds a whole token, and the folder's own token is the
    same (``exact``: a commit, whose token is always whole) or, where a kill cut the making
    or the deleting of the folder short, missing or the start of it.
    """
    prefix = next((p for p in _WRITER_FOLDERS if folder.name.startswith(p)), None)
    key = folder.name[len(prefix) :] if prefix else ""
    if not _KEY.fullmatch(key):
        return False
    st = _lstat(folder)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return False
    token = _token(out, key)
    if token is None:
        return False
    if _lstat(folder / TOKEN) is None:
        return not exact
    mine = _read_small(folder / TOKEN)
    if mine is None:
        return False
    return mine == token if exact else token.startswith(mine)


def _leftovers(out: Path) -> list[Path]:
    """Return what our writer (or probe) left in ``out``, and only that.

    ``.tmp-*``/``.old-*`` with our token, ``.pending-*`` tokens whose folder is gone, killed
    probes.
    """
    found = [p for p in [*out.glob(".tmp-*"), *out.glob(".old-*")] if _ours(out, p, False)]
    for p in out.glob(PENDING + "*"):
        key = p.name.removeprefix(PENDING)
        if (
            _KEY.fullmatch(key)
            and not any(_lstat(out / (f + key)) for f in _WRITER_FOLDERS)
            and (data := _read_small(p)) is not None
            and _token_prefix(data)
        ):
            found.append(p)
    for p in out.glob(PROBE + "*"):
        data = _read_small(p)
        if (
            _KEY.fullmatch(p.name.removeprefix(PROBE))
            and data is not None
            and _PROBE_TEXT.startswith(data)
        ):
            found.append(p)
    return sorted(found)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (never an existing one), write ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_writer_folder(out: Path, folder: Path) -> None:
    """Delete our ``folder`` (``.old-X``, ``.tmp-X``), then its token ``.pending-X``.

    The token goes once the folder is gone (a folder left half-deleted keeps its token, so
    it stays ours).
    """
    key = folder.name.split("-", 1)[1]
    shutil.rmtree(folder, ignore_errors=True)
    if _lstat(folder) is None:
        (out / f"{PENDING}{key}").unlink(missing_ok=True)
