r"""Per-LA calibration table for the synthetic England, derived from public LSOA data.

The synthetic generator (:mod:`socialgradient.data.synthetic.england`) needs, for each of England's
children's services local authorities (LAs), how many neighbourhoods (2011 LSOAs) it has, how
many children live there and how income deprivation is spread across them. This module derives
those LA-level summaries from the analysis-ready LSOA table in the shared data folder
(``lsoa2011_merged/lsoa2011_iod2019_income_children_utla_ruc.csv.gz``: MHCLG English Indices of
Deprivation 2019 income domain, IoD2019 mid-2015 child population, ONS LSOA11->UTLA19 lookup and
2011 Rural-Urban Classification) and, where available, each LA's observed DfE referral rate in
2018-19, its total population (IoD2019 File 6 mid-2015 denominators, through the same LSOA
table) and its area, computed here from the ONS generalised boundary polygons
(``boundaries/Counties_and_Unitary_Authorities_Dec2020_UK_BUC.geojson``) with an exact
equal-area method (:func:`geometry_area_km2`), hence its population density.

LAs are upper-tier local authorities (UTLA19) with the Isles of Scilly (E06000053, one LSOA)
merged into Cornwall (E06000052), as DfE does for children's social care; that leaves 150 LAs,
each with at least 2 LSOAs (City of London has 6).

Only LA-level aggregates are written; no LSOA-level values leave the shared folder. Contains
public sector information licensed under the Open Government Licence v3.0 (MHCLG IoD2019, ONS,
DfE); boundaries: Source: Office for National Statistics licensed under the Open Government
Licence v.3.0, contains OS data (c) Crown copyright and database right 2020.

Regenerate the committed table (run from the repository root)::

    python -m socialgradient.data.synthetic.calibration \
        ../shared/data src/socialgradient/data/synthetic/la_calibration.csv
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)
LSOA_FILE = Path("lsoa2011_merged") / "lsoa2011_iod2019_income_children_utla_ruc.csv.gz"
REFERRALS_FILE = Path("dfe_csc") / "c1_children_in_need_referrals_and_rereferrals_2013_to_2025.csv"
POPULATION_FILE = Path("population_la") / "ons_mid-year_population_estimates_2012_to_2024.csv"
BOUNDARIES_FILE = Path("boundaries") / "Counties_and_Unitary_Authorities_Dec2020_UK_BUC.geojson"

#: DfE reports the Isles of Scilly with Cornwall for children's social care.
MERGE = {"E06000053": "E06000052"}

#: Boundary (CTYUA Dec 2020) codes that differ from the UTLA19 codes of the LSOA table:
#: Buckinghamshire became a unitary authority (E06000060) on 1 April 2020 with the county's
#: (E10000002) boundary.
BOUNDARY_CODES = {"E06000060": "E10000002"}

ATTRIBUTION = (
    "# Derived LA-level summaries. Contains public sector information licensed under the Open "
    "Government Licence v3.0: MHCLG English Indices of Deprivation 2019, ONS (mid-2015 "
    "population, LSOA11-UTLA19 lookup, RUC2011, Counties and Unitary Authorities Dec 2020 "
    "BUC boundaries; contains OS data (c) Crown copyright and database right 2020), DfE "
    "Characteristics of children in need 2018-19. See "
    "socialgradient.data.synthetic.calibration and data/README.md."
)

#: Columns of the calibration table, in order.
COLUMNS = [
    "la",
    "la_name",
    "n_lsoa",
    "children",
    "income_mean",
    "income_sd",
    "income_min",
    "income_max",
    "logit_income_mean",
    "logit_income_sd",
    "rural_share",
    "children_mean",
    "children_sd",
    "dfe_referrals_per_10k_2019",
    "population",
    "area_km2",
    "density",
]

DECIMALS = 6

# WGS84 ellipsoid and its authalic (equal-area) sphere, for geometry_area_km2.
_WGS84_A = 6378137.0
_WGS84_F = 1 / 298.257223563
_E2 = _WGS84_F * (2 - _WGS84_F)
_E = math.sqrt(_E2)


def _q(phi: np.ndarray) -> np.ndarray:
    """Snyder's q(phi) for the WGS84 ellipsoid (authalic latitude helper)."""
    s = np.sin(phi)
    return (1 - _E2) * (s / (1 - _E2 * s * s) - np.log((1 - _E * s) / (1 + _E * s)) / (2 * _E))


