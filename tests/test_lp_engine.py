"""One LP engine for the secondary suppression of a table and the check across releases:
:class:`socialgradient.release.lp.LinearModel` (one HiGHS model per linked set, warm-started
between solves) gives the ranges that scipy's ``linprog`` gives, and both searches use it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.optimize import linprog

from socialgradient.release import audit, crosscheck, lp, suppression


def problem(seed: int, n_rows: int = 14, n_vars: int = 20):
    """Random 0/1 totals of a non-negative point, some exact, some within an interval."""
    rng = np.random.default_rng(seed)
    b = (rng.random((n_rows, n_vars)) < 0.3).astype(float)
    empty = np.flatnonzero(b.sum(axis=0) == 0)
    b[rng.integers(0, n_rows, len(empty)), empty] = 1.0  # every variable in some total
    truth = rng.integers(0, 30, n_vars).astype(float)
    total = b @ truth
    slack = np.where(rng.random(n_rows) < 0.5, 0.0, rng.integers(1, 5, n_rows))
    return sparse.csr_array(b), total - slack, total + slack, truth


def scipy_range(b, lo, hi, c) -> tuple[float, float]:
    a_ub = sparse.vstack([b, -b]).tocsr()
    b_ub = np.concatenate([hi, -lo])
    ends = []
    for sign in (1.0, -1.0):
        res = linprog(sign * c, A_ub=a_ub, b_ub=b_ub, bounds=(0, audit.BIG), method="highs")
        assert res.status == 0
        ends.append(sign * res.fun)
    return ends[0], ends[1]


@pytest.mark.parametrize("seed", range(6))
def test_linear_model_ranges_match_linprog_solve_after_solve(seed):
    b, lo, hi, _truth = problem(seed)
    model = lp.LinearModel(b, lo, hi, audit.BIG)
    rng = np.random.default_rng(100 + seed)
    for _ in range(12):  # objectives change, the model (and its basis) stays
        c = (rng.random(b.shape[1]) < 0.3).astype(float)
        low, x_low, _ = model.optimum(c, maximise=False)
        high, x_high, binding = model.optimum(c, maximise=True)
        want = scipy_range(b, lo, hi, c)
        np.testing.assert_allclose([low, high], want, rtol=1e-7, atol=1e-6)
        for x in (x_low, x_high):  # the points are feasible and reach the optimum
            assert (x >= -1e-7).all()
            assert (b @ x >= lo - 1e-6).all()
            assert (b @ x <= hi + 1e-6).all()
        np.testing.assert_allclose([c @ x_low, c @ x_high], [low, high], atol=1e-6)
        assert binding.shape == (b.shape[0],)


def test_linear_model_refuses_an_infeasible_program():
    b = sparse.csr_array(np.array([[1.0, 1.0], [1.0, 1.0]]))
    model = lp.LinearModel(b, [5.0, 7.0], [5.0, 7.0])
    with pytest.raises(RuntimeError, match="release is refused"):
        model.optimum(np.array([1.0, 0.0]), maximise=False)


@pytest.mark.parametrize("seed", range(4))
def test_audit_intervals_are_the_linear_programs_ranges(seed):
    b, lo, hi, truth = problem(seed, n_rows=18, n_vars=30)
    check = audit.Audit(b, lo, hi, truth, integer=False)
    rng = np.random.default_rng(seed)
    for _ in range(8):
        c = (rng.random(b.shape[1]) < 0.25).astype(float)
        if not c.any():
            continue
        np.testing.assert_allclose(
            check.interval(c), scipy_range(b, lo, hi, c), rtol=1e-7, atol=1e-6
        )


def test_the_check_across_releases_and_the_suppression_search_use_one_engine(monkeypatch):
    calls: list[str] = []
    optimum = lp.LinearModel.optimum

    def spy(self, c, maximise):
        calls.append("max" if maximise else "min")
        return optimum(self, c, maximise)

    monkeypatch.setattr(lp.LinearModel, "optimum", spy)
    # the ledger's check: one LA total of 3 hidden, pinned by the national total
    units = np.array([f"E0100000{i}" for i in range(6)])
    values = np.array([[12.0], [15.0], [3.0], [20.0], [11.0], [14.0]])
    la = np.array([0, 0, 1, 1, 2, 2])
    pub = crosscheck.Publication(
        "t",
        units,
        ["n"],
        values,
        {"la": (la, np.array(["A", "B", "C"])), "total": (np.zeros(6, int), np.array(["all"]))},
        {"la": np.array([[False], [True], [False]])},
        threshold=10,
    )
    out = crosscheck.check(pub, [], protection=5)
    assert out.hidden  # a second total hidden
    assert calls, "the check across releases did not use the LP engine"
    # the suppression of one table (magnitudes: the linear relaxation)
    calls.clear()
    grid = np.array([[4.5, 20.0, 30.0], [25.0, 22.0, 41.0], [33.0, 27.0, 19.0]])
    lines = [np.arange(3) + 3 * r for r in range(3)] + [np.arange(0, 9, 3) + c for c in range(3)]
    hidden = np.zeros(9, bool)
    hidden[0] = True
    suppression.complete(grid.ravel(), hidden, lines, 5, integer=False)
    assert hidden.sum() >= 4  # a hidden cell needs a rectangle of hidden cells
    assert calls, "the suppression search did not use the LP engine"
