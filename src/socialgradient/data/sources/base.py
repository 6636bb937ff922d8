"""Shared machinery of the public-file readers (:mod:`socialgradient.data.sources`).

Every reader declares its file as a *layout*: the published column names it needs and, for
each, the name it is given in the returned table and its kind:

``lsoa`` / ``la``
    an area code (``E01000001`` / ``E06000052``), checked exactly: surrounding whitespace,
    a lost zero (``E1000001``, what a spreadsheet leaves after treating the code as a
    number), scientific notation (``1.00E+05``) or anything else is refused.
``str``
    free text (names), kept as read; empty cells are missing values.
``number``
    a number; thousands separators (``"29,199"``) are accepted, as published.

Errors are :class:`~socialgradient.data.schema.InputError` with these rule ids, each naming
the file and (for value rules) the offending rows, 0-based data rows of the file as read
(the file's line number is the row + 2):

``file_not_found``, ``empty_file``, ``undecodable``, ``unreadable``, ``duplicate_column``
    as :func:`socialgradient.data.schema.read_table`;
``missing_column``
    a required published column is absent; the message lists the expected and found columns;
``excel_mangled_code``
    a code that a spreadsheet has damaged (lost leading zero, scientific notation, ``.0``);
``malformed_lsoa`` / ``malformed_la``
    any other code that is not exactly of the expected form;
``missing_value``, ``non_numeric``, ``out_of_range``
    values that are empty, not numbers, or outside their documented range;
``duplicate_lsoa`` / ``duplicate_key``
    a key (LSOA; or LA, year and measure) repeated with different or equal rows.
"""

from __future__ import annotations

import re
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from socialgradient.data.schema import CODE_PATTERNS, fail

MAX_SHOWN = 8

#: Code forms. ``la`` accepts any 9-character ONS GSS code of an English or Welsh area.
PATTERNS = {"lsoa": CODE_PATTERNS["lsoa"], "la": CODE_PATTERNS["la"]}
_SCIENTIFIC = re.compile(r"^[+-]?[0-9]*\.?[0-9]+[eE][+-]?[0-9]+$")
_LOST_ZERO = re.compile(r"^[EW][0-9]{6,7}$")
_FLOAT_TAIL = re.compile(r"^([EW][0-9]{8})\.0+$")
_THOUSANDS = r"^([+-]?[0-9]{1,3}(?:,[0-9]{3})+)(\.[0-9]*)?$"


def drop_thousands(text: pd.Series) -> pd.Series:
    """Remove thousands separators from well-grouped numbers (``"29,199"``).

    Any other comma (``"1,2,3"``, ``"12,5"``) is kept, so the value is refused as not a number.
    """
    grouped = text.str.match(_THOUSANDS).fillna(False).to_numpy(bool)
    return text.where(~grouped, text.str.replace(",", "", regex=False))


def _rows_text(rows: np.ndarray, values) -> str:
    items = [f"row {r} ({_short(values[r])})" for r in rows[:MAX_SHOWN]]
    more = f" and {len(rows) - MAX_SHOWN} more" if len(rows) > MAX_SHOWN else ""
    return ", ".join(items) + more


def _short(v) -> str:
    if isinstance(v, float) and np.isnan(v):
        return "empty"
    return repr(v)


def read_csv_text(path, source: str) -> pd.DataFrame:
    """Read a published CSV (optionally gzipped, optionally with a BOM) as all-text columns.

    Empty cells become missing (NaN); nothing else is interpreted, so codes keep their exact
    text and suppression markers survive.
    """
    path = Path(path)
    if not path.is_file():
        raise fail("file_not_found", f"{source}: no such file {str(path)!r}")
    if path.stat().st_size == 0:
        raise fail("empty_file", f"{source}: {str(path)!r} is empty")
    try:
        header = pd.read_csv(
            path, header=None, nrows=1, dtype=str, keep_default_na=False, encoding="utf-8-sig"
        )
        names = [str(n) for n in header.iloc[0].tolist()]
        dup = sorted({n for n in names if names.count(n) > 1 and n})
        with warnings.catch_warnings():  # a row longer than the header must not pass
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                encoding="utf-8-sig",
                index_col=False,
                low_memory=False,
            )
    except pd.errors.EmptyDataError as err:
        raise fail("empty_file", f"{source}: {str(path)!r} has no header or data") from err
    except UnicodeDecodeError as err:
        raise fail(
            "undecodable", f"{source}: {str(path)!r} is not UTF-8 text ({err.reason})"
        ) from err
    except (ValueError, OSError, EOFError, zlib.error, pd.errors.ParserWarning) as err:
        raise fail("unreadable", f"{source}: cannot read {str(path)!r}: {err}") from err
    table.attrs["duplicate_columns"] = dup
    table.attrs["path"] = str(path)
    return table


def require_columns(table: pd.DataFrame, expected, source: str, path="") -> None:
    """Raise ``missing_column`` naming the expected and found columns."""
    found = [str(c) for c in table.columns]
    missing = [c for c in expected if c not in found]
    where = f" in {str(path)!r}" if path else ""
    if missing:
        raise fail(
            "missing_column",
            f"{source}: columns {missing} not found{where}; expected columns "
            f"{list(expected)}; found columns {found}",
            columns=missing,
        )
    dup = [c for c in table.attrs.get("duplicate_columns", []) if c in expected]
    if dup:
        raise fail(
            "duplicate_column", f"{source}: column names repeated{where}: {dup}", columns=dup
        )


