"""Giving freed memory back to the system between the big steps of a job."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc


@functools.cache
def _libc():
    """Return the C library when it is glibc (has ``malloc_trim``), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_memory(collect: bool = False) -> None:
    """Hand the C heap's free memory back to the system (glibc; a no-op without it).

    glibc keeps freed memory of blocks under its mmap threshold (which grows to 32 MB) in
    each thread's arena for reuse by that thread; after blocked computations that ran
    on worker threads (and after compiling and sampling), ``malloc_trim(0)`` returns it, so
    the next step's peak does not come on top of it. ``collect``: run the garbage collector
    first (a full collection: ~0.1-0.5 s with PyMC loaded), for memory held by cycles.
    """
    if collect:
        gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
