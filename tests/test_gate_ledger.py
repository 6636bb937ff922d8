"""The disclosure gate does not slow down as the release ledger grows (issue 32).

A total published by several releases is one constraint of the protection check (the
tightest of its bounds), identical earlier publications enter the cross-release check once
and a release of tables already in the ledger is not read again: the answers (ranges,
hidden totals, actions) are those of the check with every copy put in.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy import sparse

from socialgradient.release import audit, crosscheck
from socialgradient.release import ledger as ledgers

PROTECTION = 5


def region(seed: int, n: int = 14, m: int = 12):
    """A small region ``lo <= A x <= hi``: 0/1 rows, exact totals or rounding intervals."""
    rng = np.random.default_rng(seed)
    a = (rng.random((m, n)) < 0.35).astype(float)
    a[np.arange(m), rng.integers(0, n, m)] = 1.0  # no empty row
    truth = rng.poisson(4, n).astype(float)
    true = a @ truth
    r = 3.0 * (rng.random(m) < 0.5)  # half the totals rounded to 3
    lo, hi = np.maximum(true - r, 0), true + r
    return a, lo, hi, truth


def with_copies(a, lo, hi, seed: int):
    """Each row given up to three more times, in shuffled places, some with looser bounds."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(len(a)), rng.integers(1, 5, len(a)))
    rows = rows[rng.permutation(len(rows))]
    slack = rng.integers(0, 3, (2, len(rows))) * (rng.random(len(rows)) < 0.5)
    return a[rows], np.maximum(lo[rows] - slack[0], 0), hi[rows] + slack[1], rows


def merged(a, lo, hi, active):
    """The region with each set of equal active rows written once (tightest bounds): by hand."""
    out: dict[bytes, list] = {}
    for i in np.flatnonzero(active):
        row = out.setdefault(a[i].tobytes(), [a[i], -np.inf, np.inf])
        row[1], row[2] = max(row[1], lo[i]), min(row[2], hi[i])
    rows = list(out.values())
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), [r[2] for r in rows]


def targets(n: int, a):
    """Every variable, every row's total and a few sums of two variables."""
    eye = list(np.eye(n))
    pairs = [np.eye(n)[i] + np.eye(n)[(i + 3) % n] for i in range(0, n, 4)]
    return eye + list(a) + pairs


