"""A deterministic synthetic England with known truth: the package's embedded default data.

One row per synthetic neighbourhood (LSOA) in England's 150 children's services local
authorities (LAs), with the child population (exposure), the neighbourhood's income deprivation
and counts of children reaching five thresholds of children's social care in a year. It mimics
the population of Hood, Goldacre et al. (2021), *The social gradient in children's social care*:
children (aged 0-15) with a referral, assessment, ... linked to their neighbourhood in 2018-19.

How it is made (steps 1-3 draw from one ``numpy.random.Generator`` seeded with ``seed``, steps
4-5, made by :mod:`~socialgradient.data.synthetic.context`, from a second,
``default_rng([seed, 7])``):

1. **Neighbourhoods.** Each LA keeps its real code, name and (times ``scale``, at least 2)
   number of LSOAs from the calibration table (:mod:`~.calibration`). LSOA
   income deprivation is drawn on the logit scale from a normal with the LA's logit mean and SD,
   truncated to the LA's observed range, and rounded to 3 d.p. as the IoD publishes it.
   Children per LSOA are log-normal with the LA's mean and SD, correlated (0.33 on the
   log/logit scale, as observed) with deprivation. Within each LA the LA's share of LSOAs is
   rural, chosen with a preference for the less deprived ones.
2. **Decomposition.** :func:`socialgradient.data.deprivation.decompose` on the final (rounded)
   income and children gives ``w`` (within-LA deprivation), ``m_c`` (LA deprivation relative
   to the national mean ``x_bar``), all in 10-percentage-point units.
3. **LA effects and counts.** For each threshold, ``(a_la, b_la) ~ MVN((a + b_b m_c,
   b_w + b_x m_c), Sigma)``, Sigma from ``sigma_a, sigma_b, rho``; then
   ``y ~ NegBinomial2(children * exp(a_la + b_la w), phi)`` (variance ``mu + mu^2/phi``),
   drawn as a gamma-Poisson mixture. An LA's standardised effects are correlated (0.7) across
   thresholds -- LAs that intervene a lot do so at every stage -- which leaves each threshold's
   marginal model exactly as above. Counts are conditionally independent across thresholds
   (not nested); ``simulate(curvature=k)`` adds a curve in ``w`` (:mod:`~.curve`).

4. **Population, area and density** (a second stream, ``default_rng([seed, 7])``, so that
   every column and truth value above is the same as without it). Each LSOA gets a total
   population (all ages) and a land area (km2) summing to its LA's real population and area;
   ``density`` = population / area. See :mod:`socialgradient.data.synthetic.context`.
5. **LA indicators** (same second stream): synthetic children's social care spend per child,
   agency-worker share and social-worker turnover per LA -- assumptions, not estimates, and
   correlates of the LA's deprivation and intervention intensity, not causes: no count depends
   on them. See :mod:`socialgradient.data.synthetic.context`.

The true values are in ``Synthetic.truth``; the per-LA realised ``a_la``/``b_la`` are what
parameter-recovery tests compare posterior estimates with. The per-LA table
(``Synthetic.las``) holds each LA's totals, deprivation and indicators.

Regenerate the committed default (run from the repository root)::

    python -m socialgradient.data.synthetic.england data
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr, ndtri

from socialgradient.data.deprivation import UNIT, decompose
from socialgradient.data.synthetic import context, curve
from socialgradient.util.files import atomic_write

log = logging.getLogger(__name__)
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
    "referrals": dict(
        a=-4.17, gradient=1.62, b_b=0.25, sigma_a=0.25, sigma_b=0.19, rho=-0.3, phi=20.0
    ),
    "assessments": dict(
        a=-4.40, gradient=1.66, b_b=0.27, sigma_a=0.25, sigma_b=0.19, rho=-0.3, phi=20.0
    ),
    "cin_plans": dict(
        a=-5.40, gradient=1.71, b_b=0.30, sigma_a=0.27, sigma_b=0.19, rho=-0.3, phi=15.0
    ),
    "cp_plans": dict(
        a=-6.54, gradient=1.80, b_b=0.34, sigma_a=0.30, sigma_b=0.20, rho=-0.3, phi=10.0
    ),
    "looked_after": dict(
        a=-7.26, gradient=1.90, b_b=0.38, sigma_a=0.32, sigma_b=0.20, rho=-0.3, phi=8.0
    ),
}

LA_EFFECT_SHARED = 0.7  # correlation of an LA's standardised effects between thresholds
CHILDREN_INCOME_CORR = 0.33  # corr(log children, logit income) within LA, as observed
RURAL_INCOME_CORR = -0.5  # latent correlation used to pick rural LSOAs (less deprived)
CHILDREN_RANGE = (20, 2000)
LSOA_PREFIX = "E019"  # real LSOA11 codes run E01000001-E01033768: no collision

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
        One row per LA, columns :data:`~.context.LA_COLUMNS` (totals over the
        LA's synthetic LSOAs, its deprivation and the synthetic indicators).
    """

    table: pd.DataFrame
    truth: dict
    las: pd.DataFrame | None = None


