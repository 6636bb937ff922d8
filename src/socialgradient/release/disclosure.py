"""Statistical disclosure control: the one gate every exported count table goes through
(over 400 lines because the gate is one concern a reviewer must read whole: the threshold,
secondary suppression, the exact protection check, perturbation, rounding, the ledger
and the log.) The threat model is in ``docs/disclosure.md``.

``write_table`` decides by level: "child" rows are refused unless an override reason is
given; "lsoa" and "la" count tables are protected by ``protect`` (unprotected only under an
override reason); "model" outputs (posterior summaries per LA) pass unchanged. Every
decision, refusals included, goes to ``disclosure_log.jsonl`` beside the file (level, rule,
suppression counts, the check that ran, the perturbation's public parameters, the ledger's
id, override reason, SHA-256), never a hidden value. Writes are atomic.

``Rule``: suppress counts below ``threshold`` (10). Zeros are not suppressed by default
(``suppress_zeros=False``): DfE and ONS publish true zeros. Secondary suppression: every
published margin (a group's total of a count column, a row's total across count columns)
must hide 0 or at least 2 cells; then the exact check (:mod:`socialgradient.release.audit`: for
each hidden cell the smallest and largest value the published totals and non-negativity
allow, by linear programming with HiGHS, at every size, nothing skipped) hides further
cells until every hidden cell's range is at least ``protection`` (5) wide. Visible counts
are perturbed by the cell-key method (``perturb``, :mod:`socialgradient.release.perturbation`),
then rounded (``round_to``). A rule weaker than the default (lower threshold, no secondary
suppression, no perturbation, a lower protection level) needs a reason (``Rule.reason``,
or ``override``), which is logged.

Across releases: every protected release is recorded in the ledger
(:mod:`socialgradient.release.ledger`, kept in the secure environment) and checked against the
earlier releases sharing units with it: a cell hidden before in the same table stays
hidden, and further cells are hidden until no hidden cell of any release, no single LSOA's
count and no group of LSOAs below the threshold is pinned by all the releases together.
:func:`protect_partitions` does the same for several published partitions of the same
units (a fit's LA totals and decile totals). The check assumes the published values
exact (perturbation is not counted on); perturbation covers what the ledger cannot see:
releases of data that changed (a child added), or releases never recorded in this ledger.
The log says which cells are hidden and how many, never which of them is below the
threshold (:func:`public_actions`). ACRO's stricter zeros (``zeros_are_disclosive``):
``suppress_zeros=True``.

ACRO (``acro`` 1.0.2, SACRO output checking), tried in a scratch venv with our pins: it
declares ``pandas<=2.3.3`` so it cannot enter our lock beside pandas 3.1.1; installed
``--no-deps`` its crosstab, suppression, rounding and ``finalise`` bundle ran (with pandas
deprecation warnings). So it is optional: ``acro_crosstab`` uses it when importable, where
it fits (child-level microdata in the secure environment). Where it does not fit:
- its threshold counts *records* of tables it builds; our tables are mostly pre-aggregated
  (DfE LA tables, LSOA aggregates), and as ``values=n, aggfunc="sum"`` every cell is flagged;
- it does no secondary suppression: it hides a lone small cell and recomputes the table's
  own margins, so a total published elsewhere (the DfE LA total) gives the cell back;
- dominance rules (NK, p%) are for magnitude tables; in counts each child adds 1.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from socialgradient.release import audit, perturbation, suppression
from socialgradient.release import ledger as ledgers
from socialgradient.util.files import atomic_write

LEVELS = ("child", "lsoa", "la", "model")
LOG_NAME = "disclosure_log.jsonl"
MODEL_NOTE = "model output (posterior summaries per LA): allowed unchanged"
MAGNITUDE_SHARE = 0.1  # magnitude noise without unit-level data: up to 10% of the value


class DisclosureError(PermissionError):
    """A write the disclosure rule refuses (child-level rows without an override reason)."""


@dataclass(frozen=True)
class Rule:
    """Suppress counts below ``threshold`` (None: none), secondary-suppress until every
    hidden cell's range is at least ``protection`` wide, perturb visible counts
    (``perturb``, the cell-key method), round them to the nearest ``round_to`` (None: no
    rounding); zeros suppressed only if asked."""

    threshold: int | None = 10
    round_to: int | None = None
    secondary: bool = True
    suppress_zeros: bool = False
    perturb: bool = True
    #: the narrowest range (max - min) of values that what is published may leave for a
    #: hidden cell, a single unit's count or a group of units below the threshold
    protection: int = 5
    #: why a rule weaker than the default (threshold below 10, none, no secondary
    #: suppression, no perturbation, a lower protection level) is used; required for
    #: writing under such a rule, and logged
    reason: str | None = None

    def __post_init__(self):
        for name in ("threshold", "round_to"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"Rule.{name} must be a positive integer or None, not {v!r}")
        p = self.protection
        if isinstance(p, bool) or not isinstance(p, int) or p < 0:
            raise ValueError(f"Rule.protection must be a non-negative integer, not {p!r}")

    @property
    def weaker(self) -> bool:
        """Weaker than the default rule: a lower threshold, none, no secondary suppression,
        no perturbation or a lower protection level."""
        default = Rule()
        return (
            self.threshold is None
            or self.threshold < default.threshold
            or not self.secondary
            or not self.perturb
            or self.protection < default.protection
        )

    def check(self) -> None:
        """Refuse (:class:`DisclosureError`) a weaker rule that states no reason."""
        if self.weaker and not (isinstance(self.reason, str) and self.reason.strip()):
            raise DisclosureError(
                f"threshold {self.threshold} (secondary={self.secondary}, perturb="
                f"{self.perturb}, protection={self.protection}) is weaker than the default "
                f"{Rule().threshold}: give the reason with --override REASON (logged)"
            )

    @property
    def floor(self) -> int:
        """No perturbed visible count is below this (the threshold)."""
        return self.threshold or 1


@dataclass(frozen=True)
class Protected:
    """The safe table (suppressed cells missing), a parallel ``status`` table ("ok",
    "primary", "secondary", "rounded") keyed by the group columns, the actions taken and
    the public summary of the protection check (``check``)."""

    table: pd.DataFrame
    status: pd.DataFrame
    count_columns: tuple[str, ...]
    actions: list[str] = field(default_factory=list)
    check: dict = field(default_factory=dict)

    def count(self, state: str) -> int:
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
    """The group subsets whose margins are published (``totals["by"]``; default every
    proper subset, ``()`` being the grand total) and which row totals across count columns
    are (``totals["across"]``: True, the default and the conservative view, for all count
    columns; False for none; or a list of lists of columns, each a group whose sum is
    published, e.g. categories that partition a published count)."""
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
    """Published margins as arrays of flat cell indices (row * n_cols + column)."""
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
        grouped = keys.groupby(subset, sort=False, dropna=False) if subset else None
        parts = grouped.indices.values() if subset else [np.arange(len(keys))]
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
    """The smallest positive visible cell among ``candidates`` (a zero only if none)."""
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
    """Complementary suppressions in place: first every published total hides 0 or at
    least 2 cells, then the exact check (:func:`socialgradient.release.suppression.complete`) until
    no hidden cell's range is narrower than ``protection``. Returns the check's public
    stats."""
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
    """Unit ids of a table's rows: ``FIRST|REST`` of the group values (row numbers without
    groups)."""
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
    rule: Rule = Rule(),
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
    actions = [f"primary: {label(k)} below {rule.threshold}" for k in np.flatnonzero(primary)]
    suppressed = primary.copy()
    if hidden is not None:
        forced = np.asarray(hidden, bool).ravel() & ~suppressed
        suppressed |= forced
        actions += [
            f"secondary: {label(k)} (hidden by the cross-release check)"
            for k in np.flatnonzero(forced)
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
    """Actions as the log publishes them: which cells are hidden, never why one is (a
    "primary" label beside a published total would tell a reader which hidden cell is small).
    Nothing is cut: the whole list is kept."""
    out = []
    for action in actions:
        kind, _, rest = action.partition(": ")
        if kind in ("primary", "secondary"):
            out.append("hidden: " + rest.split(" below ")[0].split(" (")[0])
        elif not action.startswith("warning"):
            out.append(action)
    return sorted(set(out), key=out.index)


@dataclass(frozen=True)
class Partitioned:
    """Published totals of several partitions of the same units, after :func:`protect_partitions`.

    ``shown[name]``: one value per group of that partition, in ``groups[name]`` order (NaN
    where hidden; perturbed and rounded as the rule says); ``shown["total"]``: the grand
    total. ``hidden[name]``: boolean per group. ``actions``: what was done, with labels (for
    the analyst; :func:`public_actions` for the log). ``publication``: what the ledger
    records; ``check``: the public summary of the protection check."""

    groups: dict[str, np.ndarray]
    shown: dict[str, np.ndarray]
    hidden: dict[str, np.ndarray]
    actions: list[str]
    publication: ledgers.Publication | None = None
    check: dict = field(default_factory=dict)

    @property
    def n_hidden(self) -> int:
        return int(sum(h.sum() for h in self.hidden.values()))


def protect_partitions(
    values,
    partitions: dict[str, np.ndarray],
    rule: Rule = Rule(),
    min_width: float | None = None,
    *,
    units=None,
    earlier=(),
    keys=None,
    name: str = "totals",
    measure: str = "count",
) -> Partitioned:
    """Protect the totals of several partitions of the same units, published together.

    ``values``: one count per unit (e.g. per LSOA); ``partitions``: name -> one group label
    per unit (e.g. ``{"la": ..., "decile": ...}``); the grand total is published too, as
    ``"total"``. Totals below ``rule.threshold`` are hidden (zeros only if
    ``suppress_zeros``), then further totals (:func:`socialgradient.release.ledger.check`) until
    no hidden total, no single unit and no group of units below the threshold can be
    narrowed below ``min_width`` (default ``rule.protection``) by the visible totals (exact,
    or within their rounding interval), non-negativity and the ``earlier`` publications
    of the ledger that share units with this one (a total hidden in an earlier release of
    table ``name`` stays hidden). Visible totals are then perturbed (``rule.perturb``; keys
    from ``keys``, a :class:`socialgradient.release.perturbation.CellKeys`, default the ledger's)
    and rounded. ``units``: the units' ids (``LSOA`` or ``LSOA|stratum``).
    """
    y = np.asarray(values, dtype=float)
    if y.ndim != 1 or not np.all(np.isfinite(y)) or (y < 0).any():
        raise ValueError("values must be finite, non-negative counts, one per unit")
    units = (
        np.array([f"u{i}" for i in range(len(y))])
        if units is None
        else np.asarray(units, dtype=str)
    )
    names = [n for n in partitions if n != "total"]
    parts = {}
    for n in names:
        labels = np.asarray(partitions[n])
        if labels.shape != y.shape:
            raise ValueError(f"partition {n!r} needs one label per unit")
        groups, codes = np.unique(labels, return_inverse=True)
        parts[n] = (codes.ravel(), groups.astype(str))
    parts["total"] = (np.zeros(len(y), np.int64), np.array(["total"]))
    hidden = {}
    for n, (codes, groups) in parts.items():
        true = np.bincount(codes, weights=y, minlength=len(groups))
        hidden[n] = np.zeros((len(groups), 1), bool)
        if rule.threshold is not None:
            hidden[n][:, 0] = (true < rule.threshold) & ((true > 0) | rule.suppress_zeros)
    pub = ledgers.Publication(
        name,
        units,
        [measure],
        y[:, None],
        parts,
        hidden,
        round_to=rule.round_to,
        threshold=rule.threshold,
        suppress_zeros=rule.suppress_zeros,
        integer=True,
    )
    actions = [
        f"primary: {pub.label(n, k, 0)} below {rule.threshold}"
        for n in parts
        for k in np.flatnonzero(hidden[n][:, 0])
    ]
    check = {}
    if rule.secondary:
        try:
            outcome = ledgers.check(
                pub, earlier, rule.protection if min_width is None else min_width
            )
        except RuntimeError as err:
            raise DisclosureError(f"refused: {err}") from None
        actions += outcome.actions
        check = {**outcome.stats.public(), "earlier_publications": outcome.compared}
    if rule.perturb:
        keys = keys if keys is not None else ledgers.Ledger().keys()
        row_keys = keys.count_keys(units, y, measure)
    shown_d, hidden_d, groups_d = {}, {}, {}
    n_visible = 0
    for n, (codes, groups) in parts.items():
        true = np.bincount(codes, weights=y, minlength=len(groups))
        shown = true.copy()
        if rule.perturb:
            ck = perturbation.cell_keys(row_keys, codes, len(groups))
            shown = perturbation.perturb_counts(true, ck, rule.floor)
        if rule.round_to is not None:
            shown = np.floor(shown / rule.round_to + 0.5) * rule.round_to
        h = pub.hidden[n][:, 0]
        n_visible += int((~h).sum())
        shown_d[n], hidden_d[n] = np.where(h, np.nan, shown), h.copy()
        groups_d[n] = groups if n != "total" else np.array(["total"])
    if rule.perturb:
        actions.append(f"perturbed {n_visible} totals (cell key)")
    if rule.round_to is not None:
        actions.append(f"rounded {n_visible} totals to the nearest {rule.round_to}")
    return Partitioned(groups_d, shown_d, hidden_d, actions, pub, check)


def _append(log: Path, entry: dict) -> None:
    """One JSON line in one ``write`` call (O_APPEND): concurrent writers do not interleave."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(entry, default=str) + "\n")


def _units_of(table, counts, groups, source, unit_columns):
    """Unit ids, values (units x counts) and the table row of each unit: the ``source``
    rows (unit-level: LSOA or LSOA x stratum) or, without one, the table's own rows."""
    if source is None:
        return (
            _row_ids(table, groups),
            table[counts].to_numpy(dtype=float),
            np.arange(len(table)),
            table[groups].reset_index(drop=True),
        )
    unit_columns = _names(unit_columns)
    missing = [c for c in [*groups, *counts, *unit_columns] if c not in source.columns]
    if missing:
        raise ValueError(f"the unit-level source lacks the columns {missing}")
    rows = table[groups].reset_index(drop=True).assign(_row=np.arange(len(table)))
    src = source.reset_index(drop=True).merge(rows, on=groups, how="inner")
    ids = _row_ids(src, unit_columns)
    return ids, src[counts].to_numpy(dtype=float), src["_row"].to_numpy(), src[groups]


def _publication(name, table, counts, groups, rule, totals, hidden, source, unit_columns):
    """The ledger's record of a protected table: its units and the published partitions
    (the table's cells; the margins taken as published elsewhere, exact)."""
    ids, values, row_of, keys = _units_of(table, counts, groups, source, unit_columns)
    parts = {"cell": (row_of, np.array(_cell_labels(table, groups)))}
    by, _ = _by(groups, totals)
    public = []
    for subset in by:
        label = "total" if not subset else "by " + ",".join(subset)
        if subset:
            codes, uniq = pd.factorize(pd.MultiIndex.from_frame(keys[subset].astype(str)))
            labels = np.array(
                [", ".join(f"{g}={v}" for g, v in zip(subset, u, strict=True)) for u in uniq]
            )
        else:
            codes, labels = np.zeros(len(ids), np.int64), np.array(["total"])
        parts[label] = (codes, labels)
        public.append(label)
    return ledgers.Publication(
        name,
        ids,
        list(counts),
        values,
        parts,
        {"cell": np.asarray(hidden, bool).reshape(len(table), -1)},
        tuple(public),
        rule.round_to,
        rule.threshold,
        rule.suppress_zeros,
        integer=bool(np.all(np.mod(values, 1) == 0)),
    )


def _cell_labels(table, groups) -> list[str]:
    if not groups:
        return [f"row {i}" for i in range(len(table))]
    return [
        ", ".join(f"{g}={v}" for g, v in zip(groups, row, strict=True))
        for row in table[groups].astype(str).itertuples(index=False)
    ]


def _table_keys(led, table, counts, groups, magnitudes, source, unit_columns):
    """Cell keys and magnitude amplitudes of a table's cells from its units."""
    ids, values, row_of, _ = _units_of(table, counts, groups, source, unit_columns)
    keys = led.keys()
    ck = np.zeros((len(table), len(counts)))
    amp = np.zeros((len(table), len(counts)))
    for j, c in enumerate(counts):
        if c in magnitudes:
            rk = keys.magnitude_keys(ids, values[:, j], c)
            if source is None:
                amp[:, j] = MAGNITUDE_SHARE * values[:, j]
            else:
                np.maximum.at(amp[:, j], row_of, values[:, j])
        else:
            rk = keys.count_keys(ids, values[:, j], c)
        ck[:, j] = perturbation.cell_keys(rk, row_of, len(table))
    return ck, amp


# fmt: off
def write_table(table: pd.DataFrame, path, *, level: str, count_columns=(), group_columns=(),
                rule: Rule = Rule(), override: str | None = None, totals=None, log=None,
                derived=None, logged_path=None, ledger=None, source=None, unit_columns=(),
                magnitudes=None, command: str = "", log_root=None) -> Path:
    # fmt: on
    """Write ``table`` (CSV, or Parquet by suffix) through the disclosure gate; return the path.

    Levels: "child" (refused unless ``override``), "lsoa" and "la" (counts protected;
    unprotected only under ``override``), "model" (unchanged). ``override`` is the reason,
    logged. ``log``: the JSON-lines log (default ``disclosure_log.jsonl`` beside the file).
    Suppressed cells are empty in the CSV; ``derived`` columns as in :func:`protect`.
    ``logged_path``: the path the log names (a file's final place in an output set, when
    ``path`` lies in the set's temporary folder; default ``path``). ``log_root``: the output
    folder that path is logged relative to (``release/counts_by_la.csv``: a log in a set
    names no absolute path); without it the log names the absolute path.

    A protected table is checked against, and recorded in, the release ledger (``ledger``:
    a :class:`socialgradient.release.ledger.Ledger` or its folder; default
    :func:`socialgradient.release.ledger.default_path`). ``source``: the unit-level table the counts
    were summed from (with the group columns, the count columns and ``unit_columns``, e.g.
    ``["lsoa", "age_band"]``): the units the ledger matches releases by and the perturbation
    keys come from; without it the table's rows are the units. ``magnitudes``: count columns
    that are magnitudes (default: as :func:`protect` decides).
    """
    path = Path(path)
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    if override is not None and (not isinstance(override, str) or not override.strip()):
        raise ValueError("an override must state its reason")
    if path.name == LOG_NAME:
        raise ValueError(f"{LOG_NAME} is reserved for the disclosure log")
    log = Path(log) if log is not None else path.parent / LOG_NAME
    entry = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "file": path.name}
    shown = Path(logged_path or path)
    shown = shown.relative_to(log_root).as_posix() if log_root is not None \
        else str(shown.resolve())
    entry |= {"path": shown, "level": level}
    entry |= {"rule": dataclasses.asdict(rule)}
    explicit, override = override, override if override is not None else rule.reason
    entry |= {"override": override, "rows": len(table), "suppressed": 0, "rounded": 0}
    if level in ("lsoa", "la") and override is None:
        try:
            rule.check()
        except DisclosureError as err:
            _append(log, {**entry, "decision": "refused", "note": str(err)})
            raise
    if level == "child" and explicit is None:
        why = "child-level rows need an explicit override reason (it is logged)"
        _append(log, {**entry, "decision": "refused", "note": why})
        raise DisclosureError(f"refused to write {path}: {why}")
    counts = _names(count_columns)
    record = None
    if level == "model":
        out, note = table, MODEL_NOTE
    elif override is not None and not rule.weaker:
        _validate(table, counts, _names(group_columns))
        out, note = table, f"written unprotected under override: {override}"
    elif not counts:
        raise ValueError(f"a {level!r} table must name its count columns")
    else:
        led = ledger if isinstance(ledger, ledgers.Ledger) else ledgers.Ledger(ledger)
        try:
            result, pub, compared = _protect_across(table, path.name, counts,
                                                    _names(group_columns), rule, totals,
                                                    derived, led, source, unit_columns,
                                                    magnitudes)
        except DisclosureError as err:
            _append(log, {**entry, "decision": "refused", "note": str(err), "ledger": led.id})
            raise
        out, note = result.table, f"{level} counts protected"
        if override is not None:
            note += f" under a weaker rule, for the reason: {override}"
        entry |= {"suppressed": result.count("primary") + result.count("secondary"),
                  "rounded": result.count("rounded")}
        entry |= {"check": {**result.check, "earlier_publications": compared},
                  "perturbation": perturbation.describe() if rule.perturb else None,
                  "ledger": led.id, "actions": public_actions(result.actions)}
        record = (led, pub)

    if record is not None:  # recorded before the file appears: a crash errs on the safe side
        led, pub = record
        digest = hashlib.sha256(pd.util.hash_pandas_object(
            source if source is not None else table, index=False).values.tobytes()).hexdigest()
        led.record([pub], command=command, file=str(Path(logged_path or path).resolve()),
                   data_id=led.data_id(digest), rule=dataclasses.asdict(rule))
    if path.suffix == ".parquet":
        atomic_write(path, lambda tmp: out.to_parquet(tmp, index=False))
    else:  # .csv.gz by the name (the temporary file's suffix would not say gzip)
        gz = {"method": "gzip", "mtime": 0} if path.suffix == ".gz" else None
        atomic_write(path, lambda tmp: out.to_csv(tmp, index=False, compression=gz,
                                                      lineterminator="\n"))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()  # logged once the file is in place
    _append(log, {**entry, "decision": "written", "note": note, "sha256": sha})
    return path


