"""The private on-disk cache of nutpie's generated callbacks: where it lives, checked private.

The generated callbacks are code this process runs, and numba's cache of them is a pickle
(``.nbi``, its index) and machine code (``.nbc``), so nothing is loaded from a folder anyone
but this user could write. The cache lives in ``nutpie_callbacks/`` of the user's own cache
folder (``platformdirs.user_cache_dir``: ``$XDG_CACHE_HOME`` or ``~/.cache/socialgradient`` on
Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows), or where
``SOCIALGRADIENT_NUTPIE_CACHE_DIR`` says; not beside PyTensor's own cache in its
``base_compiledir``, which a ``PYTENSOR_FLAGS`` setting may point at a shared folder and whose
modes PyTensor manages. :func:`ensure_private` creates it with mode 0700; on POSIX it must be
owned by this user (a folder of ours open to others is made 0700 again, with a warning), and
every folder above it owned by this user or root and writable by no one else (or sticky, as
``/tmp``): otherwise the fast path is refused (:class:`UnsafeCache`) and nutpie's public
compilation serves, with a :class:`~socialgradient.sampling._nutpie.FastPathWarning`. Windows
has no such modes: there the folder's ACLs (private to the user under ``%LOCALAPPDATA%``) are
trusted and only the hashes below are checked.

One folder per entry: the generated source, its layout file, numba's ``__pycache__`` (numba
caches them beside their source file, whatever ``NUMBA_CACHE_DIR`` says; a
``NUMBA_CACHE_LOCATOR_CLASSES`` that would put them elsewhere refuses the fast path), a ``used``
marker whose modification time is refreshed at every load, and ``manifest.json``: the SHA-256
of every other file, numba's included. An entry is built in a private staging folder
(``.build-*``), where numba compiles and caches the callbacks; then its files are made 0600
(folders 0700), hashed into the manifest (:func:`_seal`), and the folder is renamed into place
(:func:`_publish`), so a published entry is whole and never written again. Before anything of
an entry is used (:func:`verify`), every folder and file in it must be a plain one (no link)
owned by this user and writable by no one else, every file the manifest names must have its
hash and every ``.py``/``.json``/``.nbi``/``.nbc`` file must be named there; the source is
executed from the bytes that were hashed. Any mismatch: a warning is logged, the entry is
discarded (renamed to a tombstone, then deleted) and built again; nothing of it is executed.
What this guards against is a cache that others can write (a group- or world-writable folder,
another user's files): anyone who runs as this user (or root) can rewrite the cache and its
manifest alike, and numba reads its files after they were checked, so they are as safe as the
private folder is.

The folder is given to the functions here (:mod:`socialgradient.sampling._nutpie` names it:
its ``folder``); their pruning is in :mod:`socialgradient.sampling._nutpie_prune`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import uuid
from pathlib import Path

from socialgradient.util.files import atomic_write

log = logging.getLogger("socialgradient.sampling._nutpie")

#: Where the cache lives instead of the user's cache folder.
ENV_DIR = "SOCIALGRADIENT_NUTPIE_CACHE_DIR"
#: In an entry's folder: the marker whose mtime says when the entry was last used, the
#: layout file and the manifest (every other file's SHA-256).
MARKER, LAYOUT, MANIFEST = "used", "layout.json", "manifest.json"
PREFIX, TOMBSTONE, STAGING = "callbacks_", ".tomb-", ".build-"
#: What is loaded from an entry (so must be in its manifest): our source and layout,
#: numba's index (a pickle) and its cached machine code.
LOADED = (".py", ".json", ".nbi", ".nbc")
#: Owner and mode checks: POSIX only (Windows: ACLs, the user's own %LOCALAPPDATA%).
_OWNERSHIP_AVAILABLE = os.name == "posix" and hasattr(os, "geteuid")


class UnsafeCache(RuntimeError):
    """The cache folder is not private to this user, or numba would keep its cache outside it.

    Another user's folder, or one under a folder others can write: the fast path is refused.
    """


class Tampered(RuntimeError):
    """An entry of the cache is not what was written.

    A file or folder of another owner, writable by others or a link, a hash that differs from
    its manifest, a file the manifest does not name, or no manifest.
    """


def folder() -> Path:
    """Return where the generated callbacks and their numba cache live (one folder per entry).

    ``SOCIALGRADIENT_NUTPIE_CACHE_DIR``, else ``nutpie_callbacks`` in the user's cache folder
    (``platformdirs.user_cache_dir("socialgradient")``). Unchecked: see :func:`ensure_private`.
    """
    raw = os.environ.get(ENV_DIR, "").strip()
    if raw:
        return Path(raw).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("socialgradient", appauthor=False), "nutpie_callbacks")


def ensure_private(where: Path) -> Path:
    """Return ``where`` resolved, created with mode 0700 where missing, and checked private.

    Checked (POSIX): a folder owned by this user (made 0700 again, with a warning, if it was
    open to others), every folder above it owned by this user or root and writable by no one
    else unless sticky. Raises :class:`UnsafeCache` otherwise.
    """
    root = Path(os.path.abspath(where))
    missing = []
    for path in [root, *root.parents]:
        if os.path.lexists(path):
            break
        missing.append(path)
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
    root = root.resolve()
    _check_private(root)
    return root


def _check_private(root: Path) -> None:
    if not _OWNERSHIP_AVAILABLE:
        return
    me = os.geteuid()
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeCache(f"the callback cache {root} is not a folder")
    if st.st_uid != me:
        raise UnsafeCache(
            f"the callback cache {root} is owned by uid {st.st_uid}, not by "
            f"this user (uid {me}); set {ENV_DIR} to a private folder"
        )
    if st.st_mode & 0o077:
        os.chmod(root, 0o700)
        log.warning(
            "the callback cache %s was open to others (mode %o): made private "
            "(0700); its entries are checked before use",
            root,
            stat.S_IMODE(st.st_mode),
        )
    for parent in root.parents:
        st = os.stat(parent)
        if st.st_uid not in (me, 0):
            raise UnsafeCache(
                f"{parent}, above the callback cache {root}, is owned by uid "
                f"{st.st_uid}, neither this user (uid {me}) nor root; set "
                f"{ENV_DIR} to a private folder"
            )
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise UnsafeCache(
                f"{parent}, above the callback cache {root}, is writable by "
                f"others (mode {stat.S_IMODE(st.st_mode):o}): they could "
                f"replace the cache; set {ENV_DIR} to a private folder"
            )


def _check_node(path: Path, folder_: bool) -> None:
    """Raise :class:`Tampered` unless ``path`` is a plain folder or file of this user's alone.

    A plain folder (``folder_``) or a regular file, not a link, and (POSIX) owned by this user
    and writable by no one else.
    """
    st = os.lstat(path)
    kind = stat.S_ISDIR(st.st_mode) if folder_ else stat.S_ISREG(st.st_mode)
    if not kind:
        what = (
            "a link"
            if stat.S_ISLNK(st.st_mode)
            else "not a plain " + ("folder" if folder_ else "file")
        )
        raise Tampered(f"{path} is {what}")
    _check_owner(path, st)


def _check_owner(path: Path, st: os.stat_result) -> None:
    if not _OWNERSHIP_AVAILABLE:
        return
    if st.st_uid != os.geteuid():
        raise Tampered(f"{path} is owned by uid {st.st_uid}, not by this user")
    if st.st_mode & 0o022:
        raise Tampered(f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):o})")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(entry: Path) -> dict[str, Path]:
    """Return every file of ``entry`` by its path relative to it (with /).

    Each folder and file is checked by :func:`_check_node` (a file gone meanwhile is left
    out).
    """
    _check_node(entry, True)
    found = {}
    for top, dirs, files in os.walk(entry, onerror=_raise):
        for d in dirs:
            _check_node(Path(top, d), True)
        for f in files:
            path = Path(top, f)
            try:
                _check_node(path, False)
            except FileNotFoundError:  # a temporary file, gone
                continue
            found[path.relative_to(entry).as_posix()] = path
    return found


def _raise(err: OSError) -> None:
    raise err


def verify(entry: Path) -> dict[str, bytes]:
    """Return the bytes of ``entry``'s source and layout files, once the entry is checked.

    Checked: its folders and files (:func:`_check_node`), every file its manifest names has
    the SHA-256 recorded there, every file that is loaded (:data:`LOADED`) being named.
    Raises :class:`Tampered` (or FileNotFoundError when the entry is gone, or replaced
    meanwhile).
    """
    before = os.lstat(entry)
    try:
        files = _files(entry)
        try:
            manifest = json.loads(files.pop(MANIFEST).read_bytes())
            recorded = manifest["files"]
            if manifest.get("name") != entry.name or not isinstance(recorded, dict):
                raise ValueError(f"a manifest of {manifest.get('name')!r}")
        except KeyError:
            raise Tampered(f"{entry} has no manifest") from None
        except (TypeError, ValueError) as err:
            raise Tampered(f"{entry / MANIFEST} is not a manifest: {err}") from err
        unnamed = sorted(r for r in files if r.endswith(LOADED) and r not in recorded)
        if unnamed:
            raise Tampered(f"{entry}: {unnamed} are not in its manifest")
        kept = {}
        for rel, digest in recorded.items():
            if rel not in files:
                raise Tampered(f"{entry}: {rel}, in its manifest, is missing")
            data = files[rel].read_bytes()
            if _digest(data) != digest:
                raise Tampered(
                    f"{entry / rel} does not match the SHA-256 recorded when it was written"
                )
            if rel.endswith((".py", ".json")):
                kept[rel] = data
    except (Tampered, FileNotFoundError):
        with contextlib.suppress(OSError):
            after = os.lstat(entry)
            if (after.st_ino, after.st_dev) == (before.st_ino, before.st_dev):
                raise
        raise FileNotFoundError(f"{entry} was replaced while it was checked") from None
    return kept


def _discard(entry: Path, why: Exception) -> None:
    """Log ``why`` and remove ``entry`` (tombstoned, then deleted): it is built again."""
    log.warning("callback cache entry %s refused, removed and generated again: %s", entry.name, why)
    _remove(entry)


def _seal(staging: Path, name: str) -> None:
    """Make a staging entry's files 0600 and folders 0700, and record their SHA-256.

    The manifest records them (the marker's content is not hashed: only its mtime changes).
    """
    recorded = {}
    for top, dirs, files in os.walk(staging):
        for d in dirs:
            os.chmod(Path(top, d), 0o700)
        for f in files:
            path = Path(top, f)
            os.chmod(path, 0o600)
            rel = path.relative_to(staging).as_posix()
            if rel != MARKER:
                recorded[rel] = _digest(path.read_bytes())
    os.chmod(staging, 0o700)
    _write(
        staging / MANIFEST, json.dumps({"name": name, "files": recorded}, indent=1, sort_keys=True)
    )


def _publish(staging: Path, entry: Path) -> None:
    """Move the sealed ``staging`` folder to ``entry``, replacing what is there.

    A process that publishes the same entry meanwhile wins: ours is dropped.
    """
    _remove(entry)
    try:
        os.rename(staging, entry)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)


def _touch(entry: Path) -> None:
    """Mark ``entry`` used now (its marker's mtime orders the pruning).

    The marker is made private (0600) if it has to be created. An entry gone meanwhile:
    nothing to do.
    """
    marker = entry / MARKER
    try:
        os.utime(marker)
    except FileNotFoundError:
        with contextlib.suppress(FileNotFoundError):
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600))


def _remove(path: Path) -> None:
    """Remove ``path`` (an entry's folder or a file) in one atomic step for everyone else.

    A rename to a tombstone, then the deletion of that. Gone already: nothing to do.
    """
    tomb = path.parent / f"{TOMBSTONE}{path.name}-{uuid.uuid4().hex}"
    try:
        os.rename(path, tomb)
    except FileNotFoundError:
        return
    if tomb.is_dir():
        shutil.rmtree(tomb, ignore_errors=True)
    else:
        tomb.unlink(missing_ok=True)


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, private to the user (mode 0600)."""
    atomic_write(
        path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline="\n"), mode=0o600
    )
