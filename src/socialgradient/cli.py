"""The ``socialgradient`` command: its argument parser, and the dispatch of each command
to the module that does the work.
(over 400 lines because it holds every subcommand's parser and dispatch; the data, census,
report, verify and calibrate commands themselves are in :mod:`socialgradient._subcommands`).

* ``simulate --out DIR [--seed N] [--scale F]``: write a synthetic England (Parquet + truth).
* ``fit DATA --outcome COL --out DIR [--family ...] [--draws N] ...``: fit the national
  model to a neighbourhood table and write every output (:mod:`socialgradient.release.report`).
* ``data build SHARED_DIR --out DIR [--format parquet] [--la-year Y]``: assemble the
  neighbourhood table of every English LSOA from the public source files
  (:mod:`socialgradient.data.sources.build`), with a linkage report.
* ``census write|aggregate|extract``: CIN Census XML returns and flat child-level extracts
  (:mod:`socialgradient.data.census.returns`, :mod:`socialgradient.data.census.extracts`) linked to
  LSOAs and aggregated to a neighbourhood table for ``fit``, with a read + linkage report.

Every command that writes results writes an output set (:mod:`socialgradient.util.outputs`):
``DIR/release/`` (gated, safe to publish), ``DIR/internal/`` (not for release),
``DIR/MANIFEST.json``; ``data build`` and ``census aggregate|extract`` put the LSOA table in
``internal/`` (:mod:`socialgradient.release.table_sets`), which ``fit DIR`` reads.
* ``calibrate --out DIR [--replicates 100] [--model national|binomial]``: the calibration
  study on simulated England-sized data sets, run on Dask (:mod:`socialgradient.study.calibrate`).
* ``run``: the main job. Fits the national negative-binomial model of referrals on the
  embedded default data, plus the Poisson model for a LOO comparison, and prints the
  headline table and verdict.

The parser follows the usual conventions: every option has help and shows its default;
``-q`` goes before or after the command; list options repeat (``--strata a --strata b``)
or take a comma list (``--strata a,b``), never several words, so a positional argument
after them stays one; each command offers only the options it uses.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from socialgradient import __version__, resources
from socialgradient._subcommands import (  # noqa: F401 (moved here; names kept)
    HelpFormatter,
    ListOption,
    _calibrate,
    _census,
    _census_parser,
    _cluster,
    _cluster_args,
    _copy_report,
    _data,
    _data_parser,
    _headline,
    _ledger_arg,
    _report,
    _table_out_args,
    _verify,
)
from socialgradient.spec import FAMILIES, LA_EFFECTS, SAMPLERS, Spec, load_spec
from socialgradient.util.progress import configure as configure_logging
from socialgradient.util.progress import step

log = logging.getLogger(__name__)

# The checkout's data/ and models/, or the wheel's packaged copies (socialgradient.resources).
DEFAULT_DATA = resources.path("data", "neighbourhoods.parquet")
DEFAULT_SPEC = resources.path("models", "national_referrals.toml")

DESCRIPTION = """\
The social gradient in children's social care: Bayesian multilevel models (PyMC) of how
referrals, plans and other outcomes of children's social care rise with neighbourhood
deprivation, within and between local authorities. Each command that writes results
writes an output set: release/ (through the disclosure gate, safe to publish), internal/
(not for release) and MANIFEST.json."""

EPILOG = """\
examples:
  socialgradient run                                   the main job on the embedded data
  socialgradient simulate --out synth --scale 0.2      a synthetic England with known truth
  socialgradient fit synth/neighbourhoods.parquet --outcome referrals --out out/referrals
  socialgradient fit TABLE --outcome referrals --strata age_band --strata gender --out DIR
  socialgradient -q suite --out out/suite --draws 500  every spec of models/, quietly