def _protect_across(table, name, counts, groups, rule, totals, derived, led, source,
                    unit_columns, magnitudes):
    """:func:`protect`, then the cross-release check against the ledger, repeated until
    neither hides more; returns the result, the publication to record and how many earlier
    publications were compared. Holds the ledger's lock while it works; the caller records
    the publication."""
    if magnitudes is None:
        magnitudes = [c for c in counts
                      if not np.all(np.mod(table[c].to_numpy(dtype=float), 1) == 0)]
    ck, amp = (None, None)
    if rule.perturb:
        ck, amp = _table_keys(led, table, counts, groups, set(magnitudes), source,
                              unit_columns)
    earlier = led.publications(measures=counts)
    forced, stats, compared = None, audit.Stats(), 0
    for _ in range(100):
        result = protect(table, counts, groups, rule, totals, derived, hidden=forced, keys=ck,
                         amplitude=amp, magnitudes=magnitudes)
        pub = _publication(name, table, counts, groups, rule, totals, result.hidden, source,
                           unit_columns)
        if not rule.secondary:
            break
        try:
            outcome = ledgers.check(pub, earlier, rule.protection)
        except RuntimeError as err:
            raise DisclosureError(f"refused: {err}") from None
        stats.add(outcome.stats)
        compared = outcome.compared
        if not outcome.hidden:
            break
        forced = pub.hidden["cell"]
    else:
        raise DisclosureError("refused: the cross-release check did not settle")
    own = result.check
    merged = {**own, "quantities_checked": own.get("quantities_checked", 0) + stats.quantities,
              "largest_linked_set": max(own.get("largest_linked_set", 0), stats.largest),
              "solves": own.get("solves", 0) + stats.solves,
              "seconds": round(own.get("seconds", 0) + stats.seconds, 3)}
    merged["method"] = audit.Stats().public()["method"]
    return dataclasses.replace(result, check=merged), pub, compared


