"""CIN Census XML returns: layout, round trip through linkage, validation and the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from sets import assert_release_clean
from socialgradient import cli
from socialgradient.data import schema
from socialgradient.data.census import codes, linkage
from socialgradient.data.census import returns as cx
from socialgradient.data.schema import InputError
from socialgradient.data.synthetic import england
from socialgradient.data.synthetic.records import simulate_records
from socialgradient.util import outputs

# The DfE XSDs are never committed: $SOCIALGRADIENT_SHARED/cin_census or ../shared/data/cin_census.
SHARED = Path(
    os.environ.get("SOCIALGRADIENT_SHARED")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)
SCHEMAS = SHARED / "cin_census"
needs_schemas = pytest.mark.skipif(
    not (SCHEMAS / "CIN_schema_2019.xsd").exists() or not codes.have_lxml(),
    reason="DfE CIN XSDs (shared/data/cin_census) or lxml not available",
)


@pytest.fixture(scope="module")
def recs():
    # 40 of the synthetic England's LAs: 80 returns, every rule and path of the 300 of all 150
    geo = england.simulate(seed=3, scale=0.05).table
    geo = geo[geo["la"].isin(geo["la"].unique()[:40])]
    return simulate_records(seed=3, years=(2019, 2020), geography=geo)


@pytest.fixture(scope="module")
def returns(recs, tmp_path_factory):
    out = tmp_path_factory.mktemp("returns")
    return out, cx.write_returns(recs, out)


def one_la(recs, la, year=2019):
    keep = (recs.children["la"] == la) & (recs.children["year"] == year)
    ep = recs.episodes[
        recs.episodes["child_id"].isin(recs.children.loc[keep, "child_id"])
        & (recs.episodes["year"] == year)
    ]
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
    back, read = cx.read_returns(
        out,
        out / "child_lsoa.csv",
        recs.geography,
        recs.population,
        looked_after=out / "looked_after.csv",
        cin_plans=out / "cin_plans.csv",
    )
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
        outside = sum(
            h["rereferrals_earlier_not_in_records"] for h in recs.truth["history"].values()
        )
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


@pytest.mark.parametrize(
    ("pattern", "new", "rule", "element"),
    [
        (r"<CINreferralDate>[^<]*</CINreferralDate>", "", "missing_element", "CINreferralDate"),
        (r"<PersonBirthDate>[^<]*<", "<PersonBirthDate>2010-13-45<", "bad_date", "PersonBirthDate"),
        (r"<Ethnicity>[^<]*<", "<Ethnicity>XXXX<", "unknown_code", "Ethnicity"),
    ],
)
def test_record_problems_raise_or_go_to_the_report(
    tmp_path, recs, small, pattern, new, rule, element
):
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
    n = (
        1
        if element == "CINreferralDate"
        else ((e["child_id"] == child_id) & (e["year"] == 2019)).sum()
    )
    assert read.excluded[rule] == n
    assert read.passed == read.episodes - n
    assert read.excluded_records["la_child_id"].tolist() == [child_id] * n
    assert len(back.episodes) == read.passed


def test_unborn_and_unlinkable_children_are_reported_not_dropped(tmp_path, recs, small):
    text, cl, la = small
    text = text.replace("<PersonBirthDate>", "<ExpectedPersonBirthDate>", 1).replace(
        "</PersonBirthDate>", "</ExpectedPersonBirthDate>", 1
    )
    e = recs.episodes[recs.episodes["year"] == 2019]
    single = e["child_id"].value_counts().loc[lambda n: n == 1].index
    ids = cl.loc[cl["child_id"].isin(single), "child_id"].tolist()
    other = recs.geography.loc[recs.geography["la"] != la, "lsoa"].iloc[0]
    cl = cl.copy()
    cl.loc[cl["child_id"] == ids[1], "lsoa"] = other  # LSOA in another LA
    cl = cl[cl["child_id"] != ids[2]]  # no LSOA for this child
    start = text.index("<CINdetails>", text.index(f"<LAchildID>{ids[3]}<"))
    block = text[start : text.index("</CINdetails>", start) + len("</CINdetails>")]
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
    assert (
        cli.main(
            [
                "census",
                "write",
                "--out",
                str(out),
                "--seed",
                "5",
                "--scale",
                "0.05",
                "--la",
                ",".join(las),
            ]
        )
        == 0
    )
    # census write: record-level inputs, all under internal/ of a verified set
    written = outputs.verify(out)
    assert not [
        f
        for f in written["files"]
        if f.startswith("release/") and not f.endswith("disclosure_log.jsonl")
    ]
    assert "internal/E06000001_2019.xml" in written["files"]
    inputs = out / "internal"
    table = tmp_path / "t"
    args = [
        "census",
        "aggregate",
        str(out),
        "--child-lsoa",
        str(inputs / "child_lsoa.csv"),
        "--looked-after",
        str(inputs / "looked_after.csv"),
        "--geography",
        str(inputs / "geography.parquet"),
        "--population",
        str(inputs / "population.parquet"),
        "--by",
        "age_band",
        "--out",
        str(table),
        "--report",
        str(tmp_path / "report.json"),
    ]
    assert cli.main(args) == 0
    manifest = outputs.verify(table)
    assert manifest["command"] == "census aggregate"
    # internal/: the LSOA counts, unprotected: the model input that fit reads
    t = schema.load(table, ["referrals", "cp_plans"], "age_band")
    assert set(t["la"]) == set(las)
    assert (tmp_path / "report.json").read_bytes() == (
        table / "internal" / "linkage_report.json"
    ).read_bytes()
    # release/: counts per LA and age band through the gate; no LSOA code
    counts = [
        c for c in t.columns if c not in {"lsoa", "la", "income", "rural", "children", "age_band"}
    ]
    assert {"referrals", "cp_plans"} <= set(counts)
    assert_release_clean(table, t["lsoa"], counts)
    las_out = pd.read_csv(table / "release" / "counts_by_la.csv")
    assert set(las_out.columns) == {"la", "age_band", *counts}
    assert las_out["referrals"].sum() <= t["referrals"].sum()
    log = [
        json.loads(x) for x in (table / "release" / "disclosure_log.jsonl").read_text().splitlines()
    ]
    assert [e["level"] for e in log] == ["la"]
    args += ["--override", "model input, stays in the secure environment"]
    assert cli.main(args) == 0
    log = [
        json.loads(x)
        for x in (table / "internal" / "disclosure_log.jsonl").read_text().splitlines()
    ]
    assert log[-1]["override"] == "model input, stays in the secure environment"
    before = outputs.verify(table)
    (inputs / "E06000001_2019.xml").write_text("<Message><Children>")
    assert cli.main(args) == 2  # census write's set no longer verifies
    assert "E06000001_2019.xml" in capsys.readouterr().err
    assert cli.main([*args[:1], "aggregate", str(inputs), *args[3:]]) == 2
    assert "malformed_xml" in capsys.readouterr().err
    assert outputs.verify(table) == before  # failed runs change nothing


def test_killing_census_aggregate_keeps_a_whole_set(tmp_path):
    import random

    from sets import kill_while_writing

    out = tmp_path / "r"
    assert (
        cli.main(
            [
                "census",
                "write",
                "--out",
                str(out),
                "--seed",
                "5",
                "--scale",
                "0.05",
                "--la",
                "E06000001",
                "--la",
                "E06000002",
            ]
        )
        == 0
    )
    inputs = out / "internal"
    table = tmp_path / "t"
    args = [
        "-m",
        "socialgradient.cli",
        "census",
        "aggregate",
        str(out),
        "--child-lsoa",
        str(inputs / "child_lsoa.csv"),
        "--geography",
        str(inputs / "geography.parquet"),
        "--population",
        str(inputs / "population.parquet"),
        "--out",
        str(table),
    ]
    assert cli.main(args[2:]) == 0
    rng = random.Random(2)
    for i in range(4):  # with and without strata: a mixed set would not verify
        kill_while_writing(
            [*args, *(["--by", "age_band"] if i % 2 else [])], table, rng, window=0.3
        )
        assert_release_clean(table, pd.read_csv(inputs / "child_lsoa.csv")["lsoa"])
    # census write too: killed while writing its returns
    for _ in range(2):
        kill_while_writing(
            [
                "-m",
                "socialgradient.cli",
                "census",
                "write",
                "--out",
                str(out),
                "--seed",
                "6",
                "--scale",
                "0.05",
                "--la",
                "E06000001",
            ],
            out,
            rng,
            window=0.5,
        )


def _validate_file(path, year):
    from lxml import etree

    return codes.validate(etree.parse(str(path)), codes.find_schema(year, SCHEMAS))


def first_las(years, n: int):
    """Records of ``years`` (seed 11, scale 0.02) cut to their first ``n`` LAs, and those
    LAs."""
    full = simulate_records(seed=11, years=years, scale=0.02)
    las = sorted(full.children["la"].unique())[:n]
    keep = full.children["la"].isin(las)
    ep = full.episodes.merge(full.children.loc[keep, ["child_id", "year"]])
    fa = full.factors.merge(ep[["episode_id", "year"]])
    return dataclasses.replace(full, children=full.children[keep], episodes=ep, factors=fa), las


@needs_schemas
def test_written_returns_validate_against_their_years_schema(tmp_path):
    years = tuple(codes.SCHEMA_YEARS)
    recs, las = first_las(years, 4)
    paths = cx.write_returns(recs, tmp_path)
    assert {int(p.stem.split("_")[1]) for p in paths} == set(years)
    errors = {p.name: _validate_file(p, int(p.stem.split("_")[1])) for p in paths}
    assert not any(errors.values()), {k: v[:3] for k, v in errors.items() if v}
    # read back (validated, strict): the aggregates are those of the records
    back, read = cx.read_returns(
        tmp_path,
        tmp_path / "child_lsoa.csv",
        recs.geography,
        recs.population,
        looked_after=tmp_path / "looked_after.csv",
        cin_plans=tmp_path / "cin_plans.csv",
        schema_dir=SCHEMAS,
        validate=True,
    )
    assert all(v.startswith("validated") for v in read.validation.values())
    assert len(read.schema_errors) == 0
    assert read.episodes == read.passed == len(recs.episodes)
    a, ra = linkage.aggregate(recs, by=("year",))
    b, rb = linkage.aggregate(back, by=("year",))
    assert rb.to_dict() == ra.to_dict()
    a = a[a["la"].isin(las)].reset_index(drop=True)  # the reader keeps the LAs it read
    cols = [c for c in a.columns if c != "rereferrals"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_dtype=False)
    assert a["referrals"].sum() == len(recs.children)


def test_rules_only_years_write_sex_and_read_back(tmp_path):
    """2025 and 2026 (the 2024-25 and 2025-26 collections) have no XSD: written with ``Sex``
    (M/F) for ``GenderCurrent``, read back to the records' aggregates, and reported as checked
    against the validation rules, not a schema (validate=True refuses: no schema to use)."""
    years = codes.RULES_ONLY_YEARS
    recs, las = first_las(years, 3)
    paths = cx.write_returns(recs, tmp_path)
    assert {int(p.stem.split("_")[1]) for p in paths} == set(years)
    for p in paths:
        text = p.read_text()
        assert "<GenderCurrent>" not in text
        assert set(re.findall(r"<Sex>([^<]*)</Sex>", text)) <= {"M", "F"}
    back, read = cx.read_returns(
        tmp_path,
        tmp_path / "child_lsoa.csv",
        recs.geography,
        recs.population,
        looked_after=tmp_path / "looked_after.csv",
        schema_dir=SCHEMAS,
    )
    assert all("no DfE XSD" in v and "validation rules" in v for v in read.validation.values())
    assert read.episodes == read.passed == len(recs.episodes)
    a, ra = linkage.aggregate(recs, by=("year",))
    b, rb = linkage.aggregate(back, by=("year",))
    assert rb.to_dict() == ra.to_dict()
    a = a[a["la"].isin(las)].reset_index(drop=True)
    cols = [c for c in a.columns if c != "rereferrals"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_dtype=False)
    with pytest.raises(InputError, match="no DfE XSD"):
        cx.read_returns(
            tmp_path,
            tmp_path / "child_lsoa.csv",
            recs.geography,
            recs.population,
            schema_dir=SCHEMAS,
            validate=True,
        )


def dfe_return(lea="805", year=2023):
    """A return in the DfE's own layout: UPNs, disabilities, CINPlanDates, reviews, several
    episodes per child, an unborn child and episodes outside the collection period."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Message>
  <Header>
    <CollectionDetails><Collection>CIN</Collection><Year>{year}</Year>
      <ReferenceDate>{year}-03-31</ReferenceDate></CollectionDetails>
    <Source><SourceLevel>L</SourceLevel><LEA>{lea}</LEA><SoftwareCode>X</SoftwareCode>
      <Release>1</Release><SerialNo>007</SerialNo><DateTime>{year}-04-20T10:00:00</DateTime>
    </Source>
  </Header>
  <Children>
    <Child>
      <ChildIdentifiers>
        <LAchildID>A1</LAchildID><UPN>A123456789012</UPN><FormerUPN>B12345678901C</FormerUPN>
        <PersonBirthDate>2015-06-01</PersonBirthDate><GenderCurrent>1</GenderCurrent>
      </ChildIdentifiers>
      <ChildCharacteristics><Ethnicity>WBRI</Ethnicity>
        <Disabilities><Disability>NONE</Disability></Disabilities></ChildCharacteristics>
      <CINdetails>
        <CINreferralDate>2022-05-01</CINreferralDate><ReferralSource>5D</ReferralSource>
        <PrimaryNeedCode>N1</PrimaryNeedCode><CINclosureDate>2022-12-01</CINclosureDate>
        <ReasonForClosure>RC9</ReasonForClosure><DateOfInitialCPC>2022-06-10</DateOfInitialCPC>
        <Assessments><AssessmentActualStartDate>2022-05-03</AssessmentActualStartDate>
          <AssessmentAuthorisationDate>2022-05-20</AssessmentAuthorisationDate>
          <FactorsIdentifiedAtAssessment><AssessmentFactors>18C</AssessmentFactors>
            <AssessmentFactors>24A</AssessmentFactors></FactorsIdentifiedAtAssessment>
        </Assessments>
        <CINPlanDates><CINPlanStartDate>2022-06-01</CINPlanStartDate>
          <CINPlanEndDate>2022-09-01</CINPlanEndDate></CINPlanDates>
        <Section47><S47ActualStartDate>2022-05-03</S47ActualStartDate>
          <InitialCPCtarget>2022-05-24</InitialCPCtarget>
          <DateOfInitialCPC>2022-06-10</DateOfInitialCPC><ICPCnotRequired>false</ICPCnotRequired>
        </Section47>
        <ReferralNFA>false</ReferralNFA>
        <ChildProtectionPlans><CPPstartDate>2022-06-10</CPPstartDate>
          <CPPendDate>2022-11-30</CPPendDate><InitialCategoryOfAbuse>NEG</InitialCategoryOfAbuse>
          <LatestCategoryOfAbuse>NEG</LatestCategoryOfAbuse>
          <NumberOfPreviousCPP>2</NumberOfPreviousCPP>
          <Reviews><CPPreviewDate>2022-07-01</CPPreviewDate>
            <CPPreviewDate>2022-10-01</CPPreviewDate></Reviews>
        </ChildProtectionPlans>
      </CINdetails>
      <CINdetails>
        <CINreferralDate>2023-01-10</CINreferralDate><ReferralSource>6</ReferralSource>
        <PrimaryNeedCode>N0</PrimaryNeedCode><ReferralNFA>0</ReferralNFA>
      </CINdetails>
      <CINdetails>
        <CINreferralDate>2021-01-01</CINreferralDate><ReferralSource>6</ReferralSource>
        <CINclosureDate>2021-06-01</CINclosureDate><ReasonForClosure>RC8</ReasonForClosure>
        <ReferralNFA>1</ReferralNFA>
      </CINdetails>
    </Child>
    <Child>
      <ChildIdentifiers><LAchildID>B2</LAchildID><UPNunknown>UN1</UPNunknown>
        <ExpectedPersonBirthDate>{year}-05-01</ExpectedPersonBirthDate>
        <GenderCurrent>0</GenderCurrent></ChildIdentifiers>
      <ChildCharacteristics><Ethnicity>NOBT</Ethnicity></ChildCharacteristics>
      <CINdetails><CINreferralDate>{year}-02-01</CINreferralDate>
        <ReferralSource>3A</ReferralSource><ReferralNFA>TRUE</ReferralNFA></CINdetails>
    </Child>
    <Child>
      <ChildIdentifiers><LAchildID>C3</LAchildID><PersonBirthDate>2010-01-01</PersonBirthDate>
        <GenderCurrent>2</GenderCurrent></ChildIdentifiers>
      <ChildCharacteristics><Ethnicity>AOTH</Ethnicity></ChildCharacteristics>
      <CINdetails><CINreferralDate>{year}-05-01</CINreferralDate>
        <ReferralSource>6</ReferralSource><ReferralNFA>0</ReferralNFA></CINdetails>
      <CINdetails><CINreferralDate>2020-04-01</CINreferralDate>
        <ReferralSource>6</ReferralSource><ReferralNFA>0</ReferralNFA></CINdetails>
    </Child>
  </Children>
