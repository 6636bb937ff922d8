"""Output sets: what a command writes, whole or not at all, publishable apart from internal.

An output folder ``DIR`` holds one *output set*::

    DIR/MANIFEST.json   every file of the set with its SHA-256 and size, the spec and data hashes
    DIR/release/        safe to publish: built only from numbers that passed the disclosure gate
    DIR/internal/       LSOA-level information (the posterior tree, unprotected checks) and a
                        README saying it is not for release

Anything else in ``DIR`` (``out/suite/`` beside the main job's set, a user's own files) is
never touched. A reader trusts ``DIR`` only if :func:`verify` passes (what it checks:
:mod:`~socialgradient.util._outputs_verify`; the manifest and the walk of the files:
:mod:`~socialgradient.util._outputs_manifest`). A write replaces or deletes only what
socialgradient put there (:mod:`~socialgradient.util._outputs_owner`: an output set of ours,
our writer's folders with its token, the lock and the probe), and a command's paths are
checked before any work (:func:`check_destination`, :func:`check_args`:
:mod:`~socialgradient.util._outputs_paths`). This module is the write protocol, its recovery
and the readers; every name of the output-set modules is reached from here.

Writing (:class:`Writer`) -- every intermediate state is either the previous complete set or
the new complete set, or a pending commit that any later writer (or :func:`read`) rolls
forward to the new complete set:

1. the new set is written into ``DIR/.tmp-<random>/`` (same folder, so same filesystem),
   ``MANIFEST.json`` last, everything fsynced; a kill here leaves the previous set intact
   and a ``.tmp-*`` folder (with its ``.pending-*`` token) that the next run deletes;
2. ``.tmp-X`` is renamed ``.commit-X``: from here on the commit is rolled forward;
3. ``release/`` then ``internal/`` are swapped into place, each in one step
   (``renameat2(RENAME_EXCHANGE)`` where the kernel has it, else two renames);
4. ``MANIFEST.json`` is moved into place with ``os.replace``: the new set is complete;
5. ``.commit-X`` (now holding the previous set) is renamed ``.old-X`` and deleted, then
   ``.pending-X``.

Between 2 and 4 ``verify`` refuses the folder (a ``.commit-*`` is present, and the manifest
would not match); roll-forward tells a new part from an old one by the new manifest's hashes.
Writers of one ``DIR`` are serialised by a lock on ``DIR/.lock`` (:mod:`filelock`: ``flock``
on POSIX, ``LockFileEx`` on Windows, both released by the operating system when a writer
dies), so a killed writer restarts at once.

Portable: no POSIX-only module. The one-step swap of step 3 is a Linux fast path
(:data:`_EXCHANGE_AVAILABLE`); elsewhere (or with it switched off) the two renames and the
roll-forward keep every state above. On Windows folders are not fsynced (they cannot be
opened; NTFS journals its metadata). File names in the manifest use ``/`` on every system.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import secrets
import sys
from pathlib import Path

from filelock import FileLock  # noqa: F401 (the lock's class, as before the split)

from socialgradient.util._outputs_manifest import (  # noqa: F401 (as before the split)
    FORMAT,
    INTERNAL_README,
    MANIFEST,
    PARTS,
    README,
    OutputSetError,
    _load_manifest,
    _lstat,
    _mismatch,
    _walk_parts,
)
from socialgradient.util._outputs_owner import (  # noqa: F401 (as before the split)
    _PROBE_TEXT,
    _TOKEN_HEAD,
    _WRITER_FOLDERS,
    LOCK,
    PENDING,
    PROBE,
    TOKEN,
    _leftovers,
    _locked,
    _ours,
    _remove_writer_folder,
    _write_new,
    foreign,
    pending,
)
from socialgradient.util._outputs_paths import (  # noqa: F401 (as before the split)
    _refuse_foreign,
    check_apart,
    check_args,
    check_destination,
)
from socialgradient.util._outputs_verify import check, summary, verify  # noqa: F401 (as before)
from socialgradient.util.files import sha256_of

# Windows: folders cannot be opened for fsync, and fsync needs a file opened for writing.
_WINDOWS = os.name == "nt"
# Linux's renameat2(RENAME_EXCHANGE) for step 3; elsewhere (or False) the two renames.
_EXCHANGE_AVAILABLE = sys.platform.startswith("linux")


def read(out: str | Path) -> dict:
    """Recover ``out`` where it can be written, then :func:`verify` it; return its manifest.

    Recovered: a pending commit of ours finished, our leftovers cleared.
    """
    out = Path(out)
    if out.is_dir() and os.access(out, os.W_OK) and (pending(out) or _leftovers(out)):
        with _locked(out):
            recover(out)
    return verify(out)


def table_of(path: str | Path) -> Path:
    """Return the input table that ``path`` names.

    ``path`` itself, or where ``path`` is an output set written by ``data build`` or
    ``census aggregate|extract``, its table (``internal/neighbourhoods.*``, named by the
    manifest's ``table``) once the set is recovered and verified (:func:`read`).
    """
    path = Path(path)
    if not (path.is_dir() and ((path / MANIFEST).exists() or pending(path))):
        return path
    manifest = read(path)
    if not manifest.get("table"):
        raise OutputSetError(
            f"{path}: this output set holds no input table (written by "
            f"{manifest.get('command', 'another command')})"
        )
    return path / manifest["table"]


def internal_of(path: str | Path) -> Path:
    """Return ``path/internal`` where ``path`` is an output set, else ``path``.

    The set is recovered and verified (:func:`read`); its internal/ holds the record-level
    inputs that ``census write`` puts there.
    """
    path = Path(path)
    if path.is_dir() and ((path / MANIFEST).exists() or pending(path)):
        read(path)
        return path / "internal"
    return path


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (POSIX; Windows cannot open folders)."""
    if path.is_dir():
        if _WINDOWS:
            return
        flags = os.O_RDONLY
    else:
        flags = (os.O_RDWR | getattr(os, "O_BINARY", 0)) if _WINDOWS else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2``).

    False where unsupported or switched off (:data:`_EXCHANGE_AVAILABLE`).
    """
    if not _EXCHANGE_AVAILABLE:
        return False
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(a))


def _swap_in(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``; the previous ``target`` ends up under ``new``'s folder.

    Without the one-step exchange: ``target`` is renamed to ``new.old`` beside ``new``, then
    ``new`` to ``target``. Killed between the two, ``target`` is missing and ``new`` is still
    in the commit: roll-forward sees the part does not match and renames ``new`` in.
    """
    if _lstat(target) is None:
        os.rename(new, target)
    elif not _exchange(new, target):
        os.rename(target, new.with_name(new.name + ".old"))
        os.rename(new, target)


