"""The ``socialgradient`` command's argument parser: every command and its options.

The parser follows the usual conventions: every option has help and shows its default;
``-q`` goes before or after the command; list options repeat (``--strata a --strata b``)
or take a comma list (``--strata a,b``), never several words, so a positional argument
after them stays one; each command offers only the options it uses.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from socialgradient import __version__, resources
from socialgradient.cli.inputs import _census_parser, _data_parser
from socialgradient.cli.options import (
    HelpFormatter,
    ListOption,
    _cluster_args,
    _family,
    _ledger_arg,
    _options,
    _progress,
    _quiet,
    _sampling,
    _target,
)
from socialgradient.spec import CURVES, LA_EFFECTS

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
  socialgradient run --compare                         ... and a LOO comparison with Poisson
  socialgradient simulate --out synth --scale 0.2      a synthetic England with known truth
  socialgradient fit synth/neighbourhoods.parquet --outcome referrals --out out/referrals
  socialgradient fit TABLE --outcome referrals --strata age_band --strata gender --out DIR
  socialgradient -q suite --out out/suite --draws 500  every spec of models/, quietly

Each command has its own help: socialgradient COMMAND --help. Progress lines go to
stderr (-q keeps warnings and errors only), results to stdout; exit status 0 on success,
1 when the diagnostics verdict is FAIL, 2 on an error in the input."""


def parser() -> argparse.ArgumentParser:
    """Return the argument parser (exposed for documentation and tests)."""
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
        "the main job: the national referrals model on the embedded data, sampled to the target",
        (quiet, spec_run),
    )
    _target(r, "target, whatever the spec's draws")
    r.add_argument(
        "--compare",
        action="store_true",
        help="also fit the Poisson model (a second compilation and sampling) for a LOO comparison",
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
        "--curvature",
        type=float,
        default=0.0,
        help="a curved deprivation effect: log rates gain K/2 w^2 (data/README.md; default 0)",
    )
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
        "--spatial-sd",
        type=float,
        help="redraw the counts around a BYM2 field of this SD (log-rate units) on the "
        "shipped real-adjacency graph (full size only; data/README.md)",
    )
    sim.add_argument(
        "--spatial-rho", type=float, default=0.8, help="the field's spatial share (default 0.8)"
    )
    sim.add_argument(
        "--records",
        action="store_true",
        help="also write CIN-Census-shaped child-level tables and the LSOA x age-band aggregate",
    )

    f = command("fit", "fit the national model to a neighbourhood table", (quiet, spec_run))
    _target(f, "the spec's stop, or target without --spec")
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
        "--curve",
        choices=CURVES,
        help="deprivation curve in w (default: the spec's, log-linear; spline: a penalised spline)",
    )
    f.add_argument(
        "--target-accept", type=float, help="NUTS target acceptance (default: the spec's, 0.8)"
    )
    f.add_argument(
        "--spatial",
        choices=["bym2"],
        help="a BYM2 LSOA effect on the --neighbours graph (default: the spec's, none)",
    )
    f.add_argument(
        "--neighbours",
        help="lsoa,neighbour CSV, or the shipped graph lsoa11 or synthetic (default with "
        "--spatial: the shipped graph of the table's codes); alone: the residual Moran's I "
        "check only",
    )
    f.add_argument(
        "--prior",
        action="append",
        metavar="NAME=SCALE",
        help="a prior scale or mean (or fixed=student_t), as in the spec's [priors] table "
        "(repeatable)",
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

    cp = command(
        "compare",
        "compare two fits of the same rows by PSIS-LOO: elpd_diff, its se and the Pareto-k "
        "counts at ArviZ's sample-size threshold (refuses fits of different rows)",
    )
    cp.add_argument("a", type=Path, help="an output folder (or posterior.nc) of the first fit")
    cp.add_argument("b", type=Path, help="an output folder (or posterior.nc) of the second fit")
    cp.add_argument("--json", type=Path, help="also write the comparison here as JSON")
    cp.add_argument(
        "--names",
        action=ListOption,
        default=["A", "B"],
        help="labels of the two fits, a comma list",
    )

    vf = command(
        "verify",
        "check an output set, read-only: every file listed in its "
        "manifest with its SHA-256, none unlisted, no link or special file, no "
        "pending commit; exit 0 with a summary, else 1 naming each problem",
    )
    vf.add_argument("dir", type=Path, help="the output folder (MANIFEST.json, release/, internal/)")

    wm = command(
        "warm",
        "compile, without sampling, the default specs' models on the embedded data into the "
        "caches a fit reads (make's install step runs it): the first run and fit start warm",
    )
    wm.add_argument("--data", type=Path, default=DEFAULT_DATA, help="neighbourhood table")
    wm.add_argument(
        "--spec",
        action=ListOption,
        item=Path,
        metavar="TOML",
        help="specs to warm, repeated or a comma list (default: run's spec and fit's without "
        "--spec)",
    )
    wm.add_argument(
        "--outcome",
        action=ListOption,
        metavar="COL",
        help="also warm fit's default spec of these outcomes (repeated or a comma list)",
    )

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