</Message>
"""


@pytest.fixture(scope="module")
def dfe_lsoa(recs):
    lsoa = recs.geography.loc[recs.geography["la"] == "E06000001", "lsoa"].iloc[0]
    return pd.DataFrame({"la": "E06000001", "child_id": ["A1", "B2", "C3"], "lsoa": lsoa})


def test_a_return_in_the_dfe_layout_accounts_for_every_episode(tmp_path, recs, dfe_lsoa):
    path = tmp_path / "hartlepool_2023.xml"
    path.write_text(dfe_return())
    if (SCHEMAS / "CIN_schema_2023.xsd").exists() and codes.have_lxml():
        assert _validate_file(path, 2023) == []
    pop = cx.default_population(recs.geography, [2023])
    back, read = cx.read_returns(path, dfe_lsoa, recs.geography, pop, schema_dir=SCHEMAS)
    assert read.episodes == 6
    # closed 2021-06-01; referred 2023-05-01; referred 2020-04-01 and still open (a referral
    # of 2020, not of this year)
    assert read.excluded["outside_period"] == 3
    assert read.excluded["unborn"] == 1
    assert read.passed == 2 == len(back.episodes)
    assert read.episodes == read.passed + sum(read.excluded.values())
    out = read.excluded_records.set_index("reason")
    assert out.loc["unborn", "la_child_id"] == "B2"
    assert all(out.loc["outside_period", "line"] > 0)
    a1 = back.episodes.sort_values("referral_date").iloc[-2:]
    first = a1.iloc[0]
    assert first["outcome"] == "cp_plan"
    assert bool(first["repeat_cp_plan"])
    assert set(back.factors["factor"]) == {"18C", "24A"}
    table, report = linkage.aggregate(back, by=())
    assert report.linked == 2
    assert table["referrals"].sum() == 1  # child A1 (C3's referrals are outside the period)
    assert json.dumps(read.to_dict(), default=str)


def test_codes_of_neighbouring_years_are_read(tmp_path, recs, dfe_lsoa):
    # 18A (physical abuse, until 2020) in a 2023 return: a schema error, but the code is used
    (tmp_path / "old_code.xml").write_text(dfe_return().replace(">18C<", ">18A<"))
    pop = cx.default_population(recs.geography, [2023])
    back, read = cx.read_returns(
        tmp_path / "old_code.xml",
        dfe_lsoa,
        recs.geography,
        pop,
        errors="report",
        schema_dir=SCHEMAS,
    )
    assert read.passed == 2
    assert set(back.factors["factor"]) == {"18C", "24A"}
    if read.validation[str(tmp_path / "old_code.xml")].startswith("validated"):
        assert read.schema_errors[["element", "category"]].values.tolist() == [
            ["AssessmentFactors", "unknown_code"]
        ]


def test_every_episode_outside_the_period_is_counted_not_a_crash(tmp_path, recs, dfe_lsoa):
    text = re.sub(
        r"<CINreferralDate>[^<]*</CINreferralDate>",
        "<CINreferralDate>2024-01-01</CINreferralDate>",
        dfe_return(),
    )
    text = re.sub(r"<CINclosureDate>[^<]*</CINclosureDate>", "", text)  # (not before it)
    (tmp_path / "late.xml").write_text(text)
    # no population given: the denominators come from the years and LAs of the files read
    back, read = cx.read_returns(tmp_path / "late.xml", dfe_lsoa, recs.geography)
    assert read.passed == 0
    assert read.excluded["outside_period"] == 5
    assert read.excluded["unborn"] == 1
    table, report = linkage.aggregate(back, by=())
    assert report.linked == 0
    assert table["referrals"].sum() == 0


def malformed_returns(folder: Path) -> dict:
    """Four broken variants of the DfE-layout return; name -> the line of the fault."""
    text = dfe_return()
    lines = text.splitlines()
    found = {}

    def at(pattern):
        return next(i for i, s in enumerate(lines) if re.search(pattern, s))

    k = at(r"<ReferralNFA>false")  # ReferralNFA before Assessments: wrong order
    order = lines.copy()
    nfa = order.pop(k)
    order.insert(at(r"<Assessments>"), nfa)
    found["order.xml"] = (order, at(r"<Assessments>") + 2)  # Assessments, now after it
    k = at(r"<ReferralSource>5D")
    found["code.xml"] = ([*lines[:k], lines[k].replace(">5D<", ">99<"), *lines[k + 1 :]], k + 1)
    k = at(r"<CINreferralDate>2023-01-10")
    found["date.xml"] = (
        [*lines[:k], lines[k].replace("2023-01-10", "2023-02-30"), *lines[k + 1 :]],
        k + 1,
    )
    k = at(r"<LAchildID>C3")
    found["truncated.xml"] = (lines[: k + 1], k + 1)
    for name, (ls, _) in found.items():
        (folder / name).write_text("\n".join(ls) + "\n")
    return {name: line for name, (_, line) in found.items()}


def test_malformed_returns_are_reported_per_file_and_line(tmp_path, recs, dfe_lsoa):
    faults = malformed_returns(tmp_path)
    pop = cx.default_population(recs.geography, [2023])
    with pytest.raises(InputError) as err:
        cx.read_returns(tmp_path, dfe_lsoa, recs.geography, pop)
    assert err.value.rule == "malformed_xml"
    assert "truncated.xml" in str(err.value)
    _, read = cx.read_returns(
        tmp_path, dfe_lsoa, recs.geography, pop, errors="report", schema_dir=SCHEMAS
    )
    (bad_file,) = read.file_errors
    assert bad_file["rule"] == "malformed_xml"
    assert bad_file["file"].endswith("truncated.xml")
    assert bad_file["line"] > faults["truncated.xml"]
    ex = read.excluded_records.assign(name=lambda d: d["file"].map(lambda f: Path(f).name))
    code = ex[ex["reason"] == "unknown_code"]
    assert code[["name", "element", "value"]].values.tolist() == [
        ["code.xml", "ReferralSource", "99"]
    ]
    date = ex[ex["reason"] == "bad_date"]
    assert date[["name", "element", "value"]].values.tolist() == [
        ["date.xml", "CINreferralDate", "2023-02-30"]
    ]
    assert (code["line"] > 0).all()
    assert (date["line"] > 0).all()
    assert read.episodes == read.passed + sum(read.excluded.values())
    assert "not read: malformed_xml" in read.validation[bad_file["file"]]
    if not (SCHEMAS / "CIN_schema_2023.xsd").exists() or not codes.have_lxml():
        return
    s = read.schema_errors.assign(name=lambda d: d["file"].map(lambda f: Path(f).name))
    assert set(s["name"]) == {"order.xml", "code.xml", "date.xml"}
    first = s.groupby("name").first()
    assert first.loc["order.xml", "category"] == "element_order"
    assert first.loc["order.xml", "element"] == "Assessments"
    assert first.loc["order.xml", "line"] == faults["order.xml"]
    assert first.loc["code.xml", "category"] == "unknown_code"
    assert first.loc["code.xml", "line"] == faults["code.xml"]
    assert first.loc["date.xml", "category"] == "bad_value"
    assert first.loc["date.xml", "line"] == faults["date.xml"]
    d = read.to_dict()
    assert d["schema_errors"]["by_file"]
    assert d["schema_errors"]["total"] == len(s)


@needs_schemas
def test_schema_errors_refuse_with_errors_raise(tmp_path, recs, dfe_lsoa):
    malformed_returns(tmp_path)
    (tmp_path / "truncated.xml").unlink()
    (tmp_path / "code.xml").unlink()
    (tmp_path / "date.xml").unlink()
    pop = cx.default_population(recs.geography, [2023])
    with pytest.raises(InputError) as err:
        cx.read_returns(tmp_path, dfe_lsoa, recs.geography, pop, schema_dir=SCHEMAS)
    assert err.value.rule == "schema_invalid"
    assert "order.xml:" in str(err.value)
    assert "element_order" in str(err.value)
    _, read = cx.read_returns(tmp_path, dfe_lsoa, recs.geography, pop, validate=False)
    assert read.passed == 2
    assert read.validation[str(tmp_path / "order.xml")].startswith("not validated")


def test_schema_registry_and_local_copies(tmp_path, monkeypatch):
    from socialgradient.data.sources import download

    monkeypatch.setenv("SOCIALGRADIENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SOCIALGRADIENT_SHARED", raising=False)
    assert set(codes.SCHEMAS) == set(codes.SCHEMA_YEARS)
    assert set(codes.SCHEMA_YEARS) | set(codes.RULES_ONLY_YEARS) == set(codes.YEARS)
    assert codes.RULES_ONLY_YEARS == (2025, 2026)  # 2024-25, 2025-26: no XSD, rules only
    assert all(
        download.REGISTRY[f"cin_schema_{y}"].sha256 == s.sha256 for y, s in codes.SCHEMAS.items()
    )
    assert codes.find_schema(2023) is None
    # fetched into the cache with its sha256 checked (a file:// URL: no network in tests)
    fake = tmp_path / "published.xsd"
    fake.write_text("<xs:schema xmlns:xs='http://www.w3.org/2001/XMLSchema'/>")
    monkeypatch.setitem(
        codes.SCHEMAS,
        2019,
        codes.Schema(fake.as_uri(), download.sha256_of(fake), "CIN_schema_2019.xsd"),
    )
    cached = codes.fetch_schema(2019)
    assert cached == tmp_path / "cache" / "cin_census" / "CIN_schema_2019.xsd"
    assert codes.find_schema(2019) == cached
    (tmp_path / "CIN_schema_2023.xsd").write_text("<not the schema/>")
    assert codes.find_schema(2023, tmp_path) is None  # a copy with the wrong sha256
    if (SCHEMAS / "CIN_schema_2023.xsd").exists():
        assert codes.find_schema(2023, SCHEMAS) == SCHEMAS / "CIN_schema_2023.xsd"
        monkeypatch.setenv("SOCIALGRADIENT_SHARED", str(SCHEMAS.parent))
        assert codes.find_schema(2021) == SCHEMAS / "CIN_schema_2021.xsd"
    # the code lists are those of the year's schema
    for y in codes.SCHEMA_YEARS:
        path = SCHEMAS / f"CIN_schema_{y}.xsd"
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")

        def enum(name, text=text):
            i = text.index(f'name="{name}"')
            return set(
                re.findall(
                    r'enumeration value="([^"]+)"', text[i : text.index("</xs:simpleType>", i)]
                )
            )

        assert enum("assessmentfactorstype") == codes.FACTORS_BY_YEAR[y]
        assert enum("referralsourcetype") == codes.SOURCES_BY_YEAR[y]
        assert enum("reasonforclosuretype") == codes.CLOSURE_BY_YEAR[y]
        assert ("CINPlanDates" in text) == codes.HAS_CIN_PLAN_DATES[y]


def test_cli_aggregate_reports_every_file_line_and_reason(tmp_path, recs, dfe_lsoa, capsys):
    faults = malformed_returns(tmp_path)
    (tmp_path / "good.xml").write_text(dfe_return())
    recs.geography.to_parquet(tmp_path / "geo.parquet")
    dfe_lsoa.to_csv(tmp_path / "cl.csv", index=False)
    args = [
        "census",
        "aggregate",
        str(tmp_path),
        "--child-lsoa",
        str(tmp_path / "cl.csv"),
        "--geography",
        str(tmp_path / "geo.parquet"),
        "--out",
        str(tmp_path.with_name(tmp_path.name + "-t")),  # not in the input folder
        "--schemas",
        str(SCHEMAS),
        "--report",
        str(tmp_path / "report.json"),
    ]
    assert cli.main(args) == 2  # --errors raise: the truncated file stops the run
    assert "malformed_xml" in capsys.readouterr().err
    assert cli.main([*args, "--errors", "report"]) == 0
    read = json.loads((tmp_path / "report.json").read_text())["read"]
    assert read["episodes"] == read["passed"] + sum(read["excluded"].values())
    assert read["excluded"]["outside_period"] == 3 * 4  # 3 in each of the readable files
    assert [e["rule"] for e in read["file_errors"]] == ["malformed_xml"]
    shown = {(Path(r["file"]).name, r["reason"]): r["line"] for r in read["excluded_records"]}
    assert shown[("code.xml", "unknown_code")] == faults["code.xml"] - 1  # the CINdetails line
    assert shown[("date.xml", "bad_date")] > 0
    if codes.have_lxml() and (SCHEMAS / "CIN_schema_2023.xsd").exists():
        errs = read["schema_errors"]
        assert set(errs["by_file"]) == {
            str(tmp_path / n) for n in ("order.xml", "code.xml", "date.xml")
        }
        assert {"element_order", "unknown_code", "bad_value"} <= set(errs["by_category"])
        assert all(r["line"] > 0 and r["element"] for r in errs["shown"])


def test_no_schema_is_committed():
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "*.xsd"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked == []


# -- issue 27: returns that escaped the rules ---------------------------------------------------


def mini_return(year: int, children, collection="<Collection>CIN</Collection>") -> str:
    """A small valid return: ``children`` as ``(LAchildID, birth date, [(referral date,
    closure date or None), ...])``."""
    kids = []
    for child_id, dob, episodes in children:
        details = "".join(
            f"<CINdetails><CINreferralDate>{ref}</CINreferralDate>"
            f"<ReferralSource>6</ReferralSource><PrimaryNeedCode>N1</PrimaryNeedCode>"
            + (
                f"<CINclosureDate>{clo}</CINclosureDate><ReasonForClosure>RC8</ReasonForClosure>"
                if clo
                else ""
            )
            + "<ReferralNFA>0</ReferralNFA></CINdetails>\n"
            for ref, clo in episodes
        )
        kids.append(f"""<Child><ChildIdentifiers><LAchildID>{child_id}</LAchildID>