_Q_POLE = float(_q(np.array(math.pi / 2)))
#: Radius (m) of the sphere with the WGS84 ellipsoid's surface area.
AUTHALIC_RADIUS = _WGS84_A * math.sqrt(_Q_POLE / 2)


def ring_area_km2(ring, lon0: float = -2.0) -> float:
    """Area (km2, unsigned) enclosed by one closed ring of (lon, lat) degrees on WGS84.

    Exact equal-area method: latitudes become authalic latitudes beta (Snyder 1987, eq. 3-11),
    points are projected with the sinusoidal projection on the authalic sphere (x = R (lon -
    lon0) cos beta, y = R beta), which is equal-area, and the planar polygon's area is taken with
    the shoelace formula. The only approximation is that each edge is straight in the projected
    plane rather than on the ellipsoid, negligible for edges of a few hundred metres near
    ``lon0`` (here the central meridian of the British National Grid).
    """
    c = np.asarray(ring, dtype=float)
    lam = np.radians(c[:, 0] - lon0)
    beta = np.arcsin(np.clip(_q(np.radians(c[:, 1])) / _Q_POLE, -1.0, 1.0))
    x = AUTHALIC_RADIUS * lam * np.cos(beta)
    y = AUTHALIC_RADIUS * beta
    twice = np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))
    return abs(float(twice)) / 2 / 1e6


def geometry_area_km2(geometry: dict, lon0: float = -2.0) -> float:
    """Area (km2) of a GeoJSON Polygon or MultiPolygon: outer rings minus their holes.

    Ring orientation is not relied on: each polygon's first ring counts positive and every
    further ring (a hole) negative, whatever its winding.
    """
    kind, coords = geometry["type"], geometry["coordinates"]
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        polygons = coords
    else:
        raise ValueError(f"expected a Polygon or MultiPolygon, got {kind!r}")
    return sum(
        ring_area_km2(rings[0], lon0) - sum(ring_area_km2(h, lon0) for h in rings[1:])
        for rings in polygons
    )


def la_areas(path) -> pd.Series:
    """Area (km2) of each English LA from the CTYUA Dec 2020 BUC GeoJSON, by UTLA19 code.

    Buckinghamshire's 2020 code is mapped to its UTLA19 code (:data:`BOUNDARY_CODES`) and the
    Isles of Scilly's polygons are added to Cornwall's (:data:`MERGE`). BUC boundaries are
    generalised (to about 500 m) and clipped to the coastline, so these are the areas of the
    generalised polygons, inland water included: about 130,700 km2 for England, a few tenths of
    a percent from ONS's detailed-boundary measurements and ~0.3% above the land-only Standard
    Area Measurement of about 130,300 km2.
    """
    with open(path, encoding="utf-8") as f:
        features = json.load(f)["features"]
    areas: dict[str, float] = {}
    for feature in features:
        code = feature["properties"]["CTYUA20CD"]
        if not code.startswith("E"):
            continue
        code = BOUNDARY_CODES.get(code, code)
        code = MERGE.get(code, code)
        areas[code] = areas.get(code, 0.0) + geometry_area_km2(feature["geometry"])
    return pd.Series(areas, name="area_km2").sort_index()


