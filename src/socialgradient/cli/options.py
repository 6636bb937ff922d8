"""The command line's building blocks: the help formatter, list options and shared options.

Each command takes only the groups of options it uses (:func:`_options` makes a parent parser
of them); the Dask options of ``suite`` and ``calibrate``, the table outputs of ``data build``
and ``census aggregate|extract`` and the release ledger are here too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from socialgradient.spec import FAMILIES, SAMPLERS


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Show descriptions as written and every option's default in its help.

    Descriptions as written (lists, examples), and every option's default appended to
    its help ("(default: X)") where it has one: not None, False or an empty list.
    """

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
    """Take a list option one word at a time, repeated or as a comma list.

    A list option that repeats (``--strata a --strata b``) or takes a comma list
    (``--strata a,b``), one word at a time, so it never takes a positional argument after
    it as one of its items (as ``nargs="+"`` does). ``item`` converts each item (e.g.
    ``int``); a default list is replaced, not extended, by the first value given.
    """

    def __init__(self, option_strings, dest, item=str, **kwargs):
        self.item = item
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        """Add the items of one occurrence of the option (a word, or a comma list)."""
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
    """Add the Dask options of suite and calibrate (:mod:`socialgradient.study.clusters`)."""
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


def _options(*adders, title: str | None = None) -> argparse.ArgumentParser:
    """Return a parent parser of shared options (``parents=``).

    A parent parser of shared options (``parents=``): each command takes only the groups
    of options it uses. With a ``title`` they are shown in their own section of the help.
    """
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
    p.add_argument(
        "--tune",
        type=int,
        help="tuning draws per chain (default: the spec's; chosen from the data if it has none)",
    )
    p.add_argument("--chains", type=int, help="chains (default: the spec's)")
    p.add_argument("--seed", type=int, help="random seed (default: the spec's)")
    p.add_argument("--sampler", choices=SAMPLERS, help="NUTS sampler (default: the spec's)")


def _target(p: argparse.ArgumentParser, default: str) -> None:
    """Add fit's and run's options of sampling to a target (socialgradient.sampling.target)."""
    g = p.add_argument_group("sampling to a target (spec [sampling] stop, rhat, ess, max_draws)")
    g.add_argument(
        "--stop",
        choices=("target", "draws"),
        help=f"target: sample in blocks until R-hat and ESS are met; draws: fixed draws "
        f"(default: {default}; --draws N alone means fixed draws)",
    )
    g.add_argument("--rhat", type=float, help="target: largest R-hat (default 1.01)")
    g.add_argument("--ess", type=float, help="target: smallest bulk and tail ESS (default 400)")
    g.add_argument("--max-draws", type=int, help="target: draw budget per chain (default 4000)")
    g.add_argument(
        "--max-seconds", type=float, help="target: time budget (default none; not reproducible)"
    )


def _progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="hide the sampler's progress bar")
