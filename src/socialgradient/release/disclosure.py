"""Statistical disclosure control: the one gate every exported count table goes through.

The threat model is in ``docs/disclosure.md``. The rule is in
:mod:`~socialgradient.release.rule`, one table's protection in
:mod:`~socialgradient.release.cells`, several partitions' in
:mod:`~socialgradient.release.partitions`; their names stay importable from here, where
:func:`write_table` applies them, checks across releases and keeps the log.

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
import json
from pathlib import Path

import numpy as np
import pandas as pd

from socialgradient.release import audit, perturbation
from socialgradient.release import ledger as ledgers
from socialgradient.release.cells import (  # noqa: F401 (importable from here, as before)
    MAGNITUDE_SHARE,
    Protected,
    _by,
    _names,
    _row_ids,
    _validate,
    protect,
    public_actions,
)
from socialgradient.release.partitions import Partitioned, protect_partitions  # noqa: F401
from socialgradient.release.rule import DEFAULT, DisclosureError, Rule
from socialgradient.util.files import atomic_write

LEVELS = ("child", "lsoa", "la", "model")
LOG_NAME = "disclosure_log.jsonl"
MODEL_NOTE = "model output (posterior summaries per LA): allowed unchanged"


def _append(log: Path, entry: dict) -> None:
    """One JSON line in one ``write`` call (O_APPEND): concurrent writers do not interleave."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(entry, default=str) + "\n")


def _units_of(table, counts, groups, source, unit_columns):
    """Return the units: their ids, values, table rows and group keys.

    Unit ids, values (units x counts) and the table row of each unit: the ``source``
    rows (unit-level: LSOA or LSOA x stratum) or, without one, the table's own rows.
    """
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
    """Return the ledger's record of a protected table.

    The ledger's record of a protected table: its units and the published partitions
    (the table's cells; the margins taken as published elsewhere, exact).
    """
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
                rule: Rule = DEFAULT, override: str | None = None, totals=None, log=None,
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
    where = Path(logged_path or path)
    shown = where.relative_to(log_root).as_posix() if log_root is not None \
        else str(where.resolve())
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
    """Protect a table against itself and the ledger's earlier releases.

    :func:`protect`, then the cross-release check against the ledger, repeated until
    neither hides more; returns the result, the publication to record and how many earlier
    publications were compared. Holds the ledger's lock while it works; the caller records
    the publication.
    """
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


def acro_crosstab(records, index, columns, *, rule=DEFAULT, totals=None, bundle_dir=None):
    """Cross-tabulate child-level records through ACRO, then protect the table.

    Cross-tabulate child-level ``records`` through ACRO (ImportError if absent), then
    protect: ACRO's threshold check must flag the gate's primary cells; the gate adds the
    secondary suppression. ``bundle_dir``: ACRO's output bundle for the checkers, with the
    protected table added.
    """
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
