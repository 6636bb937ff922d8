"""The disclosure gate: primary and secondary suppression, the exact check, perturbation,
rounding, levels, log, atomicity. (The red team's attacks across releases: test_attacks.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from socialgradient.release import audit, disclosure, perturbation
from socialgradient.release.disclosure import DisclosureError, Rule, protect, write_table

#: the default rule without perturbation: tests of which cells are hidden compare values
EXACT = Rule(perturb=False, reason="tests of suppression compare exact values")


def one_d(values) -> pd.DataFrame:
    return pd.DataFrame({"r": [f"r{i}" for i in range(len(values))], "n": values})


def two_d(values: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(values, columns=[f"c{j}" for j in range(values.shape[1])])
    frame.insert(0, "r", [f"r{i}" for i in range(values.shape[0])])
    return frame


def read_log(folder: Path) -> list[dict]:
    text = (folder / disclosure.LOG_NAME).read_text()
    return [json.loads(line) for line in text.splitlines()]


def matrix(cells: np.ndarray) -> np.ndarray:
    return cells.to_numpy(dtype=float, na_value=np.nan)


# --- rule ------------------------------------------------------------------------------


def test_primary_suppression_of_small_cells_and_zeros_by_choice():
    t = one_d([3, 0, 12, 50, 9, 10])
    p = protect(t, "n", "r", Rule(secondary=False))
    assert list(p.status["n"]) == ["primary", "ok", "ok", "ok", "primary", "ok"]
    assert p.table["n"].isna().tolist() == [True, False, False, False, True, False]
    assert p.table["n"].dtype == "Int64"
    strict = protect(t, "n", "r", Rule(secondary=False, suppress_zeros=True))
    assert strict.status["n"].iloc[1] == "primary"
    assert protect(t, "n", "r", Rule(threshold=None)).count("primary") == 0


def test_secondary_hides_the_next_smallest_positive_cell_of_the_total():
    p = protect(one_d([4, 0, 30, 11, 50]), "n", "r")
    assert list(p.status["n"]) == ["primary", "ok", "ok", "secondary", "ok"]
    assert any(a.startswith("secondary: [r=r3] n") for a in p.actions)


def test_rounding_to_five():
    t = one_d([12, 13, 17, 18, 100, 3])
    p = protect(t, "n", "r", Rule(round_to=5, secondary=False, perturb=False))
    assert p.table["n"].tolist()[:5] == [10, 15, 15, 20, 100]
    assert p.table["n"].isna().tolist()[5]
    assert list(p.status["n"]) == ["rounded"] * 5 + ["primary"]
    only = protect(t, "n", "r", Rule(threshold=None, round_to=5, perturb=False))
    assert only.table["n"].tolist() == [10, 15, 15, 20, 100, 5]
    # perturbed first (by at most D), then rounded: multiples of 5 near the truth
    noisy = protect(t, "n", "r", Rule(round_to=5, secondary=False)).table["n"][:5]
    assert (noisy % 5 == 0).all()
    assert (np.abs(noisy - t["n"][:5]) <= perturbation.MAX_NOISE + 2.5).all()


def test_margins_by_group_protect_lsoas_within_their_la():
    t = pd.DataFrame(
        {"la": ["A"] * 3 + ["B"] * 3, "lsoa": list("abcdef"), "n": [5, 40, 20, 30, 25, 60]}
    )
    totals = {"by": [("la",)], "across": False}
    p = protect(t, "n", ["la", "lsoa"], totals=totals)
    assert list(p.status["n"]) == ["primary", "ok", "secondary", "ok", "ok", "ok"]


def grid_audit(values: np.ndarray, hidden: np.ndarray) -> audit.Audit:
    """Row and column totals published, visible cells known: the check's model."""
    n_r, n_c = values.shape
    cells = np.arange(n_r * n_c).reshape(n_r, n_c)
    lines = [cells[i] for i in range(n_r)] + [cells[:, j] for j in range(n_c)]
    a = np.zeros((len(lines) + n_r * n_c, n_r * n_c))
    for i, line in enumerate(lines):
        a[i, line] = 1
    a[len(lines) :] = np.eye(n_r * n_c)
    rhs = a @ values.ravel()
    check = audit.Audit(a, rhs, rhs, values.ravel().astype(float))
    check.set_active(len(lines) + np.flatnonzero(hidden.ravel()), False)
    return check


