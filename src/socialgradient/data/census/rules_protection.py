"""The CIN Census validation rules on Section 47 enquiries and child protection plans (issue 31).

Initial child protection conferences (1104, 2884, 2885, 8870Q, 8875), S47 starts (2889) and
child protection plan dates (1105, 8720, 8840, 8925, 8930), open and overlapping plans (8935,
8940). Gathered with the other groups in :mod:`socialgradient.data.census.rules`.
"""

from __future__ import annotations

from socialgradient.data.census.rules_common import (
    ALL_YEARS,
    COUNTED,
    Rule,
    before_referral,
    outside,
    overlap,
    rows,
)
from socialgradient.data.census.rules_tables import DAY

RULES: tuple[Rule, ...] = (
    Rule(
        "1104",
        ALL_YEARS,
        "error",
        "Initial CP conference before the referral date",
        before_referral("s47", "icpc"),
        COUNTED["outside_episode"],
    ),
    Rule(
        "1105",
        ALL_YEARS,
        "error",
        "CP plan start before the referral date",
        before_referral("cpp"),
        COUNTED["outside_episode"],
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
        before_referral("s47"),
        COUNTED["outside_episode"],
    ),
    Rule(
        "8720",
        ALL_YEARS,
        "error",
        "CP plan start missing or after the collection year",
        rows(lambda c, t: c["start"].isna() | (c["start"] > t["period"][1]), "cpp"),
        COUNTED["date_outside"],
    ),
    Rule(
        "8840",
        ALL_YEARS,
        "error",
        "CP plan starts and ends on the same day",
        rows(lambda p, t: p["start"] == p["end"], "cpp"),
    ),
    Rule(
        "8870Q",
        ALL_YEARS,
        "query",
        "Initial CP conference target date on a weekend",
        rows(lambda s, t: s["target"].dt.day_of_week >= 5, "s47"),
    ),
    Rule(
        "8875",
        ALL_YEARS,
        "error",
        "Initial CP conference on a weekend",
        rows(lambda s, t: s["icpc"].dt.day_of_week >= 5, "s47"),
    ),
    Rule(
        "8925",
        ALL_YEARS,
        "error",
        "CP plan end before its start",
        rows(lambda p, t: p["end"] < p["start"], "cpp"),
    ),
    Rule(
        "8930",
        ALL_YEARS,
        "error",
        "CP plan end outside the collection year",
        rows(lambda p, t: outside(p["end"], t["period"]), "cpp"),
        COUNTED["date_outside"],
    ),
    Rule(
        "8935",
        ALL_YEARS,
        "error",
        "More than one open CP plan",
        rows(
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
        lambda t: overlap(t["cpp"], "start", "end", t["period"][1] + DAY),
    ),
)
