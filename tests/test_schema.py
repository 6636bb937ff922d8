"""Tests of the input contract (socialgradient.data.schema); fast, no model fitting."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socialgradient.data.schema import (
    REQUIRED_COLUMNS,
    InputError,
    load,
    read_table,
    require_events,
    validate,
)

OUTCOMES = ["referrals", "cp_plans"]


def make_table(n_la: int = 3, per_la: int = 4) -> pd.DataFrame:
    """A valid table: ``n_la`` LAs with ``per_la`` LSOAs each, counts stored as floats."""
    n = n_la * per_la
    k = np.arange(n)
    return pd.DataFrame(
        {
            "lsoa": [f"E01{i + 1:06d}" for i in k],
            "la": [f"E0600{j + 1:04d}" for j in k // per_la],
            "children": 150.0 + 10.5 * k,
            "income": (k % per_la + 1) / (per_la + 1),
            "referrals": (k * 3 % 7).astype(float),
            "cp_plans": (k % 3).astype(float),
            "la_name": [f"Authority {j}" for j in k // per_la],
        }
    )


def put(table: pd.DataFrame, column: str, rows, value) -> pd.DataFrame:
    """Copy of ``table`` with ``value`` at positions ``rows`` of ``column``."""
    values = table[column].tolist()
    for r in np.atleast_1d(rows):
        values[r] = value
    return table.assign(**{column: pd.Series(values, index=table.index, dtype=object)})


def refuse(table, outcomes=OUTCOMES) -> InputError:
    with pytest.raises(InputError) as info:
        validate(table, outcomes)
    err = info.value
    assert err.message.startswith(err.rule)
    assert str(err) == err.message
    return err


# -- valid tables ---------------------------------------------------------------------------


def test_valid_table_dtypes_index_and_rows():
    table = make_table().set_index(pd.Index(np.arange(100, 112)))
    out = validate(table, OUTCOMES)
    assert out is not table
    assert isinstance(out.index, pd.RangeIndex)
    assert list(out.columns) == list(table.columns)
    assert len(out) == len(table)
    for col in ("lsoa", "la"):
        assert pd.api.types.is_string_dtype(out[col])
        assert all(type(v) is str for v in out[col])
    assert out["children"].dtype == np.float64
    assert out["income"].dtype == np.float64
    for col in OUTCOMES:
        assert out[col].dtype == np.int64
        np.testing.assert_array_equal(out[col], table[col].to_numpy())
    assert out["lsoa"].tolist() == table["lsoa"].tolist()
    assert out["la_name"].tolist() == table["la_name"].tolist()


def test_caller_table_not_mutated():
    table = make_table().set_index(pd.Index(np.arange(12)[::-1]))
    before = table.copy(deep=True)
    out = validate(table, OUTCOMES)
    out.loc[0, "children"] = -1.0
    pd.testing.assert_frame_equal(table, before)


def test_single_outcome_as_str_and_object_columns():
    table = make_table().astype({"children": object, "referrals": object})
    out = validate(table, "referrals")
    assert out["referrals"].dtype == np.int64
    assert out["children"].dtype == np.float64
    assert "cp_plans" in out.columns  # passed through, unchecked


def test_accepts_welsh_codes_and_nullable_dtypes():
    table = make_table()
    table["lsoa"] = table["lsoa"].str.replace("E01", "W01")
    table["la"] = table["la"].str.replace("E06", "W06")
    table["referrals"] = table["referrals"].astype("Int64")
    out = validate(table, OUTCOMES)
    assert out["lsoa"].iloc[0] == "W01000001"
    assert out["referrals"].dtype == np.int64


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_round_trip_through_files(tmp_path, suffix):
    table = make_table()
    path = tmp_path / f"table{suffix}"
    if suffix == ".parquet":
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False)
    out = load(path, OUTCOMES)
    pd.testing.assert_frame_equal(out, validate(table, OUTCOMES))
    assert out["children"].dtype == np.float64
    assert out["referrals"].dtype == np.int64


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_codes_survive_reading_as_text(tmp_path, suffix):
    text = "lsoa,la,children,income,referrals\n" + "".join(
        f"E0100000{i},E0600000{i // 2},1{i}.5,0.{i},{i}\n" for i in range(1, 5)
    )
    path = tmp_path / f"t{suffix}"
    path.write_bytes(gzip.compress(text.encode()) if suffix.endswith("gz") else text.encode())
    raw = read_table(path)
    assert raw["lsoa"].tolist() == [f"E0100000{i}" for i in range(1, 5)]
    assert raw["la"].tolist() == ["E06000000", "E06000001", "E06000001", "E06000002"]
    with pytest.raises(InputError) as info:  # E06000000 and E06000002 hold one LSOA each
        validate(raw, ["referrals"])
    assert info.value.rule == "small_la"
    assert info.value.rows == [0, 3]


# -- read_table -----------------------------------------------------------------------------


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "rule"),
    [
        ("t.xlsx", b"lsoa\n", "unknown_format"),
        ("t.csv.zip", b"lsoa\n", "unknown_format"),
        ("t.csv", b"", "empty_file"),
        ("t.parquet", b"", "empty_file"),
        ("t.csv.gz", gzip.compress(b""), "empty_file"),
        ("t.csv", b"lsoa,la\nE01000001,E06\xff\xfe\n", "undecodable"),
        ("t.csv", b"lsoa,la,lsoa\nE01000001,E06000001,E01000002\n", "duplicate_column"),
        ("t.csv", b"lsoa,la\nE01000001,E06000001,1,2\n", "unreadable"),
        ("t.csv.gz", b"not gzip", "unreadable"),
        ("t.parquet", b"not parquet", "unreadable"),
    ],
)
def test_read_table_refuses(tmp_path, name, data, rule):
    path = _write(tmp_path / name, data)
    with pytest.raises(InputError) as info:
        read_table(path)
    assert info.value.rule == rule
    assert rule in str(info.value)
    assert name in str(info.value)


def test_read_table_missing_file(tmp_path):
    with pytest.raises(InputError) as info:
        load(tmp_path / "absent.csv", OUTCOMES)
    assert info.value.rule == "file_not_found"
    assert "absent.csv" in info.value.message


def test_read_table_duplicate_parquet_header(tmp_path):
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array([1]), pa.array([2])], ["la", "la"]), path)
    with pytest.raises(InputError) as info:
        read_table(path)
    assert info.value.rule == "duplicate_column"
    assert "'la'" in info.value.message


def test_header_only_file_is_empty_table(tmp_path):
    path = _write(tmp_path / "t.csv", b"lsoa,la,children,income,referrals\n")
    with pytest.raises(InputError) as info:
        load(path, ["referrals"])
    assert info.value.rule == "empty_table"
    assert info.value.rows == []


# -- column rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
def test_missing_column(column):
    err = refuse(make_table().drop(columns=column))
    assert err.rule == "missing_column"
    assert err.rows == []
    assert repr(column) in err.message
    assert "columns found" in err.message
    assert "'la_name'" in err.message


def test_missing_columns_reported_together():
    err = refuse(make_table().drop(columns=["children", "income"]))
    assert err.rule == "missing_column"
    assert err.columns == ("children", "income")


def test_duplicate_column_in_frame():
    table = pd.concat([make_table(), make_table()[["income"]]], axis=1)
    err = refuse(table)
    assert err.rule == "duplicate_column"
    assert "'income'" in err.message


def test_no_outcome():
    err = refuse(make_table(), [])
    assert err.rule == "no_outcome"


def test_unknown_outcome():
    err = refuse(make_table(), ["referrals", "referals"])
    assert err.rule == "unknown_outcome"
    assert "'referals'" in err.message
    assert "['referrals', 'cp_plans']" in err.message  # available numeric columns


def test_empty_table():
    err = refuse(make_table().iloc[:0])
    assert err.rule == "empty_table"
    assert err.rows == []


# -- per-value rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("lsoa", " E01000006"),
        ("lsoa", "E01000006 "),
        ("lsoa", "E01000006\n"),
        ("lsoa", "e01000006"),
        ("lsoa", "S01000006"),
        ("lsoa", "E02000006"),
        ("lsoa", "E0100006"),
        ("lsoa", "E010000066"),
        ("lsoa", "E01" + "\u0660" * 5 + "6"),  # non-ASCII digits
        ("lsoa", None),
        ("lsoa", np.nan),
        ("lsoa", 1000006),
        ("la", " E06000002"),
        ("la", "E0600002"),
        ("la", "S12000033"),
        ("la", "X06000002"),
        ("la", ""),
        ("la", None),
        ("la", 6000002),
    ],
)
def test_malformed_codes(column, value):
    err = refuse(put(make_table(), column, 5, value))
    assert err.rule == f"malformed_{column}"
    assert err.rows == [5]
    assert f"column {column!r}" in err.message
    assert f"row 5 (lsoa {value!r}" in err.message or column == "la"
    assert "E01000006" in err.message or column == "lsoa"


def test_malformed_lsoa_lists_ten_and_counts_the_rest():
    table = put(make_table(), "lsoa", range(12), "E01 000001")
    err = refuse(table)
    assert err.rule == "malformed_lsoa"
    assert err.rows == list(range(12))
    assert "row 9 (" in err.message
    assert "row 10 (" not in err.message
    assert "and 2 more" in err.message


VALUE_CASES = [
    ("children", np.nan, "missing_value"),
    ("income", None, "missing_value"),
    ("referrals", np.nan, "missing_value"),
    ("cp_plans", None, "missing_value"),
    ("children", "12a", "non_numeric"),
    ("income", "low", "non_numeric"),
    ("referrals", "12a", "non_numeric"),
    ("referrals", True, "non_numeric"),
    ("children", np.inf, "non_finite"),
    ("income", -np.inf, "non_finite"),
    ("cp_plans", np.inf, "non_finite"),
    ("referrals", "inf", "non_finite"),
    ("referrals", -1.0, "negative_count"),
    ("cp_plans", -3, "negative_count"),
    ("referrals", 2.5, "fractional_count"),
    ("cp_plans", 1e-9, "fractional_count"),
    ("referrals", 1e17, "count_too_large"),
    ("referrals", 2.0**53, "count_too_large"),
    ("cp_plans", 1_000_001, "count_implausible"),
    ("children", 0.0, "children_not_positive"),
    ("children", -5.0, "children_not_positive"),
    ("children", 1e308, "children_out_of_range"),
    ("children", 5e-324, "children_out_of_range"),
    ("children", 2e6, "children_out_of_range"),
    ("income", 1.2, "income_out_of_range"),
    ("income", -0.1, "income_out_of_range"),
]


@pytest.mark.parametrize(("column", "value", "rule"), VALUE_CASES)
@pytest.mark.parametrize("as_object", [False, True])
def test_value_rules(column, value, rule, as_object):
    table = put(make_table(), column, 7, value)
    if not as_object and not isinstance(value, str | bool):
        table[column] = table[column].astype(float)
    err = refuse(table)
    assert err.rule == rule
    assert err.rows == [7]
    assert err.columns == (column,)
    assert f"column {column!r}" in err.message
    assert "row 7 (lsoa 'E01000008'" in err.message


def test_bool_column_is_non_numeric():
    table = make_table().assign(referrals=np.arange(12) % 2 == 0)
    err = refuse(table)
    assert err.rule == "non_numeric"
    assert err.rows == list(range(12))


def test_rule_reports_all_rows_across_columns():
    table = put(put(make_table(), "referrals", [9, 2], np.nan), "children", 4, np.nan)
    err = refuse(table)
    assert err.rule == "missing_value"
    assert err.rows == [2, 4, 9]
    assert err.columns == ("children", "referrals")
    assert "column 'children': 1 row" in err.message
    assert "column 'referrals': 2 rows" in err.message


def test_rows_are_positions_not_labels():
    table = put(make_table(), "income", 3, 2.0).set_index(pd.Index(list("abcdefghijkl")))
    err = refuse(table)
    assert err.rule == "income_out_of_range"
    assert err.rows == [3]


def test_check_order_first_rule_wins():
    table = make_table()
    table = put(table, "income", 1, 5.0)  # out of range
    table = put(table, "referrals", 2, -1.0)  # negative
    table = put(table, "children", 3, "x")  # non-numeric
    assert refuse(table).rule == "non_numeric"
    assert refuse(put(table, "la", 0, "E06")).rule == "malformed_la"
    assert refuse(put(table, "lsoa", 0, "E01")).rule == "malformed_lsoa"
    assert refuse(table.drop(columns="la")).rule == "missing_column"


def test_percentage_income_gets_a_hint():
    table = make_table()
    err = refuse(table.assign(income=table["income"] * 100))
    assert err.rule == "income_out_of_range"
    assert err.rows == list(range(12))
    assert "percentage" in err.message
    assert "percentage" not in refuse(put(table, "income", 0, 150.0)).message
    assert "percentage" not in refuse(put(table, "income", 0, -0.5)).message


# -- cross-row rules ------------------------------------------------------------------------


def test_lsoa_in_two_las_beats_duplicate_lsoa():
    table = make_table()
    table = pd.concat([table, table.iloc[[1]].assign(la="E06000003")], ignore_index=True)
    err = refuse(table)
    assert err.rule == "lsoa_in_two_las"
    assert err.rows == [1, 12]
    assert "E01000002" in err.message
    assert "E06000001" in err.message
    assert "E06000003" in err.message


def test_duplicate_lsoa():
    table = put(make_table(), "lsoa", [4, 6], "E01000006")
    err = refuse(table)
    assert err.rule == "duplicate_lsoa"
    assert err.rows == [4, 5, 6]
    assert "column 'lsoa'" in err.message


def test_small_la():
    table = make_table().drop(index=[8, 9, 11]).reset_index(drop=True)
    err = refuse(table)
    assert err.rule == "small_la"
    assert err.rows == [8]
    assert "E06000003" in err.message
    assert "column 'la'" in err.message


# -- issue 27: values that escaped the rules ---------------------------------------------------


def test_counts_float64_cannot_hold_are_refused_not_rounded(tmp_path):
    """2**53 + 1 was stored as 2**53 (float64), and the fit asked for 64 PiB."""
    table = make_table().astype({"referrals": np.int64})
    table.loc[7, "referrals"] = 2**53 + 1
    err = refuse(table)
    assert err.rule == "count_too_large"
    assert (err.rows, err.columns) == ([7], ("referrals",))
    assert "2**53" in err.message
    path = tmp_path / "t.csv"  # read from a file, as a CSV holds it
    table.to_csv(path, index=False)
    assert read_table(path)["referrals"].max() == 2**53 + 1
    with pytest.raises(InputError) as info:
        load(path, OUTCOMES)
    assert (info.value.rule, info.value.rows) == ("count_too_large", [7])


def test_implausible_counts_are_refused_with_their_rows():
    table = make_table()
    assert validate(put(table, "referrals", 3, 1_000_000), OUTCOMES)["referrals"][3] == 1_000_000
    # "6000000000000000.3" reads as the whole 6e15 in float64: only the plausibility bound
    # sees it
    err = refuse(
        put(put(table, "referrals", [3, 5], 1_000_001), "cp_plans", 2, "6000000000000000.3")
    )
    assert err.rule == "count_implausible"
    assert err.rows == [2, 3, 5]
    assert err.columns == ("referrals", "cp_plans")
    assert "above 1,000,000 in one row" in err.message
    assert "row 3 (lsoa 'E01000004', referrals=1000001)" in err.message


def test_implausible_trials_are_refused():
    table = make_table().assign(trials=lambda t: t["referrals"] + 1)
    table.loc[4, "trials"] = 5e6
    with pytest.raises(InputError) as info:
        validate(table, ["referrals"], trials="trials")
    assert (info.value.rule, info.value.rows) == ("count_implausible", [4])


@pytest.mark.parametrize("value", [1e308, 5e-324, 1e11, 1e-4])
def test_another_exposure_must_be_in_a_plausible_range(value):
    """Person-days at risk (the durations specs): 0.5 days passes, 1e308 and 5e-324 do not."""
    table = make_table().assign(days=lambda t: 30.0 * t["children"])
    table.loc[0, "days"] = 0.5  # an episode closed on the day of its referral
    assert validate(table, ["referrals"], exposure="days")["days"][0] == 0.5
    table.loc[6, "days"] = value
    with pytest.raises(InputError) as info:
        validate(table, ["referrals"], exposure="days")
    assert info.value.rule == "exposure_out_of_range"
    assert (info.value.rows, info.value.columns) == ([6], ("days",))
    assert "days is the exposure" in info.value.message


def test_children_out_of_range_as_weights_too():
    """children is the weight of LA deprivation even when another column is the exposure."""
    table = make_table().assign(days=1000.0)
    table.loc[2, "children"] = 1e308  # overflowed the LA means to inf and NaN
    with pytest.raises(InputError) as info:
        validate(table, ["referrals"], exposure="days")
    assert (info.value.rule, info.value.rows) == ("children_out_of_range", [2])
    assert "it weights LA deprivation" in info.value.message


def test_moderators_too_large_for_their_mean_and_sd():
    table = make_table().assign(density=np.arange(12.0))
    table.loc[9, "density"] = -1e308
    with pytest.raises(InputError) as info:
        validate(table, ["referrals"], moderators=["density"])
    assert (info.value.rule, info.value.rows) == ("moderator_out_of_range", [9])


def test_an_outcome_without_events_is_refused_for_a_fit():
    """All-zero counts gave a WARN, exit 0 and the prior as the 'gradient'."""
    table = validate(make_table().assign(referrals=0), OUTCOMES)  # allowed as a table
    with pytest.raises(InputError) as info:
        require_events(table, ["cp_plans", "referrals"])
    err = info.value
    assert err.rule == "no_events"
    assert err.message.startswith("no_events: outcome 'referrals' is 0 on every one of the 12 rows")
    assert err.rows == list(range(12))
    assert err.columns == ("referrals",)
    require_events(table, ["cp_plans"])


def test_a_binomial_without_events_or_without_non_events_is_refused():
    table = validate(make_table().assign(trials=3, y=0), ["y"], trials="trials")
    with pytest.raises(InputError) as info:
        require_events(table, ["y"], "trials")
    assert info.value.rule == "no_events"
    assert "of the trials in 'trials'" in info.value.message
    with pytest.raises(InputError) as info:
        require_events(table.assign(y=3), ["y"], "trials")
    assert info.value.rule == "every_trial_an_event"
    assert info.value.columns == ("y", "trials")
    require_events(table.assign(y=np.arange(12) % 4), ["y"], "trials")


def test_input_error_pickles():
    err = refuse(put(make_table(), "income", 2, 7.0))
    back = pickle.loads(pickle.dumps(err))
    assert (back.rule, back.rows, back.message) == (err.rule, err.rows, err.message)


# -- properties -----------------------------------------------------------------------------


@st.composite
def valid_tables(draw):
    sizes = draw(st.lists(st.integers(2, 6), min_size=1, max_size=5))
    n = sum(sizes)
    codes = draw(st.lists(st.integers(0, 999_999), min_size=n, max_size=n, unique=True))
    las = draw(
        st.lists(st.integers(0, 99_999_999), min_size=len(sizes), unique=True, max_size=len(sizes))
    )
    nation = draw(st.sampled_from("EW"))
    return pd.DataFrame(
        {
            "lsoa": [f"{nation}01{c:06d}" for c in codes],
            "la": [f"E{a:08d}" for a, s in zip(las, sizes, strict=True) for _ in range(s)],
            "children": draw(st.lists(st.floats(1e-3, 1e6), min_size=n, max_size=n)),
            "income": draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)),
            "referrals": draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n)),
            "cp_plans": [
                float(v) for v in draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
            ],
        }
    )


@settings(max_examples=60, deadline=None)
@given(valid_tables())
def test_random_valid_tables_validate(table):
    out = validate(table, OUTCOMES)
    assert len(out) == len(table)
    assert out["lsoa"].tolist() == table["lsoa"].tolist()
    assert out["cp_plans"].dtype == np.int64


CORRUPTIONS = {
    "children": [np.nan, np.inf, -np.inf, -1.0, 0.0, 1e308, 5e-324],
    "income": [np.nan, np.inf, -0.01, 1.0001, 1e300],
    "referrals": [np.nan, np.inf, -1.0, 0.5, 1e20, 2.0**53 + 2, 1e6 + 1],
    "cp_plans": [np.nan, -np.inf, -2.0, 3.25],
}


@settings(max_examples=100, deadline=None)
@given(valid_tables(), st.data())
def test_random_single_cell_corruption_raises_input_error(table, data):
    column = data.draw(st.sampled_from(sorted(CORRUPTIONS)))
    value = data.draw(st.sampled_from(CORRUPTIONS[column]))
    row = data.draw(st.integers(0, len(table) - 1))
    bad = table.astype({column: float})
    bad.loc[row, column] = value
    with pytest.raises(InputError) as info:
        validate(bad, OUTCOMES)
    assert info.value.rows == [row]
    assert info.value.columns == (column,)
