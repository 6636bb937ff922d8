"""Fuzzing the readers and the input contract: bad input gives a clear InputError, never a
crash, and never a table that silently lost rows.

Whole-file corruptions (the single-cell property lives in ``test_schema.py``): random bytes,
truncated gzip/parquet, UTF-16/latin-1/cp1252 with non-ASCII names, BOMs, duplicated
headers, empty and header-only files, extra/missing/shuffled columns, ragged rows,
Excel-mangled codes, thousands separators, NaN/inf/huge values, dates in count columns,
odd Parquet types. The property, for every reader: the call either returns a valid table
with one row per data row of the file, or raises :class:`InputError` (never another type).
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from socialgradient.data import schema, sources
from socialgradient.data.schema import CODE_PATTERNS, InputError, load, validate
from socialgradient.data.sources import build
from socialgradient.data.sources.iod import FILE_NAMES
from test_sources import _iod_frame, dfe_referrals, make_shared

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
OUTCOMES = ["referrals", "cp_plans"]

# Values that real spreadsheets and exports put in cells.
NASTY = [
    "",
    " ",
    "NaN",
    "nan",
    "NA",
    "N/A",
    "null",
    "None",
    "inf",
    "-inf",
    "Infinity",
    "1e400",
    "-1e400",
    "1e308",
    "1.7976931348623157e308",
    "99999999999999999999999999",
    "9007199254740993",
    "-0",
    "-1",
    "0.5",
    "1,234",
    "1,2,3",
    "12,5",
    "1 234",
    "1_000",
    "0x1F",
    "1e5",
    "1.00E+05",
    "E1000001",
    "E01000002.0",
    "E6000001",
    "E06000001.0",
    "e01000001",
    " E01000001",
    "E01000001 ",
    "E01\u00a0000001",
    "E01\u0660\u0661\u0662\u0663\u0664\u0665",
    "2019-03-31",
    "31/03/2019",
    "TRUE",
    "false",
    "c",
    "x",
    "[c]",
    "\u00e9l\u00e8ve",
    "\u2013",
    "'0123",
    '"quoted"',
    "a\nb",
    "a,b",
    "\t",
    "\x00",
    "\ufeff",
    "\U0001f600",
    "-",
    "*",
    "..",
]


def _records(table: pd.DataFrame) -> list[list[str]]:
    """Header plus data rows, all text (as a spreadsheet would export them)."""
    head = [str(c) for c in table.columns]
    body = [["" if pd.isna(v) else str(v) for v in row] for row in table.itertuples(False)]
    return [head, *body]


@st.composite
def mangled_records(draw, records: list[list[str]]) -> list[list[str]]:
    """Apply one to three whole-file manglings to ``records`` (header first)."""
    rec = [list(r) for r in records]
    for _ in range(draw(st.integers(1, 3))):
        n_col, n_row = len(rec[0]), len(rec)
        op = draw(
            st.sampled_from(
                [
                    "cell",
                    "cell",
                    "cell",
                    "cell",
                    "cells",
                    "cells",
                    "column_all",
                    "drop_column",
                    "extra_column",
                    "duplicate_header",
                    "rename_header",
                    "shuffle_columns",
                    "duplicate_row",
                    "drop_rows",
                    "ragged_long",
                    "ragged_short",
                    "header_only",
                    "header_twice",
                    "column_all",
                ]
            )
        )
        col = draw(st.integers(0, max(n_col - 1, 0)))
        row = draw(st.integers(1, max(n_row - 1, 1))) if n_row > 1 else None
        if op == "cell" and row is not None and col < len(rec[row]):
            rec[row][col] = draw(st.sampled_from(NASTY))
        elif op == "cells" and n_row > 1:
            for _ in range(draw(st.integers(1, 6))):
                r = draw(st.integers(1, n_row - 1))
                c = draw(st.integers(0, len(rec[r]) - 1)) if rec[r] else 0
                if rec[r]:
                    rec[r][c] = draw(st.sampled_from(NASTY))
        elif op == "drop_column" and n_col > 1:
            rec = [r[:col] + r[col + 1 :] for r in rec]
        elif op == "extra_column":
            name = draw(st.sampled_from(["extra", "", "notes", "Unnamed: 0", "\u00e9t\u00e9"]))
            rec = [rec[0] + [name]] + [[*r, draw(st.sampled_from(NASTY))] for r in rec[1:]]
        elif op == "duplicate_header" and n_col > 1:
            other = draw(st.integers(0, n_col - 1))
            if other != col:
                rec[0][other] = rec[0][col]
        elif op == "rename_header":
            rec[0][col] = draw(
                st.sampled_from(
                    [
                        rec[0][col].upper(),
                        " " + rec[0][col],
                        rec[0][col] + " ",
                        "\ufeff" + rec[0][col],
                        rec[0][col] + ".1",
                        "\u00e9" + rec[0][col],
                    ]
                )
            )
        elif op == "shuffle_columns":
            order = draw(st.permutations(range(n_col)))
            rec = [[r[i] for i in order if i < len(r)] for r in rec]
        elif op == "duplicate_row" and row is not None:
            rec.insert(draw(st.integers(1, n_row)), list(rec[row]))
        elif op == "drop_rows" and n_row > 2:
            rec = [rec[0], *rec[1:][: draw(st.integers(1, n_row - 2))]]
        elif op == "ragged_long" and row is not None:
            rec[row] = rec[row] + [draw(st.sampled_from(["1", "x", "E01000001"]))]
        elif op == "ragged_short" and row is not None and len(rec[row]) > 1:
            rec[row] = rec[row][:-1]
        elif op == "header_only":
            rec = rec[:1]
        elif op == "header_twice" and row is not None:
            rec.insert(row, list(rec[0]))
        elif op == "column_all" and n_row > 1:
            value = draw(st.sampled_from(NASTY))
            for r in rec[1:]:
                if col < len(r):
                    r[col] = value
    return rec


def _csv_text(records: list[list[str]], lineterminator: str = "\n") -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=lineterminator).writerows(records)
    return buf.getvalue()


ENCODINGS = ["utf-8"] * 8 + ["utf-8-sig", "utf-16", "latin-1", "cp1252"]


@st.composite
def file_bytes(draw, records: list[list[str]], *, allow_gzip: bool = True):
    """``(bytes, suffix, truncated)``: the records as CSV bytes, in some encoding and
    container, possibly truncated or replaced by random bytes."""
    how = draw(st.sampled_from(["text"] * 12 + ["random", "empty"]))
    if how == "random":
        return draw(st.binary(min_size=1, max_size=300)), ".csv", True
    if how == "empty":
        return b"", ".csv", True
    text = _csv_text(records, draw(st.sampled_from(["\n", "\r\n"])))
    encoding = draw(st.sampled_from(ENCODINGS))
    data = text.encode(encoding, errors="replace")
    truncated = draw(st.integers(0, 9)) == 0
    if truncated:
        data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    suffix = ".csv"
    if allow_gzip and draw(st.booleans()):
        suffix = ".csv.gz"
        data = gzip.compress(data, mtime=0)
        if draw(st.integers(0, 3)) == 0:  # a cut or bit-flipped download
            truncated = True
            if draw(st.booleans()):
                data = data[: draw(st.integers(1, max(len(data) - 1, 1)))]
            else:
                flipped = bytearray(data)
                for i in draw(st.lists(st.integers(10, len(data) - 1), min_size=1, max_size=8)):
                    flipped[i] ^= 0xFF
                data = bytes(flipped)
    return data, suffix, truncated


def _data_rows(data: bytes, suffix: str) -> int | None:
    """Data rows in a CSV file as a csv reader sees them (None: not readable as UTF-8 CSV).

    Blank lines are not rows (pandas skips them; they hold no data)."""
    try:
        raw = gzip.decompress(data) if suffix.endswith(".gz") else data
        text = raw.decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except Exception:
        return None
    return max(sum(1 for r in rows if r) - 1, 0)


def _check_input_error(err: InputError) -> None:
    assert isinstance(err.rule, str)
    assert err.rule
    assert err.message.startswith(err.rule), err.message
    assert all(isinstance(r, int) and r >= 0 for r in err.rows)


def _call(fn, *args, **kwargs):
    """The result, or None after an InputError (checked to be a clear one)."""
    try:
        out = fn(*args, **kwargs)
    except InputError as err:
        _check_input_error(err)
        event(f"InputError {err.rule}")
        return None
    event("accepted")
    return out


# -- the input contract: neighbourhood table --------------------------------------------------


def _contract_table(n_la: int = 3, per_la: int = 3) -> pd.DataFrame:
    n = n_la * per_la
    k = np.arange(n)
    return pd.DataFrame(
        {
            "lsoa": [f"E01{i + 1:06d}" for i in k],
            "la": [f"E0600{j + 1:04d}" for j in k // per_la],
            "children": 150.0 + 10.5 * k,
            "income": (k % per_la + 1) / (per_la + 1),
            "referrals": k * 3 % 7,
            "cp_plans": k % 3,
            "la_name": [["Cornwall", "Bristol", "Ynys M\u00f4n"][j % 3] for j in k // per_la],
        }
    )


def _assert_contract_table(out: pd.DataFrame, n_rows: int) -> None:
    assert isinstance(out, pd.DataFrame)
    assert len(out) == n_rows, "rows silently dropped or invented"
    assert out["lsoa"].str.fullmatch(CODE_PATTERNS["lsoa"]).all()
    assert out["la"].str.fullmatch(CODE_PATTERNS["la"]).all()
    assert np.isfinite(out["children"]).all()
    assert out["children"].between(*schema.CHILDREN_RANGE).all()
    assert out["income"].between(0, 1).all()
    for c in OUTCOMES:
        assert out[c].dtype == np.int64
        assert out[c].between(0, schema.MAX_ROW_COUNT).all()


@SETTINGS
@given(st.data())
def test_fuzzed_csv_neighbourhood_table(data):
    records = data.draw(mangled_records(_records(_contract_table())))
    payload, suffix, _ = data.draw(file_bytes(records))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"table{suffix}"
        path.write_bytes(payload)
        out = _call(load, path, OUTCOMES)
    if out is not None:
        expected = _data_rows(payload, suffix)
        assert expected is not None, "an undecodable/unparseable file was accepted"
        _assert_contract_table(out, expected)


PARQUET_VALUES = {
    "float_nan": np.nan,
    "inf": np.inf,
    "-inf": -np.inf,
    "huge": 1e308,
    "tiny": 5e-324,
    "negative": -1.0,
    "fraction": 0.5,
    "zero": 0.0,
    "big_int": 2**62,
    "text": "12",
    "word": "low",
    "date": pd.Timestamp("2019-03-31"),
    "bool": True,
    "none": None,
    "mangled": "E1000001",
    "scientific": "1.00E+05",
    "float_code": "E01000002.0",
    "bytes": b"E01000001",
    "list": [1, 2],
    "thousands": "1,234",
}


@st.composite
def mangled_frames(draw):
    """A contract table with one to three columns replaced by oddly typed values."""
    table = _contract_table().astype(object)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["cells", "column_dtype", "drop", "extra", "rows"]))
        col = draw(st.sampled_from(list(table.columns)))
        if op == "cells" and len(table):
            rows = draw(st.lists(st.integers(0, len(table) - 1), min_size=1, max_size=4))
            value = draw(st.sampled_from(list(PARQUET_VALUES.values())))
            values = table[col].tolist()
            for r in rows:
                values[r] = value
            table[col] = pd.Series(values, dtype=object)
        elif op == "column_dtype":
            kind = draw(
                st.sampled_from(
                    [
                        "date",
                        "bool",
                        "str",
                        "category",
                        "uint64",
                        "float32",
                        "timedelta",
                        "int8_wrap",
                    ]
                )
            )
            if kind == "date":
                table[col] = pd.date_range("2019-01-01", periods=len(table))
            elif kind == "bool":
                table[col] = np.arange(len(table)) % 2 == 0
            elif kind == "str":
                table[col] = table[col].astype(str)
            elif kind == "category":
                table[col] = table[col].astype(str).astype("category")
            elif kind == "uint64":
                table[col] = np.full(len(table), np.iinfo(np.uint64).max, dtype=np.uint64)
            elif kind == "float32":
                table[col] = np.full(len(table), 3.4e38, dtype=np.float32)
            elif kind == "timedelta":
                table[col] = pd.to_timedelta(np.arange(len(table)), unit="s")
            else:
                table[col] = np.arange(len(table), dtype=np.int64) + 127
        elif op == "drop" and len(table.columns) > 1:
            table = table.drop(columns=col)
        elif op == "extra":
            table["extra"] = draw(st.sampled_from(list(PARQUET_VALUES.values())[:12]))
        elif op == "rows":
            keep = draw(st.integers(0, len(table)))
            table = table.iloc[:keep].reset_index(drop=True)
    return table


def _to_parquet(table: pd.DataFrame, path: Path) -> bool:
    """Write ``table`` as Parquet; False where pyarrow cannot store such a column at all."""
    try:
        table.to_parquet(path, index=False)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return False
    return True


@SETTINGS
@given(mangled_frames(), st.sampled_from(["whole", "truncated", "flipped"]))
def test_fuzzed_parquet_neighbourhood_table(table, damage):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "table.parquet"
        if not _to_parquet(table, path):
            return
        data = path.read_bytes()
        if damage == "truncated":
            path.write_bytes(data[: len(data) // 2])
        elif damage == "flipped":
            flipped = bytearray(data)
            for i in range(8, len(data) - 8, 37):
                flipped[i] ^= 0x5A
            path.write_bytes(bytes(flipped))
        out = _call(load, path, OUTCOMES)
    if out is not None:
        assert damage == "whole" or len(out) == len(table)
        _assert_contract_table(out, len(table))


@SETTINGS
@given(mangled_frames())
def test_fuzzed_frames_validate(table):
    """validate() on in-memory frames of any dtype: a valid table of the same rows, or
    InputError."""
    out = _call(validate, table, OUTCOMES)
    if out is not None:
        _assert_contract_table(out, len(table))


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1", "cp1252", "utf-16-le"])
def test_non_utf8_names_are_refused_clearly(tmp_path, encoding):
    text = _csv_text(_records(_contract_table()))
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode(encoding))
    with pytest.raises(InputError) as info:
        load(path, OUTCOMES)
    assert info.value.rule in {"undecodable", "unreadable"}
    assert "t.csv" in info.value.message


def test_utf8_bom_is_accepted(tmp_path):
    text = _csv_text(_records(_contract_table()))
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("utf-8-sig"))
    out = load(path, OUTCOMES)
    assert next(iter(out.columns)) == "lsoa"
    assert len(out) == 9


def test_bit_flipped_gzip_is_unreadable(tmp_path):
    """A corrupt deflate stream raises zlib.error: it must come out as InputError."""
    data = bytearray(gzip.compress(_csv_text(_records(_contract_table())).encode() * 20))
    for i in range(20, 40):
        data[i] ^= 0xFF
    path = tmp_path / "t.csv.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as info:
        load(path, OUTCOMES)
    assert info.value.rule == "unreadable"


# -- public-file readers ---------------------------------------------------------------------


def _lookup_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "LSOA11CD": [f"E0100000{i}" for i in range(1, 6)],
            "LSOA11NM": ["Cornwall 001A", "Cornwall 002A", "Ynys M\u00f4n 001", "x", "y"],
            "LAD19CD": ["E06000052"] * 3 + ["E09000012"] * 2,
            "LAD19NM": ["Cornwall"] * 3 + ["Hackney"] * 2,
            "FID": range(1, 6),
        }
    )


def _ltla_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "FID": [1, 2, 3],
            "LTLA19CD": ["E06000052", "E07000150", "W06000001"],
            "LTLA19NM": ["Cornwall", "Corby", "Isle of Anglesey"],
            "UTLA19CD": ["E06000052", "E10000021", "W06000001"],
            "UTLA19NM": ["Cornwall", "Northamptonshire", "Isle of Anglesey"],
        }
    )


def _ruc_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "LSOA11CD": [f"E0100000{i}" for i in range(1, 6)],
            "LSOA11NM": ["x"] * 5,
            "RUC11CD": ["A1", "C1", "D1", "E2", "C2"],
            "RUC11": [sources.RUC_CLASSES[c] for c in ["A1", "C1", "D1", "E2", "C2"]],
        }
    )


def _mysociety_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "nation": ["E", "E", "W", "E"],
            "lsoa": ["E01000001", "E01000002", "W01000240", "E01000003"],
            "overall_local_score": [12.5, 30.1, 86.6, 5.0],
            "income_score": [12.0, 25.5, 61.0, 3.25],
        }
    )


def _population_frame() -> pd.DataFrame:
    pop = (
        dfe_referrals()
        .drop(columns=["category", "rereferral_count"])
        .rename(columns={"referral_count": "population_estimate"})
    )
    pop.insert(10, "age_group", "Children aged 0 to 17 years")
    return pop


def _rows_where(records, column: str, value: str | None) -> int:
    """Data rows (of well-formed records) with ``column == value`` (None: all)."""
    head = records[0]
    if value is None:
        return len(records) - 1
    j = head.index(column)
    return sum(1 for r in records[1:] if r[j] == value)


# reader name -> (base frame, reader(path), rows expected from the *parsed* file's records)
READERS = {
    "iod_file_1": (lambda: _iod_frame(1), lambda p: sources.read_iod_file(p, 1), None),
    "iod_file_6": (lambda: _iod_frame(6), lambda p: sources.read_iod_file(p, 6), None),
    "iod_file_7": (lambda: _iod_frame(7), lambda p: sources.read_iod_file(p, 7), None),
    "mysociety": (_mysociety_frame, sources.read_mysociety_scores, ("nation", "E")),
    "lsoa_lad": (_lookup_frame, sources.read_lsoa_lad, None),
    "ltla_utla": (_ltla_frame, sources.read_ltla_utla, None),
    "ruc": (_ruc_frame, sources.read_ruc, None),
    "dfe_referrals": (
        dfe_referrals,
        lambda p: sources.read_dfe_table(p, "referrals"),
        ("geographic_level", "Local authority"),
    ),
    "population": (
        _population_frame,
        sources.read_population,
        ("geographic_level", "Local authority"),
    ),
}


def _parsed_records(data: bytes, suffix: str):
    raw = gzip.decompress(data) if suffix.endswith(".gz") else data
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    return [r for r in rows if r]


def _assert_source_table(name: str, out: pd.DataFrame, records, keep) -> None:
    assert isinstance(out, pd.DataFrame)
    if name.startswith(("dfe", "population")):
        n = _rows_where(records, *keep)
        assert out.attrs["rows_read"] == n, "DfE rows silently dropped"
        assert len(out) % max(n, 1) == 0
        assert len(out) >= n
        assert out["la"].str.fullmatch(CODE_PATTERNS["la"]).all()
        assert (out["value"].isna() == out["suppressed"]).all()
        assert (out["value"].dropna() >= 0).all()
        assert np.isfinite(out["value"].dropna()).all()
        return
    n = _rows_where(records, *keep) if keep else len(records) - 1
    assert len(out) == n, "rows silently dropped or invented"
    key = "lad" if name == "ltla_utla" else "lsoa"
    assert out[key].is_unique
    for col in ("lsoa", "lad", "utla"):
        if col in out.columns:
            assert out[col].str.fullmatch(r"[EW][0-9]{8}").all(), col
    for col in out.select_dtypes("number").columns:
        assert np.isfinite(out[col].dropna()).all(), col


@pytest.mark.parametrize("name", sorted(READERS))
@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(data=st.data())
def test_fuzzed_public_files(name, data):
    frame, reader, keep = READERS[name]
    records = data.draw(mangled_records(_records(frame())))
    payload, suffix, _ = data.draw(file_bytes(records))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"file{suffix}"
        path.write_bytes(payload)
        out = _call(reader, path)
    if out is None:
        return
    try:
        parsed = _parsed_records(payload, suffix)
    except Exception as err:
        raise AssertionError(f"{name}: accepted a file that is not UTF-8 CSV") from err
    _assert_source_table(name, out, parsed, keep)


def test_dfe_required_measure_before_category_is_read(tmp_path):
    """A required measure column placed before the category column is still read (it was
    dropped silently), and a category column placed last no longer crashes."""
    frame = dfe_referrals()
    cols = [c for c in frame.columns if c != "referral_count"]
    path = tmp_path / "c1.csv"
    frame[["referral_count", *cols]].to_csv(path, index=False)
    t = sources.read_dfe_table(path, "referrals")
    assert set(t["measure"]) == {"referral_count", "rereferral_count"}
    cols = [c for c in frame.columns if c != "category"] + ["category"]
    frame[cols].to_csv(path, index=False)
    t = sources.read_dfe_table(path, "referrals")
    assert set(t["measure"]) == {"referral_count", "rereferral_count"}


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("referral_count", "-5", "out_of_range"),
        ("referral_count", "1,2,3", "non_numeric"),
        ("referral_count", "12,5", "non_numeric"),
        ("time_period", "201899", "malformed_year"),
    ],
)
def test_dfe_values_refused(tmp_path, column, value, rule):
    frame = dfe_referrals()
    frame.loc[2, column] = value
    path = tmp_path / "c1.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputError) as info:
        sources.read_dfe_table(path, "referrals")
    assert info.value.rule == rule


def test_unquoted_thousands_in_first_row_is_refused(tmp_path):
    """``1,250`` unquoted splits a cell: the row is longer than the header. Pandas drops the
    extra field of a first row with only a warning, shifting every value after it."""
    frame = _iod_frame(6)
    text = _csv_text(_records(frame)).splitlines()
    assert text[1].startswith('E01000001,Cornwall 000A,E06000052,Cornwall,"1,500",300,')
    text[1] = text[1].replace('"1,500"', "1,500")  # unquoted: one field too many
    path = tmp_path / "f6.csv"
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        sources.read_iod_file(path, 6)
    assert info.value.rule == "unreadable"


def test_ltla_lookup_with_odd_year_header(tmp_path):
    frame = _ltla_frame().rename(columns=lambda c: c.replace("19", "ab"))
    path = tmp_path / "lk.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputError) as info:
        sources.read_ltla_utla(path)
    assert info.value.rule == "missing_column"


# -- build_neighbourhoods on a mangled copy of a tiny shared folder ---------------------------


@pytest.fixture(scope="module")
def tiny_shared(tmp_path_factory):
    return make_shared(tmp_path_factory.mktemp("shared"))


def _shared_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(data=st.data())
def test_fuzzed_build_neighbourhoods(tiny_shared, data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "shared"
        shutil.copytree(tiny_shared, root)
        files = _shared_files(root)
        for target in data.draw(
            st.lists(st.sampled_from(files), min_size=1, max_size=2, unique=True)
        ):
            how = data.draw(st.sampled_from(["mangle", "mangle", "mangle", "delete"]))
            if how == "delete":
                target.unlink()
                continue
            raw = target.read_bytes()
            text = gzip.decompress(raw) if target.name.endswith(".gz") else raw
            records = list(csv.reader(io.StringIO(text.decode("utf-8-sig"), newline="")))
            records = data.draw(mangled_records([r for r in records if r]))
            payload, _suffix, _ = data.draw(file_bytes(records, allow_gzip=False))
            if target.name.endswith(".gz") and payload:
                payload = gzip.compress(payload, mtime=0)
            target.write_bytes(payload)
        got = _call(build.build_neighbourhoods, root)
    if got is None:
        return
    table, report = got
    rows = report["rows"]
    assert rows["read"] == rows["linked"] + rows["unmatched"]
    assert rows["in_table"] == rows["linked"] == len(table)
    unmatched = sum(v["count"] for v in report["unmatched"].values())
    assert unmatched == rows["unmatched"], "an LSOA left the table without a reason"
    assert table["lsoa"].is_unique
    assert table["la"].str.fullmatch(CODE_PATTERNS["la"]).all()
    assert (table["children"] > 0).all()
    assert table["income"].between(0, 1).all()


def test_build_names_each_broken_source(tmp_path):
    root = make_shared(tmp_path / "shared")
    (root / "ruc2011" / "ons_RUC11_LSOA11_EW.csv.gz").write_bytes(b"\x1f\x8b garbage")
    lk = root / "la_lookups" / "ons_LTLA19_to_UTLA19_Apr2019_EW.csv"
    lk.write_bytes(lk.read_text().encode("utf-16"))
    (root / "iod2019" / (FILE_NAMES[1] + ".gz")).unlink()
    with pytest.raises(InputError) as info:
        build.build_neighbourhoods(root)
    err = info.value
    assert err.rule == "source_errors"
    assert {e.rule for e in err.errors} == {"unreadable", "undecodable", "file_not_found"}
    for part in ("ons_RUC11_LSOA11_EW", "ons_LTLA19_to_UTLA19", "IoD2019"):
        assert part in err.message
