"""Child-level records shaped like the Children in Need (CIN) Census, with known truth.

:func:`simulate_records` turns an LSOA table (the synthetic England of
:mod:`socialgradient.data.synthetic.england`, or a real ``geography``) into the census's child-level
tables -- children, referral episodes, factors identified at assessment -- plus the child
population by stratum (the denominators). :mod:`socialgradient.data.census.linkage` aggregates them
back to LSOA x stratum counts. A reader of real CIN Census returns fills the same
:class:`Records` tables (the column contract is :data:`COLUMNS`, documented in
``data/README.md``, section "Child-level records").

How the records are made, per collection year (year ending 31 March ``year``), all vectorised:

1. **Population.** Each LSOA's ``children`` (aged 0-15, as in the synthetic table) are split
   multinomially into age bands 0-4, 5-9, 10-15 (5/16, 5/16, 6/16) x gender x broad ethnicity;
   16-17 year olds are added as Poisson(children * 2/16). The non-White share is higher in urban,
   deprived LSOAs and varies by LA (:data:`ETHNICITY`).
2. **Referrals** per LSOA x stratum cell: Poisson(G_i * mu), G_i ~ Gamma(phi, 1/phi) shared by
   the LSOA's cells (so LSOA totals are exactly NB2), with
   ``log mu = log n + a_la + alpha_s + (b_la + d_s + d_area) * w``. ``a_la, b_la`` are drawn as in
   ``england.simulate`` from its per-threshold PARAMETERS, except that an LA's standardised
   effects are identical across thresholds (needed for nesting, below); ``alpha_s``/``d_s`` are
   stratum offsets (age band, gender, ethnicity), ``d_area`` a rural/urban slope offset. Offsets
   are centred on nominal population shares, so an LSOA total follows the LSOA-level model
   approximately.
3. **Nested thresholds** by binomial thinning: assessed | referred, CIN plan | assessed, CP plan
   | CIN plan, looked after | CIN plan, each with probability ``mu_t / mu_parent`` (times a
   per-LSOA Gamma(k, 1/k) factor that lowers phi to the threshold's value). Each threshold's
   expected count is thus exactly its own log-linear model, and every child with a CP plan was
   referred, assessed and had a CIN plan.
4. **Child rows**: one row and one episode per referred child per year, with dates, factors at
   assessment (independent Bernoulli per census factor code), CP category (softmax over
   categories), re-referral and repeat-plan flags (logistic, with the LA-level association
   ``c_g``: an LA whose referral gradient is steeper than its deprivation predicts re-refers
   more, :data:`~.records_model.REREFERRAL`), and an episode duration from a
   piecewise-exponential hazard, censored at 31 March. Dates then follow the CIN Census
   validation rules (:mod:`~.timeline`: a CP plan starts on a weekday, after the CIN plan
   start and before the closure; no referral over 40 weeks before birth), moved without a
   random draw.
5. **Histories** (:mod:`~.history`): every re-referral and repeat CP plan is
   given a real earlier episode -- the same child in the previous simulated year, or an earlier
   episode in the same year -- so children persist across years and DfE-style derivations
   from the dates agree with the flags; what falls before the first simulated year is counted
   in ``truth["history"]``.

**Population mimicked: the DfE census, not the study.** The LSOA table of
:mod:`~.england` mimics the study population (school-aged children linked
in 2018-19: ~100 per 10,000 in the least deprived neighbourhoods, ~175 nationally). These
records mimic what DfE publishes from the full census -- all referrals of children aged 0-17 --
so every threshold's intercept is raised by :data:`LEVEL_SHIFT`, which moves the national rate
of referred children from what ``england.PARAMETERS`` give on the default geography
(:data:`STUDY_REFERRED_CHILDREN_PER_10K`) to DfE's 2018-19 figure, 575,290 referred children in
11.79 million (488 per 10,000); CP plans are raised a further :data:`CP_PLAN_SHIFT` to DfE's
ratio of plan starts to referred children; and each LA's intercept deviation follows its
observed DfE referral rate (:func:`_la_effects`). Gradients and every other parameter are
unchanged; national and per-LA rates are compared with the DfE tables in the tests.

Every true parameter is in ``Records.truth`` with a definition (``truth["definitions"]``).
Known simplifications: children do not move LSOA; LA effects and populations are the same in
every year.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import expit

from socialgradient.data.deprivation import decompose
from socialgradient.data.records import (  # noqa: F401 (names read from here, as before)
    AGE_BANDS,
    AGE_RANGE,
    CP_CATEGORIES,
    DURATION,
    ETHNICITIES,
    ETHNICITY,
    FACTORS,
    GENDERS,
    MALE_SHARE,
    NOMINAL_SHARES,
    OUTCOME_LEVELS,
    PARENT,
    RAW_OFFSETS,
    REPEAT_CP,
    REREFERRAL,
    RURAL_SHARE,
    RURAL_SLOPE,
    SHIFTS,
    TABLE_COLUMNS,
    THRESHOLDS,
    Records,
    closure_reasons,
    days,
    geography_table,
    piecewise_exponential,
    referral_sources,
)
from socialgradient.data.synthetic import england, history
from socialgradient.data.synthetic.records_truth import build_truth
from socialgradient.data.synthetic.records_year import _year


def _centred(dim: str) -> dict:
    """Stratum offsets of ``dim`` centred: sum share*exp(alpha) = 1, sum share*d = 0."""
    share, raw = NOMINAL_SHARES[dim], RAW_OFFSETS[dim]
    norm = math.log(sum(share[k] * math.exp(raw["alpha"][k]) for k in share))
    dbar = sum(share[k] * raw["d"][k] for k in share)
    return {
        "alpha": {k: raw["alpha"][k] - norm for k in share},
        "d": {k: raw["d"][k] - dbar for k in share},
    }


def _la_effects(rng, m_c: np.ndarray, codes) -> tuple[dict, np.ndarray]:
    """(a_la, b_la) per threshold from england.PARAMETERS (intercepts + SHIFTS).

    One standardised pair (e_a, e_b) per LA, shared by all thresholds. ``e_a`` is calibrated
    to the LA's observed DfE 2018-19 referral rate where the calibration table has one for the
    LA code: the standardised residual of log(rate) regressed on m_c across those LAs (so the
    LAs that refer more than their deprivation predicts do so here too). Other LAs, and all
    of ``e_b``, are N(0, 1) draws. Returns (effects, mask of the calibrated LAs).
    """
    e = rng.standard_normal((len(m_c), 2))
    rate = england.load_calibration().set_index("la")["dfe_referrals_per_10k_2019"]
    observed = pd.Series(np.asarray(codes, dtype=object)).map(rate).to_numpy(float)
    calibrated = np.isfinite(observed) & (observed > 0)
    if calibrated.sum() >= 10:
        y, x = np.log(observed[calibrated]), m_c[calibrated]
        slope, icpt = np.polyfit(x, y, 1)
        res = y - icpt - slope * x
        e[calibrated, 0] = (res - res.mean()) / res.std()
    else:
        calibrated[:] = False
    out = {}
    for t in THRESHOLDS:
        p = england.PARAMETERS[t]
        b_w, sa, sb, rho = math.log(p["gradient"]), p["sigma_a"], p["sigma_b"], p["rho"]
        a_la = p["a"] + SHIFTS[t] + p["b_b"] * m_c + sa * e[:, 0]
        b_la = b_w + england.B_X * m_c + sb * (rho * e[:, 0] + math.sqrt(1 - rho**2) * e[:, 1])
        out[t] = (a_la, b_la)
    return out, calibrated


def _population(rng, geo: pd.DataFrame, m_la_dev: np.ndarray, la_idx) -> dict:
    """Cells (lsoa x age band x gender x ethnicity) of the child population 0-17."""
    n0 = np.rint(geo["children"].to_numpy(float)).astype(np.int64)
    income = geo["income"].to_numpy(float)
    urban = ~geo["rural"].to_numpy(bool)
    e = ETHNICITY
    nonwhite = expit(
        e["base"] + e["urban"] * urban + e["income"] * (income - 0.123) + m_la_dev[la_idx]
    )
    eth = np.column_stack([1 - nonwhite] + [nonwhite * e["split"][k] for k in ETHNICITIES[1:]])
    sex = np.array([MALE_SHARE, 1 - MALE_SHARE])
    young = np.array([5, 5, 6]) / 16
    p_young = young[None, :, None, None] * sex[None, None, :, None] * eth[:, None, None, :]
    counts = np.zeros((len(geo), 4, 2, 5), dtype=np.int64)
    counts[:, :3] = rng.multinomial(n0, p_young.reshape(len(geo), -1)).reshape(len(geo), 3, 2, 5)
    n16 = rng.poisson(n0 * 2 / 16)
    counts[:, 3] = rng.multinomial(
        n16, (sex[None, :, None] * eth[:, None, :]).reshape(len(geo), -1)
    ).reshape(len(geo), 2, 5)
    lsoa, band, gender, ethn = (a.ravel() for a in np.indices(counts.shape))
    return dict(lsoa=lsoa, band=band, gender=gender, eth=ethn, n=counts.ravel())


def simulate_records(
    seed: int = england.DEFAULT_SEED,
    years=(2019,),
    scale: float = 1.0,
    geography: pd.DataFrame | None = None,
) -> Records:
    """Simulate CIN-Census-shaped child-level records with known truth.

    Parameters
    ----------
    seed : int
        Seed; the same arguments give identical tables and truth.
    years : int or sequence of int
        Collection years (the year ending 31 March ``year``). Counts are drawn independently
        per year; re-referred children of consecutive years are then linked (the same child).
    scale : float
        Passed to :func:`socialgradient.data.synthetic.england.simulate` when ``geography`` is None.
    geography : DataFrame, optional
        A real LSOA table with columns ``lsoa, la, income`` (0-1), ``children`` (aged 0-15)
        and ``rural`` (bool) used instead of the synthetic neighbourhoods (``seed``'s
        synthetic England at ``scale``).
    """
    years = (years,) if isinstance(years, int | np.integer) else tuple(years)
    years = tuple(int(y) for y in years)
    if not years or len(set(years)) != len(years):
        raise ValueError(f"years must be distinct and non-empty, got {years}")
    geo = geography_table(geography, seed, scale)
    dec = decompose(geo["income"], geo["children"], geo["la"])
    rng = np.random.default_rng([int(seed), 5])  # a stream apart from england.simulate's
    effects, calibrated = _la_effects(rng, dec.m_c, dec.la)
    ref = england.PARAMETERS["referrals"]
    effects["referral_departure"] = effects["referrals"][1] - (
        math.log(ref["gradient"]) + england.B_X * dec.m_c
    )
    u_a, u_b = effects["durations"] = tuple(
        rng.normal(0.0, sd, len(dec.la)) for sd in DURATION["la_sd"]
    )
    # An episode's log hazard ratio but for its outcome level's, per LSOA.
    effects["duration_hr"] = (
        DURATION["g_b"] * dec.m_c[dec.la_index]
        + u_a[dec.la_index]
        + (DURATION["g_w"] + u_b[dec.la_index]) * dec.w
    )
    eth_dev = rng.normal(0.0, ETHNICITY["la_sd"], len(dec.la))
    cells = _population(rng, geo, eth_dev, dec.la_index)
    cells = {k: v[cells["n"] > 0] for k, v in cells.items()}
    off = {dim: _centred(dim) for dim in NOMINAL_SHARES}
    levels = {"age_band": AGE_BANDS, "gender": GENDERS, "ethnicity": ETHNICITIES}
    index = {"age_band": cells["band"], "gender": cells["gender"], "ethnicity": cells["eth"]}
    rural = geo["rural"].to_numpy(bool)[cells["lsoa"]]
    cells["alpha"] = sum(np.array([off[k]["alpha"][v] for v in levels[k]])[index[k]] for k in off)
    cells["d"] = sum(np.array([off[k]["d"][v] for v in levels[k]])[index[k]] for k in off)
    cells["d"] = cells["d"] + np.where(
        rural, RURAL_SLOPE * (1 - RURAL_SHARE), -RURAL_SLOPE * RURAL_SHARE
    )
    parts, counter = [], 1
    for year in years:
        parts.append(_year(rng, year, cells, geo, dec, effects, counter))
        counter += len(parts[-1]["children"])
    lsoa_hr = pd.Series(effects["duration_hr"], index=geo["lsoa"].to_numpy())
    history_report = history.link(rng, dict(zip(years, parts, strict=True)), lsoa_hr)

    def cat(values, codes):
        return pd.Categorical.from_codes(codes, categories=list(values))

    la_codes, la_cats = pd.factorize(geo["la"])
    pop = pd.DataFrame(
        {
            "lsoa": cat(geo["lsoa"], cells["lsoa"]),
            "la": pd.Categorical.from_codes(la_codes[cells["lsoa"]], la_cats),
            "age_band": cat(AGE_BANDS, cells["band"]),
            "gender": cat(GENDERS, cells["gender"]),
            "ethnicity": cat(ETHNICITIES, cells["eth"]),
            "children": cells["n"],
        }
    )
    population = pd.concat([pop.assign(year=np.int64(y)) for y in years], ignore_index=True)
    population = population[list(TABLE_COLUMNS["population"])]
    tables = {
        k: pd.concat([p[k] for p in parts], ignore_index=True)
        for k in ("children", "episodes", "factors")
    }
    truth = build_truth(
        seed,
        scale,
        years,
        geography is None,
        geo,
        dec,
        effects,
        off,
        parts,
        population,
        history_report,
        list(dec.la[calibrated]),
    )
    return Records(population=population, geography=geo, truth=truth, **tables)
