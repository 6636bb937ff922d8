"""Population, area and density of the synthetic LSOAs, and the synthetic LA indicators."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad

from approx import assert_close, fingerprint
from socialgradient.data.synthetic import calibration as calib
from socialgradient.data.synthetic.context import (
    AREA_MODEL,
    LA_COLUMNS,
    LA_INDICATORS,
    NOISE_CORR,
    POPULATION_MODEL,
)
from socialgradient.data.synthetic.context import DEFINITIONS as CONTEXT_DEFINITIONS
from socialgradient.data.synthetic.england import OUTCOMES, load_calibration, simulate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
OLD_COLUMNS = ["lsoa", "la", "la_name", "children", "income", "rural", *OUTCOMES]
NEW_KEYS = ("density", "la_indicators")

#: The table columns and truth as they were before population, area, density and the LA
#: indicators were added (computed on the commit before them, 3728dbb): the new stream must
#: leave every earlier draw as it was. The columns (codes, counts, flags and income on its
#: 3-decimal grid: the same bytes on any CPU) by a hash; the truth by
#: :func:`approx.fingerprint` -- its structure, codes and ints by a hash, its floats (whose
#: last ulp depends on the CPU's numpy and BLAS kernels) by sums compared to 1e-9 relative,
#: which any float of the truth moved by more than ~6e-6 breaks.
BEFORE = {
    (2021, 1.0): (
        "bc28550b9b004f903bb4ba270718cbf1662fa9542779d90dcfde4fef1fbbdf2f",
        {
            "skeleton": "86f985441c21bf2c9d8af0a9ccc95d995d7c9d9c36dfc36855df0ab043932c6f",
            "floats": 3069,
            "abs_sum": 6308.946234546884,
            "weighted_abs_sum": 307368.3612610182,
        },
    ),
    (7, 0.05): (
        "dc7d5bd4443107d750084542b8e9631b83c243a1d99f70b8f54aa9fe1d5d4241",
        {
            "skeleton": "0deaa642dd1adce74c0cb956269168e486ec7ad502411f8240a1c33a32ecfdcd",
            "floats": 3069,
            "abs_sum": 6340.015201730468,
            "weighted_abs_sum": 309381.5694712878,
        },
    ),
}


@pytest.fixture(scope="module")
def england():
    return simulate()


@pytest.fixture(scope="module")
def small():
    return simulate(seed=7, scale=0.05)


@pytest.fixture(scope="module")
def cal():
    return load_calibration().sort_values("la").reset_index(drop=True)


def table_hash(table: pd.DataFrame) -> str:
    values = pd.util.hash_pandas_object(table[OLD_COLUMNS], index=False).to_numpy()
    return hashlib.sha256(values.tobytes()).hexdigest()


def old_truth(truth: dict) -> dict:
    """The truth without what the new stream added (JSON types, as a file holds them)."""
    old = {k: v for k, v in truth.items() if k not in NEW_KEYS}
    old["definitions"] = {
        k: v for k, v in truth["definitions"].items() if k not in CONTEXT_DEFINITIONS
    }
    return json.loads(json.dumps(old))


def la_sums(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby("la", sort=True)[["population", "area_km2", "children"]].sum()


def link(name: str, value: np.ndarray) -> np.ndarray:
    return np.log(value) if LA_INDICATORS[name]["link"] == "log" else np.log(value / (1 - value))


# -- the earlier draws are untouched ------------------------------------------------------


@pytest.mark.parametrize(("seed", "scale"), list(BEFORE))
def test_existing_columns_and_truth_unchanged(seed, scale, england, small):
    s = england if (seed, scale) == (2021, 1.0) else small
    table, truth = BEFORE[(seed, scale)]
    assert table_hash(s.table) == table
    assert_close(fingerprint(old_truth(s.truth)), truth, rtol=1e-9)
    assert list(s.table.columns[: len(OLD_COLUMNS)]) == OLD_COLUMNS


def test_committed_files_keep_earlier_columns():
    root = Path(__file__).resolve().parents[1] / "data"
    committed = pd.read_parquet(root / "neighbourhoods.parquet")
    assert table_hash(committed) == BEFORE[(2021, 1.0)][0]
    truth = json.loads((root / "truth.json").read_text(encoding="utf-8"))
    assert_close(fingerprint(old_truth(truth)), BEFORE[(2021, 1.0)][1], rtol=1e-9)


def test_deterministic(small):
    again = simulate(seed=7, scale=0.05)
    pd.testing.assert_frame_equal(small.las, again.las)
    pd.testing.assert_frame_equal(small.table, again.table)
    other = simulate(seed=8, scale=0.05)
    assert not np.allclose(small.las["spend_per_child"], other.las["spend_per_child"])
    assert not small.table["area_km2"].equals(other.table["area_km2"])


# -- equal-area polygon areas --------------------------------------------------------------


def ellipsoid_cell_km2(lat1: float, lat2: float, dlon: float) -> float:
    """Area of a lat/lon cell on WGS84 by numerical integration of M(phi) N(phi) cos(phi)."""
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)

    def element(phi):
        w = 1 - e2 * math.sin(phi) ** 2
        return a * (1 - e2) / w**1.5 * a / math.sqrt(w) * math.cos(phi)

    value, _ = quad(element, math.radians(lat1), math.radians(lat2))
    return value * math.radians(dlon) / 1e6


def cell(lon1, lat1, lon2, lat2, k=200):
    """Closed ring around a lat/lon cell, densified (k points per edge)."""
    t = np.linspace(0, 1, k, endpoint=False)
    edges = [
        np.column_stack([lon1 + (lon2 - lon1) * t, np.full(k, lat1)]),
        np.column_stack([np.full(k, lon2), lat1 + (lat2 - lat1) * t]),
        np.column_stack([lon2 - (lon2 - lon1) * t, np.full(k, lat2)]),
        np.column_stack([np.full(k, lon1), lat2 - (lat2 - lat1) * t]),
    ]
    ring = np.vstack([*edges, [[lon1, lat1]]])
    return ring.tolist()


def test_area_method_is_equal_area_on_wgs84():
    for lat in (0.0, 51.0, 54.5):
        exact = ellipsoid_cell_km2(lat, lat + 1, 1.0)
        ring = cell(-3, lat, -2, lat + 1)
        got = calib.geometry_area_km2({"type": "Polygon", "coordinates": [ring]})
        assert got == pytest.approx(exact, rel=1e-6)
    # a degree cell in England is ~7,700 km2 (on a sphere of radius 6371 km: 7,769)
    assert 7_500 < ellipsoid_cell_km2(51, 52, 1) < 7_900


def test_area_handles_holes_multipolygons_and_orientation():
    outer, hole = cell(-2, 52, -1, 53), cell(-1.6, 52.4, -1.4, 52.6)
    whole = calib.geometry_area_km2({"type": "Polygon", "coordinates": [outer]})
    small = calib.geometry_area_km2({"type": "Polygon", "coordinates": [hole]})
    holed = calib.geometry_area_km2({"type": "Polygon", "coordinates": [outer, hole[::-1]]})
    assert holed == pytest.approx(whole - small, rel=1e-9)
    same = calib.geometry_area_km2({"type": "Polygon", "coordinates": [outer[::-1], hole]})
    assert same == pytest.approx(holed, rel=1e-9)  # winding is not relied on
    multi = {"type": "MultiPolygon", "coordinates": [[outer, hole], [hole]]}
    assert calib.geometry_area_km2(multi) == pytest.approx(whole, rel=1e-9)
    with pytest.raises(ValueError, match="Polygon"):
        calib.geometry_area_km2({"type": "Point", "coordinates": [0, 0]})


# -- calibration columns -------------------------------------------------------------------


def test_calibration_density_columns(cal):
    assert {"population", "area_km2", "density"} <= set(cal.columns)
    assert cal[["population", "area_km2", "density"]].notna().all().all()
    assert cal["population"].sum() == 54_728_204  # IoD2019 File 6, England, mid-2015
    assert 130_000 < cal["area_km2"].sum() < 131_500  # generalised BUC polygons
    density = cal["population"] / cal["area_km2"]
    assert np.allclose(cal["density"], density, rtol=1e-6)
    by_name = cal.set_index("la_name")["density"]
    assert by_name["Tower Hamlets"] > 14_000  # densest
    assert by_name["Northumberland"] < 70  # least dense
    assert 2.5 < cal.set_index("la")["area_km2"]["E09000001"] < 3.0  # City of London


def test_lsoa_area_classes_match_constants(cal):
    fit = calib.lsoa_area_classes(cal)
    assert fit["urban_km2"] == pytest.approx(AREA_MODEL["urban_km2"], abs=1e-4)
    assert fit["rural_km2"] == pytest.approx(AREA_MODEL["rural_km2"], abs=1e-4)


@pytest.mark.skipif(not SHARED.exists(), reason="shared public data not available")
def test_calibration_against_shared_sources(cal):
    # Areas agree with ONS's own planar (British National Grid) areas of the same polygons
    # once the grid's scale factor is removed; Scilly's is added to Cornwall's.
    geo = json.loads((SHARED / calib.BOUNDARIES_FILE).read_text(encoding="utf-8"))
    ons = {}
    for feature in geo["features"]:
        p = feature["properties"]
        code = p["CTYUA20CD"]
        if not code.startswith("E"):
            continue
        code = calib.BOUNDARY_CODES.get(code, code)
        code = calib.MERGE.get(code, code)
        k = 0.9996012717 * (1 + (p["BNG_E"] - 400_000) ** 2 / (2 * 6.371e6**2))
        ons[code] = ons.get(code, 0.0) + p["Shape__Area"] / 1e6 / k**2
    ons = pd.Series(ons).reindex(cal["la"]).to_numpy()
    assert np.allclose(cal["area_km2"], ons, rtol=5e-4)
    # Populations are IoD2019 File 6 sums (read directly, LAD19 -> UTLA19 as in the LSOA table).
    f6 = pd.read_csv(
        SHARED / "iod2019" / "File_6_-_IoD2019_Population_Denominators.csv.gz",
        thousands=",",
        encoding="utf-8-sig",
    )
    lsoa = pd.read_csv(SHARED / calib.LSOA_FILE, usecols=["lad19cd", "utla19cd"])
    utla = lsoa.drop_duplicates("lad19cd").set_index("lad19cd")["utla19cd"]
    la = f6["Local Authority District code (2019)"].map(utla).map(lambda c: calib.MERGE.get(c, c))
    pop = f6.groupby(la)["Total population: mid 2015 (excluding prisoners)"].sum()
    assert np.array_equal(pop.reindex(cal["la"]).to_numpy(), cal["population"].to_numpy())
    # The LSOA population model's constants are the within-LA fit to the real LSOAs.
    model = calib.lsoa_population_model(SHARED)
    assert model["slope"] == pytest.approx(POPULATION_MODEL["slope"], abs=1e-4)
    assert model["residual_sd"] == pytest.approx(POPULATION_MODEL["noise_sd"], abs=1e-4)


# -- synthetic population, area and density -------------------------------------------------


@pytest.mark.parametrize("which", ["england", "small"])
def test_areas_and_populations_sum_to_la(which, cal, request):
    s = request.getfixturevalue(which)
    sums = la_sums(s.table)
    share = sums.join(s.table.groupby("la").size().rename("n"))["n"].to_numpy() / cal["n_lsoa"]
    assert np.allclose(sums["area_km2"], cal["area_km2"] * share, rtol=1e-6, atol=1e-4)
    assert np.allclose(sums["population"], cal["population"] * share, rtol=0.01)
    las = s.las.set_index("la")
    assert np.array_equal(las["population"].to_numpy(), sums["population"].to_numpy())
    assert np.allclose(las["area_km2"], sums["area_km2"], rtol=1e-9)
    assert np.array_equal(las["children"].to_numpy(), sums["children"].to_numpy())


def test_la_density_matches_real(england, cal):
    """Realised LA densities against the real ones (recomputed from ../shared if present)."""
    real = calib.build_calibration(SHARED) if SHARED.exists() else cal
    real = real.set_index("la")
    las = england.las.set_index("la")
    ratio = las["density"] / real["density"].reindex(las.index)
    assert ratio.notna().all()
    assert np.abs(ratio - 1).max() < 0.005
    assert (
        abs(
            england.truth["density"]["realised"]["la_density_max_rel_error"]
            - np.abs(ratio - 1).max()
        )
        < 1e-4
    )
    assert (
        np.corrcoef(np.log(las["density"]), np.log(real["density"].reindex(las.index)))[0, 1]
        > 0.999
    )
    england_density = las["population"].sum() / las["area_km2"].sum()
    assert 410 < england_density < 425  # 54.7 M / 130,745 km2 = 418.6


def test_lsoa_density_column(england):
    t = england.table
    assert (t["population"] > 0).all()
    assert (t["area_km2"] > 0).all()
    assert np.allclose(t["density"], t["population"] / t["area_km2"], rtol=1e-4, atol=0.01)
    assert (t["children"] <= POPULATION_MODEL["max_child_share"] * t["population"] + 1).all()
    share = t["children"] / t["population"]
    assert 0.17 < share.mean() < 0.21  # IoD2019 mid-2015: 0.189
    assert 1_550 < t["population"].mean() < 1_780  # IoD2019 mid-2015: 1,666
    rural, urban = t[t["rural"]], t[~t["rural"]]
    assert rural["area_km2"].median() > 20 * urban["area_km2"].median()
    assert rural["density"].median() * 20 < urban["density"].median()
    assert np.corrcoef(np.log(t["density"]), t["income"])[0, 1] > 0.1  # deprived: denser
    realised = england.truth["density"]["realised"]
    assert realised["population"] == t["population"].sum()
    assert realised["median_area_km2_rural"] == pytest.approx(rural["area_km2"].median())


def test_simulate_needs_area_and_population(cal):
    with pytest.raises(ValueError, match="area_km2"):
        simulate(scale=0.05, calibration=cal.drop(columns="area_km2"))
    with pytest.raises(ValueError, match="population"):
        simulate(scale=0.05, calibration=cal.assign(population=np.nan))


# -- LA indicators --------------------------------------------------------------------------


def test_la_table(england, small):
    for s in (england, small):
        las = s.las
        assert list(las.columns) == LA_COLUMNS
        assert len(las) == 150
        assert las["la"].is_unique
        assert list(las["la"]) == sorted(las["la"])
        assert las["n_lsoa"].sum() == len(s.table)
        assert (las["spend_per_child"] > 0).all()
        for col in ("agency_share", "turnover"):
            assert ((las[col] > 0) & (las[col] < 1)).all()
        m_c = [s.truth["thresholds"]["referrals"]["la"][c]["m_c"] for c in las["la"]]
        assert np.array_equal(las["m_c"].to_numpy(), np.array(m_c))
        x = 10 * las["income_mean"] - s.truth["x_bar"]
        assert np.allclose(x, las["m_c"], atol=1e-9)
        by_la = s.truth["la_indicators"]["by_la"]
        for col in LA_INDICATORS:
            assert np.array_equal(las[col].to_numpy(), [by_la[c][col] for c in las["la"]])


def test_indicator_levels(england):
    las = england.las
    assert 700 < las["spend_per_child"].median() < 1_150
    assert 0.10 < las["agency_share"].mean() < 0.22
    assert 0.10 < las["turnover"].mean() < 0.20


def test_intensity_is_the_standardised_referral_residual(england):
    t = england.truth["thresholds"]["referrals"]
    by_la = england.truth["la_indicators"]["by_la"]
    for code, v in t["la"].items():
        expected = (v["a_la"] - t["a"] - t["b_b"] * v["m_c"]) / t["sigma_a"]
        assert by_la[code]["intensity"] == pytest.approx(expected, abs=1e-12)
    intensity = np.array([v["intensity"] for v in by_la.values()])
    assert abs(intensity.mean()) < 0.3
    assert 0.8 < intensity.std() < 1.2


def test_designed_relations_recovered(england):
    """OLS of each link(indicator) on m_c and intensity recovers the true coefficients."""
    truth = england.truth["la_indicators"]
    by_la = truth["by_la"]
    m_c = np.array([v["m_c"] for v in by_la.values()])
    intensity = np.array([v["intensity"] for v in by_la.values()])
    X = np.column_stack([np.ones_like(m_c), m_c, intensity])
    residuals = {}
    for name, p in LA_INDICATORS.items():
        assert truth[name]["coef_m_c"] == p["coef_m_c"]
        y = link(name, np.array([v[name] for v in by_la.values()]))
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ beta
        s2 = resid @ resid / (len(y) - 3)
        se = np.sqrt(np.diag(s2 * np.linalg.inv(X.T @ X)))
        true = [float(link(name, np.array(p["level"]))), p["coef_m_c"], p["coef_intensity"]]
        assert np.all(np.abs(beta - true) < 3 * se), (name, beta, true, se)
        assert beta[1] > 0
        assert beta[2] > 0
        assert math.sqrt(s2) == pytest.approx(p["noise_sd"], rel=0.25)
        residuals[name] = resid
        realised = truth["realised"][name]
        assert realised["corr_m_c"] == pytest.approx(np.corrcoef(y, m_c)[0, 1])
        assert realised["corr_intensity"] == pytest.approx(np.corrcoef(y, intensity)[0, 1])
        assert realised["corr_m_c"] > 0.1
        assert realised["corr_intensity"] > 0.1
    r = np.corrcoef(residuals["agency_share"], residuals["turnover"])[0, 1]
    assert abs(r - NOISE_CORR) < 0.2
    assert abs(np.corrcoef(residuals["spend_per_child"], residuals["turnover"])[0, 1]) < 0.25


def test_new_truth_keys_are_defined(england):
    defined = set(england.truth["definitions"])

    def keys(node, skip=("by_la",)):
        if isinstance(node, dict):
            for k, v in node.items():
                yield k
                if k not in skip:
                    yield from keys(v)

    for top in NEW_KEYS:
        assert top in defined
        assert set(keys(england.truth[top])) <= defined
    sample = next(iter(england.truth["la_indicators"]["by_la"].values()))
    assert set(sample) <= defined