def lsoa_area_classes(table: pd.DataFrame) -> dict:
    """Mean area (km2) of an urban and of a rural LSOA that best explain LA areas.

    Fits ``area_km2 = urban * n_urban + rural * n_rural`` over LAs (``n_rural`` = ``rural_share
    * n_lsoa``) by least squares on the log scale (relative errors, so small London boroughs
    count as much as counties). LSOA areas are not in the shared data; this LA-level fit is the
    only calibration of the urban/rural size contrast. Returns ``urban_km2``, ``rural_km2``
    and ``log_residual_sd``.
    """
    from scipy.optimize import least_squares

    n = table["n_lsoa"].to_numpy(dtype=float)
    n_rural = table["rural_share"].to_numpy(dtype=float) * n
    n_urban = n - n_rural
    log_area = np.log(table["area_km2"].to_numpy(dtype=float))

    def residual(theta):
        return np.log(np.exp(theta[0]) * n_urban + np.exp(theta[1]) * n_rural) - log_area

    fit = least_squares(residual, x0=[0.0, 2.0])
    return {
        "urban_km2": float(np.exp(fit.x[0])),
        "rural_km2": float(np.exp(fit.x[1])),
        "log_residual_sd": float(np.std(fit.fun)),
    }


def lsoa_population_model(shared_data_dir) -> dict:
    """Within-LA relation of an LSOA's total population to its children aged 0-15.

    Least squares of log total population on log children, both centred within LA (mid-2015,
    IoD2019 File 6 via the LSOA table): returns ``slope``, ``residual_sd`` and the within-LA
    SD of the log child share (children / population). Only these national summaries are used
    by the generator.
    """
    lsoa = pd.read_csv(
        Path(shared_data_dir) / LSOA_FILE,
        usecols=["utla19cd", "children_0_15_mid2015", "pop_total_mid2015"],
    )
    la = lsoa["utla19cd"].map(lambda code: MERGE.get(code, code))
    log_c = np.log(lsoa["children_0_15_mid2015"].astype(float))
    log_p = np.log(lsoa["pop_total_mid2015"].astype(float))
    dc = log_c - log_c.groupby(la).transform("mean")
    dp = log_p - log_p.groupby(la).transform("mean")
    slope = float((dc * dp).sum() / (dc * dc).sum())
    return {
        "slope": slope,
        "residual_sd": float((dp - slope * dc).std()),
        "log_child_share_sd": float((dc - dp).std()),
    }


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _dfe_referral_rates(shared: Path) -> pd.Series:
    """Referrals per 10,000 children aged 0-17 in the year to 31 March 2019, by LA code.

    Count from DfE's C1 table over the ONS mid-2018 estimate (DfE's own denominator);
    Isles of Scilly summed into Cornwall. Missing (NaN) for Bournemouth, Christchurch and
    Poole and for Dorset, whose 2019 figures are reported under the pre-2019 authorities.
    """
    ref = pd.read_csv(shared / REFERRALS_FILE, dtype=str)
    ref = ref[(ref["time_period"] == "2019") & (ref["geographic_level"] == "Local authority")]
    pop = pd.read_csv(shared / POPULATION_FILE, dtype=str)
    pop = pop[(pop["time_period"] == "2018") & (pop["geographic_level"] == "Local authority")]
    both = pd.DataFrame(
        {
            "count": pd.to_numeric(ref.set_index("new_la_code")["referral_count"], errors="coerce"),
            "pop": pd.to_numeric(
                pop.set_index("new_la_code")["population_estimate"], errors="coerce"
            ),
        }
    )
    both.index = both.index.map(lambda code: MERGE.get(code, code))
    summed = both.groupby(level=0).sum(min_count=1)
    return (summed["count"] / summed["pop"] * 1e4).rename("dfe_referrals_per_10k_2019")


