"""The red team's attacks on disclosure control across releases (issue 27), each tried as an
attacker would and asserted to fail; fake fits and small tables. Every module of the tests
has its own release ledger (conftest), so the releases of one test see each other.

1. re-releasing a fit with ``report --round-to 2`` and ``--round-to 8`` gave back the
   suppressed 9 and its complement 11;
2. two fits of tables one LSOA apart gave that LSOA's count and, through ``children`` and
   ``n_lsoa`` per LA, which LSOA it was;
3. two ``census aggregate --by age_band`` runs one child apart gave the child's age band,
   steps of care and episode length;
4. ``release/summary.json``'s unsalted ``data_hash`` confirmed a guessed table;
5. above 400 linked hidden cells the exact check was skipped (a hidden 7 recovered from
   the margins) and the public log cut the note saying so.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from fakes import fake_table
from socialgradient import cli
from socialgradient.model.data import NeighbourhoodData
from socialgradient.release import disclosure, ledger, perturbation, report, table_sets
from socialgradient.release.disclosure import DisclosureError, Rule, write_table
from socialgradient.sampling import fit
from test_release import fit_like, pinned, published_constraints, tiny_table

# Attack 5's table is the one bench/disclosure.py times: one definition, there.
_BENCH = importlib.util.spec_from_file_location(
    "bench_disclosure", Path(__file__).resolve().parents[1] / "bench" / "disclosure.py"
)
bench_disclosure = importlib.util.module_from_spec(_BENCH)
_BENCH.loader.exec_module(bench_disclosure)
bridge_table = bench_disclosure.bridge_table

PROTECTION = Rule().protection
EXACT = Rule(perturb=False, reason="the check itself, without perturbation")


def las_of(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "release" / "la_gradients.csv").set_index("la")


def reader(outs, tables, units, exact: bool):
    """Everything the releases ``outs`` (of ``tables``) tell a reader, as constraints on the
    counts of ``units`` (LSOA codes); ``exact``: read as if unperturbed."""
    rows, lo, hi, hidden = [], [], [], []
    for out, table in zip(outs, tables, strict=True):
        r, a, b, h = published_constraints(out, table, exact)
        place = pd.Index(units).get_indexer(table["lsoa"])
        grow = np.zeros((len(r), len(units)))
        grow[:, place] = r
        rows.append(grow)
        lo.append(a)
        hi.append(b)
        for name, row, true in h:
            full = np.zeros(len(units))
            full[place] = row
            hidden.append((name, full, true))
    return np.vstack(rows), np.concatenate(lo), np.concatenate(hi), hidden


# -- 1. re-rounding a release ------------------------------------------------------------------


def nine_and_eleven() -> pd.DataFrame:
    """Five LAs of six LSOAs: LA totals 9, 11 and about 50; every decile mixes three LAs."""
    t = fake_table(5, 6, seed=3)
    t["referrals"] = np.concatenate(
        [[2, 1, 2, 1, 2, 1], [2, 2, 2, 2, 2, 1]] + [[8, 9, 7, 10, 8, 9]] * 3
    )
    la, i = np.repeat(np.arange(5), 6), np.tile(np.arange(6), 5)
    t["income"] = 0.05 + 0.01 * (i * 5 + la)
    return t


def test_rerounding_a_release_gives_back_nothing(tmp_path):
    table = nine_and_eleven()
    nine, eleven = sorted(table["la"].unique())[:2]
    report.write(fit_like(table), tmp_path / "fit")
    outs = [tmp_path / "fit"]
    for r in ("2", "8"):  # the red team's re-releases, no override needed
        out = tmp_path / f"r{r}"
        assert cli.main(["report", str(tmp_path / "fit"), "--out", str(out), "--round-to", r]) == 0
        outs.append(out)
    first = las_of(outs[0])
    # the clean behaviour: the default release hides the 9 and its complement, the 11
    assert first["cases"].isna().sum() == 2
    assert first.loc[[nine, eleven], "cases"].isna().all()
    # each re-release hides the same totals again (the ledger: hidden before, hidden again)
    for out in outs[1:]:
        assert las_of(out).loc[[nine, eleven], "cases"].isna().all()
        log = [
            json.loads(x)
            for x in (out / "release" / "disclosure_log.jsonl").read_text().splitlines()
        ]
        assert log[0]["check"]["earlier_publications"] >= 1
    # all three releases together, read as published (noise within D, rounding intervals)
    # and even as if unperturbed: neither the 9 nor the 11 is narrowed below the protection
    for exact in (False, True):
        rows, lo, hi, hidden = reader(outs, [table] * 3, table["lsoa"], exact)
        assert {name for name, _, _ in hidden} >= {f"la {nine}", f"la {eleven}"}
        for name, target, true in hidden:
            low, high = pinned(rows, lo, hi, target)
            assert low - 1e-6 <= true <= high + 1e-6
            assert high - low >= PROTECTION - 1e-6, (exact, name, low, high)


# -- 2. two fits one LSOA apart -----------------------------------------------------------------


def test_two_fits_one_lsoa_apart_do_not_give_it_away(tmp_path):
    table = fake_table(5, 6, seed=4)
    table["referrals"] = np.random.default_rng(4).integers(5, 16, len(table))
    x = 2  # an LSOA of the first LA
    fewer = table.drop(index=x).reset_index(drop=True)
    report.write(fit_like(table), tmp_path / "one")
    report.write(fit_like(fewer), tmp_path / "two")
    outs = [tmp_path / "one", tmp_path / "two"]
    # its count: the two releases together leave it a range at least the protection level
    # wide, read as published and even as if unperturbed (the second release hid more)
    target = (table.index == x).astype(float)
    for exact in (False, True):
        rows, lo, hi, hidden = reader(outs, [table, fewer], table["lsoa"], exact)
        low, high = pinned(rows, lo, hi, target)
        assert low - 1e-6 <= table.loc[x, "referrals"] <= high + 1e-6
        assert high - low >= PROTECTION - 1e-6, (exact, low, high)
        for name, row, _ in hidden:  # (unless the other release shows the same total)
            low, high = pinned(rows, lo, hi, row)
            shown_there = any(np.array_equal(row, r) for r in rows)
            assert high - low >= PROTECTION - 1e-6 or shown_there, (exact, name, low, high)
    la = table.loc[x, "la"]
    one, two = las_of(outs[0]), las_of(outs[1])
    assert two.loc[la, "cases"] is pd.NA or pd.isna(two.loc[la, "cases"])
    # which LSOA: the published children differ by the LSOA's children plus noise (the
    # measure over many secrets is the test below); n_lsoa is perturbed
    mine = table[table["la"] == la]
    diff = one.loc[la, "children"] - two.loc[la, "children"]
    assert diff != table.loc[x, "children"]
    assert len(mine) > 1
    for out, t in ((outs[0], table), (outs[1], fewer)):
        true = t.groupby("la")["lsoa"].nunique()
        shown = las_of(out)["n_lsoa"]
        assert (np.abs(shown - true.reindex(shown.index)) <= perturbation.MAX_NOISE).all()
    assert (one["children"] != table.groupby("la")["children"].sum()).any()


def test_children_of_two_fits_one_lsoa_apart_never_single_it_out():
    """Over 1,000 ledger secrets, each LSOA of an LA dropped in turn: an attacker who knows
    the noise law (Laplace, scale SPREAD x the largest LSOA) and every LSOA's children
    weighs each LSOA by the likelihood of the published difference. No LSOA is ever ruled
    out, no posterior exceeds the bound the scale guarantees, and the best guess is right
    little more often than chance."""
    children = np.array([120.0, 180.0, 240.0, 300.0, 360.0, 420.0])  # spread out: hardest
    lsoa = np.array([f"E0100000{i}" for i in range(6)])
    b = report.SPREAD * children.max()

    def published(keys, keep):
        return report.perturbed_sums(
            lsoa[keep], lsoa[keep], children[keep], np.zeros(keep.sum(), int), 1, keys, "children"
        )[0]

    def density(z):  # the difference of two independent Laplace(b) draws
        return (1 + np.abs(z) / b) * np.exp(-np.abs(z) / b) / (4 * b)

    bound = np.exp(np.ptp(children) / b)  # the largest likelihood ratio of two LSOAs
    right, draws = 0, 0
    for i in range(1000):
        keys = perturbation.CellKeys(i.to_bytes(4, "little") * 8)
        one = published(keys, np.ones(6, bool))
        for x in range(6):
            diff = one - published(keys, np.arange(6) != x)
            like = density(diff - children)
            assert (like > 0).all()  # nothing ruled out
            post = like / like.sum()
            assert post.max() <= bound / (bound + 5) + 1e-12
            right += int(np.argmax(post) == x)
            draws += 1
    assert right / draws < 0.3, right / draws  # chance: 1/6


# -- 3. two aggregates one child apart -----------------------------------------------------------

COUNTS = ["referrals", "assessments", "ends_closed_0_30", "days_closed_0_30"]
CHILD = {"referrals": 1, "assessments": 1, "ends_closed_0_30": 1, "days_closed_0_30": 29.5}


def by_age_band() -> pd.DataFrame:
    """An LSOA x age band table as ``census aggregate --by age_band`` writes it."""
    rng = np.random.default_rng(7)
    rows = [
        {
            "lsoa": f"E01{la}{i:05d}",
            "la": f"E0600000{la + 1}",
            "income": 0.1,
            "rural": False,
            "age_band": band,
            "children": 100,
            "referrals": int(rng.integers(3, 12)),
            "assessments": int(rng.integers(2, 9)),
            "ends_closed_0_30": int(rng.integers(1, 6)),
            "days_closed_0_30": float(rng.integers(20, 200)) + 0.5,
        }
        for la in range(3)
        for i in range(5)
        for band in ("0-4", "5-9", "10-15")
    ]
    return pd.DataFrame(rows)


def one_child_more(table: pd.DataFrame, row: int = 7) -> pd.DataFrame:
    out = table.copy()
    for column, step in CHILD.items():
        out.loc[row, column] += step
    return out


def aggregate(out, table, **kwargs):
    return table_sets.write_table_set(
        out,
        table,
        counts=COUNTS,
        report={},
        command="census aggregate",
        strata=["age_band"],
        **kwargs,
    )


def test_a_one_child_revision_is_refused(tmp_path):
    table = by_age_band()
    aggregate(tmp_path / "one", table)
    with pytest.raises(DisclosureError, match="revises the data of an earlier release"):
        aggregate(tmp_path / "two", one_child_more(table))
    assert not (tmp_path / "two" / "MANIFEST.json").exists()
    assert not (tmp_path / "two" / "release").exists()
    # the same data again, or a year's worth of change, is published
    aggregate(tmp_path / "again", table)
    other = table.copy()
    other[COUNTS[:3]] += 5
    aggregate(tmp_path / "next_year", other)


def test_without_the_ledger_a_one_child_revision_shows_no_exact_contribution(tmp_path):
    """Worst case: the second release checked against another ledger with the same secret
    (so the unchanged cells keep their noise): the changed cells' differences are the
    child's contribution plus noise, never the contribution itself."""
    first, second = ledger.Ledger(tmp_path / "a"), ledger.Ledger(tmp_path / "b")
    assert first.secret  # created on first use
    (tmp_path / "b").mkdir()
    shutil.copy(first.path / ledger.SECRET, second.path / ledger.SECRET)
    assert second.secret == first.secret
    table = by_age_band()
    changed = one_child_more(table)
    aggregate(tmp_path / "one", table, ledger=first)
    aggregate(tmp_path / "two", changed, ledger=second)
    one = pd.read_csv(tmp_path / "one" / "release" / "counts_by_la.csv")
    two = pd.read_csv(tmp_path / "two" / "release" / "counts_by_la.csv")
    cell = (one["la"] == table.loc[7, "la"]) & (one["age_band"] == table.loc[7, "age_band"])
    diff = (two.loc[cell, COUNTS].to_numpy() - one.loc[cell, COUNTS].to_numpy()).ravel()
    d = perturbation.MAX_NOISE
    for column, got in zip(COUNTS[:3], diff[:3], strict=True):
        # a reader's range for the true difference holds both "no child" and "one child"
        assert abs(got) <= 2 * d, column
        assert abs(got - CHILD[column]) <= 2 * d, column
    assert abs(diff[3] - CHILD["days_closed_0_30"]) > 1  # not the episode's length


