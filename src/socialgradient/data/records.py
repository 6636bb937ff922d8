"""Child-level records shaped like the Children in Need (CIN) Census, with known truth.

:func:`simulate_records` turns an LSOA table (the synthetic England of
:mod:`socialgradient.data.synthetic`, or a real ``geography``) into the census's child-level
tables -- children, referral episodes, factors identified at assessment -- plus the child
population by stratum (the denominators). :mod:`socialgradient.data.linkage` aggregates them
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
   ``synthetic.simulate`` from its per-threshold PARAMETERS, except that an LA's standardised
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
   categories), re-referral and repeat-plan flags (logistic), and an episode duration from a
   piecewise-exponential hazard, censored at 31 March.
5. **Histories** (:mod:`socialgradient.data.history`): every re-referral and repeat CP plan is
   given a real earlier episode -- the same child in the previous simulated year, or an earlier
   episode in the same year -- so children persist across years and DfE-style derivations
   from the dates agree with the flags; what falls before the first simulated year is counted
   in ``truth["history"]``.

**Population mimicked: the DfE census, not the study.** The LSOA table of
:mod:`socialgradient.data.synthetic` mimics the study population (school-aged children linked
in 2018-19: ~100 per 10,000 in the least deprived neighbourhoods, ~175 nationally). These
records mimic what DfE publishes from the full census -- all referrals of children aged 0-17 --
so every threshold's intercept is raised by :data:`LEVEL_SHIFT`, which moves the national rate
of referred children from what ``synthetic.PARAMETERS`` give on the default geography
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
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from socialgradient.data import synthetic
from socialgradient.deprivation import decompose

#: DfE 2018-19 (file C1, England): children referred per 10,000 children aged 0-17, and what
#: synthetic.PARAMETERS give for the records' population on the default geography (measured:
#: expected total over simulate_records(seed=2021), 0-17). LEVEL_SHIFT = log(ratio).
DFE_REFERRED_CHILDREN_PER_10K = 488.0
STUDY_REFERRED_CHILDREN_PER_10K = 166.5
LEVEL_SHIFT = math.log(DFE_REFERRED_CHILDREN_PER_10K / STUDY_REFERRED_CHILDREN_PER_10K)
#: CP plans get a further shift: DfE 2018-19 has 66,680 CP plan starts for 575,290 referred
#: children (0.1159); the study's threshold ratios give 0.1000 plan starts per referred child
#: (measured, default draw), so CP plans would run ~14% under DfE's 56.5 per 10,000.
CP_PLAN_SHIFT = math.log((66_680 / 575_290) / 0.1000)
SHIFTS = {t: LEVEL_SHIFT + (CP_PLAN_SHIFT if t == "cp_plans" else 0.0)
          for t in synthetic.OUTCOMES}
THRESHOLDS = synthetic.OUTCOMES  # referrals, assessments, cin_plans, cp_plans, looked_after
PARENT = {"assessments": "referrals", "cin_plans": "assessments", "cp_plans": "cin_plans",
          "looked_after": "cin_plans"}
AGE_BANDS = ("0-4", "5-9", "10-15", "16-17")
AGE_RANGE = {"0-4": (0, 4), "5-9": (5, 9), "10-15": (10, 15), "16-17": (16, 17)}
GENDERS = ("M", "F")
ETHNICITIES = ("White", "Mixed", "Asian", "Black", "Other")
NOMINAL_SHARES = {  # shares used to centre the stratum offsets (England, children 0-17)
    "age_band": dict(zip(AGE_BANDS, (5 / 18, 5 / 18, 6 / 18, 2 / 18), strict=True)),
    "gender": {"M": 0.512, "F": 0.488},
    "ethnicity": {"White": 0.76, "Mixed": 0.06, "Asian": 0.10, "Black": 0.05, "Other": 0.03},
}
MALE_SHARE = 0.512
#: Ethnic mix: logit(non-White share) = base + urban + income * (income - 0.123) + N(0, la_sd)
#: per LA; the non-White children split as ``split``.
ETHNICITY = dict(base=-1.85, urban=0.9, income=4.0, la_sd=0.7,
                 split={"Mixed": 0.25, "Asian": 0.42, "Black": 0.20, "Other": 0.13})

#: Stratum offsets, added at every threshold: ``alpha`` to the log rate, ``d`` to the slope on w.
#: Ethnicity slopes anchor the study's CP-plan gradients (White ~1.91, Black ~1.27 against 1.80
#: overall); younger children steeper; no gender difference in slope.
RAW_OFFSETS = {
    "age_band": dict(alpha=dict(zip(AGE_BANDS, (0.10, -0.10, 0.0, -0.25), strict=True)),
                     d=dict(zip(AGE_BANDS, (0.10, 0.02, -0.05, -0.12), strict=True))),
    "gender": dict(alpha={"M": 0.03, "F": -0.03}, d={"M": 0.0, "F": 0.0}),
    "ethnicity": dict(
        alpha={"White": 0.0, "Mixed": 0.35, "Asian": -0.45, "Black": 0.15, "Other": 0.0},
        d={"White": math.log(1.91 / 1.80), "Mixed": 0.0, "Asian": -0.18, "Black":
           math.log(1.27 / 1.80), "Other": -0.15}),
}
RURAL_SLOPE = 0.15  # extra slope in rural LSOAs (centred: urban gets -share_rural * 0.15)
RURAL_SHARE = 0.17

#: Factors identified at assessment: census code -> (name, column of DfE file C3, share of
#: assessments at w = 0, gradient exp(b_w + delta) at an average LA).
FACTORS = {
    "1B": ("alcohol_misuse_parent", "Alcohol_Misuse_parent", 0.13, 1.70),
    "2B": ("drug_misuse_parent", "Drug_Misuse_parent", 0.12, 1.90),
    "3A": ("domestic_abuse_child", "Domestic_Abuse_child", 0.12, 1.75),
    "4B": ("mental_health_parent", "Mental_Health_parent", 0.35, 1.60),
    "5A": ("learning_disability_child", "Learning_Disability_child", 0.04, 1.40),
    "6A": ("physical_disability_child", "Physical_Disability_child", 0.03, 1.47),
    "16A": ("neglect", "Neglect", 0.19, 1.84),
    "17A": ("emotional_abuse", "Emotional_Abuse", 0.22, 1.70),
    "18C": ("physical_abuse_adult_on_child", "Physical_Abuse_adult_on_child", 0.08, 1.65),
    "19C": ("sexual_abuse_adult_on_child", "Sexual_Abuse_adult_on_child", 0.04, 1.45),
}
#: CP plan category of abuse: census code -> (name, share at w = 0, slope offset on b_cp).
CP_CATEGORIES = {"NEG": ("neglect", 0.48, math.log(1.98 / 1.80)), "EMO": ("emotional", 0.35, -0.09),
                 "PHY": ("physical", 0.07, -0.08), "SAB": ("sexual", 0.04, math.log(1.62 / 1.80)),
                 "MUL": ("multiple", 0.06, -0.07)}
REFERRAL_SOURCES = {"1A": 0.03, "1B": 0.01, "1C": 0.01, "1D": 0.03, "2A": 0.18, "2B": 0.01,
                    "3A": 0.02, "3B": 0.02, "3C": 0.01, "3D": 0.02, "3E": 0.04, "3F": 0.04,
                    "4": 0.01, "5A": 0.05, "5B": 0.03, "5C": 0.02, "5D": 0.01, "6": 0.29,
                    "7": 0.02, "8": 0.10, "9": 0.02, "10": 0.03}
OUTCOME_LEVELS = ("nfa", "cin_plan", "cp_plan", "looked_after")
#: Episode duration (days since referral): piecewise-constant hazard on PIECES, times
#: exp(level_log_hr[outcome] + g_w * w + g_b * m_c).
PIECES = (0, 30, 91, 182)
DURATION = dict(base_rate=(1 / 25, 1 / 40, 1 / 60, 1 / 90),
                level_log_hr=dict(zip(OUTCOME_LEVELS, (0.0, math.log(0.12), math.log(0.09),
                                                       math.log(0.05)), strict=True)),
                g_w=-0.10, g_b=0.15, la_sd=(0.20, 0.05))
#: ... plus an LA's own closing practice: log hazard ratio u_a + u_b * w, with (u_a, u_b)
#: independent normals of SDs ``la_sd`` per LA (the duration model's LA random effects).
#: Re-referral within 12 months (referred children) and repeat CP plan (CP children):
#: logit p = logit(p0) + c_w * w + c_x * w * m_c (c_x < 0: steeper in affluent LAs).
REREFERRAL = dict(p0=0.22, c_w=0.10, c_x=-0.15)
REPEAT_CP = dict(p0=0.21, c_w=0.12, c_x=-0.15)

TABLE_COLUMNS = {
    "children": ("child_id", "year", "la", "lsoa", "date_of_birth", "age", "age_band", "gender",
                 "ethnicity"),
    "episodes": ("child_id", "episode_id", "year", "referral_date", "referral_source",
                 "referral_nfa", "assessment", "assessment_date", "outcome", "cin_plan_start",
                 "cin_plan_end", "cp_plan_start", "cp_plan_end", "cp_category",
                 "looked_after_start", "closure_date", "closure_reason", "censored",
                 "rereferral_within_12m", "repeat_cp_plan"),
    "factors": ("child_id", "episode_id", "year", "factor"),
    "population": ("year", "lsoa", "la", "age_band", "gender", "ethnicity", "children"),
    "geography": ("lsoa", "la", "income", "children", "rural"),
}


@dataclass(frozen=True)
class Records:
    """CIN-Census-shaped child-level tables (columns: :data:`TABLE_COLUMNS`).

    ``children``: one row per child per collection year; ``episodes``: one row per referral
    (CIN episode); ``factors``: one row per factor identified at an assessment (census code);
    ``population``: children resident per year x LSOA x age band x gender x ethnicity;
    ``geography``: the LSOA lookup (lsoa, la, income, children aged 0-15, rural);
    ``truth``: JSON-serialisable true parameters with ``truth["definitions"]``.
    """

    children: pd.DataFrame
    episodes: pd.DataFrame
    factors: pd.DataFrame
    population: pd.DataFrame
    geography: pd.DataFrame
    truth: dict


def _centred(dim: str) -> dict:
    """Stratum offsets of ``dim`` centred: sum share*exp(alpha) = 1, sum share*d = 0."""
    share, raw = NOMINAL_SHARES[dim], RAW_OFFSETS[dim]
    norm = math.log(sum(share[k] * math.exp(raw["alpha"][k]) for k in share))
    dbar = sum(share[k] * raw["d"][k] for k in share)
    return {"alpha": {k: raw["alpha"][k] - norm for k in share},
            "d": {k: raw["d"][k] - dbar for k in share}}


def _la_effects(rng, m_c: np.ndarray, codes) -> tuple[dict, np.ndarray]:
    """(a_la, b_la) per threshold from synthetic.PARAMETERS (intercepts + SHIFTS).

    One standardised pair (e_a, e_b) per LA, shared by all thresholds. ``e_a`` is calibrated
    to the LA's observed DfE 2018-19 referral rate where the calibration table has one for the
    LA code: the standardised residual of log(rate) regressed on m_c across those LAs (so the
    LAs that refer more than their deprivation predicts do so here too). Other LAs, and all
    of ``e_b``, are N(0, 1) draws. Returns (effects, mask of the calibrated LAs).
    """
    e = rng.standard_normal((len(m_c), 2))
    rate = synthetic.load_calibration().set_index("la")["dfe_referrals_per_10k_2019"]
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
        p = synthetic.PARAMETERS[t]
        b_w, sa, sb, rho = math.log(p["gradient"]), p["sigma_a"], p["sigma_b"], p["rho"]
        a_la = p["a"] + SHIFTS[t] + p["b_b"] * m_c + sa * e[:, 0]
        b_la = b_w + synthetic.B_X * m_c + sb * (rho * e[:, 0] + math.sqrt(1 - rho**2) * e[:, 1])
        out[t] = (a_la, b_la)
    return out, calibrated


def _geography(geography, seed, scale) -> pd.DataFrame:
    if geography is None:
        geography = synthetic.simulate(seed=seed, scale=scale).table
    missing = [c for c in TABLE_COLUMNS["geography"] if c not in geography.columns]
    if missing:
        raise ValueError(f"geography lacks columns {missing}")
    g = geography[list(TABLE_COLUMNS["geography"])].reset_index(drop=True).copy()
    g["lsoa"], g["la"] = g["lsoa"].astype(str), g["la"].astype(str)
    g["rural"] = g["rural"].astype(bool)
    return g


def _population(rng, geo: pd.DataFrame, m_la_dev: np.ndarray, la_idx) -> dict:
    """Cells (lsoa x age band x gender x ethnicity) of the child population 0-17."""
    n0 = np.rint(geo["children"].to_numpy(float)).astype(np.int64)
    income = geo["income"].to_numpy(float)
    urban = ~geo["rural"].to_numpy(bool)
    e = ETHNICITY
    nonwhite = expit(e["base"] + e["urban"] * urban + e["income"] * (income - 0.123)
                     + m_la_dev[la_idx])
    eth = np.column_stack([1 - nonwhite] + [nonwhite * e["split"][k] for k in ETHNICITIES[1:]])
    sex = np.array([MALE_SHARE, 1 - MALE_SHARE])
    young = np.array([5, 5, 6]) / 16
    p_young = (young[None, :, None, None] * sex[None, None, :, None] * eth[:, None, None, :])
    counts = np.zeros((len(geo), 4, 2, 5), dtype=np.int64)
    counts[:, :3] = rng.multinomial(n0, p_young.reshape(len(geo), -1)).reshape(len(geo), 3, 2, 5)
    n16 = rng.poisson(n0 * 2 / 16)
    counts[:, 3] = rng.multinomial(n16, (sex[None, :, None] * eth[:, None, :]).reshape(
        len(geo), -1)).reshape(len(geo), 2, 5)
    lsoa, band, gender, ethn = (a.ravel() for a in np.indices(counts.shape))
    return dict(lsoa=lsoa, band=band, gender=gender, eth=ethn, n=counts.ravel())


def _days(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64).astype("timedelta64[D]")


def _referral_sources(rng, n: int) -> np.ndarray:
    """``n`` census referral source codes drawn with the national mix :data:`REFERRAL_SOURCES`."""
    codes = np.array(list(REFERRAL_SOURCES), dtype=object)
    p = np.array(list(REFERRAL_SOURCES.values()))
    return codes[rng.choice(len(codes), n, p=p / p.sum())]


def _piecewise_exponential(rng, log_hr: np.ndarray) -> np.ndarray:
    """Durations (days) with hazard base_rate[k] * exp(log_hr) on piece k of PIECES."""
    bounds = np.array([*PIECES, np.inf])
    rates = np.asarray(DURATION["base_rate"])[None, :] * np.exp(log_hr)[:, None]
    widths = np.diff(bounds)[:-1]
    cum = np.concatenate([np.zeros((len(log_hr), 1)), np.cumsum(rates[:, :-1] * widths, 1)], 1)
    e = rng.standard_exponential(len(log_hr))
    k = (cum <= e[:, None]).sum(1) - 1
    rows = np.arange(len(e))
    return bounds[k] + (e - cum[rows, k]) / rates[rows, k]


def _year(rng, year, cells, geo, dec, effects, counter) -> dict:
    """Counts per cell, then one child row and one episode per referred child."""
    li, la_of = cells["lsoa"], dec.la_index[cells["lsoa"]]
    w = dec.w[li]
    base = np.log(cells["n"]) + cells["alpha"] + cells["d"] * w
    n_lsoa = len(geo)
    a, b = effects["referrals"]
    phi = synthetic.PARAMETERS["referrals"]["phi"]
    gam = rng.gamma(phi, 1 / phi, n_lsoa)
    y = {"referrals": rng.poisson(gam[li] * np.exp(base + a[la_of] + b[la_of] * w))}
    var = {"referrals": 1 / phi}
    clipped = {}
    mu = {"referrals": np.exp(base + a[la_of] + b[la_of] * w)}
    for t, par in PARENT.items():
        inv_k = max(0.0, (1 + 1 / synthetic.PARAMETERS[t]["phi"]) / (1 + var[par]) - 1)
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
    dob = april + _days(rng.integers(0, 365, n))

    # Episode: referral date in the collection year; duration from a piecewise-exponential.
    first = np.datetime64(f"{year - 1}-04-01")
    census = np.datetime64(f"{year}-03-31")
    n_days = int((census - first).astype(int)) + 1
    ref = rng.integers(0, n_days, n)
    rem = n_days - 1 - ref  # whole days from referral to the census date
    log_hr = (np.array([DURATION["level_log_hr"][k] for k in OUTCOME_LEVELS])[level]
              + effects["duration_hr"][lsoa])
    dur = _piecewise_exponential(rng, log_hr)
    closed = dur < rem + 1
    span = np.minimum(dur, rem + 1)
    o_a = np.minimum(rng.integers(1, 46, n), np.floor(0.3 * span)).astype(np.int64)
    o_c = o_a + np.minimum(rng.integers(0, 11, n), np.floor(0.2 * span)).astype(np.int64)
    o_p = o_c + np.minimum(rng.integers(0, 21, n), np.floor(0.2 * span)).astype(np.int64)
    o_l = np.where(cp, o_p, o_c) + np.minimum(rng.integers(0, 61, n),
                                              np.floor(0.2 * span)).astype(np.int64)
    referral = first + _days(ref)
    nat = np.datetime64("NaT", "D")
    closure = np.where(closed, referral + _days(np.floor(np.where(closed, dur, 0))), nat)
    cp_start = np.where(cp, referral + _days(o_p), nat)

    # Factors at assessment (assessed children), CP category, re-referral, repeat CP plan.
    b_a = math.log(synthetic.PARAMETERS["assessments"]["gradient"])
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

    def flag(par):
        return rng.uniform(size=n) < expit(logit(par["p0"]) + par["c_w"] * wi
                                           + par["c_x"] * wi * mci)

    reref, repeat = flag(REREFERRAL), flag(REPEAT_CP) & cp

    ids = np.array([f"SG{k:08d}" for k in range(counter, counter + n)], dtype=object)
    eids = np.array([f"SGE{k:08d}" for k in range(counter, counter + n)], dtype=object)
    children = pd.DataFrame({
        "child_id": ids, "year": np.full(n, year, np.int64),
        "la": geo["la"].to_numpy(object)[lsoa], "lsoa": geo["lsoa"].to_numpy(object)[lsoa],
        "date_of_birth": dob, "age": age, "age_band": np.array(AGE_BANDS, object)[band],
        "gender": np.array(GENDERS, object)[cells["gender"][cell]],
        "ethnicity": np.array(ETHNICITIES, object)[cells["eth"][cell]]})
    episodes = pd.DataFrame({
        "child_id": ids, "episode_id": eids, "year": np.full(n, year, np.int64),
        "referral_date": referral,
        "referral_source": _referral_sources(rng, n),
        "referral_nfa": ~assessed, "assessment": assessed,
        "assessment_date": np.where(assessed, referral + _days(o_a), nat),
        "outcome": np.array(OUTCOME_LEVELS, object)[level],
        "cin_plan_start": np.where(cin, referral + _days(o_c), nat),
        "cin_plan_end": np.where(cp, cp_start, np.where(cin, closure, nat)),
        "cp_plan_start": cp_start, "cp_plan_end": np.where(cp, closure, nat),
        "cp_category": np.where(cp, codes[cat], None),
        "looked_after_start": np.where(looked, referral + _days(o_l), nat),
        "closure_date": closure,
        "closure_reason": np.where(closed, np.where(level == 0, "RC8", "RC7"), None),
        "censored": ~closed, "rereferral_within_12m": reref, "repeat_cp_plan": repeat})
    factors = pd.DataFrame({"child_id": ids[f_child], "episode_id": eids[f_child],
                            "year": np.full(len(f_child), year, np.int64),
                            "factor": np.array(list(FACTORS), dtype=object)[f_code]})
    return dict(children=children, episodes=episodes, factors=factors, clipped=clipped,
                var=var, expected=expected)


def simulate_records(seed: int = synthetic.DEFAULT_SEED, years=(2019,), scale: float = 1.0,
                     geography: pd.DataFrame | None = None) -> Records:
    """Simulate CIN-Census-shaped child-level records with known truth.

    Parameters
    ----------
    seed : int
        Seed; the same arguments give identical tables and truth.
    years : int or sequence of int
        Collection years (the year ending 31 March ``year``). Counts are drawn independently
        per year; re-referred children of consecutive years are then linked (the same child).
    scale : float
        Passed to :func:`socialgradient.data.synthetic.simulate` when ``geography`` is None.
    geography : DataFrame, optional
        A real LSOA table with columns ``lsoa, la, income`` (0-1), ``children`` (aged 0-15)
        and ``rural`` (bool) used instead of the synthetic neighbourhoods (``seed``'s
        synthetic England at ``scale``).
    """
    from socialgradient.data import history  # imports this module
    from socialgradient.data.records_truth import build_truth

    years = (years,) if isinstance(years, int | np.integer) else tuple(years)
    years = tuple(int(y) for y in years)
    if not years or len(set(years)) != len(years):
        raise ValueError(f"years must be distinct and non-empty, got {years}")
    geo = _geography(geography, seed, scale)
    dec = decompose(geo["income"], geo["children"], geo["la"])
    rng = np.random.default_rng([int(seed), 5])  # a stream apart from synthetic.simulate's
    effects, calibrated = _la_effects(rng, dec.m_c, dec.la)
    u_a, u_b = effects["durations"] = tuple(rng.normal(0.0, sd, len(dec.la))
                                            for sd in DURATION["la_sd"])
    # An episode's log hazard ratio but for its outcome level's, per LSOA.
    effects["duration_hr"] = (DURATION["g_b"] * dec.m_c[dec.la_index] + u_a[dec.la_index]
                              + (DURATION["g_w"] + u_b[dec.la_index]) * dec.w)
    eth_dev = rng.normal(0.0, ETHNICITY["la_sd"], len(dec.la))
    cells = _population(rng, geo, eth_dev, dec.la_index)
    cells = {k: v[cells["n"] > 0] for k, v in cells.items()}
    off = {dim: _centred(dim) for dim in NOMINAL_SHARES}
    levels = {"age_band": AGE_BANDS, "gender": GENDERS, "ethnicity": ETHNICITIES}
    index = {"age_band": cells["band"], "gender": cells["gender"], "ethnicity": cells["eth"]}
    rural = geo["rural"].to_numpy(bool)[cells["lsoa"]]
    cells["alpha"] = sum(np.array([off[k]["alpha"][v] for v in levels[k]])[index[k]] for k in off)
    cells["d"] = sum(np.array([off[k]["d"][v] for v in levels[k]])[index[k]] for k in off)
    cells["d"] = cells["d"] + np.where(rural, RURAL_SLOPE * (1 - RURAL_SHARE),
                                       -RURAL_SLOPE * RURAL_SHARE)
    parts, counter = [], 1
    for year in years:
        parts.append(_year(rng, year, cells, geo, dec, effects, counter))
        counter += len(parts[-1]["children"])
    lsoa_hr = pd.Series(effects["duration_hr"], index=geo["lsoa"].to_numpy())
    history_report = history.link(rng, dict(zip(years, parts, strict=True)), lsoa_hr)

    def cat(values, codes):
        return pd.Categorical.from_codes(codes, categories=list(values))

    la_codes, la_cats = pd.factorize(geo["la"])
    pop = pd.DataFrame({
        "lsoa": cat(geo["lsoa"], cells["lsoa"]),
        "la": pd.Categorical.from_codes(la_codes[cells["lsoa"]], la_cats),
        "age_band": cat(AGE_BANDS, cells["band"]), "gender": cat(GENDERS, cells["gender"]),
        "ethnicity": cat(ETHNICITIES, cells["eth"]), "children": cells["n"]})
    population = pd.concat([pop.assign(year=np.int64(y)) for y in years], ignore_index=True)
    population = population[list(TABLE_COLUMNS["population"])]
    tables = {k: pd.concat([p[k] for p in parts], ignore_index=True)
              for k in ("children", "episodes", "factors")}
    truth = build_truth(seed, scale, years, geography is None, geo, dec, effects, off,
                        parts, population, history_report, list(dec.la[calibrated]))
    return Records(population=population, geography=geo, truth=truth, **tables)
