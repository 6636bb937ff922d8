"""EES tidy data of the per-LA results, screened with the rules of DfE's screener."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from sets import SRC
from socialgradient import resources
from socialgradient.release import ees, neighbours

ENGLAND = {"median": 1.6, "ci95": [1.5, 1.7], "ci80": [1.55, 1.65]}


def las_table(codes=("E06000001", "E08000025", "E09000001")) -> pd.DataFrame:
    n = len(codes)
    return pd.DataFrame(
        {
            "la": list(codes),
            "children": [5000 + i for i in range(n)],
            "cases": [120.0, None, 0.0][:n],
            "rate_per_10k": [240.0, None, 0.0][:n],
            "gradient_median": [1.71, 1.52, 2.05][:n],
            "gradient_lo95": [1.31, 1.2, 1.1][:n],
            "gradient_hi95": [2.1, 1.9, 3.2][:n],
            "gradient_lo80": [1.5, 1.3, 1.4][:n],
            "gradient_hi80": [1.9, 1.7, 2.8][:n],
            "rank_median": [2.0, 3.0, 1.0][:n],
            "rank_lo95": [1.0, 1.0, 1.0][:n],
            "rank_hi95": [3.0, 3.0, 3.0][:n],
        }
    )


@pytest.fixture
def files():
    las = las_table()
    data, meta = ees.ees_tables(las, ENGLAND, neighbours.la_info(las["la"]), 2019, None)
    return data, meta


def failed(data, meta) -> set[str]:
    return {c.check for c in ees.screen(data, meta) if c.result == "FAIL"}


def test_tables_follow_the_standard_and_pass_every_check(files, tmp_path):
    data, meta = files
    assert list(data.columns[:10]) == [
        "time_period",
        "time_identifier",
        "geographic_level",
        "country_code",
        "country_name",
        "region_code",
        "region_name",
        "old_la_code",
        "new_la_code",
        "la_name",
    ]
    assert list(meta.columns) == list(ees.REQ_META)
    results = ees.screen(data, meta)
    assert len(results) == 38
    assert [c for c in results if c.result != "PASS"] == []
    la = data.set_index("new_la_code").loc["E08000025"]
    assert (la["old_la_code"], la["la_name"], la["region_name"]) == (
        "330",
        "Birmingham",
        "West Midlands",
    )
    assert la["cases"] == "c"
    assert la["rate_per_10000"] == "c"
    nat = data[data["geographic_level"] == "National"].iloc[0]
    assert nat["gradient_score"] == "1.60"
    assert nat["gradient_rank"] == "z"
    assert nat["cases"] == "c"  # England's total not released
    # written and read back as the screener reads them: the same verdict
    paths = ees.write_ees(data, meta, tmp_path, "la_social_gradient")
    assert [c.result for c in ees.screen_files(*paths)] == ["PASS"] * 38
    # and from the command line, as a reader checks files we have not seen
    run = subprocess.run(
        [sys.executable, "-m", "socialgradient.release.ees", *map(str, paths)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("PASS") == 38
    meta.assign(indicator_unit="ratio").to_csv(paths[1], index=False)
    run = subprocess.run(
        [sys.executable, "-m", "socialgradient.release.ees", *map(str, paths)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        check=False,
    )
    assert run.returncode == 1
    assert "FAIL     meta_ind_unit_validation" in run.stdout
    assert paths[1].read_bytes().count(b"\r") == 0


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (lambda d, m: (d.drop(columns="time_identifier"), m), "col_req_data"),
        (lambda d, m: (d, m.drop(columns="filter_hint")), "col_req_meta"),
        (lambda d, m: (d.assign(time_period="201819"), m), "time_period"),
        (lambda d, m: (d.assign(time_identifier="Year"), m), "time_id_valid"),
        (lambda d, m: (d.assign(extra_value="1"), m), "cross_data_to_meta"),
        (lambda d, m: (d, m.assign(indicator_unit="ratio")), "meta_ind_unit_validation"),
        (lambda d, m: (d, m.assign(col_type="Measure")), "meta_col_type"),
        (lambda d, m: (d, m.assign(indicator_dp="two")), "meta_ind_dp_values"),
        (lambda d, m: (d, m.assign(label="")), "meta_label"),
        (lambda d, m: (d, m.assign(filter_hint="pick one")), "meta_filter_hint"),
        (lambda d, m: (pd.concat([d, d.tail(1)], ignore_index=True), m), "general_dupes"),
        (lambda d, m: (d.assign(cases="NA"), m), "general_null"),
        (lambda d, m: (d.assign(cases=""), m), "ind_invalid_entry"),
        (lambda d, m: (d.assign(cases="~"), m), "ind_invalid_entry"),
        (lambda d, m: (d.assign(region_code="E12000099"), m), "geog_region_combos"),
        (lambda d, m: (d.assign(country_name="UK"), m), "geog_country_combos"),
        (lambda d, m: (d.assign(geographic_level="Borough"), m), "geog_level"),
    ],
)
def test_each_rule_catches_what_it_is_for(files, change, check):
    data, meta = change(*files)
    assert check in failed(data, meta)


def test_an_unranked_la_has_rank_z_and_still_passes():
    las = las_table()
    las.loc[2, ["rank_median", "rank_lo95", "rank_hi95"]] = float("nan")
    data, meta = ees.ees_tables(las, ENGLAND, neighbours.la_info(las["la"]), 2019, 5000.0)
    row = data.set_index("new_la_code").loc["E09000001"]
    assert (row["gradient_rank"], row["gradient_rank_upper_95"]) == ("z", "z")
    nat = data[data["geographic_level"] == "National"].iloc[0]
    assert nat["cases"] == "5000"
    assert nat["rate_per_10000"] == f"{1e4 * 5000 / las['children'].sum():.1f}"
    assert failed(data, meta) == set()


def test_la_rows_need_region_and_matching_codes(files):
    data, meta = files
    la = data["geographic_level"] == "Local authority"
    assert "geog_region_for_la" in failed(data.assign(region_code=""), meta)
    wrong = data.copy()
    wrong.loc[la, "old_la_code"] = "999"
    assert "geog_la_combos" in failed(wrong, meta)
    renamed = data.copy()  # DfE's list names it "Birmingham": another spelling fails
    renamed.loc[renamed["new_la_code"] == "E08000025", "la_name"] = "City of Birmingham"
    assert "geog_la_combos" in failed(renamed, meta)
    over = data.copy()
    over.loc[~la, "la_name"] = "Somewhere"
    assert "geog_overcompleted_cols" in failed(over, meta)


def test_every_la_of_the_default_data_is_in_dfes_list_with_its_region():
    las = pd.read_parquet(resources.path("data", "las.parquet"), columns=["la"])
    info = neighbours.la_info(las["la"])
    dfe = neighbours.dfe_las()
    assert all(i.dfe_name for i in info.values())
    assert all(dfe[c][2] == i.region_code for c, i in info.items())
    assert neighbours.la_info(["E06000063"])["E06000063"].region_name == "North West"


def test_la_without_a_dfe_number_or_neighbours():
    info = neighbours.la_info(["E06000999", "E09000033"])
    assert info["E06000999"].neighbours == ()
    assert info["E06000999"].number == ""
    assert info["E06000999"].name == "E06000999"
    assert len(info["E09000033"].neighbours) == 10  # Westminster
    assert info["E09000033"].region_name == "London"
