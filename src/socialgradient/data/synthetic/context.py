"""LA and neighbourhood context: population, area, density, synthetic LA indicators.

The context that :func:`socialgradient.data.synthetic.england.simulate` adds to its synthetic
England after the counts. All of it draws from a second stream, ``default_rng([seed, NEW_STREAM])``
(``NEW_STREAM`` = 7), so that every column and truth value drawn before it (neighbourhoods, LA
effects, counts) is the same as without it:

* **Population, area and density** (:func:`_population_and_area`). Each LSOA gets a total
  population (all ages) and a land area (km2) such that each LA's LSOAs sum to its real
  mid-2015 population and real area (times the LA's synthetic / real number of LSOAs, i.e.
  exactly at ``scale=1``), rural LSOAs being ~50 times larger than urban ones
  (:data:`POPULATION_MODEL`, :data:`AREA_MODEL`). ``density`` = population / area.
* **LA indicators** (:func:`_la_indicators`, same stream, after population and area):
  children's social care spend per child, agency-worker share and social-worker turnover per
  LA. **Entirely synthetic**: no public figure for them is in the shared data, and their
  levels and coefficients are assumptions (:data:`LA_INDICATORS`), not estimates. They depend
  on the LA's deprivation ``m_c`` and its realised intervention intensity (the standardised
  referral intercept residual ``(a_la - a - b_b m_c) / sigma_a``, :data:`INTENSITY_OUTCOME`)
  plus noise. They are correlates, not causes: no count depends on them.

:func:`_la_table` builds the per-LA table (``Synthetic.las``, columns :data:`LA_COLUMNS`):
each LA's totals, deprivation and indicators. :data:`DEFINITIONS` defines the truth keys added
here (``truth["density"]``, ``truth["la_indicators"]``); ``simulate`` merges them into
``truth["definitions"]``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

NEW_STREAM = 7  # everything added after the counts draws from default_rng([seed, NEW_STREAM])

#: Within-LA model of an LSOA's total population given its children aged 0-15: log population
#: = LA level + slope * (log children - LA mean) + N(0, noise_sd). Slope and SD are the
#: within-LA least-squares fit to the real LSOAs (IoD2019 File 6, mid-2015;
#: ``calibration.lsoa_population_model``: 0.3245, 0.1491), which reproduces the within-LA SD
#: of the log child share (0.28). A population is at least children / max_child_share (the
#: largest real child share is 0.53).
POPULATION_MODEL = dict(slope=0.3245, noise_sd=0.1491, max_child_share=0.55)

#: LSOA areas. Relative weights ``km2[urban|rural] * exp(income_slope * z + noise_sd * u)``,
#: u standard normal clipped to +-noise_clip, scaled within each LA to the LA's real area. The
#: mean urban and rural LSOA areas (0.3854 and 18.7071 km2, ratio ~49) are the least-squares
#: fit of real LA areas on their real numbers of urban and rural LSOAs
#: (``calibration.lsoa_area_classes`` on the calibration table; LA log residual SD 0.44):
#: LSOA areas themselves are not in the shared data. ``noise_sd`` (0.7, the spread of log
#: areas within a class and LA), ``noise_clip`` (2.5) and ``income_slope`` (-0.25 per
#: within-LA SD of logit income z: less deprived LSOAs are larger, i.e. less dense) are
#: **assumptions**.
AREA_MODEL = dict(
    urban_km2=0.3854, rural_km2=18.7071, noise_sd=0.7, noise_clip=2.5, income_slope=-0.25
)

#: LA indicators: **assumed**, not estimated (no public source for them is in the shared data).
#: value = inverse_link(link(level) + coef_m_c * m_c + coef_intensity * intensity + noise_sd *
#: e), e ~ N(0, 1), with the agency-share and turnover noises correlated NOISE_CORR. Levels are
#: plausible orders of magnitude chosen for illustration, not calibrated to any data here.
LA_INDICATORS: dict[str, dict[str, Any]] = {
    "spend_per_child": dict(
        link="log",
        level=900.0,
        coef_m_c=0.30,
        coef_intensity=0.12,
        noise_sd=0.20,
        units="GBP per child aged 0-17 per year",
    ),
    "agency_share": dict(
        link="logit",
        level=0.15,
        coef_m_c=0.30,
        coef_intensity=0.20,
        noise_sd=0.45,
        units="share (0-1) of children's social worker FTE",
    ),
    "turnover": dict(
        link="logit",
        level=0.15,
        coef_m_c=0.20,
        coef_intensity=0.15,
        noise_sd=0.30,
        units="share (0-1) of social workers leaving in the year",
    ),
}
NOISE_CORR = 0.5  # correlation of the agency-share and turnover noises (workforce instability)
INTENSITY_OUTCOME = "referrals"

#: Columns of ``Synthetic.las`` (``data/las.parquet``), one row per LA.
LA_COLUMNS = [
    "la",
    "la_name",
    "n_lsoa",
    "children",
    "population",
    "area_km2",
    "density",
    "income_mean",
    "m_c",
    *LA_INDICATORS,
]

#: Definitions of the truth keys added here (population, area, density and the LA
#: indicators); ``simulate`` merges them after synthetic's own.
DEFINITIONS = {
    "density": "how LSOA population, area_km2 and density were generated, and realised totals",
    "model": "the generating model, in words and formulas",
    "population_slope": "within-LA slope of log LSOA population on log children 0-15 (fitted "
    "to IoD2019 File 6 mid-2015 LSOAs)",
    "population_noise_sd": "SD of log LSOA population around the within-LA fit",
    "max_child_share": "largest share of an LSOA's population aged 0-15 allowed (floor on "
    "population)",
    "urban_lsoa_km2": "relative size of an urban LSOA (km2; fitted mean from real LA areas)",
    "rural_lsoa_km2": "relative size of a rural LSOA (km2; fitted mean from real LA areas)",
    "area_noise_sd": "SD of log LSOA area within class and LA (assumed)",
    "area_noise_clip": "the area noise u ~ N(0, 1) is clipped to +- this (assumed)",
    "area_income_slope": "change in log LSOA area per within-LA SD of logit income (assumed)",
    "realised": "summaries of the realised values in this draw",
    "population": "total population, all ages (persons)",
    "area_km2": "land area in km2 (generalised boundaries, inland water included)",
    "england_density": "total population / total area_km2 (persons per km2)",
    "median_area_km2_urban": "median area of urban LSOAs (km2)",
    "median_area_km2_rural": "median area of rural LSOAs (km2)",
    "median_density_urban": "median density of urban LSOAs (persons per km2)",
    "median_density_rural": "median density of rural LSOAs (persons per km2)",
    "la_density_max_rel_error": "largest |synthetic LA density / calibration LA density - 1|",
    "la_indicators": "LA-level synthetic indicators (assumed models, no public source): "
    "coefficients, realised summaries and values per LA",
    "intensity_outcome": "outcome whose LA intercept residual defines intensity",
    "intensity": "LA's standardised intercept residual (a_la - a - b_b * m_c) / sigma_a "
    "for intensity_outcome: its realised intervention intensity",
    "spend_per_child": "children's social care spend, GBP per child aged 0-17 per year (synthetic)",
    "agency_share": "share (0-1) of children's social worker FTE who are agency staff (synthetic)",
    "turnover": "share (0-1) of children's social workers leaving in the year (synthetic)",
    "link": "scale on which the indicator is linear in m_c, intensity and noise: log or logit",
    "level": "indicator value at m_c = 0, intensity = 0, noise = 0 (assumed)",
    "coef_m_c": "change in link(indicator) per 10 points of m_c (assumed)",
    "coef_intensity": "change in link(indicator) per SD of intensity (assumed)",
    "noise_sd": "SD of the normal noise on the link scale (assumed)",
    "units": "units of the indicator",
    "noise_corr_agency_turnover": "correlation of the agency_share and turnover noises",
    "mean": "mean over LAs",
    "sd": "SD over LAs",
    "min": "smallest LA value",
    "max": "largest LA value",
    "corr_m_c": "correlation over LAs of link(indicator) with m_c",
    "corr_intensity": "correlation over LAs of link(indicator) with intensity",
    "by_la": "realised values keyed by LA code",
}


def _group_sum(values: np.ndarray, idx: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(idx, weights=values, minlength=n_groups)


def _population_and_area(
    rng: np.random.Generator, table: pd.DataFrame, cal: pd.DataFrame, n_per_la: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Total population (int64) and area (km2) of each LSOA, and their truth.

    Within LA l with real population P_l, area A_l and real number of LSOAs N_l, synthetic
    n_l LSOAs share f_l = n_l / N_l of both (f_l = 1 at ``scale=1``):

    * population_i = max(rint(k_l * exp(slope * (log children_i - mean_l log children) +
      noise_sd * e_i)), ceil(children_i / max_child_share)), k_l making the LA sum f_l * P_l
      (before the rarely binding floor) -- :data:`POPULATION_MODEL`;
    * area_i = f_l * A_l * w_i / sum_l w, w_i = km2[urban|rural] * exp(income_slope * z_i +
      noise_sd * u_i), u_i ~ N(0, 1) clipped to +-noise_clip, z_i the LSOA's logit income
      standardised with the LA's logit mean and SD -- :data:`AREA_MODEL`; rounded to 1e-6 km2.
    """
    for col in ("population", "area_km2"):
        if col not in cal.columns or cal[col].isna().any():
            raise ValueError(
                f"calibration table lacks {col!r} for some LAs: rebuild it with "
                "socialgradient.data.synthetic.calibration (needs the boundaries)"
            )
    n, n_la = len(table), len(cal)
    idx = np.repeat(np.arange(n_la), n_per_la)
    share = n_per_la / cal["n_lsoa"].to_numpy(dtype=float)
    e = rng.standard_normal(n)
    u = np.clip(rng.standard_normal(n), -AREA_MODEL["noise_clip"], AREA_MODEL["noise_clip"])

    pm = POPULATION_MODEL
    children = table["children"].to_numpy(dtype=float)
    log_c = np.log(children)
    dev = log_c - (_group_sum(log_c, idx, n_la) / n_per_la)[idx]
    raw = np.exp(pm["slope"] * dev + pm["noise_sd"] * e)
    target = cal["population"].to_numpy(dtype=float) * share
    population = np.rint(raw * (target / _group_sum(raw, idx, n_la))[idx])
    population = np.maximum(population, np.ceil(children / pm["max_child_share"]))
    population = population.astype(np.int64)

    am = AREA_MODEL
    income = np.clip(table["income"].to_numpy(dtype=float), 1e-4, 1 - 1e-4)
    logit = np.log(income) - np.log1p(-income)
    mean = cal["logit_income_mean"].to_numpy(dtype=float)[idx]
    sd = cal["logit_income_sd"].to_numpy(dtype=float)[idx]
    z = (logit - mean) / sd
    rural = table["rural"].to_numpy(dtype=bool)
    base = np.where(rural, am["rural_km2"], am["urban_km2"])
    weight = base * np.exp(am["income_slope"] * z + am["noise_sd"] * u)
    la_area = cal["area_km2"].to_numpy(dtype=float) * share
    area = np.round(weight * (la_area / _group_sum(weight, idx, n_la))[idx], 6)

    density = population / area
    la_density = _group_sum(population.astype(float), idx, n_la) / _group_sum(area, idx, n_la)
    real_density = cal["population"].to_numpy(dtype=float) / cal["area_km2"].to_numpy(float)
    truth = {
        "model": (
            "population_i = max(rint(k_la * exp(population_slope * (log children_i - LA mean "
            "log children) + population_noise_sd * e_i)), ceil(children_i / max_child_share)), "
            "k_la making the LA total its real mid-2015 population (IoD2019 File 6) times its "
            "synthetic/real number of LSOAs; area_km2_i = A_la * w_i / sum_la w, w_i = "
            "(rural_lsoa_km2 if rural else urban_lsoa_km2) * exp(area_income_slope * z_i + "
            "area_noise_sd * u_i), u_i clipped to +-area_noise_clip, z_i the LSOA's logit "
            "income standardised by its LA's logit mean and SD, A_la the LA's real area (ONS "
            "BUC boundaries) times its synthetic/real number of LSOAs; density_i = "
            "population_i / area_km2_i; e, u ~ N(0, 1) from "
            f"default_rng([seed, {NEW_STREAM}])"
        ),
        "population_slope": pm["slope"],
        "population_noise_sd": pm["noise_sd"],
        "max_child_share": pm["max_child_share"],
        "urban_lsoa_km2": am["urban_km2"],
        "rural_lsoa_km2": am["rural_km2"],
        "area_noise_sd": am["noise_sd"],
        "area_noise_clip": am["noise_clip"],
        "area_income_slope": am["income_slope"],
        "realised": {
            "population": int(population.sum()),
            "area_km2": float(area.sum()),
            "england_density": float(population.sum() / area.sum()),
            "median_area_km2_urban": float(np.median(area[~rural])),
            "median_area_km2_rural": float(np.median(area[rural])) if rural.any() else None,
            "median_density_urban": float(np.median(density[~rural])),
            "median_density_rural": float(np.median(density[rural])) if rural.any() else None,
            "la_density_max_rel_error": float(np.max(np.abs(la_density / real_density - 1))),
        },
    }
    return population, area, truth