def acro_crosstab(records, index, columns, *, rule=Rule(), totals=None, bundle_dir=None):
    """Cross-tabulate child-level ``records`` through ACRO (ImportError if absent), then
    protect: ACRO's threshold check must flag the gate's primary cells; the gate adds the
    secondary suppression. ``bundle_dir``: ACRO's output bundle for the checkers, with the
    protected table added."""
    from importlib.metadata import version

    from acro import ACRO

    session = ACRO(suppress=False)
    session.config |= {"safe_threshold": rule.threshold or 0}
    session.config |= {"zeros_are_disclosive": rule.suppress_zeros}
    counts = session.crosstab(records[index], records[columns])
    raw = session.results.get_index(-1)
    flagged = raw.sdc["cells"].get("MinimumThresholdCheck", [])
    wide = counts.rename(columns=str).rename_axis(columns=None).reset_index()
    names = [str(c) for c in counts.columns]
    result = protect(wide, names, [index], rule, totals)
    ours = np.argwhere(result.status[names].to_numpy() == "primary")
    flagged = {(int(i), int(j)) for i, j in flagged if rule.suppress_zeros or counts.iloc[i, j]}
    if flagged != {(int(i), int(j)) for i, j in ours}:  # ACRO flags zeros whatever its config
        raise RuntimeError("ACRO's threshold check and the gate disagree on primary cells")
    result.actions.append(f"ACRO {version('acro')} agrees: {len(flagged)} cells under threshold")
    if bundle_dir is not None:
        table_path = Path(bundle_dir).with_name(Path(bundle_dir).name + "_tables") / "table.csv"
        atomic_write(table_path, lambda p: result.table.to_csv(p, index=False,
                                                                        lineterminator="\n"))
        session.remove_output(raw.uid)  # ACRO's unprotected table stays out of the bundle
        session.custom_output(str(table_path), "; ".join(result.actions[-20:]))
        session.finalise(str(bundle_dir), "json")
    return result
