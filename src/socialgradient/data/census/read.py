"""Read CIN Census XML returns (the DfE layout, 2019-2024) into child-level records.

:func:`read_returns` parses returns into the child-level tables (``children``, ``episodes``,
``factors``) that :func:`socialgradient.data.census.linkage.link` /
:func:`~socialgradient.data.census.linkage.aggregate` take. Parsing uses ``lxml`` (a dependency:
real source lines, ``sourceline``). The file checks (step 1) are in
:mod:`~socialgradient.data.census.file_checks`, the record checks (step 3) in
:mod:`~socialgradient.data.census.record_checks`; this module runs every step.

Checks, in order:

1. *File*: ``dtd_not_allowed`` (any ``<!DOCTYPE``, e.g. one declaring entities: an XXE or
   entity-expansion attack; refused by a scan of the prolog before any parser that could
   resolve entities sees the file, and again after parsing), malformed XML (file, line,
   column), ``not_a_cin_return``, ``wrong_collection`` (the header's
   ``CollectionDetails/Collection`` is not ``CIN``, e.g. an SSDA903 return: checked without
   the schema), ``missing_header`` (no ``Collection``, ``Year`` or ``LEA``), ``bad_year`` (a
   ``Year`` outside :data:`YEAR_RANGE`), ``unknown_lea`` (``LEA`` is a DfE 3-digit number from
   :data:`~socialgradient.data.census.codes.LA_NUMBERS` or ``lea_codes``, or an ONS code).
   ``errors="raise"`` raises :class:`~socialgradient.data.schema.InputError`;
   ``errors="report"`` lists the file in ``ReadReport.file_errors`` and reads the others.
2. *Schema*: each return is validated against the XSD of its collection year (its header's
   ``Year``) when ``lxml`` and a verified copy of the schema are at hand
   (:func:`~socialgradient.data.census.codes.find_schema`); ``ReadReport.validation`` says,
   per file, which schema was used or why none was. Errors (file, line, element, category:
   ``element_order``, ``unknown_code``, ``bad_pattern``, ``bad_value``, ``other``) go to
   ``ReadReport.schema_errors``; with ``errors="raise"`` they refuse the returns
   (``schema_invalid``) once the record checks pass.
3. *Record* (each ``CINdetails`` is a record): ``missing_element``, ``bad_date`` (not a
   ``YYYY-MM-DD`` date, or a year outside :data:`DATE_RANGE`, e.g. ``0000-01-01`` or month
   13), ``unknown_code``, ``closure_before_referral`` (a ``CINclosureDate`` before its
   ``CINreferralDate``: its duration would be negative) -- each named with file, line,
   LAchildID, element and value -- raise by default or, with ``errors="report"``, exclude
   the episode (the child's episodes for a child-level item) and list it in the report.
   Codes of every year 2019-2026 are accepted (18A/19A read as 18C/19C); the child's gender
   is ``GenderCurrent`` (1, 2, 0, 9) to 2024 and ``Sex`` (M, F, U) from the 2024-25
   collection (2025), either accepted in any year. Returns of 2025 and 2026 have no XSD at
   hand: they are checked against the validation rules (step 5 and
   :mod:`~socialgradient.data.census.rules`), not a schema.
4. *Always excluded and reported*: ``unborn`` (only an ExpectedPersonBirthDate),
   ``age_out_of_range`` (not 0-17 on 31 March), ``outside_period`` (referred outside the
   collection period, 1 April of the year before to 31 March of the collection year: a
   referral counts in the year it was made, so an episode referred earlier and still open
   is not a referral of this year -- it is still used to derive the child's re-referrals).

5. *DfE validation rules that change counts* (:data:`~socialgradient.data.census.rules.
   COUNT_CHANGING`: duplicate child IDs 8510, overlapping episodes 8820, plans or activity
   outside their episode 1103-1105/2889/4015/8565, dates outside the collection period or a
   missing referral date 8600/8620/8720/4013/8930): per file and rule, with how the reader
   counted those records, in ``ReadReport.rule_breaks`` and the linkage report
   (``LinkageReport.rule_breaks``, through ``records.truth["rule_breaks"]``).

Every episode read is passed on or listed in the report -- never dropped. UPNs, former UPNs,
disabilities, reviews and several ``CINdetails`` per child are read past. ``CINPlanDates``
(2022 on) give the CIN plan; for earlier years the writer's companion ``cin_plans.csv``
(``cin_plans=``) does. NumberOfPreviousCPP >= 2 is a repeat plan
(:data:`~socialgradient.data.census.codes.FIRST_PLAN_CPP`). Re-referral within 12 months is
derived from the same child's earlier CINreferralDate in the returns read, as DfE derives it.
"""

