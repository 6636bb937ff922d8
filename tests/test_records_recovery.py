"""The national model fitted on aggregates of the child-level records recovers their truth.

Slow tier. The records are drawn with stratum offsets to the LA intercept and slope
(age band, ethnicity), so a stratified fit should recover the *contrasts* between strata
(``d_s - d_ref``), and an unstratified fit to LSOA totals the composition-inclusive
``lsoa_level`` gradient stored in the truth.
"""

import numpy as np
import pandas as pd
import pytest

import socialgradient.api as sg
from socialgradient.data.census import linkage
from socialgradient.data.synthetic import records
from socialgradient.spec import Spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recs():
    return records.simulate_records(seed=7, scale=0.2)


@pytest.mark.parametrize(
    ("stratum", "outcome"), [("age_band", "referrals"), ("ethnicity", "cp_plans")]
)
def test_stratum_contrasts_recovered(recs, stratum, outcome):
    table, report = linkage.aggregate(recs, by=(stratum,))
    assert report.read == report.linked
    tree = sg.fit(
        table, Spec(outcome, stratum=stratum), draws=400, tune=400, chains=2, progressbar=False
    )
    truth = recs.truth["strata"][stratum]
    slope = tree["posterior"]["stratum_effect"].sel(effect="slope")
    ref = str(slope["stratum"].values[0])
    for level in slope["stratum"].values[1:]:
        draws = slope.sel(stratum=level).values.ravel()
        expected = truth[str(level)]["d"] - truth[ref]["d"]
        z = abs(np.median(draws) - expected) / draws.std()
        assert z < 3, (stratum, level, expected, np.median(draws), draws.std())


def test_lsoa_totals_recover_the_composition_inclusive_gradient(recs):
    table, _ = linkage.aggregate(recs, by=())
    tree = sg.fit(table, "referrals", draws=400, tune=400, chains=2, progressbar=False)
    truth = recs.truth["thresholds"]["referrals"]["lsoa_level"]
    summary = sg.summarise(tree)
    for key in ("gradient_mean_la", "gradient_less_deprived_la", "gradient_more_deprived_la"):
        # posterior SD of the log gradient from the 95% ETI; the truth within 3 SDs
        lo, hi = summary[key]["ci95"]
        sd = (np.log(hi) - np.log(lo)) / 3.92
        z = abs(np.log(summary[key]["median"] / truth[key])) / sd
        assert z < 3, (key, summary[key], truth[key])


def test_episode_durations_recovered_with_person_days_as_exposure(recs):
    """Closings of no-further-action episodes per day at risk, by piece of the baseline
    hazard (the stratum): the national Poisson model with exposure ``days`` is the
    piecewise-exponential model, so b_w = g_w, b_b = g_b and the LA SDs are ``la_sd``."""
    t, _ = linkage.aggregate(recs, by=(), outcomes=("durations",))
    pieces = ["0_30", "30_91", "91_182", "182_plus"]
    cells = pd.concat(
        [
            t[["lsoa", "la", "income", "children"]].assign(
                piece=p, days=t[f"days_nfa_{p}"], ends=t[f"ends_nfa_{p}"]
            )
            for p in pieces
        ],
        ignore_index=True,
    )
    cells = cells[cells["days"] > 0]  # no time at risk: no information (dropped explicitly)
    tree = sg.fit(
        cells,
        Spec("ends", family="poisson", stratum="piece", exposure="days"),
        draws=500,
        tune=500,
        chains=2,
        progressbar=False,
    )
    truth = recs.truth["durations"]
    post = tree["posterior"]
    for name, expected in (("b_w", truth["g_w"]), ("b_b", truth["g_b"]), ("b_x", 0.0)):
        draws = post[name].values.ravel()
        assert abs(np.median(draws) - expected) / draws.std() < 3, (name, expected)
    sd = post["la_sd"].median(("chain", "draw")).values
    assert sd == pytest.approx(truth["la_sd"], abs=0.05)
