"""The record aggregates that specs with a ``[records]`` table are fitted to, built and cached.

A spec such as ``models/strata_ethnicity_cp_plans.toml`` says which table of the synthetic
child records it needs (:class:`socialgradient.spec.RecordsTable`: the simulation's seed,
scale and years, the strata, the column groups, and for durations the outcome level).
:func:`build` simulates the records, links and aggregates them
(:func:`socialgradient.data.census.linkage.aggregate`) and shapes the table for the model:

* a durations table gets one row per LSOA (x stratum) x piece of follow-up, with columns
  ``piece``, ``days`` (person-days at risk: the exposure) and ``ends`` (episodes closing in
  the piece): the piecewise-exponential model is a Poisson model of ``ends`` with offset
  ``log(days)`` and the piece as a stratum;
* a stacked table gets one row per LSOA (x stratum) x count column (``category``,
  ``count``): several outcomes of one kind (CP categories, assessment factors) in one model
  with a stratum per outcome, sharing the LA effects, so their gradients are contrasted
  within one posterior;
* rows the model cannot use are dropped **and counted**, never silently: cells with no
  children (a record whose cell has no population), rows with no time at risk (durations),
  rows without trials (``positive``, a binomial's trials), and then the rows of an LA left
  with a single LSOA (the model needs two; schema rule ``small_la``).

:func:`cached` keeps the table, the linkage report's counts, what was dropped and the
simulation's truth under ``CACHE/<hash>/`` (the hash of the :class:`RecordsTable` and the
package version), written atomically, so a suite builds each table once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from socialgradient import __version__
from socialgradient.data import records as records_model
from socialgradient.data.census import linkage
from socialgradient.data.census.linkage import PIECE_NAMES, STRATA
from socialgradient.data.synthetic import records
from socialgradient.spec import RecordsTable
from socialgradient.util.files import atomic_write


@dataclass(frozen=True)
class Aggregate:
    """A built table with its provenance: ``dropped`` maps each reason to a row count."""

    table: pd.DataFrame
    truth: dict
    dropped: dict
    linkage: dict


#: Raised when the records generator changes what a table holds within one package
#: version, so cached tables of the older generator are not reused (2: the LA-level
#: association c_g of the re-referral and repeat-plan flags, truth ``la_outcomes``; 3: the
#: truth's ``gradient_pseudo_true`` of the factors and CP categories).
GENERATOR = 3


def key(source: RecordsTable) -> str:
    """Return the short hash naming a records table.

    Short hash naming a table: its :class:`RecordsTable`, the package version and
    :data:`GENERATOR`.
    """
    raw = json.dumps(
        {"records": dataclasses.asdict(source), "version": __version__, "generator": GENERATOR},
        sort_keys=True,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def build(source: RecordsTable) -> Aggregate:
    """Simulate, link, aggregate and shape the table ``source`` describes."""
    recs = records.simulate_records(seed=source.seed, years=source.years, scale=source.scale)
    table, report = linkage.aggregate(recs, by=source.by, outcomes=source.groups)
    dropped = {}
    empty = table["children"] <= 0
    if empty.any():
        dropped["cells without children"] = int(empty.sum())
        table = table[~empty]
    if source.durations:
        table, dropped["piece rows without time at risk"] = durations(table, source.durations)
    if source.stack:
        table = stack(table, source.stack)
    if source.positive:
        if source.positive not in table:
            raise ValueError(
                f"records.positive names {source.positive!r}, not a column of the "
                f"aggregate (groups {list(source.groups)})"
            )
        none = table[source.positive] <= 0
        dropped[f"rows with {source.positive} = 0"] = int(none.sum())
        table = table[~none]
    lsoas = table.groupby("la")["lsoa"].transform("nunique")
    if (lsoas < 2).any():  # the model needs >= 2 LSOAs per LA (schema rule small_la)
        las = sorted(table.loc[lsoas < 2, "la"].unique())
        dropped[f"rows of LAs left with one LSOA ({', '.join(las)})"] = int((lsoas < 2).sum())
        table = table[lsoas >= 2]
    return Aggregate(table.reset_index(drop=True), recs.truth, dropped, report.to_dict())


def durations(table: pd.DataFrame, level: str) -> tuple[pd.DataFrame, int]:
    """Split each row into its pieces of time at risk.

    One row per input row x piece: ``piece``, ``days``, ``ends`` of outcome level
    ``level``; rows with no time at risk dropped (their count returned).
    """
    missing = [f"days_{level}_{p}" for p in PIECE_NAMES if f"days_{level}_{p}" not in table]
    if missing:
        raise ValueError(
            f"records.durations = {level!r}: no columns {missing} in the "
            f"aggregate (levels: {', '.join(records_model.OUTCOME_LEVELS)})"
        )
    keep = [c for c in table.columns if not c.startswith(("days_", "ends_"))]
    long = pd.concat(
        [
            table[keep].assign(
                piece=p, days=table[f"days_{level}_{p}"], ends=table[f"ends_{level}_{p}"]
            )
            for p in PIECE_NAMES
        ],
        ignore_index=True,
    )
    at_risk = long["days"] > 0
    return long[at_risk].reset_index(drop=True), int((~at_risk).sum())


def stack(table: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Stack the count columns ``columns`` into one ``category`` column.

    One row per input row x column of ``columns``: ``category`` (the column's name) and
    ``count``; the other count columns are left out (they would repeat).
    """
    missing = [c for c in columns if c not in table]
    if missing:
        raise ValueError(f"records.stack: no columns {missing} in the aggregate")
    keep = ["lsoa", "la", "income", "rural", *[c for c in table.columns if c in STRATA], "children"]
    return pd.concat(
        [table[keep].assign(category=c, count=table[c]) for c in columns], ignore_index=True
    )


def cached(source: RecordsTable, cache: Path) -> Aggregate:
    """Build a records table, or read it back from its cache.

    :func:`build`, kept under ``cache/<key>/`` (``table.parquet``, ``truth.json``,
    ``report.json``) and read back from there when present.
    """
    folder = Path(cache) / key(source)
    files = {name: folder / name for name in ("table.parquet", "truth.json", "report.json")}
    if all(p.exists() for p in files.values()):
        report = json.loads(files["report.json"].read_text(encoding="utf-8"))
        return Aggregate(
            pd.read_parquet(files["table.parquet"]),
            json.loads(files["truth.json"].read_text(encoding="utf-8")),
            report["dropped"],
            report["linkage"],
        )
    agg = build(source)
    folder.mkdir(parents=True, exist_ok=True)
    report = {
        "records": dataclasses.asdict(source),
        "version": __version__,
        "rows": len(agg.table),
        "dropped": agg.dropped,
        "linkage": agg.linkage,
    }
    # the table last: its presence with the other two marks a complete entry
    atomic_write(
        files["truth.json"],
        lambda tmp: Path(tmp).write_text(
            json.dumps(agg.truth, default=float), encoding="utf-8", newline="\n"
        ),
    )
    atomic_write(
        files["report.json"],
        lambda tmp: Path(tmp).write_text(
            json.dumps(report, indent=1, default=int), encoding="utf-8", newline="\n"
        ),
    )
    atomic_write(files["table.parquet"], lambda tmp: agg.table.to_parquet(tmp))
    return agg
