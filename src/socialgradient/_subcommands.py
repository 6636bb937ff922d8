"""The command line's building blocks (help formatter, list options, cluster and ledger
options) and the subcommands other than fitting: ``data``, ``census``, ``report``,
``verify`` and ``calibrate`` (:mod:`socialgradient.cli` builds the parser and dispatches).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from socialgradient.util.progress import step

log = logging.getLogger("socialgradient.cli")  # the command line's own logger


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (lists, examples), and every option's default appended to
    its help ("(default: X)") where it has one: not None, False or an empty list."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == []
            or not (action.option_strings or action.nargs in ("?", "*"))
        ):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


class ListOption(argparse.Action):
    """A list option that repeats (``--strata a --strata b``) or takes a comma list
    (``--strata a,b``), one word at a time, so it never takes a positional argument after
    it as one of its items (as ``nargs="+"`` does). ``item`` converts each item (e.g.
    ``int``); a default list is replaced, not extended, by the first value given."""

    def __init__(self, option_strings, dest, item=str, **kwargs):
        self.item = item
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        items = [] if current is None or current is self.default else list(current)
        for part in str(values).split(","):
            part = part.strip()
            try:
                if not part:
                    raise ValueError
                items.append(self.item(part))
            except ValueError:
                kind = "" if self.item is str else f" {self.item.__name__}"
                raise argparse.ArgumentError(
                    self,
                    f"invalid{kind} item {part!r} in {values!r} (repeat the option or "
                    "give a comma list: a,b)",
                ) from None
        setattr(namespace, self.dest, items)


def _cluster_args(p: argparse.ArgumentParser) -> None:
    """The Dask options of suite and calibrate (:mod:`socialgradient.study.clusters`)."""
    p.add_argument(
        "--dashboard",
        action="store_true",
        help="start the local cluster's Dask "
        "dashboard, on 127.0.0.1 only, and print its URL (default: none)",
    )
    p.add_argument(
        "--tls-ca-file",
        type=Path,
        metavar="PEM",
        help="for --scheduler "
        "tls://...: the CA certificate of the cluster (default: Dask's "
        "distributed.comm.tls.ca-file)",
    )
    p.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        help="for --scheduler tls://...: "
        "this client's certificate (default: Dask's "
        "distributed.comm.tls.client.cert)",
    )
    p.add_argument(
        "--tls-key",
        type=Path,
        metavar="PEM",
        help="for --scheduler tls://...: "
        "this client's private key (default: Dask's "
        "distributed.comm.tls.client.key, or in --tls-cert)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow --scheduler tcp:// to "
        "another host, the data crossing the network unencrypted (default: "
        "refused; docs/security.md)",
    )


def _cluster(args, **options):
    """The Dask cluster that suite's or calibrate's options name, checked before any work
    (:func:`socialgradient.study.clusters.target`)."""
    from socialgradient.study import clusters

    files = (args.tls_ca_file, args.tls_cert, args.tls_key)
    security = clusters.tls_security(*files) if any(f is not None for f in files) else None
    return clusters.target(
        args.scheduler,
        args.workers,
        dashboard=args.dashboard,
        security=security,
        insecure=args.insecure,
        **options,
    )


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


def _table_out_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder (an output set; "
        "was a table file before): internal/neighbourhoods.FORMAT holds the LSOA "
        "table, unprotected, not for release (fit DIR reads it); release/ the "
        "counts per LA through the disclosure gate, with disclosure_log.jsonl",
    )
    p.add_argument(
        "--format",
        choices=("parquet", "csv", "csv.gz"),
        default="parquet",
        help="format of internal/neighbourhoods.*",
    )
    p.add_argument(
        "--report",
        type=Path,
        help="also copy the read + linkage report here "
        "(JSON; always in DIR/internal/linkage_report.json; names LSOAs: keep it "
        "in the secure environment)",
    )
    p.add_argument(
        "--override",
        metavar="REASON",
        help="reason logged for the unprotected "
        "LSOA table in internal/ (default: 'LSOA-level model input in internal/ "
        "(not for release)'); release/ is always gated",
    )
    _ledger_arg(p)


def _ledger_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ledger",
        type=Path,
        metavar="PATH",
        help="the release ledger: each "
        "release is checked against the earlier ones recorded there, then recorded "
        "(keep it in the secure environment; default $SOCIALGRADIENT_LEDGER, else "
        "~/.local/state/socialgradient/ledger; see docs/disclosure.md)",
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
        paths, _ = table_sets.write_records_set(args.out, rec, seed=args.seed)
        print(
            f"wrote {len(paths)} CIN returns ({len(rec.children)} children) and "
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


def _report(args) -> int:
    from socialgradient import api
    from socialgradient.release import disclosure, report
    from socialgradient.sampling import fit

    source, manifest = report.locate_fit(args.fit)
    rule = disclosure.Rule(threshold=args.threshold, round_to=args.round_to, reason=args.override)
    rule.check()
    from socialgradient.util import outputs

    outputs.check_destination(args.out)
    tree = fit.load(source, pointwise=False)  # a report needs no LOO
    extra = {}
    if manifest is not None:  # keys a command added (the LOO comparison of run) carry over
        old = json.loads(
            (source.parent.parent / "release" / "summary.json").read_text(encoding="utf-8")
        )
        extra = {k: old[k] for k in ("loo",) if k in old}
    paths = api.write(
        tree,
        args.out,
        extra=extra,
        rule=rule,
        posterior=source,
        command="report",
        ledger=args.ledger,
    )
    print(_headline(json.loads(paths["summary"].read_text(encoding="utf-8"))))
    print(
        f"wrote {args.out}/: release/ (safe to publish), internal/ (not for release), MANIFEST.json"
    )
    return 0


def _headline(s: dict) -> str:
    from socialgradient.release import joint as joint_release
    from socialgradient.release import report

    return joint_release.headline(s) if "thresholds" in s else report.headline(s)


def _verify(args) -> int:
    """``verify DIR``: :func:`socialgradient.util.outputs.check`, nothing recovered or changed."""
    from socialgradient.util import outputs

    manifest, problems = outputs.check(args.dir)
    if problems:
        print(
            f"{args.dir}: not a whole, clean output set ({len(problems)} problem(s)):",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(outputs.summary(args.dir, manifest))
    return 0


def _calibrate(args) -> int:
    """``calibrate``: the calibration study (:mod:`socialgradient.study.calibrate`)."""
    from socialgradient.study import calibrate

    if args.workers < 1:
        raise ValueError(f"calibrate: --workers must be at least 1, got {args.workers}")
    from socialgradient.util import outputs

    outputs.check_destination(args.out)  # before any replicate is simulated or fitted
    cluster = _cluster(args, sends=calibrate.SENDS)
    # The package's lines are shown by main's progress.configure (a root handler as well,
    # as logging.basicConfig here added, printed each of them twice).
    logging.getLogger("distributed").setLevel(logging.WARNING)  # the cluster's chatter
    done = calibrate.run(
        args.out,
        args.replicates,
        args.model,
        scale=args.scale,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        scheduler=cluster,
        workers=args.workers,
    )
    print(calibrate.headline(done["aggregate"], args.model))
    print(f"wrote {args.out / 'calibration.json'}, {args.out / 'calibration.md'}")
    return 1 if done["failed"] else 0
