"""The readers' LA table (issue 30 item 4): LA names beside codes, estimates to 3 digits."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from fakes import fake_table
from sets import assert_release_clean
from socialgradient import resources
from socialgradient.release import readers, report
from test_release import fit_like, tiny_table


def digits(v: float) -> int:
    """Significant digits ``v`` is written with (as pandas writes it to CSV)."""
    mantissa = f"{abs(v):.15g}".split("e")[0].replace(".", "").lstrip("0")
    return len(mantissa.rstrip("0")) or 1


@pytest.mark.parametrize(
    ("value", "rounded"),
    [
        (0.0123456, 0.0123),
        (123456.0, 123000.0),
        (2.5549, 2.55),
        (-1.23456, -1.23),
        (1.0, 1.0),
        (75.5, 75.5),
        (0.0, 0.0),
        (999.6, 1000.0),
    ],
)
def test_significant_rounds_to_three_digits(value, rounded):
    (got,) = readers.significant([value])
    assert got == rounded
    assert repr(float(got)) == repr(rounded)  # written back as the short decimal


def test_significant_keeps_missing_and_infinite_values_and_shape():
    got = readers.significant(np.array([[np.nan, np.inf], [-np.inf, 1234.5]]), 2)
    assert got.shape == (2, 2)
    assert np.isnan(got[0, 0])
    assert got[0, 1] == np.inf
    assert got[1, 0] == -np.inf
    assert got[1, 1] == 1200.0


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_significant_refuses_a_digit_count_that_is_not_a_positive_integer(bad):
    with pytest.raises(ValueError, match="digits"):
        readers.significant([1.0], bad)


def test_digits_helper_counts_what_a_csv_shows():
    assert digits(0.0123) == 3
    assert digits(123000.0) == 3
    assert digits(2.55) == 3
    assert digits(2.5549) == 5
    assert digits(1.0) == 1


def named(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with an ``la_name`` column (names travel into the fit as a coordinate)."""
    return table.assign(la_name="Authority " + table["la"].str[-2:])


def test_names_come_from_the_fit_then_the_package_table_then_the_code():
    table = named(fake_table(3, 4, 0))
    tree = fit_like(table)
    codes = tree["constant_data"]["la"].values.astype(str)
    fitted = tree["constant_data"]["la_name"].values.astype(str)
    england = pd.read_parquet(resources.path("data", "las.parquet"))
    other = england[~england["la"].isin(codes)].iloc[0]  # an LA of England not fitted
    known, name = other["la"], other["la_name"]
    names = readers.la_names(tree, [*codes, known, "X99999999"])
    assert names.tolist() == [*fitted, name, "X99999999"]
    # a fit without names: the package's LA table, else the code
    bare = tree.copy()
    bare["constant_data"] = bare["constant_data"].to_dataset().drop_vars("la_name")
    assert readers.la_names(bare, [known, "X99999999"]).tolist() == [name, "X99999999"]


def test_for_readers_names_every_row_rounds_estimates_and_leaves_counts():
    table = named(fake_table(4, 3, 1))
    tree = fit_like(table)
    frame = pd.DataFrame(
        {
            "la": tree["constant_data"]["la"].values.astype(str),
            "n_lsoa": [3, 3, 3, 3],
            "children": [12345, 2345, 345, 45],
            "cases": pd.array([1234, pd.NA, 12, 0], dtype="Int64"),
            "rate_per_10k": [999.987, np.nan, 347.826, 0.0],
            "gradient_median": [1.23456, 2.34567, 0.98765, 1.0],
            "rank_median": [1.0, 2.5, 3.0, 4.0],
            "note": ["", "", "", ""],
        }
    )
    out = readers.for_readers(frame, tree)
    assert list(out.columns[:2]) == ["la", "la_name"]
    assert (out["la_name"].str.len() > 0).all()
    assert out["gradient_median"].tolist() == [1.23, 2.35, 0.988, 1.0]
    assert out["rate_per_10k"].iloc[0] == 1000.0
    assert math.isnan(out["rate_per_10k"].iloc[1])
    pd.testing.assert_series_equal(out["children"], frame["children"])
    pd.testing.assert_series_equal(out["cases"], frame["cases"])
    assert frame.columns.tolist()[1] == "n_lsoa"  # the input is not changed


def test_la_gradients_csv_is_fit_for_a_reader_and_still_safe(tmp_path):
    """``release/la_gradients.csv`` of a fit of tiny LAs: the table's name of every LA
    beside its code, every estimate with at most 3 significant digits (the full-precision
    value rounded), the release still passes the disclosure scans, and ``summary.json``
    keeps full precision."""
    table = named(tiny_table(0))
    tree = fit_like(table)
    out = tmp_path / "out"
    report.write(tree, out)
    las = pd.read_csv(out / "release" / "la_gradients.csv")
    assert list(las.columns[:2]) == ["la", "la_name"]
    names = table.drop_duplicates("la").set_index("la")["la_name"]
    assert las["la_name"].tolist() == names.loc[las["la"]].tolist()
    assert (las["la_name"].fillna("").str.len() > 0).all()
    for column in readers.ESTIMATES:
        values = las[column].dropna()
        assert len(values), column
        assert all(digits(v) <= readers.DIGITS for v in values), (column, values.tolist())
    full = report.la_gradients(tree).set_index("la").loc[las["la"]]
    for column in ("gradient_median", "gradient_lo95", "rank_hi95"):
        np.testing.assert_array_equal(las[column], readers.significant(full[column]))
    assert_release_clean(out, table["lsoa"], ["cases"])
    s = json.loads((out / "release" / "summary.json").read_text())
    g = s["gradient_mean_la"]
    assert max(digits(v) for v in [g["median"], *g["ci95"], *g["ci80"]]) > readers.DIGITS
