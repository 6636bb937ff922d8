"""A choropleth of the LA gradient scores on ONS boundaries, drawn with matplotlib alone.

The boundaries are the ONS *Counties and Unitary Authorities (December 2020) UK BUC*
(lon/lat; Open Government Licence v3.0): the package ships England's 151 authorities of it
(``data/la_boundaries.geojson.gz``, coordinates to 4 decimals, made by
``bench/la_boundaries.py``; provenance in ``data/la_boundaries.md``), and a user may point to
the full GeoJSON instead (:func:`find_boundaries`). Its English CTYUA20 codes are the
package's LA codes (UTLA19 in the default data) except where an authority was reorganised,
e.g. Buckinghamshire, county E10000002 until unitary E06000060 in April 2020:
:func:`match_codes` maps a boundary code onto a fitted LA through whole-area renames of
:data:`~socialgradient.data.sources.geo.REORGANISATIONS` (either way) and the DfE merges
(Isles of Scilly with Cornwall, City of London with Hackney). A boundary path given that
does not exist means no map: :func:`la_map` raises and
:func:`socialgradient.results.plots.save_all` writes the other figures only.
:func:`choropleth` is the package's one map: the panel's LA map
(:func:`socialgradient.panel.model.write_panel`) draws with it too.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.collections import PathCollection
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.path import Path as MplPath

from socialgradient import resources
from socialgradient.results.gradients import describe, la_table, national

BOUNDARY_FILE = "Counties_and_Unitary_Authorities_Dec2020_UK_BUC.geojson"
SHIPPED = "la_boundaries.geojson.gz"  # England's authorities of BOUNDARY_FILE, in the package
NO_FIT = "0.85"  # grey of boundaries without a fitted LA
LONDON = (-0.53, 0.35, 51.27, 51.70)  # lon/lat box of the inset: 33 boroughs too small


def find_boundaries(path=None) -> Path | None:
    """Find the boundary GeoJSON.

    ``path`` if given (a file, or a folder holding ``BOUNDARY_FILE`` or
    ``boundaries/BOUNDARY_FILE``; None when it holds none), else
    ``$SOCIALGRADIENT_SHARED/boundaries/BOUNDARY_FILE`` if there, else the package's own
    copy of England's authorities (:data:`SHIPPED`).
    """
    candidates = []
    if path is not None:
        p = Path(path)
        candidates += [p, p / BOUNDARY_FILE, p / "boundaries" / BOUNDARY_FILE]
    else:
        if os.environ.get("SOCIALGRADIENT_SHARED"):
            shared = Path(os.environ["SOCIALGRADIENT_SHARED"])
            candidates.append(shared / "boundaries" / BOUNDARY_FILE)
        candidates.append(resources.root("data") / SHIPPED)
    return next((c for c in candidates if c.is_file()), None)


def match_codes(codes, las) -> dict[str, str | None]:
    """Boundary code -> fitted LA code (None: no fitted LA), see the module docstring."""
    from socialgradient.data.sources.geo import DFE_MERGES, REORGANISATIONS

    las = set(map(str, las))
    renames: dict[str, str] = {}
    for c in REORGANISATIONS:
        if c.lads is None:  # a whole-area rename; a split county has no single match
            renames.setdefault(c.new, c.old)
            renames.setdefault(c.old, c.new)
    merged = {c.old: c.new for c in DFE_MERGES}
    out = {}
    for code in map(str, codes):
        hits = [x for x in (code, renames.get(code), merged.get(code)) if x in las]
        out[code] = hits[0] if hits else None
    return out


def la_map(tree: xr.DataTree, boundaries=None) -> Figure:
    """Choropleth of each LA's posterior median gradient score.

    Parameters
    ----------
    boundaries : path-like, optional
        The boundary GeoJSON (or a folder holding it), see :func:`find_boundaries`.

    Returns
    -------
    Figure
        :func:`choropleth` of the log median gradient, centred at the national median
        exp(b_w), ticks labelled as gradient scores, LAs whose 95% interval includes the
        national median hatched: one patch per fitted LA with a boundary
        (``gid`` = the LA code), English boundaries without a fitted LA in grey; fitted LAs
        without a boundary are named in a note.

    Raises
    ------
    FileNotFoundError
        No boundary file (the package ships none).
    """
    path = find_boundaries(boundaries)
    if path is None:
        raise FileNotFoundError(
            f"la_map: no ONS boundary file ({BOUNDARY_FILE}) at {boundaries}: pass an "
            "existing path, or none for $SOCIALGRADIENT_SHARED/boundaries/ or the package's "
            "own copy of England's authorities (the LA forest plot needs none)"
        )
    rings = read_boundaries(path)
    table = la_table(tree)
    las = table["la"].values.astype(str)
    unit = match_codes({c for c, _ in rings}, las)
    rings = [(unit[code] or code, ring) for code, ring in rings]
    post = tree["posterior"].to_dataset()
    centre = np.log(float(describe(national(post)["gradient_mean_la"])["median"]))
    log_g = np.log(table["gradient_median"].to_series())
    eti = table["gradient_eti95"]
    covers = (np.log(eti.sel(ci_bound="lower")) <= centre) & (
        np.log(eti.sel(ci_bound="upper")) >= centre
    )
    shaped = {c for c, _ in rings}
    fitted = [c for c in las if c in shaped]
    missing = sorted(set(las) - set(fitted))
    note = f"{len(fitted)} LAs; grey: no fitted LA ({len(shaped - set(las))})" + (
        f"; no boundary: {', '.join(missing)}" if missing else ""
    )
    return choropleth(
        log_g.reindex(fitted),
        rings,
        centre=centre,
        exp_ticks=True,
        note=note,
        hatch=set(las[covers.values]),
        title=f"{tree.attrs['outcome']}: social gradient by local authority",
        label="Social gradient score, posterior median (rate ratio per 10 points)\n"
        "centred at the national median; hatched: 95% interval includes it",
    )


def choropleth(
    values: pd.Series,
    rings: list[tuple[str, np.ndarray]],
    *,
    centre: float = 0.0,
    exp_ticks: bool = False,
    title: str = "",
    label: str = "",
    note: str = "",
    hatch: set[str] | frozenset[str] = frozenset(),
) -> Figure:
    """Draw the package's one map: ``values`` (indexed by unit code) over ``rings``.

    ``rings``: ``(code, lon/lat ring)`` pairs, already coded as the units, e.g. by
    :func:`match_codes`.

    One axes in lon/lat with aspect 1/cos(mean latitude): one patch per unit with a value
    (a compound path of all its rings, ``gid`` = the code), coloured on a diverging scale
    centred at ``centre`` (ticks shown as exp(value) with ``exp_ticks``, for log ratios);
    rings without a value in grey (one patch per code); units in ``hatch`` (e.g. those whose
    interval includes the centre) hatched over their colour (gids ``hatched``,
    ``hatched_inset``), so that uncertainty does not rest on colour alone; a colourbar that
    spans the values' range (not a symmetric range around ``centre``); an inset of London
    (gids ``fitted_inset``, ``no_fit_inset``); ``note`` and the boundaries' licence in a
    note.
    """
    shapes: dict[str, list[np.ndarray]] = {}
    for code, ring in rings:
        shapes.setdefault(code, []).append(ring)
    values = values[np.isfinite(values.to_numpy(float))]
    fitted = [c for c in values.index if c in shapes]
    unfitted = sorted(set(shapes) - set(fitted))
    v = values.reindex(fitted).to_numpy(float)
    low = min(float(np.min(v, initial=centre)), centre - 0.01)
    high = max(float(np.max(v, initial=centre)), centre + 0.01)
    fig = Figure(figsize=(6.5, 7.5), layout="constrained")
    ax = fig.add_subplot()
    grey_paths = [_compound(shapes[c]) for c in unfitted]
    fitted_paths = [_compound(shapes[c]) for c in fitted]
    norm = TwoSlopeNorm(centre, low, high)
    hatched = [_compound(shapes[c]) for c in fitted if c in hatch]
    lat = np.concatenate([r[:, 1] for _, r in rings])
    lon = np.concatenate([r[:, 0] for _, r in rings])
    inset = ax.inset_axes((0.0, 0.37, 0.29, 0.25))  # over Wales, which is not drawn
    for where, bounds in (
        (ax, (lon.min() - 0.2, lon.max() + 0.2, lat.min() - 0.2, lat.max() + 0.2)),
        (inset, LONDON),
    ):
        grey = PathCollection(grey_paths, facecolor=NO_FIT, edgecolor="white", linewidth=0.2)
        grey.set_gid("no_fit" if where is ax else "no_fit_inset")
        where.add_collection(grey)
        coll = PathCollection(
            fitted_paths, array=v, cmap="RdBu_r", norm=norm, edgecolor="white", linewidth=0.2
        )
        coll.set_gid("fitted" if where is ax else "fitted_inset")
        where.add_collection(coll)
        if hatched:
            over = PathCollection(hatched, facecolor="none", edgecolor="0.15", linewidth=0)
            over.set_hatch("////")
            over.set_gid("hatched" if where is ax else "hatched_inset")
            where.add_collection(over)
        where.set_xlim(*bounds[:2])
        where.set_ylim(*bounds[2:])
        where.set_aspect(1 / np.cos(np.deg2rad(np.mean(bounds[2:]))))
    main = next(c for c in ax.collections if c.get_gid() == "fitted")
    ax.set_axis_off()
    inset.set_xticks([])
    inset.set_yticks([])
    inset.set_title("London", fontsize="small")
    ax.indicate_inset(
        (LONDON[0], LONDON[2], LONDON[1] - LONDON[0], LONDON[3] - LONDON[2]),
        inset,
        edgecolor="0.3",
        linewidth=0.6,
    )
    bar = fig.colorbar(main, ax=ax, shrink=0.6, pad=0.02)
    # evenly spaced in colour: each half of the two-slope scale, ends and centre labelled
    ticks = np.unique(np.concatenate([np.linspace(low, centre, 3), np.linspace(centre, high, 3)]))
    bar.set_ticks(list(ticks), labels=[f"{x:.2f}" for x in (np.exp(ticks) if exp_ticks else ticks)])
    bar.set_label(label, fontsize="small")
    ax.text(
        0.0,
        0.0,
        (note + "\n" if note else "")
        + "Boundaries: ONS, OGL v3.0; contains OS data (c) Crown copyright 2020",
        transform=ax.transAxes,
        fontsize="x-small",
        va="bottom",
    )
    ax.set_title(title)
    return fig


def read_boundaries(path, code_prefix: str = "E") -> list[tuple[str, np.ndarray]]:
    """Read the outer rings of the polygons of an ONS boundary GeoJSON (lon/lat).

    As ``(code, ring)`` pairs, for features whose ``*CD`` code starts with ``code_prefix``
    (England).
    """
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    features = json.loads(raw.decode("utf-8"))["features"]
    rings = []
    for feature in features:
        props = feature["properties"]
        key = next((k for k in props if k.upper().endswith("CD")), None)
        code = str(props.get(key, ""))
        geom = feature.get("geometry") or {}
        if not code.startswith(code_prefix) or not geom:
            continue
        polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
        rings += [(code, np.asarray(poly[0], dtype=float)[:, :2]) for poly in polys]
    return rings


def _compound(rings: list[np.ndarray]) -> MplPath:
    """One path of several closed rings (a multi-polygon LA as one patch)."""
    return MplPath.make_compound_path(*[MplPath(r, closed=True) for r in rings])
