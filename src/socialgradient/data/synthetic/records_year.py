"""One collection year of the synthetic CIN records: counts per cell, then child rows.

:func:`_year` draws, for :func:`socialgradient.data.synthetic.records.simulate_records`, the
year's referrals per LSOA x stratum cell and their nested thresholds (steps 2 and 3 of that
module's docstring), then one child row and one episode per referred child, with dates,
factors at assessment, CP category and re-referral and repeat-plan flags (step 4).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from socialgradient.data.deprivation import Decomposition
from socialgradient.data.records import (
    AGE_BANDS,
    AGE_RANGE,
    CP_CATEGORIES,
    DURATION,
    ETHNICITIES,
    FACTORS,
    GENDERS,
    OUTCOME_LEVELS,
    PARENT,
    REPEAT_CP,
    REREFERRAL,
    closure_reasons,
    days,
    piecewise_exponential,
    referral_sources,
)
from socialgradient.data.synthetic import england, timeline


def _year(
    rng: np.random.Generator,
    year: int,
    cells: dict[str, np.ndarray],
    geo: pd.DataFrame,
    dec: Decomposition,
    effects: dict[str, Any],
    counter: int,
) -> dict[str, Any]:
    """Draw the counts per cell, then one child row and one episode per referred child."""
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
    moved = timeline.cp_dates(
        referral[k], assess_date[k], cin_start[k], cp_start[k], closure[k], first, census
    )
    referral[k], assess_date[k] = moved["referral"], moved["assessment"]
    cin_start[k], cp_start[k], closure[k] = moved["cin_start"], moved["cp_start"], moved["closure"]
    closed[k] = ~np.isnat(moved["closure"])
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
            # numpy's stubs reject None, which np.where takes as an object scalar
            "closure_reason": np.where(closed, closure_reasons(level, assessed), None),  # type: ignore[call-overload]
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
