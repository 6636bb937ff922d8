"""The published findings of a ``suite`` folder: one page with every finding and its figures.

A suite folder (``socialgradient suite --out DIR``) holds ``findings.csv`` and one output set
per spec (``DIR/<spec>/``). :func:`build` checks that every spec a finding comes from has a
verified output set there (:func:`socialgradient.util.outputs.verify`), then writes
``index.html``: per theme, a table of each finding with the study's figure, ours (posterior
median, 95% interval, probability where the finding is one), the truth of the synthetic data
and whether the interval covers it, and the theme's forest plot as SVG
(:func:`socialgradient.results.plot_checks.findings_figure`). Findings are model summaries:
no count is published.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from socialgradient.release import pages
from socialgradient.release.pages import esc, num
from socialgradient.util import outputs

NEEDED = ("theme", "finding", "quantity", "published", "median", "lo95", "hi95", "truth", "spec")


class FindingsError(ValueError):
    """A suite folder that cannot be published (a message)."""


def is_suite(folder: Path) -> bool:
    """Whether ``folder`` is a suite's folder (``findings.csv``, not itself an output set)."""
    return (folder / "findings.csv").is_file() and not (folder / outputs.MANIFEST).exists()


def read(folder: Path) -> pd.DataFrame:
    """Read ``findings.csv`` after verifying the output set of every spec it names."""
    with open(folder / "findings.csv", encoding="utf-8", newline="") as f:
        findings = pd.read_csv(f)
    missing = [c for c in NEEDED if c not in findings.columns]
    if missing:
        raise FindingsError(f"{folder}/findings.csv: no column {', '.join(missing)}")
    for spec in sorted(findings["spec"].dropna().astype(str).unique()):
        if not (folder / spec).is_dir():
            raise FindingsError(
                f"{folder}: no output set {spec}/ for the findings of spec {spec}: publish a "
                "suite folder as `suite` wrote it"
            )
        outputs.verify(folder / spec)  # OutputSetError naming every problem
    return findings


def _row(r) -> list[tuple[str, str | None]]:
    prob = r.get("probability")
    covered = r.get("covered")
    cover = "&ndash;" if pd.isna(covered) else ("yes" if str(covered) == "True" else "no")
    return [
        (esc(r["finding"]), None),
        (num(r["published"]) if pd.notna(r["published"]) else "&ndash;", None),
        (num(r["median"]), None),
        (pages.interval(r["lo95"], r["hi95"]) if pd.notna(r["lo95"]) else "&ndash;", None),
        (num(prob) if pd.notna(prob) else "&ndash;", None),
        (num(r["truth"]) if pd.notna(r["truth"]) else "&ndash;", None),
        (cover, None),
    ]


def build(findings: pd.DataFrame, root: Path) -> int:
    """Write the findings page and its figures into ``root``; the number of figures."""
    from socialgradient.results.plot_checks import findings_figure

    (root / "figures").mkdir(exist_ok=True)
    body = [
        "<h1>Findings of the study, reproduced</h1>",
        '<p class="lede">Each finding of the study beside ours: posterior median and 95% '
        "credible interval, and, on synthetic data, the truth the data were made with.</p>",
    ]
    figures = 0
    headers = [
        ("Finding", "text"),
        ("Study", "number"),
        ("Ours (median)", "number"),
        ("95% interval", "number"),
        ("Probability", "number"),
        ("Truth", "number"),
        ("Interval covers the truth", "text"),
    ]
    for theme, part in findings.groupby("theme", sort=False):
        body.append(f"<h2>{esc(str(theme).replace('_', ' ').capitalize())}</h2>")
        body.append(
            pages.table(f"Findings: {theme}", headers, [_row(r) for _, r in part.iterrows()])
        )
        if part["lo95"].notna().any():
            fig = findings_figure(findings, str(theme))
            name = f"findings_{theme}.svg"
            import matplotlib

            with matplotlib.rc_context({"svg.hashsalt": "socialgradient", "svg.fonttype": "path"}):
                fig.savefig(root / "figures" / name, format="svg", metadata={"Date": None})
            fig.clear()
            shown = part[part["lo95"].notna()]
            covered = int((shown["covered"].astype(str) == "True").sum())
            alt = (
                f"Forest plot of {len(shown)} findings on {theme}: our medians and 95% intervals "
                f"beside the study's figures and the truth; {covered} of {len(shown)} intervals "
                "cover the truth."
            )
            body.append(pages.figure(f"figures/{name}", alt, f"Findings: {theme}."))
            figures += 1
    nav = (("index.html", "Findings"),)
    page = pages.page("Findings", "\n".join(body), 0, "The study's findings, reproduced", nav)
    with open(root / "index.html", "w", encoding="utf-8", newline="\n") as f:
        f.write(page)
    return figures
