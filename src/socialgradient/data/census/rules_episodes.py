"""The CIN Census validation rules on the episodes of need (issue 31).

The ``CINdetails`` block: referral and closure dates and reasons (8600, 8606, 8620, 8630,
8805, 8810), open and overlapping episodes (8815, 8820), activity on closed or no further
action episodes (2990, 8565, 8825Q, 8831), and the return's reference date (100). Gathered
with the other groups in :mod:`socialgradient.data.census.rules`.
"""

from __future__ import annotations

import pandas as pd

from socialgradient.data.census.rules_common import (
    ALL_YEARS,
    COUNTED,
    Rule,
    Tables,
    activity,
    outside,
    overlap,
    rows,
    with_cin,
)
from socialgradient.data.census.rules_tables import DAY


def _after_closure(t: Tables) -> pd.DataFrame:
    out = []
    for name in ("assessments", "plans", "s47", "cpp"):
        m = with_cin(t, name)
        out.append(m.loc[m["start"] > m["closure"], ["LAchildID", "ep"]])
    return pd.concat(out)


def _cin_overlap(t: Tables) -> pd.DataFrame:
    c = t["cin"]
    return overlap(c[c["referral"].notna()], "referral", "closure", t["period"][1] + DAY)


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
        rows(lambda c, t: c["referral"].isna() | (c["referral"] > t["period"][1]), "cin"),
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
        "8620",
        ALL_YEARS,
        "error",
        "Closure date outside the collection year",
        rows(lambda c, t: outside(c["closure"], t["period"]), "cin"),
        COUNTED["date_outside"],
    ),
    Rule(
        "8630",
        ALL_YEARS,
        "error",
        "Closure before the referral date",
        rows(lambda c, t: c["closure"] < c["referral"], "cin"),
    ),
    Rule(
        "8805",
        ALL_YEARS,
        "error",
        "Closure date without a reason for closure",
        rows(lambda c, t: c["closure"].notna() & c["reason"].isna(), "cin"),
    ),
    Rule(
        "8810",
        ALL_YEARS,
        "error",
        "Reason for closure without a closure date",
        rows(lambda c, t: c["closure"].isna() & c["reason"].notna(), "cin"),
    ),
    Rule(
        "8815",
        ALL_YEARS,
        "error",
        "More than one open episode (not a referral with no further action)",
        rows(
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
        rows(
            lambda c, t: c["reason"].isin(["RC8", "RC9"]) & ~c["ep"].isin(t["assessments"]["ep"]),
            "cin",
        ),
    ),
    Rule(
        "8831",
        ALL_YEARS,
        "error",
        "Activity on a referral with no further action",
        lambda t: activity(t, t["cin"]["nfa"].isin(["1", "true"])),
    ),
)
