"""A deterministic synthetic England with known truth: the package's embedded default data.

One row per synthetic neighbourhood (LSOA) in England's 150 children's services local
authorities (LAs), with the child population (exposure), the neighbourhood's income deprivation
and counts of children reaching five thresholds of children's social care in a year. It mimics
the population of Hood, Goldacre et al. (2021), *The social gradient in children's social care*:
children (aged 0-15) with a referral, assessment, ... linked to their neighbourhood in 2018-19.

How it is made (steps 1-3 draw from one ``numpy.random.Generator`` seeded with ``seed``, steps
4-5 from a second, ``default_rng([seed, 7])``):

1. **Neighbourhoods.** Each LA keeps its real code, name and (times ``scale``, at least 2)
   number of LSOAs from the calibration table (:mod:`socialgradient.data.calibration`). LSOA
   income deprivation is drawn on the logit scale from a normal with the LA's logit mean and SD,
   truncated to the LA's observed range, and rounded to 3 d.p. as the IoD publishes it.
   Children per LSOA are log-normal with the LA's mean and SD, correlated (0.33 on the
   log/logit scale, as observed) with deprivation. Within each LA the LA's share of LSOAs is
   rural, chosen with a preference for the less deprived ones.
2. **Decomposition.** :func:`socialgradient.deprivation.decompose` on the final (rounded)
   income and children gives ``w`` (within-LA deprivation), ``m_c`` (LA deprivation relative
   to the national mean ``x_bar``), all in 10-percentage-point units.
3. **LA effects and counts.** For each threshold, ``(a_la, b_la) ~ MVN((a + b_b m_c,
   b_w + b_x m_c), Sigma)``, Sigma from ``sigma_a, sigma_b, rho``; then
   ``y ~ NegBinomial2(children * exp(a_la + b_la w), phi)`` (variance ``mu + mu^2/phi``),
   drawn as a gamma-Poisson mixture. An LA's standardised effects are correlated (0.7) across
   thresholds -- LAs that intervene a lot do so at every stage -- which leaves each threshold's
   marginal model exactly as above. Counts are conditionally independent across thresholds
   (not nested).

4. **Population, area and density** (a second stream, ``default_rng([seed, 7])``, so that
   every column and truth value above is the same as without it). Each LSOA gets a total
   population (all ages) and a land area (km2) such that each LA's LSOAs sum to its real
   mid-2015 population and real area (times the LA's synthetic / real number of LSOAs, i.e.
   exactly at ``scale=1``), rural LSOAs being ~50 times larger than urban ones; see
   :func:`_population_and_area`. ``density`` = population / area.
5. **LA indicators** (same second stream): children's social care spend per child,
   agency-worker share and social-worker turnover per LA. **Entirely synthetic**: no public
   figure for them is in the shared data, and their levels and coefficients are assumptions
   (:data:`LA_INDICATORS`), not estimates. They depend on the LA's deprivation ``m_c`` and its
   realised intervention intensity (the standardised referral intercept residual
   ``(a_la - a - b_b m_c) / sigma_a``) plus noise. They are correlates, not causes: no count
   depends on them.

The true values are in ``Synthetic.truth``; the per-LA realised ``a_la``/``b_la`` are what
parameter-recovery tests compare posterior estimates with. The per-LA table
(``Synthetic.las``) holds each LA's totals, deprivation and indicators.

Regenerate the committed default (run from the repository root)::

    python -m socialgradient.data.synthetic data
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr, ndtri

from socialgradient.deprivation import UNIT, decompose
from socialgradient.files import atomic_write

DEFAULT_SEED = 2021
OUTCOMES = ("referrals", "assessments", "cin_plans", "cp_plans", "looked_after")

#: Cross-level interaction shared by all thresholds. The study reports gradients of 1.62 at an
#: averagely deprived LA, 2.33 at one 10 points less deprived and 1.39 at one 10 points more;
#: no log-linear interaction hits all three, so b_x = (log 1.39 - log 2.33) / 2 matches the
#: contrast between the two, giving exp(b_w -/+ b_x) = 2.10 and 1.25 around 1.62.
B_X = round((math.log(1.39) - math.log(2.33)) / 2, 4)  # -0.2583

#: True parameters per threshold. ``gradient`` is exp(b_w), the social gradient score at an
#: averagely deprived LA; ``a`` is the log rate per child per year at w = 0 in an LA with
#: m_c = 0, calibrated so that referrals run at ~100 per 10,000 children in neighbourhoods with
#: income < 0.03 and the national rates of the later thresholds are 0.8, 0.3, 0.1 and 0.05 of
#: the referral rate. With b_w, b_b and b_x as here the model cannot also reach the study's
#: ~1,370 in the most deprived neighbourhoods (~14 x): the within-LA gradient flattens in the
#: deprived LAs that hold those neighbourhoods and the between-LA slope b_b is below b_w, so
#: the expected rate at income >= 0.45 is ~510 (~5 x). See data/README.md.
PARAMETERS = {
    "referrals": dict(a=-4.17, gradient=1.62, b_b=0.25, sigma_a=0.25, sigma_b=0.19, rho=-0.3,
                      phi=20.0),
    "assessments": dict(a=-4.40, gradient=1.66, b_b=0.27, sigma_a=0.25, sigma_b=0.19, rho=-0.3,
                        phi=20.0),
    "cin_plans": dict(a=-5.40, gradient=1.71, b_b=0.30, sigma_a=0.27, sigma_b=0.19, rho=-0.3,
                      phi=15.0),
    "cp_plans": dict(a=-6.54, gradient=1.80, b_b=0.34, sigma_a=0.30, sigma_b=0.20, rho=-0.3,
                     phi=10.0),
    "looked_after": dict(a=-7.26, gradient=1.90, b_b=0.38, sigma_a=0.32, sigma_b=0.20, rho=-0.3,
                         phi=8.0),
}

LA_EFFECT_SHARED = 0.7  # correlation of an LA's standardised effects between thresholds
CHILDREN_INCOME_CORR = 0.33  # corr(log children, logit income) within LA, as observed
RURAL_INCOME_CORR = -0.5  # latent correlation used to pick rural LSOAs (less deprived)
CHILDREN_RANGE = (20, 2000)
LSOA_PREFIX = "E019"  # real LSOA11 codes run E01000001-E01033768: no collision
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
AREA_MODEL = dict(urban_km2=0.3854, rural_km2=18.7071, noise_sd=0.7, noise_clip=2.5,
                  income_slope=-0.25)

#: LA indicators: **assumed**, not estimated (no public source for them is in the shared data).
#: value = inverse_link(link(level) + coef_m_c * m_c + coef_intensity * intensity + noise_sd *
#: e), e ~ N(0, 1), with the agency-share and turnover noises correlated NOISE_CORR. Levels are
#: plausible orders of magnitude chosen for illustration, not calibrated to any data here.
LA_INDICATORS = {
    "spend_per_child": dict(link="log", level=900.0, coef_m_c=0.30, coef_intensity=0.12,
                            noise_sd=0.20, units="GBP per child aged 0-17 per year"),
    "agency_share": dict(link="logit", level=0.15, coef_m_c=0.30, coef_intensity=0.20,
                         noise_sd=0.45, units="share (0-1) of children's social worker FTE"),
    "turnover": dict(link="logit", level=0.15, coef_m_c=0.20, coef_intensity=0.15,
                     noise_sd=0.30, units="share (0-1) of social workers leaving in the year"),
}
NOISE_CORR = 0.5  # correlation of the agency-share and turnover noises (workforce instability)
INTENSITY_OUTCOME = "referrals"

#: Columns of ``Synthetic.las`` (``data/las.parquet``), one row per LA.
LA_COLUMNS = ["la", "la_name", "n_lsoa", "children", "population", "area_km2", "density",
              "income_mean", "m_c", *LA_INDICATORS]

DEFINITIONS = {
    "seed": "seed of numpy.random.default_rng that generated the table",
    "scale": "multiplier of each LA's real number of LSOAs (at least 2 per LA)",
    "n_lsoa": "number of synthetic neighbourhoods (rows of the table)",
    "n_la": "number of local authorities",
    "x_bar": "child-weighted national mean of x = 10 * income (10-point units)",
    "unit": "percentage points of income deprivation per model unit of x",
    "la_effect_shared": "correlation of an LA's standardised (a_la, b_la) draws between thresholds",
    "definitions": "one-line definition of every key used in this truth",
    "thresholds": "true parameters for each outcome column of the table",
    "a": "intercept: log rate per child per year at w = 0 in an LA with m_c = 0",
    "b_w": "mean within-LA slope per 10 points of income at m_c = 0",
    "b_b": "between-LA slope: change in a_la's mean per 10 points of LA mean deprivation m_c",
    "b_x": "cross-level interaction: change in b_la's mean per 10 points of m_c",
    "sigma_a": "SD of a_la around a + b_b * m_c",
    "sigma_b": "SD of b_la around b_w + b_x * m_c",
    "rho": "correlation of the LA intercept and slope deviations",
    "phi": "negative binomial dispersion (variance mu + mu^2 / phi)",
    "gradient_mean_la": "exp(b_w): social gradient score at an averagely deprived LA",
    "gradient_less_deprived_la": "exp(b_w - b_x): gradient at an LA 10 points less deprived",
    "gradient_more_deprived_la": "exp(b_w + b_x): gradient at an LA 10 points more deprived",
    "between_la_gradient": "exp(b_b): rate ratio per 10 points of LA mean deprivation",
    "contextual_effect": "b_b - b_w: between minus within slope (< 0: inverse intervention)",
    "la": "realised LA effects, keyed by LA code",
    "a_la": "realised LA intercept (log rate per child at w = 0)",
    "b_la": "realised LA within-LA slope per 10 points",
    "gradient": "exp(b_la): the LA's social gradient score",
    "m_c": "LA child-weighted mean x minus x_bar (10-point units)",
}

#: Definitions of the keys added with population, area, density and the LA indicators.
NEW_DEFINITIONS = {
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
    "spend_per_child": "children's social care spend, GBP per child aged 0-17 per year "
    "(synthetic)",
    "agency_share": "share (0-1) of children's social worker FTE who are agency staff "
    "(synthetic)",
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


@dataclass(frozen=True)
class Synthetic:
    """A synthetic data set and the truth that generated it.

    Attributes
    ----------
    table : DataFrame
        One row per LSOA: ``lsoa, la, la_name, children, income, rural``, the counts
        ``referrals, assessments, cin_plans, cp_plans, looked_after`` (int64) and
        ``population`` (int64), ``area_km2``, ``density`` (persons per km2).
    truth : dict
        JSON-serialisable true parameters (see ``truth["definitions"]``).
    las : DataFrame or None
        One row per LA, columns :data:`LA_COLUMNS` (totals over the LA's synthetic LSOAs, its
        deprivation and the synthetic indicators).
    """

    table: pd.DataFrame
    truth: dict
    las: pd.DataFrame | None = None


def load_calibration() -> pd.DataFrame:
    """The committed per-LA calibration table (package data ``la_calibration.csv``)."""
    source = resources.files("socialgradient.data") / "la_calibration.csv"
    with source.open("r", encoding="utf-8") as f:
        return pd.read_csv(f, comment="#", dtype={"la": str, "la_name": str})


def _lsoas_per_la(cal: pd.DataFrame, scale: float) -> np.ndarray:
    return np.maximum(2, np.rint(cal["n_lsoa"].to_numpy() * scale)).astype(np.int64)


def _neighbourhoods(rng: np.random.Generator, cal: pd.DataFrame, scale: float) -> pd.DataFrame:
    n_per_la = _lsoas_per_la(cal, scale)
    n = int(n_per_la.sum())
    if n > 99_999:
        raise ValueError(f"scale={scale} gives {n} LSOAs; codes allow at most 99,999")
    idx = np.repeat(np.arange(len(cal)), n_per_la)

    def col(name: str) -> np.ndarray:
        return cal[name].to_numpy(dtype=float)[idx]

    # Income: truncated normal on the logit scale, by inversion.
    mean, sd = col("logit_income_mean"), col("logit_income_sd")
    lo = (np.log(col("income_min")) - np.log1p(-col("income_min")) - mean) / sd
    hi = (np.log(col("income_max")) - np.log1p(-col("income_max")) - mean) / sd
    u = rng.uniform(size=n)
    z = ndtri(ndtr(lo) + u * (ndtr(hi) - ndtr(lo)))
    income = np.round(expit(mean + sd * z), 3)

    # Children: log-normal with the LA's mean and SD, correlated with deprivation.
    cv2 = (col("children_sd") / col("children_mean")) ** 2
    s = np.sqrt(np.log1p(cv2))
    mu = np.log(col("children_mean")) - s**2 / 2
    r = CHILDREN_INCOME_CORR
    e = r * z + math.sqrt(1 - r**2) * rng.standard_normal(n)
    children = np.clip(np.rint(np.exp(mu + s * e)), *CHILDREN_RANGE).astype(np.int64)

    # Rural: in each LA, the LA's share of LSOAs with the highest latent score.
    r = RURAL_INCOME_CORR
    latent = r * z + math.sqrt(1 - r**2) * rng.standard_normal(n)
    order = np.lexsort((-latent, idx))  # by LA, then latent descending
    starts = np.concatenate([[0], np.cumsum(n_per_la)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[idx[order]]
    n_rural = np.rint(cal["rural_share"].to_numpy() * n_per_la)[idx]
    rural = rank < n_rural

    return pd.DataFrame(
        {
            "lsoa": [f"{LSOA_PREFIX}{i:05d}" for i in range(1, n + 1)],
            "la": cal["la"].to_numpy()[idx],
            "la_name": cal["la_name"].to_numpy()[idx],
            "children": children,
            "income": income,
            "rural": rural,
        }
    )


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
            raise ValueError(f"calibration table lacks {col!r} for some LAs: rebuild it with "
                             "socialgradient.data.calibration (needs the boundaries)")
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
        eta = (_link(p["link"], np.array(p["level"])) + p["coef_m_c"] * m_c
               + p["coef_intensity"] * intensity + p["noise_sd"] * noise[:, k])
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


def _threshold_truth(p: dict) -> dict:
    b_w = math.log(p["gradient"])
    return {
        "a": p["a"],
        "b_w": b_w,
        "b_b": p["b_b"],
        "b_x": B_X,
        "sigma_a": p["sigma_a"],
        "sigma_b": p["sigma_b"],
        "rho": p["rho"],
        "phi": p["phi"],
        "gradient_mean_la": p["gradient"],
        "gradient_less_deprived_la": math.exp(b_w - B_X),
        "gradient_more_deprived_la": math.exp(b_w + B_X),
        "between_la_gradient": math.exp(p["b_b"]),
        "contextual_effect": p["b_b"] - b_w,
    }


def simulate(
    seed: int = DEFAULT_SEED, scale: float = 1.0, calibration: pd.DataFrame | None = None
) -> Synthetic:
    """Simulate the synthetic England.

    Parameters
    ----------
    seed : int
        Seed of the ``numpy.random.Generator``; the same seed gives an identical result.
    scale : float
        Multiplies each LA's number of LSOAs (rounded, at least 2): ``scale=1`` gives 32,844
        LSOAs in 150 LAs, ``scale=0.05`` about 1,650.
    calibration : DataFrame, optional
        Per-LA table as built by :func:`socialgradient.data.calibration.build_calibration`;
        defaults to the committed package copy.
    """
    if not scale > 0:
        raise ValueError("scale must be positive")
    cal = load_calibration() if calibration is None else calibration
    cal = cal.sort_values("la", kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    table = _neighbourhoods(rng, cal, scale)

    dec = decompose(table["income"], table["children"], table["la"])
    m_c, la_idx, w = dec.m_c, dec.la_index, dec.w
    n_la = len(dec.la)
    exposure = table["children"].to_numpy(dtype=float)

    shared = rng.standard_normal((n_la, 2))
    thresholds = {}
    for outcome in OUTCOMES:
        t = _threshold_truth(PARAMETERS[outcome])
        own = rng.standard_normal((n_la, 2))
        e = math.sqrt(LA_EFFECT_SHARED) * shared + math.sqrt(1 - LA_EFFECT_SHARED) * own
        sa, sb, rho = t["sigma_a"], t["sigma_b"], t["rho"]
        a_la = t["a"] + t["b_b"] * m_c + sa * e[:, 0]
        b_la = t["b_w"] + t["b_x"] * m_c + sb * (rho * e[:, 0] + math.sqrt(1 - rho**2) * e[:, 1])
        mu = exposure * np.exp(a_la[la_idx] + b_la[la_idx] * w)
        lam = rng.gamma(t["phi"], mu / t["phi"])
        table[outcome] = rng.poisson(lam).astype(np.int64)
        t["la"] = {
            str(code): {
                "a_la": float(a_la[j]),
                "b_la": float(b_la[j]),
                "gradient": float(np.exp(b_la[j])),
                "m_c": float(m_c[j]),
            }
            for j, code in enumerate(dec.la)
        }
        thresholds[outcome] = t

    # Everything below draws from its own stream: the table and truth above are unchanged.
    rng_new = np.random.default_rng([int(seed), NEW_STREAM])
    if not np.array_equal(np.asarray(dec.la, dtype=str), cal["la"].to_numpy(dtype=str)):
        raise ValueError("calibration LA codes must be unique")
    n_per_la = _lsoas_per_la(cal, scale)
    population, area, density_truth = _population_and_area(rng_new, table, cal, n_per_la)
    table["population"] = population
    table["area_km2"] = area
    table["density"] = np.round(population / area, 2)

    t = thresholds[INTENSITY_OUTCOME]
    a_la = np.array([v["a_la"] for v in t["la"].values()])
    intensity = (a_la - (t["a"] + t["b_b"] * m_c)) / t["sigma_a"]
    indicators, indicator_truth = _la_indicators(rng_new, m_c, intensity)
    indicator_truth["by_la"] = {
        str(code): {
            "m_c": float(m_c[j]),
            "intensity": float(intensity[j]),
            **{name: float(v[j]) for name, v in indicators.items()},
        }
        for j, code in enumerate(dec.la)
    }
    las = _la_table(table, la_idx, dec, indicators)

    truth = {
        "seed": int(seed),
        "scale": float(scale),
        "n_lsoa": len(table),
        "n_la": n_la,
        "x_bar": float(dec.x_bar),
        "unit": UNIT,
        "la_effect_shared": LA_EFFECT_SHARED,
        "definitions": {**DEFINITIONS, **NEW_DEFINITIONS},
        "thresholds": thresholds,
        "density": density_truth,
        "la_indicators": indicator_truth,
    }
    return Synthetic(table=table, truth=truth, las=las)


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


def write(synthetic: Synthetic, out_dir) -> None:
    """Write ``neighbourhoods.parquet``, ``las.parquet`` (when ``synthetic.las`` is set) and
    ``truth.json`` into ``out_dir``, each atomically, in that order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(
        out / "neighbourhoods.parquet",
        lambda tmp: synthetic.table.to_parquet(tmp, index=False, compression="zstd"),
    )
    if synthetic.las is not None:
        atomic_write(
            out / "las.parquet",
            lambda tmp: synthetic.las.to_parquet(tmp, index=False, compression="zstd"),
        )
    text = json.dumps(synthetic.truth, indent=1) + "\n"
    atomic_write(out / "truth.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "data"
    seed = int(argv[1]) if len(argv) > 1 else DEFAULT_SEED
    scale = float(argv[2]) if len(argv) > 2 else 1.0
    synthetic = simulate(seed=seed, scale=scale)
    write(synthetic, out)
    print(f"wrote {out}: {len(synthetic.table)} LSOAs in {synthetic.truth['n_la']} LAs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
