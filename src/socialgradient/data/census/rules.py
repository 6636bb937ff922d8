"""The DfE CIN Census validation rules we rely on, as data (issue 31): the one registry.

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
year; :func:`rule_breaks` counts the breaks of the count-changing rules per file. The
rules are written in groups by the part of the return they check (the child's identifiers:
:mod:`~socialgradient.data.census.rules_children`; the episodes:
:mod:`~socialgradient.data.census.rules_episodes`; assessments and factors:
:mod:`~socialgradient.data.census.rules_assessments`; CIN plans:
:mod:`~socialgradient.data.census.rules_plans`; S47 enquiries and CP plans:
:mod:`~socialgradient.data.census.rules_protection`), on the shared
:mod:`~socialgradient.data.census.rules_common`; this registry runs them in :data:`ORDER`.

The 2024-25 and 2025-26 collections (2025, 2026) have no XSD at hand, so these rules and the
open implementation's (its rulesets ``cin2024_25`` and ``cin2025_26``, the same rules) are
all their returns are checked against. What changed in 2024-25: ``Sex`` (``M``, ``F``,
``U``) replaces ``GenderCurrent`` (4180; 8750 and 2886Q too), the LA child ID has at most 20
characters, all alphanumeric (1570, 1580), the UPN query 8770Q covers children of school age
on 31 August after the reference date (born on or before 31 August six years before it), and
assessment factors 18A and 19A are queried (8945Q, 8950Q).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import pandas as pd

from socialgradient.data.census import (
    rules_assessments,
    rules_children,
    rules_episodes,
    rules_plans,
    rules_protection,
)
from socialgradient.data.census.rules_children import _UPN_CHECK  # noqa: F401 (its old home)
from socialgradient.data.census.rules_common import (  # noqa: F401 (the rules' names, as before)
    ALL_YEARS,
    COUNTED,
    PLAN_YEARS,
    SEX_YEARS,
    Rule,
)
from socialgradient.data.census.rules_tables import DAY, return_tables  # noqa: F401 (as before)

#: The rules' codes in the order :func:`check_return` runs them (and lists their breaks).
ORDER = (
    "100",
    "1103",
    "1104",
    "1105",
    "1510",
    "1570",
    "1580",
    "1520",
    "2884",
    "2885",
    "2889",
    "2990",
    "4000",
    "4001",
    "4011",
    "4012Q",
    "4013",
    "4015",
    "4016",
    "4180",
    "8510",
    "8520",
    "8565",
    "8600",
    "8606",
    "8608",
    "8620",
    "8630",
    "8720",
    "8770Q",
    "8805",
    "8810",
    "8815",
    "8820",
    "8825Q",
    "8831",
    "8840",
    "8869",
    "8870Q",
    "8873Q",
    "8875",
    "8897Q",
    "8898",
    "8945Q",
    "8950Q",
    "8925",
    "8930",
    "8935",
    "8940",
)
_GROUPS = (
    rules_children.RULES,
    rules_episodes.RULES,
    rules_assessments.RULES,
    rules_plans.RULES,
    rules_protection.RULES,
)
_ALL = {r.code: r for group in _GROUPS for r in group}
if sorted(_ALL) != sorted(ORDER) or sum(map(len, _GROUPS)) != len(ORDER):
    raise RuntimeError("each rule of the groups must be in ORDER once, and no other")
RULES: tuple[Rule, ...] = tuple(_ALL[code] for code in ORDER)
BY_CODE = {r.code: r for r in RULES}
#: Rules whose breaks change what the reader counts (reported per file by the reader).
COUNT_CHANGING = tuple(r.code for r in RULES if r.counted)


def check_return(tables: dict[str, Any], codes: Collection[str] | None = None) -> pd.DataFrame:
    """Return the breaks of the rules of the return's year.

    Parameters
    ----------
    tables
        The return's tables (:func:`return_tables`).
    codes
        The rules to run (all the year's when None).

    Returns
    -------
    pandas.DataFrame
        ``code, kind, LAchildID`` per offending row, the rules in :data:`ORDER`.
    """
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


def rule_breaks(tables_by_file: Mapping[Any, dict[str, Any]]) -> pd.DataFrame:
    """Return the breaks of the count-changing rules, per file and rule.

    Parameters
    ----------
    tables_by_file
        The tables (:func:`return_tables`) of each file, by its path.

    Returns
    -------
    pandas.DataFrame
        One row per file and rule broken (:data:`RULE_BREAK_COLUMNS`): ``records`` (offending
        rows), ``children`` (distinct LAchildID) and how the reader counts them
        (:data:`COUNTED`).
    """
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
