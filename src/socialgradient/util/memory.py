"""Giving freed memory back to the system between the big steps of a job."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os

#: glibc's tunables that, set in the environment, fix its thresholds (Dask's workers get
#: ``MALLOC_TRIM_THRESHOLD_=65536`` from their nanny unless told otherwise)
FIXED_THRESHOLDS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


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


def fixed_thresholds() -> str | None:
    """Say why sampling will be slow where the environment fixes glibc's thresholds, else None.

    With ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_MMAP_THRESHOLD_`` set, glibc stops adapting its
    mmap threshold (128 KiB), so every larger temporary of a log density evaluation is mapped
    and unmapped afresh on every leapfrog step: England's referrals sampled in 33.0 s with
    ``MALLOC_TRIM_THRESHOLD_=65536`` against 15.6 s without
    (:data:`socialgradient.study.clusters.WORKER_ENVIRON`). Only glibc reads them.
    """
    if _libc() is None:
        return None
    fixed = [f"{k}={os.environ[k]}" for k in FIXED_THRESHOLDS if os.environ.get(k)]
    if not fixed:
        return None
    return (
        f"{', '.join(fixed)} in the environment fixes glibc's mmap threshold, which makes "
        "sampling about twice as slow (every large temporary is mapped afresh); start the "
        "process without it (a Dask cluster's workers: distributed.nanny.pre-spawn-environ."
        "MALLOC_TRIM_THRESHOLD_: null, as socialgradient's local cluster does)"
    )