def load_calibration() -> pd.DataFrame:
    """Read the committed per-LA calibration table (package data ``la_calibration.csv``)."""
    source = resources.files("socialgradient.data.synthetic") / "la_calibration.csv"
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


def _threshold_truth(p: dict) -> dict:
    """Return a threshold's truth from its parameters.

    The parameters are as in :data:`PARAMETERS`; ``b_x`` is optional (:data:`B_X` when absent).
    """
    b_w = math.log(p["gradient"])
    b_x = p.get("b_x", B_X)
    return {
        "a": p["a"],
        "b_w": b_w,
        "b_b": p["b_b"],
        "b_x": b_x,
        "sigma_a": p["sigma_a"],
        "sigma_b": p["sigma_b"],
        "rho": p["rho"],
        "phi": p["phi"],
        "gradient_mean_la": p["gradient"],
        "gradient_less_deprived_la": math.exp(b_w - b_x),
        "gradient_more_deprived_la": math.exp(b_w + b_x),
        "between_la_gradient": math.exp(p["b_b"]),
        "contextual_effect": p["b_b"] - b_w,
    }


def la_effects(t: dict, m_c: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return LA intercepts and slopes ``(a_la, b_la)`` of a threshold's truth ``t``.

    ``(a_la, b_la)`` ~ MVN((a + b_b m_c, b_w + b_x m_c), Sigma) with ``sigma_a``, ``sigma_b``
    and ``rho`` of ``t``, from standard normal draws ``e`` (dims la x 2).
    """
    sa, sb, rho = t["sigma_a"], t["sigma_b"], t["rho"]
    a_la = t["a"] + t["b_b"] * m_c + sa * e[:, 0]
    b_la = t["b_w"] + t["b_x"] * m_c + sb * (rho * e[:, 0] + math.sqrt(1 - rho**2) * e[:, 1])
    return a_la, b_la


def simulate(
    seed: int = DEFAULT_SEED,
    scale: float = 1.0,
    calibration: pd.DataFrame | None = None,
    parameters: dict | None = None,
    curvature: float = 0.0,
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
        Per-LA table as built by :func:`~.calibration.build_calibration`;
        defaults to the committed package copy.
    parameters : dict, optional
        True parameters of some thresholds, ``{outcome: {a, gradient, b_b, sigma_a, sigma_b,
        rho, phi[, b_x]}}`` (as in :data:`PARAMETERS`, ``b_x`` defaulting to :data:`B_X`),
        replacing those of :data:`PARAMETERS` for the outcomes given (the calibration study
        draws them, :mod:`socialgradient.study.calibrate`). The neighbourhoods (every column but
        the counts) do not depend on it; counts of later outcomes share the random stream
        and so change too. Without it (the default) the table and truth are exactly the
        default England's.
    curvature : float
        A curved deprivation effect in every threshold (:mod:`~.curve`; 0, the default: none).
    """
    if not scale > 0:
        raise ValueError("scale must be positive")
    kappa = curve.check(curvature)
    cal = load_calibration() if calibration is None else calibration
    cal = cal.sort_values("la", kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    table = _neighbourhoods(rng, cal, scale)

    dec = decompose(table["income"], table["children"], table["la"])
    m_c, la_idx, w = dec.m_c, dec.la_index, dec.w
    n_la = len(dec.la)
    exposure = table["children"].to_numpy(dtype=float)

    unknown = sorted(set(parameters or {}) - set(OUTCOMES))
    if unknown:
        raise ValueError(f"parameters for unknown outcomes {unknown}: choose from {OUTCOMES}")
    chosen = PARAMETERS | (parameters or {})
    shared = rng.standard_normal((n_la, 2))
    thresholds = {}
    for outcome in OUTCOMES:
        t = _threshold_truth(chosen[outcome])
        own = rng.standard_normal((n_la, 2))
        e = math.sqrt(LA_EFFECT_SHARED) * shared + math.sqrt(1 - LA_EFFECT_SHARED) * own
        a_la, b_la = la_effects(t, m_c, e)
        mu = exposure * np.exp(a_la[la_idx] + b_la[la_idx] * w + curve.log_rate(w, kappa))
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
        t.update(curve.entry(kappa, t["b_w"], w, table["income"], exposure, dec.x_bar))
        thresholds[outcome] = t

    # Everything below draws from its own stream: the table and truth above are unchanged.
    rng_new = np.random.default_rng([int(seed), context.NEW_STREAM])
    if not np.array_equal(np.asarray(dec.la, dtype=str), cal["la"].to_numpy(dtype=str)):
        raise ValueError("calibration LA codes must be unique")
    n_per_la = _lsoas_per_la(cal, scale)
    population, area, density_truth = context._population_and_area(rng_new, table, cal, n_per_la)
    table["population"] = population
    table["area_km2"] = area
    table["density"] = np.round(population / area, 2)

    t = thresholds[context.INTENSITY_OUTCOME]
    a_la = np.array([v["a_la"] for v in t["la"].values()])
    intensity = (a_la - (t["a"] + t["b_b"] * m_c)) / t["sigma_a"]
    indicators, indicator_truth = context._la_indicators(rng_new, m_c, intensity)
    indicator_truth["by_la"] = {
        str(code): {
            "m_c": float(m_c[j]),
            "intensity": float(intensity[j]),
            **{name: float(v[j]) for name, v in indicators.items()},
        }
        for j, code in enumerate(dec.la)
    }
    las = context._la_table(table, la_idx, dec, indicators)

    truth = {
        "seed": int(seed),
        "scale": float(scale),
        "n_lsoa": len(table),
        "n_la": n_la,
        "x_bar": float(dec.x_bar),
        "unit": UNIT,
        "la_effect_shared": LA_EFFECT_SHARED,
        "definitions": {**DEFINITIONS, **context.DEFINITIONS, **curve.definitions(kappa)},
        "thresholds": thresholds,
        "density": density_truth,
        "la_indicators": indicator_truth,
    }
    return Synthetic(table=table, truth=truth, las=las)


def write(synthetic: Synthetic, out_dir) -> None:
    """Write ``neighbourhoods.parquet``, ``las.parquet`` and ``truth.json`` into ``out_dir``.

    ``las.parquet`` only when ``synthetic.las`` is set; each atomically, in that order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("neighbourhoods", synthetic.table), ("las", synthetic.las)):
        if frame is not None:
            parquet = partial(frame.to_parquet, index=False, compression="zstd")
            atomic_write(out / f"{name}.parquet", parquet)
    text = json.dumps(synthetic.truth, indent=1) + "\n"
    atomic_write(
        out / "truth.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline="\n")
    )


def main(argv: list[str] | None = None) -> int:
    """Simulate synthetic England and write it (command line: ``OUT [SEED [SCALE]]``)."""
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "data"
    seed = int(argv[1]) if len(argv) > 1 else DEFAULT_SEED
    scale = float(argv[2]) if len(argv) > 2 else 1.0
    synthetic = simulate(seed=seed, scale=scale)
    write(synthetic, out)
    log.info("wrote %s: %d LSOAs in %d LAs", out, len(synthetic.table), synthetic.truth["n_la"])
    return 0


if __name__ == "__main__":
    from socialgradient.util import progress

    progress.configure()
    raise SystemExit(main())
