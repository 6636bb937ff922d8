"""The CIN Census validation rules on the child's identifiers (issue 31).

The LA child ID (1570, 1580, 8510), the UPN (1510, 1520, 8770Q), the gender or sex (4180) and
the date of birth (8520), from the ``ChildIdentifiers`` block. Gathered with the other groups
in :mod:`socialgradient.data.census.rules`.
"""

from __future__ import annotations

import pandas as pd

from socialgradient.data.census import codes as cc
from socialgradient.data.census.rules_common import (
    ALL_YEARS,
    COUNTED,
    SEX_YEARS,
    Rule,
    Tables,
    rows,
)

#: The check letters of a UPN, by the weighted sum of its digits modulo 23.
_UPN_CHECK = "ABCDEFGHJKLMNPQRTUVWXYZ"


def _upn_check(t: Tables) -> pd.DataFrame:
    u = t["children"]["upn"].dropna()
    u = u[u.str.fullmatch(r"[A-Za-z]\d{12}")]
    total = sum(u.str[i].astype(int) * (i + 1) for i in range(1, 13)) % 23
    bad = u.str[0].str.upper() != total.map(lambda k: _UPN_CHECK[k])
    return t["children"].loc[bad[bad].index]


def _upn_missing(t: Tables) -> pd.DataFrame:
    ch = t["children"]
    further = set(t["cin"].loc[t["cin"]["nfa"].isin(["0", "false"]), "LAchildID"])
    ref = t["period"][1]
    if t["year"] >= SEX_YEARS[0]:  # 2024-25 on: of school age on 31 August after the year
        six = ch["dob"] <= ref + pd.DateOffset(months=4, days=31) - pd.DateOffset(years=6)
    else:
        six = ch["dob"] <= ref - pd.DateOffset(years=6)
    no = ch["upn"].isna() & ~ch["upn_unknown"].isin(["UN2", "UN3", "UN4", "UN5", "UN6", "UN7"])
    return ch[six & no & ch["LAchildID"].isin(further)]


def _gender_invalid(t: Tables) -> pd.DataFrame:
    tag = cc.gender_element(t["year"])
    col = t["children"]["sex" if tag == "Sex" else "gender"]
    return t["children"][~col.isin(cc.GENDER_VALID[tag])]


RULES: tuple[Rule, ...] = (
    Rule("1510", ALL_YEARS, "error", "UPN check letter wrong", _upn_check),
    Rule(
        "1570",
        SEX_YEARS,
        "error",
        "LA child ID longer than 20 characters",
        rows(lambda c, t: c["LAchildID"].fillna("").str.len() > 20, "children"),
    ),
    Rule(
        "1580",
        SEX_YEARS,
        "error",
        "LA child ID with a non-alphanumeric character",
        rows(
            lambda c, t: c["LAchildID"].notna() & ~c["LAchildID"].fillna("").str.isalnum(),
            "children",
        ),
    ),
    Rule(
        "1520",
        ALL_YEARS,
        "error",
        "More than one record with the same UPN",
        rows(lambda c, t: c["upn"].notna() & c["upn"].duplicated(keep=False), "children"),
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
        rows(lambda c, t: c["LAchildID"].duplicated(keep=False), "children"),
        COUNTED["duplicate_child"],
    ),
    Rule(
        "8520",
        ALL_YEARS,
        "error",
        "Date of birth after the collection year",
        rows(lambda c, t: c["dob"] > t["period"][1], "children"),
    ),
    Rule(
        "8770Q", ALL_YEARS, "query", "No UPN and no reason for a child aged 6 or more", _upn_missing
    ),
)