def _link(name: str, value: np.ndarray) -> np.ndarray:
    return np.log(value) if name == "log" else np.log(value) - np.log1p(-value)


def _la_indicators(
    rng: np.random.Generator, m_c: np.ndarray, intensity: np.ndarray
) -> tuple[dict[str, np.ndarray], dict]:
    """Synthetic spend per child, agency share and turnover per LA (:data:`LA_INDICATORS`)."""
    n_la = len(m_c)
    noise = rng.standard_normal((n_la, 3))
    r = NOISE_CORR
    noise[:, 2] = r * noise[:, 1] + math.sqrt(1 - r**2) * noise[:, 2]  # turnover ~ agency
    values, params, realised = {}, {}, {}
    for k, (name, p) in enumerate(LA_INDICATORS.items()):
        eta = (
            _link(p["link"], np.array(p["level"]))
            + p["coef_m_c"] * m_c
            + p["coef_intensity"] * intensity
            + p["noise_sd"] * noise[:, k]
        )
        if p["link"] == "log":
            value = np.round(np.exp(eta), 2)
        else:  # 4 d.p., never exactly 0 or 1
            value = np.clip(np.round(expit(eta), 4), 1e-4, 1 - 1e-4)
        values[name] = value
        params[name] = dict(p)
        linked = _link(p["link"], value)
        realised[name] = {
            "mean": float(value.mean()),
            "sd": float(value.std(ddof=1)),
            "min": float(value.min()),
            "max": float(value.max()),
            "corr_m_c": float(np.corrcoef(linked, m_c)[0, 1]),
            "corr_intensity": float(np.corrcoef(linked, intensity)[0, 1]),
        }
    truth = {
        "model": (
            "link(value) = link(level) + coef_m_c * m_c + coef_intensity * intensity + noise_sd "
            "* e, e ~ N(0, 1) per LA and indicator (agency_share and turnover noises correlated "
            "noise_corr_agency_turnover), link log for spend_per_child and logit for the shares; "
            "spend rounded to 0.01 GBP, shares to 4 d.p. Synthetic: levels and coefficients are "
            "assumptions, not estimates from data; the indicators are correlates of the LA's "
            "deprivation and intervention intensity and do not affect any count"
        ),
        "intensity_outcome": INTENSITY_OUTCOME,
        **params,
        "noise_corr_agency_turnover": NOISE_CORR,
        "realised": realised,
    }
    return values, truth


def _la_table(table: pd.DataFrame, la_idx: np.ndarray, dec, indicators: dict) -> pd.DataFrame:
    """One row per LA: totals over its synthetic LSOAs, deprivation and indicators."""
    n_la = len(dec.la)
    children = table["children"].to_numpy(dtype=float)
    income = table["income"].to_numpy(dtype=float)
    population = _group_sum(table["population"].to_numpy(dtype=float), la_idx, n_la)
    area = _group_sum(table["area_km2"].to_numpy(dtype=float), la_idx, n_la)
    kids = _group_sum(children, la_idx, n_la)
    names = table.groupby("la", sort=False)["la_name"].first()
    return pd.DataFrame(
        {
            "la": np.asarray(dec.la, dtype=object),
            "la_name": names.reindex(dec.la).to_numpy(dtype=object),
            "n_lsoa": np.bincount(la_idx, minlength=n_la).astype(np.int64),
            "children": kids.astype(np.int64),
            "population": population.astype(np.int64),
            "area_km2": np.round(area, 6),
            "density": np.round(population / area, 2),
            "income_mean": _group_sum(children * income, la_idx, n_la) / kids,
            "m_c": np.asarray(dec.m_c, dtype=float),
            **indicators,
        }
    )[LA_COLUMNS]
