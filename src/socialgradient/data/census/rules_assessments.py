"""The CIN Census validation rules on assessments and their factors (issue 31).

Assessment dates (1103, 8608) and the factors identified at assessment (8869, 8873Q, 8897Q,
8898, 8945Q, 8950Q). Gathered with the other groups in :mod:`socialgradient.data.census.rules`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from socialgradient.data.census import codes as cc
from socialgradient.data.census.rules_common import (
    ALL_YEARS,
    COUNTED,
    SEX_YEARS,
    Rule,
    Tables,
    before_referral,
    rows,
)


def _no_factors(t: Tables) -> pd.DataFrame:
    a = t["assessments"].assign(k=np.arange(len(t["assessments"])))
    done = a["auth"].notna() & (a["auth"] >= t["period"][0])
    has = a["k"].isin(t["factors"].loc[t["factors"]["factor"].isin(cc.FACTOR_CODES), "assessment"])
    return a[done & ~has]


def _factor_21_not_closed(t: Tables) -> pd.DataFrame:
    a = t["assessments"].assign(k=np.arange(len(t["assessments"])))
    single = ~a["ep"].duplicated(keep=False)
    with21 = a["k"].isin(t["factors"].loc[t["factors"]["factor"] == "21", "assessment"])
    m = a[single & with21].merge(t["cin"][["ep", "reason"]], on="ep")
    return m[~m["reason"].isin(["RC8", "RC9"])]


def _factor_21_with_others(t: Tables) -> pd.DataFrame:
    f = t["factors"]
    n = f.groupby("assessment")["factor"].transform("size")
    return f[(f["factor"] == "21") & (n > 1)]


RULES: tuple[Rule, ...] = (
    Rule(
        "1103",
        ALL_YEARS,
        "error",
        "Assessment start before the referral date",
        before_referral("assessments"),
        COUNTED["outside_episode"],
    ),
    Rule(
        "8608",
        ALL_YEARS,
        "error",
        "Assessment start after its authorisation",
        rows(lambda a, t: a["start"] > a["auth"], "assessments"),
    ),
    Rule(
        "8869",
        ALL_YEARS,
        "error",
        "Factor 21 (no factors) with other factors",
        _factor_21_with_others,
    ),
    Rule(
        "8873Q",
        ALL_YEARS,
        "query",
        "Factor 21 on the only assessment of an episode not closed RC8/RC9",
        _factor_21_not_closed,
    ),
    Rule("8897Q", ALL_YEARS, "query", "Completed assessment with no factors", _no_factors),
    Rule(
        "8898",
        ALL_YEARS,
        "error",
        "The same factor twice in one assessment",
        rows(lambda f, t: f.duplicated(["assessment", "factor"], keep=False), "factors"),
    ),
    Rule(
        "8945Q",
        SEX_YEARS,
        "query",
        "Assessment factor 18A (use 18B or 18C)",
        rows(lambda f, t: f["factor"].str.upper() == "18A", "factors"),
    ),
    Rule(
        "8950Q",
        SEX_YEARS,
        "query",
        "Assessment factor 19A (use 19B or 19C)",
        rows(lambda f, t: f["factor"].str.upper() == "19A", "factors"),
    ),
)
