"""The linear programs of the protection check and what it reports.

:class:`LinearModel` is the one LP engine: a linked set's program kept as one HiGHS model,
warm-started from solve to solve, that gives an optimum, a point and the totals that bind it;
:func:`components` splits the constraints into linked sets (each quantity is solved on its
own); :func:`same_rows` and :func:`distinct_rows` find the same total or quantity given
again (by several releases: put in once); :class:`Stats` is the public account of the check. Used by
:mod:`socialgradient.release.ranges` (the ranges of hidden quantities) and
:mod:`socialgradient.release.suppression` (the secondary-suppression search of one table).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import highspy
import numpy as np
from scipy import sparse
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


def _dense(target) -> np.ndarray:
    return np.asarray(target.todense() if sparse.issparse(target) else target, dtype=float).ravel()


def _as_row(target) -> sparse.csr_array:
    """Return a quantity's coefficients (dense or sparse) as a one-row CSR array."""
    return (
        sparse.csr_array(target)
        if sparse.issparse(target)
        else sparse.csr_array(_dense(target)[None, :])
    )


def _canonical(a) -> sparse.csr_array:
    """Return a CSR copy of ``a`` with summed duplicates and sorted indices (a row's bytes)."""
    a = sparse.csr_array(a, copy=True)
    a.sum_duplicates()
    a.sort_indices()
    return a


def row_key(row) -> bytes:
    """Return the bytes of a quantity's coefficients (dense or sparse; equal: the same)."""
    r = _canonical(_as_row(row))
    return r.indices.astype(np.int64).tobytes() + r.data.astype(float).tobytes()


def distinct_rows(targets) -> tuple[sparse.csr_array, np.ndarray]:
    """Return the distinct rows of ``targets`` (dense or sparse) and how often each is given.

    The rows in the order of their first appearance (:func:`same_rows`).
    """
    rows = sparse.vstack([_as_row(t) for t in targets]).tocsr()
    label = same_rows(rows)
    _, first = np.unique(label, return_index=True)  # labels count up from 0 as rows appear
    return rows[first], np.bincount(label).astype(float)


def same_rows(a) -> np.ndarray:
    """Return a label per row of ``a``, shared by the rows of the same coefficients.

    Exact: each row's column indices and values are compared as bytes (labels in the order
    of the rows' first appearance).
    """
    a = _canonical(a)
    ind, data, ptr = a.indices, a.data, a.indptr
    seen: dict[bytes, int] = {}
    label = np.empty(a.shape[0], dtype=np.int64)
    for i in range(a.shape[0]):
        lo, hi = ptr[i], ptr[i + 1]
        label[i] = seen.setdefault(ind[lo:hi].tobytes() + data[lo:hi].tobytes(), len(seen))
    return label


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


_QUIET: list[bool] = []  # set once HiGHS has printed its once-per-process banner


def _highs() -> highspy.Highs:
    """Return a silent HiGHS instance.

    The first one made in a process prints a banner on the C stdout (before any option can
    be set), which would mix into a command's output: that one is made with file
    descriptor 1 pointed at the null device.
    """
    if _QUIET:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w", encoding="utf-8", newline="\n") as null:
                os.dup2(null.fileno(), 1)
                h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _QUIET.append(True)
    h.setOptionValue("output_flag", False)
    return h


class LinearModel:
    """One linked set's linear program, kept between solves: the one LP engine of the check.

    ``lo <= b x <= hi`` and ``0 <= x <= upper`` as one HiGHS model (:mod:`highspy`): only
    the objective changes between solves, so each solve starts from the last optimal basis.
    Used by the secondary suppression of one table
    (:mod:`socialgradient.release.suppression`) and by the ranges of hidden quantities
    across releases (:class:`socialgradient.release.ranges.Audit`, the ledger's check).
    """

    def __init__(self, b, lo, hi, upper: float = np.inf) -> None:
        self.h = _highs()
        lp = highspy.HighsLp()
        csc = sparse.csc_array(b)
        inf = highspy.kHighsInf
        lp.num_col_, lp.num_row_ = csc.shape[1], csc.shape[0]
        lp.col_cost_ = np.zeros(csc.shape[1])
        lp.col_lower_ = np.zeros(csc.shape[1])
        lp.col_upper_ = np.full(csc.shape[1], upper if np.isfinite(upper) else inf)
        lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
        lp.row_lower_ = np.where(np.isfinite(lo), lo, -inf)
        lp.row_upper_ = np.where(np.isfinite(hi), hi, inf)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = csc.indptr
        lp.a_matrix_.index_ = csc.indices
        lp.a_matrix_.value_ = csc.data
        self.h.passModel(lp)

    def optimum(self, c, maximise: bool) -> tuple[float, np.ndarray, np.ndarray]:
        """Return the optimum of ``c . x``, a point reaching it and the rows that bind it.

        The smallest value (the largest with ``maximise``); the binding rows are those
        whose dual is non-zero (the published totals that bound the optimum).
        :class:`RuntimeError` (the release is refused) when HiGHS finds no optimum.
        """
        h = self.h
        c = np.asarray(c, dtype=float)
        on = np.flatnonzero(c)
        for j in on.tolist():
            h.changeColCost(j, float(c[j]))
        sense = highspy.ObjSense.kMaximize if maximise else highspy.ObjSense.kMinimize
        h.changeObjectiveSense(sense)
        try:
            h.run()
            if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                raise RuntimeError(
                    f"the protection check's linear program failed "
                    f"({h.modelStatusToString(h.getModelStatus())}); the release is refused"
                )
            solution = h.getSolution()
            x = np.asarray(solution.col_value, dtype=float)
            duals = np.abs(np.asarray(solution.row_dual, dtype=float)) > 1e-9
            return float(h.getInfo().objective_function_value), x, duals
        finally:
            for j in on.tolist():
                h.changeColCost(j, 0.0)