<UPNunknown>UN1</UPNunknown><PersonBirthDate>{dob}</PersonBirthDate>
<GenderCurrent>1</GenderCurrent></ChildIdentifiers>
<ChildCharacteristics><Ethnicity>WBRI</Ethnicity></ChildCharacteristics>
{details}</Child>""")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Message>
<Header><CollectionDetails>{collection}<Year>{year}</Year>
<ReferenceDate>{year}-03-31</ReferenceDate></CollectionDetails>
<Source><SourceLevel>L</SourceLevel><LEA>805</LEA></Source></Header>
<Children>
{"".join(kids)}
</Children>
</Message>
"""


def read_one(tmp_path, recs, text, lsoa, name="r.xml", year=2022, **kw):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    pop = cx.default_population(recs.geography, [year])
    return cx.read_returns(path, lsoa, recs.geography, pop, schema_dir=SCHEMAS, **kw)


_XXE = '<!DOCTYPE Message [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
_LAUGHS = (
    '<!DOCTYPE Message [<!ENTITY a "aaaaaaaaaa">'
    + "".join(
        f'<!ENTITY {c} "{("&" + p + ";") * 10}">'
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "]>\n"
)


@pytest.mark.parametrize(
    ("doctype", "reference", "encoding"),
    [
        (_XXE, "&xxe;", "utf-8"),  # reads a local file where entities are resolved
        (_LAUGHS, "&i;", "utf-8"),  # 10**9 a's where entities are expanded
        ('<!DOCTYPE Message SYSTEM "http://example.org/cin.dtd">\n', "X", "utf-8"),
        (_XXE, "&xxe;", "utf-16"),  # a byte search for '<!DOCTYPE' would miss it
    ],
)
def test_a_doctype_is_refused_before_any_parse(
    tmp_path, recs, dfe_lsoa, doctype, reference, encoding
):
    text = (
        dfe_return()
        .replace(
            '<?xml version="1.0" encoding="UTF-8"?>\n',
            f'<?xml version="1.0" encoding="{encoding.upper()}"?>\n' + doctype,
        )
        .replace("<SoftwareCode>X<", f"<SoftwareCode>{reference}<")
    )
    data = text.encode(encoding)
    # with the schemas at hand this ended in an lxml traceback ("Internal error in XML
    # Schema validation"); without, the entity was silently left unresolved
    for validate in (None, False):
        with pytest.raises(InputError) as err:
            read_one(tmp_path, recs, data, dfe_lsoa, year=2023, validate=validate)
        assert err.value.rule == "dtd_not_allowed"
        assert "r.xml: line 2" in str(err.value)
        assert ("['xxe']" in str(err.value)) == (reference == "&xxe;")
    with pytest.raises(InputError) as err:  # errors="report": the file is listed, not read
        read_one(tmp_path, recs, data, dfe_lsoa, year=2023, errors="report")
    assert err.value.rule == "no_records"
    assert "dtd_not_allowed" in str(err.value)


def test_a_doctype_the_prolog_scan_missed_is_refused_after_parsing(
    tmp_path, recs, dfe_lsoa, monkeypatch
):
    """lxml reads encodings expat may not: its own DOCTYPE record is checked too."""
    if not codes.have_lxml():
        pytest.skip("lxml not installed")
    from socialgradient.data.census import read

    class Blind:  # a prolog scan that sees nothing
        def __setattr__(self, name, value):
            pass

        def SetParamEntityParsing(self, flag):  # expat's names
            pass

        def Parse(self, data, final):
            raise read.expat.ExpatError("blind")

    monkeypatch.setattr(read.expat, "ParserCreate", Blind)
    text = dfe_return().replace("<Message>", _XXE + "<Message>", 1)
    with pytest.raises(InputError) as err:
        read_one(tmp_path, recs, text, dfe_lsoa, year=2023, validate=False)
    assert err.value.rule == "dtd_not_allowed"
    assert "['xxe']" in str(err.value)


@pytest.mark.parametrize(
    ("old", "new", "element"),
    [
        ("<PersonBirthDate>2015-06-01<", "<PersonBirthDate>0000-01-01<", "PersonBirthDate"),
        ("<PersonBirthDate>2015-06-01<", "<PersonBirthDate>2015-13-01<", "PersonBirthDate"),
        ("<CINreferralDate>2022-05-01<", "<CINreferralDate>0000-05-01<", "CINreferralDate"),
        ("<CPPstartDate>2022-06-10<", "<CPPstartDate>1066-10-14<", "CPPstartDate"),
    ],
)
def test_impossible_dates_are_named_with_element_value_and_child(
    tmp_path, recs, dfe_lsoa, old, new, element
):
    text = dfe_return().replace(old, new)
    value = re.search(r">([^<]*)<", new).group(1)
    for validate in (False, None):  # without a schema 0000-01-01 was read as a date
        with pytest.raises(InputError) as err:
            read_one(tmp_path, recs, text, dfe_lsoa, year=2023, validate=validate)
        assert err.value.rule == "bad_date"
        assert f"LAchildID 'A1': {element} value {value!r}" in str(err.value)
    _, read = read_one(tmp_path, recs, text, dfe_lsoa, year=2023, errors="report", validate=False)
    assert read.excluded["bad_date"] >= 1
    assert read.episodes == read.passed + sum(read.excluded.values())


@pytest.mark.parametrize("year", ["0000", "1899", "2999"])
def test_an_impossible_collection_year_is_named(tmp_path, recs, dfe_lsoa, year):
    text = dfe_return().replace("<Year>2023</Year>", f"<Year>{year}</Year>")
    # was: dateutil's "month must be in 1..12: 0-03-31" from building the period
    with pytest.raises(InputError) as err:
        read_one(tmp_path, recs, text, dfe_lsoa, year=2023, validate=False)
    assert err.value.rule == "bad_year"
    assert f"Header/CollectionDetails/Year {year!r}" in str(err.value)


def test_another_collection_is_refused_without_a_schema(tmp_path, recs, dfe_lsoa):
    ssda = dfe_return().replace("<Collection>CIN<", "<Collection>SSDA903<")
    for validate in (False, None):  # without a schema (it was counted as CIN), and with
        with pytest.raises(InputError) as err:
            read_one(tmp_path, recs, ssda, dfe_lsoa, year=2023, validate=validate)
        assert err.value.rule == "wrong_collection"
        assert "'SSDA903', not 'CIN'" in str(err.value)
    none = dfe_return().replace("<Collection>CIN</Collection>", "")
    with pytest.raises(InputError) as err:
        read_one(tmp_path, recs, none, dfe_lsoa, year=2023, validate=False)
    assert err.value.rule == "missing_header"
    assert "Header/CollectionDetails/Collection" in str(err.value)


@pytest.fixture(scope="module")
def mini_lsoa(recs):
    lsoa = recs.geography.loc[recs.geography["la"] == "E06000001", "lsoa"].iloc[0]
    return pd.DataFrame({"la": "E06000001", "child_id": ["P1", "P2", "P3"], "lsoa": lsoa})


def test_referrals_count_in_the_period_they_were_made(tmp_path, recs, mini_lsoa):
    text = mini_return(
        2022,
        [
            ("P1", "2012-01-01", [("2019-06-01", None)]),  # referred 2019, still open
            (
                "P2",
                "2012-01-01",
                [
                    ("2021-02-01", "2021-05-01"),  # referred before, closed in
                    ("2021-10-01", None),
                ],
            ),  # a re-referral within 12 months
            ("P3", "2012-01-01", [("2021-04-01", "2022-03-31")]),  # the period's first day
        ],
    )
    back, read = read_one(tmp_path, recs, text, mini_lsoa)
    assert read.excluded["outside_period"] == 2
    assert read.passed == 2
    out = read.excluded_records
    assert sorted(out.loc[out["reason"] == "outside_period", "referral_date"]) == [
        "2019-06-01",
        "2021-02-01",
    ]
    table, _ = linkage.aggregate(back, by=())
    assert table["referrals"].sum() == 2  # P2 and P3, not P1's 2019 referral
    # the earlier referral outside the period still makes P2's a re-referral
    assert table["rereferrals"].sum() == 1
    # the same open episode in two years' returns: a referral of its own year only, and
    # not its own re-referral
    (tmp_path / "two").mkdir()
    for year in (2022, 2023):
        (tmp_path / "two" / f"r{year}.xml").write_text(
            mini_return(year, [("P1", "2012-01-01", [("2021-06-01", None)])])
        )
    pop = cx.default_population(recs.geography, [2022, 2023])
    back, read = cx.read_returns(tmp_path / "two", mini_lsoa, recs.geography, pop, validate=False)
    assert (read.passed, read.excluded["outside_period"]) == (1, 1)
    table, _ = linkage.aggregate(back, by=("year",))
    assert table.groupby("year")["referrals"].sum().to_dict() == {2022: 1, 2023: 0}
    assert table["rereferrals"].sum() == 0


def test_a_closure_before_its_referral_is_named_or_excluded(tmp_path, recs, mini_lsoa):
    text = mini_return(
        2022,
        [
            ("P1", "2012-01-01", [("2021-09-01", "2021-06-01")]),  # closed before referred
            ("P2", "2012-01-01", [("2021-10-01", "2021-12-01")]),
        ],
    )
    with pytest.raises(InputError) as err:
        read_one(tmp_path, recs, text, mini_lsoa)
    assert err.value.rule == "closure_before_referral"
    assert (
        "LAchildID 'P1': CINclosureDate value '2021-06-01 before CINreferralDate 2021-09-01'"
    ) in str(err.value)
    # errors="report": the episode is excluded (from durations too) and counted
    back, read = read_one(tmp_path, recs, text, mini_lsoa, errors="report")
    assert read.excluded["closure_before_referral"] == 1
    assert read.passed == 1
    table, _ = linkage.aggregate(back, by=())
    days = table.filter(like="days_").to_numpy()
    assert (days >= 0).all()
    assert days.sum() == 61 + 0.5  # P2's 61 days and a half, nothing from P1


def test_count_changing_rule_breaks_are_in_the_linkage_report(tmp_path, recs, mini_lsoa):
    """A deliberately broken return (issue 31): every count-changing DfE rule break is listed
    per file and rule, with how its records were counted, and nothing is dropped."""
    cp_before_referral = (
        "<CINdetails><CINreferralDate>2021-09-01</CINreferralDate><ReferralSource>6"
        "</ReferralSource><PrimaryNeedCode>N1</PrimaryNeedCode><ReferralNFA>0</ReferralNFA>"
        "<ChildProtectionPlans><CPPstartDate>2021-08-02</CPPstartDate>"
        "<InitialCategoryOfAbuse>NEG</InitialCategoryOfAbuse><LatestCategoryOfAbuse>NEG"
        "</LatestCategoryOfAbuse><NumberOfPreviousCPP>1</NumberOfPreviousCPP>"
        "</ChildProtectionPlans></CINdetails>"
    )
    text = mini_return(
        2022,
        [
            (
                "P1",
                "2012-01-01",
                [
                    ("2021-05-01", "2021-09-01"),  # overlapping episodes (8820)
                    ("2021-08-01", "2021-12-01"),
                ],
            ),
            ("P2", "2012-01-01", [("2021-10-01", "2022-04-04")]),  # closed after 31 March (8620)
            ("P2", "2012-01-01", [("2021-11-01", None)]),  # the same LAchildID again (8510)
            ("P3", "2012-01-01", [("2022-05-01", None)]),  # referred after the period (8600)
        ],
    )
    # P1 gets a third episode whose CP plan starts before its referral (1105)
    text = text.replace(
        "<ReferralNFA>0</ReferralNFA></CINdetails>\n</Child>",
        "<ReferralNFA>0</ReferralNFA></CINdetails>\n" + cp_before_referral + "</Child>",
        1,
    )
    # and an episode with no referral date (8600, missing_element)
    text = text.replace("<CINreferralDate>2021-11-01</CINreferralDate>", "", 1)
    back, read = read_one(tmp_path, recs, text, mini_lsoa, errors="report", validate=False)
    _, report = linkage.link(back)
    breaks = pd.DataFrame(list(report.rule_breaks))
    assert set(breaks["file"]) == {str(tmp_path / "r.xml")}
    got = dict(zip(breaks["code"], breaks["records"], strict=True))
    # P1's third episode (the CP one) overlaps both earlier ones: two overlapping records
    assert got == {"8510": 2, "8820": 2, "8620": 1, "8600": 2, "1105": 1}
    assert breaks["counted"].str.len().gt(20).all()
    assert report.to_dict()["rule_breaks"] == list(report.rule_breaks)
    pd.testing.assert_frame_equal(
        read.rule_breaks.reset_index(drop=True), breaks[list(read.rule_breaks.columns)]
    )
    # what the report says is what was counted: P3 and the episode without a referral date
    # are excluded and listed; P1's two overlapping episodes, P2's two blocks (one child) and
    # the CP plan starting before its referral all count
    assert read.excluded["outside_period"] == 1
    assert read.excluded["missing_element"] == 1
    assert read.episodes == read.passed + sum(read.excluded.values())
    assert report.read == report.linked + sum(report.unlinked.values())
    table, _ = linkage.aggregate(back, by=())
    assert table["referrals"].sum() == 2  # P1 and P2, once each
    assert table["cp_plans"].sum() == 1
    assert len(back.episodes) == 4
