"""The linear programs of the protection check and what it reports.

``_lp`` solves one program with HiGHS and says which published totals bound its optimum;
:func:`components` splits the constraints into linked sets (each quantity is solved on its
own); :class:`Stats` is the public account of the check. Used by
:mod:`socialgradient.release.ranges` (the ranges of hidden quantities) and
:mod:`socialgradient.release.suppression` (the secondary-suppression search of one table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog
from scipy.sparse.csgraph import connected_components

INTEGER_LIMIT = 60  # linked sets up to this many free variables are solved as integer programs
BIG = 1e12  # an upper bound on every variable (the attacker knows none; keeps LPs bounded)


@dataclass
class Stats:
    """What the check did (for the public log)."""

    quantities: int = 0
    pinned: int = 0
    solves: int = 0
    largest: int = 0
    seconds: float = 0.0

    def add(self, other: Stats) -> None:
        """Add the counts of ``other`` to these."""
        self.quantities += other.quantities
        self.pinned += other.pinned
        self.solves += other.solves
        self.largest = max(self.largest, other.largest)
        self.seconds += other.seconds

    def public(self) -> dict:
        """Return the public summary, for the disclosure log."""
        return {
            "method": "linear programming (HiGHS), every hidden quantity, no size limit",
            "quantities_checked": self.quantities,
            "largest_linked_set": self.largest,
            "solves": self.solves,
            "seconds": round(self.seconds, 3),
        }


def _lp(b, lo, hi, c) -> tuple[float, np.ndarray, np.ndarray]:
    """Minimise ``c . x`` on the region and say which rows bind the optimum.

    min ``c . x`` over 0 <= x <= BIG with ``lo <= b x <= hi`` (HiGHS through
    :func:`scipy.optimize.linprog`): the value, the point and which rows have a non-zero
    dual (the rows that bound it).
    """
    eq = lo == hi
    up, down = ~eq & np.isfinite(hi), ~eq & np.isfinite(lo)
    ub = [b[up], -b[down]]
    a_ub = sparse.vstack(ub).tocsr() if (up | down).any() else None
    res = linprog(
        c,
        A_ub=a_ub,
        b_ub=np.concatenate([hi[up], -lo[down]]) if a_ub is not None else None,
        A_eq=b[eq] if eq.any() else None,
        b_eq=lo[eq] if eq.any() else None,
        bounds=(0, BIG),
        method="highs",
    )
    if res.status != 0 or res.x is None:
        raise RuntimeError(
            f"the protection check's linear program failed ({res.message}); the release is refused"
        )
    duals = np.zeros(len(lo), bool)
    if eq.any():
        duals[np.flatnonzero(eq)[np.abs(res.eqlin.marginals) > 1e-9]] = True
    if a_ub is not None:
        which = np.concatenate([np.flatnonzero(up), np.flatnonzero(down)])
        duals[which[np.abs(res.ineqlin.marginals) > 1e-9]] = True
    return res.fun, res.x, duals


def _dense(target) -> np.ndarray:
    return np.asarray(target.todense() if sparse.issparse(target) else target, dtype=float).ravel()


def components(b) -> tuple[np.ndarray, np.ndarray]:
    """Return the linked sets of ``lo <= b x <= hi``.

    The linked sets of ``lo <= b x <= hi``: connected components of the bipartite graph of
    columns and rows, a label per column and per row.
    """
    coo = sparse.coo_array(b)
    m, n = b.shape
    if not n + m:
        return np.zeros(0, int), np.zeros(0, int)
    graph = sparse.coo_array((np.ones(coo.nnz), (coo.col, n + coo.row)), (n + m, n + m))
    _, comp = connected_components(graph, directed=False)
    return comp[:n], comp[n:]


def width(lo: float, hi: float) -> float:
    """Return the width ``hi - lo`` of a range."""
    return float(hi - lo)
