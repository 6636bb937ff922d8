"""The protection of one count table: threshold, secondary suppression, perturbation, rounding.

:func:`protect` applies a :class:`~socialgradient.release.rule.Rule` to a table's count
columns: counts below the threshold are hidden (primary), then complementary cells until
every published margin hides 0 or at least 2 cells and the exact check
(:func:`socialgradient.release.suppression.complete`) leaves no hidden cell pinned; visible
counts are perturbed by the cell-key method and rounded; rates derived from a hidden count
are blanked. :func:`public_actions` is what the log may say of it. The gate that writes the
result is :mod:`socialgradient.release.disclosure`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from socialgradient.release import audit, perturbation, suppression
from socialgradient.release import ledger as ledgers
from socialgradient.release.rule import DEFAULT, Rule

MAGNITUDE_SHARE = 0.1  # magnitude noise without unit-level data: up to 10% of the value


@dataclass(frozen=True)
class Protected:
    """A protected table: the safe values, each cell's status and what was done.

    The safe table (suppressed cells missing), a parallel ``status`` table ("ok",
    "primary", "secondary", "rounded") keyed by the group columns, the actions taken and
    the public summary of the protection check (``check``).
    """

    table: pd.DataFrame
    status: pd.DataFrame
    count_columns: tuple[str, ...]
    actions: list[str] = field(default_factory=list)
    check: dict = field(default_factory=dict)

    def count(self, state: str) -> int:
        """Return how many count cells are in ``state``."""
        return int((self.status[list(self.count_columns)].to_numpy() == state).sum())

    @property
    def hidden(self) -> np.ndarray:
        """Hidden cells (rows x count columns)."""
        s = self.status[list(self.count_columns)].to_numpy()
        return (s == "primary") | (s == "secondary")


def _names(columns) -> list[str]:
    return [columns] if isinstance(columns, str) else list(columns or ())


def _validate(table: pd.DataFrame, counts: list[str], groups: list[str]) -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(table).__name__}")
    if table.columns.duplicated().any():
        raise ValueError(f"duplicated columns: {list(table.columns[table.columns.duplicated()])}")
    missing = [c for c in counts + groups if c not in table.columns]
    if missing:
        raise ValueError(f"columns not in the table: {missing}")
    if set(counts) & set(groups) or len(set(counts)) < len(counts):
        raise ValueError("count and group columns must be distinct")
    for c in counts:
        col = table[c]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise ValueError(f"count column {c!r} is not numeric ({col.dtype})")
        v = col.to_numpy(dtype=float, na_value=np.nan)
        if not np.isfinite(v).all() or (v < 0).any():
            raise ValueError(f"count column {c!r} has missing, infinite or negative values")
    if groups and table.duplicated(groups).any():
        raise ValueError(f"rows are not unique by {groups}: totals would be ambiguous")


def _by(groups: list[str], totals) -> tuple[list[list[str]], object]:
    """Return the published margins' group subsets and the sums across columns.

    The group subsets whose margins are published (``totals["by"]``; default every
    proper subset, ``()`` being the grand total) and which row totals across count columns
    are (``totals["across"]``: True, the default and the conservative view, for all count
    columns; False for none; or a list of lists of columns, each a group whose sum is
    published, e.g. categories that partition a published count).
    """
    totals = dict(totals or {})
    if set(totals) - {"by", "across"}:
        raise ValueError(f"unknown totals keys: {sorted(set(totals) - {'by', 'across'})}")
    by = totals.get("by")
    if by is None:
        by = [s for r in range(len(groups)) for s in itertools.combinations(groups, r)]
    by = [_names(s) for s in by]
    for subset in by:
        if set(subset) - set(groups):
            raise ValueError(f"totals by {subset}: not all are group columns {groups}")
    across = totals.get("across", True)
    return by, across if isinstance(across, list | tuple) else bool(across)


def _lines(keys: pd.DataFrame, counts: list[str], groups: list[str], totals) -> list[np.ndarray]:
    """Return the published margins as arrays of flat cell indices (row * n_cols + column)."""
    n_cols = len(counts)
    by, across = _by(groups, totals)
    if isinstance(across, list | tuple):
        unknown = sorted({c for g in across for c in g} - set(counts))
        if unknown:
            raise ValueError(f"totals across {unknown}: not count columns")
        sets = [np.array([counts.index(c) for c in g]) for g in across if len(g) > 1]
    else:
        sets = [np.arange(n_cols)] if across and n_cols > 1 else []
    cells = np.arange(len(keys) * n_cols).reshape(len(keys), n_cols)
    out: dict[frozenset, np.ndarray] = {}

    def add(idx: np.ndarray) -> None:
        if len(idx) > 1:  # a one-cell margin is the cell itself: not a line to protect
            out.setdefault(frozenset(idx.tolist()), np.sort(idx))

    for subset in by:
        parts = (
            keys.groupby(subset, sort=False, dropna=False).indices.values()
            if subset
            else [np.arange(len(keys))]
        )
        for rows in parts:
            for j in range(n_cols):
                add(cells[rows, j])
            for cols in sets:
                add(cells[np.ix_(rows, cols)].ravel())
    for row in cells:
        for cols in sets:
            add(row[cols])
    return list(out.values())


def _pick(values: np.ndarray, suppressed: np.ndarray, candidates: np.ndarray) -> int | None:
    """Return the smallest positive visible cell among ``candidates`` (a zero if none)."""
    free = candidates[~suppressed[candidates]]
    if not len(free):
        return None
    key = np.where(values[free] > 0, values[free], np.inf)
    return int(free[np.argmin(key)] if np.isfinite(key).any() else free[0])


def _ordered(values: np.ndarray, cells: np.ndarray) -> list[int]:
    """``cells`` smallest positive first, zeros last."""
    cells = np.unique(cells)
    return [int(c) for c in cells[np.lexsort((cells, values[cells], values[cells] <= 0))]]


def _secondary(values, suppressed, lines, label, actions, protection, integer) -> dict:
    """Hide complementary cells in place until no hidden cell is pinned.

    Complementary suppressions in place: first every published total hides 0 or at
    least 2 cells, then the exact check (:func:`socialgradient.release.suppression.complete`) until
    no hidden cell's range is narrower than ``protection``. Returns the check's public
    stats.
    """
    if not lines:
        return audit.Stats().public()
    flat = np.concatenate(lines)
    starts = np.cumsum([0] + [len(ln) for ln in lines[:-1]])
    stats = audit.Stats()
    while True:  # every total hides 0 or >= 2 cells, then the exact check, until neither adds
        _lone(values, suppressed, lines, flat, starts, label, actions)
        added, more, done = suppression.complete(
            values, suppressed, lines, protection, integer, label
        )
        stats.add(done)
        if not added:
            actions += more
            return stats.public()
        actions += [a for a in more if a.startswith("secondary")]


def _lone(values, suppressed, lines, flat, starts, label, actions) -> None:
    """Hide a complement in every published total that hides exactly one cell."""
    changed = True
    while changed:
        changed = False
        for i in np.flatnonzero(np.add.reduceat(suppressed[flat].astype(int), starts) == 1):
            line = lines[i]
            if suppressed[line].sum() == 1 and (c := _pick(values, suppressed, line)) is not None:
                suppressed[c] = changed = True
                actions.append(f"secondary: {label(c)} (the only hidden cell of a total)")


def _keys_from_rows(table, counts, groups, magnitudes, secret_of=None) -> np.ndarray:
    """Cell keys when the table's rows are the units (no unit-level source)."""
    keys = (secret_of or ledgers.Ledger)().keys()
    ids = _row_ids(table, groups)
    out = np.zeros((len(table), len(counts)))
    for j, c in enumerate(counts):
        v = table[c].to_numpy(dtype=float)
        out[:, j] = (
            keys.magnitude_keys(ids, v, c) if c in magnitudes else keys.count_keys(ids, v, c)
        )
    return out


