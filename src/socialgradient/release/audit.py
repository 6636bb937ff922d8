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
constraint, so a quantity found safe stays safe (:func:`secure` relies on it, and does not
check the same quantity again). Rows of the same coefficients (a total published by several
releases or tables) are one constraint with the tightest of their bounds: the region, hence
every range, is the same, and N releases of the same tables cost what one costs.

The pieces: :mod:`socialgradient.release.lp` (the programs, linked sets, the public
statistics), :mod:`socialgradient.release.ranges` (:class:`Audit`: the region and each
quantity's range) and, here, the search that hides constraint rows until nothing is pinned
(:func:`secure`). The names of the first two stay importable from this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from socialgradient.release.lp import (  # noqa: F401 (importable from here, as before)
    BIG,
    INTEGER_LIMIT,
    LinearModel,
    Stats,
    _dense,
    components,
    row_key,
    width,
)
from socialgradient.release.ranges import EXPLORE, POOL, Audit  # noqa: F401 (as before)


@dataclass
class Target:
    """A hidden quantity to keep unpinned.

    ``label`` names it in messages, ``row`` is its row over the variables, and ``own`` the
    constraint row whose hiding it is (None for an atom).
    """

    label: str
    row: object
    own: int | None = None
    counted: bool = False


class _Ceilings:
    """The least upper bound on a target that one permanent row gives.

    The least upper bound that one permanent (never hidden) active row holding all of a
    target's variables gives it: a quick proof that it is bounded whatever is hidden.
    """

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
    """Hide constraint rows until no target is pinned.

    Hide constraint rows (``candidates(target)``: rows that may still be hidden, best
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
        """Return whether the permanent rows alone bound it below the protection level."""
        if permanent is None or ceilings is None:
            return False
        if ceilings(t.row) < protection:
            return True
        if not base:
            base.append(Audit(audit.a, audit.lo, audit.hi, audit.truth, audit.integer))
            base[0]._same_rows = audit._same_rows  # the same rows: the same labels
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

    def beyond_reach(t: Target, options: list[int], bound: set[int]) -> bool:
        """Return whether a pinned target is bounded by what this release cannot hide."""
        # bounds proved by permanent rows alone (LP duality) hold whatever is hidden
        proved = permanent is not None and bool(bound) and all(permanent[r] for r in bound)
        return not options or proved or unfixable(t) or (baseline is not None and baseline(t))

    safe: set[bytes] = set()  # quantities shown unpinned: hiding more keeps them so
    warned: dict[tuple[bytes, str], int] = {}  # pinned beyond reach, at that version
    keys: dict[int, bytes] = {}  # a key per row object (the copies of a total share one)
    while queue:
        t = queue.pop(0)
        if not t.counted:
            t.counted = True
            audit.stats.quantities += 1
        if id(t.row) not in keys:  # the targets are alive: their ids stay theirs
            keys[id(t.row)] = row_key(t.row)
        key = keys[id(t.row)]
        if key in safe:  # the same quantity again (the same total of another release)
            continue
        again = warned.get((key, t.label)) == audit.version  # nothing hidden since: the same
        if not again and not pinned(t):
            safe.add(key)
            continue
        audit.stats.pinned += 1
        if not again:
            options = [c for c in candidates(t) if audit.active[c]]
            bound = set(audit.binding(t.row).tolist())  # the totals that do the pinning
        if again or beyond_reach(t, options, bound):
            warned[(key, t.label)] = audit.version
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
