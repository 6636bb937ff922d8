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
    sub = dataclasses.replace(recs, children=ch, episodes=recs.episodes.merge(key),
                              factors=recs.factors.merge(key))
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
    return (f"<Message><Header><CollectionDetails><Collection>CIN</Collection><Year>{year}"
            f"</Year><ReferenceDate>{year}-03-31</ReferenceDate></CollectionDetails></Header>"
            f"<Children><Child><ChildIdentifiers><LAchildID>A1</LAchildID>{child}"
            "<GenderCurrent>1</GenderCurrent></ChildIdentifiers>"
            f"<ChildCharacteristics><Ethnicity>WBRI</Ethnicity></ChildCharacteristics>{details}"
            "</Child></Children></Message>")


CP = ("<CINdetails><CINreferralDate>2022-06-01</CINreferralDate>"
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
      "</NumberOfPreviousCPP></ChildProtectionPlans></CINdetails>")
GOOD = dict(close="2022-12-01", cin_icpc="", cin="2022-06-03", cin_end="2022-06-08",
            icpc="2022-06-08", end="2022-12-01")
DOB = "<PersonBirthDate>2012-01-01</PersonBirthDate>"


@pytest.mark.parametrize(("expected", "child", "change"), [
    (set(), DOB, {}),
    ({"2884"}, DOB, {"cin_icpc": "<DateOfInitialCPC>2022-06-08</DateOfInitialCPC>"}),
    ({"8875"}, DOB, {"icpc": "2022-06-11", "cin_end": "2022-06-11"}),  # a Saturday
    ({"8840"}, DOB, {"end": "2022-06-08", "close": "2022-06-08"}),
    ({"4016", "4012Q"}, DOB, {"cin": "2022-06-08"}),
    ({"4012Q"}, DOB, {"cin_end": "2022-06-03"}),
    ({"8606"}, "<PersonBirthDate>2023-03-30</PersonBirthDate>", {}),
    ({"8565"}, DOB, {"close": "2022-06-07", "end": "2022-06-09"}),
    ({"1105", "1104", "4015"}, DOB, {"icpc": "2022-05-31", "cin": "2022-05-30",
                                     "cin_end": "2022-05-31"}),
    ({"8620", "8930"}, DOB, {"close": "2023-04-03", "end": "2023-04-03"}),
    ({"8770Q"}, DOB, None),
    ({"1510"}, "<UPN>B123456789012</UPN>" + DOB, {}),
])
def test_each_rule_finds_its_break(expected, child, change):
    digits = "805212345678"
    upn = "" if change is None or "UPN" in child else (
        f"<UPN>{upn_check_letter(digits)}{digits}</UPN>")
    details = CP.format(**{**GOOD, **(change or {})})
    t = rules.return_tables(etree.fromstring(_one(child=upn + child, details=details)))
    assert set(rules.check_return(t)["code"]) == expected


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
    assert list(t["cp_start"]) == list(np.array(
        ["2022-06-06", "2022-06-03", "2023-03-31", "2022-04-04"], "datetime64[D]"))
    # a Saturday ICPC moves to Monday; one that cannot follow the CIN plan start within the
    # episode moves back (with the CIN plan start); a closure on 2 April moves after the ICPC
    assert t["cin_start"][1] == d("2022-06-02")
    assert t["referral"][1] == d("2022-06-01")
    assert t["cin_start"][2] == d("2023-03-30")
    assert t["referral"][2] == d("2023-03-30")
    assert list(t["extended"]) == [False, False, False, True]
    assert t["closure"][3] == d("2022-04-05")
    assert (np.busday_offset(t["cp_start"], 0, roll="forward") == t["cp_start"]).all()