def test_bridge_between_hidden_cycles_is_found_by_the_exact_check():
    # two 2x2 blocks of hidden cells joined by one hidden cell: every row and column hides
    # >= 2 cells, yet rows 0-1 minus columns 0-1 give the joining cell (1, 2) exactly.
    hidden = np.zeros((4, 4), bool)
    hidden[:2, :2] = hidden[2:, 2:] = True
    hidden[1, 2] = True
    values = np.arange(16).reshape(4, 4) + 10
    check = grid_audit(values, hidden)
    for k in np.flatnonzero(hidden.ravel()):
        lo, hi = check.interval(np.eye(16)[k])
        assert lo <= values.ravel()[k] <= hi
        assert (hi - lo == 0) == (k == 6), k  # only the bridge is pinned
    # protect() finds it and hides one more cell, so the bridge is no longer pinned
    frame = two_d(values)
    frame.loc[1, "c2"] = 7
    p = protect(
        frame,
        [f"c{j}" for j in range(4)],
        "r",
        EXACT,
        totals={"by": [()], "across": True},
        hidden=hidden,
    )
    shown = matrix(p.table.drop(columns="r"))
    assert np.isnan(shown).sum() > hidden.sum()
    assert p.check["quantities_checked"] >= hidden.sum()


# --- the property: nothing hidden can be recovered from published totals ---------------


def published_lines(n_rows: int, n_cols: int) -> list[np.ndarray]:
    cells = np.arange(n_rows * n_cols).reshape(n_rows, n_cols)
    lines = [cells[:, j] for j in range(n_cols)] + [cells.ravel()]
    if n_cols > 1:
        lines += [cells[i] for i in range(n_rows)]
    return lines


def assert_unrecoverable(values: np.ndarray, shown: np.ndarray) -> None:
    """No hidden cell equals a published total minus visible cells, nor any combination."""
    flat, hidden = values.ravel(), np.isnan(shown.ravel())
    assert np.array_equal(shown.ravel()[~hidden], flat[~hidden])
    lines = published_lines(*values.shape)
    for line in lines:  # single subtraction: total - visible cells of the line
        hidden_here = line[hidden[line]]
        remainder = flat[line].sum() - flat[line][~hidden[line]].sum()
        assert len(hidden_here) != 1, f"cell {hidden_here} = {remainder} by subtraction"
    idx = np.flatnonzero(hidden)
    if len(idx):  # any linear combination: e_k must not lie in the row space
        a = np.array([[1.0 if c in line else 0.0 for c in idx] for line in lines])
        a = a[a.any(axis=1)]
        rank = np.linalg.matrix_rank(a)
        for k in range(len(idx)):
            e = np.zeros(len(idx))
            e[k] = 1.0
            assert np.linalg.matrix_rank(np.vstack([a, e])) > rank, f"cell {idx[k]} recoverable"


small_counts = st.integers(0, 40) | st.integers(0, 12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.int64, st.tuples(st.integers(2, 6), st.integers(2, 5)), elements=small_counts))
@example(np.array([[0, 1, 4, 0], [0, 0, 0, 0], [0, 0, 0, 0], [5, 0, 0, 0]]))  # a zero
# complement alone in its column was pinned by subtraction: totals are settled again
def test_two_d_hidden_cells_cannot_be_recovered_from_row_and_column_totals(values):
    p = protect(two_d(values), [f"c{j}" for j in range(values.shape[1])], "r", EXACT)
    status = p.status.drop(columns="r").to_numpy()
    assert np.array_equal(status == "primary", (values > 0) & (values < 10))
    assert_unrecoverable(values, matrix(p.table.drop(columns="r")))


@settings(max_examples=150, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(2, 12), st.just(1)), elements=small_counts))
def test_one_d_hidden_cells_cannot_be_recovered_from_the_total(values):
    p = protect(one_d(values[:, 0]), "n", "r", EXACT)
    assert_unrecoverable(values, matrix(p.table[["n"]]))


def test_bad_tables_give_clear_errors():
    good = one_d([1, 20])
    cases = [
        (one_d([1.0, np.nan]), "missing"),
        (one_d([1, -2]), "negative"),
        (one_d([1, np.inf]), "infinite"),
        (one_d(["1", "2"]), "not numeric"),
        (one_d([True, False]), "not numeric"),
        (pd.concat([good, good]), "not unique"),
    ]
    for table, message in cases:
        with pytest.raises(ValueError, match=message):
            protect(table, "n", "r")
    with pytest.raises(ValueError, match="not in the table"):
        protect(good, "m", "r")
    with pytest.raises(ValueError, match="positive integer"):
        Rule(threshold=0)
    with pytest.raises(ValueError, match="unknown totals"):
        protect(good, "n", "r", totals={"rows": True})


