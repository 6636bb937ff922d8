"""The CIN Census validation rules on CIN plans (issue 31).

CIN plan dates (4011, 4012Q, 4013, 4015) and plans where none may be: on a referral with no
further action (4000) or beside an open child protection plan (4001, 4016); checked from the
collection year the return has ``CINPlanDates``. Gathered with the other groups in
:mod:`socialgradient.data.census.rules`.
"""

from __future__ import annotations

import pandas as pd

from socialgradient.data.census.rules_common import (
    COUNTED,
    PLAN_YEARS,
    Rule,
    Tables,
    activity,
    before_referral,
    outside,
    rows,
)
from socialgradient.data.census.rules_tables import DAY


def _open_cin_plan_with_open_cp(t: Tables) -> pd.DataFrame:
    m = t["cpp"].merge(t["plans"], on=["LAchildID", "ep"], suffixes=("_cp", "_cin"))
    return m[m["end_cp"].isna() & m["start_cin"].notna() & m["end_cin"].isna()]


def _concurrent_cin_cp(t: Tables) -> pd.DataFrame:
    m = t["plans"].merge(t["cpp"], on="LAchildID", suffixes=("_cin", "_cp"))
    cp_end = m["end_cp"].fillna(t["period"][1] + DAY)
    bad = (m["start_cin"] >= m["start_cp"]) & (m["start_cin"] < cp_end)
    return m[bad]


RULES: tuple[Rule, ...] = (
    Rule(
        "4000",
        PLAN_YEARS,
        "error",
        "CIN plan on a referral with no further action",
        lambda t: activity(t, t["cin"]["nfa"].isin(["1", "true"])).pipe(
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
        rows(lambda p, t: p["end"] < p["start"], "plans"),
    ),
    Rule(
        "4012Q",
        PLAN_YEARS,
        "query",
        "CIN plan starts and ends on the same day",
        rows(lambda p, t: p["end"] == p["start"], "plans"),
    ),
    Rule(
        "4013",
        PLAN_YEARS,
        "error",
        "CIN plan end outside the collection year",
        rows(lambda p, t: outside(p["end"], t["period"]), "plans"),
        COUNTED["date_outside"],
    ),
    Rule(
        "4015",
        PLAN_YEARS,
        "error",
        "CIN plan start before the referral date",
        before_referral("plans"),
        COUNTED["outside_episode"],
    ),
    Rule(
        "4016", PLAN_YEARS, "error", "A CIN plan starts while a CP plan is open", _concurrent_cin_cp
    ),
)
