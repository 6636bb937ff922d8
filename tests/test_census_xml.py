"""CIN Census XML returns: layout, round trip through linkage, validation and the CLI."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from socialgradient import cli
from socialgradient.data import schema
from socialgradient.data.census import linkage
from socialgradient.data.census import returns as cx
from socialgradient.data.schema import InputError
from socialgradient.data.synthetic.records import simulate_records


@pytest.fixture(scope="module")
def recs():
    return simulate_records(seed=3, years=(2019, 2020), scale=0.05)


@pytest.fixture(scope="module")
def returns(recs, tmp_path_factory):
    out = tmp_path_factory.mktemp("returns")
    return out, cx.write_returns(recs, out)


def one_la(recs, la, year=2019):
    keep = (recs.children["la"] == la) & (recs.children["year"] == year)
    ep = recs.episodes[recs.episodes["child_id"].isin(recs.children.loc[keep, "child_id"])
                       & (recs.episodes["year"] == year)]
    fa = recs.factors[recs.factors["episode_id"].isin(ep["episode_id"])]
    return dataclasses.replace(recs, children=recs.children[keep], episodes=ep, factors=fa)


@pytest.fixture(scope="module")
def small(recs, tmp_path_factory):
    """One LA's 2019 return (text), its child -> LSOA table and the LA code."""
    n = recs.children["la"].value_counts()
    la = n[n >= 10].index[-1]
    out = tmp_path_factory.mktemp("small")
    (path,) = cx.write_returns(one_la(recs, la), out)
    return path.read_text(), pd.read_csv(out / "child_lsoa.csv"), la


def read_text(tmp_path, recs, text, child_lsoa, name="E00000000_2019.xml", **kw):
    path = tmp_path / name
    path.write_text(text)
    return cx.read_returns(path, child_lsoa, recs.geography, recs.population, **kw)


def test_one_file_per_la_per_year_in_the_census_layout(recs, returns):
    out, paths = returns
    assert len(paths) == recs.children.groupby(["la", "year"]).ngroups
    assert (out / "child_lsoa.csv").exists()
    assert (out / "looked_after.csv").exists()
    root = ET.parse(paths[0]).getroot()
    la, year = paths[0].stem.split("_")
    assert root.tag == "Message"
    assert root.findtext("Header/CollectionDetails/Collection") == "CIN"
    assert root.findtext("Header/CollectionDetails/Year") == year
    assert root.findtext("Header/CollectionDetails/ReferenceDate") == f"{year}-03-31"
    assert root.findtext("Header/Source/LEA") == cx.LA_NUMBERS[la]
    kids = root.findall("Children/Child")
    assert len(kids) == ((recs.children["la"] == la) & (recs.children["year"] == int(year))).sum()
    for child in kids:
        assert child.findtext("ChildIdentifiers/LAchildID")
        assert child.findtext("ChildIdentifiers/GenderCurrent") in ("1", "2")
        assert child.findtext("ChildCharacteristics/Ethnicity") in cx.ETHNIC_CODES
        for d in child.findall("CINdetails"):
            assert d.findtext("CINreferralDate")
            assert d.findtext("ReferralNFA") in ("0", "1")
            for f in d.iterfind("Assessments/FactorsIdentifiedAtAssessment/AssessmentFactors"):
                assert cx.FACTOR_CODE.fullmatch(f.text)
            for p in d.findall("ChildProtectionPlans"):
                assert p.findtext("InitialCategoryOfAbuse") in cx.CP_CODES
    lsoa = pd.read_csv(out / "child_lsoa.csv")
    assert list(lsoa.columns) == ["la", "year", "child_id", "lsoa"]
    assert len(lsoa) == len(recs.children)


