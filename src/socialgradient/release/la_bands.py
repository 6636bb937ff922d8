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

import numpy as np
import pandas as pd
import xarray as xr

from socialgradient.release.masking import _masked, group
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


def band_rows(bands: pd.DataFrame, code: str) -> list[dict]:
    """Return one LA's rows of ``la_bands.csv`` as records (band order), for its page."""
    mine = bands[bands["la"].astype(str) == code].sort_values("band")
    return mine.to_dict(orient="records")
