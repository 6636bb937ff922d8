"""The child records' model: true parameters, table columns, and the draws records share.

Everything that :mod:`~socialgradient.data.synthetic.records` (the generator),
:mod:`~socialgradient.data.synthetic.history` (earlier episodes) and
:mod:`~socialgradient.data.synthetic.records_truth` (the truth) all need, kept here so that
the three import this module and not each other; the census readers
(:mod:`socialgradient.data.census`) fill the same :class:`Records` tables
(:data:`TABLE_COLUMNS`). How the parameters are used is documented in
:mod:`~socialgradient.data.synthetic.records`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import pandas as pd

from socialgradient.data.synthetic import england


class EthnicityModel(TypedDict):
    """The non-White share of an LSOA's children (:data:`ETHNICITY`).

    ``logit share = base + urban * urban + income * (income - 0.123) + an LA deviation`` (of
    SD ``la_sd``); ``split`` divides it among the other broad groups.
    """

    base: float
    urban: float
    income: float
    la_sd: float
    split: dict[str, float]


class DurationModel(TypedDict):
    """The piecewise-exponential episode durations (:data:`DURATION`)."""

    base_rate: tuple[float, ...]
    level_log_hr: dict[str, float]
    g_w: float
    g_b: float
    la_sd: tuple[float, float]


#: DfE 2018-19 (file C1, England): children referred per 10,000 children aged 0-17, and what
#: england.PARAMETERS give for the records' population on the default geography (measured:
#: expected total over simulate_records(seed=2021), 0-17). LEVEL_SHIFT = log(ratio).
DFE_REFERRED_CHILDREN_PER_10K = 488.0
STUDY_REFERRED_CHILDREN_PER_10K = 166.5
LEVEL_SHIFT = math.log(DFE_REFERRED_CHILDREN_PER_10K / STUDY_REFERRED_CHILDREN_PER_10K)
#: CP plans get a further shift: DfE 2018-19 has 66,680 CP plan starts for 575,290 referred
#: children (0.1159); the study's threshold ratios give 0.1000 plan starts per referred child
#: (measured, default draw), so CP plans would run ~14% under DfE's 56.5 per 10,000.
CP_PLAN_SHIFT = math.log((66_680 / 575_290) / 0.1000)
SHIFTS = {t: LEVEL_SHIFT + (CP_PLAN_SHIFT if t == "cp_plans" else 0.0) for t in england.OUTCOMES}
THRESHOLDS = england.OUTCOMES  # referrals, assessments, cin_plans, cp_plans, looked_after
PARENT = {
    "assessments": "referrals",
    "cin_plans": "assessments",
    "cp_plans": "cin_plans",
    "looked_after": "cin_plans",
}
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
ETHNICITY = EthnicityModel(
    base=-1.85,
    urban=0.9,
    income=4.0,
    la_sd=0.7,
    split={"Mixed": 0.25, "Asian": 0.42, "Black": 0.20, "Other": 0.13},
)

#: Stratum offsets, added at every threshold: ``alpha`` to the log rate, ``d`` to the slope on w.
#: Ethnicity slopes anchor the study's CP-plan gradients (White ~1.91, Black ~1.27 against 1.80
#: overall); younger children steeper; no gender difference in slope.
RAW_OFFSETS = {
    "age_band": dict(
        alpha=dict(zip(AGE_BANDS, (0.10, -0.10, 0.0, -0.25), strict=True)),
        d=dict(zip(AGE_BANDS, (0.10, 0.02, -0.05, -0.12), strict=True)),
    ),
    "gender": dict(alpha={"M": 0.03, "F": -0.03}, d={"M": 0.0, "F": 0.0}),
    "ethnicity": dict(
        alpha={"White": 0.0, "Mixed": 0.35, "Asian": -0.45, "Black": 0.15, "Other": 0.0},
        d={
            "White": math.log(1.91 / 1.80),
            "Mixed": 0.0,
            "Asian": -0.18,
            "Black": math.log(1.27 / 1.80),
            "Other": -0.15,
        },
    ),
}
#: Single years of age. A referred child's age is drawn uniformly within its band (the rate
#: model has no age inside a band), so the true log rate and log gradient by single year are
#: the band's: a staircase over ages 0-17. The population by single year (the denominators)
#: is each band's children split evenly over its years (:func:`single_year_population`),
#: which is exactly the exposure those uniform ages have. Truth ``age_trend``: the
#: least-squares line through the staircase, the target of a linear age trend.
AGES = tuple(range(AGE_RANGE[AGE_BANDS[0]][0], AGE_RANGE[AGE_BANDS[-1]][1] + 1))
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
CP_CATEGORIES = {
    "NEG": ("neglect", 0.48, math.log(1.98 / 1.80)),
    "EMO": ("emotional", 0.35, -0.09),
    "PHY": ("physical", 0.07, -0.08),
    "SAB": ("sexual", 0.04, math.log(1.62 / 1.80)),
    "MUL": ("multiple", 0.06, -0.07),
}
REFERRAL_SOURCES = {
    "1A": 0.03,
    "1B": 0.01,
    "1C": 0.01,
    "1D": 0.03,
    "2A": 0.18,
    "2B": 0.01,
    "3A": 0.02,
    "3B": 0.02,
    "3C": 0.01,
    "3D": 0.02,
    "3E": 0.04,
    "3F": 0.04,
    "4": 0.01,
    "5A": 0.05,
    "5B": 0.03,
    "5C": 0.02,
    "5D": 0.01,
    "6": 0.29,
    "7": 0.02,
    "8": 0.10,
    "9": 0.02,
    "10": 0.03,
}
OUTCOME_LEVELS = ("nfa", "cin_plan", "cp_plan", "looked_after")
#: Episode duration (days since referral): piecewise-constant hazard on PIECES, times
#: exp(level_log_hr[outcome] + g_w * w + g_b * m_c).
PIECES = (0, 30, 91, 182)
DURATION = DurationModel(
    base_rate=(1 / 25, 1 / 40, 1 / 60, 1 / 90),
    level_log_hr=dict(
        zip(OUTCOME_LEVELS, (0.0, math.log(0.12), math.log(0.09), math.log(0.05)), strict=True)
    ),
    g_w=-0.10,
    g_b=0.15,
    la_sd=(0.20, 0.05),
)
#: ... plus an LA's own closing practice: log hazard ratio u_a + u_b * w, with (u_a, u_b)
#: independent normals of SDs ``la_sd`` per LA (the duration model's LA random effects).
#: Re-referral within 12 months (referred children) and repeat CP plan (CP children):
#: logit p = logit(p0) + c_w * w + c_x * w * m_c + c_g * dev_l (c_x < 0: steeper in affluent
#: LAs). ``dev_l`` is the child's LA's own referral log-gradient departure,
#: b_la[referrals] - (b_w + B_X * m_c): the stated LA-level association (issue 10's "LA-level
#: question": LAs with steeper gradients have more re-referrals and repeat plans). c_g is in
#: log-odds per unit of log gradient (0.1 of log gradient: odds x exp(0.1 c_g) = 1.105).
REREFERRAL = dict(p0=0.22, c_w=0.10, c_x=-0.15, c_g=1.0)
REPEAT_CP = dict(p0=0.21, c_w=0.12, c_x=-0.15, c_g=1.0)

TABLE_COLUMNS = {
    "children": (
        "child_id",
        "year",
        "la",
        "lsoa",
        "date_of_birth",
        "age",
        "age_band",
        "gender",
        "ethnicity",
    ),
    "episodes": (
        "child_id",
        "episode_id",
        "year",
        "referral_date",
        "referral_source",
        "referral_nfa",
        "assessment",
        "assessment_date",
        "outcome",
        "cin_plan_start",
        "cin_plan_end",
        "cp_plan_start",
        "cp_plan_end",
        "cp_category",
        "looked_after_start",
        "closure_date",
        "closure_reason",
        "censored",
        "rereferral_within_12m",
        "repeat_cp_plan",
    ),
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


def band_of(age) -> np.ndarray:
    """Age band label of each age (0-17)."""
    age = np.asarray(age)
    out = np.empty(age.shape, dtype=object)
    for band, (lo, hi) in AGE_RANGE.items():
        out[(age >= lo) & (age <= hi)] = band
    return out


def single_year_population(population: pd.DataFrame) -> pd.DataFrame:
    """Return the population by single year of age.

    Each row of ``population`` (a cell of an age band) becomes one row per year of its band,
    ``age`` (int) added beside ``age_band``, with ``children`` the band's divided evenly over
    its years (float: expected children; the years of a band sum exactly to the band's
    children).

    This is the exposure of the records' single-year counts: a referred child's age is
    uniform within its band, so a year of age receives 1/width of the band's referrals in
    expectation. A population that already has an ``age`` column is returned as it is.
    """
    if "age" in population.columns:
        return population
    band = population["age_band"].astype(str).to_numpy()
    lo = pd.Series(band).map({k: v[0] for k, v in AGE_RANGE.items()}).to_numpy()
    width = pd.Series(band).map({k: v[1] - v[0] + 1 for k, v in AGE_RANGE.items()}).to_numpy()
    rows = np.repeat(np.arange(len(population)), width)
    offset = np.arange(len(rows)) - np.repeat(np.cumsum(width) - width, width)
    out = population.iloc[rows].reset_index(drop=True)
    at = list(out.columns).index("age_band")
    out.insert(at, "age", (lo[rows] + offset).astype(np.int64))
    out["children"] = population["children"].to_numpy(float)[rows] / width[rows]
    return out


def geography_table(geography: pd.DataFrame | None, seed: int, scale: float) -> pd.DataFrame:
    """Return the LSOA table the records are drawn on (:data:`TABLE_COLUMNS` ``geography``).

    ``geography`` when given (checked and copied), else ``seed``'s synthetic England at
    ``scale``.
    """
    if geography is None:
        geography = england.simulate(seed=seed, scale=scale).table
    missing = [c for c in TABLE_COLUMNS["geography"] if c not in geography.columns]
    if missing:
        raise ValueError(f"geography lacks columns {missing}")
    g = geography[list(TABLE_COLUMNS["geography"])].reset_index(drop=True).copy()
    g["lsoa"], g["la"] = g["lsoa"].astype(str), g["la"].astype(str)
    g["rural"] = g["rural"].astype(bool)
    return g


def days(x: Any) -> np.ndarray:
    """Return whole numbers of days as ``timedelta64[D]``."""
    return np.asarray(x, dtype=np.int64).astype("timedelta64[D]")


def referral_sources(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` census referral source codes drawn with the national mix :data:`REFERRAL_SOURCES`."""
    codes = np.array(list(REFERRAL_SOURCES), dtype=object)
    p = np.array(list(REFERRAL_SOURCES.values()))
    return codes[rng.choice(len(codes), n, p=p / p.sum())]


