"""The exact protection check: how narrowly published totals pin each hidden quantity
(over 400 lines because the check, its speed-ups and the secondary search are one algorithm).

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
POOL = 128  # feasible points kept to prove quantities safe without a solve
EXPLORE = 4  # random vertices per linked set added to them before the check


@dataclass
class Stats:
    """What the check did (for the public log)."""

    quantities: int = 0
    pinned: int = 0
    solves: int = 0
    largest: int = 0
    seconds: float = 0.0

    def add(self, other: Stats) -> None:
        self.quantities += other.quantities
        self.pinned += other.pinned
        self.solves += other.solves
        self.largest = max(self.largest, other.largest)
        self.seconds += other.seconds

    def public(self) -> dict:
        return {
            "method": "linear programming (HiGHS), every hidden quantity, no size limit",
            "quantities_checked": self.quantities,
            "largest_linked_set": self.largest,
            "solves": self.solves,
            "seconds": round(self.seconds, 3),
        }


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
        self._matrix, self._matrix_of = None, None
        self._binding: tuple = (None, set())
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
            self._binding = (None, set())
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
        var_comp, row_comp = components(b)
        self._state = {
            "fixed": fixed,
            "free": np.flatnonzero(free),
            "b": b,
            "lo": blo,
            "hi": bhi,
            "var_comp": var_comp,
            "row_comp": row_comp,
            "row_of": rows[keep],
            "fixed_row": fixed_row,
            "b_csc": b.tocsc(),
            "free_pos": np.cumsum(free) - 1,
        }
        return self._state

    def ceiling(self, target) -> tuple[float, int]:
        """A quick upper bound on ``target . x`` (0/1 coefficients): its fixed part plus the
        smallest remaining total (published total less the known cells) of an active row
        holding all its other variables; and that row (-1: none). Below the protection level
        it proves the target pinned without a linear program."""
        st = self._prepare()
        t = _dense(target)
        on = np.flatnonzero(t)
        if not len(on) or not np.all(t[on] == 1):
            return np.inf, -1
        fixed = st["fixed"]
        const = float(np.nansum(fixed[on]))
        free_on = on[np.isnan(fixed[on])]
        if not len(free_on):
            return const, -1
        cols = st["b_csc"][:, st["free_pos"][free_on]]
        holds = np.flatnonzero(np.asarray(cols.sum(axis=1)).ravel() >= len(free_on) - 1e-9)
        if not len(holds):
            return np.inf, -1
        best = holds[np.argmin(st["hi"][holds])]
        return const + float(st["hi"][best]), int(st["row_of"][best])

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
        if self._binding[0] == t.tobytes():
            found = set(self._binding[1])  # from the interval's own solves
        elif len(on):
            comps = np.unique(st["var_comp"][on])
            vars_ = np.flatnonzero(np.isin(st["var_comp"], comps))
            rows = np.flatnonzero(np.isin(st["row_comp"], comps))
            b, lo, hi = st["b"][rows][:, vars_], st["lo"][rows], st["hi"][rows]
            for sign in (1.0, -1.0):
                self.stats.solves += 1
                try:
                    _, _, duals = _lp(b, lo, hi, sign * tf[vars_])
                except RuntimeError:
                    continue
                found.update(st["row_of"][rows[duals]].tolist())
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
        return const + self._solve(
            st["b"][rows][:, vars_],
            st["lo"][rows],
            st["hi"][rows],
            tf[vars_],
            free[vars_],
            rows,
            t.tobytes(),
        )

    def spread(self, target) -> float:
        """How far the known feasible points already spread ``target . x``."""
        if (
            self._matrix is None
            or self._matrix.shape[0] != len(self.pool)
            or self._matrix_of is not self.pool
        ):
            self._matrix, self._matrix_of = np.vstack(self.pool), self.pool
        t = _dense(target)
        on = np.flatnonzero(t)
        values = self._matrix[:, on] @ t[on]
        return float(values.max() - values.min())

    def explore(self, targets, protection: float, rounds: int = 12) -> None:
        """Add feasible points that spread many ``targets`` at once, so that most are shown
        to vary by ``protection`` without solves of their own: vertices maximising and
        minimising the sum of the targets not yet shown to, per linked set, until a round
        shows no more (and a few random vertices first)."""
        t0 = time.perf_counter()
        rows = sparse.vstack(
            [
                sparse.csr_array(_dense(t)[None, :])
                if not sparse.issparse(t)
                else sparse.csr_array(t)
                for t in targets
            ]
        ).tocsr()
        rng = np.random.default_rng(0)
        open_ = np.ones(rows.shape[0], bool)
        for round_ in range(rounds + 1):
            spread = self._spreads(rows)
            still = spread < protection
            if not still.any() or (round_ and still.sum() >= open_.sum()):
                break
            open_ = still
            objective = np.asarray(rows[still].sum(axis=0)).ravel()
            signs = (1.0, -1.0) if round_ else (None,) * EXPLORE
            for sign in signs:
                c = rng.normal(size=self.n) * (objective != 0) if sign is None else sign * objective
                self._vertices(c)
        self.stats.seconds += time.perf_counter() - t0

    def _spreads(self, rows) -> np.ndarray:
        pool = np.vstack(self.pool)
        values = (rows @ pool.T).T if sparse.issparse(rows) else pool @ rows.T
        values = np.asarray(values)
        return values.max(axis=0) - values.min(axis=0)

    def _vertices(self, c: np.ndarray) -> None:
        """Minimise ``c . x`` on every linked set ``c`` touches; add the points found."""
        st = self._prepare()
        cf = c[st["free"]]
        for comp in np.unique(st["var_comp"][cf != 0]):
            vars_ = np.flatnonzero(st["var_comp"] == comp)
            rows = np.flatnonzero(st["row_comp"] == comp)
            if len(vars_) < 2 or not len(rows):
                continue
            lo, hi = st["lo"][rows], st["hi"][rows]
            cons = LinearConstraint(
                st["b"][rows][:, vars_],
                np.where(np.isfinite(lo), lo, -np.inf),
                np.where(np.isfinite(hi), hi, np.inf),
            )
            self.stats.solves += 1
            res = milp(cf[vars_], constraints=cons, bounds=Bounds(0, BIG))
            if res.status == 0 and res.x is not None:
                self.pool = [self.truth, self._complete(st["free"][vars_], res.x), *self.pool[1:]][
                    :POOL
                ]

    def _solve(self, b, lo, hi, c, cols, rows=None, key=None) -> np.ndarray:
        n = b.shape[1]
        integral = self.integer and n <= INTEGER_LIMIT
        cons = LinearConstraint(
            b, np.where(np.isfinite(lo), lo, -np.inf), np.where(np.isfinite(hi), hi, np.inf)
        )
        out, binding = [], np.zeros(len(lo), bool)
        for sign in (1.0, -1.0):
            self.stats.solves += 1
            if integral:
                res = milp(
                    sign * c, constraints=cons, bounds=Bounds(0, BIG), integrality=np.ones(n)
                )
                fun, x = res.fun, res.x
                if res.status != 0 or x is None:
                    raise RuntimeError(
                        f"the protection check's program failed "
                        f"({res.message}); the release is refused"
                    )
            else:
                fun, x, duals = _lp(b, lo, hi, sign * c)
                binding |= duals
            out.append(sign * fun)
            self.pool = [self.truth, self._complete(cols, x), *self.pool[1:]][:POOL]
        if not integral and rows is not None:
            self._binding = (key, set(self._prepare()["row_of"][rows[binding]].tolist()))
        lo_v, hi_v = out[0], out[1]
        if self.integer and not integral:
            lo_v, hi_v = np.ceil(lo_v - 1e-6), np.floor(hi_v + 1e-6)
        return np.array([lo_v, hi_v])

    def _complete(self, cols, x) -> np.ndarray:
        """A full feasible point: ``x`` on ``cols``, the truth elsewhere (other linked sets
        are independent, fixed variables are at their values)."""
        p = self.truth.copy()
        p[cols] = x
        return p


def _lp(b, lo, hi, c) -> tuple[float, np.ndarray, np.ndarray]:
    """min ``c . x`` over 0 <= x <= BIG with ``lo <= b x <= hi`` (HiGHS through
    :func:`scipy.optimize.linprog`): the value, the point and which rows have a non-zero
    dual (the rows that bound it)."""
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
    """The linked sets of ``lo <= b x <= hi``: connected components of the bipartite graph of
    columns and rows, a label per column and per row."""
    coo = sparse.coo_array(b)
    m, n = b.shape
    if not n + m:
        return np.zeros(0, int), np.zeros(0, int)
    graph = sparse.coo_array((np.ones(coo.nnz), (coo.col, n + coo.row)), (n + m, n + m))
    _, comp = connected_components(graph, directed=False)
    return comp[:n], comp[n:]


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


class _Ceilings:
    """The least upper bound that one permanent (never hidden) active row holding all of a
    target's variables gives it: a quick proof that it is bounded whatever is hidden."""

    def __init__(self, audit: Audit, permanent: np.ndarray):
        rows = np.flatnonzero(permanent & audit.active)
        self.a = audit.a[rows].tocsc()
        self.hi = audit.hi[rows]
        coo = audit.a[rows].tocoo()
        self.per_var = np.full(audit.n, np.inf)  # single-variable targets, all at once
        np.minimum.at(self.per_var, coo.col, self.hi[coo.row])

    def __call__(self, target) -> float:
        t = _dense(target)
        on = np.flatnonzero(t)
        if not len(on) or (t[on] < 0).any():
            return np.inf
        if len(on) == 1:
            return float(self.per_var[on[0]] / t[on[0]])
        holds = np.asarray(self.a[:, on].sum(axis=1)).ravel() >= len(on) - 1e-9
        return float(np.min(self.hi[holds] / t[on].max(), initial=np.inf))


