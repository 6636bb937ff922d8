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
Writers of one ``DIR`` are serialised by ``flock`` on ``DIR/.lock`` (released by the kernel
when a writer dies). Standard library only, so a killed writer restarts fast.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

PARTS = ("release", "internal")
MANIFEST = "MANIFEST.json"
FORMAT = "socialgradient-output-set/1"
LOCK = ".lock"
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
    nearest existing folder is not writable.
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
    return out


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
    return sorted(str(p.relative_to(root)) for p in base.rglob("*") if not p.is_dir())


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
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _leftovers(out: Path) -> list[Path]:
    return sorted([*out.glob(".tmp-*"), *out.glob(".old-*")])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2``); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(a))


def _swap_in(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``; the previous ``target`` ends up under ``new``'s folder."""
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
            if check and _mismatch(out, manifest, (part,)) is None:
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
    """Finish pending commits and delete leftover ``.tmp-*`` / ``.old-*`` folders in ``out``.

    Call with the lock held (:class:`Writer` does). Returns what was done, for messages.
    """
    out = Path(out)
    done = []
    for commit in sorted(pending(out), key=lambda p: p.stat().st_mtime):
        _roll_forward(out, commit, check=True)
        done.append(f"completed the interrupted write {commit.name}")
    for stray in _leftovers(out):
        shutil.rmtree(stray, ignore_errors=True) if stray.is_dir() else stray.unlink()
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
            (self._tmp / "internal" / "README.txt").write_text(self.readme, encoding="utf-8")
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
        (self._tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
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
