"""How many draws per chain the sampler's trace can hold: the target's memory budget.

nutpie keeps every draw of every chain in memory, warm-up included, each the model's
``n_expanded`` values in float64. Reading the trace while the chains run (a check) copies it
once in nutpie and once more into arrays, and for a moment twice (measured: a check's peak is
about four times the kept trace). For most models that is small, but one value per LSOA and
draw is not: England's BYM2 model stores 33,155 values a draw (0.27 MB; 98,855 before the
fast path left out the sampler's own forms, :mod:`socialgradient.sampling._nutpie`), so its
default budget of 4 x 4,000 draws would need some 18 GB at its last check. Before sampling,
:func:`budget` gives the draws per chain whose checks fit in :data:`MEMORY_SHARE` of the
memory then available (:func:`memory_draws`); where that is below the draw budget it becomes
the budget (a warning in the log), and a fit that stops there says "the memory budget ran
out" (``stopped_by``). Like the time budget it depends on the machine, but it only binds
where the draw budget would have run out of memory.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("socialgradient.sampling.target")  # the target's log: one place to read

#: The share of the memory available when sampling starts that the trace may take.
MEMORY_SHARE = 0.7


def memory_draws(n_expanded: int, chains: int, tune: int, available: float) -> int:
    """Return the most draws per chain whose trace can be checked in ``MEMORY_SHARE x available``.

    Parameters
    ----------
    n_expanded : int
        Values the sampler stores per draw (nutpie's ``CompiledPyMCModel.n_expanded``).
    chains, tune : int
        Chains, and warm-up draws per chain (nutpie keeps those too).
    available : float
        Bytes of memory available.

    Returns
    -------
    int
        The largest ``d`` with ``chains x (2 (tune + d) + 2 d) x n_expanded x 8`` bytes at
        most ``MEMORY_SHARE x available``: nutpie's trace (warm-up and ``d`` draws) and its copy
        while a check reads it, and the kept draws converted to arrays, twice for a moment
        (measured on a model of 60,000 values a draw, 4 x (200 + 1,000) draws: a peak 3.8
        times the trace above the process's start, this formula's 4.4). Negative where not
        even the warm-up fits.
    """
    per_draw = chains * max(n_expanded, 1) * 8.0
    return int((MEMORY_SHARE * available / per_draw - 2 * tune) // 4)


def available() -> float:
    """Return the bytes of memory available now (psutil, as the OS reports it)."""
    import psutil

    return float(psutil.virtual_memory().available)


def budget(compiled: Any, chains: int, tune: int, min_draws: int, max_draws: int) -> int:
    """Return the draw budget per chain: ``max_draws``, or less where memory holds less.

    Where :func:`memory_draws` of ``compiled`` (its ``n_expanded``) is below ``max_draws`` it is
    the budget, with a warning in the log; :class:`MemoryError` where it is below
    ``min_draws`` (not even the first check fits).
    """
    n = int(getattr(compiled, "n_expanded", 1))
    free = available()
    fits = memory_draws(n, chains, tune, free)
    if fits >= max_draws:
        return max_draws
    if fits < min_draws:
        raise MemoryError(
            f"the sampler's trace of {chains} chains x ({tune} + {min_draws}) draws of {n:,} "
            f"values needs more than {MEMORY_SHARE:.0%} of the {free / 2**30:.1f} GiB "
            "available: sample fewer chains or free memory"
        )
    log.warning(
        "draw budget lowered from %d to %d per chain: the trace of %d chains x %d values per "
        "draw must fit in %.0f%% of the memory available",
        max_draws,
        fits,
        chains,
        n,
        100 * MEMORY_SHARE,
    )
    return fits
