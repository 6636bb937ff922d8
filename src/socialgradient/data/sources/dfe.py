"""DfE children's social care tables and ONS child populations by LA and year, tidy.

Reads DfE's explore-education-statistics CSVs as published (``time_period, time_identifier,
geographic_level, country_code, ..., old_la_code, new_la_code, la_name``, a category column,
then measures) into a long table with one row per (area, year, measure):

``table``      which publication table (:data:`DFE_TABLES` key, or ``population``)
``level``      ``Local authority`` (default), ``Regional`` or ``National``
``la``         ONS code of the area (``new_la_code``; region/country code at those levels)
``old_la_code`` DfE's 3-digit LA number (LA rows; missing otherwise)
``la_name``    the area's name
``year``       the year the figure refers to: for DfE tables the **reporting year ending 31
               March** (``2019`` = April 2018-March 2019, counts during the year or at
               31 March); for the population, the **mid-year** of the estimate (June)
``measure``    the published column name (CLA: prefixed by the population type, e.g.
               ``cla_at_31_march_children_count``)
``value``      float: counts of children/episodes/plans, percentages (``*_percent``, 0-100)
               or rates per 10,000 children aged 0-17 (``rate_per_10000``); missing when
               suppressed
``suppressed`` True where the cell holds a suppression marker (:data:`SUPPRESSION`)
``marker``     the marker as published (``c``, ``x``, ``z``, ``u``, ``low``, ...), else empty

No row is dropped: suppressed cells stay, as missing values with their flag. An empty cell
or a text not among the markers is refused (``missing_value`` / ``non_numeric``). Contains
public sector information licensed under the Open Government Licence v3.0 (DfE, ONS).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from socialgradient.data.schema import fail
from socialgradient.data.sources.base import (
    _rows_text,
    check_codes,
    drop_thousands,
    read_csv_text,
    require_columns,
)

#: Suppression and special-value markers used by DfE/ONS (lower-case, stripped):
#: c confidential, x not available, z not applicable, u low reliability, low (rounds to 0),
#: k (fewer than 0.5), ``..``/``:`` not available, ``~`` rounds to zero, ``-``/``*`` nil
#: or suppressed in older tables.
SUPPRESSION = frozenset(
    {"c", "x", "z", "u", "low", "k", "..", ":", "~", "-", "*", "[c]", "[x]", "[z]", "[low]"}
)

META_COLUMNS = [
    "time_period",
    "time_identifier",
    "geographic_level",
    "country_code",
    "country_name",
    "region_code",
    "region_name",
    "old_la_code",
    "new_la_code",
    "la_name",
]

#: Tables of shared/data/dfe_csc: key -> (file name, category column, measures required).
DFE_TABLES = {
    "cin": (
        "b1_children_in_need_2013_to_2025.csv",
        "category",
        ["Anypoint_child", "Started_episodes", "At31_episodes"],
    ),
    "referrals": (
        "c1_children_in_need_referrals_and_rereferrals_2013_to_2025.csv",
        "category",
        ["referral_count", "rereferral_count"],
    ),
    "assessment_factors": (
        "c3_factors_identified_at_end_of_assessment_2018_to_2025.csv",
        "category",
        ["Episodes_with_assessment_factor"],
    ),
    "cpp_starts": (
        "d3_cpps_subsequent_plan_2013_to_2025.csv",
        "category",
        ["CPP_start", "CPP_subsequent"],
    ),
    "cpp_duration": ("d5_cpps_at31march_by_duration_2013_to_2025.csv", "category", ["CPP_At31"]),
    "cla": (
        "cla_number_and_rate_per_10k_children.csv",
        "population_type",
        ["population_estimate", "children_count", "rate_per_10000"],
    ),
}
POPULATION_FILE = (
    "ons_mid-year_population_estimates_2012_to_2024.csv",
    "age_group",
    ["population_estimate"],
)

LEVELS = {"Local authority": "new_la_code", "Regional": "region_code", "National": "country_code"}
LONG_COLUMNS = [
    "table",
    "level",
    "la",
    "old_la_code",
    "la_name",
    "year",
    "measure",
    "value",
    "suppressed",
    "marker",
]


def _cla_prefix(population_type: str) -> str:
    text = str(population_type).lower()
    for key, prefix in (
        ("31 march", "cla_at_31_march"),
        ("starting", "cla_started"),
        ("ceasing", "cla_ceased"),
    ):
        if key in text:
            return prefix
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


def _years(series: pd.Series, source: str) -> np.ndarray:
    text = series.astype(object).where(series.notna(), "").astype(str).str.strip()
    four = text.str.fullmatch(r"[0-9]{4}").to_numpy(bool)
    six = text.str.fullmatch(r"[0-9]{6}").to_numpy(bool)  # 201819: year ending in 2019
    six = six & np.array(
        [not s or (int(t[:4]) + 1) % 100 == int(t[4:]) for t, s in zip(text, six, strict=True)],
        dtype=bool,
    )  # not 201899
    bad = ~(four | six)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise fail(
            "malformed_year",
            f"{source}: column 'time_period': {len(rows)} values not "
            f"a year like 2019 or 201819: {_rows_text(rows, series.to_numpy(object))}",
            rows,
            ["time_period"],
        )
    year = np.where(
        four, pd.to_numeric(text.where(four, "0")), pd.to_numeric(text.str[:4].where(six, "0")) + 1
    )
    return year.astype(np.int64)


def read_dfe_table(
    path,
    table: str | None = None,
    level: str = "Local authority",
    category: str | None = None,
    required=(),
) -> pd.DataFrame:
    """Read one DfE table into the long format of this module.

    ``table`` is a :data:`DFE_TABLES` key, else guessed from the file name; only the rows of
    geographic ``level`` are kept.
    """
    path = Path(path)
    if table is None:
        hits = [
            k
            for k, (name, *_) in DFE_TABLES.items()
            if path.name.split(".")[0] == name.split(".")[0]
        ]
        if not hits and path.name.startswith(POPULATION_FILE[0][:20]):
            hits = ["population"]
        if not hits:
            raise fail(
                "unknown_table",
                f"cannot tell which DfE table {path.name!r} is; pass "
                f"table= one of {sorted(DFE_TABLES)} or 'population'",
            )
        table = hits[0]
    if table == "population":
        _, cat, req = POPULATION_FILE
    elif table in DFE_TABLES:
        _, cat, req = DFE_TABLES[table]
    else:
        raise fail(
            "unknown_table",
            f"no DfE table {table!r}; choose from {sorted(DFE_TABLES)} or 'population'",
        )
    cat, req = category or cat, list(required) or req
    if level not in LEVELS:
        raise ValueError(f"level {level!r}: choose from {list(LEVELS)}")
    source = f"DfE {table} ({path.name})"
    raw = read_csv_text(path, source)
    require_columns(raw, [*META_COLUMNS, cat, *req], source, path)
    start = list(raw.columns).index(cat) + 1
    measures = [c for c in raw.columns[start:] if c not in META_COLUMNS]
    measures += [c for c in req if c not in measures]  # required, wherever they stand
    raw = raw[raw["geographic_level"] == level].reset_index(drop=True)
    if len(raw) == 0:
        raise fail("empty_file", f"{source}: no rows at geographic_level {level!r}")
    code_col = LEVELS[level]
    la = check_codes(raw[code_col], "la", source, code_col)
    old = raw["old_la_code"]
    if level == "Local authority":
        text = old.astype(object).where(old.notna(), "").astype(str)
        bad = ~text.str.fullmatch(r"[0-9]{3}").to_numpy(bool)
        if bad.any():
            rows = np.flatnonzero(bad)
            mangled = text.str.fullmatch(r"[0-9]{1,3}(\.0+)?|[0-9.]+[eE][+-]?[0-9]+")
            rule = "excel_mangled_code" if mangled.to_numpy(bool)[rows].all() else "malformed_la"
            raise fail(
                rule,
                f"{source}: column 'old_la_code': {len(rows)} values not a "
                f"3-digit DfE LA number: {_rows_text(rows, old.to_numpy(object))}",
                rows,
                ["old_la_code"],
            )
    year = _years(raw["time_period"], source)
    prefix = raw[cat].map(_cla_prefix) if table == "cla" else None
    parts = []
    for m in measures:
        cell = raw[m].astype(object)
        missing = cell.isna().to_numpy(bool)
        text = cell.where(~cell.isna(), "").astype(str).str.strip()
        marker = text.str.lower().isin(SUPPRESSION).to_numpy(bool)
        num = pd.to_numeric(
            drop_thousands(text).where(~marker & ~missing), errors="coerce"
        ).to_numpy("float64")
        if missing.any():
            rows = np.flatnonzero(missing)
            raise fail(
                "missing_value",
                f"{source}: column {m!r}: {len(rows)} empty cells "
                f"(DfE marks suppression with c, x, z, ...; an empty cell is not "
                f"allowed): {_rows_text(rows, la.to_numpy(object))}",
                rows,
                [m],
            )
        bad = (np.isnan(num) | np.isinf(num)) & ~marker
        if bad.any():
            rows = np.flatnonzero(bad)
            raise fail(
                "non_numeric",
                f"{source}: column {m!r}: {len(rows)} cells neither a "
                f"number nor a suppression marker {sorted(SUPPRESSION)}: "
                f"{_rows_text(rows, cell.to_numpy(object))}",
                rows,
                [m],
            )
        if (num < 0).any():  # counts, percentages and rates are never negative
            rows = np.flatnonzero(num < 0)
            raise fail(
                "out_of_range",
                f"{source}: column {m!r}: {len(rows)} negative cells: "
                f"{_rows_text(rows, cell.to_numpy(object))}",
                rows,
                [m],
            )
        name = (prefix + "_" + m) if prefix is not None else pd.Series(m, index=raw.index)
        parts.append(
            pd.DataFrame(
                {
                    "table": table,
                    "level": level,
                    "la": la.to_numpy(object),
                    "old_la_code": raw["old_la_code"].to_numpy(object),
                    "la_name": raw["la_name"].to_numpy(object),
                    "year": year,
                    "measure": name.to_numpy(object),
                    "value": num,
                    "suppressed": marker,
                    "marker": np.where(marker, text.to_numpy(object), ""),
                }
            )
        )
    long = pd.concat(parts, ignore_index=True)
    dup = long.duplicated(["la", "year", "measure"], keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        keys = long["la"] + " " + long["year"].astype(str) + " " + long["measure"]
        raise fail(
            "duplicate_key",
            f"{source}: {len(rows)} cells repeat an (LA, year, "
            f"measure): {_rows_text(rows, keys.to_numpy(object))}",
            rows,
            ["la", "time_period"],
        )
    long.attrs.update(source=source, path=str(path), rows_read=len(raw))
    return long[LONG_COLUMNS]


def read_population(path, level: str = "Local authority") -> pd.DataFrame:
    """ONS mid-year estimates of children aged 0-17 by children's services LA (DfE format).

    Long format as :func:`read_dfe_table`; ``measure`` is ``population_estimate`` (persons
    aged 0-17 at 30 June of ``year``). DfE rates for the year to 31 March *t* use the
    mid-(*t*-1) estimate.
    """
    return read_dfe_table(path, "population", level=level)


def read_dfe_csc(folder, tables=None, level: str = "Local authority") -> pd.DataFrame:
    """Read every table of :data:`DFE_TABLES` found in ``folder``, in the long format.

    ``tables``: the keys to require. The tables are concatenated; ``attrs['tables']`` lists
    those read.
    """
    folder = Path(folder)
    wanted = list(tables) if tables is not None else list(DFE_TABLES)
    out, used = [], []
    for key in wanted:
        if key not in DFE_TABLES:
            raise fail("unknown_table", f"no DfE table {key!r}; choose from {sorted(DFE_TABLES)}")
        name = DFE_TABLES[key][0]
        path = next((p for p in (folder / name, folder / (name + ".gz")) if p.is_file()), None)
        if path is None:
            if tables is not None:
                raise fail("file_not_found", f"DfE {key}: no {name!r} in {str(folder)!r}")
            continue
        out.append(read_dfe_table(path, key, level=level))
        used.append(key)
    if not out:
        raise fail(
            "file_not_found",
            f"no DfE table files in {str(folder)!r}; expected any of "
            f"{[v[0] for v in DFE_TABLES.values()]}",
        )
    long = pd.concat(out, ignore_index=True)
    long.attrs["tables"] = used
    return long
