"""The ranges that published totals leave to hidden quantities: the exact protection check.

An attacker who knows the published values knows that the unknown non-negative cell (or
atom) values ``x`` satisfy ``lo <= A x <= hi``; :class:`Audit` holds that region and gives
each hidden quantity's smallest and largest value (:meth:`Audit.interval`), the totals that
bound it (:meth:`Audit.binding`) and quick proofs that need no solve (a ceiling, the spread
of known feasible points). The method is described in :mod:`socialgradient.release.audit`.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from socialgradient.release.lp import (
    BIG,
    INTEGER_LIMIT,
    LinearModel,
    Stats,
    _dense,
    components,
    distinct_rows,
    same_rows,
)

POOL = 128  # feasible points kept to prove quantities safe without a solve
EXPLORE = 4  # random vertices per linked set added to them before the check


class Audit:
    """The region an attacker knows: ``x >= 0`` with ``lo <= A x <= hi``.

    ``x >= 0`` with ``lo <= A x <= hi`` for the active rows of ``A``; ``truth`` a feasible
    point (the true values).
    """

    def __init__(self, a, lo, hi, truth, integer: bool = True):
        self.a = sparse.csr_array(a, dtype=float)
        self.lo = np.asarray(lo, dtype=float)
        self.hi = np.asarray(hi, dtype=float)
        self.truth = np.asarray(truth, dtype=float)
        self.integer = integer
        self.active = np.ones(self.a.shape[0], bool)
        self.pool: list[np.ndarray] = [self.truth]
        self._matrix: np.ndarray | None = None
        self._matrix_of: list[np.ndarray] | None = None
        self._binding: tuple = (None, set())
        self.stats = Stats()
        self._state: dict | None = None
        self._same_rows: np.ndarray | None = None
        self.version = 0  # counts the changes of the active rows

    @property
    def n(self) -> int:
        """Return the number of variables."""
        return self.a.shape[1]

    def set_active(self, rows, value: bool) -> None:
        """Make the constraint ``rows`` active (``value`` True) or inactive."""
        rows = np.atleast_1d(np.asarray(rows, dtype=int))
        if len(rows) and (self.active[rows] != value).any():
            self.active[rows] = value
            self.version += 1
            self._state = None
            self._binding = (None, set())
            if value:  # a constraint added back: points found without it may violate it
                self.pool = [self.truth]

    def hide_and_test(self, rows, test):
        """Run ``test()`` with ``rows`` inactive, then restore them.

        The feasible points known before are restored too. Returns the test's result.
        """
        rows = [r for r in np.atleast_1d(rows).tolist() if self.active[r]]
        saved = list(self.pool)
        self.set_active(rows, False)
        try:
            return test()
        finally:
            self.set_active(rows, True)
            self.pool = saved

    def _same(self) -> np.ndarray:
        """Return a label per row of ``a``, shared by rows of the same coefficients."""
        if self._same_rows is None:  # whichever rows are active
            self._same_rows = same_rows(self.a)
        return self._same_rows

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
        # rows with the same coefficients (the same total published again, in another
        # release or table) are one constraint: the tightest of their bounds
        kept = rows[keep]
        _, first, group = np.unique(self._same()[kept], return_index=True, return_inverse=True)
        order = np.argsort(first)  # the groups in the order of their first rows
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        group, first = rank[group.ravel()], first[order]
        glo = np.full(len(first), -np.inf)
        ghi = np.full(len(first), np.inf)
        np.maximum.at(glo, group, blo)
        np.minimum.at(ghi, group, bhi)
        at_hi = bhi == ghi[group]
        hi_row = np.full(len(first), np.iinfo(np.int64).max)
        np.minimum.at(hi_row, group[at_hi], kept[at_hi])  # the first row giving it
        b = b[first]
        var_comp, row_comp = components(b)
        self._state = {
            "fixed": fixed,
            "free": np.flatnonzero(free),
            "b": b,
            "lo": glo,
            "hi": ghi,
            "var_comp": var_comp,
            "row_comp": row_comp,
            "hi_row": hi_row,
            "member_group": group,
            "member_row": kept,
            "member_bound": (blo == glo[group]) | at_hi,
            "fixed_row": fixed_row,
            "b_csc": b.tocsc(),
            "free_pos": np.cumsum(free) - 1,
        }
        return self._state

    def _rows_of(self, groups) -> list[int]:
        """Return the constraint rows behind the merged rows ``groups`` that give its bounds."""
        st = self._prepare()
        on = np.isin(st["member_group"], np.asarray(groups, dtype=np.int64)) & st["member_bound"]
        return st["member_row"][on].tolist()

    def ceiling(self, target) -> tuple[float, int]:
        """Return a quick upper bound on ``target . x`` and the row that gives it.

        A quick upper bound on ``target . x`` (0/1 coefficients): its fixed part plus the
        smallest remaining total (published total less the known cells) of an active row
        holding all its other variables; and that row (-1: none). Below the protection level
        it proves the target pinned without a linear program.
        """
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
        top = st["hi"][holds].min()
        return const + float(top), int(st["hi_row"][holds][st["hi"][holds] == top].min())

    def binding(self, target) -> np.ndarray:
        """Return the constraint rows that bound ``target . x``.

        Constraint rows that bound ``target . x`` at its smallest or largest value: the
        rows with a non-zero dual in the linear relaxation, and the published single-atom
        cells whose atoms they (or the target) hold. Hiding one of them is what can widen
        the target's range.
        """
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
            model = self._model(rows, vars_)
            for maximise in (False, True):
                self.stats.solves += 1
                try:
                    _, _, duals = model.optimum(tf[vars_], maximise)
                except RuntimeError:
                    continue
                found.update(self._rows_of(rows[duals]))
        touched = np.flatnonzero(t)
        if found:
            touched = np.union1d(touched, self.a[sorted(found)].indices)
        rows_fixed = st["fixed_row"][touched]
        found.update(int(r) for r in rows_fixed[rows_fixed >= 0])
        self.stats.seconds += time.perf_counter() - t0
        return np.array(sorted(found), dtype=int)

    def interval(self, target) -> tuple[float, float]:
        """Return the smallest and largest value of ``target . x``.

        Smallest and largest value of ``target . x`` (``target``: a dense vector or a
        sparse row over the variables).
        """
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
        lo_v, hi_v = const + self._solve(
            st["b"][rows][:, vars_],
            st["lo"][rows],
            st["hi"][rows],
            tf[vars_],
            free[vars_],
            rows,
            t.tobytes(),
            vars_,
        )
        return float(lo_v), float(hi_v)

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
        """Add feasible points that spread many ``targets`` at once.

        Most targets are then shown to vary by ``protection`` without solves of their own:
        vertices maximising and minimising the sum of the targets not yet shown to, per
        linked set, until a round shows no more (and a few random vertices first).
        """
        t0 = time.perf_counter()
        rows, weight = distinct_rows(targets)  # a quantity given k times counts k times
        rng = np.random.default_rng(0)
        open_ = weight.sum()
        for round_ in range(rounds + 1):
            spread = self._spreads(rows)
            still = spread < protection
            if not still.any() or (round_ and weight[still].sum() >= open_):
                break
            open_ = weight[still].sum()
            objective = np.asarray(weight[still] @ rows[still]).ravel()
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

    def _model(self, rows: np.ndarray, vars_: np.ndarray) -> LinearModel:
        """Return the kept linear program of the linked set on ``rows`` and ``vars_``.

        One :class:`~socialgradient.release.lp.LinearModel` per linked set while the active
        rows stay as they are, so its solves start from the last optimal basis.
        """
        st = self._prepare()
        models = st.setdefault("models", {})
        key = (rows.tobytes(), vars_.tobytes())
        if key not in models:
            models[key] = LinearModel(
                st["b"][rows][:, vars_], st["lo"][rows], st["hi"][rows], upper=BIG
            )
        return models[key]

    def _solve(self, b, lo, hi, c, cols, rows, key, vars_) -> np.ndarray:
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
            else:  # min c.x, then min -c.x = -(max c.x), as the integer programs
                value, x, duals = self._model(rows, vars_).optimum(c, maximise=sign < 0)
                fun = sign * value
                binding |= duals
            out.append(sign * fun)
            self.pool = [self.truth, self._complete(cols, x), *self.pool[1:]][:POOL]
        if not integral:
            self._binding = (key, set(self._rows_of(rows[binding])))
        lo_v, hi_v = out[0], out[1]
        if self.integer and not integral:
            lo_v, hi_v = np.ceil(lo_v - 1e-6), np.floor(hi_v + 1e-6)
        return np.array([lo_v, hi_v])

    def _complete(self, cols, x) -> np.ndarray:
        """Return a full feasible point from ``x`` on ``cols``.

        A full feasible point: ``x`` on ``cols``, the truth elsewhere (other linked sets
        are independent, fixed variables are at their values).
        """
        p = self.truth.copy()
        p[cols] = x
        return p