def piecewise_exponential(rng: np.random.Generator, log_hr: np.ndarray) -> np.ndarray:
    """Durations (days) with hazard base_rate[k] * exp(log_hr) on piece k of PIECES."""
    bounds = np.array([*PIECES, np.inf])
    rates = np.asarray(DURATION["base_rate"])[None, :] * np.exp(log_hr)[:, None]
    widths = np.diff(bounds)[:-1]
    cum = np.concatenate([np.zeros((len(log_hr), 1)), np.cumsum(rates[:, :-1] * widths, 1)], 1)
    e = rng.standard_exponential(len(log_hr))
    k = (cum <= e[:, None]).sum(1) - 1
    rows = np.arange(len(e))
    return bounds[k] + (e - cum[rows, k]) / rates[rows, k]


def closure_reasons(level: np.ndarray, assessed: np.ndarray) -> np.ndarray:
    """Census reason for closure of a closed episode (issue 31, rule 8825Q).

    ``RC8`` (case closed after assessment, no further action) for an assessed episode that
    reached no plan; ``RC7`` (services ceased for any other reason, including the child no
    longer in need) otherwise, which includes a referral closed with no further action before
    any assessment: RC8 and RC9 name an assessment the episode must then have.
    """
    level, assessed = np.asarray(level), np.asarray(assessed, bool)
    return np.where((level == 0) & assessed, "RC8", "RC7").astype(object)


