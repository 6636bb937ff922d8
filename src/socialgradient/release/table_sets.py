"""Output sets of the commands that make input tables.

The commands: ``data build``, ``census aggregate``, ``census extract`` (the LSOA table
``fit`` reads) and ``census write`` (synthetic records).

Each writes one output set (:class:`socialgradient.util.outputs.Writer`: whole or not at all)::

    DIR/MANIFEST.json                    files + SHA-256; "table" names the input table
    DIR/internal/neighbourhoods.parquet  one row per LSOA (and stratum), counts unprotected:
                                         the input of ``socialgradient fit DIR`` (or of
                                         ``fit DIR/internal/neighbourhoods.parquet``)
    DIR/internal/linkage_report.json     the read + linkage report (LSOA codes, small counts)
    DIR/internal/disclosure_log.jsonl    the internal table's write, with its reason
    DIR/release/counts_by_la.csv         the counts summed per LA (and stratum), through the
                                         disclosure gate: no LSOA code, no count under the
                                         threshold
    DIR/release/disclosure_log.jsonl     the gate's decisions on release/

An LSOA table, even a protected one, names LSOAs: it never goes to ``release/``.
``census write`` puts every file (XML returns, child_lsoa.csv, ...) under ``internal/``:
record-level inputs, nothing to publish.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pandas as pd

from socialgradient.release import disclosure
from socialgradient.util import outputs

FORMATS = ("parquet", "csv", "csv.gz")
TABLE = "neighbourhoods"
INTERNAL_REASON = "LSOA-level model input in internal/ (not for release)"
TABLE_README = """NOT FOR RELEASE

This folder holds LSOA-level information: the neighbourhood table (neighbourhoods.*, one row
per LSOA and stratum with its counts unprotected; `socialgradient fit DIR --outcome COL`
reads it), the read and linkage report (linkage_report.json: LSOA codes, records excluded or
unlinked by reason, small counts) and the log of the table's write. Keep it inside the
secure environment.

What may be published is in ../release/: the counts per LA, through the disclosure gate.
"""
RECORDS_README = """NOT FOR RELEASE

This folder holds child-level records (synthetic, but shaped as the real ones): CIN Census
XML returns <la>_<year>.xml, child_lsoa.csv, looked_after.csv, cin_plans.csv, and the
population and geography tables. They are inputs of `socialgradient census aggregate
DIR/internal --child-lsoa DIR/internal/child_lsoa.csv ...` (or `census aggregate DIR ...`),
not results. Nothing of it is for release.
"""


def check_out(out: str | Path) -> Path:
    """Check the ``--out`` folder of a command that writes a table.

    ``--out`` names the output folder now, not the table file: refuse a table's name with
    the command to write instead, then check the folder can hold a set.
    """
    out = Path(out)
    name = out.name.lower()
    if name.endswith(tuple("." + f for f in FORMATS)):
        fmt = next(f for f in reversed(FORMATS) if name.endswith("." + f))
        folder = out.with_name(out.name[: -len(fmt) - 1])
        raise ValueError(
            f"--out {out}: --out names an output folder now (release/, "
            f"internal/, MANIFEST.json), not a table file; write --out {folder} "
            f"--format {fmt} and read the table as {folder} or "
            f"{folder}/internal/{TABLE}.{fmt}"
        )
    return outputs.check_destination(out)


def table_hash(table: pd.DataFrame) -> str:
    """SHA-256 (first 16 hex digits) of the table's CSV text."""
    return hashlib.sha256(table.to_csv(index=False, lineterminator="\n").encode()).hexdigest()[:16]


def _nothing(rel: Path, note: str) -> None:
    entry = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "file": None,
        "decision": "nothing released",
        "note": note,
    }
    with open(rel / disclosure.LOG_NAME, "a", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(entry) + "\n")


def by_la(table: pd.DataFrame, counts: list[str], strata: list[str]) -> pd.DataFrame:
    """Return the ``counts`` summed per LA and stratum (missing counts as none)."""
    keys = ["la", *[s for s in strata if s not in ("la", "lsoa")]]
    return table.groupby(keys, sort=True, dropna=False)[counts].sum().reset_index()


