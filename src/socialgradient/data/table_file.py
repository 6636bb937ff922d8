"""Read a neighbourhood table from a file (CSV, gzipped CSV or Parquet) or an output set.

:func:`read_table` reads it, codes as strings, without checking it beyond readability: the
input contract is :func:`socialgradient.data.schema.validate`.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path
from typing import Any

import pandas as pd

from socialgradient.data.errors import InputError, fail


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a neighbourhood table from ``.csv``, ``.csv.gz`` or ``.parquet``, or an output set.

    The output set (folder) is one that ``data build`` or ``census aggregate|extract`` wrote:
    its ``internal/neighbourhoods.*`` is read, once the set is verified.

    Codes (``lsoa``, ``la``) are read as strings, never parsed as numbers; other columns
    keep pandas' inference. Nothing is validated beyond readability: see :func:`validate`.

    Parameters
    ----------
    path : str or pathlib.Path
        File to read (the format is chosen by suffix), or an output-set folder.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    InputError
        ``unknown_format``, ``file_not_found``, ``empty_file``, ``undecodable``,
        ``unreadable`` or ``duplicate_column`` (two header cells with the same name).
    """
    from socialgradient.util import outputs  # standard library only

    try:
        path = outputs.table_of(path)
    except outputs.OutputSetError as err:
        raise fail("unreadable", str(err)) from None
    name = path.name.lower()
    if not name.endswith((".csv", ".csv.gz", ".parquet")):
        raise fail("unknown_format", f"{str(path)!r}: expected .csv, .csv.gz or .parquet")
    if not path.is_file():
        raise fail("file_not_found", f"no such file {str(path)!r}")
    if path.stat().st_size == 0:
        raise fail("empty_file", f"{str(path)!r} is empty")
    try:
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            header = pq.read_schema(path).names
            _check_header(header, path)
            return pd.read_parquet(path)
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
        _check_header(header.iloc[0].tolist(), path)
        with warnings.catch_warnings():  # a row longer than the header must not pass
            warnings.simplefilter("error", pd.errors.ParserWarning)
            codes = {"lsoa": str, "la": str}
            return pd.read_csv(path, dtype=codes, index_col=False, low_memory=False)
    except pd.errors.EmptyDataError as err:
        raise fail("empty_file", f"{str(path)!r} has no header or data") from err
    except UnicodeDecodeError as err:
        raise fail("undecodable", f"{str(path)!r} is not UTF-8 text ({err.reason})") from err
    except InputError:
        raise
    except (ValueError, OSError, EOFError, zlib.error, pd.errors.ParserWarning) as err:
        raise fail("unreadable", f"cannot read {str(path)!r}: {err}") from err


def _check_header(names: list[Any], path: Path) -> None:
    dup = sorted({str(n) for n in names if names.count(n) > 1})
    if dup:
        raise fail("duplicate_column", f"{str(path)!r} repeats column names {dup}", columns=dup)