# -- 4. an unsalted hash of the data in release/ ------------------------------------------------


def test_release_holds_no_hash_a_guessed_table_could_be_checked_against(tmp_path):
    table = tiny_table(1)
    tree = fit_like(table)
    report.write(tree, tmp_path / "fit")
    blobs = b"".join(
        p.read_bytes() for p in (tmp_path / "fit" / "release").rglob("*") if p.is_file()
    )
    truth = fit.data_hash(NeighbourhoodData.from_table(table, "referrals"))
    assert truth == tree.attrs["data_hash"]
    guesses = {truth}
    for i in range(4):  # the attack: guess a hidden LSOA count, hash, look for a match
        for value in range(0, 10):
            guess = table.copy()
            guess.loc[i, "referrals"] = value
            digest = fit.data_hash(NeighbourhoodData.from_table(guess, "referrals"))
            guesses |= {digest, table_sets.table_hash(guess)}
    assert not [g for g in guesses if g.encode() in blobs]
    s = json.loads((tmp_path / "fit" / "release" / "summary.json").read_text())
    assert "data_hash" not in s["model"]
    keyed = s["model"]["data_id"]
    assert keyed == ledger.Ledger().data_id(truth)  # the ledger's key, kept beside it
    assert keyed != ledger.Ledger(tmp_path / "other").data_id(truth)


