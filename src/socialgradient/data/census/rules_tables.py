"""The tables the CIN Census validation rules read, from one parsed return (issue 31).

:func:`return_tables` turns a parsed return into the tables (``children``, ``cin``,
``assessments``, ``factors``, ``plans``, ``s47``, ``cpp``; one row per element, dates parsed,
``ep`` numbering the episodes of the return), plus its ``year`` and collection ``period``. The
rules themselves are in :mod:`socialgradient.data.census.rules`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

#: One day, the step between a date and the next.
DAY = pd.Timedelta(days=1)

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


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    t = pd.DataFrame(rows, columns=list(columns))
    for c in t.columns:
        if c in _DATES:
            t[c] = pd.to_datetime(t[c], format="%Y-%m-%d", errors="coerce")
    return t


def _leaves(el: Any, names: dict[str, str]) -> dict[str, str | None]:
    """Return ``{column: text}`` of ``el``'s leaf children named in ``names``.

    One pass; the first of a repeated tag counts; blank text is None.
    """
    out: dict[str, str | None] = dict.fromkeys(names.values())
    for x in el:
        c = names.get(x.tag)
        if c is not None and out[c] is None:
            v = (x.text or "").strip()
            out[c] = v or None
    return out


def return_tables(root: Any) -> dict[str, Any]:
    """Return the tables of one parsed return, as in the module docstring.

    Parameters
    ----------
    root
        The lxml or ElementTree root ``Message`` of the return.

    Returns
    -------
    dict
        One frame per table, plus ``year`` and the collection ``period`` (its first day and
        the ``ReferenceDate``).
    """
    year = int(root.findtext("Header/CollectionDetails/Year"))
    ref = root.findtext("Header/CollectionDetails/ReferenceDate") or f"{year}-03-31"
    t: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("children", "cin", "assessments", "factors", "plans", "s47", "cpp")
    }
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
                for tag, name, leaves in blocks:
                    if x.tag == tag:
                        t[name].append({"LAchildID": cid, "ep": ep, **_leaves(x, leaves)})
            ep += 1
    cols: dict[str, list[str]] = {
        "children": [*_CHILD.values(), "line"],
        "cin": ["LAchildID", "ep", "line", *_CIN.values()],
        "assessments": ["LAchildID", "ep", *_ASS.values()],
        "factors": ["LAchildID", "ep", "assessment", "factor"],
        "plans": ["LAchildID", "ep", *_PLAN.values()],
        "s47": ["LAchildID", "ep", *_S47.values()],
        "cpp": ["LAchildID", "ep", *_CPP.values()],
    }
    out: dict[str, Any] = {k: _frame(v, cols[k]) for k, v in t.items()}
    out["children"] = out["children"].rename(columns={"id": "LAchildID"})
    end = pd.Timestamp(ref)
    out["year"], out["period"] = year, (end - pd.DateOffset(years=1) + DAY, end)
    return out