def census_totals(counts: list[str]) -> dict:
    """Return what is published elsewhere beside the counts per LA.

    What is published elsewhere beside counts per LA: every count's margins (the DfE
    publishes LA and national totals of each), and sums across columns only where columns
    partition a published count (the CP plan categories: cp_plans); the DfE publishes no
    sum of referrals, assessments, factors and days.
    """
    categories = [c for c in counts if c.startswith("cp_") and c != "cp_plans"]
    return {"across": [categories] if len(categories) > 1 else []}


def write_table_set(
    out,
    table: pd.DataFrame,
    *,
    counts: list[str],
    report: dict,
    command: str,
    strata=(),
    fmt: str = "parquet",
    override: str | None = None,
    rule: disclosure.Rule | None = None,
    ledger=None,
) -> dict[str, Path]:
    """Write ``table`` as an output set in ``out``.

    Write ``table`` (one row per LSOA and stratum) as an output set in ``out`` (module
    docstring). ``counts``: its count columns; ``strata``: its key columns besides ``lsoa``;
    ``override``: the reason logged for the unprotected internal table (default
    :data:`INTERNAL_REASON`); ``ledger``: the release ledger the counts per LA are checked
    against and recorded in (:mod:`socialgradient.release.ledger`; default its default folder).
    Returns a mapping of name to final path.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, not {fmt!r}")
    rule = rule or disclosure.Rule()
    rule.check()
    strata = list(strata)
    name = f"{TABLE}.{fmt}"
    meta = {
        "command": command,
        "data_hash": table_hash(table),
        "table": f"internal/{name}",
        "counts": counts,
        "strata": strata,
    }
    with outputs.Writer(out, readme=TABLE_README, **meta) as w:
        rel, internal = w.release, w.internal
        disclosure.write_table(
            table,
            internal / name,
            level="lsoa",
            group_columns=["lsoa", *strata],
            count_columns=counts,
            override=override or INTERNAL_REASON,
            log=internal / disclosure.LOG_NAME,
            logged_path=w.path(f"internal/{name}"),
            log_root=w.out,
        )
        (internal / "linkage_report.json").write_text(
            json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8", newline="\n"
        )
        if counts:
            las = by_la(table, counts, strata)
            disclosure.write_table(  # the LSOA rows: the ledger's units, the noise's keys
                las,
                rel / "counts_by_la.csv",
                level="la",
                rule=rule,
                count_columns=counts,
                group_columns=[c for c in las.columns if c not in counts],
                source=table,
                unit_columns=["lsoa", *strata],
                command=command,
                magnitudes=[c for c in counts if c.startswith("days_")],
                ledger=ledger,
                totals=census_totals(counts),
                log=rel / disclosure.LOG_NAME,
                logged_path=w.path("release/counts_by_la.csv"),
                log_root=w.out,
            )
        else:
            _nothing(rel, "the table holds no counts: nothing to publish")
        w.commit()
    paths = {
        "table": w.path(f"internal/{name}"),
        "report": w.path("internal/linkage_report.json"),
        "disclosure_log": w.path(f"release/{disclosure.LOG_NAME}"),
    }
    if counts:
        paths["counts_by_la"] = w.path("release/counts_by_la.csv")
    return paths


def write_records_set(out, records, seed: int) -> tuple[list[Path], dict]:
    """Write ``census write``'s XML returns and tables as one output set.

    ``census write``: the XML returns and companion tables of ``records`` (synthetic
    child-level inputs) under ``out/internal/``, as one output set; release/ holds only a log
    line saying nothing is released. Returns the final XML paths and the manifest.
    """
    from socialgradient.data.census import returns

    meta = {"command": "census write", "seed": seed, "children": len(records.children)}
    with outputs.Writer(out, readme=RECORDS_README, **meta) as w:
        paths = returns.write_returns(records, w.internal, seed=seed)
        for name, df in (("population", records.population), ("geography", records.geography)):
            df.to_parquet(w.internal / f"{name}.parquet", index=False)
        _nothing(w.release, "child-level records (synthetic inputs): all in internal/")
        manifest = w.commit()
    return [w.path(f"internal/{p.name}") for p in paths], manifest