@pytest.mark.parametrize("integer", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_copied_rows_give_the_ranges_of_the_rows_written_once(seed, integer):
    a, lo, hi, truth = region(seed)
    a2, lo2, hi2, _ = with_copies(a, lo, hi, seed + 10)
    dup = audit.Audit(sparse.csr_array(a2), lo2, hi2, truth, integer=integer)
    assert len(set(dup._same().tolist())) == len(a)  # the copies are found, nothing more
    hide = np.random.default_rng(seed).random(len(a2)) < 0.2  # some copies hidden
    dup.set_active(np.flatnonzero(hide), False)
    ma, mlo, mhi = merged(a2, lo2, hi2, ~hide)
    once = audit.Audit(sparse.csr_array(ma), mlo, mhi, truth, integer=integer)
    assert once._prepare()["b"].shape[0] <= len(a) < len(a2)
    assert dup._prepare()["b"].shape[0] == once._prepare()["b"].shape[0]
    for t in targets(len(truth), a):
        assert dup.interval(t) == pytest.approx(once.interval(t), abs=1e-6)
        top, row = dup.ceiling(t)  # the first active row holding the target's variables
        on = np.flatnonzero(t)
        fixed = dup._prepare()["fixed"]
        if len(on) and np.isnan(fixed[on]).all() and np.isfinite(top):
            holds = [
                i
                for i in np.flatnonzero(~hide)
                if a2[i, on].all() and not (a2[i].sum() == 1 and lo2[i] == hi2[i])
            ]
            best = min(hi2[i] - a2[i] @ np.nan_to_num(fixed) for i in holds)
            assert top == pytest.approx(best)
            assert row == min(i for i in holds if hi2[i] - a2[i] @ np.nan_to_num(fixed) == best)
    # the totals that bound a quantity name a copy that gives the bound
    for t in targets(len(truth), a)[: len(truth)]:
        for r in dup.binding(t):
            assert not hide[r]


def publication(name, units, values, parts, threshold=10, round_to=None):
    """A publication whose totals below the threshold are hidden."""
    hidden = {}
    for k, (codes, labels) in parts.items():
        total = np.bincount(codes, weights=values, minlength=len(labels))
        hidden[k] = ((total < (threshold or 0)) & (total > 0))[:, None]
    return crosscheck.Publication(
        name,
        units,
        ["m"],
        values[:, None],
        parts,
        hidden,
        round_to=round_to,
        threshold=threshold,
    )


def partitions(rng, n: int, groups: int):
    """Group, band (group x one of three) and total partitions of ``n`` units."""
    g, band = rng.integers(0, groups, n), rng.integers(0, 3, n)

    def part(codes):
        labels, inverse = np.unique(codes, return_inverse=True)
        return inverse, labels.astype(str)

    total = (np.zeros(n, np.int64), np.array(["total"]))
    return {"g": part(g), "band": part(g * 3 + band), "total": total}


def ledger_of(seed: int):
    """A table ``a`` released three times, a table ``b`` of the units of a third of it
    (released twice, with no threshold and never checked against ``a``: together they pin
    some of ``a``'s hidden totals) and a new release ``new`` of other data on the same
    units."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(24, 48))
    units = np.array([f"L{i:03d}" for i in range(n)])
    a = publication("T", units, rng.poisson(3, n).astype(float), partitions(rng, n, 3))
    crosscheck.check(a, [], PROTECTION)
    some = np.flatnonzero(a.partitions["g"][0] == 0)
    each = (np.arange(len(some)), some.astype(str))
    b = publication("U", units[some], a.values[some, 0].copy(), {"unit": each}, threshold=None)
    crosscheck.check(b, [], PROTECTION)
    new = publication("T", units, rng.poisson(3, n).astype(float), partitions(rng, n, 3))
    earlier = []
    for i, p in enumerate([a, b, a, a, b]):
        e = copy.deepcopy(p)
        e.release = f"r{i}"
        earlier.append(e)
    return new, earlier


def shuffled(pub: crosscheck.Publication, seed: int) -> crosscheck.Publication:
    """The same table with its units in another order (not a copy to the check's eye)."""
    order = np.random.default_rng(seed).permutation(len(pub.units))
    parts = {k: (codes[order], labels) for k, (codes, labels) in pub.partitions.items()}
    hidden = {k: h.copy() for k, h in pub.hidden.items()}
    out = copy.copy(pub)
    out.units, out.values, out.partitions, out.hidden = (
        pub.units[order],
        pub.values[order],
        parts,
        hidden,
    )
    return out


def outcome(new, earlier):
    new = copy.deepcopy(new)
    out = crosscheck.check(new, earlier, PROTECTION)
    hidden = {k: v.tolist() for k, v in new.hidden.items()}
    return out.hidden, out.actions, out.stats.quantities, out.stats.pinned, out.compared, hidden


@pytest.mark.parametrize("seed", range(6))
def test_identical_earlier_releases_give_the_outcome_of_each_put_in(seed):
    new, earlier = ledger_of(seed)
    # the copies with their units in another order are different arrays to the check, so
    # each is put in and checked as before the copies were merged: the same table, though
    each = [earlier[0], earlier[1], *(shuffled(p, i) for i, p in enumerate(earlier[2:]))]
    assert len({crosscheck._fingerprint(p, 0) for p in each}) == len(each)
    assert len({crosscheck._fingerprint(p, 0) for p in earlier}) == 2
    assert outcome(new, earlier) == outcome(new, each)
    assert outcome(again(earlier[0]), earlier) == outcome(again(earlier[0]), each)


def again(pub: crosscheck.Publication) -> crosscheck.Publication:
    """A release of the same data as ``pub`` again, its totals below 10 hidden."""
    out = copy.deepcopy(pub)
    for k, (codes, labels) in out.partitions.items():
        total = np.bincount(codes, weights=out.values[:, 0], minlength=len(labels))
        out.hidden[k][:, 0] = (total < 10) & (total > 0)
    return out


def test_the_scenarios_reach_warnings_and_secondary_hiding():
    """The equivalence above is tested where the check warns and hides (not only where
    nothing is pinned)."""
    kinds = set()
    for seed in range(6):
        new, earlier = ledger_of(seed)
        for a in outcome(new, earlier)[1] + outcome(again(earlier[0]), earlier)[1]:
            kinds.add(a.split(":")[0] + (" copy" if "earlier release of the same" in a else ""))
    assert {"warning", "secondary", "secondary copy", "note"} <= kinds


def test_a_ledger_reads_a_release_of_the_same_tables_once(tmp_path):
    new, earlier = ledger_of(1)
    led = ledgers.Ledger(tmp_path / "ledger")
    for p in earlier:
        led.record([p], command="test")
    pubs = led.publications()
    full = [p for f in led.files() for p in ledgers._read.__wrapped__(f, 0)]
    assert [p.release for p in pubs] == [p.release for p in full]
    assert len({p.release for p in pubs}) == len(earlier)
    for p, q in zip(pubs, full, strict=True):
        assert p.content == q.content == crosscheck.content_digest(q)
        np.testing.assert_array_equal(p.units, q.units)
        np.testing.assert_array_equal(p.values, q.values)
        for k in q.partitions:
            np.testing.assert_array_equal(p.partitions[k][0], q.partitions[k][0])
            np.testing.assert_array_equal(p.hidden[k], q.hidden[k])
    # releases 0, 2, 3 share the arrays of the first read (1, 4 those of release 1)
    assert pubs[2].units is pubs[0].units
    assert pubs[3].values is pubs[0].values
    assert pubs[4].units is pubs[1].units
    assert pubs[1].units is not pubs[0].units
    assert outcome(new, pubs) == outcome(new, full)
