"""The input contract: the neighbourhood table, one row per LSOA.

A neighbourhood table is read from CSV (``.csv`` or ``.csv.gz``) or Parquet (``.parquet``)
and has these columns:

``lsoa``
    LSOA code, 2011 or 2021 style, ``[EW]01`` and six digits (``E01000001``).
``la``
    Local authority code, ``E`` or ``W`` and eight digits (``E06000052``).
``children``
    Child population, the **exposure** of the count models by default: finite and > 0 (need
    not be a whole number, e.g. mid-year population estimates), and plausible for one row:
    from ``CHILDREN_RANGE[0]`` (0.001, a share of a child once a band is split into single
    years) to ``CHILDREN_RANGE[1]`` (1,000,000; an LSOA has ~300 children). It also weights
    each LA's mean deprivation.
``income``
    Share (**0-1, not a percentage**) of families in income deprivation; finite, in [0, 1].
one column per outcome (``referrals``, ``cp_plans``, ...)
    Counts: whole, non-negative numbers (``3.0`` is accepted and becomes ``3``), below
    2**53 (float64 holds every whole number only up to there: 2**53 + 1 would be read as
    2**53) and at most ``MAX_ROW_COUNT`` (1,000,000) in one row: an LSOA has ~1,500
    residents, so even summed over 20 years and several events a child no count comes near
    it, while a column of person-days or of a national total does. A relative bound (events
    per child) is not used: counts of episodes or factors can exceed the children, and the
    children of single-year cells are fractional estimates.

Optionally, a **stratum** column (named by the caller, e.g. ``age_band``) splits each LSOA
into cells, one row per LSOA x stratum: ``children`` is then the stratum's population, the
(``lsoa``, stratum) pair must be unique and ``la`` and ``income`` must be the same on every
row of an LSOA.

Several stratum columns (e.g. ``age_band`` and ``gender``) make cells of their combinations
(the (``lsoa``, columns) tuple is unique). Optionally, a numeric **stratum trend** column
(e.g. ``age``, single years) is part of the cell too: one row per LSOA x year of age; it must
be numeric, finite and take more than one value.

Optionally, an **exposure** column other than ``children`` (named by the caller; finite,
> 0 and within ``EXPOSURE_RANGE``, 0.001 to 1e10): e.g. person-days at risk for the closure
rate of episodes (a closed episode has at least half a day), or the referred children for
the rate of re-referrals.

Optionally, a **trials** column for a binomial outcome (e.g. the referrals of which the
outcome counts the re-referrals): whole numbers > 0, never fewer than the outcome's count.
Optionally, **moderator** columns (e.g. ``rural``, ``density``): numeric (a True/False flag
counts as 1/0), finite, at most ``MAX_MODERATOR`` (1e15) in size (their mean and SD must
not overflow), not constant; the same for a stratum trend.

Any other column (``la_name``, ``rural``, ...) is passed through unchanged. Codes must be
exact: surrounding whitespace makes a code malformed, it is never stripped silently.

:func:`validate` checks the column set first, then every value, then relations between
rows, and stops at the first rule broken, raising :class:`InputError` that reports every
offending row of that rule. Rule ids: ``missing_column``, ``duplicate_column``,
``no_outcome``, ``unknown_outcome``, ``empty_table``, ``malformed_lsoa``, ``malformed_la``,
``missing_value``, ``non_numeric``, ``non_finite``, ``negative_count``,
``fractional_count``, ``count_too_large``, ``count_implausible``,
``children_not_positive``, ``children_out_of_range``, ``income_out_of_range``,
``lsoa_in_two_las``, ``duplicate_lsoa``, ``small_la``; with a stratum column also
``duplicate_cell`` (instead of ``duplicate_lsoa``) and ``income_varies_within_lsoa``, and
``constant_stratum`` (a column with one level) when there are several; with a stratum
trend ``moderator_out_of_range`` and ``constant_trend``; with an exposure column also
``exposure_not_positive`` and ``exposure_out_of_range``; with a trials column
``trials_not_positive`` and ``count_exceeds_trials``; with moderators
``moderator_out_of_range`` and ``constant_moderator``.
:func:`require_events` (:mod:`~socialgradient.data.events`; what a fit adds, through
:func:`socialgradient.api.encode`): ``no_events`` and, for a binomial,
``every_trial_an_event``. :func:`read_table` (:mod:`~socialgradient.data.table_file`) adds
``unknown_format``, ``file_not_found``, ``empty_file``, ``undecodable`` and ``unreadable``.
Rows are 0-based positions in the table as read. :class:`InputError` and :func:`fail` are in
:mod:`~socialgradient.data.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from socialgradient.data.errors import (  # noqa: F401 (the contract's names, as before)
    MAX_SHOWN,
    InputError,
    _listing,
    fail,
)
from socialgradient.data.events import require_events  # noqa: F401 (as before)
from socialgradient.data.table_file import read_table

REQUIRED_COLUMNS = ("lsoa", "la", "children", "income")
CODE_PATTERNS = {"lsoa": r"[EW]01[0-9]{6}", "la": r"[EW][0-9]{8}"}
MAX_COUNT = 2.0**53  # counts must be below: float64 holds every whole number only up to it
MAX_ROW_COUNT = 1_000_000  # a plausible count in one row (module docstring)
CHILDREN_RANGE = (1e-3, 1e6)  # plausible children in one row (module docstring)
EXPOSURE_RANGE = (1e-3, 1e10)  # plausible exposure of another column, e.g. person-days
MAX_MODERATOR = 1e15  # largest moderator or trend value in size


def _raise_rows(
    rule: str,
    what: str,
    table: pd.DataFrame,
    masks: dict[str, np.ndarray],
    hint: str = "",
    shown: str | None = None,
) -> None:
    """Raise ``rule`` if any mask in ``{column: mask}`` is set, listing rows per column."""
    masks = {c: np.asarray(m, dtype=bool) for c, m in masks.items() if np.any(m)}
    if not masks:
        return
    parts = []
    for col, mask in masks.items():
        rows = np.flatnonzero(mask)
        label = "row" if len(rows) == 1 else "rows"
        listing = _listing(table, rows, shown or col)
        parts.append(f"column {col!r}: {len(rows)} {label} {what}: {listing}")
    rows = np.flatnonzero(np.logical_or.reduce(list(masks.values())))
    raise fail(rule, "; ".join(parts) + hint, rows, masks)


def _numeric(s: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values as float64, plus masks of missing and non-numeric entries."""
    missing = s.isna().to_numpy(bool)
    if pd.api.types.is_bool_dtype(s.dtype):
        return np.full(len(s), np.nan), missing, ~missing
    if not pd.api.types.is_numeric_dtype(s.dtype):
        s = s.astype(object)
        s = pd.to_numeric(s.where(~s.map(lambda v: isinstance(v, bool | np.bool_))), "coerce")
    values = s.to_numpy("float64", na_value=np.nan)
    return values, missing, np.isnan(values) & ~missing


