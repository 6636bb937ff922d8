"""How the input contract reports a broken rule: :class:`InputError`, built by :func:`fail`.

Every reader (the neighbourhood table of :mod:`socialgradient.data.schema`, the public
sources, the census) raises its errors through :func:`fail`; the table's rules list their
offending rows (with the LSOA code and value) with :func:`_listing`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

MAX_SHOWN = 10  # offending rows listed in a message


class InputError(ValueError):
    """A table breaks the input contract.

    Attributes
    ----------
    rule : str
        Short id of the rule broken, e.g. ``'duplicate_lsoa'``.
    rows : list of int
        Offending rows, 0-based positions in the table as read (empty for column rules).
    columns : tuple of str
        Columns involved.
    message : str
        Human-readable text; starts with the rule id.
    errors : list of InputError
        Only on a ``source_errors`` error (several source files broken, from
        :func:`socialgradient.data.sources.build.build_neighbourhoods`): each file's error.
    """

    errors: list[InputError]  # set on source_errors only

    def __init__(
        self, rule: str, message: str, rows: Iterable[Any] = (), columns: Iterable[str] = ()
    ) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.rows = [int(r) for r in rows]
        self.columns = tuple(columns)

    def __reduce__(self) -> tuple[type[InputError], tuple[str, str, list[int], tuple[str, ...]]]:
        return type(self), (self.rule, self.message, self.rows, self.columns)


def fail(rule: str, text: str, rows: Iterable[Any] = (), columns: Iterable[str] = ()) -> InputError:
    """Return an :class:`InputError` for ``rule`` whose message is ``"<rule>: <text>"``.

    The one way every reader builds its errors (schema, sources, census).
    """
    return InputError(rule, f"{rule}: {text}", rows, columns)


def _listing(table: pd.DataFrame, rows: np.ndarray, column: str | None) -> str:
    """Up to MAX_SHOWN rows with their LSOA code and value in ``column``, plus 'and N more'."""
    lsoa, values = table["lsoa"].to_numpy(object), None
    if column is not None and column != "lsoa":
        values = table[column].to_numpy(object)
    items = []
    for r in rows[:MAX_SHOWN]:
        value = "" if values is None else f", {column}={_show(values[r])}"
        items.append(f"row {r} (lsoa {_show(lsoa[r])}{value})")
    more = f" and {len(rows) - MAX_SHOWN} more" if len(rows) > MAX_SHOWN else ""
    return ", ".join(items) + more


def _show(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)