# -- truth: the generator's category shares and factor probabilities (their pseudo-true
# gradients: socialgradient.data.synthetic.pseudo_true)
def cp_category_shares(w) -> np.ndarray:
    """Return each CP category's share of CP plans at within-LA deprivation ``w``.

    The generator's softmax over :data:`CP_CATEGORIES`: share_k(w) is proportional to
    ``share_w0_k * exp(d_k * w)``, with ``w`` in 10-point units. Returns an array of dims
    (len(w), category), rows summing to 1, columns in :data:`CP_CATEGORIES` order.
    """
    w = np.asarray(w, float)
    logits = np.log([v[1] for v in CP_CATEGORIES.values()])[None, :] + np.outer(
        w, [v[2] for v in CP_CATEGORIES.values()]
    )
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def factor_probabilities(w, b_assessments: float) -> np.ndarray:
    """Return each factor's probability for an assessed child at within-LA deprivation ``w``.

    The generator's ``min(1, share_w0 * exp(delta * w))`` per factor of :data:`FACTORS`,
    ``delta = log(gradient) - b_assessments`` (``b_assessments``: the log gradient of
    assessments, per 10 points). Log-linear in ``w`` wherever it is below 1. Returns an array
    of dims (len(w), factor), columns in :data:`FACTORS` order.
    """
    w = np.asarray(w, float)
    q = np.array([v[2] for v in FACTORS.values()])
    delta = np.log([v[3] for v in FACTORS.values()]) - b_assessments
    return np.minimum(1.0, q[None, :] * np.exp(np.outer(w, delta)))
