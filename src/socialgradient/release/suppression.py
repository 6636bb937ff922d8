"""Secondary suppression of a count table: hide cells until no hidden cell is pinned.

Complementary cells are hidden until no hidden cell can be narrowed below the protection
level from what is published.

What is published: the visible cells and the margins (``lines``: arrays of cell indices whose
sums are published). An attacker then knows that the hidden cells ``x`` are non-negative
and that each margin less its visible cells equals the sum of its hidden ones. A hidden
cell's *range* is the smallest and largest value it can take under those constraints; it is
*pinned* when the range is narrower than the protection level ``p``.

How each hidden cell is judged, cheapest first (nothing is skipped, at any size):

1. **Ceiling**: a margin holding the cell leaves it at most the margin's residual (total less
   its visible cells); below ``p`` the cell is pinned, no solve needed.
2. **Known points**: the true table and every optimum found so far are feasible; when they
   already spread the cell by ``p`` it is safe, no solve needed.
3. **Exact range**: otherwise two optimisations on the cell's linked set (the connected
   component of hidden cells and margins): integer programs (:func:`scipy.optimize.milp`)
   up to :data:`socialgradient.release.audit.INTEGER_LIMIT` cells, above that the linear
   relaxation with its bounds rounded inwards, solved by HiGHS on one model per linked set
   that only changes its objective between cells, so each solve starts from the last
   optimal basis (:class:`~socialgradient.release.lp.LinearModel`, the LP engine that the
   check across releases uses too).

Then, in rounds until no hidden cell is pinned: a pinned cell whose margins' *totals* (all
their cells hidden) already leave it less than ``p`` is bounded by what is published
elsewhere and is reported, not fixable here; every other pinned cell gets one more hidden
cell: the smallest positive visible cell of its tightest margin (zeros last), else of a
margin one step away; a margin gets at most one new hidden cell per round. Hiding a cell only
removes a constraint, so a cell once shown safe stays safe and only pinned and newly hidden
cells are judged again. A pinned cell with no candidate left is reported too.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from socialgradient.release import audit
from socialgradient.release.lp import LinearModel

_EPS = 1e-6
WAIT = "wait"  # a pinned cell to judge again next round


def incidence(lines: list[np.ndarray], n: int) -> sparse.csr_array:
    """Return the margins as a 0/1 matrix: one row per line, one column per cell."""
    rows = np.repeat(np.arange(len(lines)), [len(ln) for ln in lines])
    flat = np.concatenate(lines) if lines else np.zeros(0, int)
    return sparse.csr_array((np.ones(len(flat)), (rows, flat)), shape=(len(lines), n))


def width(lo: float, hi: float, integer: bool) -> float:
    """Return the range's width, rounded inwards to whole values for integer cells."""
    if integer:
        lo, hi = np.ceil(lo - _EPS), np.floor(hi + _EPS)
    return hi - lo


