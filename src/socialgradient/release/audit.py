"""The exact protection check: how narrowly published totals pin each hidden quantity.

An attacker who knows the published values knows that the unknown non-negative cell (or
atom) values ``x`` satisfy ``lo <= A x <= hi`` (one row per published total: equal to it,
or within its rounding interval). For each hidden quantity ``t . x`` the check computes
the smallest and largest value it can take (two linear programs, HiGHS through
:func:`scipy.optimize.milp` on sparse matrices; as integer programs where the linked set
is small, :data:`INTEGER_LIMIT` free variables, else the linear relaxation with its bounds
rounded inwards). A quantity is *pinned* when the interval is narrower than the protection
level. Nothing is skipped: every hidden quantity is checked at every size.

Speed: variables fixed by a published single-atom cell are substituted; each quantity is
solved on its linked set only (connected components of the constraint graph); and feasible
points found by earlier solves (starting with the true values) are kept, so a quantity they
already show to vary by the protection level needs no solve. Hiding a cell only removes a
constraint, so a quantity found safe stays safe (:func:`secure` relies on it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse.csgraph import connected_components

INTEGER_LIMIT = 60  # linked sets up to this many free variables are solved as integer programs
BIG = 1e12  # an upper bound on every variable (the attacker knows none; keeps LPs bounded)
POOL = 64  # feasible points kept to prove quantities safe without a solve


@dataclass
class Stats:
    """What the check did (for the public log)."""

    quantities: int = 0
    solves: int = 0
    largest: int = 0
    seconds: float = 0.0

    def add(self, other: Stats) -> None:
        self.quantities += other.quantities
        self.solves += other.solves
        self.largest = max(self.largest, other.largest)
        self.seconds += other.seconds

    def public(self) -> dict:
        return {"method": "linear programming (HiGHS), every hidden quantity, no size limit",
                "quantities_checked": self.quantities, "largest_linked_set": self.largest,
                "solves": self.solves, "seconds": round(self.seconds, 3)}


class Audit:
    """``x >= 0`` with ``lo <= A x <= hi`` for the active rows of ``A``; ``truth`` a feasible
    point (the true values)."""

    def __init__(self, a, lo, hi, truth, integer: bool = True):
        self.a = sparse.csr_array(a, dtype=float)
        self.lo = np.asarray(lo, dtype=float)
        self.hi = np.asarray(hi, dtype=float)
        self.truth = np.asarray(truth, dtype=float)
        self.integer = integer
        self.active = np.ones(self.a.shape[0], bool)
        self.pool: list[np.ndarray] = [self.truth]
        self.stats = Stats()
        self._state = None

    @property
    def n(self) -> int:
        return self.a.shape[1]

    def set_active(self, rows, value: bool) -> None:
        rows = np.atleast_1d(np.asarray(rows, dtype=int))
        if len(rows) and (self.active[rows] != value).any():
            self.active[rows] = value
            self._state = None
            if value:  # a constraint added back: points found without it may violate it
                self.pool = [self.truth]

    def hide_and_test(self, rows, test):
        """``test()`` with ``rows`` inactive, then the rows restored (and the points known
        before); returns the test's result."""
        rows = [r for r in np.atleast_1d(rows).tolist() if self.active[r]]
        saved = list(self.pool)
        self.set_active(rows, False)
        try:
            return test()
        finally:
            self.set_active(rows, True)
            self.pool = saved

    def _prepare(self):
        if self._state is not None:
            return self._state
        rows = np.flatnonzero(self.active)
        a, lo, hi = self.a[rows], self.lo[rows], self.hi[rows]
        nnz = np.diff(a.indptr)
        single = (nnz == 1) & (lo == hi)
        fixed = np.full(self.n, np.nan)
        cols = a.indices[a.indptr[:-1][single]]
        fixed[cols] = lo[single] / a.data[a.indptr[:-1][single]]
        fixed_row = np.full(self.n, -1)
        fixed_row[cols] = rows[single]
        free = np.isnan(fixed)
        shift = a @ np.where(free, 0.0, fixed)
        b = a[:, np.flatnonzero(free)]
        keep = (np.diff(b.indptr) > 0) & ~single
        b, blo, bhi = b[keep], lo[keep] - shift[keep], hi[keep] - shift[keep]
        nf = b.shape[1]
        # components of the bipartite graph free variables - rows
        coo = b.tocoo()
        m = b.shape[0]
        graph = sparse.coo_array((np.ones(coo.nnz), (coo.col, nf + coo.row)), (nf + m, nf + m))
        _, comp = connected_components(graph, directed=False) if nf + m else (0, np.zeros(0, int))
        self._state = {"fixed": fixed, "free": np.flatnonzero(free), "b": b, "lo": blo,
                       "hi": bhi, "var_comp": comp[:nf], "row_comp": comp[nf:],
                       "row_of": rows[keep], "fixed_row": fixed_row}
        return self._state

    def binding(self, target) -> np.ndarray:
        """Constraint rows that bound ``target . x`` at its smallest or largest value: the
        rows with a non-zero dual in the linear relaxation, and the published single-atom
        cells whose atoms they (or the target) hold. Hiding one of them is what can widen
        the target's range."""
        t0 = time.perf_counter()
        st = self._prepare()
        t = _dense(target)
        free = st["free"]
        tf = t[free]
        on = np.flatnonzero(tf)
        found: set[int] = set()
        if len(on):
            comps = np.unique(st["var_comp"][on])
            vars_ = np.flatnonzero(np.isin(st["var_comp"], comps))
            rows = np.flatnonzero(np.isin(st["row_comp"], comps))
            b = st["b"][rows][:, vars_]
            lo, hi = st["lo"][rows], st["hi"][rows]
            eq = lo == hi
            up, down = ~eq & np.isfinite(hi), ~eq & np.isfinite(lo)
            a_ub = sparse.vstack([b[up], -b[down]]).tocsr() if (up | down).any() else None
            b_ub = np.concatenate([hi[up], -lo[down]]) if a_ub is not None else None
            which_ub = np.concatenate([rows[up], rows[down]])
            for sign in (1.0, -1.0):
                self.stats.solves += 1
                res = linprog(sign * tf[vars_], A_ub=a_ub, b_ub=b_ub,
                              A_eq=b[eq] if eq.any() else None,
                              b_eq=lo[eq] if eq.any() else None, bounds=(0, BIG),
                              method="highs")
                if res.status != 0:
                    continue
                if eq.any():
                    found.update(st["row_of"][rows[eq][np.abs(res.eqlin.marginals) > 1e-9]])
                if a_ub is not None:
                    found.update(st["row_of"][which_ub[np.abs(res.ineqlin.marginals) > 1e-9]])
        touched = np.flatnonzero(t)
        if found:
            touched = np.union1d(touched, self.a[sorted(found)].indices)
        rows_fixed = st["fixed_row"][touched]
        found.update(int(r) for r in rows_fixed[rows_fixed >= 0])
        self.stats.seconds += time.perf_counter() - t0
        return np.array(sorted(found), dtype=int)

    def interval(self, target) -> tuple[float, float]:
        """Smallest and largest value of ``target . x`` (``target``: a dense vector or a
        sparse row over the variables)."""
        t0 = time.perf_counter()
        try:
            return self._interval(target)
        finally:
            self.stats.seconds += time.perf_counter() - t0

    def _interval(self, target) -> tuple[float, float]:
        st = self._prepare()
        t = _dense(target)
        fixed, free = st["fixed"], st["free"]
        const = float(np.dot(np.where(np.isnan(fixed), 0.0, fixed), t))
        tf = t[free]
        on = np.flatnonzero(tf)
        if not len(on):
            return const, const
        comps = np.unique(st["var_comp"][on])
        vars_ = np.flatnonzero(np.isin(st["var_comp"], comps))
        rows = np.flatnonzero(np.isin(st["row_comp"], comps))
        self.stats.largest = max(self.stats.largest, len(vars_))
        if not len(rows):  # linked to nothing: anything from 0 up
            return const, np.inf
        return const + self._solve(st["b"][rows][:, vars_], st["lo"][rows], st["hi"][rows],
                                   tf[vars_], free[vars_])

    def spread(self, target) -> float:
        """How far the known feasible points already spread ``target . x``."""
        t = _dense(target)
        values = np.array([p @ t for p in self.pool])
        return float(values.max() - values.min())

    def _solve(self, b, lo, hi, c, cols) -> np.ndarray:
        n = b.shape[1]
        integral = np.ones(n) if self.integer and n <= INTEGER_LIMIT else np.zeros(n)
        cons = LinearConstraint(b, np.where(np.isfinite(lo), lo, -np.inf),
                                np.where(np.isfinite(hi), hi, np.inf))
        out = []
        for sign in (1.0, -1.0):
            self.stats.solves += 1
            res = milp(sign * c, constraints=cons, bounds=Bounds(0, BIG), integrality=integral)
            if res.status != 0 or res.x is None:
                raise RuntimeError(f"the protection check's linear program failed "
                                   f"({res.message}); the release is refused")
            out.append(sign * res.fun)
            point = self._complete(cols, res.x)
            self.pool = [self.truth, point, *self.pool[1:]][:POOL]
        lo_v, hi_v = out[0], out[1]
        if self.integer and not integral.any():
            lo_v, hi_v = np.ceil(lo_v - 1e-6), np.floor(hi_v + 1e-6)
        return np.array([lo_v, hi_v])

    def _complete(self, cols, x) -> np.ndarray:
        """A full feasible point: ``x`` on ``cols``, the truth elsewhere (other linked sets
        are independent, fixed variables are at their values)."""
        p = self.truth.copy()
        p[cols] = x
        return p


