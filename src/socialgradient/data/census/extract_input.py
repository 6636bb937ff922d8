"""A flat child-level extract's inputs: its TOML mapping and the extract file itself.

:func:`load_mapping` reads and checks the mapping of :data:`FIELDS` to local columns (the
layout is in :mod:`socialgradient.data.census.extracts`, which reads the extract);
:func:`_read` reads the extract (CSV, every cell as text, or Parquet).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from socialgradient.data.schema import fail

DATES = (
    "referral_date",
    "date_of_birth",
    "assessment_date",
    "cin_plan_start",
    "cin_plan_end",
    "cp_plan_start",
    "cp_plan_end",
    "looked_after_start",
    "closure_date",
)
FIELDS = (
    "child_id",
    "la",
    "lsoa",
    "year",
    "episode_id",
    "gender",
    "ethnicity",
    "referral_source",
    "referral_nfa",
    "factors",
    "cp_category",
    "closure_reason",
    "repeat_cp_plan",
    *DATES,
)
REQUIRED = ("child_id", "la", "lsoa", "referral_date", "date_of_birth")


def load_mapping(path_or_dict: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Read and check a mapping (TOML file or dict): ``{"extract", "columns", "values"}``."""
    if isinstance(path_or_dict, dict):
        m = path_or_dict
    else:
        try:
            m = tomllib.loads(Path(path_or_dict).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise fail("bad_mapping", f"cannot read {path_or_dict}: {err}") from err
    extra = set(m) - {"extract", "columns", "values"}
    cols, values, ext = m.get("columns", {}), m.get("values", {}), m.get("extract", {})
    if extra or not all(isinstance(x, dict) for x in (cols, values, ext)):
        raise fail(
            "bad_mapping",
            f"expected tables [extract], [columns], [values.<field>]; got {sorted(m)}",
        )
    unknown = sorted((set(cols) | set(values)) - set(FIELDS))
    if unknown:
        raise fail(
            "unknown_field",
            f"mapping names fields {unknown}; known fields: {list(FIELDS)}",
            columns=unknown,
        )
    missing = [f for f in REQUIRED if f not in cols and not (f in ("la",) and "la" in ext)]
    if missing:
        raise fail(
            "missing_mapping", f"no column mapped for required fields {missing}", columns=missing
        )
    bad = [f for f, v in cols.items() if not isinstance(v, str)]
    if bad:
        raise fail("bad_mapping", f"column names must be strings: {bad}")
    return {"extract": ext, "columns": cols, "values": values}


def _read(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if not name.endswith((".csv", ".csv.gz", ".parquet")):
        raise fail("unknown_format", f"{str(path)!r}: expected .csv, .csv.gz or .parquet")
    if not path.is_file():
        raise fail("file_not_found", f"no such file {str(path)!r}")
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        t = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError as err:
        raise fail("empty_file", f"{str(path)!r} has no header") from err
    except UnicodeDecodeError as err:
        raise fail("undecodable", f"{str(path)!r} is not UTF-8") from err
    except (ValueError, OSError) as err:
        raise fail("unreadable", f"cannot read {str(path)!r}: {err}") from err
    dup = sorted(
        {
            c.rsplit(".", 1)[0]
            for c in t.columns
            if "." in c and c.rsplit(".", 1)[0] in t.columns and c.rsplit(".", 1)[1].isdigit()
        }
    )
    if dup:
        raise fail("duplicate_column", f"{str(path)!r} repeats {dup}", columns=dup)
    return t


def _one(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    v = str(v).strip()
    return v or None


def _text(s: pd.Series) -> pd.Series:
    """Strings with blanks as None (numbers from Parquet become their text)."""
    return pd.Series([_one(v) for v in s.to_numpy(object)], index=s.index, dtype=object)


def _apply(s: pd.Series, fn: Callable[[Any], Any]) -> pd.Series:
    return pd.Series([fn(v) for v in s.to_numpy(object)], index=s.index, dtype=object)
