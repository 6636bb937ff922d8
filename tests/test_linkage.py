"""Linkage of child records to LSOAs, its report, the aggregates and the simulate CLI."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from socialgradient import cli
from socialgradient.data import schema
from socialgradient.data.census import linkage
from socialgradient.data.synthetic.records import simulate_records


@pytest.fixture(scope="module")
def recs():
    return simulate_records(seed=3, years=(2019, 2020), scale=0.05)


def corrupt(recs):
    """Records with one corruption per reason; returns (records, {episode_id: reason}).

    Corrupts children with one row and one episode in the records (children can have
    several episodes and appear in several years).
    """
    ch, ep = recs.children.copy(), recs.episodes.copy()
    once = ~ch["child_id"].duplicated(keep=False) & ~ch["child_id"].isin(
        ep.loc[ep["child_id"].duplicated(), "child_id"]
    )
    rows = ch.index[once]
    ids = ch.loc[rows, "child_id"].tolist()
    k = dict(enumerate(rows))
    other_la = next(la for la in recs.geography["la"] if la != ch.loc[k[4], "la"])
    ch.loc[k[0], "lsoa"] = ""
    ch.loc[k[1], "lsoa"] = None
    ch.loc[k[2], "lsoa"] = "E01 00001"
    ch.loc[k[3], "lsoa"] = "E01999999"
    ch.loc[k[4], "la"] = other_la
    extra = ch.loc[[k[5]]].assign(lsoa=ch.loc[k[6], "lsoa"], la=ch.loc[k[6], "la"])
    if extra["lsoa"].iloc[0] == ch.loc[k[5], "lsoa"]:
        extra = extra.assign(lsoa=ch.loc[k[100], "lsoa"], la=ch.loc[k[100], "la"])
    ch = pd.concat([ch, extra], ignore_index=True)
    ep.loc[ep["child_id"] == ids[7], "child_id"] = "NOT-A-CHILD"
    dup = ep[ep["child_id"] == ids[8]]
    ep = pd.concat([ep, dup], ignore_index=True)
    eid = dict(zip(ep["child_id"], ep["episode_id"], strict=False))
    expected = {
        eid[ids[0]]: "missing_lsoa",
        eid[ids[1]]: "missing_lsoa",
        eid[ids[2]]: "invalid_lsoa",
        eid[ids[3]]: "lsoa_not_in_geography",
        eid[ids[4]]: "la_mismatch",
        eid[ids[5]]: "ambiguous_child",
        eid["NOT-A-CHILD"]: "unknown_child",
        eid[ids[8]]: "duplicate_episode",
    }
    return dataclasses.replace(recs, children=ch, episodes=ep), expected


def test_clean_records_all_link(recs):
    linked, report = linkage.link(recs)
    assert report.read == report.linked == len(recs.episodes) == len(linked)
    assert sum(report.unlinked.values()) == 0
    assert len(report.unlinked_records) == 0
    assert report.orphan_factors == 0
    assert report.children_without_episode == 0


def test_corrupted_records_land_in_the_right_reason(recs):
    bad, expected = corrupt(recs)
    linked, report = linkage.link(bad)
    assert report.read == len(bad.episodes)
    assert report.read == report.linked + sum(report.unlinked.values())
    assert set(report.unlinked) == set(linkage.REASONS)
    got = report.unlinked_records
    assert len(got) == sum(report.unlinked.values()) == len(expected)
    for eid, reason in expected.items():
        assert (got.loc[got["episode_id"] == eid, "reason"] == reason).all(), eid
    assert report.unlinked["missing_lsoa"] == 2
    # the first of two duplicated episodes links, the second does not
    dup = next(e for e, r in expected.items() if r == "duplicate_episode")
    assert (linked["episode_id"] == dup).sum() == 1
    assert json.loads(json.dumps(report.to_dict()))["read"] == report.read


def test_aggregates_sum_to_linked_records(recs):
    bad, _ = corrupt(recs)
    lsoa, report = linkage.aggregate(bad, by=())
    by_age, _ = linkage.aggregate(bad, by=("age_band",))
    linked, _ = linkage.link(bad)
    assert report.linked == len(linked)
    # counts are of children (per year), not episodes
    assert lsoa["referrals"].sum() == len(linked[["year", "child_id"]].drop_duplicates())
    assert lsoa["children"].sum() == bad.population["children"].sum()
    counts = [c for c in lsoa.columns if c not in ("lsoa", "la", "income", "rural")]
    summed = by_age.groupby("lsoa")[counts].sum()
    pd.testing.assert_frame_equal(
        lsoa.set_index("lsoa")[counts], summed, check_dtype=False, check_exact=False, rtol=1e-9
    )
    cp = linked[linked["cp_plan_start"].notna()]
    assert lsoa["cp_plans"].sum() == len(cp[["year", "child_id"]].drop_duplicates())
    assert (lsoa["cp_plans"] <= lsoa["cin_plans"]).all()
    assert (lsoa["cin_plans"] <= lsoa["assessments"]).all()
    assert (lsoa["assessments"] <= lsoa["referrals"]).all()
    cats = [c for c in lsoa.columns if c.startswith("cp_") and c != "cp_plans"]
    assert (lsoa[cats].sum(axis=1) == lsoa["cp_plans"]).all()


def test_aggregates_meet_the_input_contract(recs):
    lsoa, _ = linkage.aggregate(recs, by=())
    assert lsoa["lsoa"].is_unique
    assert len(lsoa) == len(recs.geography)
    schema.validate(lsoa, ["referrals", "cp_plans", "factor_neglect", "rereferrals"])
    by_age, _ = linkage.aggregate(recs, by=("age_band",))
    schema.validate(by_age, ["referrals", "looked_after"], stratum="age_band")
    one_year, _ = linkage.aggregate(recs, by=(), years=[2019])
    assert one_year["children"].sum() * 2 == lsoa["children"].sum()
    with pytest.raises(ValueError, match="unknown strata"):
        linkage.aggregate(recs, by=("religion",))


def test_cli_simulate_records_is_deterministic(tmp_path):
    args = ["simulate", "--seed", "4", "--scale", "0.02", "--records", "--years", "2019,2020"]
    assert cli.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert cli.main([*args, "--out", str(tmp_path / "b")]) == 0
    for name in ("children", "episodes", "factors", "population", "lsoa_age_band"):
        a = pd.read_parquet(tmp_path / "a" / f"{name}.parquet")
        b = pd.read_parquet(tmp_path / "b" / f"{name}.parquet")
        pd.testing.assert_frame_equal(a, b)
    for name in ("records_truth.json", "linkage_report.json", "truth.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    assert cli.main(["simulate", "--out", str(tmp_path / "c"), "--years", "2019"]) == 2


def test_cli_geography(tmp_path, recs):
    geo = recs.geography.assign(la_name="x")
    geo.to_csv(tmp_path / "geo.csv", index=False)
    out = tmp_path / "g"
    assert (
        cli.main(
            ["simulate", "--out", str(out), "--records", "--geography", str(tmp_path / "geo.csv")]
        )
        == 0
    )
    truth = json.loads((out / "records_truth.json").read_text())
    assert truth["geography"] == "supplied"
    assert truth["n_lsoa"] == len(geo)
    assert not (out / "neighbourhoods.parquet").exists()
