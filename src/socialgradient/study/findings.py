"""The study's findings, each tied to one spec's output and to the truth it should recover.

``socialgradient suite`` fits every spec in ``models/`` and then :func:`table` reads, for each
:class:`~socialgradient.study.catalogue.Finding` of the catalogue
(:data:`~socialgradient.study.catalogue.FINDINGS`, with the truths of
:mod:`socialgradient.study.truths`), one quantity of that spec's ``release/summary.json``
(its median and 95% equal-tailed interval; a probability has no interval), the figure the
study published (blank if none), and the true value of the synthetic data it was fitted to:
``truth.json`` for the default neighbourhood table, the records' truth for a spec fitted to
the synthetic child records (``[records]``). ``covered`` says whether the truth lies in the
95% interval. :func:`~socialgradient.study.findings_report.write` writes ``findings.csv`` and
``findings.md``; :func:`~socialgradient.study.findings_report.readme_table` is the short table
in the README (both re-exported here).

The claims of :data:`~socialgradient.study.claims.CLAIMS` (rankings as P(steepest) and
P(flattest), the LA range as the 5th and 95th percentiles of the LA gradients, "no
difference" as the posterior mass in a region of practical equivalence) read ``claims``,
which the suite computes from each spec's posterior draws
(:func:`socialgradient.study.claims.attach`) and adds to its summary; a probability fills the
``median`` column, with no interval.

Quantities are dotted paths into ``summary.json``: ``gradient_mean_la``,
``thresholds.cp_plans.gradient_mean_la``, ``stratum_contrast.White/Black``. Where the study's
figure and the synthetic truth differ by design (the 2.33 / 1.39 pair: ``data/README.md``),
the row says so in ``note``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

# The catalogue, the truths and the written table were parts of this module (issue 28): their
# names stay importable from here.
from socialgradient.study import catalogue
from socialgradient.study.catalogue import Finding
from socialgradient.study.claims import CLAIMS
from socialgradient.study.findings_report import (  # noqa: F401
    BEGIN,
    END,
    additive,
    figure,
    markdown,
    readme_table,
    update_readme,
    write,
)
from socialgradient.study.truths import _la_outcome  # noqa: F401

log = logging.getLogger(__name__)

_THEMES = list(dict.fromkeys(f.theme for f in catalogue.FINDINGS + CLAIMS))
#: every row of the findings table: the catalogue's findings with the claims as
#: probabilities (:mod:`socialgradient.study.claims`) at the end of their theme's rows
FINDINGS: tuple[Finding, ...] = tuple(
    sorted(catalogue.FINDINGS + CLAIMS, key=lambda f: _THEMES.index(f.theme))
)

COLUMNS = (
    "theme",
    "finding",
    "quantity",
    "published",
    "median",
    "lo95",
    "hi95",
    "probability",
    "truth",
    "covered",
    "verdict",
    "spec",
    "note",
)


def _get(summary: dict, path: str):
    """Return the value at dotted ``path`` of a summary.

    The value at dotted ``path``; a ratio ``A/B`` stored only as ``B/A`` is inverted
    (median and interval ends, and ``p_steeper`` -> 1 - ``p_steeper``).
    """
    *parents, last = path.split(".")
    value = summary
    for part in parents:
        value = value[part]
    if last in value or "/" not in last:
        return value[last]
    a, b = last.split("/")
    other = value[f"{b}/{a}"]
    out = {"median": 1 / other["median"], "ci95": [1 / other["ci95"][1], 1 / other["ci95"][0]]}
    if "p_steeper" in other:
        out["p_steeper"] = 1 - other["p_steeper"]
    return out


def table(
    summaries: dict[str, dict], truths: dict[str, dict | None], findings=FINDINGS
) -> pd.DataFrame:
    """Return the findings table: one row per finding (:data:`COLUMNS`).

    One row per finding (:data:`COLUMNS`); ``summaries``/``truths`` by spec name (a spec
    not fitted gives a row with blank numbers and verdict ``not fitted``).
    """
    rows = []
    for f in findings:
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row |= {
            "theme": f.theme,
            "finding": f.finding,
            "quantity": f.quantity,
            "published": f.published,
            "spec": f.spec,
            "note": f.note,
        }
        s = summaries.get(f.spec)
        if s is None:
            rows.append(row | {"verdict": "not fitted"})
            continue
        value = _get(s, f.quantity)
        if isinstance(value, dict):
            row |= {
                "median": value["median"],
                "lo95": value["ci95"][0],
                "hi95": value["ci95"][1],
                "probability": value.get(f.probability)
                if f.probability
                else value.get("p_steeper", value.get("p_positive")),
            }
        else:
            row["median"] = float(value)
        truth = truths.get(f.spec)
        if f.truth is not None and truth is not None:
            row["truth"] = float(f.truth(truth))
            if row["lo95"] is not None:
                row["covered"] = bool(row["lo95"] <= row["truth"] <= row["hi95"])
        row["verdict"] = s["diagnostics"]["verdict"]
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


if __name__ == "__main__":  # python -m socialgradient.study.findings FINDINGS_CSV README
    import sys

    from socialgradient.util import progress

    progress.configure()
    changed = update_readme(Path(sys.argv[2]), Path(sys.argv[1]))
    log.info("%s: %s", sys.argv[2], "updated" if changed else "already up to date")