def _dense(target) -> np.ndarray:
    return np.asarray(target.todense() if sparse.issparse(target) else target,
                      dtype=float).ravel()


def width(lo: float, hi: float) -> float:
    return float(hi - lo)


@dataclass
class Target:
    """A hidden quantity to keep unpinned: a label for messages, its row over the
    variables, and ``own``: a constraint row whose hiding it is (None for an atom)."""

    label: str
    row: object
    own: int | None = None
    counted: bool = False


def secure(audit: Audit, targets: list[Target], candidates, protection: float,
           baseline=None, label=str, tries: int = 6) -> tuple[list[int], list[str]]:
    """Hide constraint rows (``candidates(target)``: rows that may still be hidden, best
    first) until no target is pinned (interval narrower than ``protection``).

    ``baseline(target)``: whether the target is pinned even with every candidate row
    hidden (bounded by what was published elsewhere or before: noted, not fixable here; so
    is a pinned target with no candidate left). Returns the rows hidden and the actions
    (labels via ``label(row)``).
    """
    queue = list(targets)
    hidden: list[int] = []
    actions: list[str] = []
    beyond = 0

    def pinned(t: Target) -> bool:
        if protection <= 0 or audit.spread(t.row) >= protection:
            return False
        lo, hi = audit.interval(t.row)
        return width(lo, hi) < protection - 1e-9

    while queue:
        t = queue.pop(0)
        if not t.counted:
            t.counted = True
            audit.stats.quantities += 1
        if not pinned(t):
            continue
        options = [c for c in candidates(t) if audit.active[c]]
        if not options or (baseline is not None and baseline(t)):
            actions.append(f"warning: {t.label} is bounded to less than {protection} by "
                           "what was published elsewhere or before")
            beyond += 1
            continue
        bound = set(audit.binding(t.row).tolist())  # the totals that do the pinning
        relevant = [c for c in options if c in bound] or options
        chosen = next((c for c in relevant[:tries]
                       if audit.hide_and_test(c, lambda t=t: not pinned(t))), None)
        if chosen is not None:
            audit.set_active(chosen, False)
        else:  # none alone is enough: hide the first that bounds it and look again
            chosen = relevant[0]
            audit.set_active(chosen, False)
            queue.insert(0, t)
        hidden.append(chosen)
        actions.append(f"secondary: {label(chosen)} ({t.label} was recoverable)")
        queue.append(Target(label(chosen), audit.a[[chosen]], chosen))
    if beyond:
        actions.append(f"note: {beyond} hidden quantities are bounded to less than "
                       f"{protection} by totals published elsewhere or before (not by this "
                       "release)")
    return hidden, actions