def check_codes(values: pd.Series, kind: str, source: str, column: str) -> pd.Series:
    """Check a code column exactly; return it as str. Kinds: ``lsoa``, ``la``."""
    s = values.astype(object)
    text = s.where(s.notna(), "").astype(str)
    ok = text.str.fullmatch(PATTERNS[kind]).to_numpy(bool)
    if ok.all():
        return text
    arr = s.to_numpy(object)
    missing = s.isna().to_numpy(bool)
    mangled = (
        ~ok
        & ~missing
        & (
            text.str.match(_SCIENTIFIC).to_numpy(bool)
            | text.str.match(_LOST_ZERO).to_numpy(bool)
            | text.str.match(_FLOAT_TAIL).to_numpy(bool)
        )
    )
    if mangled.any():
        rows = np.flatnonzero(mangled)
        raise fail(
            "excel_mangled_code",
            f"{source}: column {column!r}: {len(rows)} codes damaged by a spreadsheet "
            f"(lost leading zero, scientific notation or '.0'; expected like "
            f"{PATTERNS[kind]!r}): {_rows_text(rows, arr)}; re-export the file with the "
            "code column formatted as text",
            rows,
            [column],
        )
    if missing.any():
        rows = np.flatnonzero(missing)
        raise fail(
            "missing_value",
            f"{source}: column {column!r}: {len(rows)} empty codes: {_rows_text(rows, arr)}",
            rows,
            [column],
        )
    rows = np.flatnonzero(~ok)
    raise fail(
        f"malformed_{kind}",
        f"{source}: column {column!r}: {len(rows)} codes not like {PATTERNS[kind]!r} "
        f"(no spaces allowed): {_rows_text(rows, arr)}",
        rows,
        [column],
    )


def parse_numbers(
    values: pd.Series, source: str, column: str, *, allow_missing=False, low=None, high=None
) -> np.ndarray:
    """Text to float64, accepting thousands separators; refuse empty/non-numeric/out of range."""
    s = values.astype(object)
    missing = s.isna().to_numpy(bool)
    text = drop_thousands(s.where(~s.isna(), "").astype(str).str.strip())
    num = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy("float64")
    arr = s.to_numpy(object)
    if missing.any() and not allow_missing:
        rows = np.flatnonzero(missing)
        raise fail(
            "missing_value",
            f"{source}: column {column!r}: {len(rows)} empty values: {_rows_text(rows, arr)}",
            rows,
            [column],
        )
    bad = (np.isnan(num) & ~missing) | np.isinf(num)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise fail(
            "non_numeric",
            f"{source}: column {column!r}: {len(rows)} values not "
            f"finite numbers: {_rows_text(rows, arr)}",
            rows,
            [column],
        )
    out = np.zeros(len(num), bool)
    if low is not None:
        out |= num < low
    if high is not None:
        out |= num > high
    if out.any():
        rows = np.flatnonzero(out)
        raise fail(
            "out_of_range",
            f"{source}: column {column!r}: {len(rows)} values outside "
            f"[{low}, {high}]: {_rows_text(rows, arr)}",
            rows,
            [column],
        )
    return num


def read_layout(
    path,
    layout: Mapping[str, tuple],
    source: str,
    *,
    optional=(),
    key: str | None = "lsoa",
    rows=None,
) -> pd.DataFrame:
    """Read a published CSV by its layout ``{published name: (our name, kind, options)}``.

    ``optional`` names published columns that may be absent (their output column is then
    all-missing). ``rows`` (a callable on the raw text table returning a boolean mask)
    selects the rows to keep before validation, e.g. England only. ``key``: output column
    that must be unique (``duplicate_lsoa``).
    """
    raw = read_csv_text(path, source)
    required = [c for c in layout if c not in optional]
    require_columns(raw, required, source, path)
    if rows is not None:
        raw = raw[rows(raw)].reset_index(drop=True)
    if len(raw) == 0:
        raise fail("empty_file", f"{source}: {str(path)!r} has no data rows")
    out = {}
    for published, (name, kind, *opts) in layout.items():
        options = opts[0] if opts else {}
        if published not in raw.columns:
            out[name] = np.full(len(raw), np.nan)
            continue
        col = raw[published]
        if kind in PATTERNS:
            out[name] = check_codes(col, kind, source, published).to_numpy(object)
        elif kind == "number":
            out[name] = parse_numbers(col, source, published, **options)
        else:
            out[name] = col.to_numpy(object)
    table = pd.DataFrame(out)
    if key is not None:
        dup = table[key].duplicated(keep=False).to_numpy()
        if dup.any():
            r = np.flatnonzero(dup)
            raise fail(
                f"duplicate_{key}" if key == "lsoa" else "duplicate_key",
                f"{source}: {len(r)} rows repeat a {key} code: "
                f"{_rows_text(r, table[key].to_numpy(object))}",
                r,
                [key],
            )
    table.attrs["source"] = source
    table.attrs["path"] = str(path)
    return table