from __future__ import annotations

import re
import xml.parsers.expat as expat  # noqa: F401 (the file checks' parser; tests patch read.expat)
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from socialgradient.data.census import codes as cc
from socialgradient.data.census import rules
from socialgradient.data.census.file_checks import YEAR_RANGE, _header, _parse  # noqa: F401
from socialgradient.data.census.frames import (
    LOOKED_AFTER_COLUMNS,
    SCHEMA_ERROR_COLUMNS,
    ReadReport,
    _age,
    _band,
    _period,
    _require,
    _table,
    build_records,
    join_cin_plans,
    read_child_lsoa,
)
from socialgradient.data.census.record_checks import (  # noqa: F401 (DATE_RANGE: as before)
    _CHILD_ELEMENTS,
    _DATE_COLUMNS,
    _EPISODE_LEAVES,
    DATE_RANGE,
    READ_RULES,
    _dates,
    _describe,
    _flat,
    _problems,
)
from socialgradient.data.schema import InputError, fail

EXCLUDED = ("unborn", "age_out_of_range", "outside_period")


def read_returns(
    paths,
    child_lsoa,
    geography: pd.DataFrame,
    population: pd.DataFrame | None = None,
    looked_after=None,
    lea_codes: dict | None = None,
    errors: str = "raise",
    cin_plans=None,
    schema_dir=None,
    validate: bool | None = None,
):
    """Parse CIN Census XML returns into :class:`~.records_model.Records`.

    ``paths``: XML returns (a folder means every ``*.xml`` in it). ``child_lsoa``: ``la,
    child_id`` (LAchildID, or a column named ``LAchildID``), ``lsoa[, year]``; children it lacks
    reach linkage with no LSOA (``missing_lsoa``). ``geography``: LSOA lookup ``lsoa, la,
    income, children, rural``. ``population``: denominators (default
    :func:`~.frames.default_population`, strata ``all``). ``looked_after``: ``la, child_id,
    looked_after_start[, year]`` (SSDA903). ``lea_codes``: DfE LA number -> ONS code, added to
    :data:`~socialgradient.data.census.codes.LA_NUMBERS`. ``errors``: ``"raise"`` or
    ``"report"`` (module docstring). ``cin_plans``: ``la, child_id, referral_date,
    cin_plan_start[, cin_plan_end, year]`` for years without ``CINPlanDates``. ``schema_dir``:
    a folder with ``CIN_schema_<year>.xsd``; ``validate``: False skips the XSD check, True
    requires it (``schema_unavailable`` when it cannot be done), None validates when it can.

    Returns ``(records, report)``: ``records`` feeds
    :func:`socialgradient.data.census.linkage.aggregate`; ``report`` is a :class:`ReadReport`.
    """
    if errors not in ("raise", "report"):
        raise ValueError(f"errors must be 'raise' or 'report', got {errors!r}")
    if isinstance(paths, str | Path):
        paths = [paths]
    files = []
    for p in paths:
        p = Path(p)
        files += sorted(p.glob("*.xml")) if p.is_dir() else [p]
    if not files:
        raise fail("file_not_found", "no CIN returns (*.xml) given")
    numbers = {v: k for k, v in cc.dfe_numbers(lea_codes).items()}
    rows: list[dict[str, Any]] = []
    fac_rows: list[tuple[int, str]] = []
    schema_rows: list[Any] = []
    validation: dict[str, str] = {}
    file_errors: list[dict[str, Any]] = []
    rule_tables: dict[str, Any] = {}
    for path in files:
        try:
            root, doc, data = _parse(path)
            la, year = _header(path, root, numbers)
        except InputError as err:
            if errors == "raise" or err.rule == "file_not_found":
                raise
            m = re.search(r"line (\d+)", str(err))
            file_errors.append(
                {
                    "file": str(path),
                    "line": int(m.group(1)) if m else None,
                    "rule": err.rule,
                    "message": str(err),
                }
            )
            validation[str(path)] = f"not read: {err.rule}"
            continue
        found, validation[str(path)] = cc.validate_return(path, doc, year, schema_dir, validate)
        if validate is True and not validation[str(path)].startswith("validated"):
            raise fail("schema_unavailable", f"{path}: {validation[str(path)]}")
        schema_rows += found
        rule_tables[str(path)] = rules.return_tables(root)
        r, f = _flat(path, root, data, la, year)
        fac_rows += [(k + len(rows), c) for k, c in f]
        rows += r
    schema_errors = pd.DataFrame(schema_rows, columns=list(SCHEMA_ERROR_COLUMNS))
    if not rows:
        raise fail("no_records", f"no CIN return could be read: {file_errors[:3]}")
    flat = pd.DataFrame(rows)
    for c in (
        "episode_line",
        "episode_no",
        "previous_cpp",
        "assessment_missing_start",
        "cin_plan_missing_start",
        "cp_missing_start",
        "cp_missing_category",
        *_EPISODE_LEAVES.values(),
        *_DATE_COLUMNS,
    ):
        if c not in flat.columns:
            flat[c] = None
    flat = flat.astype({c: object for c in flat.columns if c not in ("line", "year")})
    fac = pd.DataFrame(fac_rows, columns=["row", "factor"])
    problems = _problems(flat, fac)
    if len(problems) and errors == "raise":
        rule = problems["rule"].iloc[0]
        sub = problems[problems["rule"] == rule]
        counts = problems["rule"].value_counts().to_dict()
        raise fail(
            rule,
            f"{len(sub)} in the CIN returns ({counts}): {_describe(flat, sub)}",
            rows=sub["row"].tolist(),
        )
    if len(schema_errors) and errors == "raise":
        cats = schema_errors["category"].value_counts().to_dict()
        shown = "; ".join(
            f"{r.file}:{r.line} {r.element}: {r.message}"
            for r in schema_errors.head(5).itertuples()
        )
        raise fail(
            "schema_invalid",
            f"{len(schema_errors)} schema errors in "
            f"{schema_errors['file'].nunique()} return(s) ({cats}): {shown}"
            " (use errors='report' / --errors report to read them anyway)",
        )
    # Child-level problems exclude all the child's rows (same file, same <Child> line).
    reason = pd.Series(None, index=flat.index, dtype=object)
    detail = pd.DataFrame({"element": None, "value": None}, index=flat.index, dtype=object)
    first = problems.drop_duplicates("row")
    reason.iloc[first["row"].to_numpy()] = first["rule"].to_numpy()
    detail.iloc[first["row"].to_numpy()] = first[["element", "value"]].to_numpy(object)
    child_key = flat["file"] + ":" + flat["line"].astype(str)
    child_rules = problems[problems["element"].isin(_CHILD_ELEMENTS)].drop_duplicates("row")
    bad_children = dict(zip(child_key.iloc[child_rules["row"]], child_rules["rule"], strict=False))
    reason = reason.where(reason.notna(), child_key.map(bad_children))
    # Usable rows: parse, age, period.
    flat["date_of_birth"] = pd.to_datetime(flat["dob"], format="%Y-%m-%d", errors="coerce")
    age = _age(flat["date_of_birth"], flat["year"])
    flat["age"] = age
    flat["age_band"] = _band(np.nan_to_num(age, nan=-1))
    unborn = flat["dob"].isna() & flat["expected_dob"].notna()
    reason = reason.where(reason.notna() | ~unborn, "unborn")
    reason = reason.where(reason.notna() | flat["age_band"].notna(), "age_out_of_range")
    ref = _dates(flat["referral_date"])
    start, end = _period(flat["year"])
    early = flat["has_episode"].astype(bool) & (ref < start) & reason.isna()
    outside = flat["has_episode"].astype(bool) & ((ref > end) | (ref < start))
    reason = reason.where(reason.notna() | ~outside, "outside_period")
    bad = reason.notna().to_numpy()
    # an episode referred before the period is not counted, but its referral date is the
    # earlier referral a re-referral of this year is derived from
    ok = flat[~bad | early.to_numpy()].copy()
    ok["age"] = ok["age"].astype(np.int64)
    ok["child_id"] = ok["la"] + "/" + ok["la_child_id"]
    ok["gender"] = ok["gender_code"].map(cc.GENDER_CODES)
    ok["ethnicity"] = ok["ethnic_code"].map(cc.ETHNIC_CODES).fillna(cc.UNKNOWN)
    for col in _DATE_COLUMNS:
        if col not in ("dob", "expected_dob"):
            ok[col] = pd.to_datetime(ok[col], format="%Y-%m-%d")
    if cin_plans is not None:
        ok = join_cin_plans(ok, cin_plans)
    ok["episode_id"] = ok["child_id"] + "/" + ok["referral_date"].dt.strftime("%Y-%m-%d")
    ok["referral_nfa"] = ok["referral_nfa"].map(cc.BOOL_CODES).fillna(False).astype(bool)
    ok["repeat_cp_plan"] = (
        pd.to_numeric(ok["previous_cpp"]).fillna(0).gt(cc.FIRST_PLAN_CPP).to_numpy()
    )
    ok["has_episode"] = ok["has_episode"].astype(bool)
    cl = read_child_lsoa(child_lsoa)
    lat = None if looked_after is None else _table(looked_after)
    if lat is not None:
        _require(lat, LOOKED_AFTER_COLUMNS, "looked-after table")
        lat["la"], lat["child_id"] = lat["la"].astype(str), lat["child_id"].astype(str)
    records, unmatched = build_records(
        ok,
        fac,
        cl,
        geography,
        population,
        lat,
        source="CIN census XML",
        years=flat["year"],
        las=flat["la"],
        derive_only=early[ok.index].to_numpy(),
    )
    ex = flat[bad]
    ex_rec = pd.DataFrame(
        {
            "file": ex["file"],
            "line": np.where(ex["has_episode"].astype(bool), ex["episode_line"], ex["line"]),
            "la": ex["la"],
            "la_child_id": ex["la_child_id"],
            "referral_date": ex["referral_date"],
            "reason": reason[bad],
            "element": detail.loc[bad, "element"],
            "value": detail.loc[bad, "value"],
        }
    ).reset_index(drop=True)
    has_ep = flat["has_episode"].astype(bool)
    excluded = {r: int(((reason == r) & has_ep).sum()) for r in (*READ_RULES, *EXCLUDED)}
    breaks = rules.rule_breaks(rule_tables)
    records.truth["rule_breaks"] = breaks.astype(object).to_dict("records")
    report = ReadReport(
        files=tuple(files),
        children=int(child_key.nunique()),
        episodes=int(has_ep.sum()),
        passed=int((has_ep & ~bad).sum()),
        excluded=excluded,
        excluded_records=ex_rec,
        children_excluded=int(child_key[bad].nunique()),
        looked_after_unmatched=unmatched,
        schema_errors=schema_errors,
        validation=validation,
        file_errors=tuple(file_errors),
        rule_breaks=breaks,
    )
    return records, report
