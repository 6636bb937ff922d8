"""What the CIN Census validation rules share (issue 31).

The rule record (:class:`Rule`), the years the rules apply to, how the reader counts the
records of the count-changing ones (:data:`COUNTED`), and the checks' building blocks. Each
rule's ``check`` takes the tables of
:func:`~socialgradient.data.census.rules_tables.return_tables` and returns the offending rows
(with ``LAchildID``). The rules are grouped by the part of the return they check
(:mod:`~socialgradient.data.census.rules_children`,
:mod:`~socialgradient.data.census.rules_episodes`,
:mod:`~socialgradient.data.census.rules_assessments`,
:mod:`~socialgradient.data.census.rules_plans`,
:mod:`~socialgradient.data.census.rules_protection`) and gathered in the one registry,
:mod:`socialgradient.data.census.rules`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import pandas as pd

from socialgradient.data.census import codes as cc

#: The tables of one return (:func:`~socialgradient.data.census.rules_tables.return_tables`).
Tables = dict[str, Any]
#: A rule's check: the tables of a return -> the offending rows (with ``LAchildID``).
Check = Callable[[Tables], pd.DataFrame]


class Rule(NamedTuple):
    """One DfE CIN Census validation rule.

    Attributes
    ----------
    code
        The DfE rule code (``Q`` at the end: a query).
    years
        The first and last collection year the rule applies to.
    kind
        ``error`` (blocks the return) or ``query`` (the LA must explain it).
    description
        DfE's message, shortened.
    check
        The tables of a return -> the offending rows, each with ``LAchildID``.
    counted
        For rules whose breaks change the counts, how the reader counts such records
        (:data:`COUNTED`); None for the others.
    """

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


def with_cin(t: Tables, name: str) -> pd.DataFrame:
    """Return table ``name`` joined to its episode's referral, closure, reason and NFA flag."""
    return t[name].merge(t["cin"][["ep", "referral", "closure", "reason", "nfa"]], on="ep")


def outside(s: pd.Series, period: tuple[pd.Timestamp, pd.Timestamp]) -> pd.Series:
    """Flag the dates of ``s`` outside the collection ``period`` (missing ones are not)."""
    return s.notna() & ((s < period[0]) | (s > period[1]))


def before_referral(name: str, col: str = "start") -> Check:
    """Return the check for rows of table ``name`` whose ``col`` is before the referral."""

    def check(t: Tables) -> pd.DataFrame:
        m = with_cin(t, name)
        return m[m[col] < m["referral"]]

    return check


def activity(t: Tables, episodes: pd.Series) -> pd.DataFrame:
    """Return the assessments, plans, S47s and CP plans of the episodes flagged in ``episodes``."""
    eps = set(t["cin"].loc[episodes, "ep"])
    parts = [
        t[n].loc[t[n]["ep"].isin(eps), ["LAchildID", "ep"]]
        for n in ("assessments", "plans", "s47", "cpp")
    ]
    return pd.concat(parts)


def overlap(df: pd.DataFrame, start: str, end: str, open_end: pd.Timestamp) -> pd.DataFrame:
    """Return the rows whose [start, end) overlaps another row of the same child.

    A missing end is ``open_end``.
    """
    d = df.assign(_e=df[end].fillna(open_end)).sort_values(["LAchildID", start])
    prev_end = d.groupby("LAchildID")["_e"].cummax().groupby(d["LAchildID"]).shift()
    return d[d[start] < prev_end]


def rows(mask_fn: Callable[[pd.DataFrame, Tables], pd.Series], name: str) -> Check:
    """Return the check for the rows of table ``name`` that ``mask_fn(table, tables)`` flags."""

    def check(t: Tables) -> pd.DataFrame:
        return t[name][mask_fn(t[name], t)]

    return check
