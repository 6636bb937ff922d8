"""Rates by deprivation band within each LA: ``release/la_bands.csv``, through the fit's gate.

The bands are **quintiles of neighbourhood income deprivation across England**: pairs of the
fit's deprivation deciles (:func:`socialgradient.results.checks.deprivation_decile`, over the
fitted LSOAs; quintile 1 = deciles 1-2, the least deprived fifth, quintile 5 the most
deprived), so that each band nests in the deciles whose totals ``ppc.json`` publishes.

Each LA x band count is one more partition of the fit's units (:data:`PARTITION`), protected
by :func:`socialgradient.release.fit_tables.gate` *together with* the LA, decile and national
totals it sums to (:func:`socialgradient.release.partitions.protect_partitions`, and the
ledger's earlier releases): cells below the threshold are hidden, then complementary cells
(of any of the four partitions) until no hidden cell, single LSOA or small group of LSOAs can
be narrowed below the protection level by differencing the published margins; visible
counts are perturbed and rounded as the LA totals are. ``children`` and the rate's
denominator are perturbed as the LA table's are (:func:`socialgradient.release.masking._masked`).
:func:`release_la_bands` builds the table, :func:`band_table` the LA page's view of it.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import xarray as xr

from socialgradient.release.masking import _masked, group
from socialgradient.release.pages import esc, num, table
from socialgradient.release.readers import for_readers
from socialgradient.results import gradients

#: the name of the LA x band partition in the gate (and in the ledger's publications)
PARTITION = "la_band"
#: the bands' names, quintile 1 (least deprived) to 5 (most deprived)
BANDS = {
    1: "1 (least deprived fifth)",
    2: "2",
    3: "3",
    4: "4",
    5: "5 (most deprived fifth)",
}
FILE = "la_bands.csv"


def band_of(decile) -> np.ndarray:
    """Return the quintile (1-5) of each deprivation decile (1-10): deciles paired."""
    return (np.asarray(decile, dtype=int) + 1) // 2


def cells(la, decile) -> np.ndarray:
    """Return each unit's LA x band label, ``"<LA code> q<band>"``."""
    return np.char.add(np.char.add(np.asarray(la, dtype=str), " q"), band_of(decile).astype(str))


def release_la_bands(tree: xr.DataTree, parts, decile: np.ndarray, keys=None) -> pd.DataFrame:
    """Return the table of ``la_bands.csv``: one row per LA and band with fitted LSOAs.

    Parameters
    ----------
    tree : xarray.DataTree
        The fit.
    parts : socialgradient.release.disclosure.Partitioned
        The gate's result (:func:`socialgradient.release.fit_tables.gate`), holding the
        :data:`PARTITION` totals.
    decile : ndarray of int
        Each unit's deprivation decile, as the gate returned it.
    keys : socialgradient.release.perturbation.CellKeys, optional
        The perturbation's keys: ``children`` and the exposure are then perturbed as the LA
        table's are.

    Returns
    -------
    pandas.DataFrame
        ``la``, ``la_name``, ``band`` (1-5), ``band_name``, ``children``, ``cases`` (the
        gate's published count; missing where hidden) and ``rate_per_10k`` (from the published
        count over the, perturbed, exposure; missing where the count is hidden), in the fit's
        LA order, rates to 3 significant digits.
    """
    const = group(tree, "constant_data")
    labels = np.asarray(parts.groups[PARTITION], dtype=str)
    where = {lab: i for i, lab in enumerate(labels)}
    unit_cells = cells(const["lsoa_la"].values, decile)
    codes = np.array([where[c] for c in unit_cells.tolist()])
    n = len(labels)
    if keys is not None:
        masked = _masked(tree, keys, codes, n)
        children, exposure = np.round(masked["children"]), np.round(masked["exposure"])
    else:
        children = np.bincount(codes, weights=const["children"].values, minlength=n)
        exposure = np.bincount(codes, weights=gradients.exposure(const).values, minlength=n)
    shown = np.asarray(parts.shown[PARTITION], dtype=float)
    la, band = zip(*(lab.rsplit(" q", 1) for lab in labels.tolist()), strict=True)
    frame = pd.DataFrame(
        {
            "la": np.asarray(la, dtype=str),
            "band": np.asarray(band, dtype=int),
            "children": np.round(children).astype(int),
            "cases": pd.array(np.where(np.isnan(shown), pd.NA, shown), dtype="Int64"),
            "rate_per_10k": gradients.PER * shown / np.where(exposure > 0, exposure, np.nan),
        }
    )
    frame.insert(2, "band_name", frame["band"].map(BANDS))
    order = {str(c): i for i, c in enumerate(const["la"].values)}
    frame = frame.sort_values(["la", "band"], key=lambda s: s.map(order) if s.name == "la" else s)
    return for_readers(frame.reset_index(drop=True), tree)


