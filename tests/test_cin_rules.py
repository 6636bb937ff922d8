"""CIN Census validation rules (issue 31): our own checks, the writer and simulator obey them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from lxml import etree

from socialgradient.data.census import codes, rules
from socialgradient.data.census import returns as cx
from socialgradient.data.census.write import upn_check_letter
from socialgradient.data.synthetic import timeline
from socialgradient.data.synthetic.records import simulate_records

YEARS = codes.YEARS


@pytest.fixture(scope="module")
def recs():
    return simulate_records(seed=11, years=YEARS, scale=0.04)


@pytest.fixture(scope="module")
def written(recs, tmp_path_factory):
    """Returns of four LAs, every supported year, and their tables."""
    las = recs.children["la"].value_counts().index[:4]
    keep = recs.children["la"].isin(las)
    ch = recs.children[keep]
    key = ch[["child_id", "year"]]
    sub = dataclasses.replace(
        recs, children=ch, episodes=recs.episodes.merge(key), factors=recs.factors.merge(key)
    )
    paths = cx.write_returns(sub, tmp_path_factory.mktemp("cin_rules"))
    return {p: rules.return_tables(etree.parse(str(p)).getroot()) for p in paths}


def test_rules_table_is_well_formed():
    assert len({r.code for r in rules.RULES}) == len(rules.RULES)
    for r in rules.RULES:
        assert r.kind in ("error", "query")
        assert r.kind == "query" if r.code.endswith("Q") else r.kind == "error"
        assert YEARS[0] <= r.years[0] <= r.years[1] <= YEARS[-1]
        assert r.description
    assert {"8510", "8820", "8565", "8600", "8620"} <= set(rules.COUNT_CHANGING)


def test_written_returns_break_no_error_rule(written):
    assert {t["year"] for t in written.values()} == set(YEARS)
    for path, t in written.items():
        found = rules.check_return(t)
        errors = found[found["kind"] == "error"]
        assert errors.empty, (path.name, errors["code"].value_counts().to_dict())


def test_query_rates_stay_low(written):
    """Query rules fire at the stated rates (data/README.md), measured per child."""
    n = sum(len(t["children"]) for t in written.values())
    found = pd.concat([rules.check_return(t).assign(f=str(p)) for p, t in written.items()])
    queries = found[found["kind"] == "query"].drop_duplicates(["f", "code", "LAchildID"])
    rate = queries["code"].value_counts() / n
    assert set(rate.index) <= {"8770Q", "8897Q", "4012Q"}, rate.to_dict()
    assert rate.get("8770Q", 0) < 0.03
    assert rate.get("8897Q", 0) < 0.15
    assert rate.get("4012Q", 0) < 0.01


# each rule fails on a return broken for it (the checks can fail)
def _one(year=2023, child="", details="") -> str:
    return (
        f"<Message><Header><CollectionDetails><Collection>CIN</Collection><Year>{year}"
        f"</Year><ReferenceDate>{year}-03-31</ReferenceDate></CollectionDetails></Header>"
        f"<Children><Child><ChildIdentifiers><LAchildID>A1</LAchildID>{child}"
        "<GenderCurrent>1</GenderCurrent></ChildIdentifiers>"
        f"<ChildCharacteristics><Ethnicity>WBRI</Ethnicity></ChildCharacteristics>{details}"
        "</Child></Children></Message>"
    )


CP = (
    "<CINdetails><CINreferralDate>2022-06-01</CINreferralDate>"
    "<CINclosureDate>{close}</CINclosureDate><ReasonForClosure>RC7</ReasonForClosure>"
    "{cin_icpc}<Assessments><AssessmentActualStartDate>2022-06-02</AssessmentActualStartDate>"
    "<AssessmentAuthorisationDate>2022-06-03</AssessmentAuthorisationDate>"
    "<FactorsIdentifiedAtAssessment><AssessmentFactors>16A</AssessmentFactors>"
    "</FactorsIdentifiedAtAssessment></Assessments>"
    "<CINPlanDates><CINPlanStartDate>{cin}</CINPlanStartDate>"
    "<CINPlanEndDate>{cin_end}</CINPlanEndDate></CINPlanDates>"
    "<Section47><S47ActualStartDate>2022-06-02</S47ActualStartDate>"
    "<InitialCPCtarget>2022-06-23</InitialCPCtarget><DateOfInitialCPC>{icpc}"
    "</DateOfInitialCPC><ICPCnotRequired>false</ICPCnotRequired></Section47>"
    "<ReferralNFA>0</ReferralNFA><ChildProtectionPlans><CPPstartDate>{icpc}</CPPstartDate>"
    "<CPPendDate>{end}</CPPendDate><InitialCategoryOfAbuse>NEG</InitialCategoryOfAbuse>"
    "<LatestCategoryOfAbuse>NEG</LatestCategoryOfAbuse><NumberOfPreviousCPP>1"
    "</NumberOfPreviousCPP></ChildProtectionPlans></CINdetails>"
)
GOOD = dict(
    close="2022-12-01",
    cin_icpc="",
    cin="2022-06-03",
    cin_end="2022-06-08",
    icpc="2022-06-08",
    end="2022-12-01",
)
DOB = "<PersonBirthDate>2012-01-01</PersonBirthDate>"


@pytest.mark.parametrize(
    ("expected", "child", "change"),
    [
        (set(), DOB, {}),
        ({"2884"}, DOB, {"cin_icpc": "<DateOfInitialCPC>2022-06-08</DateOfInitialCPC>"}),
        ({"8875"}, DOB, {"icpc": "2022-06-11", "cin_end": "2022-06-11"}),  # a Saturday
        ({"8840"}, DOB, {"end": "2022-06-08", "close": "2022-06-08"}),
        ({"4016", "4012Q"}, DOB, {"cin": "2022-06-08"}),
        ({"4012Q"}, DOB, {"cin_end": "2022-06-03"}),
        ({"8606"}, "<PersonBirthDate>2023-03-30</PersonBirthDate>", {}),
        ({"8565"}, DOB, {"close": "2022-06-07", "end": "2022-06-09"}),
        (
            {"1105", "1104", "4015"},
            DOB,
            {"icpc": "2022-05-31", "cin": "2022-05-30", "cin_end": "2022-05-31"},
        ),
        ({"8620", "8930"}, DOB, {"close": "2023-04-03", "end": "2023-04-03"}),
        ({"8770Q"}, DOB, None),
        ({"1510"}, "<UPN>B123456789012</UPN>" + DOB, {}),
    ],
)
def test_each_rule_finds_its_break(expected, child, change):
    digits = "805212345678"
    upn = (
        ""
        if change is None or "UPN" in child
        else (f"<UPN>{upn_check_letter(digits)}{digits}</UPN>")
    )
    details = CP.format(**{**GOOD, **(change or {})})
    t = rules.return_tables(etree.fromstring(_one(child=upn + child, details=details)))
    assert set(rules.check_return(t)["code"]) == expected


def _child(
    year, ids="<LAchildID>A1</LAchildID>", gender=None, dob="2012-01-01", upn=True, factor="16A"
):
    """One child with one closed episode (assessment only) in a return of ``year``."""
    tag = codes.gender_element(year)
    g = gender if gender is not None else f"<{tag}>{'M' if tag == 'Sex' else '1'}</{tag}>"
    digits = "805212345678"
    u = f"<UPN>{upn_check_letter(digits)}{digits}</UPN>" if upn else ""
    y0 = year - 1
    return (
        f"<Message><Header><CollectionDetails><Collection>CIN</Collection><Year>{year}"
        f"</Year><ReferenceDate>{year}-03-31</ReferenceDate></CollectionDetails></Header>"
        f"<Children><Child><ChildIdentifiers>{ids}{u}<PersonBirthDate>{dob}"
        f"</PersonBirthDate>{g}</ChildIdentifiers><ChildCharacteristics><Ethnicity>WBRI"
        f"</Ethnicity></ChildCharacteristics><CINdetails><CINreferralDate>{y0}-06-01"
        f"</CINreferralDate><CINclosureDate>{y0}-07-01</CINclosureDate><ReasonForClosure>"
        f"RC8</ReasonForClosure><Assessments><AssessmentActualStartDate>{y0}-06-02"
        f"</AssessmentActualStartDate><AssessmentAuthorisationDate>{y0}-06-20"
        "</AssessmentAuthorisationDate><FactorsIdentifiedAtAssessment><AssessmentFactors>"
        f"{factor}</AssessmentFactors></FactorsIdentifiedAtAssessment></Assessments>"
        "<ReferralNFA>0</ReferralNFA></CINdetails></Child></Children></Message>"
    )


# the 2024-25 (2025) and 2025-26 (2026) collections: no XSD, their rules only
@pytest.mark.parametrize("year", codes.RULES_ONLY_YEARS)
@pytest.mark.parametrize(
    ("expected", "kw"),
    [
        (set(), {}),
        ({"4180"}, {"gender": "<GenderCurrent>1</GenderCurrent>"}),  # GenderCurrent, not Sex
        ({"4180"}, {"gender": "<Sex>1</Sex>"}),
        ({"1570"}, {"ids": f"<LAchildID>{'A' * 21}</LAchildID>"}),
        ({"1580"}, {"ids": "<LAchildID>A-1</LAchildID>"}),
        ({"8945Q"}, {"factor": "18A"}),
        ({"8950Q"}, {"factor": "19A"}),
        # 8770Q from 2024-25: of school age on 31 August after the year (born <= 31 Aug, -6 y)
        ({"8770Q"}, {"upn": False, "dob": "{y6}-08-31"}),
        (set(), {"upn": False, "dob": "{y6}-09-01"}),
    ],
)
def test_rules_of_the_newer_collections(year, expected, kw):
    kw = {k: v.format(y6=year - 6) if isinstance(v, str) else v for k, v in kw.items()}
    t = rules.return_tables(etree.fromstring(_child(year, **kw)))
    assert set(rules.check_return(t)["code"]) == expected


@pytest.mark.parametrize(
    ("expected", "kw"),
    [
        (set(), {}),
        ({"4180"}, {"gender": "<Sex>M</Sex>"}),  # Sex before 2024-25: GenderCurrent missing
        (set(), {"ids": "<LAchildID>A-1</LAchildID>", "factor": "18B"}),  # 1580: 2025 on
        # 8770Q before 2024-25: aged 6 or more on 31 March
        (set(), {"upn": False, "dob": "2017-08-31"}),
        ({"8770Q"}, {"upn": False, "dob": "2017-03-31"}),
    ],
)
def test_newer_rules_do_not_apply_before_2025(expected, kw):
    t = rules.return_tables(etree.fromstring(_child(2023, **kw)))
    assert set(rules.check_return(t)["code"]) == expected


def test_year_labels_and_rules_only_years(written):
    """Our year is the 31 March ending the collection (2024: 2023-24); 2025 and 2026 have no
    XSD, are written with Sex and break no rule of theirs (checked above, every year)."""
    assert codes.YEARS[-2:] == codes.RULES_ONLY_YEARS == (2025, 2026)
    assert set(codes.SCHEMAS) == set(codes.SCHEMA_YEARS) == set(range(2019, 2025))
    assert {codes.gender_element(y) for y in codes.RULES_ONLY_YEARS} == {"Sex"}
    assert {codes.gender_element(y) for y in codes.SCHEMA_YEARS} == {"GenderCurrent"}
    new = [t for t in written.values() if t["year"] in codes.RULES_ONLY_YEARS]
    assert {t["year"] for t in new} == set(codes.RULES_ONLY_YEARS)
    for t in new:
        assert set(t["children"]["sex"]) <= {"M", "F"}
        assert t["children"]["gender"].isna().all()
        assert t["period"] == (
            pd.Timestamp(f"{t['year'] - 1}-04-01"),
            pd.Timestamp(f"{t['year']}-03-31"),
        )
        found = rules.check_return(t)
        assert not set(found["code"]) & {"4180", "1570", "1580", "8945Q", "8950Q"}
    msg = codes.validate_return("x.xml", object(), 2025, None, None)
    assert msg[0] == []
    assert "no DfE XSD for the 2024-25 collection" in msg[1]


def test_writer_refuses_ids_the_newer_rules_refuse(recs, tmp_path):
    from socialgradient.data.schema import InputError

    ch = recs.children[recs.children["year"] == codes.RULES_ONLY_YEARS[0]].head(3)
    ch = ch.assign(child_id=ch["child_id"].astype(str) + "-x")
    sub = dataclasses.replace(
        recs, children=ch, episodes=recs.episodes.iloc[:0], factors=recs.factors.iloc[:0]
    )
    with pytest.raises(InputError, match="1580"):
        cx.write_returns(sub, tmp_path)


def test_dfe_upn_check_letter():
    # DfE UPN guide: weights 2-13 on characters 2-13, remainder mod 23 -> letter (no I, O, S)
    digits = "801200100000"
    total = sum(int(c) * w for c, w in zip(digits, range(2, 14), strict=True))
    assert upn_check_letter(digits) == "ABCDEFGHJKLMNPQRTUVWXYZ"[total % 23]
    assert len(set(rules._UPN_CHECK)) == 23
    assert not set("IOS") & set(rules._UPN_CHECK)


def test_simulated_dates_are_ones_services_record(recs):
    e = recs.episodes
    cp = e[e["cp_plan_start"].notna()]
    assert (cp["cp_plan_start"].dt.day_of_week < 5).all()  # 8875: no weekend conference
    ended = cp["cp_plan_end"].notna()
    assert (cp.loc[ended, "cp_plan_end"] > cp.loc[ended, "cp_plan_start"]).all()  # 8840
    assert (cp["cin_plan_start"] < cp["cp_plan_start"]).all()  # 4016/4001, every year
    assert (cp["cin_plan_end"] == cp["cp_plan_start"]).all()
    m = e.merge(recs.children[["child_id", "year", "date_of_birth"]], on=["child_id", "year"])
    assert (m["referral_date"] >= m["date_of_birth"] - pd.Timedelta(days=280)).all()  # 8606
    closed = e["closure_date"].notna()
    reason = e.loc[closed, "closure_reason"]
    assert (reason[e.loc[closed, "referral_nfa"]] == "RC7").all()  # 8825Q: RC8 needs an assessment
    rc8 = closed & (e["closure_reason"] == "RC8")
    assert e.loc[rc8, "assessment"].all()
    assert (e.loc[rc8, "outcome"] == "nfa").all()


def test_cp_dates_move_as_documented():
    d = np.datetime64
    first, census = d("2022-04-01"), d("2023-03-31")
    ref = np.array(["2022-06-01", "2022-06-01", "2023-03-31", "2022-04-01"], "datetime64[D]")
    cin = np.array(["2022-06-02", "2022-06-03", "2023-03-31", "2022-04-01"], "datetime64[D]")
    want = np.array(["2022-06-04", "2022-06-03", "2023-03-31", "2022-04-01"], "datetime64[D]")
    clo = np.array(["2022-07-01", "2022-06-06", "NaT", "2022-04-02"], "datetime64[D]")
    t = timeline.cp_dates(ref, cin, cin, want, clo, first, census)
    assert list(t["cp_start"]) == list(
        np.array(["2022-06-06", "2022-06-03", "2023-03-31", "2022-04-04"], "datetime64[D]")
    )
    # a Saturday ICPC moves to Monday; one that cannot follow the CIN plan start within the
    # episode moves back (with the CIN plan start); a closure on 2 April moves after the ICPC
    assert t["cin_start"][1] == d("2022-06-02")
    assert t["referral"][1] == d("2022-06-01")
    assert t["cin_start"][2] == d("2023-03-30")
    assert t["referral"][2] == d("2023-03-30")
    assert list(t["extended"]) == [False, False, False, True]
    assert t["closure"][3] == d("2022-04-05")
    assert (np.busday_offset(t["cp_start"], 0, roll="forward") == t["cp_start"]).all()