def test_round_trip_aggregates_equal_the_original(recs, returns):
    out, _ = returns
    back, read = cx.read_returns(out, out / "child_lsoa.csv", recs.geography, recs.population,
                                 looked_after=out / "looked_after.csv",
                                 cin_plans=out / "cin_plans.csv")
    assert read.episodes == read.passed == len(recs.episodes)
    assert sum(read.excluded.values()) == 0
    assert read.looked_after_unmatched == 0
    assert set(back.children["ethnicity"]) <= set(recs.children["ethnicity"])
    for by in (("age_band",), ()):
        a, ra = linkage.aggregate(recs, by=by)
        b, rb = linkage.aggregate(back, by=by)
        assert rb.to_dict() == ra.to_dict()
        # every column but re-referrals, thresholds first, is equal cell by cell
        cols = [c for c in a.columns if c != "rereferrals"]
        pd.testing.assert_frame_equal(a[cols], b[cols], check_dtype=False)
        assert a["referrals"].sum() == len(recs.children)
        # re-referral is derived from the same child's earlier referral in the returns, as DfE
        # does: it agrees with the flag except where the earlier referral is not in the records
        outside = sum(h["rereferrals_earlier_not_in_records"]
                      for h in recs.truth["history"].values())
        assert outside > 0
        assert (b["rereferrals"] <= a["rereferrals"]).all()
        assert a["rereferrals"].sum() - b["rereferrals"].sum() == outside


def test_malformed_xml_names_file_and_line(tmp_path, recs, small):
    text, cl, _ = small
    lines = text.splitlines()
    k = next(i for i, s in enumerate(lines) if "<CINreferralDate>" in s)
    lines[k] = lines[k].replace("</CINreferralDate>", "</CINreferral>")
    with pytest.raises(InputError) as err:
        read_text(tmp_path, recs, "\n".join(lines), cl, name="bad.xml")
    assert err.value.rule == "malformed_xml"
    assert "bad.xml" in str(err.value)
    assert f"line {k + 1}" in str(err.value)


@pytest.mark.parametrize(("pattern", "new", "rule", "element"), [
    (r"<CINreferralDate>[^<]*</CINreferralDate>", "", "missing_element", "CINreferralDate"),
    (r"<PersonBirthDate>[^<]*<", "<PersonBirthDate>2010-13-45<", "bad_date", "PersonBirthDate"),
    (r"<Ethnicity>[^<]*<", "<Ethnicity>XXXX<", "unknown_code", "Ethnicity"),
])
def test_record_problems_raise_or_go_to_the_report(tmp_path, recs, small, pattern, new, rule,
                                                   element):
    text, cl, _ = small
    bad = re.sub(pattern, new, text, count=1)
    child_id = re.search(r"<LAchildID>([^<]*)<", text).group(1)
    with pytest.raises(InputError) as err:
        read_text(tmp_path, recs, bad, cl, name="bad.xml")
    assert err.value.rule == rule
    assert "bad.xml" in str(err.value)
    assert child_id in str(err.value)
    assert element in str(err.value)
    back, read = read_text(tmp_path, recs, bad, cl, name="bad.xml", errors="report")
    e = recs.episodes  # a child-level problem excludes all the child's episodes
    n = 1 if element == "CINreferralDate" else ((e["child_id"] == child_id)
                                               & (e["year"] == 2019)).sum()
    assert read.excluded[rule] == n
    assert read.passed == read.episodes - n
    assert read.excluded_records["la_child_id"].tolist() == [child_id] * n
    assert len(back.episodes) == read.passed