#: the id of the LA page's band table (the release scan reads its counts there)
TABLE_ID = "la-bands"
_ROW = re.compile(
    rb'<tr><th scope="row">[^<]*</th><td class="num">[^<]*</td><td class="num">(.*?)</td>'
)


def section(bands: pd.DataFrame | None, code: str, name: str, outcome: str, rule: dict) -> str:
    """Return the LA page's section of rates by deprivation band (HTML).

    Parameters
    ----------
    bands : pandas.DataFrame or None
        ``la_bands.csv`` as read (None: the release has none, and the section says so).
    code, name : str
        The LA's code and name.
    outcome : str
        What is counted (the fit's outcome), for the caption.
    rule : dict
        The release's disclosure rule, as its log records it (``threshold``, ``perturb``,
        ``round_to``), for the note on hidden cells.

    Returns
    -------
    str
        A heading, a table with column and row headers (hidden counts and their rates shown
        as ``c``) and a note on what ``c`` means.
    """
    head = "<h2>Rates by neighbourhood deprivation</h2>"
    if bands is None:
        return head + (
            "<p>Rates by deprivation band within an LA are not in this release (its "
            "<code>release/</code> has no <code>la_bands.csv</code>). The national rates by "
            'deprivation decile are in the <a href="../methods.html#ppc">model checks</a>.</p>'
        )
    mine = bands[bands["la"].astype(str) == code]
    groups = list(mine.groupby("threshold", sort=False)) if "threshold" in mine else [("", mine)]
    hidden = 0
    out = [
        head,
        f"<p>Neighbourhoods (LSOAs) of {esc(name)} in each fifth of England's neighbourhoods "
        "ranked by income deprivation (quintile 1: the least deprived fifth), with the "
        "children living there and their count and rate. Bands with no neighbourhood of "
        f"{esc(name)} in the fit are not listed.</p>",
    ]
    for which, rows in groups:
        cells = []
        for r in rows.sort_values("band").itertuples():
            hidden += int(pd.isna(r.cases))
            cells.append(
                [
                    (esc(BANDS.get(int(r.band), str(r.band))), None),
                    (num(r.children, 0), None),
                    (_count(r.cases, 0), None),
                    (_count(r.rate_per_10k, 1), None),
                ]
            )
        suffix = f", {which}" if which else ""
        out.append(
            table(
                f"Children and {outcome} in {name} by deprivation quintile "
                f"(disclosure-protected){suffix}",
                [
                    ("Deprivation quintile", "text"),
                    ("Children", "number"),
                    ("Cases (protected count)", "number"),
                    ("Rate per 10,000 children", "number"),
                ],
                cells,
                table_id=f"{TABLE_ID}{'-' + esc(which) if which else ''}",
            )
        )
    threshold = rule.get("threshold")
    limit = f"fewer than {int(threshold)}" if threshold else "small"
    done = [
        w for w, on in (("perturbed", rule.get("perturb")), ("rounded", rule.get("round_to"))) if on
    ]
    shown = (
        f"Shown counts are {' and '.join(done)}; children are perturbed (noise on the scale "
        "of twice the band's largest neighbourhood), so the rates of bands with few "
        "neighbourhoods are approximate. "
        if done
        else ""
    )
    if not rule.get("perturb"):
        shown = shown.split(";")[0] + ". " if done else ""
    out.append(
        f'<p class="secondary">c: hidden by the disclosure gate ({hidden} in this table) '
        f"because the count is {limit}, or so that such a count cannot be worked out from "
        "this LA's total, the national totals by decile and the other cells; its rate is "
        f"hidden with it. {shown}The cells of all LAs are protected together with the LA "
        "and national totals.</p>"
    )
    return "\n".join(out)


def _count(value, dp: int) -> str:
    if value is None or pd.isna(value):
        return '<abbr title="hidden by the disclosure gate">c</abbr>'
    return num(value, dp)


def page_counts(html: bytes) -> list[bytes]:
    """Return the counts an LA page shows in its band tables (for the release scan)."""
    out = []
    for block in re.findall(rb'<table id="' + TABLE_ID.encode() + rb".*?</table>", html, re.S):
        out += [v for v in _ROW.findall(block) if not v.startswith(b"<abbr")]
    return out