def _roll_forward(out: Path, commit: Path, check_parts: bool) -> None:
    manifest_path = commit / MANIFEST
    if manifest_path.exists():
        manifest = _load_manifest(manifest_path) if check_parts else None
        for part in PARTS:
            if (
                manifest is not None  # check_parts
                and (out / part).is_dir()
                and _mismatch(out, manifest, (part,)) is None
            ):
                continue  # already swapped in before the interruption
            if not (commit / part).is_dir():
                raise OutputSetError(f"{out}: cannot complete {commit.name}: {part}/ is missing")
            _swap_in(commit / part, out / part)
        _fsync(out)
        os.replace(manifest_path, out / MANIFEST)
        _fsync(out)
    old = out / (".old-" + commit.name.removeprefix(".commit-"))
    os.rename(commit, old)
    _remove_writer_folder(out, old)


def recover(out: str | Path) -> list[str]:
    """Finish pending commits of ours and delete our leftovers in ``out``.

    Leftovers: ``.tmp-*`` / ``.old-*`` with our token, stale ``.pending-*`` tokens, a killed
    probe's ``.probe-*`` file.
    A ``.commit-*`` without our writer's token is refused (:class:`OutputSetError`): neither
    completed nor deleted, and nothing else is done. Anything else not ours is left alone.
    Call with the lock held (:class:`Writer` does). Returns what was done, for messages.
    """
    out = Path(out)
    done = []
    commits = pending(out)
    planted = [c.name for c in commits if not _ours(out, c, exact=True)]
    if planted:
        raise OutputSetError(
            f"{out}: {', '.join(planted)} not left by socialgradient's writer "
            f"(no token matching {PENDING}*): refused, neither completed nor "
            "deleted; remove it if it is not yours"
        )
    for commit in sorted(commits, key=lambda p: p.stat().st_mtime):
        _roll_forward(out, commit, check_parts=True)
        done.append(f"completed the interrupted write {commit.name}")
    for stray in _leftovers(out):
        if stray.name.startswith(_WRITER_FOLDERS):
            _remove_writer_folder(out, stray)
        else:  # a probe may be deleted by its own process meanwhile
            stray.unlink(missing_ok=True)
        done.append(f"removed {stray.name}")
    return done