def build_calibration(shared_data_dir) -> pd.DataFrame:
    """Per-LA summaries of LSOA income deprivation and child population.

    Parameters
    ----------
    shared_data_dir : path-like
        The shared data folder (holding ``lsoa2011_merged/``, ``dfe_csc/``, ``population_la/``,
        ``boundaries/``).

    Returns
    -------
    DataFrame, one row per LA (150), sorted by LA code, with columns :data:`COLUMNS`:
    ``la``/``la_name`` (UTLA19 code/name), ``n_lsoa``, ``children`` (total aged 0-15, mid-2015),
    ``income_mean`` (child-weighted mean LSOA income score, 0-1), ``income_sd`` (unweighted SD
    over LSOAs), ``income_min``/``income_max``, ``logit_income_mean``/``logit_income_sd``
    (unweighted, logit scale), ``rural_share`` (share of LSOAs classed rural, RUC2011 D/E),
    ``children_mean``/``children_sd`` (children 0-15 per LSOA) and
    ``dfe_referrals_per_10k_2019`` (observed, all ages 0-17; NaN where unavailable),
    ``population`` (total, all ages, mid-2015, excluding prisoners: IoD2019 File 6),
    ``area_km2`` (:func:`la_areas`, generalised BUC boundaries; NaN if the boundary file is
    absent) and ``density`` (``population / area_km2``, persons per km2).
    Floats are rounded to 6 decimals so the table round-trips through CSV exactly.
    """
    shared = Path(shared_data_dir)
    lsoa = pd.read_csv(
        shared / LSOA_FILE,
        usecols=[
            "lsoa11cd",
            "utla19cd",
            "utla19nm",
            "income_score_rate",
            "children_0_15_mid2015",
            "urban_rural",
            "pop_total_mid2015",
        ],
    )
    names = lsoa.drop_duplicates("utla19cd").set_index("utla19cd")["utla19nm"]
    lsoa["la"] = lsoa["utla19cd"].map(lambda code: MERGE.get(code, code))
    lsoa["la_name"] = lsoa["la"].map(names)
    income = lsoa["income_score_rate"].to_numpy(dtype=float)
    children = lsoa["children_0_15_mid2015"].to_numpy(dtype=float)
    lsoa["logit_income"] = _logit(np.clip(income, 1e-4, 1 - 1e-4))
    lsoa["weighted_income"] = income * children
    lsoa["rural"] = (lsoa["urban_rural"] == "Rural").astype(float)

    groups = lsoa.groupby("la", sort=True)
    table = pd.DataFrame(
        {
            "la_name": groups["la_name"].first(),
            "n_lsoa": groups.size(),
            "children": groups["children_0_15_mid2015"].sum(),
            "income_mean": groups["weighted_income"].sum() / groups["children_0_15_mid2015"].sum(),
            "income_sd": groups["income_score_rate"].std(),
            "income_min": groups["income_score_rate"].min(),
            "income_max": groups["income_score_rate"].max(),
            "logit_income_mean": groups["logit_income"].mean(),
            "logit_income_sd": groups["logit_income"].std(),
            "rural_share": groups["rural"].mean(),
            "children_mean": groups["children_0_15_mid2015"].mean(),
            "children_sd": groups["children_0_15_mid2015"].std(),
            "population": groups["pop_total_mid2015"].sum(),
        }
    )
    try:
        table = table.join(_dfe_referral_rates(shared))
    except FileNotFoundError:
        table["dfe_referrals_per_10k_2019"] = np.nan
    try:
        table = table.join(la_areas(shared / BOUNDARIES_FILE))
    except FileNotFoundError:
        table["area_km2"] = np.nan
    table["density"] = table["population"] / table["area_km2"]
    table = table.rename_axis("la").reset_index()
    for col in ("n_lsoa", "children", "population"):
        table[col] = table[col].astype("int64")
    floats = table.select_dtypes("float").columns
    table[floats] = table[floats].round(DECIMALS)
    return table[COLUMNS]


def write_calibration(table: pd.DataFrame, path) -> None:
    """Write the table as CSV with a one-line attribution comment (read with ``comment='#'``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(ATTRIBUTION + "\n")
        table.to_csv(f, index=False, lineterminator="\n")
    tmp.replace(path)


def read_calibration(path) -> pd.DataFrame:
    """Read a table written by :func:`write_calibration`."""
    return pd.read_csv(path, comment="#", dtype={"la": str, "la_name": str})


def main(argv: list[str] | None = None) -> int:
    """Build the calibration table from a shared data folder and write it (command line)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        log.error(
            "usage: python -m socialgradient.data.synthetic.calibration SHARED_DATA_DIR OUT_CSV"
        )
        return 2
    table = build_calibration(argv[0])
    write_calibration(table, argv[1])
    log.info("wrote %s: %d LAs, %d LSOAs", argv[1], len(table), int(table["n_lsoa"].sum()))
    return 0


if __name__ == "__main__":
    from socialgradient.util import progress

    progress.configure()
    raise SystemExit(main())
