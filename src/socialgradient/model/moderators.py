"""The LA table of LA moderators (``la_data`` in a spec): reading and its contract.

An LA table has one row per LA, a column ``la`` (the codes of the neighbourhood table) and
one numeric column per LA moderator, e.g. ``data/las.parquet``'s ``spend_per_child``,
``agency_share``, ``turnover``. Rules (each an
:class:`socialgradient.data.schema.InputError` naming the rows or LAs):
``missing_column``, ``duplicate_la``, ``missing_la`` (an LA of the neighbourhood table has
no row), ``missing_value``, ``non_numeric``, ``non_finite``, ``constant_moderator`` (one value
over the fit's LAs). Rows for LAs outside the neighbourhood table are allowed and unused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from socialgradient.data.schema import fail, read_table

MAX_SHOWN = 10


def read_la_table(path: str | Path) -> pd.DataFrame:
    """Read an LA table (CSV, CSV.gz or Parquet); see :func:`validate_la_table`."""
    path = Path(path)
    if path.suffix == ".parquet" and path.exists():
        return pd.read_parquet(path)
    return read_table(path)


def validate_la_table(table: pd.DataFrame, columns: Sequence[str], las) -> pd.DataFrame:
    """Check an LA table for the moderators ``columns`` over the fit's LAs ``las``.

    Returns
    -------
    DataFrame
        One row per LA of ``las`` in that order: ``la`` and the moderator columns as float.
    """
    columns = list(columns)
    missing = [c for c in ("la", *columns) if c not in table.columns]
    if missing:
        raise fail(
            "missing_column",
            f"LA table: columns {missing} not found; columns found: "
            f"{[str(c) for c in table.columns]}",
            columns=missing,
        )
    codes = table["la"].astype(str)
    dup = codes.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        raise fail(
            "duplicate_la",
            f"LA table: LAs with more than one row: "
            f"{_some(sorted(set(codes[dup])))} (rows {_some(rows.tolist())})",
            rows,
            ["la"],
        )
    las = [str(c) for c in las]
    absent = sorted(set(las) - set(codes))
    if absent:
        raise fail(
            "missing_la",
            f"LA table: {len(absent)} LAs of the neighbourhood table have no row: {_some(absent)}",
            columns=["la"],
        )
    sub = table.assign(la=codes).set_index("la").loc[las, columns]
    out = pd.DataFrame({"la": las})
    for c in columns:
        raw = sub[c]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(float)
        for rule, bad in (
            ("missing_value", raw.isna().to_numpy()),
            ("non_numeric", np.isnan(values) & raw.notna().to_numpy()),
            ("non_finite", np.isinf(values)),
        ):
            if bad.any():
                where = [las[i] for i in np.flatnonzero(bad)]
                raise fail(
                    rule,
                    f"LA table: column {c!r} is {rule.replace('_', ' ')} for LAs {_some(where)}",
                    columns=[c],
                )
        if np.ptp(values) == 0:
            raise fail(
                "constant_moderator",
                f"LA table: column {c!r} takes one value "
                f"({values[0]!r}) over the fit's LAs: it cannot moderate anything",
                columns=[c],
            )
        out[c] = values
    return out


def _some(items: list) -> str:
    more = f" and {len(items) - MAX_SHOWN} more" if len(items) > MAX_SHOWN else ""
    return ", ".join(map(str, items[:MAX_SHOWN])) + more
