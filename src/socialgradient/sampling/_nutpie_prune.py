"""Bounds on nutpie's callback cache: the least recently used entries pruned, leftovers cleared.

After a new entry is published the least recently used ones are removed beyond
``SOCIALGRADIENT_NUTPIE_CACHE_ENTRIES`` entries (default 32) or ``SOCIALGRADIENT_NUTPIE_CACHE_MB``
megabytes (default 256; an entry is ~1-3 MB); the entry just written always stays. Safe for
processes sharing the folder (Dask workers): an entry is removed by renaming its folder to a
tombstone first (one atomic step) and then deleting that, and a process that finds an entry
gone, or replaced, while loading it loads or generates it again. The earlier location
(``<PyTensor's base_compiledir>/nutpie_callbacks``) is deleted at the first pruning.

The cache's folder is given (:mod:`socialgradient.sampling._nutpie` names it); its entries are
those of :mod:`socialgradient.sampling._nutpie_cache`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from socialgradient.sampling._nutpie_cache import MARKER, PREFIX, STAGING, TOMBSTONE, _remove

log = logging.getLogger("socialgradient.sampling._nutpie")  # the fast path's one logger

#: Environment variables: the cache's bounds (entries; megabytes).
ENV_ENTRIES = "SOCIALGRADIENT_NUTPIE_CACHE_ENTRIES"
ENV_MB = "SOCIALGRADIENT_NUTPIE_CACHE_MB"
MAX_ENTRIES = 32
MAX_MB = 256.0
#: Staging folders of builds older than this (a killed process's) are removed when pruning.
STALE_S = 3600.0


def _old_folder() -> Path:
    """Return the cache's earlier location, in PyTensor's ``base_compiledir``."""
    import pytensor

    return Path(pytensor.config.base_compiledir) / "nutpie_callbacks"


def limits() -> tuple[int, int]:
    """Return the cache's bounds: (entries, bytes), from the environment or the defaults."""

    def number(var: str, default: float, kind: type) -> float:
        raw = os.environ.get(var)
        if raw is None or not raw.strip():
            return default
        try:
            value = kind(raw)
            if value < 0:
                raise ValueError(raw)
            return value
        except ValueError:
            log.warning("%s=%r is not a non-negative number; using %s", var, raw, default)
            return default

    return (int(number(ENV_ENTRIES, MAX_ENTRIES, int)), int(number(ENV_MB, MAX_MB, float) * 2**20))


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def entries_in(where: Path) -> list[tuple[float, int, Path]]:
    """Return the entries of the cache in ``where``: (last used, bytes, folder), newest first."""
    found = []
    try:
        paths = list(where.iterdir())
    except FileNotFoundError:
        return []
    for path in paths:
        if not path.name.startswith(PREFIX) or not path.is_dir():
            continue
        try:
            try:
                used = (path / MARKER).stat().st_mtime
            except FileNotFoundError:
                used = path.stat().st_mtime
        except FileNotFoundError:  # removed meanwhile
            continue
        found.append((used, _size(path), path))
    return sorted(found, key=lambda e: -e[0])


def prune_in(
    where: Path, keep: str | None = None, old_folder: Callable[[], Path] = _old_folder
) -> list[str]:
    """Prune the cache in ``where``; return the names of the entries removed.

    Removed: the least recently used entries beyond :func:`limits` (never ``keep``), the
    tombstones other processes left behind, staging folders an hour old (a killed build's)
    and the cache's earlier location in PyTensor's folder (``old_folder()``).
    """
    max_entries, max_bytes = limits()
    now = time.time()
    _forget_old_location(where, old_folder)
    try:
        paths = list(where.iterdir())
    except FileNotFoundError:
        return []
    for path in paths:
        try:
            if path.name.startswith(TOMBSTONE):  # left by a process that died deleting it
                if path.is_dir():  # (racing another rmtree is harmless)
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            elif path.name.startswith(STAGING) and now - path.stat().st_mtime > STALE_S:
                _remove(path)
        except FileNotFoundError:
            continue
    found = entries_in(where)
    found.sort(key=lambda e: e[2].name != keep)  # stable: keep first, then newest first
    removed, count, total = [], 0, 0
    for _, size, path in found:
        if path.name == keep or (count < max_entries and total + size <= max_bytes):
            count, total = count + 1, total + size
        else:
            _remove(path)
            removed.append(path.name)
    if removed:
        log.info(
            "pruned %d callback cache entries (bounds: %d entries, %.0f MB)",
            len(removed),
            max_entries,
            max_bytes / 2**20,
        )
    return removed


def _forget_old_location(where: Path, old_folder: Callable[[], Path]) -> None:
    """Delete the cache's earlier location unless the cache is there now.

    ``old_folder()``: that location (``nutpie_callbacks`` in PyTensor's ``base_compiledir``).
    """
    try:
        old = old_folder()
        if not old.is_dir() or old.resolve() == Path(where).resolve():
            return
    except (ImportError, OSError):
        return
    _remove(old)
    log.info("removed the callback cache's earlier location %s", old)