# --- the gate --------------------------------------------------------------------------


def lsoa_table() -> pd.DataFrame:
    return pd.DataFrame(
        {"la": ["A"] * 4, "lsoa": list("abcd"), "cin": [3, 25, 40, 12], "cpp": [0, 11, 15, 30]}
    )


def test_child_rows_refused_without_override_and_logged_with_it(tmp_path):
    rows = pd.DataFrame({"child": ["x1", "x2"], "lsoa": ["a", "b"]})
    with pytest.raises(DisclosureError, match="override"):
        write_table(rows, tmp_path / "children.csv", level="child")
    assert not (tmp_path / "children.csv").exists()
    assert read_log(tmp_path)[-1]["decision"] == "refused"
    with pytest.raises(ValueError, match="reason"):
        write_table(rows, tmp_path / "children.csv", level="child", override="  ")
    reason = "linkage file for the secure environment only, approved by the data owner"
    path = write_table(rows, tmp_path / "children.csv", level="child", override=reason)
    assert pd.read_csv(path).equals(rows)
    entry = read_log(tmp_path)[-1]
    assert entry["decision"] == "written"
    assert entry["override"] == reason
    assert entry["level"] == "child"
    assert reason in entry["note"]


def test_lsoa_tables_are_suppressed_and_unsuppressed_only_under_a_logged_override(tmp_path):
    out = tmp_path / "lsoa.csv"
    write_table(
        lsoa_table(), out, level="lsoa", count_columns=["cin", "cpp"], group_columns=["la", "lsoa"]
    )
    written = pd.read_csv(out)
    assert written["cin"].isna().iloc[0]
    assert written["cin"].notna().sum() < 4
    entry = read_log(tmp_path)[-1]
    assert entry["suppressed"] >= 2  # the small cell and at least one complement
    assert "primary" not in entry
    assert entry["override"] is None
    assert entry["rule"] == {
        "threshold": 10,
        "round_to": None,
        "secondary": True,
        "suppress_zeros": False,
        "perturb": True,
        "protection": 5,
        "reason": None,
    }
    hidden = [a for a in entry["actions"] if a.startswith("hidden: ")]
    assert "3" not in " ".join(hidden).replace("r3", "")  # no hidden value logged
    # the log names hidden cells, never which of them is the small one; the rest are the
    # perturbation's note and the check's (row a's total, 3, taken as published elsewhere,
    # bounds its cells to less than the protection level whatever this table hides); the
    # check that ran, the method's parameters and the ledger
    assert [a for a in entry["actions"] if a not in hidden] == [
        "note: 2 hidden quantities are bounded to less than 5 by totals published elsewhere "
        "or before (not by this release)",
        f"perturbed {8 - entry['suppressed']} counts (cell key)",
    ]
    assert entry["check"]["quantities_checked"] >= 2
    assert entry["perturbation"]["max_noise"] == perturbation.MAX_NOISE
    assert len(entry["ledger"]) == 12
    assert not any(w in json.dumps(entry["actions"]) for w in ("primary", "secondary", "below"))
    write_table(
        lsoa_table(),
        out,
        level="lsoa",
        count_columns=["cin", "cpp"],
        group_columns=["la", "lsoa"],
        override="methods check, not for release",
    )
    assert pd.read_csv(out).equals(lsoa_table())
    assert read_log(tmp_path)[-1]["override"] == "methods check, not for release"
    with pytest.raises(ValueError, match="count columns"):
        write_table(lsoa_table(), out, level="lsoa")


def test_la_counts_protected_with_rounding(tmp_path):
    t = pd.DataFrame({"la": list("ABCD"), "year": 2020, "referrals": [4, 123, 88, 47]})
    for rule in (
        Rule(round_to=5, perturb=False, reason="exact values for this test"),
        Rule(round_to=5),
    ):
        write_table(
            t,
            tmp_path / "la.csv",
            level="la",
            count_columns="referrals",
            group_columns=["la", "year"],
            rule=rule,
        )
        written = pd.read_csv(tmp_path / "la.csv")
        assert written["referrals"].isna().tolist() == [True, False, False, True]
        visible = written["referrals"].dropna()
        assert (visible % 5 == 0).all()
        if not rule.perturb:
            assert visible.tolist() == [125, 90]
        assert (np.abs(visible.to_numpy() - [123, 88]) <= perturbation.MAX_NOISE + 2.5).all()
        assert read_log(tmp_path)[-1]["rounded"] == 2


