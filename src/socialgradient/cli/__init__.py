"""The ``socialgradient`` command: :func:`main` and the dispatch of each command.

The parser is :mod:`socialgradient.cli.parsing` (its shared options
:mod:`socialgradient.cli.options`); the input commands ``data`` and ``census`` are
:mod:`socialgradient.cli.inputs`, the others :mod:`socialgradient.cli.commands`.

* ``simulate --out DIR [--seed N] [--scale F] [--curvature K]``: write a synthetic England
  (Parquet + truth); ``--curvature``: a curved deprivation effect; ``--spatial-sd SD
  [--spatial-rho R]`` adds a BYM2 field on the shipped real adjacency.
* ``fit DATA --outcome COL --out DIR [--family ...] [--draws N] ...``: fit the national
  model to a neighbourhood table and write every output (:mod:`socialgradient.release.report`);
  ``--spatial bym2 [--neighbours FILE]`` adds the BYM2 LSOA effect.
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
* ``compare A B [--json FILE]``: PSIS-LOO comparison of two fits of the same rows
  (:mod:`socialgradient.results.compare`): ``elpd_diff``, its se, the Pareto-k counts.
* ``warm [--data TABLE] [--spec TOML] [--outcome COL]``: compile the default specs' models
  into the caches a fit reads, without sampling (make's install step;
  :mod:`socialgradient.cli.warm`).
* ``run``: the main job. Fits the national negative-binomial model of referrals on the
  embedded default data, sampled to the target (``--draws N``: fixed draws; ``--compare``:
  the Poisson model too, for a LOO comparison), and prints the headline table and verdict.

The parser follows the usual conventions: every option has help and shows its default;
``-q`` goes before or after the command; list options repeat (``--strata a --strata b``)
or take a comma list (``--strata a,b``), never several words, so a positional argument
after them stays one; each command offers only the options it uses.
"""

from __future__ import annotations

import logging
import sys

# Every name of the former cli.py and _subcommands.py stays importable from here (issue 28).
from socialgradient.cli.commands import (  # noqa: F401
    _calibrate,
    _cluster,
    _compare,
    _fit,
    _fit_and_write,
    _headline,
    _priors,
    _report,
    _run,
    _simulate,
    _spec,
    _suite,
    _verify,
)
from socialgradient.cli.inputs import (  # noqa: F401
    _census,
    _census_parser,
    _copy_report,
    _data,
    _data_parser,
)
from socialgradient.cli.options import (  # noqa: F401
    HelpFormatter,
    ListOption,
    _cluster_args,
    _family,
    _ledger_arg,
    _options,
    _progress,
    _quiet,
    _sampling,
    _table_out_args,
)
from socialgradient.cli.parsing import (  # noqa: F401
    DEFAULT_DATA,
    DEFAULT_SPEC,
    DESCRIPTION,
    EPILOG,
    parser,
)
from socialgradient.util.progress import configure as configure_logging

log = logging.getLogger(__name__)


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
    if args.command == "compare":
        return _compare(args)
    if args.command == "data":
        return _data(args)
    if args.command == "census":
        return _census(args)
    if args.command == "panel":
        from socialgradient.panel.model import panel_command

        return panel_command(args)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "warm":
        from socialgradient.cli.warm import _warm

        return _warm(args)
    progress = not getattr(args, "no_progress", False)
    if args.command == "report":
        return _report(args)
    if args.command == "suite":
        return _suite(args, progress)
    if args.command == "calibrate":
        return _calibrate(args)
    if args.command == "fit":
        return _fit(args, progress)
    return _run(args, progress)  # the main job
