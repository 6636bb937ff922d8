"""The input commands: ``data build`` and ``census write|aggregate|extract``, parsers and work.

``data build`` assembles the neighbourhood table of every English LSOA from the public source
files (:mod:`socialgradient.data.sources.build`); ``census`` reads CIN Census XML returns and
flat child-level extracts (:mod:`socialgradient.data.census.returns`,
:mod:`socialgradient.data.census.extracts`), links them to LSOAs and aggregates them to a
neighbourhood table for ``fit``. Both write an output set whose ``internal/`` holds the LSOA
table (:mod:`socialgradient.release.table_sets`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from socialgradient.cli.options import HelpFormatter, ListOption, _table_out_args
from socialgradient.util.progress import step

log = logging.getLogger("socialgradient.cli")  # the command line's own logger


def _data_parser(d: argparse.ArgumentParser, quiet: argparse.ArgumentParser) -> None:
    dsub = d.add_subparsers(
        dest="data_command", required=True, title="commands", metavar="COMMAND", help="one of:"
    )
    b = dsub.add_parser(
        "build",
        help="neighbourhood table of every English LSOA, with a linkage report",
        parents=[quiet],
        formatter_class=HelpFormatter,
    )
    b.add_argument(
        "shared_dir", type=Path, help="shared data folder (iod2019/, la_lookups/, ruc2011/)"
    )
    _table_out_args(b)
    b.add_argument(
        "--outcomes",
        type=Path,
        help="table of lsoa + count columns to join "
        "(unprotected in internal/; their LA totals through the disclosure gate "
        "in release/)",
    )
    b.add_argument(
        "--la-year",
        type=int,
        default=None,
        help="DfE reporting year of the LA geography (default: the latest)",
    )
    b.add_argument(
        "--no-city-merge", action="store_true", help="keep City of London apart from Hackney"
    )


def _census_parser(c: argparse.ArgumentParser, quiet: argparse.ArgumentParser) -> None:
    csub = c.add_subparsers(
        dest="census_command", required=True, title="commands", metavar="COMMAND", help="one of:"
    )

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return csub.add_parser(name, help=help, parents=[quiet], formatter_class=HelpFormatter)

    w = command(
        "write",
        "simulate records and write them as CIN Census XML returns (one "
        "per LA per year, valid against the year's DfE XSD) with child_lsoa.csv, "
        "looked_after.csv, cin_plans.csv, population.parquet and geography.parquet",
    )
    w.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder: an output set "
        "whose internal/ holds every file (record-level inputs, not for release); "
        "census aggregate DIR reads it",
    )
    w.add_argument("--seed", type=int, default=2021, help="random seed")
    w.add_argument("--scale", type=float, default=1.0, help="LSOAs per LA multiplier")
    w.add_argument(
        "--years",
        action=ListOption,
        item=int,
        default=[2019],
        metavar="YEAR",
        help="collection years, repeated or a comma list",
    )
    w.add_argument(
        "--la",
        action=ListOption,
        metavar="CODE",
        help="only these LA codes, repeated or a comma list (default: every LA)",
    )

    def common(p):
        p.add_argument(
            "--geography",
            type=Path,
            required=True,
            help="LSOA lookup: lsoa, la, income, children, rural (e.g. neighbourhoods.parquet)",
        )
        p.add_argument(
            "--population",
            type=Path,
            help="denominators: year, lsoa, la, "
            "age_band, gender, ethnicity, children (default: the geography's "
            "children, no strata)",
        )
        _table_out_args(p)
        p.add_argument(
            "--by",
            action=ListOption,
            default=[],
            metavar="COL",
            help="strata "
            "(age_band, gender, ethnicity, year), repeated or a comma list "
            "(default: none)",
        )
        p.add_argument(
            "--errors",
            choices=("raise", "report"),
            default="raise",
            help="a record problem stops the run (raise) or is reported",
        )

    a = command("aggregate", "XML returns -> linked LSOA counts")
    a.add_argument(
        "returns",
        type=Path,
        nargs="+",
        help="XML files or folders of them (census write's output folder: its internal/)",
    )
    a.add_argument(
        "--child-lsoa",
        type=Path,
        required=True,
        help="la, child_id (LAchildID), lsoa[, year] (CSV or Parquet)",
    )
    a.add_argument("--looked-after", type=Path, help="la, child_id, looked_after_start[, year]")
    a.add_argument(
        "--lea-codes",
        type=Path,
        help="DfE table with old_la_code, new_la_code (adds to the built-in DfE LA numbers)",
    )
    a.add_argument(
        "--cin-plans",
        type=Path,
        help="la, child_id, referral_date, "
        "cin_plan_start[, cin_plan_end, year]: CIN plans of years whose schema has "
        "no CINPlanDates (census write's cin_plans.csv)",
    )
    a.add_argument(
        "--schemas",
        type=Path,
        help="folder with CIN_schema_<year>.xsd (default: "
        "$SOCIALGRADIENT_SHARED/cin_census, then the download cache)",
    )
    a.add_argument(
        "--validate",
        choices=("auto", "yes", "no"),
        default="auto",
        help="XSD validation of each return: when a schema is at hand (auto), "
        "required (yes) or off (no)",
    )
    common(a)
    e = command("extract", "flat child-level table -> linked LSOA counts")
    e.add_argument("extract", type=Path, help="CSV or Parquet, one row per referral")
    e.add_argument("--mapping", type=Path, required=True, help="TOML column mapping")
    common(e)


def _census(args) -> int:
    from socialgradient.data import schema
    from socialgradient.data.census import extracts, linkage, returns
    from socialgradient.release import table_sets
    from socialgradient.util import outputs

    if args.census_command == "write":
        outputs.check_destination(args.out)
        from socialgradient.data import records as records_model
        from socialgradient.data.synthetic import records

        rec = records.simulate_records(seed=args.seed, years=args.years, scale=args.scale)
        if args.la:
            keep = rec.children["la"].isin(args.la)
            eps = rec.episodes.merge(rec.children.loc[keep, ["child_id", "year"]])
            rec = records_model.Records(
                children=rec.children[keep],
                episodes=eps,
                factors=rec.factors[rec.factors["episode_id"].isin(eps["episode_id"])],
                population=rec.population,
                geography=rec.geography,
                truth=rec.truth,
            )
        files, _ = table_sets.write_records_set(args.out, rec, seed=args.seed)
        print(
            f"wrote {len(files)} CIN returns ({len(rec.children)} children) and "
            f"child_lsoa.csv, looked_after.csv, cin_plans.csv, population.parquet, "
            f"geography.parquet to {args.out}/internal/ (an output set: not for release)"
        )
        return 0
    table_sets.check_out(args.out)
    geography = schema.read_table(args.geography)
    population = schema.read_table(args.population) if args.population else None
    if population is None and args.by:
        raise ValueError(f"--by {' '.join(args.by)} needs --population with those strata")
    if args.census_command == "aggregate":
        lea = returns.lea_codes_from_dfe(args.lea_codes) if args.lea_codes else None
        files = [outputs.internal_of(p) for p in args.returns]  # census write's set: internal/
        recs, read = returns.read_returns(
            files,
            args.child_lsoa,
            geography,
            population,
            looked_after=args.looked_after,
            lea_codes=lea,
            errors=args.errors,
            cin_plans=args.cin_plans,
            schema_dir=args.schemas,
            validate={"auto": None, "yes": True, "no": False}[args.validate],
        )
    else:
        recs, read = extracts.read_extract(
            args.extract, args.mapping, geography, population, errors=args.errors
        )
    table, report = linkage.aggregate(recs, by=args.by)
    counts = [c for c in table.columns if c in linkage.THRESHOLD_COLUMNS]
    stratum = args.by[0] if len(args.by) == 1 else None
    if len(args.by) <= 1:
        schema.validate(table, counts, stratum)
    keys = ["lsoa", *args.by]
    attributes = {"la", "income", "rural", "children", *keys}
    summary = {
        "read": read.to_dict(),
        "linkage": report.to_dict(),
        "note": "LSOA counts unprotected in internal/ (not for release); counts per "
        "LA through the disclosure gate in release/ (disclosure_log.jsonl)",
    }
    paths = table_sets.write_table_set(
        args.out,
        table,
        counts=[c for c in table.columns if c not in attributes],
        strata=args.by,
        report=summary,
        command=f"census {args.census_command}",
        fmt=args.format,
        override=args.override,
        ledger=args.ledger,
    )
    _copy_report(paths["report"], args.report)
    print(
        f"read {read.episodes} episodes of {read.children} children in {len(read.files)} "
        f"file(s): {read.passed} passed, excluded {sum(read.excluded.values())} "
        f"{ {k: v for k, v in read.excluded.items() if v} }; linked {report.linked}, "
        f"unlinked {sum(report.unlinked.values())} "
        f"{ {k: v for k, v in report.unlinked.items() if v} }"
    )
    if read.validation or read.file_errors:
        done = sum(v.startswith("validated") for v in read.validation.values())
        why = sorted({v for v in read.validation.values() if not v.startswith("validated")})
        cats = read.schema_errors["category"].value_counts().to_dict()
        print(
            f"schema: {done} of {len(read.validation)} file(s) validated, "
            f"{len(read.schema_errors)} error(s) {cats}; files not read: "
            f"{len(read.file_errors)}" + (f"; {why[0]}" if why else "")
        )
    print(
        f"wrote {args.out}/: internal/{paths['table'].name} ({len(table)} rows; not for "
        f"release), release/ (counts per LA, gated), MANIFEST.json"
        + (f"; and {args.report}" if args.report else "")
    )
    return 0


def _copy_report(src: Path, dst: Path | None) -> None:
    """``--report FILE``: a copy of the set's internal/linkage_report.json, outside the set."""
    if dst is not None:
        from socialgradient.util.files import atomic_write

        data = src.read_bytes()
        atomic_write(dst, lambda tmp: Path(tmp).write_bytes(data))


def _data(args) -> int:
    from socialgradient.data import sources
    from socialgradient.data.sources import build
    from socialgradient.release import table_sets

    table_sets.check_out(args.out)  # before any reading
    merges = sources.DFE_MERGES
    if args.no_city_merge:
        merges = tuple(m for m in merges if m.old != "E09000001")
    with step(log, "built the neighbourhood table from %s", args.shared_dir):
        table, report = build.build_neighbourhoods(
            args.shared_dir,
            outcome_table=args.outcomes,
            la_year=args.la_year or sources.LATEST_YEAR,
            merges=merges,
        )
    outcomes = report.get("outcome", {}).get("outcomes", []) if args.outcomes else []
    paths = table_sets.write_table_set(
        args.out,
        table,
        counts=list(outcomes),
        report=report,
        command="data build",
        fmt=args.format,
        override=args.override,
        ledger=args.ledger,
    )
    _copy_report(paths["report"], args.report)
    print(build.summary(report))
    print(
        f"wrote {args.out}/: internal/{paths['table'].name} (not for release), release/"
        + (" (outcome counts per LA, gated)" if outcomes else "")
        + ", MANIFEST.json"
        + (f"; and {args.report}" if args.report else "")
    )
    return 0