def test_model_outputs_pass_unchanged_and_the_log_says_so(tmp_path):
    t = pd.DataFrame({"la": ["A", "B"], "n_lsoa": [3, 140], "gradient_median": [1.2, 1.31]})
    write_table(t, tmp_path / "la_gradients.csv", level="model")
    assert pd.read_csv(tmp_path / "la_gradients.csv").equals(t)
    entry = read_log(tmp_path)[-1]
    assert entry["note"] == disclosure.MODEL_NOTE
    assert entry["suppressed"] == 0
    with pytest.raises(ValueError, match="level"):
        write_table(t, tmp_path / "x.csv", level="lad")


def test_failed_write_leaves_no_partial_file_and_no_log_entry(tmp_path, monkeypatch):
    out = tmp_path / "lsoa.csv"
    write_table(lsoa_table(), out, level="lsoa", count_columns="cin", group_columns="lsoa")
    before, n_log = out.read_bytes(), len(read_log(tmp_path))

    def broken(self, path, **kwargs):
        Path(path).write_text("la,lsoa,cin\nA,a,")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        write_table(lsoa_table(), out, level="lsoa", count_columns="cin", group_columns="lsoa")
    with pytest.raises(OSError, match="disk full"):
        write_table(
            lsoa_table(),
            tmp_path / "new.csv",
            level="la",
            count_columns="cin",
            group_columns="lsoa",
        )
    assert out.read_bytes() == before
    assert not (tmp_path / "new.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [disclosure.LOG_NAME, "lsoa.csv"]
    assert len(read_log(tmp_path)) == n_log


# acro 1.0.2 calls pandas APIs that pandas 3.1 deprecates (it declares pandas<=2.3.3)
@pytest.mark.filterwarnings("ignore::DeprecationWarning:acro.*")
def test_acro_adapter_agrees_and_bundles(tmp_path):
    pytest.importorskip("acro")
    cells = {("A", "1"): 15, ("A", "2"): 30, ("A", "3"): 3, ("B", "1"): 20, ("B", "2"): 25}
    cells |= {("C", "1"): 12, ("C", "2"): 7, ("C", "3"): 40}  # B3 is an empty cell: 0
    records = pd.DataFrame([key for key, n in cells.items() for _ in range(n)], columns=["la", "d"])
    p = disclosure.acro_crosstab(records, "la", "d", rule=EXACT, bundle_dir=tmp_path / "bundle")
    counts = pd.crosstab(records["la"], records["d"]).to_numpy()
    assert_unrecoverable(counts, matrix(p.table.drop(columns="la")))
    assert any("ACRO" in a for a in p.actions)
    assert (p.status.drop(columns="la").to_numpy() == "primary").sum() == 2
    bundle = json.loads((tmp_path / "bundle" / "results.json").read_text())["results"]
    files = [f["name"] for output in bundle.values() for f in output["files"]]
    assert "table.csv" in files
    assert not any(name.startswith("output_0") for name in files)  # the raw table


def test_derived_rates_are_blanked_with_their_counts(tmp_path):
    table = pd.DataFrame(
        {"la": ["A", "B", "C"], "cases": [4, 50, 60], "children": [1000.0, 2000.0, 3000.0]}
    )
    table["rate"] = 1e4 * table["cases"] / table["children"]
    path = write_table(
        table,
        tmp_path / "t.csv",
        level="la",
        count_columns=["cases"],
        group_columns=["la"],
        derived={"rate": "cases"},
    )
    out = pd.read_csv(path)
    hidden = out["cases"].isna()
    assert hidden[0]
    assert hidden.sum() == 2  # primary A plus one complement (the total is published)
    assert out["rate"].isna().tolist() == hidden.tolist()
    # with rounding, the rate is computed from the rounded count (not the true one)
    rounded = protect(table, ["cases"], ["la"], Rule(round_to=5), derived={"rate": "cases"})
    shown = rounded.table
    visible = shown["cases"].notna()
    np.testing.assert_allclose(
        shown.loc[visible, "rate"],
        1e4 * shown.loc[visible, "cases"].astype(float) / shown.loc[visible, "children"],
    )
    assert (shown.loc[visible, "cases"] % 5 == 0).all()
    assert shown["rate"].isna().tolist() == (~visible).tolist()


# --- perturbation (the cell-key method) ------------------------------------------------


def test_cell_keys_follow_the_records():
    keys = perturbation.CellKeys(b"k" * 32)
    # an LSOA's records dealt to its strata in label order: the LSOA's whole key is the
    # same from one row or from its stratum rows, whatever their order
    whole = keys.count_keys(["E01000001"], [7], "referrals")
    parts = keys.count_keys(["E01000001|b", "E01000001|a"], [4, 3], "referrals")
    assert np.isclose(parts.sum() % 1, whole[0])
    assert np.isclose(keys.count_keys(["E01000001"], [7], "referrals"), whole).all()
    # one record more, another measure, another secret: another key
    assert not np.isclose(keys.count_keys(["E01000001"], [8], "referrals"), whole)
    assert not np.isclose(keys.count_keys(["E01000001"], [7], "cin"), whole)
    other = perturbation.CellKeys(b"j" * 32).count_keys(["E01000001"], [7], "referrals")
    assert not np.isclose(other, whole)
    with pytest.raises(ValueError, match="16 bytes"):
        perturbation.CellKeys(b"short")


def test_perturbation_table_is_bounded_and_keeps_zeros_and_the_floor():
    for n in (1, 9, 10, 11, 12, 13, 50, 1000):
        row = perturbation.ptable(n, floor=10)
        assert np.isclose(sum(row.values()), 1)
        assert max(abs(j) for j in row) <= perturbation.MAX_NOISE
        assert min(n + j for j in row) >= (10 if n >= 10 else 1)  # never 0, nor below the floor
    far = perturbation.ptable(100, floor=10)
    assert np.isclose(sum(j * p for j, p in far.items()), 0)  # unbiased away from the floor
    rng = np.random.default_rng(0)
    values = rng.integers(0, 200, 2000).astype(float)
    values[:100] = 0
    shown = perturbation.perturb_counts(values, rng.random(2000), floor=10)
    assert (shown[:100] == 0).all()
    assert (np.abs(shown - values) <= perturbation.MAX_NOISE).all()
    assert (shown[values >= 10] >= 10).all()
    assert (shown != values).mean() > 0.3  # most cells do move
    noisy = perturbation.perturb_magnitudes(np.full(1000, 500.0), rng.random(1000), 40.0)
    assert (np.abs(noisy - 500) <= 40).all()
    assert noisy.std() > 15


def test_weaker_rules_need_a_reason(tmp_path):
    for weak in (Rule(perturb=False), Rule(protection=0), Rule(threshold=5), Rule(secondary=False)):
        assert weak.weaker
        with pytest.raises(DisclosureError, match="--override"):
            weak.check()
        with pytest.raises(DisclosureError):
            write_table(
                lsoa_table(),
                tmp_path / "x.csv",
                level="lsoa",
                count_columns="cin",
                group_columns="lsoa",
                rule=weak,
            )
    assert not Rule(protection=8, round_to=5).weaker
    with pytest.raises(ValueError, match="protection"):
        Rule(protection=-1)


def test_the_same_table_is_published_the_same_way(tmp_path):
    """Same data, same ledger: the same noise (a re-release gives no second draw to
    average); another ledger (another secret): other noise."""
    t = pd.DataFrame(
        {"la": [f"E0600000{i}" for i in range(1, 7)], "cases": [3, 25, 40, 12, 77, 90]}
    )
    first = protect(t, "cases", "la").table
    assert first.equals(protect(t, "cases", "la").table)
    moved = [protect(t, "cases", "la").table]
    from socialgradient.release.ledger import ENV

    old = __import__("os").environ[ENV]
    try:
        for i in range(4):
            __import__("os").environ[ENV] = str(tmp_path / f"l{i}")
            moved.append(protect(t, "cases", "la").table)
    finally:
        __import__("os").environ[ENV] = old
    assert any(not m["cases"].equals(first["cases"]) for m in moved[1:])
    for m in moved:
        assert m["cases"].isna().tolist() == first["cases"].isna().tolist()
