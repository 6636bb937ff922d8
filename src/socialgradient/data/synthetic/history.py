"""Children's histories: re-referrals and repeat CP plans linked to real earlier episodes.

:func:`socialgradient.data.synthetic.records.simulate_records` draws, per collection year, the
children referred in the year (the truth of the rate model is about them) and two flags per
child from their own logistic truth: ``rereferral_within_12m`` (this referral came within 12
months of an earlier referral of the same child) and ``repeat_cp_plan`` (this CP plan is a
second or subsequent one). :func:`link` then gives every flag a real earlier episode in the
records, as far as the simulated window allows, without changing who reaches which threshold in
a year:

1. **Across years.** A flagged child of year t is matched, one to one and at random, to a
   child of year t - 1 (when t - 1 is simulated) of the same gender and ethnicity whose age
   one year on falls in the child's age band, whose latest referral came 1-365 days earlier
   and whose episode had closed by then: first in the same LSOA (a random maximal matching of
   all admissible pairs), then (a move) anywhere in the same LA (random pairing within the
   LA's cells in rounds, which keeps memory linear in the rows). For a child with a CP plan
   the earlier child must have had a CP plan (in the records so far) exactly when the plan is
   flagged a repeat.
   The year-t child takes the earlier child's ``child_id`` and date of birth, so the child
   appears in both years.
2. **Within the year.** A flagged child left unmatched gets an earlier episode in the same
   year: referral ``gap`` days before its duration plus 1-60 days, closed before the new
   referral (duration from the episode model of :mod:`records`: a CP-plan episode, with a plan
   and category, when the child's plan is flagged a repeat; else a referral with no further
   action). It is kept only if it starts inside the collection year, within 365 days and no
   more than 40 weeks before the child's birth (DfE rule 8606); a CP-plan episode needs
   :data:`MIN_CP_EPISODE_DAYS` (its dates follow :func:`~.timeline.cp_dates`: a weekday
   conference after the CIN plan start, before the closure), and one that does not fit is
   tried again as a no-further-action referral.
3. **Not in the records.** What neither places (a re-referral early in the first simulated
   year, or with no match; a repeat plan whose earlier plan lay more than a year back) keeps
   its flag, its earlier episode lying outside the records, and is counted in the truth
   (``history``), never hidden.

Earlier same-year episodes are referrals, so DfE-style episode counts exceed child counts, as
in the census (650,930 referrals of 575,290 children in 2018-19). Children keep their LSOA
between years in the same LSOA where possible, else move within their LA.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from socialgradient.data import records as r
from socialgradient.data.synthetic import timeline

GAP_DAYS = (1, 60)  # days from an earlier episode's closure to the next referral
MATCH_KEYS = ["lsoa", "gender", "ethnicity", "age_band"]
#: An earlier CP-plan episode needs this many days (a CIN plan day, a weekday ICPC, a plan end).
MIN_CP_EPISODE_DAYS = 5


def _band(age: np.ndarray) -> np.ndarray:
    """Age band label for ages 0-17 (None beyond)."""
    out = np.full(len(age), None, dtype=object)
    for band, (lo, hi) in r.AGE_RANGE.items():
        out[(age >= lo) & (age <= hi)] = band
    return out


def _match(pairs: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Return a random one-to-one subset of candidate ``pairs`` (columns ``a``, ``b``), maximal."""
    pairs = pairs.assign(_k=rng.random(len(pairs))).sort_values("_k", kind="stable")
    chosen = []
    while len(pairs):
        ok = pairs.drop_duplicates("a").drop_duplicates("b")
        chosen.append(ok)
        pairs = pairs[~pairs["a"].isin(ok["a"]) & ~pairs["b"].isin(ok["b"])]
    return pd.concat(chosen, ignore_index=True) if chosen else pairs


def _cross_year(rng, cur: dict, prev: dict, ever_cp: set) -> pd.DataFrame:
    """Match year t's flagged children to year t-1 children: columns ``a`` (year-t id), ``b``."""
    ch, ep = cur["children"], cur["episodes"]
    a = ep[ep["rereferral_within_12m"]].merge(ch[["child_id", "la", *MATCH_KEYS]], on="child_id")
    a = pd.DataFrame(
        {
            "a": a["child_id"],
            "r1": a["referral_date"],
            "cp": a["cp_plan_start"].notna(),
            "repeat": a["repeat_cp_plan"],
            **{k: a[k] for k in ["la", *MATCH_KEYS]},
        }
    )
    pch, pep = prev["children"], prev["episodes"]
    latest = pep.sort_values("referral_date").drop_duplicates("child_id", keep="last")
    b = latest.merge(pch[["child_id", "la", "lsoa", "gender", "ethnicity", "age"]], on="child_id")
    b = pd.DataFrame(
        {
            "b": b["child_id"],
            "r0": b["referral_date"],
            "c0": b["closure_date"],
            "ever_cp": b["child_id"].isin(ever_cp),
            "la": b["la"],
            "lsoa": b["lsoa"],
            "gender": b["gender"],
            "ethnicity": b["ethnicity"],
            "age_band": _band(b["age"].to_numpy() + 1),
        }
    )
    b = b[b["age_band"].notna() & b["c0"].notna()]
    chosen = []
    for place in ("lsoa", "la"):  # the same neighbourhood first, then a move within the LA
        keys = [place, *MATCH_KEYS[1:]]
        m = (
            _match(_pairs(a, b, keys), rng)
            if place == "lsoa"
            else _match_in_rounds(a, b, keys, rng)
        )
        chosen.append(m)
        a, b = a[~a["a"].isin(m["a"])], b[~b["b"].isin(m["b"])]
    return pd.concat(chosen, ignore_index=True)


