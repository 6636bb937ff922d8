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
from scipy.special import expit, logit

from socialgradient.data.deprivation import decompose
from socialgradient.data.records import (
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
from socialgradient.data.synthetic import england, history, timeline
from socialgradient.data.synthetic.records_truth import build_truth


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


def _year(rng, year, cells, geo, dec, effects, counter) -> dict:
    """Counts per cell, then one child row and one episode per referred child."""
    li, la_of = cells["lsoa"], dec.la_index[cells["lsoa"]]
    w = dec.w[li]
    base = np.log(cells["n"]) + cells["alpha"] + cells["d"] * w
    n_lsoa = len(geo)
    a, b = effects["referrals"]
    phi = england.PARAMETERS["referrals"]["phi"]
    gam = rng.gamma(phi, 1 / phi, n_lsoa)
    y = {"referrals": rng.poisson(gam[li] * np.exp(base + a[la_of] + b[la_of] * w))}
    var = {"referrals": 1 / phi}
    clipped = {}
    mu = {"referrals": np.exp(base + a[la_of] + b[la_of] * w)}
    for t, par in PARENT.items():
        inv_k = max(0.0, (1 + 1 / england.PARAMETERS[t]["phi"]) / (1 + var[par]) - 1)
        var[t] = (1 + var[par]) * (1 + inv_k) - 1
        h = rng.gamma(1 / inv_k, inv_k, n_lsoa)[li] if inv_k > 0 else 1.0
        (at, bt), (ap, bp) = effects[t], effects[par]
        p = np.exp((at - ap)[la_of] + (bt - bp)[la_of] * w) * h
        clipped[t] = float(np.mean(p[y[par] > 0] > 1)) if np.any(y[par] > 0) else 0.0
        y[t] = rng.binomial(y[par], np.minimum(p, 1.0))
        mu[t] = mu[par] * np.minimum(p / h, 1.0)
    expected = {t: np.bincount(li, weights=m, minlength=n_lsoa) for t, m in mu.items()}

    # One child per referral: position j within its cell sets the thresholds reached.
    nr = y["referrals"]
    cell = np.repeat(np.arange(len(nr)), nr)
    n = len(cell)
    j = np.arange(n) - np.repeat(np.cumsum(nr) - nr, nr)
    assessed, cin, cp = (j < y[t][cell] for t in ("assessments", "cin_plans", "cp_plans"))
    n_la, n_cin = y["looked_after"], y["cin_plans"]
    start = np.floor(rng.uniform(size=len(nr)) * (n_cin - n_la + 1)).astype(np.int64)
    looked = (j >= start[cell]) & (j < start[cell] + n_la[cell])
    level = np.where(looked, 3, np.where(cp, 2, np.where(cin, 1, 0)))
    lsoa = li[cell]
    wi, mci = dec.w[lsoa], dec.m_c[dec.la_index[lsoa]]

    # Child characteristics; date of birth within the 12 months that give the age at 31 March.
    band = cells["band"][cell]
    lo = np.array([AGE_RANGE[k][0] for k in AGE_BANDS])[band]
    hi = np.array([AGE_RANGE[k][1] for k in AGE_BANDS])[band]
    age = lo + np.floor(rng.uniform(size=n) * (hi - lo + 1)).astype(np.int64)
    april = ((year - age - 1 - 1970) * 12 + 3).astype("datetime64[M]").astype("datetime64[D]")
    dob = april + days(rng.integers(0, 365, n))

    # Episode: referral date in the collection year; duration from a piecewise-exponential.
    first = np.datetime64(f"{year - 1}-04-01")
    census = np.datetime64(f"{year}-03-31")
    n_days = int((census - first).astype(int)) + 1
    ref = rng.integers(0, n_days, n)
    rem = n_days - 1 - ref  # whole days from referral to the census date
    log_hr = (
        np.array([DURATION["level_log_hr"][k] for k in OUTCOME_LEVELS])[level]
        + effects["duration_hr"][lsoa]
    )
    dur = piecewise_exponential(rng, log_hr)
    closed = dur < rem + 1
    span = np.minimum(dur, rem + 1)
    o_a = np.minimum(rng.integers(1, 46, n), np.floor(0.3 * span)).astype(np.int64)
    o_c = o_a + np.minimum(rng.integers(0, 11, n), np.floor(0.2 * span)).astype(np.int64)
    o_p = o_c + np.minimum(rng.integers(0, 21, n), np.floor(0.2 * span)).astype(np.int64)
    o_l = np.where(cp, o_p, o_c) + np.minimum(rng.integers(0, 61, n), np.floor(0.2 * span)).astype(
        np.int64
    )
    referral = first + days(ref)
    nat = np.datetime64("NaT", "D")
    closure = np.where(closed, referral + days(np.floor(np.where(closed, dur, 0))), nat)
    cp_start = np.where(cp, referral + days(o_p), nat)
    assess_date = np.where(assessed, referral + days(o_a), nat)
    cin_start = np.where(cin, referral + days(o_c), nat)
    # Dates services could record (timeline): a weekday ICPC after the CIN plan start and
    # before the closure; no random number drawn, no threshold changed.
    k = np.flatnonzero(cp)
    t = timeline.cp_dates(
        referral[k], assess_date[k], cin_start[k], cp_start[k], closure[k], first, census
    )
    referral[k], assess_date[k], cin_start[k] = t["referral"], t["assessment"], t["cin_start"]
    cp_start[k], closure[k] = t["cp_start"], t["closure"]
    closed[k] = ~np.isnat(t["closure"])
    dob = timeline.referral_after_conception(dob, referral)
    la_start = np.where(looked, referral + days(o_l), nat)
    la_start = np.where(cp & looked, np.maximum(la_start, cp_start), la_start)
    la_start = np.where(looked & closed, np.minimum(la_start, closure), la_start)

    # Factors at assessment (assessed children), CP category, re-referral, repeat CP plan.
    b_a = math.log(england.PARAMETERS["assessments"]["gradient"])
    q = np.array([v[2] for v in FACTORS.values()])
    delta = np.log([v[3] for v in FACTORS.values()]) - b_a
    p_f = np.minimum(1.0, q[None, :] * np.exp(np.outer(wi, delta)))
    has = (rng.uniform(size=p_f.shape) < p_f) & assessed[:, None]
    f_child, f_code = np.nonzero(has)
    cq = np.log([v[1] for v in CP_CATEGORIES.values()])
    cd = np.array([v[2] for v in CP_CATEGORIES.values()])
    logits = cq[None, :] + np.outer(wi, cd)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    cum = np.cumsum(prob / prob.sum(1, keepdims=True), 1)
    cat = np.minimum((cum < rng.uniform(size=n)[:, None]).sum(1), len(cq) - 1)
    codes = np.array(list(CP_CATEGORIES), dtype=object)

    dev = effects["referral_departure"][dec.la_index[lsoa]]
    la_child = dec.la_index[lsoa]
    expected_la = {}

    def flag(par, name, among):
        # c_g * dev adds no random number: every other draw stays as it was without it.
        p = expit(logit(par["p0"]) + par["c_w"] * wi + par["c_x"] * wi * mci + par["c_g"] * dev)
        expected_la[name] = (
            np.bincount(la_child[among], p[among], len(dec.la)),
            np.bincount(la_child[among], minlength=len(dec.la)),
        )
        return rng.uniform(size=n) < p

    reref, repeat = (
        flag(REREFERRAL, "rereferral", slice(None)),
        flag(REPEAT_CP, "repeat_cp", cp) & cp,
    )

    ids = np.array([f"SG{k:08d}" for k in range(counter, counter + n)], dtype=object)
    eids = np.array([f"SGE{k:08d}" for k in range(counter, counter + n)], dtype=object)
    children = pd.DataFrame(
        {
            "child_id": ids,
            "year": np.full(n, year, np.int64),
            "la": geo["la"].to_numpy(object)[lsoa],
            "lsoa": geo["lsoa"].to_numpy(object)[lsoa],
            "date_of_birth": dob,
            "age": age,
            "age_band": np.array(AGE_BANDS, object)[band],
            "gender": np.array(GENDERS, object)[cells["gender"][cell]],
            "ethnicity": np.array(ETHNICITIES, object)[cells["eth"][cell]],
        }
    )
    episodes = pd.DataFrame(
        {
            "child_id": ids,
            "episode_id": eids,
            "year": np.full(n, year, np.int64),
            "referral_date": referral,
            "referral_source": referral_sources(rng, n),
            "referral_nfa": ~assessed,
            "assessment": assessed,
            "assessment_date": assess_date,
            "outcome": np.array(OUTCOME_LEVELS, object)[level],
            "cin_plan_start": cin_start,
            "cin_plan_end": np.where(cp, cp_start, np.where(cin, closure, nat)),
            "cp_plan_start": cp_start,
            "cp_plan_end": np.where(cp, closure, nat),
            "cp_category": np.where(cp, codes[cat], None),
            "looked_after_start": la_start,
            "closure_date": closure,
            "closure_reason": np.where(closed, closure_reasons(level, assessed), None),
            "censored": ~closed,
            "rereferral_within_12m": reref,
            "repeat_cp_plan": repeat,
        }
    )
    factors = pd.DataFrame(
        {
            "child_id": ids[f_child],
            "episode_id": eids[f_child],
            "year": np.full(len(f_child), year, np.int64),
            "factor": np.array(list(FACTORS), dtype=object)[f_code],
        }
    )
    return dict(
        children=children,
        episodes=episodes,
        factors=factors,
        clipped=clipped,
        var=var,
        expected=expected,
        expected_la=expected_la,
    )


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
