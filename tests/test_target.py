"""Sampling to a target (socialgradient.sampling.target): stops at the first block whose
diagnostics pass, is reproducible for a seed, and says what a budget left unmet."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest

from socialgradient.sampling import target as tg


@pytest.fixture(scope="module")
def compiled():
    nutpie = pytest.importorskip("nutpie")
    y = np.random.default_rng(0).normal(1.0, 2.0, size=500)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 5)
        sd = pm.HalfNormal("sd", 5)
        pm.Normal("y", mu, sd, observed=y)
    return nutpie.compile_pymc_model(model)


def test_checkpoints_are_blocks_up_to_the_budget():
    t = tg.Target(block=100, min_draws=250, max_draws=720)
    assert t.checkpoints() == [300, 400, 500, 600, 700, 720]
    assert tg.Target(block=50, min_draws=50, max_draws=100).checkpoints() == [50, 100]


@pytest.mark.parametrize(
    "bad",
    [
        {"rhat": 1.0},
        {"ess_bulk": 0},
        {"block": 0},
        {"min_draws": 500, "max_draws": 100},
        {"max_seconds": 0},
    ],
)
def test_target_refuses_settings_without_a_stopping_rule(bad):
    with pytest.raises(ValueError, match="(?i)" + next(iter(bad)).split("_")[0]):
        tg.Target(**bad)


def test_stops_at_the_first_block_that_passes_and_is_reproducible(compiled):
    target = tg.Target(block=50, min_draws=100, max_draws=3000)
    tree, verdict = tg.sample(compiled, target, chains=4, tune=200, seed=7)
    assert verdict.reached
    assert verdict.stopped_by == "target"
    assert verdict.draws < target.max_draws
    assert verdict.draws % target.block == 0
    posterior = tree["posterior"].to_dataset()
    assert posterior.sizes["draw"] == verdict.draws
    assert np.isfinite(posterior["mu"].values).all()
    # the kept draws pass; the block before them did not (else it would have stopped there)
    worst, unmet = tg.diagnose(posterior, target)
    assert not unmet
    assert worst["rhat"] <= target.rhat
    assert min(worst["ess_bulk"], worst["ess_tail"]) >= 400
    if verdict.draws > target.checkpoints()[0]:
        _, before = tg.diagnose(posterior.isel(draw=slice(0, verdict.draws - 50)), target)
        assert before
    again, verdict2 = tg.sample(compiled, target, chains=4, tune=200, seed=7)
    assert verdict2.draws == verdict.draws
    np.testing.assert_array_equal(again["posterior"]["mu"].values, posterior["mu"].values)
    assert tree["sample_stats"].to_dataset().sizes["draw"] == verdict.draws


def test_a_budget_that_is_too_small_says_what_was_not_reached(compiled):
    target = tg.Target(ess_bulk=1e6, block=50, min_draws=50, max_draws=150)
    tree, verdict = tg.sample(compiled, target, chains=2, tune=100, seed=1)
    assert not verdict.reached
    assert verdict.stopped_by == "draw budget"
    assert verdict.draws == 150
    assert tree["posterior"].to_dataset().sizes["draw"] == 150
    assert set(verdict.unmet["ess_bulk"]) == {"mu", "sd"}
    assert verdict.checks == 3
    assert verdict.to_dict()["target"]["ess_bulk"] == 1e6


def test_names_restrict_what_decides(compiled):
    target = tg.Target(ess_bulk=1e6, block=50, min_draws=50, max_draws=100)
    _, verdict = tg.sample(compiled, target, chains=2, tune=100, seed=1, names=["mu"])
    assert set(verdict.unmet["ess_bulk"]) == {"mu"}
