"""Flat child-level extracts (CSV/Parquet) with local column names, via a TOML mapping file.

An LA's case-management extract is one row per referral (CIN episode) carrying the child's
columns; its column names and codes are local. A mapping file (TOML) names, for each field
below, the local column, and optionally recodes values::

    [extract]                    # all optional
    date_format = "%d/%m/%Y"     # strptime format of every date column (default YYYY-MM-DD)
    factor_separator = ","       # between codes in the factors column
    la = "E06000001"             # a constant LA when the extract has no LA column
    year = 2019                  # a constant collection year (default: from referral_date)

    [columns]                    # field = "local column name"
    child_id = "CHILD_REF"
    lsoa = "LSOA11CD"
    referral_date = "Ref Date"
    ...

    [values.gender]              # local value = census code (or broad group)
    "Male" = "M"

Fields (:data:`FIELDS`; required ones in :data:`REQUIRED`): ``child_id``, ``la``, ``lsoa``,
``referral_date``, ``date_of_birth``, and optionally ``year``, ``episode_id`` (default:
child and referral date, so a repeated referral is a ``duplicate_episode``), ``gender`` (M, F,
or census 1/2/0/9), ``ethnicity`` (census 4-letter code or broad group), ``referral_source``,
``referral_nfa`` (true/false, 1/0, yes/no, y/n), ``assessment_date``, ``cin_plan_start``,
``cin_plan_end``, ``cp_plan_start``, ``cp_plan_end``, ``cp_category`` (NEG, EMO, PHY, SAB,
MUL), ``looked_after_start``, ``closure_date``, ``closure_reason`` (RC1-RC9),
``repeat_cp_plan`` (boolean, or a number of previous plans), ``factors`` (assessment factor
codes separated by ``factor_separator``). Codes are those of
:mod:`socialgradient.data.census.returns`. The mapping and the extract file are read by
:mod:`~socialgradient.data.census.extract_input`.

:func:`read_extract` returns the same
:class:`~socialgradient.data.records.Records` tables as the XML reader, so
:func:`socialgradient.data.census.linkage.aggregate` links and counts them;
a blank LSOA, a repeated episode or an LSOA in another LA reach the linkage report under
``missing_lsoa``, ``duplicate_episode`` and ``la_mismatch``. Problems of the mapping raise
:class:`~socialgradient.data.schema.InputError`: ``bad_mapping``, ``unknown_field``,
``missing_mapping``, ``unknown_column`` (mapped columns absent from the file, named); values:
``missing_value``, ``bad_date`` (not in ``date_format``, or a year outside
:data:`~socialgradient.data.census.read.DATE_RANGE`), ``unknown_code``,
``closure_before_referral`` (a closure date before the referral date: a negative duration)
(with the rows, 0-based data rows) raise with ``errors="raise"`` (default) or, with
``errors="report"``, exclude the row and list it in the
:class:`~socialgradient.data.census.returns.ReadReport`; a child aged outside 0-17 on 31
March is always excluded as ``age_out_of_range``, and a referral outside the collection
period of the row's ``year`` (1 April of the year before to 31 March; only possible with a
``year`` column or constant) as ``outside_period`` (one referred earlier still serves to
derive the child's re-referrals, as in the XML reader).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from socialgradient.data import records as rec
from socialgradient.data.census import returns as cx
from socialgradient.data.census.extract_input import (  # noqa: F401 (REQUIRED: as before)
    DATES,
    FIELDS,
    REQUIRED,
    _apply,
    _read,
    _text,
    load_mapping,
)
from socialgradient.data.census.frames import ReadReport, _period
from socialgradient.data.census.read import DATE_RANGE
from socialgradient.data.schema import fail

TRUE = {"1", "true", "yes", "y", "t"}
FALSE = {"0", "false", "no", "n", "f", ""}
RULES = ("missing_value", "bad_date", "unknown_code", "closure_before_referral")
BROAD = set(rec.ETHNICITIES) | {cx.UNKNOWN}


def flat_table(records: rec.Records) -> pd.DataFrame:
    """Flatten records into one row per episode, with the child's columns and ``factors``.

    ``factors`` lists the episode's factor codes, comma-separated (``"A,B"``).
    """
    e = records.episodes.merge(records.children, on=["child_id", "year"], how="left")
    f = records.factors.groupby(["year", "episode_id"])["factor"].agg(",".join)
    e["factors"] = [f.get((y, k), "") for y, k in zip(e["year"], e["episode_id"], strict=True)]
    return e[[c for c in FIELDS if c in e.columns]]


def read_extract(
    path: str | Path,
    mapping: str | Path | dict[str, Any],
    geography: pd.DataFrame,
    population: pd.DataFrame | None = None,
    errors: str = "raise",
) -> tuple[rec.Records, ReadReport]:
    """Read a flat child-level extract into the child-level tables.

    Parameters
    ----------
    path : path
        ``.csv``, ``.csv.gz`` or ``.parquet``: one row per referral (CIN episode).
    mapping : path or dict
        The TOML mapping (see the module docstring; :func:`load_mapping`).
    geography, population
        As for :func:`socialgradient.data.census.returns.read_returns`.
    errors : ``"raise"`` or ``"report"``
        What a value problem does.

    Returns
    -------
    (records, report)
        :class:`~socialgradient.data.records.Records` and a
        :class:`~socialgradient.data.census.returns.ReadReport` (``line``: 0-based data row).
    """
    if errors not in ("raise", "report"):
        raise ValueError(f"errors must be 'raise' or 'report', got {errors!r}")
    m = load_mapping(mapping)
    path = Path(path)
    raw = _read(path)
    cols, ext = m["columns"], m["extract"]
    absent = sorted({v for v in cols.values() if v not in raw.columns})
    if absent:
        raise fail(
            "unknown_column",
            f"{str(path)!r} has no columns "
            f"{absent} (named in the mapping); it has {list(raw.columns)}",
            columns=absent,
        )
    n = len(raw)
    t = pd.DataFrame(index=raw.index)
    for f in FIELDS:
        if f in cols:
            s = raw[cols[f]]
            t[f] = s if (f in DATES and pd.api.types.is_datetime64_any_dtype(s)) else _text(s)
            if f in m["values"]:
                vmap = {
                    str(k): str(v).lower() if isinstance(v, bool) else str(v)
                    for k, v in m["values"][f].items()
                }
                t[f] = pd.Series(
                    [vmap.get(v, v) if v is not None else v for v in t[f]],
                    index=t.index,
                    dtype=object,
                )
        elif f in ext:
            t[f] = str(ext[f])
        else:
            t[f] = None
    problems: list[tuple[Any, ...]] = []

    def add(mask, rule, field, values=None):
        idx = np.flatnonzero(np.asarray(mask, bool))
        vals = t[field].to_numpy(object)[idx] if values is None else values
        problems.extend(zip(idx, [rule] * len(idx), [field] * len(idx), vals, strict=True))

    for f in ("child_id", "referral_date", "date_of_birth", "la"):
        add(t[f].isna(), "missing_value", f)
    fmt = ext.get("date_format", "%Y-%m-%d")
    for f in DATES:
        s = t[f]
        parsed = (
            s
            if pd.api.types.is_datetime64_any_dtype(s)
            else pd.to_datetime(s, format=fmt, errors="coerce")
        )
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):  # dates: the local calendar day
            parsed = parsed.dt.tz_localize(None)
        inside = (parsed >= DATE_RANGE[0]) & (parsed <= DATE_RANGE[1])
        add(s.notna() & ~inside, "bad_date", f)
        t[f] = parsed.where(inside)
    if "year" in cols or "year" in ext:
        y = pd.to_numeric(t["year"], errors="coerce")
        add(t["year"].notna() & (y.isna() | (y % 1 != 0)), "unknown_code", "year")
    else:
        r = t["referral_date"]
        y = r.dt.year + (r.dt.month >= 4)
    t["year"] = y
    g = _apply(t["gender"], lambda v: cx.GENDER_CODES.get(v, v) if v is not None else cx.UNKNOWN)
    add(~g.isin(["M", "F", cx.UNKNOWN]), "unknown_code", "gender")
    eth = _apply(
        t["ethnicity"],
        lambda v: (
            cx.UNKNOWN
            if v is None
            else v
            if v in BROAD
            else cx.ETHNIC_CODES.get(v, "?") or cx.UNKNOWN
        ),
    )
    add(eth == "?", "unknown_code", "ethnicity")
    for f, allowed in (
        ("referral_source", cx.SOURCE_CODES),
        ("cp_category", cx.CP_CODES),
        ("closure_reason", cx.CLOSURE_CODES),
    ):
        add(t[f].notna() & ~t[f].isin(list(allowed)), "unknown_code", f)

    def boolean(f):
        low = _apply(t[f], lambda v: "" if v is None else v.lower())
        num = pd.to_numeric(low, errors="coerce")
        ok = low.isin(TRUE | FALSE) | num.notna()
        add(~ok, "unknown_code", f)
        return (low.isin(TRUE) | num.gt(0)).to_numpy(bool)

    nfa, repeat = boolean("referral_nfa"), boolean("repeat_cp_plan")
    sep = ext.get("factor_separator", ",")
    codes = _apply(
        t["factors"],
        lambda v: [c.strip() for c in v.split(sep) if c.strip()] if v is not None else [],
    )
    bad_f = _apply(codes, lambda cs: any(not cx.FACTOR_CODE.fullmatch(c) for c in cs)).astype(bool)
    add(bad_f, "unknown_code", "factors")
    ref, clo = t["referral_date"], t["closure_date"]
    add(
        clo < ref,
        "closure_before_referral",
        "closure_date",
        [
            f"{c:%Y-%m-%d} before referral_date {r:%Y-%m-%d}"
            for c, r in zip(clo[clo < ref], ref[clo < ref], strict=True)
        ],
    )
    p = pd.DataFrame(problems, columns=["row", "rule", "field", "value"])
    p["order"] = p["rule"].map({r: k for k, r in enumerate(RULES)})
    p = p.sort_values(["order", "row"], kind="stable").drop(columns="order")
    if len(p) and errors == "raise":
        rule = p["rule"].iloc[0]
        sub = p[p["rule"] == rule]
        shown = "; ".join(
            f"row {r.row} {r.field} ({cols.get(r.field, r.field)!r}) = {r.value!r}"
            for r in sub.head(10).itertuples()
        )
        more = f" (and {len(sub) - 10} more)" if len(sub) > 10 else ""
        raise fail(
            rule,
            f"{len(sub)} in {str(path)!r}: {shown}{more}",
            rows=sub["row"].tolist(),
            columns=sorted({cols.get(f, f) for f in sub["field"]}),
        )
    reason = pd.Series(None, index=t.index, dtype=object)
    first = p.drop_duplicates("row")
    reason.iloc[first["row"].to_numpy(np.int64)] = first["rule"].to_numpy()
    age = cx._age(t["date_of_birth"], t["year"].fillna(0))
    band = cx._band(np.nan_to_num(age, nan=-1))
    reason = reason.where(reason.notna() | pd.notna(band), "age_out_of_range")
    start, end = _period(t["year"].where(reason.isna(), 2000))
    early = reason.isna() & (t["referral_date"] < start)
    outside = early | (reason.isna() & (t["referral_date"] > end))
    reason = reason.where(~outside, "outside_period")
    bad = reason.notna().to_numpy()
    # an earlier referral is not counted but derives the child's re-referrals (read.py)
    keep = ~bad | early.to_numpy()
    ok = t[keep].copy()
    ok["year"] = ok["year"].astype(np.int64)
    ok["la_child_id"] = ok["child_id"]
    ok["child_id"] = ok["la"] + "/" + ok["la_child_id"]
    ok["age"], ok["age_band"] = age[keep].astype(np.int64), band[keep]
    ok["gender"], ok["ethnicity"] = g[keep], eth[keep]
    ok["referral_nfa"], ok["repeat_cp_plan"] = nfa[keep], repeat[keep]
    ok["episode_id"] = ok["episode_id"].where(
        ok["episode_id"].notna(), ok["child_id"] + "/" + ok["referral_date"].dt.strftime("%Y-%m-%d")
    )
    ok["has_episode"] = True
    fac = pd.DataFrame(
        [(r, c) for r, cs in codes[keep].items() for c in cs], columns=["row", "factor"]
    )
    child_lsoa = (
        ok[["la", "year", "la_child_id", "lsoa"]]
        .rename(columns={"la_child_id": "child_id"})
        .drop_duplicates()
    )
    la = ok.loc[
        ok["looked_after_start"].notna(), ["la", "year", "la_child_id", "looked_after_start"]
    ]
    la = la.rename(columns={"la_child_id": "child_id"})
    records, unmatched = cx.build_records(
        ok,
        fac,
        child_lsoa,
        geography,
        population,
        la,
        source=f"flat extract {path.name}",
        derive_only=early[keep].to_numpy(),
    )
    ex = t[bad]
    ex_rec = pd.DataFrame(
        {
            "file": str(path),
            "line": np.flatnonzero(bad),
            "la": ex["la"],
            "la_child_id": ex["child_id"],
            "referral_date": ex["referral_date"],
            "reason": reason[bad],
            "element": first.set_index("row")["field"]
            .reindex(np.flatnonzero(bad))
            .to_numpy(object),
            "value": first.set_index("row")["value"].reindex(np.flatnonzero(bad)).to_numpy(object),
        }
    ).reset_index(drop=True)
    excluded = {r: int((reason == r).sum()) for r in (*RULES, "age_out_of_range", "outside_period")}
    report = cx.ReadReport(
        files=(path,),
        children=int(t["child_id"].nunique()),
        episodes=n,
        passed=int((~bad).sum()),
        excluded=excluded,
        excluded_records=ex_rec,
        children_excluded=int(t.loc[bad, "child_id"].nunique()),
        looked_after_unmatched=unmatched,
    )
    return records, report