def validate(
    table: pd.DataFrame,
    outcomes: Sequence[str],
    stratum: str | Sequence[str] | None = None,
    exposure: str = "children",
    *,
    trials: str = "",
    moderators: Sequence[str] = (),
    trend: str = "",
) -> pd.DataFrame:
    """Check a neighbourhood table against the input contract.

    Parameters
    ----------
    table : pandas.DataFrame
        The table as read (see the module docstring for its columns). Not modified.
    outcomes : sequence of str
        Names of the count columns to check (a single str is one outcome).
    stratum : str or sequence of str, optional
        Name of the stratum column (or columns), for tables with one row per LSOA x stratum.
    exposure : str
        Column of the exposure (the count model's offset), ``children`` by default; another
        column (e.g. person-days at risk, or the referred children for a re-referral rate)
        must be finite and > 0 too. ``children`` is still required: it weights the LAs'
        mean deprivation.
    trials : str, optional
        Column of binomial trials (whole, > 0, at least each outcome's count).
    moderators : sequence of str, optional
        Neighbourhood moderator columns (numeric, finite, not constant).
    trend : str, optional
        A numeric cell column (e.g. ``age`` in single years): the stratum trend. Numeric,
        finite, not constant; part of the cell key with the strata.

    Returns
    -------
    pandas.DataFrame
        A new table with every row kept, in order, with a fresh RangeIndex: ``lsoa``/``la``
        str, ``children``/``income`` (and the exposure) float64, outcomes int64, other columns
        unchanged.

    Raises
    ------
    InputError
        On the first rule broken (columns, then values, then relations between rows),
        reporting all offending rows of that rule.
    """
    outcomes = [outcomes] if isinstance(outcomes, str) else list(dict.fromkeys(outcomes))
    t = table.reset_index(drop=True)
    found = [str(c) for c in t.columns]
    moderators = list(moderators)
    strata = [stratum] if isinstance(stratum, str) else list(stratum or [])
    stratum = strata[0] if len(strata) == 1 else None  # the one-column rules, as before
    cell_columns = [*strata, *([trend] if trend else [])]
    required = (
        *REQUIRED_COLUMNS,
        *strata,
        *([trend] if trend else []),
        *([exposure] if exposure not in REQUIRED_COLUMNS else []),
        *([trials] if trials else []),
        *moderators,
    )
    missing = [c for c in required if c not in t.columns]
    if missing:
        raise fail(
            "missing_column",
            f"required columns {missing} not found; columns found: {found}",
            columns=missing,
        )
    dup = sorted({c for c in found if found.count(c) > 1})
    if dup:
        raise fail("duplicate_column", f"column names repeated: {dup}", columns=dup)
    if not outcomes:
        raise fail("no_outcome", "no outcome column requested; name at least one count column")
    unknown = [o for o in outcomes if o not in t.columns]
    if unknown:
        numeric = [c for c in t.select_dtypes("number").columns if c not in REQUIRED_COLUMNS]
        raise fail(
            "unknown_outcome",
            f"outcome columns {unknown} not found; available "
            f"numeric columns: {[str(c) for c in numeric]}",
            columns=unknown,
        )
    if len(t) == 0:
        raise fail("empty_table", f"the table has no rows; columns found: {found}")

    codes = {}
    for col, pattern in CODE_PATTERNS.items():
        s = t[col].astype(object)
        ok = s.map(lambda v: isinstance(v, str)).to_numpy(bool)
        ok = ok & s.where(ok, "").astype(str).str.fullmatch(pattern).to_numpy(bool)
        _raise_rows(
            f"malformed_{col}",
            f"missing or not like {pattern!r} (no spaces allowed)",
            t,
            {col: ~ok},
        )
        codes[col] = s.astype(str)

    if strata:
        _raise_rows("missing_value", "missing", t, {c: t[c].isna().to_numpy() for c in strata})
    for c in moderators:  # a True/False flag (e.g. rural) moderates as 1/0
        if pd.api.types.is_bool_dtype(t[c]):
            t[c] = t[c].astype(float)
    counted = (*outcomes, *([trials] if trials else []))
    num = {
        c: _numeric(t[c])
        for c in dict.fromkeys(
            ("children", "income", exposure, *counted, *moderators, *([trend] if trend else []))
        )
    }
    count = {c: num[c][0] for c in counted}
    _raise_rows("missing_value", "missing", t, {c: m for c, (_, m, _) in num.items()})
    _raise_rows("non_numeric", "not a number", t, {c: b for c, (_, _, b) in num.items()})
    _raise_rows("non_finite", "infinite", t, {c: np.isinf(v) for c, (v, _, _) in num.items()})
    _raise_rows("negative_count", "negative", t, {c: v < 0 for c, v in count.items()})
    _raise_rows(
        "fractional_count", "not whole numbers", t, {c: v != np.floor(v) for c, v in count.items()}
    )
    _raise_rows(
        "count_too_large",
        f"at or above 2**53 = {MAX_COUNT:.0f} (float64 cannot hold such "
        "whole numbers exactly: 2**53 + 1 reads as 2**53)",
        t,
        {c: v >= MAX_COUNT for c, v in count.items()},
    )
    _raise_rows(
        "count_implausible",
        f"above {MAX_ROW_COUNT:,} in one row (an LSOA has ~300 children; is it a count?)",
        t,
        {c: v > MAX_ROW_COUNT for c, v in count.items()},
    )
    children, income = num["children"][0], num["income"][0]
    role = "the exposure" if exposure == "children" else "it weights LA deprivation"
    _raise_rows(
        "children_not_positive", f"<= 0 (children is {role})", t, {"children": children <= 0}
    )
    lo, hi = CHILDREN_RANGE
    _raise_rows(
        "children_out_of_range",
        f"outside the plausible [{lo:g}, {hi:,.0f}] children of one row (children is {role})",
        t,
        {"children": (children < lo) | (children > hi)},
    )
    if exposure != "children":
        _raise_rows(
            "exposure_not_positive",
            f"<= 0 ({exposure} is the exposure)",
            t,
            {exposure: num[exposure][0] <= 0},
            "; drop cells with no exposure explicitly (they carry no information)",
        )
        lo, hi = EXPOSURE_RANGE
        _raise_rows(
            "exposure_out_of_range",
            f"outside the plausible [{lo:g}, {hi:g}] ({exposure} is the exposure)",
            t,
            {exposure: (num[exposure][0] < lo) | (num[exposure][0] > hi)},
        )
    if trials:
        _raise_rows(
            "trials_not_positive",
            f"<= 0 ({trials} are the binomial's trials)",
            t,
            {trials: count[trials] <= 0},
            "; drop cells with no trials explicitly (they carry no information)",
        )
        _raise_rows(
            "count_exceeds_trials",
            f"above {trials} (the trials)",
            t,
            {c: count[c] > count[trials] for c in outcomes},
        )
    _raise_rows(
        "moderator_out_of_range",
        f"larger than {MAX_MODERATOR:g} in size (its mean and SD would overflow)",
        t,
        {c: np.abs(num[c][0]) > MAX_MODERATOR for c in (*moderators, *([trend] if trend else []))},
    )
    constant = [c for c in moderators if np.ptp(num[c][0]) == 0]
    if constant:
        raise fail(
            "constant_moderator",
            f"moderator columns {constant} take one value on "
            "every row: they cannot moderate anything",
            columns=constant,
        )
    if trend and np.ptp(num[trend][0]) == 0:
        raise fail(
            "constant_trend",
            f"stratum trend column {trend!r} takes one value "
            f"({num[trend][0][0]!r}) on every row: it has no trend",
            columns=[trend],
        )
    if len(strata) > 1:
        one = [c for c in strata if t[c].astype(str).nunique() < 2]
        if one:
            raise fail(
                "constant_stratum",
                f"stratum columns {one} have one level on every row: nothing to contrast",
                columns=one,
            )
    bad = (income < 0) | (income > 1)
    hint = ""
    if bad.any() and 1 < income.max() <= 100:
        hint = "; income looks like a percentage: give the 0-1 share (divide by 100)"
    _raise_rows("income_out_of_range", "outside [0, 1]", t, {"income": bad}, hint)

    lsoa, la = codes["lsoa"], codes["la"]
    n_la = la.groupby(lsoa).transform("nunique").to_numpy()
    _raise_rows(
        "lsoa_in_two_las", "in an LSOA listed under several LAs", t, {"lsoa": n_la > 1}, shown="la"
    )
    if cell_columns:
        cell = pd.DataFrame({"lsoa": lsoa, **{c: t[c].astype(str) for c in cell_columns}})
        _raise_rows(
            "duplicate_cell",
            f"repeating an (lsoa, {', '.join(cell_columns)}) cell",
            t,
            {"lsoa": cell.duplicated(keep=False).to_numpy()},
            shown=cell_columns[0],
        )
        varies = pd.Series(income).groupby(lsoa.to_numpy()).transform("nunique").to_numpy()
        _raise_rows(
            "income_varies_within_lsoa",
            "in an LSOA whose rows disagree on income",
            t,
            {"income": varies > 1},
        )
        size = la.map(la.groupby(lsoa).first().value_counts()).to_numpy()
    else:
        dup = lsoa.duplicated(keep=False)
        _raise_rows("duplicate_lsoa", "repeating an LSOA", t, {"lsoa": dup})
        size = la.map(la.value_counts()).to_numpy()
    small = sorted(set(la[size < 2]))
    hint = f"; LAs with fewer than 2 LSOAs: {small}" if small else ""
    _raise_rows("small_la", "in an LA with fewer than 2 LSOAs", t, {"la": size < 2}, hint)

    out = t.copy()
    out["lsoa"], out["la"] = lsoa, la
    out["children"], out["income"] = children, income
    out[exposure] = num[exposure][0]
    for c in (*moderators, *([trend] if trend else [])):
        out[c] = num[c][0]
    for c in strata:
        out[c] = t[c].astype(str)
    for c, v in count.items():
        out[c] = v.astype(np.int64)
    return out


def load(
    path, outcomes: Sequence[str], stratum: str | None = None, exposure: str = "children", **terms
) -> pd.DataFrame:
    """Read a table with :func:`read_table` and check it with :func:`validate`.

    ``terms`` are :func:`validate`'s ``trials`` and ``moderators``.
    """
    return validate(read_table(path), outcomes, stratum, exposure, **terms)