def test_unborn_and_unlinkable_children_are_reported_not_dropped(tmp_path, recs, small):
    text, cl, la = small
    text = text.replace("<PersonBirthDate>", "<ExpectedPersonBirthDate>", 1).replace(
        "</PersonBirthDate>", "</ExpectedPersonBirthDate>", 1)
    e = recs.episodes[recs.episodes["year"] == 2019]
    single = e["child_id"].value_counts().loc[lambda n: n == 1].index
    ids = cl.loc[cl["child_id"].isin(single), "child_id"].tolist()
    other = recs.geography.loc[recs.geography["la"] != la, "lsoa"].iloc[0]
    cl = cl.copy()
    cl.loc[cl["child_id"] == ids[1], "lsoa"] = other  # LSOA in another LA
    cl = cl[cl["child_id"] != ids[2]]  # no LSOA for this child
    start = text.index("<CINdetails>", text.index(f"<LAchildID>{ids[3]}<"))
    block = text[start:text.index("</CINdetails>", start) + len("</CINdetails>")]
    text = text[:start] + block + "\n" + text[start:]  # the same episode twice
    back, read = read_text(tmp_path, recs, text, cl)
    first = re.search(r"<LAchildID>([^<]*)<", text).group(1)
    e = recs.episodes
    unborn = ((e["child_id"] == first) & (e["year"] == 2019)).sum()  # all its episodes
    assert read.excluded["unborn"] == unborn
    assert read.passed == read.episodes - unborn
    _, report = linkage.link(back)
    assert report.read == read.passed
    assert report.unlinked["la_mismatch"] == 1
    assert report.unlinked["missing_lsoa"] == 1
    assert report.unlinked["duplicate_episode"] == 1
    assert report.linked + sum(report.unlinked.values()) == report.read


def test_lea_numbers_need_a_map(tmp_path, recs, small):
    text, cl, la = small
    text = text.replace(f"<LEA>{cx.LA_NUMBERS[la]}</LEA>", "<LEA>999</LEA>")
    with pytest.raises(InputError) as err:
        read_text(tmp_path, recs, text, cl)
    assert err.value.rule == "unknown_lea"
    back, read = read_text(tmp_path, recs, text, cl, lea_codes={"999": la})
    assert read.passed == read.episodes
    assert set(back.children["la"]) == {la}


def test_not_a_return(tmp_path, recs, small):
    with pytest.raises(InputError) as err:
        read_text(tmp_path, recs, "<Other/>", small[1])
    assert err.value.rule == "not_a_cin_return"


def test_cli_census_write_and_aggregate(tmp_path, capsys):
    out = tmp_path / "r"
    las = ["E06000001", "E06000002", "E06000003"]
    assert cli.main(["census", "write", "--out", str(out), "--seed", "5", "--scale", "0.05",
                     "--la", *las]) == 0
    table = tmp_path / "t.parquet"
    args = ["census", "aggregate", str(out), "--child-lsoa", str(out / "child_lsoa.csv"),
            "--looked-after", str(out / "looked_after.csv"),
            "--geography", str(out / "geography.parquet"),
            "--population", str(out / "population.parquet"), "--by", "age_band",
            "--out", str(table), "--report", str(tmp_path / "report.json")]
    # Without an override the LSOA counts leave protected: small cells are suppressed.
    assert cli.main(args) == 0
    protected = pd.read_parquet(table)
    assert protected["referrals"].isna().any()
    visible = protected["referrals"].dropna()
    assert ((visible == 0) | (visible >= 10)).all()
    log = [json.loads(x) for x in (tmp_path / "disclosure_log.jsonl").read_text().splitlines()]
    assert log[-1]["level"] == "lsoa"
    assert log[-1]["suppressed"] > 0
    # Model input inside the secure environment: unprotected, under a logged reason.
    args += ["--override", "model input, stays in the secure environment"]
    assert cli.main(args) == 0
    t = schema.load(table, ["referrals", "cp_plans"], "age_band")
    assert set(t["la"]) == set(las)
    assert (tmp_path / "report.json").exists()
    log = [json.loads(x) for x in (tmp_path / "disclosure_log.jsonl").read_text().splitlines()]
    assert log[-1]["override"] == "model input, stays in the secure environment"
    (out / "E06000001_2019.xml").write_text("<Message><Children>")
    assert cli.main(args) == 2
    assert "malformed_xml" in capsys.readouterr().err
