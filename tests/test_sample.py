"""The committed child-level sample (data/records_sample) is what the default seed rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from approx import assert_close, assert_frame_close
from socialgradient.data.census import linkage
from socialgradient.data.records import TABLE_COLUMNS
from socialgradient.data.synthetic import sample
from socialgradient.data.synthetic.england import DEFAULT_SEED
from socialgradient.data.synthetic.records import simulate_records

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "records_sample"


def same_units(df: pd.DataFrame) -> pd.DataFrame:
    """Datetimes in ns (Parquet keeps another unit than the simulator's)."""
    return df.assign(
        **{
            c: df[c].astype("datetime64[ns]")
            for c in df.columns
            if pd.api.types.is_datetime64_any_dtype(df[c])
        }
    )


@pytest.fixture(scope="module")
def full():
    return simulate_records(seed=DEFAULT_SEED, years=sample.YEARS)


@pytest.fixture(scope="module")
def rebuilt(full):
    return sample.restrict(full, sample.sample_las())


def test_three_las_by_the_stated_rule():
    las = sample.sample_las()
    assert las == ["E06000041", "E09000013", "E06000002"]  # Wokingham, Hammersmith, Middlesbrough
    assert len(set(las)) == 3


@pytest.mark.slow  # rebuilds the national records of the sample years (34-40 s)
def test_committed_sample_equals_the_rebuild(rebuilt):
    for name in ("children", "episodes", "factors"):
        committed = pd.read_parquet(SAMPLE / f"{name}.parquet")
        pd.testing.assert_frame_equal(
            same_units(committed), same_units(getattr(rebuilt, name)), check_dtype=False
        )
    pop = pd.read_parquet(SAMPLE / "population.parquet")
    pd.testing.assert_frame_equal(
        pop, rebuilt.population, check_dtype=False, check_categorical=False
    )
    # the truth's floats (exp/log of drawn effects) to 1e-9 relative: their last ulp depends
    # on the CPU's kernels; its codes, counts and structure exactly
    truth = json.loads((SAMPLE / "records_truth.json").read_text())
    assert_close(json.loads(json.dumps(rebuilt.truth)), truth, rtol=1e-9)
    table, report = linkage.aggregate(rebuilt)
    # codes and counts exactly; income within one unit of its 3-decimal grid, days at risk
    # (sums of half days) to 1e-9 relative -- stated, not pandas' default tolerance
    assert_frame_close(
        table,
        pd.read_parquet(SAMPLE / "lsoa_age_band.parquet"),
        rtol=1e-9,
        atol={"income": 1e-3},
        check_dtype=False,
    )
    assert json.loads((SAMPLE / "linkage_report.json").read_text()) == report.to_dict()
    assert report.linked == report.read == len(rebuilt.episodes)


@pytest.mark.slow  # uses the same 34-40 s rebuild
def test_sample_is_closed_under_children_and_years(full, rebuilt):
    for name in TABLE_COLUMNS:
        assert tuple(getattr(rebuilt, name).columns) == TABLE_COLUMNS[name]
    ids = set(rebuilt.children["child_id"])
    # every row of a sampled child, in either year, is in the sample
    for name in ("children", "episodes", "factors"):
        whole = getattr(full, name)
        assert whole["child_id"].isin(ids).sum() == len(getattr(rebuilt, name)), name
    assert set(rebuilt.children["year"]) == set(sample.YEARS)
    assert rebuilt.children["child_id"].duplicated().any()  # children persist across years
    assert set(rebuilt.geography["la"]) == set(sample.sample_las())