def _row_ids(table: pd.DataFrame, groups: list[str]) -> np.ndarray:
    """Return the unit ids of a table's rows.

    Unit ids of a table's rows: ``FIRST|REST`` of the group values (row numbers without
    groups).
    """
    if not groups:
        return np.array([f"row{i}" for i in range(len(table))])
    parts = [table[g].astype(str).to_numpy(dtype=str) for g in groups]
    rest = parts[1] if len(parts) > 1 else np.full(len(table), "")
    for more in parts[2:]:
        rest = np.char.add(np.char.add(rest, ","), more)
    return np.char.add(np.char.add(parts[0], "|"), rest)


def protect(
    table,
    count_columns,
    group_columns=(),
    rule: Rule = DEFAULT,
    totals=None,
    derived=None,
    *,
    hidden=None,
    keys=None,
    amplitude=None,
    magnitudes=None,
) -> Protected:
    """Apply ``rule`` to the ``count_columns`` of ``table`` (rows keyed by ``group_columns``).

    ``totals`` says which margins are published elsewhere (see ``_by``); by default all.
    ``derived`` maps a column computed from a count (a rate: proportional to it) to that
    count column: it is blanked wherever the count is suppressed, so the count cannot be
    recovered from it, and with perturbation or rounding it is recomputed from the
    published count. ``hidden``: cells (rows x count columns) to hide whatever their value
    (e.g. from the cross-release check). ``keys``: the cells' perturbation keys (default:
    from the table's rows as units and the ledger's secret); ``amplitude``: the magnitude
    columns' noise bound per cell (default :data:`MAGNITUDE_SHARE` of the value);
    ``magnitudes``: count columns that are magnitudes (person-days), not counts (default:
    those holding a non-integer). Pass tables without margin rows or columns of their own.
    """
    counts, groups = _names(count_columns), _names(group_columns)
    derived = dict(derived or {})
    _validate(table, counts, groups)
    unknown = sorted(set(derived) - set(table.columns))
    unknown += sorted(set(derived.values()) - set(counts))
    if unknown:
        raise ValueError(f"derived columns must map table columns to count columns: {unknown}")
    if magnitudes is None:
        magnitudes = [
            c for c in counts if not np.all(np.mod(table[c].to_numpy(dtype=float), 1) == 0)
        ]
    magnitudes = set(magnitudes) & set(counts)
    keys_df = table[groups].reset_index(drop=True)
    values = table[counts].to_numpy(dtype=float).ravel() if counts else np.zeros(0)
    n_cols = len(counts)

    def label(k: int) -> str:
        row, col = divmod(int(k), n_cols)
        where = ", ".join(f"{g}={keys_df.iloc[row, i]}" for i, g in enumerate(groups))
        return f"[{where or f'row {row}'}] {counts[col]}"

    primary = np.zeros(values.shape, bool)
    if rule.threshold is not None:
        primary = (values < rule.threshold) & ((values > 0) | rule.suppress_zeros)
    actions = [
        f"primary: {label(k)} below {rule.threshold}" for k in np.flatnonzero(primary).tolist()
    ]
    suppressed = primary.copy()
    if hidden is not None:
        forced = np.asarray(hidden, bool).ravel() & ~suppressed
        suppressed |= forced
        actions += [
            f"secondary: {label(k)} (hidden by the cross-release check)"
            for k in np.flatnonzero(forced).tolist()
        ]
    check = audit.Stats().public()
    if rule.secondary and suppressed.any():
        check = _secondary(
            values,
            suppressed,
            _lines(keys_df, counts, groups, totals),
            label,
            actions,
            rule.protection,
            not magnitudes,
        )
    shown = np.where(suppressed, np.nan, values)
    if rule.perturb and n_cols and (~suppressed).any():
        ck = (
            np.asarray(keys, dtype=float).reshape(-1, n_cols)
            if keys is not None
            else _keys_from_rows(table, counts, groups, magnitudes)
        )
        amp = (
            np.asarray(amplitude, dtype=float).reshape(-1, n_cols)
            if amplitude is not None
            else MAGNITUDE_SHARE * values.reshape(-1, n_cols)
        )
        grid = shown.reshape(-1, n_cols).copy()
        for j, c in enumerate(counts):
            true = values.reshape(-1, n_cols)[:, j]
            grid[:, j] = (
                np.round(perturbation.perturb_magnitudes(true, ck[:, j], amp[:, j], rule.floor), 1)
                if c in magnitudes
                else perturbation.perturb_counts(true, ck[:, j], rule.floor)
            )
        shown = np.where(suppressed, np.nan, grid.ravel())
        actions.append(f"perturbed {int((~suppressed).sum())} counts (cell key)")
    status = np.where(primary, "primary", np.where(suppressed, "secondary", "ok")).astype(object)
    if rule.round_to is not None:
        shown = np.floor(shown / rule.round_to + 0.5) * rule.round_to
        status[~suppressed] = "rounded"
        actions.append(f"rounded {int((~suppressed).sum())} counts to the nearest {rule.round_to}")
    shown, status = shown.reshape(-1, n_cols), status.reshape(-1, n_cols)
    safe, state = table.copy(), keys_df.copy()
    for j, c in enumerate(counts):
        col = pd.Series(shown[:, j], index=table.index)
        ok = col.dropna()
        safe[c] = col.round().astype("Int64") if np.all(ok == np.round(ok)) else col
        state[c] = status[:, j]
    for column, count in derived.items():
        j = counts.index(count)
        hide = np.isnan(shown[:, j])
        if rule.round_to is not None or rule.perturb:  # from the published count
            true = values.reshape(-1, n_cols)[:, j]
            ratio = np.divide(shown[:, j], true, out=np.ones(len(true)), where=true > 0)
            safe[column] = safe[column] * ratio
            actions.append(f"recomputed {column} from the published {count}")
        safe[column] = safe[column].mask(hide)
        if hide.any():
            actions.append(f"blanked {int(hide.sum())} {column} values derived from {count}")
    return Protected(safe, state, tuple(counts), actions, check)


def public_actions(actions: list[str]) -> list[str]:
    """Return the actions as the log publishes them.

    Actions as the log publishes them: which cells are hidden, never why one is (a
    "primary" label beside a published total would tell a reader which hidden cell is small).
    Nothing is cut: the whole list is kept.
    """
    out = []
    for action in actions:
        kind, _, rest = action.partition(": ")
        if kind in ("primary", "secondary"):
            out.append("hidden: " + rest.split(" below ")[0].split(" (")[0])
        elif not action.startswith("warning"):
            out.append(action)
    return sorted(set(out), key=out.index)
