"""Output sets: what a command writes, whole or not at all, publishable apart from internal.

An output folder ``DIR`` holds one *output set*::

    DIR/MANIFEST.json   every file of the set with its SHA-256 and size, the spec and data hashes
    DIR/release/        safe to publish: built only from numbers that passed the disclosure gate
    DIR/internal/       LSOA-level information (the posterior tree, unprotected checks) and a
                        README saying it is not for release

Anything else in ``DIR`` (``out/suite/`` beside the main job's set, a user's own files) is
never touched. A reader trusts ``DIR`` only if :func:`verify` passes: the manifest parses, the
files on disk under ``release/`` and ``internal/`` are exactly those listed, each with its
listed hash, and no commit is pending.

Writing (:class:`Writer`) -- every intermediate state is either the previous complete set or
the new complete set, or a pending commit that any later writer (or :func:`read`) rolls
forward to the new complete set:

1. the new set is written into ``DIR/.tmp-<random>/`` (same folder, so same filesystem),
   ``MANIFEST.json`` last, everything fsynced; a kill here leaves the previous set intact
   and a ``.tmp-*`` folder that the next run deletes;
2. ``.tmp-X`` is renamed ``.commit-X``: from here on the commit is rolled forward;
3. ``release/`` then ``internal/`` are swapped into place, each in one step
   (``renameat2(RENAME_EXCHANGE)`` where the kernel has it, else two renames);
4. ``MANIFEST.json`` is moved into place with ``os.replace``: the new set is complete;
5. ``.commit-X`` (now holding the previous set) is renamed ``.old-X`` and deleted.

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
import hashlib
import json
import os
import secrets
import shutil
import sys
from pathlib import Path

from filelock import FileLock

PARTS = ("release", "internal")
MANIFEST = "MANIFEST.json"
FORMAT = "socialgradient-output-set/1"
LOCK = ".lock"
PROBE = ".probe-"  # check_destination's write probe (deleted at once; a killed one is a leftover)
# Windows: folders cannot be opened for fsync, and fsync needs a file opened for writing.
_WINDOWS = os.name == "nt"
# Linux's renameat2(RENAME_EXCHANGE) for step 3; elsewhere (or False) the two renames.
_EXCHANGE_AVAILABLE = sys.platform.startswith("linux")
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


# -- destination ------------------------------------------------------------------------


def check_destination(out: str | Path) -> Path:
    """Check, before any work, that ``out`` can hold an output set; return it as a Path.

    Refused with :class:`OutputSetError`: ``out`` (or a folder on its way) is a file, or the
    nearest existing folder is not writable, or a probe fails: the folders up to ``out`` are
    created and a file there is created, written, fsynced and deleted (``os.access`` is not
    enough: root passes it on read-only mounts and under ``/proc``). The probe leaves no
    trace: its file and the folders it created are removed again, whatever the outcome.
    """
    out = Path(out)
    probe = out
    while not probe.exists():
        if probe.is_symlink():
            raise OutputSetError(f"--out {out}: {probe} is a broken link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is" if probe == out else f"lies under {probe}, which is"
        raise OutputSetError(f"--out {out} {what} a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputSetError(f"--out {out}: cannot write to {probe} (permission denied)")
    _probe_write(out, probe)
    return out


def _probe_write(out: Path, existing: Path) -> None:
    """Create the folders from ``existing`` down to ``out`` and a file in ``out`` (written,
    fsynced), then remove all of them; :class:`OutputSetError` naming the OS error if any
    step fails."""
    missing = []
    folder = out
    while folder != existing and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    created: list[Path] = []
    name = out / f"{PROBE}{secrets.token_hex(6)}"
    made = False
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                if not folder.is_dir():
                    raise
            else:
                created.append(folder)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(name, flags, 0o644)
        made = True
        try:
            os.write(fd, b"socialgradient: can this folder be written?\n")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise OutputSetError(f"--out {out}: cannot write there: {err}") from None
    finally:
        if made:
            with contextlib.suppress(OSError):
                name.unlink(missing_ok=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()


# -- reading ----------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(root: Path, part: str) -> list[str]:
    """Relative paths (``part/...``) of every file under ``root/part``, sorted."""
    base = root / part
    if not base.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in base.rglob("*") if not p.is_dir())


def _load_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise OutputSetError(f"{path}: damaged manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise OutputSetError(f"{path}: not a socialgradient output-set manifest")
    if not isinstance(manifest.get("files"), dict):
        raise OutputSetError(f"{path}: damaged manifest (no file list)")
    return manifest


def _mismatch(root: Path, manifest: dict, parts=PARTS) -> str | None:
    """Why the files under ``root`` do not match ``manifest`` (None if they do)."""
    listed = manifest["files"]
    for part in parts:
        want = sorted(k for k in listed if k.split("/", 1)[0] == part)
        have = _files(root, part)
        if have != want:
            extra, missing = sorted(set(have) - set(want)), sorted(set(want) - set(have))
            return f"files differ from the manifest (missing {missing}, unlisted {extra})"
        for rel in want:
            entry = listed[rel]
            path = root / rel
            if path.stat().st_size != entry.get("bytes") or _sha256(path) != entry.get("sha256"):
                return f"{rel} does not match its SHA-256 in the manifest"
    return None


def pending(out: str | Path) -> list[Path]:
    """Commits begun but not finished in ``out`` (``.commit-*`` folders)."""
    out = Path(out)
    return sorted(out.glob(".commit-*")) if out.is_dir() else []


def verify(out: str | Path) -> dict:
    """The manifest of the complete output set in ``out``; :class:`OutputSetError` otherwise."""
    out = Path(out)
    if not out.is_dir():
        raise OutputSetError(f"{out}: no output set here (not a folder)")
    if pending(out):
        raise OutputSetError(f"{out}: an interrupted or running write is pending "
                             f"({pending(out)[0].name}); rerun the command to complete it")
    if not (out / MANIFEST).exists():
        raise OutputSetError(f"{out}: not a complete output set (no {MANIFEST})")
    manifest = _load_manifest(out / MANIFEST)
    why = _mismatch(out, manifest)
    if why:
        raise OutputSetError(f"{out}: incomplete or altered output set: {why}")
    return manifest


def read(out: str | Path) -> dict:
    """Recover ``out`` where it can be written (finish a pending commit, clear leftovers),
    then :func:`verify` it."""
    out = Path(out)
    if out.is_dir() and os.access(out, os.W_OK) and (pending(out) or _leftovers(out)):
        with _locked(out):
            recover(out)
    return verify(out)


def table_of(path: str | Path) -> Path:
    """The input table that ``path`` names: ``path`` itself, or where ``path`` is an output
    set written by ``data build`` or ``census aggregate|extract``, its table
    (``internal/neighbourhoods.*``, named by the manifest's ``table``) once the set is
    recovered and verified (:func:`read`)."""
    path = Path(path)
    if not (path.is_dir() and ((path / MANIFEST).exists() or pending(path))):
        return path
    manifest = read(path)
    if not manifest.get("table"):
        raise OutputSetError(f"{path}: this output set holds no input table (written by "
                             f"{manifest.get('command', 'another command')})")
    return path / manifest["table"]


def internal_of(path: str | Path) -> Path:
    """``path/internal`` where ``path`` is an output set (recovered and verified), else
    ``path``: the record-level inputs that ``census write`` puts in its set's internal/."""
    path = Path(path)
    if path.is_dir() and ((path / MANIFEST).exists() or pending(path)):
        read(path)
        return path / "internal"
    return path


# -- writing ----------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(out: Path):
    """Hold ``out/.lock`` (blocking): ``flock`` on POSIX, ``LockFileEx`` on Windows, through
    :mod:`filelock`; the OS releases either when the holder dies. No soft (marker-file)
    fallback, which a killed writer would leave held; the file stays, as before."""
    out.mkdir(parents=True, exist_ok=True)
    try:  # filelock >= 4: say so explicitly (3.x has no soft fallback and keeps the file on POSIX)
        lock = FileLock(out / LOCK, mode=0o644, fallback_to_soft=False, preserve_lock_file=True)
    except TypeError:
        lock = FileLock(out / LOCK, mode=0o644)
    with lock:
        yield


def _leftovers(out: Path) -> list[Path]:
    return sorted([*out.glob(".tmp-*"), *out.glob(".old-*"), *out.glob(PROBE + "*")])


def _fsync(path: Path) -> None:
    """fsync a file, or a folder's entries (POSIX; Windows cannot open folders)."""
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
    """Swap two existing paths in one step (Linux ``renameat2``); False where unsupported
    or switched off (:data:`_EXCHANGE_AVAILABLE`)."""
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
    in the commit: roll-forward sees the part does not match and renames ``new`` in."""
    if not target.exists():
        os.rename(new, target)
    elif not _exchange(new, target):
        os.rename(target, new.with_name(new.name + ".old"))
        os.rename(new, target)


def _roll_forward(out: Path, commit: Path, check: bool) -> None:
    manifest_path = commit / MANIFEST
    if manifest_path.exists():
        manifest = _load_manifest(manifest_path) if check else None
        for part in PARTS:
            if check and (out / part).is_dir() and _mismatch(out, manifest, (part,)) is None:
                continue  # already swapped in before the interruption
            if not (commit / part).is_dir():
                raise OutputSetError(f"{out}: cannot complete {commit.name}: {part}/ is missing")
            _swap_in(commit / part, out / part)
        _fsync(out)
        os.replace(manifest_path, out / MANIFEST)
        _fsync(out)
    old = out / (".old-" + commit.name.removeprefix(".commit-"))
    os.rename(commit, old)
    shutil.rmtree(old, ignore_errors=True)


def recover(out: str | Path) -> list[str]:
    """Finish pending commits and delete leftover ``.tmp-*`` / ``.old-*`` folders (and a
    killed probe's ``.probe-*`` file) in ``out``.

    Call with the lock held (:class:`Writer` does). Returns what was done, for messages.
    """
    out = Path(out)
    done = []
    for commit in sorted(pending(out), key=lambda p: p.stat().st_mtime):
        _roll_forward(out, commit, check=True)
        done.append(f"completed the interrupted write {commit.name}")
    for stray in _leftovers(out):
        if stray.is_dir():
            shutil.rmtree(stray, ignore_errors=True)
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
    """

    def __init__(self, out: str | Path, readme: str = INTERNAL_README, **meta):
        if not readme.startswith("NOT FOR RELEASE"):
            raise ValueError("internal/README.txt must begin with NOT FOR RELEASE")
        self.out = check_destination(out)
        self.readme = readme
        self.meta = meta
        self.recovered: list[str] = []
        self._lock = None
        self._tmp: Path | None = None
        self.committed = False

    def __enter__(self) -> Writer:
        self._lock = _locked(self.out)
        self._lock.__enter__()
        try:
            self.recovered = recover(self.out)
            self._tmp = self.out / f".tmp-{secrets.token_hex(6)}"
            for part in PARTS:
                (self._tmp / part).mkdir(parents=True)
            (self._tmp / "internal" / "README.txt").write_text(self.readme, encoding="utf-8",
                                                               newline="\n")
        except BaseException:
            self._cleanup()
            raise
        return self

    @property
    def release(self) -> Path:
        return self._tmp / "release"

    @property
    def internal(self) -> Path:
        return self._tmp / "internal"

    def path(self, rel: str) -> Path:
        """Final path of the set's file ``rel`` (e.g. ``release/summary.json``)."""
        return self.out / rel

    def final(self, path: str | Path) -> Path:
        """Final path of ``path``, a file written under :attr:`release` or :attr:`internal`."""
        return self.out / Path(path).relative_to(self._tmp)

    def commit(self) -> dict:
        """Write the manifest and swap the set into place; returns the manifest."""
        files = {}
        for part in PARTS:
            for rel in _files(self._tmp, part):
                path = self._tmp / rel
                _fsync(path)
                files[rel] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
            _fsync(self._tmp / part)
        manifest = {
            "format": FORMAT,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **self.meta,
            "files": files,
        }
        (self._tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8",
                                          newline="\n")
        _fsync(self._tmp / MANIFEST)
        _fsync(self._tmp)
        commit = self._tmp.with_name(".commit-" + self._tmp.name.removeprefix(".tmp-"))
        os.rename(self._tmp, commit)
        self._tmp = commit
        _roll_forward(self.out, commit, check=False)
        self.committed = True
        return manifest

    def _cleanup(self) -> None:
        try:
            if self._tmp is not None and self._tmp.name.startswith(".tmp-"):
                shutil.rmtree(self._tmp, ignore_errors=True)
        finally:
            if self._lock is not None:
                self._lock.__exit__(None, None, None)
                self._lock = None

    def __exit__(self, *exc) -> None:
        self._cleanup()