class Writer:
    """Write one output set into ``out``, whole or not at all.

    >>> with Writer(out, spec_hash=..., data_hash=...) as w:
    ...     (w.release / "summary.json").write_text(...)
    ...     (w.internal / "posterior.nc") ...
    ...     w.commit()          # without it (or on an error) nothing changes in ``out``

    ``meta`` (spec_hash, data_hash, command, ...) goes into the manifest. ``readme``: the
    text of ``internal/README.txt`` (default: a fit's, :data:`INTERNAL_README`); it must say
    NOT FOR RELEASE. After the block ``path(rel)`` gives a file's final path.

    ``out`` must be absent, empty or hold an output set of ours (:func:`foreign`: checked
    before any work, and again under the lock after recovery); a set holds at least one file
    in ``release/``, and no link or special file anywhere (checked at the commit).
    """

    def __init__(self, out: str | Path, readme: str = INTERNAL_README, **meta):
        if not readme.startswith("NOT FOR RELEASE"):
            raise ValueError("internal/README.txt must begin with NOT FOR RELEASE")
        self.out = check_destination(out)
        self.readme = readme
        self.meta = meta
        self.recovered: list[str] = []
        self._lock: contextlib.AbstractContextManager[None] | None = None
        self._tmp: Path | None = None
        self._key = ""
        self.committed = False

    def __enter__(self) -> Writer:
        self._lock = lock = _locked(self.out)
        lock.__enter__()
        try:
            self.recovered = recover(self.out)
            _refuse_foreign(self.out)
            self._key = secrets.token_hex(6)
            token = _TOKEN_HEAD + secrets.token_hex(16).encode() + b"\n"
            _write_new(self.out / f"{PENDING}{self._key}", token)  # first: the folder is ours
            _fsync(self.out)
            self._tmp = self.out / f".tmp-{self._key}"
            self._tmp.mkdir()
            _write_new(self._tmp / TOKEN, token)
            for part in PARTS:
                (self._tmp / part).mkdir()
            (self._tmp / "internal" / "README.txt").write_text(
                self.readme, encoding="utf-8", newline="\n"
            )
        except BaseException:
            self._cleanup()
            raise
        return self

    @property
    def release(self) -> Path:
        """The folder of the new set's ``release/`` files (inside the ``with`` block)."""
        return self._folder() / "release"

    @property
    def internal(self) -> Path:
        """The folder of the new set's ``internal/`` files (inside the ``with`` block)."""
        return self._folder() / "internal"

    def path(self, rel: str) -> Path:
        """Return the final path of the set's file ``rel`` (e.g. ``release/summary.json``)."""
        return self.out / rel

    def final(self, path: str | Path) -> Path:
        """Return the final path of ``path``, written under :attr:`release` or :attr:`internal`."""
        return self.out / Path(path).relative_to(self._folder())

    def commit(self) -> dict:
        """Write the manifest and swap the set into place; returns the manifest."""
        tmp = self._folder()
        found, _, problems = _walk_parts(tmp)
        if problems:
            raise OutputSetError(f"{self.out}: not committed: {'; '.join(problems)}")
        if not any(rel.startswith("release/") for rel in found):
            raise OutputSetError(
                f"{self.out}: not committed: nothing in release/ (a set holds "
                "at least one file there, e.g. its disclosure log)"
            )
        files = {}
        for part in PARTS:
            for rel in sorted(r for r in found if r.startswith(part + "/")):
                path = tmp / rel
                _fsync(path)
                files[rel] = {"sha256": sha256_of(path), "bytes": path.stat().st_size}
            _fsync(tmp / part)
        manifest = {
            "format": FORMAT,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **self.meta,
            "files": files,
        }
        (tmp / MANIFEST).write_text(
            json.dumps(manifest, indent=1) + "\n", encoding="utf-8", newline="\n"
        )
        _fsync(tmp / MANIFEST)
        _fsync(tmp)
        commit = tmp.with_name(".commit-" + self._key)
        os.rename(tmp, commit)
        self._tmp = commit
        _roll_forward(self.out, commit, check_parts=False)
        self.committed = True
        return manifest

    def _folder(self) -> Path:
        """Return the folder the set is written in (only inside the ``with`` block)."""
        if self._tmp is None:
            raise TypeError("a Writer's files are written inside its with block")
        return self._tmp

    def _cleanup(self) -> None:
        try:
            if self._tmp is not None and self._tmp.name.startswith(".tmp-"):
                _remove_writer_folder(self.out, self._tmp)
            elif self._tmp is None and self._key:  # killed between the token and the folder
                (self.out / f"{PENDING}{self._key}").unlink(missing_ok=True)
        finally:
            if self._lock is not None:
                self._lock.__exit__(None, None, None)
                self._lock = None

    def __exit__(self, *exc) -> None:
        self._cleanup()
