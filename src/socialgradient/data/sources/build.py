"""Assemble the neighbourhood table (input contract) from the public source files.

:func:`build_neighbourhoods` reads the shared data folder (IoD2019, ONS lookups, RUC2011;
see :data:`socialgradient.data.sources.SHARED_FILES`), links every LSOA to its
children's-services LA and returns the table with a linkage report that accounts for every
row read. The command line is ``socialgradient data build SHARED_DIR --out FILE.parquet
[--report report.json]``.

Columns of the table, one row per LSOA 2011 (32,844 in England):

``lsoa``, ``lsoa_name``
    LSOA 2011 code and name (IoD2019 File 1).
``la``, ``la_name``
    children's-services LA of DfE reporting year ``la_year`` (default 2025), after the
    reorganisations and DfE merges of :mod:`socialgradient.data.sources.geo`.
``lad``, ``lad_name``, ``utla19``
    local authority district 2019 and upper-tier LA 2019 as published.
``children``
    dependent children aged 0-15, mid-2015, excluding prisoners (IoD2019 File 6): the
    exposure.
``income``
    IoD2019 Income Deprivation Domain score (rate), share 0-1 of people income-deprived.
``rural``, ``ruc11cd``
    ONS 2011 Rural-Urban Classification: True for classes D/E (rural), and the class code.
``imd_score``, ``imd_rank``, ``idaci_rank``, ``idaci_decile``, ``idaci``
    other IoD2019 measures where available (``idaci``, the IDACI score, only with File 5/7).
outcomes
    one count column per outcome of ``outcome_table`` when one is given.

The table written holds LSOA-level copies of public data: keep it out of the repository.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from socialgradient.data import schema
from socialgradient.data.schema import fail
from socialgradient.data.sources import (
    DFE_MERGES,
    LATEST_YEAR,
    SHARED_FILES,
    InputError,
    children_services_la,
    find_file,
    la_names,
    read_iod,
    read_lsoa_lad,
    read_lsoa_utla,
    read_ltla_utla,
    read_ruc,
)
from socialgradient.data.sources.base import check_codes
from socialgradient.util.files import atomic_write

COLUMNS = [
    "lsoa",
    "la",
    "la_name",
    "children",
    "income",
    "rural",
    "lsoa_name",
    "lad",
    "lad_name",
    "utla19",
    "ruc11cd",
    "imd_score",
    "imd_rank",
    "idaci_rank",
    "idaci_decile",
    "idaci",
]
MAX_LISTED = 50  # LSOA codes listed per unmatched reason in the report


def _path(shared: Path, key: str, required: bool = True) -> Path | None:
    rel = Path(SHARED_FILES[key])
    found = find_file(shared / rel.parent, rel.name)
    if found is None and required:
        raise fail(
            "file_not_found",
            f"{key}: neither {str(shared / rel)!r} nor its .gz found "
            f"in the shared data folder {str(shared)!r}",
        )
    return found


def _errors(
    steps: Iterable[tuple[str, Callable[[], Any]]],
) -> tuple[dict[str, Any], list[InputError]]:
    """Run every ``(name, callable)``; return results and the InputErrors, not stopping."""
    results: dict[str, Any] = {}
    errors: list[InputError] = []
    for name, step in steps:
        try:
            results[name] = step()
        except InputError as err:
            errors.append(err)
    return results, errors


def build_neighbourhoods(
    shared_dir, outcome_table=None, la_year: int = LATEST_YEAR, merges=DFE_MERGES
):
    """Build the neighbourhood table of every English LSOA from the public files.

    Parameters
    ----------
    shared_dir : path-like
        The shared data folder (``iod2019/``, ``la_lookups/``, ``ruc2011/``).
    outcome_table : DataFrame or path-like, optional
        ``lsoa`` plus one non-negative integer column per outcome (CSV/Parquet as read by
        :func:`socialgradient.data.schema.read_table`). Joined by LSOA; without it the table
        has no outcome columns (a geography for ``socialgradient simulate --geography``).
    la_year : int
        DfE reporting year whose children's-services LA geography to use (2020-2025).
    merges : sequence of LAChange
        DfE merges to apply (default: Isles of Scilly -> Cornwall, City of London ->
        Hackney).

    Returns
    -------
    (table, report)
        ``table``: DataFrame with the columns of this module's docstring, checked against
        the input contract. ``report``: JSON-serialisable dict: ``rows`` (``read``,
        ``linked``, ``unmatched``, ``in_table``), ``unmatched`` (by reason: count and
        LSOAs), ``changes`` (every reorganisation/merge applied with its LSOA count),
        ``checks`` (cross-checks between sources), ``las`` (count) and ``sources``.

    Raises
    ------
    InputError
        From the readers, naming the file and problem. When several source files are
        broken, the error's message names the problem of each (rule ``source_errors``;
        ``errors`` attribute lists them).
    """
    shared = Path(shared_dir)
    if not shared.is_dir():
        raise fail("file_not_found", f"shared data folder {str(shared)!r} not found")
    paths = {}

    def reader(key, fn, required=True):
        def run():
            p = shared / SHARED_FILES[key] if key == "iod" else _path(shared, key, required)
            paths[key] = str(p) if p is not None else None
            return fn(p) if p is not None else None

        return key, run

    got, errors = _errors(
        [
            reader("iod", read_iod),
            reader("lsoa_lad", read_lsoa_lad),
            reader("ltla_utla", read_ltla_utla),
            reader("ruc", read_ruc),
            reader("lsoa_utla", read_lsoa_utla, required=False),
        ]
    )
    if len(errors) == 1:
        raise errors[0]
    if errors:
        err = fail(
            "source_errors",
            f"{len(errors)} source files have problems:\n  - "
            + "\n  - ".join(e.message for e in errors),
        )
        err.errors = errors
        raise err
    iod, ltla = got["iod"], got["ltla_utla"]
    report: dict[str, Any] = {
        "sources": {**paths, "iod": iod.attrs.get("sources", [])},
        "la_year": la_year,
    }

    geo = iod.copy()
    n_read = len(geo)
    reasons: dict[str, np.ndarray] = {}
    checks = {}
    # LSOA -> LAD19: the ONS lookup must agree with IoD2019's district
    lk = got["lsoa_lad"].set_index("lsoa")["lad"]
    lad_lookup = geo["lsoa"].map(lk)
    reasons["lsoa_not_in_ons_lad_lookup"] = lad_lookup.isna().to_numpy()
    disagree = lad_lookup.notna() & (lad_lookup != geo["lad"])
    checks["lad_lookup_disagrees_with_iod"] = int(disagree.sum())
    reasons["lad_disagrees_between_iod_and_ons"] = disagree.to_numpy()
    # LAD19 -> UTLA19
    ut = ltla.set_index("lad")
    geo["utla19"] = geo["lad"].map(ut["utla"])
    utla_name = dict(zip(ltla["utla"], ltla["utla_name"], strict=False))
    reasons["lad_not_in_utla_lookup"] = (
        geo["utla19"].isna().to_numpy() & ~reasons["lsoa_not_in_ons_lad_lookup"]
    )
    if got.get("lsoa_utla") is not None:
        best = geo["lsoa"].map(got["lsoa_utla"].set_index("lsoa")["utla"])
        checks["bestfit_utla_disagrees"] = int((best.notna() & (best != geo["utla19"])).sum())
        checks["bestfit_utla_missing"] = int(best.isna().sum())
    # RUC
    ruc = got["ruc"].set_index("lsoa")
    geo["ruc11cd"] = geo["lsoa"].map(ruc["ruc11cd"])
    geo["rural"] = geo["lsoa"].map(ruc["rural"])
    reasons["no_rural_urban_class"] = geo["ruc11cd"].isna().to_numpy()
    # values the contract needs
    reasons["income_missing"] = geo["income"].isna().to_numpy()
    reasons["children_not_positive"] = ~(geo["children"] > 0).to_numpy()

    linked = ~np.logical_or.reduce(list(reasons.values()))
    first = {}
    taken = np.zeros(n_read, bool)
    for reason, mask in reasons.items():  # each unmatched row counted under its first reason
        mine = mask & ~taken
        taken |= mine
        codes = geo["lsoa"].to_numpy(object)[mine]
        first[reason] = {"count": int(mine.sum()), "lsoas": [str(c) for c in codes[:MAX_LISTED]]}
    report["unmatched"] = {k: v for k, v in first.items() if v["count"]}

    geo = geo[linked].reset_index(drop=True)
    la, changes = children_services_la(geo["lad"], geo["utla19"], la_year, merges)
    geo["la"] = la.to_numpy(object)
    names = {**utla_name, **la_names(la_year)}
    geo["la_name"] = geo["la"].map(names)
    geo["rural"] = geo["rural"].astype(bool)
    for col in COLUMNS:
        if col not in geo.columns:
            geo[col] = np.nan
    table = geo[COLUMNS]
    report["changes"] = changes
    report["checks"] = checks
    report["rows"] = {
        "read": n_read,
        "linked": int(linked.sum()),
        "unmatched": int(n_read - linked.sum()),
    }

    outcomes: list[str] = []
    if outcome_table is not None:
        table, outcomes, report["outcome"] = _join_outcomes(table, outcome_table)
    table = _validate(table, outcomes)
    for col in ("children", "imd_rank", "idaci_rank", "idaci_decile"):
        whole = table[col].to_numpy()
        if np.isfinite(whole).all() and (whole == np.round(whole)).all():
            table[col] = whole.astype(np.int64)  # whole persons / ranks, as published
    report["rows"]["in_table"] = len(table)
    report["las"] = int(table["la"].nunique())
    report["la_lsoas"] = {k: int(v) for k, v in table["la"].value_counts().sort_index().items()}
    assert report["rows"]["linked"] + report["rows"]["unmatched"] == n_read
    return table, report


def _join_outcomes(geo: pd.DataFrame, outcome_table):
    if not isinstance(outcome_table, pd.DataFrame):
        outcome_table = schema.read_table(outcome_table)
    out = outcome_table.reset_index(drop=True)
    if "lsoa" not in out.columns:
        raise fail(
            "missing_column",
            f"outcome table: column 'lsoa' not found; found columns "
            f"{[str(c) for c in out.columns]}",
            columns=["lsoa"],
        )
    outcomes = [str(c) for c in out.columns if c != "lsoa"]
    clash = [c for c in outcomes if c in geo.columns]
    if clash:
        raise fail(
            "duplicate_column",
            f"outcome table: columns {clash} clash with the geography's columns; rename them",
            columns=clash,
        )
    if not outcomes:
        raise fail("no_outcome", "outcome table has only 'lsoa'; add count columns")
    out["lsoa"] = check_codes(out["lsoa"], "lsoa", "outcome table", "lsoa")
    dup = out["lsoa"].duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        raise fail(
            "duplicate_lsoa",
            f"outcome table: {len(rows)} rows repeat an LSOA, e.g. "
            f"{list(out['lsoa'].iloc[rows[:8]])}",
            rows,
            ["lsoa"],
        )
    unknown = ~out["lsoa"].isin(geo["lsoa"]).to_numpy()
    if unknown.any():
        rows = np.flatnonzero(unknown)
        raise fail(
            "outcome_lsoa_unknown",
            f"outcome table: {len(rows)} LSOAs not among the "
            f"linked 2011 LSOAs of England, e.g. {list(out['lsoa'].iloc[rows[:8]])} "
            "(2021 codes? unmatched in the geography? see the linkage report)",
            rows,
            ["lsoa"],
        )
    joined = geo.merge(out, on="lsoa", how="inner", validate="one_to_one")
    info = {
        "rows": len(out),
        "joined": len(joined),
        "outcomes": outcomes,
        "geography_lsoas_without_outcome": int(len(geo) - len(joined)),
    }
    return joined, outcomes, info


def _validate(table: pd.DataFrame, outcomes: list[str]) -> pd.DataFrame:
    if outcomes:
        return schema.validate(table, outcomes)
    probe = "__no_outcome__"
    checked = schema.validate(table.assign(**{probe: 0}), [probe])
    return checked.drop(columns=probe)


def write(table: pd.DataFrame, report: dict, out, report_path=None) -> None:
    """Write the table (``.parquet``, ``.csv`` or ``.csv.gz``) and the report (JSON).

    Each atomically (a temporary file renamed into place).
    """
    out = Path(out)
    name = out.name.lower()
    if not name.endswith((".parquet", ".csv", ".csv.gz")):
        raise fail("unknown_format", f"{str(out)!r}: expected .parquet, .csv or .csv.gz")
    if name.endswith(".parquet"):
        atomic_write(out, lambda p: table.to_parquet(p, index=False))
    else:
        text = table.to_csv(index=False, lineterminator="\n").encode("utf-8")
        if name.endswith(".gz"):  # no file name or time in the header: reruns are byte-identical
            text = gzip.compress(text, mtime=0)
        atomic_write(out, lambda p: Path(p).write_bytes(text))
    if report_path is not None:
        text = json.dumps(report, indent=2, default=str) + "\n"
        atomic_write(
            report_path, lambda p: Path(p).write_text(text, encoding="utf-8", newline="\n")
        )


def summary(report: dict) -> str:
    """Return a few lines on the build for the terminal."""
    r = report["rows"]
    lines = [
        f"LSOAs read {r['read']}, linked {r['linked']}, unmatched {r['unmatched']}, "
        f"in table {r.get('in_table', '?')}; {report.get('las', '?')} children's-services "
        f"LAs (DfE year {report['la_year']})"
    ]
    for reason, v in report.get("unmatched", {}).items():
        lines.append(f"  unmatched: {reason}: {v['count']} (e.g. {v['lsoas'][:3]})")
    for c in report.get("changes", []):
        lines.append(
            f"  {c['kind']}: {c['old']} {c['old_name']} -> {c['new']} {c['new_name']}"
            f" ({c['rows']} LSOAs)"
        )
    for k, v in report.get("checks", {}).items():
        lines.append(f"  check {k}: {v}")
    return "\n".join(lines)
