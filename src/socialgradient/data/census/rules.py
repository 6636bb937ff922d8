"""The DfE CIN Census validation rules we rely on, as data (issue 31); over 400 lines because
the rules are data: 49 short check functions side by side, each read against its message.

The DfE publishes, with each year's census specification, validation rules a return must pass
to be accepted: **errors** (which block it) and **queries** (which the LA must explain). An
open implementation, ``csc-validator-be-cin`` (data-to-insight), runs them all in the slow
tier (``tests/test_cin_rules_validator.py``). This module is our own implementation of the
rules the writer and the simulator must obey, and of those that change what the reader
counts, so the default tier checks them without that tool.

:data:`RULES`: one :class:`Rule` per DfE rule code -- ``code``, ``years`` (first and last
collection year it applies to, among 2019-2026; years are labelled by the 31 March ending
the collection, so 2025 is the 2024-25 collection), ``kind`` (``error`` or ``query``),
``description`` (DfE's message, shortened), ``check`` (a function of the return's tables and
its collection period giving the offending rows, each with ``LAchildID``) and ``counted``
(for rules whose break changes the counts, how the reader counts such records; None for the
others). :func:`return_tables` turns a parsed return into the tables (``children``, ``cin``,
``assessments``, ``factors``, ``plans``, ``s47``, ``cpp``; one row per element, dates parsed,
``ep`` numbering the episodes of the return); :func:`check_return` runs the rules of the
year; :func:`rule_breaks` counts the breaks of the count-changing rules per file.

The 2024-25 and 2025-26 collections (2025, 2026) have no XSD at hand, so these rules and the
open implementation's (its rulesets ``cin2024_25`` and ``cin2025_26``, the same rules) are
all their returns are checked against. What changed in 2024-25: ``Sex`` (``M``, ``F``,
``U``) replaces ``GenderCurrent`` (4180; 8750 and 2886Q too), the LA child ID has at most 20
characters, all alphanumeric (1570, 1580), the UPN query 8770Q covers children of school age
on 31 August after the reference date (born on or before 31 August six years before it), and
assessment factors 18A and 19A are queried (8945Q, 8950Q).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd

from socialgradient.data.census import codes as cc

DAY = pd.Timedelta(days=1)
_UPN_CHECK = "ABCDEFGHJKLMNPQRTUVWXYZ"

_CHILD = {
    "LAchildID": "id",
    "UPN": "upn",
    "UPNunknown": "upn_unknown",
    "PersonBirthDate": "dob",
    "ExpectedPersonBirthDate": "expected_dob",
    "GenderCurrent": "gender",
    "Sex": "sex",
}
_CIN = {
    "CINreferralDate": "referral",
    "ReferralSource": "source",
    "PrimaryNeedCode": "need",
    "CINclosureDate": "closure",
    "ReasonForClosure": "reason",
    "DateOfInitialCPC": "icpc",
    "ReferralNFA": "nfa",
}
_ASS = {"AssessmentActualStartDate": "start", "AssessmentAuthorisationDate": "auth"}
_PLAN = {"CINPlanStartDate": "start", "CINPlanEndDate": "end"}
_S47 = {
    "S47ActualStartDate": "start",
    "InitialCPCtarget": "target",
    "DateOfInitialCPC": "icpc",
    "ICPCnotRequired": "not_required",
}
_CPP = {
    "CPPstartDate": "start",
    "CPPendDate": "end",
    "InitialCategoryOfAbuse": "initial",
    "LatestCategoryOfAbuse": "latest",
    "NumberOfPreviousCPP": "previous",
}
_DATES = {"dob", "expected_dob", "referral", "closure", "icpc", "start", "auth", "end", "target"}


def _frame(rows: list[dict], columns) -> pd.DataFrame:
    t = pd.DataFrame(rows, columns=list(columns))
    for c in t.columns:
        if c in _DATES:
            t[c] = pd.to_datetime(t[c], format="%Y-%m-%d", errors="coerce")
    return t


def _leaves(el, names: dict) -> dict:
    """``{column: text}`` of ``el``'s leaf children named in ``names`` (one pass; the first
    of a repeated tag; blank text is None)."""
    out = dict.fromkeys(names.values())
    for x in el:
        c = names.get(x.tag)
        if c is not None and out[c] is None:
            v = (x.text or "").strip()
            out[c] = v or None
    return out


def return_tables(root) -> dict:
    """Tables of one parsed return (lxml or ElementTree root ``Message``), as in the module
    docstring, plus ``year`` and the collection ``period`` (first day, ``ReferenceDate``)."""
    year = int(root.findtext("Header/CollectionDetails/Year"))
    ref = root.findtext("Header/CollectionDetails/ReferenceDate") or f"{year}-03-31"
    t: dict = {k: [] for k in ("children", "cin", "assessments", "factors", "plans", "s47", "cpp")}
    blocks = (
        ("CINPlanDates", "plans", _PLAN),
        ("Section47", "s47", _S47),
        ("ChildProtectionPlans", "cpp", _CPP),
    )
    ep = 0
    kids = root.find("Children")
    for child in [] if kids is None else kids.iterfind("Child"):
        ids = child.find("ChildIdentifiers")
        row = _leaves(ids, _CHILD) if ids is not None else dict.fromkeys(_CHILD.values())
        t["children"].append({**row, "line": getattr(child, "sourceline", None)})
        cid = row["id"]
        for d in child.iterfind("CINdetails"):
            t["cin"].append(
                {
                    "LAchildID": cid,
                    "ep": ep,
                    "line": getattr(d, "sourceline", None),
                    **_leaves(d, _CIN),
                }
            )
            for x in d:
                if x.tag == "Assessments":
                    t["assessments"].append({"LAchildID": cid, "ep": ep, **_leaves(x, _ASS)})
                    k = len(t["assessments"]) - 1
                    for f in x.iterfind("FactorsIdentifiedAtAssessment/AssessmentFactors"):
                        t["factors"].append(
                            {
                                "LAchildID": cid,
                                "ep": ep,
                                "assessment": k,
                                "factor": (f.text or "").strip(),
                            }
                        )
                for tag, name, cols in blocks:
                    if x.tag == tag:
                        t[name].append({"LAchildID": cid, "ep": ep, **_leaves(x, cols)})
            ep += 1
    cols = {
        "children": [*_CHILD.values(), "line"],
        "cin": ["LAchildID", "ep", "line", *_CIN.values()],
        "assessments": ["LAchildID", "ep", *_ASS.values()],
        "factors": ["LAchildID", "ep", "assessment", "factor"],
        "plans": ["LAchildID", "ep", *_PLAN.values()],
        "s47": ["LAchildID", "ep", *_S47.values()],
        "cpp": ["LAchildID", "ep", *_CPP.values()],
    }
    out = {k: _frame(v, cols[k]) for k, v in t.items()}
    out["children"] = out["children"].rename(columns={"id": "LAchildID"})
    end = pd.Timestamp(ref)
    out["year"], out["period"] = year, (end - pd.DateOffset(years=1) + DAY, end)
    return out


# -- checks: each takes the tables and returns the offending rows (with LAchildID) ------------


def _with_cin(t, name):
    return t[name].merge(t["cin"][["ep", "referral", "closure", "reason", "nfa"]], on="ep")


def _outside(s: pd.Series, period) -> pd.Series:
    return s.notna() & ((s < period[0]) | (s > period[1]))


def _before_referral(name, col="start"):
    def check(t):
        m = _with_cin(t, name)
        return m[m[col] < m["referral"]]

    return check


def _after_closure(t):
    out = []
    for name in ("assessments", "plans", "s47", "cpp"):
        m = _with_cin(t, name)
        out.append(m.loc[m["start"] > m["closure"], ["LAchildID", "ep"]])
    return pd.concat(out)


def _activity(t, episodes: pd.Series):
    """Rows of assessments, plans, S47s and CP plans of the episodes flagged in ``episodes``."""
    eps = set(t["cin"].loc[episodes, "ep"])
    parts = [
        t[n].loc[t[n]["ep"].isin(eps), ["LAchildID", "ep"]]
        for n in ("assessments", "plans", "s47", "cpp")
    ]
    return pd.concat(parts)


def _overlap(df: pd.DataFrame, start: str, end: str, open_end) -> pd.DataFrame:
    """Rows whose [start, end) overlaps another row of the same child (end NaT: open_end)."""
    d = df.assign(_e=df[end].fillna(open_end)).sort_values(["LAchildID", start])
    prev_end = d.groupby("LAchildID")["_e"].cummax().groupby(d["LAchildID"]).shift()
    return d[d[start] < prev_end]


def _cin_overlap(t):
    c = t["cin"]
    return _overlap(c[c["referral"].notna()], "referral", "closure", t["period"][1] + DAY)


def _concurrent_cin_cp(t):
    m = t["plans"].merge(t["cpp"], on="LAchildID", suffixes=("_cin", "_cp"))
    cp_end = m["end_cp"].fillna(t["period"][1] + DAY)
    bad = (m["start_cin"] >= m["start_cp"]) & (m["start_cin"] < cp_end)
    return m[bad]


def _open_cin_plan_with_open_cp(t):
    m = t["cpp"].merge(t["plans"], on=["LAchildID", "ep"], suffixes=("_cp", "_cin"))
    return m[m["end_cp"].isna() & m["start_cin"].notna() & m["end_cin"].isna()]


def _upn_check(t):
    u = t["children"]["upn"].dropna()
    u = u[u.str.fullmatch(r"[A-Za-z]\d{12}")]
    total = sum(u.str[i].astype(int) * (i + 1) for i in range(1, 13)) % 23
    bad = u.str[0].str.upper() != total.map(lambda k: _UPN_CHECK[k])
    return t["children"].loc[bad[bad].index]


def _upn_missing(t):
    ch = t["children"]
    further = set(t["cin"].loc[t["cin"]["nfa"].isin(["0", "false"]), "LAchildID"])
    ref = t["period"][1]
    if t["year"] >= SEX_YEARS[0]:  # 2024-25 on: of school age on 31 August after the year
        six = ch["dob"] <= ref + pd.DateOffset(months=4, days=31) - pd.DateOffset(years=6)
    else:
        six = ch["dob"] <= ref - pd.DateOffset(years=6)
    no = ch["upn"].isna() & ~ch["upn_unknown"].isin(["UN2", "UN3", "UN4", "UN5", "UN6", "UN7"])
    return ch[six & no & ch["LAchildID"].isin(further)]


def _no_factors(t):
    a = t["assessments"].assign(k=np.arange(len(t["assessments"])))
    done = a["auth"].notna() & (a["auth"] >= t["period"][0])
    has = a["k"].isin(t["factors"].loc[t["factors"]["factor"].isin(cc.FACTOR_CODES), "assessment"])
    return a[done & ~has]


def _factor_21_not_closed(t):
    a = t["assessments"].assign(k=np.arange(len(t["assessments"])))
    single = ~a["ep"].duplicated(keep=False)
    with21 = a["k"].isin(t["factors"].loc[t["factors"]["factor"] == "21", "assessment"])
    m = a[single & with21].merge(t["cin"][["ep", "reason"]], on="ep")
    return m[~m["reason"].isin(["RC8", "RC9"])]


def _factor_21_with_others(t):
    f = t["factors"]
    n = f.groupby("assessment")["factor"].transform("size")
    return f[(f["factor"] == "21") & (n > 1)]


def _gender_invalid(t):
    tag = cc.gender_element(t["year"])
    col = t["children"]["sex" if tag == "Sex" else "gender"]
    return t["children"][~col.isin(cc.GENDER_VALID[tag])]


def _rows(mask_fn, name):
    def check(t):
        return t[name][mask_fn(t[name], t)]

    return check


class Rule(NamedTuple):
    code: str
    years: tuple[int, int]
    kind: str
    description: str
    check: Callable
    counted: str | None = None


ALL_YEARS = (cc.YEARS[0], cc.YEARS[-1])
PLAN_YEARS = (min(y for y, v in cc.HAS_CIN_PLAN_DATES.items() if v), cc.YEARS[-1])
#: Collections with ``Sex`` and the 2024-25 rules (1570, 1580, 8945Q, 8950Q).
SEX_YEARS = (cc.SEX_FROM, cc.YEARS[-1])

#: How the reader counts the records of each count-changing rule.
COUNTED = {
    "duplicate_child": (
        "the episodes of every Child block with the ID are one child's: it "
        "counts once per threshold when the blocks agree on birth date, gender "
        "and ethnicity, otherwise each episode is unlinked (ambiguous_child)"
    ),
    "overlap": (
        "each episode counts as a referral of the year; the child counts once per "
        "threshold; only the child's latest episode of the year enters durations"
    ),
    "outside_episode": (
        "counted as recorded: the plan or activity counts for the child in the year of its episode"
    ),
    "referral_outside": (
        "the episode is excluded from every count (reader rule "
        "outside_period; missing: missing_element) and listed"
    ),
    "date_outside": (
        "counted as recorded: a closure after 31 March still ends the episode's "
        "duration; a CP plan start or end outside the year still counts for the "
        "episode's year"
    ),
}

RULES: tuple[Rule, ...] = (
    Rule(
        "100",
        ALL_YEARS,
        "error",
        "Reference date is not 31 March of the collection year",
        lambda t: (
            pd.DataFrame({"LAchildID": []})
            if t["period"][1] == pd.Timestamp(f"{t['year']}-03-31")
            else pd.DataFrame({"LAchildID": [None]})
        ),
    ),
    Rule(
        "1103",
        ALL_YEARS,
        "error",
        "Assessment start before the referral date",
        _before_referral("assessments"),
        COUNTED["outside_episode"],
    ),
    Rule(
        "1104",
        ALL_YEARS,
        "error",
        "Initial CP conference before the referral date",
        _before_referral("s47", "icpc"),
        COUNTED["outside_episode"],
    ),
    Rule(
        "1105",
        ALL_YEARS,
        "error",
        "CP plan start before the referral date",
        _before_referral("cpp"),
        COUNTED["outside_episode"],
    ),
    Rule("1510", ALL_YEARS, "error", "UPN check letter wrong", _upn_check),
    Rule(
        "1570",
        SEX_YEARS,
        "error",
        "LA child ID longer than 20 characters",
        _rows(lambda c, t: c["LAchildID"].fillna("").str.len() > 20, "children"),
    ),
    Rule(
        "1580",
        SEX_YEARS,
        "error",
        "LA child ID with a non-alphanumeric character",
        _rows(
            lambda c, t: c["LAchildID"].notna() & ~c["LAchildID"].fillna("").str.isalnum(),
            "children",
        ),
    ),
    Rule(
        "1520",
        ALL_YEARS,
        "error",
        "More than one record with the same UPN",
        _rows(lambda c, t: c["upn"].notna() & c["upn"].duplicated(keep=False), "children"),
    ),
    Rule(
        "2884",
        ALL_YEARS,
        "error",
        "Initial CP conference recorded at both S47 and CINdetails level",
        lambda t: (
            t["cin"][["LAchildID", "icpc"]]
            .dropna()
            .merge(t["s47"][["LAchildID", "icpc"]], on=["LAchildID", "icpc"])
        ),
    ),
    Rule(
        "2885",
        ALL_YEARS,
        "error",
        "CP plan starts on another day than the initial CP conference",
        lambda t: (lambda m: m[m["start"] != m["icpc"]])(
            t["cpp"].merge(t["s47"][["ep", "icpc"]].dropna(), on="ep")
        ),
    ),
    Rule(
        "2889",
        ALL_YEARS,
        "error",
        "S47 start before the referral date",
        _before_referral("s47"),
        COUNTED["outside_episode"],
    ),
    Rule(
        "2990",
        ALL_YEARS,
        "error",
        "Activity (CIN plan, S47, CP plan) on a case closed "
        "after assessment with no further action (RC8/RC9)",
        lambda t: pd.concat(
            [
                t[n].loc[
                    t[n]["ep"].isin(t["cin"].loc[t["cin"]["reason"].isin(["RC8", "RC9"]), "ep"]),
                    ["LAchildID"],
                ]
                for n in ("plans", "s47", "cpp")
            ]
        ),
    ),
    Rule(
        "4000",
        PLAN_YEARS,
        "error",
        "CIN plan on a referral with no further action",
        lambda t: _activity(t, t["cin"]["nfa"].isin(["1", "true"])).pipe(
            lambda a: a[a["ep"].isin(t["plans"]["ep"])]
        ),
    ),
    Rule(
        "4001",
        PLAN_YEARS,
        "error",
        "A CIN plan open beside an open CP plan",
        _open_cin_plan_with_open_cp,
    ),
    Rule(
        "4011",
        PLAN_YEARS,
        "error",
        "CIN plan end before its start",
        _rows(lambda p, t: p["end"] < p["start"], "plans"),
    ),
    Rule(
        "4012Q",
        PLAN_YEARS,
        "query",
        "CIN plan starts and ends on the same day",
        _rows(lambda p, t: p["end"] == p["start"], "plans"),
    ),
    Rule(
        "4013",
        PLAN_YEARS,
        "error",
        "CIN plan end outside the collection year",
        _rows(lambda p, t: _outside(p["end"], t["period"]), "plans"),
        COUNTED["date_outside"],
    ),
    Rule(
        "4015",
        PLAN_YEARS,
        "error",
        "CIN plan start before the referral date",
        _before_referral("plans"),
        COUNTED["outside_episode"],
    ),
    Rule(
        "4016", PLAN_YEARS, "error", "A CIN plan starts while a CP plan is open", _concurrent_cin_cp
    ),
    Rule(
        "4180",
        ALL_YEARS,
        "error",
        "GenderCurrent (to 2024: 0, 1, 2, 9) or Sex (2025 on: M, F, U) missing or invalid",
        _gender_invalid,
    ),
    Rule(
        "8510",
        ALL_YEARS,
        "error",
        "More than one child record with the same LA child ID",
        _rows(lambda c, t: c["LAchildID"].duplicated(keep=False), "children"),
        COUNTED["duplicate_child"],
    ),
    Rule(
        "8520",
        ALL_YEARS,
        "error",
        "Date of birth after the collection year",
        _rows(lambda c, t: c["dob"] > t["period"][1], "children"),
    ),
    Rule(
        "8565",
        ALL_YEARS,
        "error",
        "Activity (assessment, CIN plan, S47, CP plan) after the case was closed",
        _after_closure,
        COUNTED["outside_episode"],
    ),
    Rule(
        "8600",
        ALL_YEARS,
        "error",
        "Referral date missing or after the collection year",
        _rows(lambda c, t: c["referral"].isna() | (c["referral"] > t["period"][1]), "cin"),
        COUNTED["referral_outside"],
    ),
    Rule(
        "8606",
        ALL_YEARS,
        "error",
        "Referral more than 40 weeks before the date of birth",
        lambda t: (
            lambda m: m[m["referral"] < m["dob"].fillna(m["expected_dob"]) - pd.Timedelta(days=280)]
        )(t["cin"].merge(t["children"][["LAchildID", "dob", "expected_dob"]], on="LAchildID")),
    ),
    Rule(
        "8608",
        ALL_YEARS,
        "error",
        "Assessment start after its authorisation",
        _rows(lambda a, t: a["start"] > a["auth"], "assessments"),
    ),
    Rule(
        "8620",
        ALL_YEARS,
        "error",
        "Closure date outside the collection year",
        _rows(lambda c, t: _outside(c["closure"], t["period"]), "cin"),
        COUNTED["date_outside"],
    ),
    Rule(
        "8630",
        ALL_YEARS,
        "error",
        "Closure before the referral date",
        _rows(lambda c, t: c["closure"] < c["referral"], "cin"),
    ),
    Rule(
        "8720",
        ALL_YEARS,
        "error",
        "CP plan start missing or after the collection year",
        _rows(lambda c, t: c["start"].isna() | (c["start"] > t["period"][1]), "cpp"),
        COUNTED["date_outside"],
    ),
    Rule(
        "8770Q", ALL_YEARS, "query", "No UPN and no reason for a child aged 6 or more", _upn_missing
    ),
    Rule(
        "8805",
        ALL_YEARS,
        "error",
        "Closure date without a reason for closure",
        _rows(lambda c, t: c["closure"].notna() & c["reason"].isna(), "cin"),
    ),
    Rule(
        "8810",
        ALL_YEARS,
        "error",
        "Reason for closure without a closure date",
        _rows(lambda c, t: c["closure"].isna() & c["reason"].notna(), "cin"),
    ),
    Rule(
        "8815",
        ALL_YEARS,
        "error",
        "More than one open episode (not a referral with no further action)",
        _rows(
            lambda c, t: (lambda o: o & o.groupby(c["LAchildID"]).transform("sum").gt(1))(
                c["closure"].isna() & ~c["nfa"].isin(["1", "true"])
            ),
            "cin",
        ),
    ),
    Rule(
        "8820",
        ALL_YEARS,
        "error",
        "Episodes of one child overlap",
        _cin_overlap,
        COUNTED["overlap"],
    ),
    Rule(
        "8825Q",
        ALL_YEARS,
        "query",
        "Closed RC8/RC9 (after assessment) with no assessment",
        _rows(
            lambda c, t: c["reason"].isin(["RC8", "RC9"]) & ~c["ep"].isin(t["assessments"]["ep"]),
            "cin",
        ),
    ),
    Rule(
        "8831",
        ALL_YEARS,
        "error",
        "Activity on a referral with no further action",
        lambda t: _activity(t, t["cin"]["nfa"].isin(["1", "true"])),
    ),
    Rule(
        "8840",
        ALL_YEARS,
        "error",
        "CP plan starts and ends on the same day",
        _rows(lambda p, t: p["start"] == p["end"], "cpp"),
    ),
    Rule(
        "8869",
        ALL_YEARS,
        "error",
        "Factor 21 (no factors) with other factors",
        _factor_21_with_others,
    ),
    Rule(
        "8870Q",
        ALL_YEARS,
        "query",
        "Initial CP conference target date on a weekend",
        _rows(lambda s, t: s["target"].dt.day_of_week >= 5, "s47"),
    ),
    Rule(
        "8873Q",
        ALL_YEARS,
        "query",
        "Factor 21 on the only assessment of an episode not closed RC8/RC9",
        _factor_21_not_closed,
    ),
    Rule(
        "8875",
        ALL_YEARS,
        "error",
        "Initial CP conference on a weekend",
        _rows(lambda s, t: s["icpc"].dt.day_of_week >= 5, "s47"),
    ),
    Rule("8897Q", ALL_YEARS, "query", "Completed assessment with no factors", _no_factors),
    Rule(
        "8898",
        ALL_YEARS,
        "error",
        "The same factor twice in one assessment",
        _rows(lambda f, t: f.duplicated(["assessment", "factor"], keep=False), "factors"),
    ),
    Rule(
        "8945Q",
        SEX_YEARS,
        "query",
        "Assessment factor 18A (use 18B or 18C)",
        _rows(lambda f, t: f["factor"].str.upper() == "18A", "factors"),
    ),
    Rule(
        "8950Q",
        SEX_YEARS,
        "query",
        "Assessment factor 19A (use 19B or 19C)",
        _rows(lambda f, t: f["factor"].str.upper() == "19A", "factors"),
    ),
    Rule(
        "8925",
        ALL_YEARS,
        "error",
        "CP plan end before its start",
        _rows(lambda p, t: p["end"] < p["start"], "cpp"),
    ),
    Rule(
        "8930",
        ALL_YEARS,
        "error",
        "CP plan end outside the collection year",
        _rows(lambda p, t: _outside(p["end"], t["period"]), "cpp"),
        COUNTED["date_outside"],
    ),
    Rule(
        "8935",
        ALL_YEARS,
        "error",
        "More than one open CP plan",
        _rows(
            lambda p, t: (
                p["end"].isna() & p["end"].isna().groupby(p["LAchildID"]).transform("sum").gt(1)
            ),
            "cpp",
        ),
    ),
    Rule(
        "8940",
        ALL_YEARS,
        "error",
        "CP plans of one child overlap",
        lambda t: _overlap(t["cpp"], "start", "end", t["period"][1] + DAY),
    ),
)
BY_CODE = {r.code: r for r in RULES}
#: Rules whose breaks change what the reader counts (reported per file by the reader).
COUNT_CHANGING = tuple(r.code for r in RULES if r.counted)


def check_return(tables: dict, codes=None) -> pd.DataFrame:
    """Breaks of the rules of the return's year: ``code, kind, LAchildID`` per offending row."""
    out = []
    for r in RULES:
        if codes is not None and r.code not in codes:
            continue
        if not r.years[0] <= tables["year"] <= r.years[1]:
            continue
        rows = r.check(tables)
        ids = rows["LAchildID"] if len(rows) else pd.Series([], dtype=object)
        out.append(pd.DataFrame({"code": r.code, "kind": r.kind, "LAchildID": ids.to_numpy()}))
    cols = ["code", "kind", "LAchildID"]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


RULE_BREAK_COLUMNS = ("file", "code", "kind", "description", "records", "children", "counted")


def rule_breaks(tables_by_file: dict) -> pd.DataFrame:
    """Per file and count-changing rule: the breaks (``records``: offending rows, ``children``:
    distinct LAchildID) and how the reader counts them (:data:`COUNTED`)."""
    rows = []
    for path, tables in tables_by_file.items():
        found = check_return(tables, COUNT_CHANGING)
        for code, g in found.groupby("code", sort=True):
            r = BY_CODE[code]
            rows.append(
                (
                    str(path),
                    code,
                    r.kind,
                    r.description,
                    len(g),
                    int(g["LAchildID"].nunique()),
                    r.counted,
                )
            )
    return pd.DataFrame(rows, columns=list(RULE_BREAK_COLUMNS))