# -- 5. the exact check at every size ----------------------------------------------------------


@pytest.mark.parametrize("rule", [EXACT, Rule()], ids=["unperturbed", "default"])
def test_bridge_beyond_400_linked_hidden_cells_is_protected(tmp_path, rule):
    frame = bridge_table()
    columns = [c for c in frame.columns if c != "r"]
    v = frame[columns].to_numpy()
    write_table(
        frame, tmp_path / "t.csv", level="la", count_columns=columns, group_columns="r", rule=rule
    )
    shown = pd.read_csv(tmp_path / "t.csv")[columns].to_numpy(dtype=float)
    hidden = np.isnan(shown)
    assert hidden.sum() > 451
    # the attack: row, column and grand totals (published elsewhere, exact) and the visible
    # cells (read as exact even when perturbed) against the hidden 7
    n = v.shape[0]
    idx = np.flatnonzero(hidden.ravel())
    a, b = [], []
    for line in [np.arange(n) * n + j for j in range(n)] + [np.arange(n) + i * n for i in range(n)]:
        row = np.isin(idx, line).astype(float)
        if row.any():
            a.append(row)
            b.append(v.ravel()[line].sum() - v.ravel()[line][~hidden.ravel()[line]].sum())
    target = (idx == 14 * n + 15).astype(float)
    low = linprog(target, A_eq=np.array(a), b_eq=b, bounds=(0, None), method="highs")
    high = linprog(-target, A_eq=np.array(a), b_eq=b, bounds=(0, None), method="highs")
    assert low.fun <= 7 <= -high.fun
    assert -high.fun - low.fun >= PROTECTION
    # the public log: the check ran on every hidden cell, and nothing is cut
    entry = json.loads((tmp_path / disclosure.LOG_NAME).read_text().splitlines()[-1])
    assert entry["check"]["quantities_checked"] >= hidden.sum()
    assert entry["check"]["largest_linked_set"] > 400
    assert "no size limit" in entry["check"]["method"]
    assert len([x for x in entry["actions"] if x.startswith("hidden: ")]) == hidden.sum()
    assert not any("single totals only" in x for x in entry["actions"])
