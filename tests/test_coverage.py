"""Frequentist coverage of the 95% intervals over repeated synthetic data sets (slow).

Each replicate draws a fresh synthetic England on a random subset of 30 LAs (the truth is
then defined on that subset), fits the negative-binomial model and records whether each
95% equal-tailed interval contains the truth. Across replicates the national intervals
should cover about 95% of the time, and so should the per-LA gradient intervals.
"""

import numpy as np
import pytest

import socialgradient.api as sg
from socialgradient.data.synthetic.england import load_calibration, simulate
from socialgradient.study.calibrate import NATIONAL

pytestmark = pytest.mark.slow

REPLICATES = 20


def replicate(seed: int) -> tuple[list[bool], list[bool]]:
    cal = load_calibration()
    cal = cal.sample(30, random_state=seed)
    syn = simulate(seed=seed, scale=0.3, calibration=cal)
    truth = syn.truth["thresholds"]["referrals"]
    tree = sg.fit(
        syn.table, "referrals", draws=400, tune=400, chains=2, seed=seed, progressbar=False
    )
    summary = sg.summarise(tree)
    national = [summary[k]["ci95"][0] <= truth[k] <= summary[k]["ci95"][1] for k in NATIONAL]
    las = sg.la_gradients(tree)
    true = las["la"].map({c: v["gradient"] for c, v in truth["la"].items()})
    per_la = ((las["gradient_lo95"] <= true) & (true <= las["gradient_hi95"])).tolist()
    return national, per_la


def test_interval_coverage():
    national, per_la = [], []
    for seed in range(REPLICATES):
        n, la = replicate(1000 + seed)
        national += n
        per_la += la
    cover_national, cover_la = np.mean(national), np.mean(per_la)
    print(
        f"coverage: national {cover_national:.3f} of {len(national)}, "
        f"per-LA {cover_la:.3f} of {len(per_la)}"
    )
    # Binomial sd of a 95% rate over 100 intervals is 2.2 points; 600 LA intervals, 0.9.
    assert cover_national >= 0.85
    assert 0.90 <= cover_la <= 0.99
