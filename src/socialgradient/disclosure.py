"""Statistical disclosure control: the one gate every exported count table goes through
(over 400 lines because the gate is one concern a reviewer must read whole: the threshold,
secondary suppression, the linear-programming check that no hidden cell can be pinned
from published totals, rounding and the log.)

``write_table`` decides by level: "child" rows are refused unless an override reason is
given; "lsoa" and "la" count tables are protected by ``protect`` (unprotected only under an
override reason); "model" outputs (posterior summaries per LA) pass unchanged. Every
decision, refusals included, goes to ``disclosure_log.jsonl`` beside the file (level, rule,
suppression counts, override reason, SHA-256), never a hidden value. Writes are atomic.

``Rule``: suppress counts below ``threshold`` (10). Zeros are not suppressed by default
(``suppress_zeros=False``): DfE and ONS publish true zeros. Secondary suppression: every
published margin (a group's total of a count column, a row's total across count columns)
must hide 0 or at least 2 cells, so no hidden cell is one subtraction from a total; the
complement is the smallest positive visible cell of that margin (with a zero, the hidden
pair sums to the primary: exact when it is 1). Iterated to a fixed point, then linked hidden
cells (up to ``MAX_EXACT``) are checked by linear algebra for values several totals together
pin down, and protected further. Not done here: interval (bounds) protection as in
tau-Argus; :func:`protect_partitions` does it for several published partitions of the same
units (a fit's LA totals and decile totals): no hidden total is pinned to one value by the
published totals and non-negativity (checked by linear programming).
The log says which cells are hidden and how many, never which of them is below the
threshold (:func:`public_actions`). A rule weaker than the default needs a reason
(``Rule.reason``, or ``override``), which is logged. ACRO's stricter zeros
(``zeros_are_disclosive``): ``suppress_zeros=True``.

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
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from socialgradient.files import atomic_write

LEVELS = ("child", "lsoa", "la", "model")
LOG_NAME = "disclosure_log.jsonl"
MAX_EXACT = 400  # largest set of linked suppressed cells given the exact linear check
MODEL_NOTE = "model output (posterior summaries per LA): allowed unchanged"


class DisclosureError(PermissionError):
    """A write the disclosure rule refuses (child-level rows without an override reason)."""


@dataclass(frozen=True)
class Rule:
    """Suppress counts below ``threshold`` (None: none), secondary-suppress, round visible
    counts to the nearest ``round_to`` (None: no rounding); zeros suppressed only if asked."""

    threshold: int | None = 10
    round_to: int | None = None
    secondary: bool = True
    suppress_zeros: bool = False
    #: why a rule weaker than the default (threshold below 10, none, or no secondary
    #: suppression) is used; required for writing under such a rule, and logged
    reason: str | None = None

    def __post_init__(self):
        for name in ("threshold", "round_to"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"Rule.{name} must be a positive integer or None, not {v!r}")

    @property
    def weaker(self) -> bool:
        """Weaker than the default rule: a lower threshold, none, or no secondary suppression."""
        default = Rule()
        return (self.threshold is None or self.threshold < default.threshold
                or not self.secondary)

    def check(self) -> None:
        """Refuse (:class:`DisclosureError`) a weaker rule that states no reason."""
        if self.weaker and not (isinstance(self.reason, str) and self.reason.strip()):
            raise DisclosureError(
                f"threshold {self.threshold} (secondary={self.secondary}) is weaker than the "
                f"default {Rule().threshold}: give the reason with --override REASON (logged)")


@dataclass(frozen=True)
class Protected:
    """The safe table (suppressed cells missing), a parallel ``status`` table ("ok",
    "primary", "secondary", "rounded") keyed by the group columns, and the actions taken."""

    table: pd.DataFrame
    status: pd.DataFrame
    count_columns: tuple[str, ...]
    actions: list[str] = field(default_factory=list)

    def count(self, state: str) -> int:
        return int((self.status[list(self.count_columns)].to_numpy() == state).sum())


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


def _lines(keys: pd.DataFrame, n_cols: int, groups: list[str], totals) -> list[np.ndarray]:
    """Published margins as arrays of flat cell indices (row * n_cols + column).

    ``totals``: {"by": [subsets of group columns whose margins are published], "across":
    whether row totals across count columns are published}. Default: every margin (all
    proper subsets, ``()`` being the grand totals) and row totals: the conservative view.
    """
    totals = dict(totals or {})
    if set(totals) - {"by", "across"}:
        raise ValueError(f"unknown totals keys: {sorted(set(totals) - {'by', 'across'})}")
    by = totals.get("by")
    if by is None:
        by = [s for r in range(len(groups)) for s in itertools.combinations(groups, r)]
    across = bool(totals.get("across", True)) and n_cols > 1
    cells = np.arange(len(keys) * n_cols).reshape(len(keys), n_cols)
    out: dict[frozenset, np.ndarray] = {}

    def add(idx: np.ndarray) -> None:
        if len(idx) > 1:  # a one-cell margin is the cell itself: not a line to protect
            out.setdefault(frozenset(idx.tolist()), np.sort(idx))

    for subset in by:
        subset = _names(subset)
        if set(subset) - set(groups):
            raise ValueError(f"totals by {subset}: not all are group columns {groups}")
        grouped = keys.groupby(subset, sort=False, dropna=False) if subset else None
        parts = grouped.indices.values() if subset else [np.arange(len(keys))]
        for rows in parts:
            for j in range(n_cols):
                add(cells[rows, j])
            if across:
                add(cells[rows].ravel())
    if across:
        for row in cells:
            add(row)
    return list(out.values())


def _pick(values: np.ndarray, suppressed: np.ndarray, candidates: np.ndarray) -> int | None:
    """The smallest positive visible cell among ``candidates`` (a zero only if none)."""
    free = candidates[~suppressed[candidates]]
    if not len(free):
        return None
    key = np.where(values[free] > 0, values[free], np.inf)
    return int(free[np.argmin(key)] if np.isfinite(key).any() else free[0])


def _exposed(suppressed: np.ndarray, lines: list[np.ndarray]) -> tuple[list[int], int]:
    """Hidden cells that published totals pin down exactly (by any linear combination), and
    the number of linked sets of hidden cells too large (> ``MAX_EXACT``) to check."""
    hidden = np.flatnonzero(suppressed)
    pos = np.full(len(suppressed), -1)
    pos[hidden] = np.arange(len(hidden))
    live = [pos[ln[suppressed[ln]]] for ln in lines if suppressed[ln].any()]
    if not live:
        return [], 0
    edges = np.concatenate([np.c_[ln[:-1], ln[1:]] for ln in live] + [np.zeros((0, 2), int)])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), (len(hidden),) * 2)
    _, comp = connected_components(graph, directed=False)
    exposed, skipped = [], 0
    for k in np.unique(comp):
        members = np.flatnonzero(comp == k)
        if len(members) > MAX_EXACT:
            skipped += 1
            continue
        local = np.full(len(hidden), -1)
        local[members] = np.arange(len(members))
        rows = [ln for ln in live if comp[ln[0]] == k]
        a = np.zeros((len(rows), len(members)))
        for i, ln in enumerate(rows):
            a[i, local[ln]] = 1.0
        _, s, vt = np.linalg.svd(a)
        null = vt[int((s > 1e-9 * max(1.0, s.max(initial=0))).sum()) :]
        fixed = np.all(np.abs(null) < 1e-9, axis=0)  # e_k lies in the row space of a
        exposed += [int(hidden[members[j]]) for j in np.flatnonzero(fixed)]
    return exposed, skipped


def _secondary(values, suppressed, lines, label, actions) -> None:
    """Add complementary suppressions in place until no published total exposes a cell."""
    if not lines:
        return
    flat = np.concatenate(lines)
    starts = np.cumsum([0] + [len(ln) for ln in lines[:-1]])
    while True:
        changed = False
        for i in np.flatnonzero(np.add.reduceat(suppressed[flat].astype(int), starts) == 1):
            line = lines[i]
            if suppressed[line].sum() == 1 and (c := _pick(values, suppressed, line)) is not None:
                suppressed[c] = changed = True
                actions.append(f"secondary: {label(c)} (the only hidden cell of a total)")
        if changed:
            continue
        exposed, skipped = _exposed(suppressed, lines)
        for cell in exposed:
            mine = np.searchsorted(starts, np.flatnonzero(flat == cell), side="right") - 1
            c = _pick(values, suppressed, np.unique(np.concatenate([lines[i] for i in mine])))
            if c is None:  # its own totals all hidden: take any visible cell of any total
                c = _pick(values, suppressed, np.unique(flat))
            if c is not None:
                suppressed[c] = changed = True
                why = f"{label(cell)} was recoverable from several totals"
                actions.append(f"secondary: {label(c)} ({why})")
                break
        if not changed:
            actions += [f"warning: {len(exposed)} hidden cells still recoverable"] * bool(exposed)
            actions += [f"note: {skipped} sets of > {MAX_EXACT} linked hidden cells checked "
                        "against single totals only"] * bool(skipped)  # fmt: skip
            return


def protect(
    table, count_columns, group_columns=(), rule: Rule = Rule(), totals=None, derived=None
) -> Protected:
    """Apply ``rule`` to the ``count_columns`` of ``table`` (rows keyed by ``group_columns``).

    ``totals`` says which margins are published elsewhere (see ``_lines``); by default all.
    ``derived`` maps a column computed from a count (a rate: proportional to it) to that
    count column: it is blanked wherever the count is suppressed, so the count cannot be
    recovered from it, and with rounding it is recomputed from the rounded count.
    Pass tables without margin rows or columns of their own.
    """
    counts, groups = _names(count_columns), _names(group_columns)
    derived = dict(derived or {})
    _validate(table, counts, groups)
    unknown = sorted(set(derived) - set(table.columns))
    unknown += sorted(set(derived.values()) - set(counts))
    if unknown:
        raise ValueError(f"derived columns must map table columns to count columns: {unknown}")
    keys = table[groups].reset_index(drop=True)
    values = table[counts].to_numpy(dtype=float).ravel() if counts else np.zeros(0)
    n_cols = len(counts)

    def label(k: int) -> str:
        row, col = divmod(int(k), n_cols)
        where = ", ".join(f"{g}={keys.iloc[row, i]}" for i, g in enumerate(groups))
        return f"[{where or f'row {row}'}] {counts[col]}"

    primary = np.zeros(values.shape, bool)
    if rule.threshold is not None:
        primary = (values < rule.threshold) & ((values > 0) | rule.suppress_zeros)
    actions = [f"primary: {label(k)} below {rule.threshold}" for k in np.flatnonzero(primary)]
    suppressed = primary.copy()
    if rule.secondary and primary.any():
        _secondary(values, suppressed, _lines(keys, n_cols, groups, totals), label, actions)
    shown = np.where(suppressed, np.nan, values)
    status = np.where(primary, "primary", np.where(suppressed, "secondary", "ok")).astype(object)
    if rule.round_to is not None:
        shown = np.floor(shown / rule.round_to + 0.5) * rule.round_to
        status[~suppressed] = "rounded"
        actions.append(f"rounded {int((~suppressed).sum())} counts to the nearest {rule.round_to}")
    shown, status = shown.reshape(-1, n_cols), status.reshape(-1, n_cols)
    safe, state = table.copy(), keys.copy()
    for j, c in enumerate(counts):
        col = pd.Series(shown[:, j], index=table.index)
        ok = col.dropna()
        safe[c] = col.round().astype("Int64") if np.all(ok == np.round(ok)) else col
        state[c] = status[:, j]
    for column, count in derived.items():
        j = counts.index(count)
        hidden = np.isnan(shown[:, j])
        if rule.round_to is not None:  # recomputed from the rounded count, so as not to undo it
            true = values.reshape(-1, n_cols)[:, j]
            ratio = np.divide(shown[:, j], true, out=np.ones(len(true)), where=true > 0)
            safe[column] = safe[column] * ratio
            actions.append(f"recomputed {column} from the rounded {count}")
        safe[column] = safe[column].mask(hidden)
        if hidden.any():
            actions.append(f"blanked {int(hidden.sum())} {column} values derived from {count}")
    return Protected(safe, state, tuple(counts), actions)


def public_actions(actions: list[str]) -> list[str]:
    """Actions as the log publishes them: which cells are hidden, never why one is (a
    "primary" label beside a published total would tell a reader which hidden cell is small)."""
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
    where hidden; rounded where the rule rounds); ``shown["total"]``: the grand total.
    ``hidden[name]``: boolean per group. ``actions``: what was done, with labels (for the
    analyst; :func:`public_actions` for the log)."""

    groups: dict[str, np.ndarray]
    shown: dict[str, np.ndarray]
    hidden: dict[str, np.ndarray]
    actions: list[str]

    @property
    def n_hidden(self) -> int:
        return int(sum(h.sum() for h in self.hidden.values()))


