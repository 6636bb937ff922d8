"""The ``socialgradient`` command: its argument parser, and the dispatch of each command
to the module that does the work.
(over 400 lines because it holds every subcommand's parser and dispatch (to be split by
concern, issue 28).)

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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (lists, examples), and every option's default appended to
    its help ("(default: X)") where it has one: not None, False or an empty list."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default is None or default is False
                or default is argparse.SUPPRESS or default == []
                or not (action.option_strings or action.nargs in ("?", "*"))):
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
                    self, f"invalid{kind} item {part!r} in {values!r} (repeat the option or "
                    "give a comma list: a,b)") from None
        setattr(namespace, self.dest, items)


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
    p.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="no progress lines on stderr (warnings and errors only); the "
                   "command's results still go to stdout")


def _family(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", choices=FAMILIES, help="likelihood (default: the spec's, "
                   "negbin without one)")


def _sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--draws", type=int, help="draws per chain (default: the spec's)")
    p.add_argument("--tune", type=int, help="tuning draws per chain (default: the spec's)")
    p.add_argument("--chains", type=int, help="chains (default: the spec's)")
    p.add_argument("--seed", type=int, help="random seed (default: the spec's)")
    p.add_argument("--sampler", choices=SAMPLERS, help="NUTS sampler (default: the spec's)")


def _progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="hide the sampler's progress "
                   "bar")


def parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    top = argparse.ArgumentParser(prog="socialgradient", description=DESCRIPTION,
                                  epilog=EPILOG, formatter_class=HelpFormatter)
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _quiet(top, default=False)
    quiet = _options(_quiet)
    overrides = "model and sampling (override the spec's)"
    spec_run = _options(_family, _sampling, _progress, title=overrides)  # fit, panel, run
    sub = top.add_subparsers(dest="command", required=True, title="commands",
                             metavar="COMMAND", help="one of:")

    def command(name: str, help: str, parents=(quiet,)) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                              parents=list(parents), formatter_class=HelpFormatter)

    r = command("run", "the main job: the national referrals model on the embedded data, "
                "with a LOO comparison", (quiet, spec_run))
    r.add_argument("--data", type=Path, default=DEFAULT_DATA, help="neighbourhood table")
    r.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="TOML spec; the other "
                   "options override its values")
    r.add_argument("--out", type=Path, default=Path("out"), help="output folder (an output "
                   "set)")
    r.add_argument("--figures", type=Path, default=Path("figures"), help="copy the PNGs here")

    sim = command("simulate", "write a synthetic England with known truth")
    sim.add_argument("--out", type=Path, required=True, help="output folder")
    sim.add_argument("--seed", type=int, default=2021, help="random seed")
    sim.add_argument("--scale", type=float, default=1.0, help="LSOAs per LA multiplier")
    sim.add_argument("--years", action=ListOption, item=int, metavar="YEAR",
                     help="collection years, repeated or a comma list (with --records; "
                     "default 2019)")
    sim.add_argument("--geography", type=Path, help="real LSOA table (lsoa, la, income, "
                     "children, rural; CSV or Parquet) instead of synthetic LSOAs (with "
                     "--records)")
    sim.add_argument("--records", action="store_true", help="also write CIN-Census-shaped "
                     "child-level tables and the LSOA x age-band aggregate")

    f = command("fit", "fit the national model to a neighbourhood table", (quiet, spec_run))
    f.add_argument("data", type=Path, help="CSV or Parquet neighbourhood table, or the "
                   "output folder of data build / census aggregate|extract")
    f.add_argument("--outcome", required=True, help="count column to model")
    f.add_argument("--out", type=Path, required=True, help="output folder (an output set)")
    f.add_argument("--spec", type=Path, help="TOML spec; the other options override its "
                   "values")
    f.add_argument("--stratum", help="column splitting LSOAs into cells (e.g. age_band)")
    f.add_argument("--strata", action=ListOption, metavar="COL", help="several stratum "
                   "columns, repeated or a comma list (e.g. --strata age_band --strata "
                   "gender): cells of their combinations, offsets per column")
    f.add_argument("--stratum-trend", help="numeric cell column (e.g. age): a trend in the "
                   "rate and in the gradient per unit of it")
    f.add_argument("--exposure", help="the offset's column (default: the spec's, children; "
                   "e.g. person-days at risk)")
    f.add_argument("--trials", help="binomial: the column of trials (e.g. referrals, for "
                   "re-referrals out of referrals); use with --family binomial")
    f.add_argument("--neighbourhood-moderator", action=ListOption,
                   dest="neighbourhood_moderators", metavar="COL", help="table column "
                   "entering as a main effect and an interaction with within-LA deprivation "
                   "(repeated or a comma list)")
    f.add_argument("--la-data", help="LA table (one row per LA, column la) of the LA "
                   "moderators")
    f.add_argument("--la-moderator", action=ListOption, dest="la_moderators", metavar="COL",
                   help="column of --la-data entering the means of the LA intercept and "
                   "slope (repeated or a comma list)")
    f.add_argument("--la-effects", choices=LA_EFFECTS, help="LA-effect geometry (default: "
                   "the spec's, auto: per LA, by information)")
    f.add_argument("--target-accept", type=float, help="NUTS target acceptance (default: "
                   "the spec's, 0.8)")
    f.add_argument("--prior", action="append", metavar="NAME=SCALE",
                   help="a prior scale, as in the spec's [priors] table (repeatable)")
    f.add_argument("--allow-fail", action="store_true", help="exit 0 even when the "
                   "diagnostics verdict is FAIL (without it: exit 1, outputs still written)")

    _data_parser(command("data", "public source files: build the neighbourhood table"), quiet)
    _census_parser(command("census", "CIN Census XML returns and flat extracts -> "
                           "neighbourhood table"), quiet)

    pn = command("panel", "the between-LA gradient on the real DfE tables (LA x year)",
                 (quiet, spec_run))
    pn.add_argument("shared_dir", type=Path, help="shared data folder (dfe_csc/, "
                    "population_la/, iod2019/, la_lookups/, ruc2011/, boundaries/)")
    pn.add_argument("--measure", choices=["referrals", "cin", "cpp_starts", "cla"],
                    help="the DfE measure (default: the spec's, referrals)")
    pn.add_argument("--out", type=Path, required=True, help="output folder (an output set)")
    pn.add_argument("--spec", type=Path, help="TOML spec (default models/la_panel_MEASURE"
                    ".toml if present); the other options override its values")

    rp = command("report", "rebuild a saved fit's output set (no refitting)")
    rp.add_argument("fit", type=Path, help="an output folder written by fit, run or suite "
                    "(its internal/posterior.nc is used), or a posterior.nc")
    rp.add_argument("--out", type=Path, required=True, help="output folder (an output set)")
    rp.add_argument("--threshold", type=int, default=10,
                    help="disclosure: suppress counts below this (lower needs --override)")
    rp.add_argument("--round-to", type=int, help="disclosure: round visible counts to this")
    rp.add_argument("--override", metavar="REASON", help="reason for a threshold below the "
                    "default (logged in release/disclosure_log.jsonl)")
    _ledger_arg(rp)

    su = command("suite", "fit every national spec in models/ (resumable)",
                 (quiet, _options(_sampling, _progress, title=overrides)))  # no --family:
    # each spec names its family
    su.add_argument("--models", type=Path, default=resources.root("models"),
                    help="folder of *.toml specs")
    su.add_argument("--data", type=Path, default=DEFAULT_DATA, help="neighbourhood table")
    su.add_argument("--out", type=Path, default=Path("out/suite"), help="output folder")
    su.add_argument("--scheduler", metavar="ADDRESS", help="fit on the running Dask cluster "
                    "at this scheduler address (tls://HOST:PORT, or tcp:// on this machine); "
                    "its workers must see --out at the same path (default: a local cluster)")
    su.add_argument("--workers", type=int, default=2, help="worker processes of the local "
                    "cluster; not with --scheduler")
    _cluster_args(su)

    ca = command("calibrate", "calibration study: coverage and SBC ranks over simulated "
                 "England-sized data sets (resumable)")
    ca.add_argument("--out", type=Path, required=True, help="output folder")
    ca.add_argument("--replicates", type=int, default=100, help="simulated data sets "
                    "(seeds SEED .. SEED + REPLICATES - 1)")
    ca.add_argument("--model", choices=("national", "binomial"), default="national",
                    help="national: negative binomial referrals; binomial: re-referrals out "
                    "of referrals")
    ca.add_argument("--scale", type=float, default=1.0, help="LSOAs per LA multiplier (1.0: "
                    "England-sized, 32,844 LSOAs in 150 LAs)")
    ca.add_argument("--scheduler", metavar="ADDRESS", help="run on the Dask cluster at this "
                    "scheduler address (tls://HOST:PORT, or tcp:// on this machine); its "
                    "workers must see --out at the same path (default: a local cluster)")
    ca.add_argument("--workers", type=int, default=2, help="worker processes of the local "
                    "cluster; not with --scheduler")
    _cluster_args(ca)
    ca.add_argument("--draws", type=int, help="draws per chain (default 1000)")
    ca.add_argument("--tune", type=int, help="tuning draws per chain (default 500)")
    ca.add_argument("--chains", type=int, help="chains (default 4)")
    ca.add_argument("--seed", type=int, default=2021, help="first replicate's seed")

    vf = command("verify", "check an output set, read-only: every file listed in its "
                 "manifest with its SHA-256, none unlisted, no link or special file, no "
                 "pending commit; exit 0 with a summary, else 1 naming each problem")
    vf.add_argument("dir", type=Path, help="the output folder (MANIFEST.json, release/, "
                    "internal/)")
    return top


def _cluster_args(p: argparse.ArgumentParser) -> None:
    """The Dask options of suite and calibrate (:mod:`socialgradient.study.clusters`)."""
    p.add_argument("--dashboard", action="store_true", help="start the local cluster's Dask "
                   "dashboard, on 127.0.0.1 only, and print its URL (default: none)")
    p.add_argument("--tls-ca-file", type=Path, metavar="PEM", help="for --scheduler "
                   "tls://...: the CA certificate of the cluster (default: Dask's "
                   "distributed.comm.tls.ca-file)")
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="for --scheduler tls://...: "
                   "this client's certificate (default: Dask's "
                   "distributed.comm.tls.client.cert)")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="for --scheduler tls://...: "
                   "this client's private key (default: Dask's "
                   "distributed.comm.tls.client.key, or in --tls-cert)")
    p.add_argument("--insecure", action="store_true", help="allow --scheduler tcp:// to "
                   "another host, the data crossing the network unencrypted (default: "
                   "refused; docs/security.md)")


def _cluster(args, **options):
    """The Dask cluster that suite's or calibrate's options name, checked before any work
    (:func:`socialgradient.study.clusters.target`)."""
    from socialgradient.study import clusters

    files = (args.tls_ca_file, args.tls_cert, args.tls_key)
    security = clusters.tls_security(*files) if any(f is not None for f in files) else None
    return clusters.target(args.scheduler, args.workers, dashboard=args.dashboard,
                           security=security, insecure=args.insecure, **options)


def _data_parser(d: argparse.ArgumentParser, quiet: argparse.ArgumentParser) -> None:
    dsub = d.add_subparsers(dest="data_command", required=True, title="commands",
                            metavar="COMMAND", help="one of:")
    b = dsub.add_parser("build", help="neighbourhood table of every English LSOA, with a "
                        "linkage report", parents=[quiet], formatter_class=HelpFormatter)
    b.add_argument("shared_dir", type=Path, help="shared data folder (iod2019/, la_lookups/, "
                   "ruc2011/)")
    _table_out_args(b)
    b.add_argument("--outcomes", type=Path, help="table of lsoa + count columns to join "
                   "(unprotected in internal/; their LA totals through the disclosure gate "
                   "in release/)")
    b.add_argument("--la-year", type=int, default=None,
                   help="DfE reporting year of the LA geography (default: the latest)")
    b.add_argument("--no-city-merge", action="store_true",
                   help="keep City of London apart from Hackney")


def _table_out_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output folder (an output set; "
                   "was a table file before): internal/neighbourhoods.FORMAT holds the LSOA "
                   "table, unprotected, not for release (fit DIR reads it); release/ the "
                   "counts per LA through the disclosure gate, with disclosure_log.jsonl")
    p.add_argument("--format", choices=("parquet", "csv", "csv.gz"), default="parquet",
                   help="format of internal/neighbourhoods.*")
    p.add_argument("--report", type=Path, help="also copy the read + linkage report here "
                   "(JSON; always in DIR/internal/linkage_report.json; names LSOAs: keep it "
                   "in the secure environment)")
    p.add_argument("--override", metavar="REASON", help="reason logged for the unprotected "
                   "LSOA table in internal/ (default: 'LSOA-level model input in internal/ "
                   "(not for release)'); release/ is always gated")
    _ledger_arg(p)


def _ledger_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ledger", type=Path, metavar="PATH", help="the release ledger: each "
                   "release is checked against the earlier ones recorded there, then recorded "
                   "(keep it in the secure environment; default $SOCIALGRADIENT_LEDGER, else "
                   "~/.local/state/socialgradient/ledger; see docs/disclosure.md)")


def _census_parser(c: argparse.ArgumentParser, quiet: argparse.ArgumentParser) -> None:
    csub = c.add_subparsers(dest="census_command", required=True, title="commands",
                            metavar="COMMAND", help="one of:")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return csub.add_parser(name, help=help, parents=[quiet],
                               formatter_class=HelpFormatter)

    w = command("write", "simulate records and write them as CIN Census XML returns (one "
                "per LA per year, valid against the year's DfE XSD) with child_lsoa.csv, "
                "looked_after.csv, cin_plans.csv, population.parquet and geography.parquet")
    w.add_argument("--out", type=Path, required=True, help="output folder: an output set "
                   "whose internal/ holds every file (record-level inputs, not for release); "
                   "census aggregate DIR reads it")
    w.add_argument("--seed", type=int, default=2021, help="random seed")
    w.add_argument("--scale", type=float, default=1.0, help="LSOAs per LA multiplier")
    w.add_argument("--years", action=ListOption, item=int, default=[2019], metavar="YEAR",
                   help="collection years, repeated or a comma list")
    w.add_argument("--la", action=ListOption, metavar="CODE", help="only these LA codes, "
                   "repeated or a comma list (default: every LA)")

    def common(p):
        p.add_argument("--geography", type=Path, required=True, help="LSOA lookup: lsoa, la, "
                       "income, children, rural (e.g. neighbourhoods.parquet)")
        p.add_argument("--population", type=Path, help="denominators: year, lsoa, la, "
                       "age_band, gender, ethnicity, children (default: the geography's "
                       "children, no strata)")
        _table_out_args(p)
        p.add_argument("--by", action=ListOption, default=[], metavar="COL", help="strata "
                       "(age_band, gender, ethnicity, year), repeated or a comma list "
                       "(default: none)")
        p.add_argument("--errors", choices=("raise", "report"), default="raise",
                       help="a record problem stops the run (raise) or is reported")

    a = command("aggregate", "XML returns -> linked LSOA counts")
    a.add_argument("returns", type=Path, nargs="+", help="XML files or folders of them "
                   "(census write's output folder: its internal/)")
    a.add_argument("--child-lsoa", type=Path, required=True, help="la, child_id (LAchildID), "
                   "lsoa[, year] (CSV or Parquet)")
    a.add_argument("--looked-after", type=Path, help="la, child_id, looked_after_start[, year]")
    a.add_argument("--lea-codes", type=Path, help="DfE table with old_la_code, new_la_code "
                   "(adds to the built-in DfE LA numbers)")
    a.add_argument("--cin-plans", type=Path, help="la, child_id, referral_date, "
                   "cin_plan_start[, cin_plan_end, year]: CIN plans of years whose schema has "
                   "no CINPlanDates (census write's cin_plans.csv)")
    a.add_argument("--schemas", type=Path, help="folder with CIN_schema_<year>.xsd (default: "
                   "$SOCIALGRADIENT_SHARED/cin_census, then the download cache)")
    a.add_argument("--validate", choices=("auto", "yes", "no"), default="auto",
                   help="XSD validation of each return: when a schema is at hand (auto), "
                   "required (yes) or off (no)")
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
            rec = records_model.Records(children=rec.children[keep], episodes=eps,
                                  factors=rec.factors[rec.factors["episode_id"].isin(
                                      eps["episode_id"])], population=rec.population,
                                  geography=rec.geography, truth=rec.truth)
        paths, _ = table_sets.write_records_set(args.out, rec, seed=args.seed)
        print(f"wrote {len(paths)} CIN returns ({len(rec.children)} children) and "
              f"child_lsoa.csv, looked_after.csv, cin_plans.csv, population.parquet, "
              f"geography.parquet to {args.out}/internal/ (an output set: not for release)")
        return 0
    table_sets.check_out(args.out)
    geography = schema.read_table(args.geography)
    population = schema.read_table(args.population) if args.population else None
    if population is None and args.by:
        raise ValueError(f"--by {' '.join(args.by)} needs --population with those strata")
    if args.census_command == "aggregate":
        lea = returns.lea_codes_from_dfe(args.lea_codes) if args.lea_codes else None
        files = [outputs.internal_of(p) for p in args.returns]  # census write's set: internal/
        recs, read = returns.read_returns(files, args.child_lsoa, geography,
                                             population, looked_after=args.looked_after,
                                             lea_codes=lea, errors=args.errors,
                                             cin_plans=args.cin_plans, schema_dir=args.schemas,
                                             validate={"auto": None, "yes": True,
                                                       "no": False}[args.validate])
    else:
        recs, read = extracts.read_extract(args.extract, args.mapping, geography, population,
                                           errors=args.errors)
    table, report = linkage.aggregate(recs, by=args.by)
    counts = [c for c in table.columns if c in linkage.THRESHOLD_COLUMNS]
    stratum = args.by[0] if len(args.by) == 1 else None
    if len(args.by) <= 1:
        schema.validate(table, counts, stratum)
    keys = ["lsoa", *args.by]
    attributes = {"la", "income", "rural", "children", *keys}
    summary = {"read": read.to_dict(), "linkage": report.to_dict(),
               "note": "LSOA counts unprotected in internal/ (not for release); counts per "
               "LA through the disclosure gate in release/ (disclosure_log.jsonl)"}
    paths = table_sets.write_table_set(
        args.out, table, counts=[c for c in table.columns if c not in attributes],
        strata=args.by, report=summary, command=f"census {args.census_command}",
        fmt=args.format, override=args.override, ledger=args.ledger)
    _copy_report(paths["report"], args.report)
    print(f"read {read.episodes} episodes of {read.children} children in {len(read.files)} "
          f"file(s): {read.passed} passed, excluded {sum(read.excluded.values())} "
          f"{ {k: v for k, v in read.excluded.items() if v} }; linked {report.linked}, "
          f"unlinked {sum(report.unlinked.values())} "
          f"{ {k: v for k, v in report.unlinked.items() if v} }")
    if read.validation or read.file_errors:
        done = sum(v.startswith("validated") for v in read.validation.values())
        why = sorted({v for v in read.validation.values() if not v.startswith("validated")})
        cats = read.schema_errors["category"].value_counts().to_dict()
        print(f"schema: {done} of {len(read.validation)} file(s) validated, "
              f"{len(read.schema_errors)} error(s) {cats}; files not read: "
              f"{len(read.file_errors)}" + (f"; {why[0]}" if why else ""))
    print(f"wrote {args.out}/: internal/{paths['table'].name} ({len(table)} rows; not for "
          f"release), release/ (counts per LA, gated), MANIFEST.json"
          + (f"; and {args.report}" if args.report else ""))
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
            args.shared_dir, outcome_table=args.outcomes,
            la_year=args.la_year or sources.LATEST_YEAR, merges=merges)
    outcomes = report.get("outcome", {}).get("outcomes", []) if args.outcomes else []
    paths = table_sets.write_table_set(args.out, table, counts=list(outcomes), report=report,
                                       command="data build", fmt=args.format,
                                       override=args.override, ledger=args.ledger)
    _copy_report(paths["report"], args.report)
    print(build.summary(report))
    print(f"wrote {args.out}/: internal/{paths['table'].name} (not for release), release/"
          + (" (outcome counts per LA, gated)" if outcomes else "") + ", MANIFEST.json"
          + (f"; and {args.report}" if args.report else ""))
    return 0


def _report(args) -> int:
    from socialgradient import api
    from socialgradient.release import disclosure, report
    from socialgradient.sampling import fit

    source, manifest = report.locate_fit(args.fit)
    rule = disclosure.Rule(threshold=args.threshold, round_to=args.round_to,
                           reason=args.override)
    rule.check()
    from socialgradient.util import outputs

    outputs.check_destination(args.out)
    tree = fit.load(source, pointwise=False)  # a report needs no LOO
    extra = {}
    if manifest is not None:  # keys a command added (the LOO comparison of run) carry over
        old = json.loads((source.parent.parent / "release" / "summary.json")
                         .read_text(encoding="utf-8"))
        extra = {k: old[k] for k in ("loo",) if k in old}
    paths = api.write(tree, args.out, extra=extra, rule=rule, posterior=source,
                      command="report", ledger=args.ledger)
    print(_headline(json.loads(paths["summary"].read_text(encoding="utf-8"))))
    print(f"wrote {args.out}/: release/ (safe to publish), internal/ (not for release), "
          f"MANIFEST.json")
    return 0


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


def _headline(s: dict) -> str:
    from socialgradient.release import joint as joint_release
    from socialgradient.release import report

    return joint_release.headline(s) if "thresholds" in s else report.headline(s)


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
        rival = api.fit(table, spec.replace(family=other), progressbar=progress,
                        pointwise=False)
        with step(log, "LOO comparison"):
            loo = checks.loo_compare({spec.family: tree, other: rival})
        extra["loo"] = json.loads(loo.to_json(orient="index"))
        print(loo.to_string())
    paths = api.write(tree, out, extra=extra, command="run" if compare else "fit")
    s = json.loads(paths["summary"].read_text(encoding="utf-8"))
    print(_headline(s))
    print(f"wrote {out}/: release/ (safe to publish), internal/ (not for release), "
          f"MANIFEST.json")
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


def _verify(args) -> int:
    """``verify DIR``: :func:`socialgradient.util.outputs.check`, nothing recovered or changed."""
    from socialgradient.util import outputs

    manifest, problems = outputs.check(args.dir)
    if problems:
        print(f"{args.dir}: not a whole, clean output set ({len(problems)} problem(s)):",
              file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(outputs.summary(args.dir, manifest))
    return 0


def _dispatch(args) -> int:
    from socialgradient.data import schema
    from socialgradient.data.synthetic import england
    from socialgradient.util import outputs

    outputs.check_args(args)  # no output on or in an input, none in a release/ or internal/
    if args.command == "verify":
        return _verify(args)
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
                rec = records.simulate_records(seed=args.seed, years=args.years or (2019,),
                                               scale=args.scale, geography=geography)
            paths = linkage.write(rec, args.out)
            print(f"wrote {args.out}: {len(rec.children)} children, {len(rec.episodes)} "
                  f"episodes in {rec.truth['n_lsoa']} LSOAs ({', '.join(sorted(paths))})")
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
        truth = json.loads(truth_file.read_text(encoding="utf-8")) if truth_file.exists() \
            else None
        items = suite.run(args.models, table, args.out, progressbar=progress, truth=truth,
                          scheduler=cluster, workers=args.workers, draws=args.draws,
                          tune=args.tune, chains=args.chains, seed=args.seed,
                          sampler=args.sampler)
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
            stratum=args.stratum, strata=tuple(args.strata) if args.strata else None,
            stratum_trend=args.stratum_trend, exposure=args.exposure, trials=args.trials,
            neighbourhood_moderators=args.neighbourhood_moderators,
            la_data=str(Path(args.la_data).resolve()) if args.la_data else None,
            la_moderators=args.la_moderators, la_effects=args.la_effects,
            target_accept=args.target_accept, priors=_priors(args.prior or []) or None,
        )
        result = _fit_and_write(schema.read_table(args.data), spec, args.out, progress,
                                compare=False)
        if result["summary"]["diagnostics"]["verdict"] == "FAIL" and not args.allow_fail:
            print("socialgradient fit: the diagnostics verdict is FAIL (outputs written; "
                  "--allow-fail exits 0)", file=sys.stderr)
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
    log.info("%s: %d LSOAs in %d LAs; %s", args.data, len(table), table["la"].nunique(),
             spec.to_json())
    start = time.perf_counter()
    result = _fit_and_write(table, spec, args.out, progress, compare=True)
    args.figures.mkdir(parents=True, exist_ok=True)
    for path in result["paths"].values():
        if path.suffix == ".png":
            (args.figures / path.name).write_bytes(path.read_bytes())
    print(f"main job: {time.perf_counter() - start:.0f} s; figures in {args.figures}/")
    return 0 if result["summary"]["diagnostics"]["verdict"] != "FAIL" else 1


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
    done = calibrate.run(args.out, args.replicates, args.model, scale=args.scale,
                         draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed,
                         scheduler=cluster, workers=args.workers)
    print(calibrate.headline(done["aggregate"], args.model))
    print(f"wrote {args.out / 'calibration.json'}, {args.out / 'calibration.md'}")
    return 1 if done["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