def complete(
    values, suppressed, lines, protection: float, integer: bool, label=str
) -> tuple[list[int], list[str], audit.Stats]:
    """Hide cells until no hidden cell is pinned.

    Hide cells (``suppressed``, a boolean array, changed in place) until no hidden cell is
    pinned (module docstring). Returns the cells hidden, the actions and what the check
    did.
    """
    stats = audit.Stats()
    values = np.asarray(values, dtype=float)
    if protection <= 0 or not lines or not suppressed.any():
        return [], [], stats
    t0 = time.perf_counter()
    lmat = incidence(lines, len(values))
    lines_of = lmat.T.tocsr()  # per cell, the lines holding it
    totals = lmat @ values
    safe = np.zeros(len(values), bool)  # shown safe: stays safe when more is hidden
    done = np.zeros(len(values), bool)  # reported as bounded elsewhere, or out of candidates
    checked = np.zeros(len(values), bool)
    added: list[int] = []
    actions: list[str] = []
    beyond = 0
    everything: dict[int, tuple] = {}  # every cell hidden, per linked set: made when needed
    cell_set, line_set = audit.components(lmat)

    def bounded_elsewhere(cell: int) -> bool:
        """Return whether the cell is pinned even with every cell hidden (totals alone)."""
        own = lines_of[[cell]].indices
        if (totals[own] < protection - 1e-9).any():
            return True
        c = cell_set[cell]
        if c not in everything:
            cells, rows = np.flatnonzero(cell_set == c), np.flatnonzero(line_set == c)
            everything[c] = (
                cells,
                _LinearRanges(lmat[rows][:, cells], totals[rows], values[cells], stats),
            )
        cells, ranges = everything[c]
        ((lo, hi),) = ranges([np.searchsorted(cells, cell)], protection, integer)
        return width(lo, hi, integer) < protection - 1e-9

    while True:
        todo = np.flatnonzero(suppressed & ~safe & ~done)
        if not len(todo):
            break
        checked[todo] = True
        pinned, residual = _judge(
            lmat, totals, values, suppressed, todo, protection, integer, stats
        )
        safe[np.setdiff1d(todo, list(pinned))] = True
        used: set[int] = set()  # lines given a new hidden cell this round
        for cell in sorted(pinned):
            stats.pinned += 1
            own = lines_of[[cell]].indices
            if bounded_elsewhere(cell):
                done[cell] = True
                beyond += 1
                actions.append(
                    f"warning: {label(cell)} is bounded to less than {protection} "
                    "by what was published elsewhere or before"
                )
                continue
            choice = _candidate(cell, own, lmat, lines_of, values, suppressed, residual, used)
            if choice == WAIT:  # judged again after this round's hiding
                continue
            if choice is None:
                done[cell] = True
                beyond += 1
                actions.append(
                    f"warning: {label(cell)} is bounded to less than "
                    f"{protection} and no cell is left to hide beside it"
                )
                continue
            cand, line = choice
            suppressed[cand] = True
            used.add(line)
            added.append(cand)
            actions.append(f"secondary: {label(cand)} ({label(cell)} was recoverable)")
    if beyond:
        actions.append(
            f"note: {beyond} hidden quantities are bounded to less than "
            f"{protection} by totals published elsewhere or before (not by this "
            "release)"
        )
    stats.quantities = int(checked.sum())
    stats.seconds = time.perf_counter() - t0
    return added, actions, stats


def _candidate(cell, own, lmat, lines_of, values, suppressed, residual, used):
    """Return the next cell to hide for a pinned ``cell``, and its margin.

    The next cell to hide for a pinned ``cell``: the smallest positive visible cell
    (zeros last) of its margins, tightest (smallest residual) first, else of the margins
    one step away; with the margin it is taken from. :data:`WAIT`: the margins that have
    one were given a hidden cell this round; None: none left.
    """
    near = own[np.argsort(residual[own], kind="stable")]
    ring = np.setdiff1d(np.unique(lines_of[lmat[near].indices].indices), near)
    for group in (near, ring[np.argsort(residual[ring], kind="stable")]):
        for line in group.tolist():
            if line in used:
                continue
            cells = lmat[[line]].indices
            free = cells[~suppressed[cells]]
            if len(free):
                order = np.lexsort((free, values[free], values[free] <= 0))
                return int(free[order[0]]), line
        if any(line in used for line in group.tolist()):
            return WAIT
    return None