def _bounds(f, a_eq, b_eq, a_ub, b_ub) -> tuple[float, float]:
    """Min and max of ``f @ x`` over x >= 0 with the published constraints."""
    from scipy.optimize import linprog

    out = []
    for sign in (1.0, -1.0):
        res = linprog(sign * f, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq,
                      bounds=(0, None), method="highs")
        out.append(sign * res.fun if res.status == 0 else (np.inf if sign < 0 else -np.inf))
    return out[0], out[1]


def protect_partitions(values, partitions: dict[str, np.ndarray], rule: Rule = Rule(),
                       min_width: float = 1.0) -> Partitioned:
    """Protect the totals of several partitions of the same units, published together.

    ``values``: one count per unit (e.g. per LSOA); ``partitions``: name -> one group label
    per unit (e.g. ``{"la": ..., "decile": ...}``); the grand total is published too, as
    ``"total"``. Totals below ``rule.threshold`` are hidden (zeros only if
    ``suppress_zeros``), then further totals until no hidden one is pinned down: for each,
    the smallest and largest values that the visible totals (exact, or within their rounding
    interval) and non-negativity allow must differ by at least ``min_width``. Complements are
    the smallest positive visible totals that widen a pinned one.
    """
    y = np.asarray(values, dtype=float)
    if y.ndim != 1 or not np.all(np.isfinite(y)) or (y < 0).any():
        raise ValueError("values must be finite, non-negative counts, one per unit")
    names = [n for n in partitions if n != "total"]
    codes, groups = {}, {}
    for name in names:
        labels = np.asarray(partitions[name])
        if labels.shape != y.shape:
            raise ValueError(f"partition {name!r} needs one label per unit")
        groups[name], codes[name] = np.unique(labels, return_inverse=True)
    combo = np.stack([codes[n] for n in names], axis=1) if names else np.zeros((len(y), 1), int)
    atoms, atom_of = np.unique(combo, axis=0, return_inverse=True)
    atom_y = np.bincount(atom_of.ravel(), weights=y, minlength=len(atoms))
    rows, labels = [], []
    for i, name in enumerate(names):
        for g, label in enumerate(groups[name]):
            rows.append((atoms[:, i] == g).astype(float))
            labels.append(f"[{name}={label}]")
    rows.append(np.ones(len(atoms)))
    labels.append("[total]")
    f = np.array(rows)
    true = f @ atom_y
    hidden = np.zeros(len(true), bool)
    if rule.threshold is not None:
        hidden = (true < rule.threshold) & ((true > 0) | rule.suppress_zeros)
    actions = [f"primary: {labels[k]} below {rule.threshold}" for k in np.flatnonzero(hidden)]
    shown = true.copy()
    half = 0.0
    if rule.round_to is not None:
        shown = np.floor(true / rule.round_to + 0.5) * rule.round_to
        half = rule.round_to / 2

    def constraints(mask):
        vis = ~mask
        if half:
            a = f[vis]
            return None, None, np.vstack([a, -a]), np.concatenate(
                [shown[vis] + half - 0.5, -(shown[vis] - half)])
        return f[vis], true[vis], None, None

    def pinned(mask, k):
        lo, hi = _bounds(f[k], *constraints(mask))
        return hi - lo < min_width - 1e-6

    while rule.secondary and hidden.any():
        stuck = next((k for k in np.flatnonzero(hidden) if pinned(hidden, k)), None)
        if stuck is None:
            break
        order = sorted(np.flatnonzero(~hidden),
                       key=lambda c: (labels[c] == "[total]", true[c] <= 0, true[c], c))
        pick = next((c for c in order if not pinned(hidden | (np.arange(len(true)) == c),
                                                     stuck)), order[0] if order else None)
        if pick is None:
            break
        hidden[pick] = True
        actions.append(f"secondary: {labels[pick]} ({labels[stuck]} was pinned by the totals)")
    if rule.round_to is not None:
        actions.append(f"rounded {int((~hidden).sum())} totals to the nearest {rule.round_to}")
    out = np.where(hidden, np.nan, shown)
    sizes = np.cumsum([0] + [len(groups[n]) for n in names])
    shown_d = {n: out[sizes[i]:sizes[i + 1]] for i, n in enumerate(names)}
    hidden_d = {n: hidden[sizes[i]:sizes[i + 1]] for i, n in enumerate(names)}
    shown_d["total"], hidden_d["total"] = out[-1:], hidden[-1:]
    return Partitioned({**groups, "total": np.array(["total"])}, shown_d, hidden_d, actions)