Each command has its own help: socialgradient COMMAND --help. Progress lines go to
stderr (-q keeps warnings and errors only), results to stdout; exit status 0 on success,
1 when the diagnostics verdict is FAIL, 2 on an error in the input."""


def _options(*adders, title: str | None = None) -> argparse.ArgumentParser:
    """A parent parser of shared options (``parents=``): each command takes only the groups
    of options it uses. With a ``title`` they are shown in their own section of the help."""
    p = argparse.ArgumentParser(add_help=False)
    group = p.add_argument_group(title) if title else p
    for add in adders:
        add(group)
    return p


def _quiet(p: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    # SUPPRESS on the commands: `-q` before the command (the top parser's) is not reset by
    # the command's own parser when it is not given after it too.
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="no progress lines on stderr (warnings and errors only); the "
        "command's results still go to stdout",
    )


def _family(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--family", choices=FAMILIES, help="likelihood (default: the spec's, negbin without one)"
    )


def _sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--draws", type=int, help="draws per chain (default: the spec's)")
    p.add_argument("--tune", type=int, help="tuning draws per chain (default: the spec's)")
    p.add_argument("--chains", type=int, help="chains (default: the spec's)")
    p.add_argument("--seed", type=int, help="random seed (default: the spec's)")
    p.add_argument("--sampler", choices=SAMPLERS, help="NUTS sampler (default: the spec's)")


def _progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="hide the sampler's progress bar")


def parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    top = argparse.ArgumentParser(
        prog="socialgradient", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _quiet(top, default=False)
    quiet = _options(_quiet)
    overrides = "model and sampling (override the spec's)"
    spec_run = _options(_family, _sampling, _progress, title=overrides)  # fit, panel, run
    sub = top.add_subparsers(
        dest="command", required=True, title="commands", metavar="COMMAND", help="one of:"
    )

    def command(name: str, help: str, parents=(quiet,)) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help[0].upper() + help[1:] + ".",
            parents=list(parents),
            formatter_class=HelpFormatter,
        )

    r = command(
        "run",
        "the main job: the national referrals model on the embedded data, with a LOO comparison",
        (quiet, spec_run),
    )
    r.add_argument("--data", type=Path, default=DEFAULT_DATA, help="neighbourhood table")
    r.add_argument(
        "--spec",
        type=Path,
        default=DEFAULT_SPEC,
        help="TOML spec; the other options override its values",
    )
    r.add_argument("--out", type=Path, default=Path("out"), help="output folder (an output set)")
    r.add_argument("--figures", type=Path, default=Path("figures"), help="copy the PNGs here")

    sim = command("simulate", "write a synthetic England with known truth")
    sim.add_argument("--out", type=Path, required=True, help="output folder")
    sim.add_argument("--seed", type=int, default=2021, help="random seed")
    sim.add_argument("--scale", type=float, default=1.0, help="LSOAs per LA multiplier")
    sim.add_argument(
        "--years",
        action=ListOption,
        item=int,
        metavar="YEAR",
        help="collection years, repeated or a comma list (with --records; default 2019)",
    )
    sim.add_argument(
        "--geography",
        type=Path,
        help="real LSOA table (lsoa, la, income, "
        "children, rural; CSV or Parquet) instead of synthetic LSOAs (with "
        "--records)",
    )
    sim.add_argument(
        "--records",
        action="store_true",
        help="also write CIN-Census-shaped child-level tables and the LSOA x age-band aggregate",
    )

    f = command("fit", "fit the national model to a neighbourhood table", (quiet, spec_run))
    f.add_argument(
        "data",
        type=Path,
        help="CSV or Parquet neighbourhood table, or the "
        "output folder of data build / census aggregate|extract",
    )
    f.add_argument("--outcome", required=True, help="count column to model")
    f.add_argument("--out", type=Path, required=True, help="output folder (an output set)")
    f.add_argument("--spec", type=Path, help="TOML spec; the other options override its values")
    f.add_argument("--stratum", help="column splitting LSOAs into cells (e.g. age_band)")
    f.add_argument(
        "--strata",
        action=ListOption,
        metavar="COL",
        help="several stratum "
        "columns, repeated or a comma list (e.g. --strata age_band --strata "
        "gender): cells of their combinations, offsets per column",
    )
    f.add_argument(
        "--stratum-trend",
        help="numeric cell column (e.g. age): a trend in the "
        "rate and in the gradient per unit of it",
    )
    f.add_argument(
        "--exposure",
        help="the offset's column (default: the spec's, children; e.g. person-days at risk)",
    )
    f.add_argument(
        "--trials",
        help="binomial: the column of trials (e.g. referrals, for "
        "re-referrals out of referrals); use with --family binomial",
    )
    f.add_argument(
        "--neighbourhood-moderator",
        action=ListOption,
        dest="neighbourhood_moderators",
        metavar="COL",
        help="table column "
        "entering as a main effect and an interaction with within-LA deprivation "
        "(repeated or a comma list)",
    )
    f.add_argument("--la-data", help="LA table (one row per LA, column la) of the LA moderators")
    f.add_argument(
        "--la-moderator",
        action=ListOption,
        dest="la_moderators",
        metavar="COL",
        help="column of --la-data entering the means of the LA intercept and "
        "slope (repeated or a comma list)",
    )
    f.add_argument(
        "--la-effects",
        choices=LA_EFFECTS,
        help="LA-effect geometry (default: the spec's, auto: per LA, by information)",
    )
    f.add_argument(
        "--target-accept", type=float, help="NUTS target acceptance (default: the spec's, 0.8)"
    )
    f.add_argument(
        "--prior",
        action="append",
        metavar="NAME=SCALE",
        help="a prior scale, as in the spec's [priors] table (repeatable)",
    )
    f.add_argument(
        "--allow-fail",
        action="store_true",
        help="exit 0 even when the "
        "diagnostics verdict is FAIL (without it: exit 1, outputs still written)",
    )

    _data_parser(command("data", "public source files: build the neighbourhood table"), quiet)
    _census_parser(
        command("census", "CIN Census XML returns and flat extracts -> neighbourhood table"), quiet
    )

    pn = command(
        "panel", "the between-LA gradient on the real DfE tables (LA x year)", (quiet, spec_run)
    )
    pn.add_argument(
        "shared_dir",
        type=Path,
        help="shared data folder (dfe_csc/, "
        "population_la/, iod2019/, la_lookups/, ruc2011/, boundaries/)",
    )
    pn.add_argument(
        "--measure",
        choices=["referrals", "cin", "cpp_starts", "cla"],
        help="the DfE measure (default: the spec's, referrals)",
    )
    pn.add_argument("--out", type=Path, required=True, help="output folder (an output set)")
    pn.add_argument(
        "--spec",
        type=Path,
        help="TOML spec (default models/la_panel_MEASURE"
        ".toml if present); the other options override its values",
    )

    rp = command("report", "rebuild a saved fit's output set (no refitting)")
    rp.add_argument(
        "fit",
        type=Path,
        help="an output folder written by fit, run or suite "
        "(its internal/posterior.nc is used), or a posterior.nc",
    )
    rp.add_argument("--out", type=Path, required=True, help="output folder (an output set)")
    rp.add_argument(
        "--threshold",
        type=int,
        default=10,
        help="disclosure: suppress counts below this (lower needs --override)",
    )
    rp.add_argument("--round-to", type=int, help="disclosure: round visible counts to this")
    rp.add_argument(
        "--override",
        metavar="REASON",
        help="reason for a threshold below the default (logged in release/disclosure_log.jsonl)",
    )
    _ledger_arg(rp)

    su = command(
        "suite",
        "fit every national spec in models/ (resumable)",
        (quiet, _options(_sampling, _progress, title=overrides)),
    )  # no --family:
    # each spec names its family
    su.add_argument(
        "--models", type=Path, default=resources.root("models"), help="folder of *.toml specs"
    )
    su.add_argument("--data", type=Path, default=DEFAULT_DATA, help="neighbourhood table")
    su.add_argument("--out", type=Path, default=Path("out/suite"), help="output folder")
    su.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="fit on the running Dask cluster "
        "at this scheduler address (tls://HOST:PORT, or tcp:// on this machine); "
        "its workers must see --out at the same path (default: a local cluster)",
    )
    su.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes of the local cluster; not with --scheduler",
    )
    _cluster_args(su)

    ca = command(
        "calibrate",
        "calibration study: coverage and SBC ranks over simulated "
        "England-sized data sets (resumable)",
    )
    ca.add_argument("--out", type=Path, required=True, help="output folder")
    ca.add_argument(
        "--replicates",
        type=int,
        default=100,
        help="simulated data sets (seeds SEED .. SEED + REPLICATES - 1)",
    )
    ca.add_argument(
        "--model",
        choices=("national", "binomial"),
        default="national",
        help="national: negative binomial referrals; binomial: re-referrals out of referrals",
    )
    ca.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="LSOAs per LA multiplier (1.0: England-sized, 32,844 LSOAs in 150 LAs)",
    )
    ca.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on the Dask cluster at this "
        "scheduler address (tls://HOST:PORT, or tcp:// on this machine); its "
        "workers must see --out at the same path (default: a local cluster)",
    )
    ca.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes of the local cluster; not with --scheduler",
    )
    _cluster_args(ca)
    ca.add_argument("--draws", type=int, help="draws per chain (default 1000)")
    ca.add_argument("--tune", type=int, help="tuning draws per chain (default 500)")
    ca.add_argument("--chains", type=int, help="chains (default 4)")
    ca.add_argument("--seed", type=int, default=2021, help="first replicate's seed")

    vf = command(
        "verify",
        "check an output set, read-only: every file listed in its "
        "manifest with its SHA-256, none unlisted, no link or special file, no "
        "pending commit; exit 0 with a summary, else 1 naming each problem",
    )
    vf.add_argument("dir", type=Path, help="the output folder (MANIFEST.json, release/, internal/)")

    pb = command(
        "publish",
        "build a static, offline website and DfE EES data files from a verified output "
        "set's release/ only (index, a page per LA, methods, data/), e.g. "
        "`socialgradient publish out --out site`",
    )
    pb.add_argument("dir", type=Path, help="the output set (MANIFEST.json, release/, internal/)")
    pb.add_argument("--out", type=Path, required=True, help="the site folder to write")
    pb.add_argument("--year", type=int, default=2019, help="reporting year (year to 31 March)")
    pb.add_argument("--boundaries", type=Path, default=None, help="ONS boundary GeoJSON (map)")
    return top


def _spec(args, outcome: str | None = None) -> Spec:
    spec = load_spec(args.spec) if args.spec else Spec(outcome=outcome)
    return spec.replace(
        outcome=outcome,
        family=args.family,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        sampler=args.sampler,
    )


def _priors(items: list[str]) -> dict[str, float]:
    """``--prior NAME=SCALE`` flags as a dict (validated by :class:`Spec`'s Priors)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--prior {item!r}: write NAME=NUMBER, e.g. --prior b_w=0.5")
    return out


def _fit_and_write(table, spec: Spec, out: Path, progress: bool, compare: bool) -> dict:
    from socialgradient import api
    from socialgradient.results import checks
    from socialgradient.util import outputs

    outputs.check_destination(out)  # before any sampling

    # the pointwise log-likelihood only for LOO: the comparison computes it when asked
    tree = api.fit(table, spec, progressbar=progress, pointwise=False)
    extra = {}
    if compare:
        other = "poisson" if spec.family == "negbin" else "negbin"
        log.info("fitting the %s model for the LOO comparison ...", other)
        rival = api.fit(table, spec.replace(family=other), progressbar=progress, pointwise=False)
        with step(log, "LOO comparison"):
            loo = checks.loo_compare({spec.family: tree, other: rival})
        extra["loo"] = json.loads(loo.to_json(orient="index"))
        print(loo.to_string())
    paths = api.write(tree, out, extra=extra, command="run" if compare else "fit")
    s = json.loads(paths["summary"].read_text(encoding="utf-8"))
    print(_headline(s))
    print(f"wrote {out}/: release/ (safe to publish), internal/ (not for release), MANIFEST.json")
    return {"summary": s, "paths": paths}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``socialgradient`` command."""
    args = parser().parse_args(argv)
    configure_logging(quiet=args.quiet)  # the library's progress lines, on stderr
    from socialgradient.data.schema import InputError
    from socialgradient.release.disclosure import DisclosureError

    try:
        return _dispatch(args)
    except (InputError, ValueError, DisclosureError, OSError) as err:
        print(f"socialgradient {args.command}: error: {err}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    from socialgradient.data import schema
    from socialgradient.data.synthetic import england
    from socialgradient.util import outputs

    outputs.check_args(args)  # no output on or in an input, none in a release/ or internal/
    if args.command == "verify":
        return _verify(args)
    if args.command == "publish":
        from socialgradient.release.publish import publish

        built = publish(args.dir, args.out, year=args.year, boundaries=args.boundaries)
        print(
            f"wrote {built['site']}: {built['pages']} pages, {built['figures']} figures, EES "
            f"data passing {len(built['screening'])} screening checks"
        )
        return 0
    if args.command == "data":
        return _data(args)
    if args.command == "census":
        return _census(args)
    if args.command == "panel":
        from socialgradient.panel.model import panel_command

        return panel_command(args)
    if args.command == "simulate":
        if not args.records and (args.years or args.geography):
            raise ValueError("--years and --geography apply to child-level records: add --records")
        from socialgradient.util import outputs

        outputs.check_destination(args.out)  # before simulating
        if args.geography is None:
            with step(log, "simulated the synthetic England (scale %s)", args.scale):
                syn = england.simulate(seed=args.seed, scale=args.scale)
            england.write(syn, args.out)
            print(f"wrote {args.out}: {len(syn.table)} LSOAs in {syn.table['la'].nunique()} LAs")
        if args.records:
            from socialgradient.data.census import linkage
            from socialgradient.data.synthetic import records

            geography = None
            if args.geography is not None:
                geography = schema.read_table(args.geography)
                schema.validate(geography.assign(_n=0), ["_n"])  # codes, income, children
            with step(log, "simulated child records"):
                rec = records.simulate_records(
                    seed=args.seed,
                    years=args.years or (2019,),
                    scale=args.scale,
                    geography=geography,
                )
            paths = linkage.write(rec, args.out)
            print(
                f"wrote {args.out}: {len(rec.children)} children, {len(rec.episodes)} "
                f"episodes in {rec.truth['n_lsoa']} LSOAs ({', '.join(sorted(paths))})"
            )
        return 0
    progress = not getattr(args, "no_progress", False)
    if args.command == "report":
        return _report(args)
    if args.command == "suite":
        from socialgradient.study import suite

        if args.workers < 1:
            raise ValueError(f"suite: --workers must be at least 1, got {args.workers}")
        from socialgradient.util import outputs

        outputs.check_destination(args.out)
        cluster = _cluster(args)  # before the table is read
        table = schema.read_table(args.data)
        truth_file = Path(args.data).with_name("truth.json")  # as `simulate` writes it
        truth = json.loads(truth_file.read_text(encoding="utf-8")) if truth_file.exists() else None
        items = suite.run(
            args.models,
            table,
            args.out,
            progressbar=progress,
            truth=truth,
            scheduler=cluster,
            workers=args.workers,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            seed=args.seed,
            sampler=args.sampler,
        )
        print(suite.headline(items))
        print(f"wrote {args.out / 'suite.csv'}, {args.out / 'findings.md'}")
        verdicts = [i.summary["diagnostics"]["verdict"] for i in items if i.summary]
        return 1 if "FAIL" in verdicts else 0
    if args.command == "calibrate":
        return _calibrate(args)
    if args.command == "fit":
        from socialgradient.util import outputs

        outputs.check_destination(args.out)  # before reading the table or sampling
        spec = _spec(args, args.outcome)
        spec = spec.replace(
            stratum=args.stratum,
            strata=tuple(args.strata) if args.strata else None,
            stratum_trend=args.stratum_trend,
            exposure=args.exposure,
            trials=args.trials,
            neighbourhood_moderators=args.neighbourhood_moderators,
            la_data=str(Path(args.la_data).resolve()) if args.la_data else None,
            la_moderators=args.la_moderators,
            la_effects=args.la_effects,
            target_accept=args.target_accept,
            priors=_priors(args.prior or []) or None,
        )
        result = _fit_and_write(
            schema.read_table(args.data), spec, args.out, progress, compare=False
        )
        if result["summary"]["diagnostics"]["verdict"] == "FAIL" and not args.allow_fail:
            print(
                "socialgradient fit: the diagnostics verdict is FAIL (outputs written; "
                "--allow-fail exits 0)",
                file=sys.stderr,
            )
            return 1
        return 0
    # run: the main job
    if not args.data.exists():
        raise FileNotFoundError(
            f"default data {args.data} not found; run from the repository root, or "
            f"regenerate it with `socialgradient simulate --out {args.data.parent}`"
        )
    spec = _spec(args)
    from socialgradient.util import outputs

    outputs.check_destination(args.out)
    outputs.check_destination(args.figures)
    table = schema.load(args.data, [spec.outcome])
    log.info(
        "%s: %d LSOAs in %d LAs; %s", args.data, len(table), table["la"].nunique(), spec.to_json()
    )
    start = time.perf_counter()
    result = _fit_and_write(table, spec, args.out, progress, compare=True)
    args.figures.mkdir(parents=True, exist_ok=True)
    for path in result["paths"].values():
        if path.suffix == ".png":
            (args.figures / path.name).write_bytes(path.read_bytes())
    print(f"main job: {time.perf_counter() - start:.0f} s; figures in {args.figures}/")
    return 0 if result["summary"]["diagnostics"]["verdict"] != "FAIL" else 1


if __name__ == "__main__":
    raise SystemExit(main())
