"""Reading a CIN Census XML return, step 3: the records and their checks (issue 31).

:func:`_flat` flattens a parsed return into rows (one per ``CINdetails``, or one per child
without any) and its assessment factors; :func:`_problems` finds every record problem
(:data:`READ_RULES`: ``missing_element``, ``bad_date`` -- not a ``YYYY-MM-DD`` date, or
outside :data:`DATE_RANGE` --, ``unknown_code``, ``closure_before_referral``) and
:func:`_describe` names them (file, line, LAchildID, element, value). The steps are described
in :mod:`socialgradient.data.census.read`, which runs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from socialgradient.data.census import codes as cc
from socialgradient.data.census.file_checks import _value

READ_RULES = ("missing_element", "bad_date", "unknown_code", "closure_before_referral")
#: Episode-level leaf elements read (path below CINdetails -> flat column).
_EPISODE_LEAVES = {
    "CINreferralDate": "referral_date",
    "ReferralSource": "referral_source",
    "PrimaryNeedCode": "primary_need",
    "CINclosureDate": "closure_date",
    "ReasonForClosure": "closure_reason",
    "ReferralNFA": "referral_nfa",
}
_DATE_COLUMNS = {
    "dob": "PersonBirthDate",
    "expected_dob": "ExpectedPersonBirthDate",
    "referral_date": "CINreferralDate",
    "closure_date": "CINclosureDate",
    "assessment_date": "AssessmentActualStartDate",
    "cin_plan_start": "CINPlanStartDate",
    "cin_plan_end": "CINPlanEndDate",
    "cp_plan_start": "CPPstartDate",
    "cp_plan_end": "CPPendDate",
}
#: Dates a record may give (anything outside is a typing error such as 0000-01-01).
DATE_RANGE = ("1900-01-01", "2100-12-31")
_CHILD_ELEMENTS = [
    "LAchildID",
    "PersonBirthDate",
    "ExpectedPersonBirthDate",
    "GenderCurrent",
    "Sex",
    "Ethnicity",
]


def _first(nodes, tag):
    vals = [_value(n, tag) for n in nodes]
    vals = [v for v in vals if v is not None]
    return vals[0] if vals else None


def _flat(path: Path, root, data: bytes, la: str, year: int) -> tuple[list[dict], list]:
    """Rows (one per CINdetails, or one per child without any) and factor codes."""
    kids = root.find("Children").findall("Child")
    lines = [k.sourceline for k in kids]
    rows, factors = [], []
    for child, line in zip(kids, lines, strict=True):
        ids = child.find("ChildIdentifiers")
        base = {
            "file": str(path),
            "line": line,
            "la": la,
            "year": year,
            "la_child_id": _value(ids, "LAchildID"),
            "dob": _value(ids, "PersonBirthDate"),
            "expected_dob": _value(ids, "ExpectedPersonBirthDate"),
            "gender_code": _value(ids, cc.gender_element(year))
            or _value(ids, "GenderCurrent")
            or _value(ids, "Sex"),
            "ethnic_code": _value(child.find("ChildCharacteristics"), "Ethnicity"),
            "has_episode": False,
        }
        details = child.findall("CINdetails")
        if not details:
            rows.append(base)
        for k, d in enumerate(details):
            row = dict(base, has_episode=True, episode_no=k, episode_line=d.sourceline)
            for tag, col in _EPISODE_LEAVES.items():
                row[col] = _value(d, tag)
            ass = d.findall("Assessments")
            starts = [_value(a, "AssessmentActualStartDate") for a in ass]
            row["assessment_date"] = min((v for v in starts if v), default=None)
            row["assessment_missing_start"] = None in starts
            plans = d.findall("CINPlanDates")
            row["cin_plan_start"] = _first(plans, "CINPlanStartDate")
            row["cin_plan_missing_start"] = bool(plans) and row["cin_plan_start"] is None
            ends = [_value(p, "CINPlanEndDate") for p in plans]
            row["cin_plan_end"] = None if (not ends or None in ends) else max(ends)
            cpp = d.findall("ChildProtectionPlans")
            row["cp_plan_start"] = _first(cpp, "CPPstartDate")
            row["cp_missing_start"] = bool(cpp) and row["cp_plan_start"] is None
            ends = [_value(p, "CPPendDate") for p in cpp]
            row["cp_plan_end"] = None if (not ends or None in ends) else max(ends)
            row["cp_category"] = _first(cpp, "InitialCategoryOfAbuse")
            row["cp_missing_category"] = bool(cpp) and row["cp_category"] is None
            row["previous_cpp"] = _first(cpp, "NumberOfPreviousCPP")
            rows.append(row)
            for a in ass:
                for f in a.iterfind("FactorsIdentifiedAtAssessment/AssessmentFactors"):
                    code = (f.text or "").strip()
                    if code:
                        factors.append((len(rows) - 1, cc.READ_ALIASES.get(code, code)))
    return rows, factors


def _problems(flat: pd.DataFrame, fac: pd.DataFrame) -> pd.DataFrame:
    """Rows ``(row, rule, element, value)`` for every record problem, in READ_RULES order."""
    out: list[tuple[Any, ...]] = []

    def add(mask, rule, element, values):
        idx = np.flatnonzero(np.asarray(mask, bool))
        vals = pd.Series(values).to_numpy(object)[idx] if values is not None else [None] * len(idx)
        out.extend(zip(idx, [rule] * len(idx), [element] * len(idx), vals, strict=True))

    ep = flat["has_episode"].to_numpy(bool)
    add(flat["la_child_id"].isna(), "missing_element", "LAchildID", None)
    add(
        flat["dob"].isna() & flat["expected_dob"].isna(), "missing_element", "PersonBirthDate", None
    )
    gender_el = flat["year"].map(cc.gender_element)  # GenderCurrent to 2024, then Sex
    for el in ("GenderCurrent", "Sex"):
        add(flat["gender_code"].isna() & (gender_el == el), "missing_element", el, None)
    add(flat["ethnic_code"].isna(), "missing_element", "Ethnicity", None)
    add(ep & flat["referral_date"].isna(), "missing_element", "CINreferralDate", None)
    for col, element in (
        ("assessment_missing_start", "AssessmentActualStartDate"),
        ("cin_plan_missing_start", "CINPlanStartDate"),
        ("cp_missing_start", "CPPstartDate"),
        ("cp_missing_category", "InitialCategoryOfAbuse"),
    ):
        add(ep & flat[col].fillna(False).astype(bool), "missing_element", element, None)
    parsed = {}
    for col, element in _DATE_COLUMNS.items():
        raw = flat[col]
        parsed[col] = _dates(raw)
        add(raw.notna() & parsed[col].isna(), "bad_date", element, raw)
    for el in ("GenderCurrent", "Sex"):
        raw = flat["gender_code"].where(gender_el == el)
        add(raw.notna() & ~raw.isin(list(cc.GENDER_CODES)), "unknown_code", el, raw)
    codes = (
        ("ethnic_code", "Ethnicity", set(cc.ETHNIC_CODES)),
        ("referral_source", "ReferralSource", cc.SOURCE_CODES),
        ("primary_need", "PrimaryNeedCode", cc.NEED_CODES),
        ("closure_reason", "ReasonForClosure", cc.CLOSURE_CODES),
        ("referral_nfa", "ReferralNFA", set(cc.BOOL_CODES)),
        ("cp_category", "InitialCategoryOfAbuse", cc.CP_CODES),
    )
    for col, element, allowed in codes:
        raw = flat[col]
        add(raw.notna() & ~raw.isin(list(allowed)), "unknown_code", element, raw)
    prev = flat["previous_cpp"]
    add(
        prev.notna() & ~prev.astype(str).str.fullmatch(r"\d+"),
        "unknown_code",
        "NumberOfPreviousCPP",
        prev,
    )
    if len(fac):
        bad = ~fac["factor"].isin(cc.FACTOR_CODES | set(cc.READ_ALIASES.values()))
        for r, v in zip(fac.loc[bad, "row"], fac.loc[bad, "factor"], strict=True):
            out.append((r, "unknown_code", "AssessmentFactors", v))
    ref, clo = parsed["referral_date"], parsed["closure_date"]
    add(
        ep & (clo < ref).to_numpy(bool),
        "closure_before_referral",
        "CINclosureDate",
        flat["closure_date"].astype(str)
        + " before CINreferralDate "
        + flat["referral_date"].astype(str),
    )
    p = pd.DataFrame(out, columns=["row", "rule", "element", "value"])
    p["row"] = p["row"].astype(np.int64)
    p["order"] = p["rule"].map({r: k for k, r in enumerate(READ_RULES)})
    return p.sort_values(["order", "row"], kind="stable").drop(columns="order")


def _dates(raw: pd.Series) -> pd.Series:
    """``YYYY-MM-DD`` strings as dates; NaT for anything else or outside DATE_RANGE."""
    d = pd.to_datetime(raw, format="%Y-%m-%d", errors="coerce")
    return d.where((d >= DATE_RANGE[0]) & (d <= DATE_RANGE[1]))


def _describe(flat: pd.DataFrame, p: pd.DataFrame, shown: int = 10) -> str:
    lines = []
    for r in p.head(shown).itertuples():
        f = flat.iloc[r.row]
        val = "" if r.value is None else f" value {r.value!r}"
        lines.append(
            f"{f['file']}:{f['episode_line'] if f['has_episode'] else f['line']} "
            f"LAchildID {f['la_child_id']!r}: {r.element}{val}"
        )
    more = f" (and {len(p) - shown} more)" if len(p) > shown else ""
    return "; ".join(lines) + more