def _append(log: Path, entry: dict) -> None:
    """One JSON line in one ``write`` call (O_APPEND): concurrent writers do not interleave."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(entry, default=str) + "\n")


# fmt: off
def write_table(table: pd.DataFrame, path, *, level: str, count_columns=(), group_columns=(),
                rule: Rule = Rule(), override: str | None = None, totals=None, log=None,
                derived=None, logged_path=None) -> Path:
    # fmt: on
    """Write ``table`` (CSV, or Parquet by suffix) through the disclosure gate; return the path.

    Levels: "child" (refused unless ``override``), "lsoa" and "la" (counts protected;
    unprotected only under ``override``), "model" (unchanged). ``override`` is the reason,
    logged. ``log``: the JSON-lines log (default ``disclosure_log.jsonl`` beside the file).
    Suppressed cells are empty in the CSV; ``derived`` columns as in :func:`protect`.
    ``logged_path``: the path the log names (a file's final place in an output set, when
    ``path`` lies in the set's temporary folder; default ``path``).
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
    entry |= {"path": str(Path(logged_path or path).resolve()), "level": level}
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
    if level == "model":
        out, note = table, MODEL_NOTE
    elif override is not None and not rule.weaker:
        _validate(table, counts, _names(group_columns))
        out, note = table, f"written unprotected under override: {override}"
    elif not counts:
        raise ValueError(f"a {level!r} table must name its count columns")
    else:
        result = protect(table, counts, group_columns, rule, totals, derived)
        out, note = result.table, f"{level} counts protected"
        if override is not None:
            note += f" under a weaker rule, for the reason: {override}"
        entry |= {"suppressed": result.count("primary") + result.count("secondary"),
                  "rounded": result.count("rounded")}
        entry |= {"actions": public_actions(result.actions)[:50]}

    if path.suffix == ".parquet":
        atomic_write(path, lambda tmp: out.to_parquet(tmp, index=False))
    else:  # .csv.gz by the name (the temporary file's suffix would not say gzip)
        gz = {"method": "gzip", "mtime": 0} if path.suffix == ".gz" else None
        atomic_write(path, lambda tmp: out.to_csv(tmp, index=False, compression=gz,
                                                      lineterminator="\n"))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()  # logged once the file is in place
    _append(log, {**entry, "decision": "written", "note": note, "sha256": sha})
    return path


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