def _pairs(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Return the admissible (a, b) pairs among those sharing ``keys``."""
    drop = [c for c in ("la", "lsoa") if c not in keys]
    pairs = a.drop(columns=drop).merge(b.drop(columns=drop), on=keys)
    days = (pairs["r1"] - pairs["r0"]).dt.days
    ok = (days >= 1) & (days <= 365) & (pairs["c0"] < pairs["r1"])
    ok &= ~pairs["cp"] | (pairs["ever_cp"] == pairs["repeat"])
    return pairs.loc[ok, ["a", "b"]]


def _match_in_rounds(
    a: pd.DataFrame, b: pd.DataFrame, keys: list[str], rng, rounds: int = 12
) -> pd.DataFrame:
    """Random one-to-one matching within ``keys`` groups too large for all pairs (an LA).

    Each round shuffles both sides, pairs the k-th ``a`` of a group with its k-th ``b`` and
    keeps the admissible pairs; the rest try again. Memory stays linear in the rows.
    """
    chosen = []
    for _ in range(rounds):
        if not len(a) or not len(b):
            break
        a = a.assign(_pos=0).iloc[rng.permutation(len(a))]
        b = b.assign(_pos=0).iloc[rng.permutation(len(b))]
        a["_pos"] = a.groupby(keys, sort=False).cumcount()
        b["_pos"] = b.groupby(keys, sort=False).cumcount()
        m = _pairs(a, b, [*keys, "_pos"])
        chosen.append(m)
        a, b = a[~a["a"].isin(m["a"])], b[~b["b"].isin(m["b"])]
    return pd.concat(chosen, ignore_index=True) if chosen else pd.DataFrame({"a": [], "b": []})


def _earlier_episodes(
    rng, year: int, main: pd.DataFrame, need_cp: np.ndarray, lsoa_hr: pd.Series
) -> tuple[pd.DataFrame, np.ndarray]:
    """Same-year earlier episodes for the flagged children in ``main`` (one row each).

    Returns the new episode rows and, per row of ``main``, whether a CP-plan episode was placed.
    """
    first = np.datetime64(f"{year - 1}-04-01")
    r1 = main["referral_date"].to_numpy("datetime64[D]")
    lo = np.maximum(first, r1 - np.timedelta64(365, "D"))
    # no referral more than 40 weeks before birth (rule 8606)
    dob = main["date_of_birth"].to_numpy("datetime64[D]")
    lo = np.maximum(lo, dob - np.timedelta64(timeline.PREBIRTH_DAYS, "D"))
    hr = lsoa_hr[main["lsoa"]].to_numpy()
    levels = {k: i for i, k in enumerate(r.OUTCOME_LEVELS)}
    placed = np.zeros(len(main), bool)
    is_cp = np.zeros(len(main), bool)
    start = np.full(len(main), np.datetime64("NaT", "D"))
    dur = np.zeros(len(main), np.int64)
    for level, want in (("cp_plan", need_cp), ("nfa", np.ones(len(main), bool))):
        todo = want & ~placed
        log_hr = r.DURATION["level_log_hr"][level] + hr[todo]
        d = np.floor(r.piecewise_exponential(rng, log_hr)).astype(np.int64)
        gap = rng.integers(GAP_DAYS[0], GAP_DAYS[1] + 1, todo.sum())
        s = r1[todo] - r.days(d + gap)
        fits = s >= lo[todo]
        if level == "cp_plan":  # room for a CIN plan day, a weekday ICPC and a plan end
            fits &= d >= MIN_CP_EPISODE_DAYS
        idx = np.flatnonzero(todo)[fits]
        placed[idx], is_cp[idx], start[idx], dur[idx] = True, levels[level] == 2, s[fits], d[fits]
    k = np.flatnonzero(placed)
    cp = is_cp[k]
    s, d = start[k], dur[k]
    nat = np.datetime64("NaT", "D")
    o_a = np.minimum(rng.integers(1, 46, len(k)), d // 3)
    o_p = o_a + np.minimum(rng.integers(0, 31, len(k)), d // 3)
    codes = np.array(list(r.CP_CATEGORIES), dtype=object)
    p_cat = np.array([v[1] for v in r.CP_CATEGORIES.values()])
    closure = s + r.days(d)
    ass, cin_s, cp_s = s + r.days(o_a), s + r.days(o_a), s + r.days(o_p)
    if cp.any():  # a weekday ICPC after the CIN plan start, before the closure (timeline)
        t = timeline.cp_dates(s[cp], ass[cp], cin_s[cp], cp_s[cp], closure[cp], first, closure[cp])
        ass[cp], cin_s[cp], cp_s[cp] = t["assessment"], t["cin_start"], t["cp_start"]
    rows = pd.DataFrame(
        {
            "child_id": main["child_id"].to_numpy(object)[k],
            "episode_id": main["episode_id"].to_numpy(object)[k] + "P",
            "year": np.full(len(k), year, np.int64),
            "referral_date": s,
            "referral_source": r.referral_sources(rng, len(k)),
            "referral_nfa": ~cp,
            "assessment": cp,
            "assessment_date": np.where(cp, ass, nat),
            "outcome": np.where(cp, "cp_plan", "nfa").astype(object),
            "cin_plan_start": np.where(cp, cin_s, nat),
            "cin_plan_end": np.where(cp, cp_s, nat),
            "cp_plan_start": np.where(cp, cp_s, nat),
            "cp_plan_end": np.where(cp, closure, nat),
            "cp_category": np.where(
                cp, codes[rng.choice(len(codes), len(k), p=p_cat / p_cat.sum())], None
            ),
            "looked_after_start": np.full(len(k), nat),
            "closure_date": closure,
            "closure_reason": r.closure_reasons(np.where(cp, 2, 0), cp),
            "censored": np.zeros(len(k), bool),
            "rereferral_within_12m": np.zeros(len(k), bool),
            "repeat_cp_plan": np.zeros(len(k), bool),
        }
    )
    return rows, placed & is_cp


def link(rng: np.random.Generator, parts: dict, lsoa_hr: pd.Series) -> dict:
    """Link flagged episodes to earlier ones (see the module docstring), in place.

    ``parts``: year -> dict with DataFrames ``children``, ``episodes``, ``factors`` as drawn
    by ``records._year`` (one child row and one episode per referred child). ``lsoa_hr``: the
    episode-duration log hazard ratio by LSOA code (all but the outcome level's). Returns the
    per-year counts for the truth.
    """
    report = {}
    ever_cp: set = set()  # children with a CP plan in the records so far
    for year in sorted(parts):
        cur = parts[year]
        flagged = cur["episodes"][["rereferral_within_12m", "repeat_cp_plan"]].sum()
        linked = pd.DataFrame({"a": [], "b": []})
        if year - 1 in parts:
            linked = _cross_year(rng, cur, parts[year - 1], ever_cp)
            _rename(cur, parts[year - 1]["children"], linked)
        ep = cur["episodes"]
        from_last_year = ep["child_id"].isin(set(linked["b"]))
        repeat_linked = int(
            (from_last_year & ep["child_id"].isin(ever_cp) & ep["repeat_cp_plan"]).sum()
        )
        todo = ep[ep["rereferral_within_12m"] & ~from_last_year]
        main = todo.merge(cur["children"][["child_id", "lsoa", "date_of_birth"]], on="child_id")
        rows, cp_placed = _earlier_episodes(
            rng, year, main, main["repeat_cp_plan"].to_numpy(bool), lsoa_hr
        )
        cur["episodes"] = pd.concat([ep, rows], ignore_index=True)
        ever_cp |= set(cur["episodes"].loc[cur["episodes"]["cp_plan_start"].notna(), "child_id"])
        report[str(year)] = {
            "rereferrals": int(flagged["rereferral_within_12m"]),
            "rereferrals_linked_previous_year": len(linked),
            "rereferrals_earlier_episode_same_year": len(rows),
            "rereferrals_earlier_not_in_records": len(main) - len(rows),
            "repeat_cp_plans": int(flagged["repeat_cp_plan"]),
            "repeat_cp_linked_previous_year": repeat_linked,
            "repeat_cp_earlier_plan_same_year": int(cp_placed.sum()),
            "repeat_cp_earlier_not_in_records": int(flagged["repeat_cp_plan"])
            - repeat_linked
            - int(cp_placed.sum()),
        }
    return report


def _rename(cur: dict, previous_children: pd.DataFrame, linked: pd.DataFrame) -> None:
    """Give each matched year-t child (``a``) its previous-year identity (``b``).

    The id, the date of birth and the age one year on, in the children, episodes and factors
    tables.
    """
    if not len(linked):
        return
    new_id = pd.Series(linked["b"].to_numpy(), index=linked["a"].to_numpy())
    ch = cur["children"]
    hit = ch["child_id"].isin(new_id.index).to_numpy()
    before = previous_children.set_index("child_id").loc[new_id[ch.loc[hit, "child_id"]]]
    ch.loc[hit, "date_of_birth"] = before["date_of_birth"].to_numpy()
    ch.loc[hit, "age"] = before["age"].to_numpy() + 1
    for name in ("children", "episodes", "factors"):
        t = cur[name]
        t["child_id"] = t["child_id"].map(new_id).fillna(t["child_id"])