def secure(
    audit: Audit,
    targets: list[Target],
    candidates,
    protection: float,
    baseline=None,
    label=str,
    tries: int = 6,
    permanent: np.ndarray | None = None,
) -> tuple[list[int], list[str]]:
    """Hide constraint rows (``candidates(target)``: rows that may still be hidden, best
    first) until no target is pinned (interval narrower than ``protection``).

    ``baseline(target)``: whether the target is pinned even with every candidate row
    hidden (bounded by what was published elsewhere or before: noted, not fixable here; so
    is a pinned target with no candidate left, or one that a ``permanent`` row -- a total
    published elsewhere or before, never hidden here -- bounds below ``protection`` on its
    own). Returns the rows hidden and the actions (labels via ``label(row)``).
    """
    queue = list(targets)
    hidden: list[int] = []
    actions: list[str] = []
    beyond = 0
    if protection > 0 and len(targets) > EXPLORE:
        audit.explore([t.row for t in targets], protection)
    base: list[Audit] = []  # the model with every hideable row hidden, made when first needed
    ceilings = _Ceilings(audit, permanent) if permanent is not None else None

    def unfixable(t: Target) -> bool:
        """Bounded below the protection level by the permanent rows alone?"""
        if permanent is None:
            return False
        if ceilings(t.row) < protection:
            return True
        if not base:
            base.append(Audit(audit.a, audit.lo, audit.hi, audit.truth, audit.integer))
            base[0].set_active(np.flatnonzero(~(permanent & audit.active)), False)
            base[0].explore([x.row for x in targets], protection)
        if base[0].spread(t.row) >= protection:
            return False
        lo, hi = base[0].interval(t.row)
        return width(lo, hi) < protection - 1e-9

    def pinned(t: Target) -> bool:
        if protection <= 0:
            return False
        top, row = audit.ceiling(t.row)
        if top < protection:  # what a total leaves for it is already too little
            audit._binding = (_dense(t.row).tobytes(), {row} if row >= 0 else set())
            return True
        if audit.spread(t.row) >= protection:
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
        audit.stats.pinned += 1
        options = [c for c in candidates(t) if audit.active[c]]
        bound = set(audit.binding(t.row).tolist())  # the totals that do the pinning
        # bounds proved by permanent rows alone (LP duality) hold whatever is hidden
        proved = permanent is not None and bool(bound) and all(permanent[r] for r in bound)
        if not options or proved or unfixable(t) or (baseline is not None and baseline(t)):
            actions.append(
                f"warning: {t.label} is bounded to less than {protection} by "
                "what was published elsewhere or before"
            )
            beyond += 1
            continue
        relevant = [c for c in options if c in bound] or options
        chosen = next(
            (c for c in relevant[:tries] if audit.hide_and_test(c, lambda t=t: not pinned(t))), None
        )
        if chosen is not None:
            audit.set_active(chosen, False)
        else:  # none alone is enough: hide the first that bounds it and look again
            chosen = relevant[0]
            audit.set_active(chosen, False)
            queue.insert(0, t)
        hidden.append(chosen)
        actions.append(f"secondary: {label(chosen)} ({t.label} was recoverable)")
        queue.append(Target(label(chosen), audit.a[[chosen]], chosen))
    if base:
        audit.stats.add(base[0].stats)
        audit.stats.quantities -= base[0].stats.quantities
    if beyond:
        actions.append(
            f"note: {beyond} hidden quantities are bounded to less than "
            f"{protection} by totals published elsewhere or before (not by this "
            "release)"
        )
    return hidden, actions