def _judge(lmat, totals, values, suppressed, todo, protection, integer, stats):
    """Return the hidden cells of ``todo`` that are pinned, and every line's residual."""
    hidden = np.flatnonzero(suppressed)
    residual = totals - lmat @ np.where(suppressed, 0.0, values)
    b = lmat[:, hidden].tocsr()
    keep = np.flatnonzero(np.diff(b.indptr) > 0)
    b, rhs = b[keep], residual[keep]
    nv = len(hidden)
    pos = np.full(len(values), -1)
    pos[hidden] = np.arange(nv)
    coo = b.tocoo()
    ceiling = np.full(nv, np.inf)  # a cell in no margin is unbounded: safe
    np.minimum.at(ceiling, coo.col, rhs[coo.row])
    var_comp, row_comp = audit.components(b)
    pinned: set[int] = set()
    local_todo = pos[todo]
    quick = ceiling[local_todo] < protection - 1e-9
    pinned.update(todo[quick].tolist())
    rest = local_todo[~quick & np.isfinite(ceiling[local_todo])]
    for c in np.unique(var_comp[rest]):
        vars_ = np.flatnonzero(var_comp == c)
        rows = np.flatnonzero(row_comp == c)
        stats.largest = max(stats.largest, len(vars_))
        local = np.searchsorted(vars_, rest[var_comp[rest] == c])
        sub = b[rows][:, vars_]
        ranges = (_milp_ranges if integer and len(vars_) <= audit.INTEGER_LIMIT else _lp_ranges)(
            sub, rhs[rows], values[hidden[vars_]], local, protection, integer, stats
        )
        for j, (lo, hi) in zip(local.tolist(), ranges, strict=True):
            if width(lo, hi, integer) < protection - 1e-9:
                pinned.add(int(hidden[vars_[j]]))
    return pinned, residual


class _LinearRanges:
    """Cells' ranges in the linear relaxation, each solve warm-started.

    Cells' ranges in the linear relaxation of ``b x = rhs, x >= 0`` (HiGHS: one model,
    only the objective changes between cells, so each solve starts from the last optimal
    basis), or the known points' spread where that already reaches ``protection``.
    """

    def __init__(self, b, rhs, truth, stats):
        self.model = LinearModel(b, rhs, rhs)
        self.seen_lo, self.seen_hi = truth.astype(float), truth.astype(float)
        self.stats = stats

    def __call__(self, cells, protection, integer) -> list[tuple[float, float]]:
        out = []
        unit = np.zeros(len(self.seen_lo))
        for j in np.asarray(cells).tolist():
            if width(self.seen_lo[j], self.seen_hi[j], integer) >= protection - 1e-9:
                out.append((self.seen_lo[j], self.seen_hi[j]))
                continue
            unit[j] = 1.0
            ends = []
            for maximise in (False, True):
                value, x, _ = self.model.optimum(unit, maximise)
                self.stats.solves += 1
                np.minimum(self.seen_lo, x, out=self.seen_lo)
                np.maximum(self.seen_hi, x, out=self.seen_hi)
                ends.append(value)
            unit[j] = 0.0
            out.append((ends[0], ends[1]))
        return out


def _lp_ranges(b, rhs, truth, cells, protection, integer, stats) -> list[tuple[float, float]]:
    return _LinearRanges(b, rhs, truth, stats)(cells, protection, integer)


def _milp_ranges(b, rhs, truth, cells, protection, integer, stats) -> list[tuple[float, float]]:
    """Return each cell's range by integer programs.

    Each cell's range as integer programs (small linked sets), or the known integer
    points' spread where that already reaches ``protection``.
    """
    cons = LinearConstraint(sparse.csr_array(b), rhs, rhs)
    n = b.shape[1]
    seen_lo, seen_hi = truth.astype(float), truth.astype(float)
    out = []
    for j in cells.tolist():
        if width(seen_lo[j], seen_hi[j], integer) >= protection - 1e-9:
            out.append((seen_lo[j], seen_hi[j]))
            continue
        c = np.zeros(n)
        ends = []
        for sign in (1.0, -1.0):
            c[j] = sign
            res = milp(c, constraints=cons, bounds=Bounds(0, audit.BIG), integrality=np.ones(n))
            stats.solves += 1
            if res.status != 0 or res.x is None:
                raise RuntimeError(
                    f"the protection check's program failed ({res.message}); the release is refused"
                )
            np.minimum(seen_lo, res.x, out=seen_lo)
            np.maximum(seen_hi, res.x, out=seen_hi)
            ends.append(sign * res.fun)
        out.append((ends[0], ends[1]))
    return out
