"""Sampling to a target (socialgradient.sampling.target): stops at the first block whose
diagnostics pass, is reproducible for a seed, and says what a budget left unmet."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
import xarray as xr

from socialgradient.sampling import _nutpie_trace, trace_memory
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
    # every check before the last failed (else it would have stopped there)
    assert verdict.checked[-1] == verdict.draws
    assert verdict.checks == len(verdict.checked)
    for draws in verdict.checked[:-1]:
        _, before = tg.diagnose(posterior.isel(draw=slice(0, draws)), target)
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
    assert verdict.checked[-1] == 150  # the last check is at the budget
    assert verdict.to_dict()["target"]["ess_bulk"] == 1e6


def test_memory_draws_fit_a_check_of_the_trace():
    # 4 chains x (2 (500 + d) + 2 d) x 98,855 values x 8 bytes <= 0.7 x 20 GB: England's BYM2
    d = trace_memory.memory_draws(98_855, 4, 500, 20e9)
    need = lambda draws: 4 * (2 * (500 + draws) + 2 * draws) * 98_855 * 8  # noqa: E731
    assert need(d) <= trace_memory.MEMORY_SHARE * 20e9 < need(d + 1)
    assert trace_memory.memory_draws(2, 4, 500, 20e9) > 10**7  # a small model: never binds
    assert trace_memory.memory_draws(10**9, 4, 500, 1e9) < 0  # not even the warm-up fits


def test_a_trace_too_big_for_memory_lowers_the_budget_and_says_so(compiled, monkeypatch, caplog):
    per_draw = 2 * compiled.n_expanded * 8  # 2 chains
    # memory to check 130 draws after 100 of warm-up: the budget of 150 becomes 130
    need = (2 * (100 + 130) + 2 * 130) * per_draw
    monkeypatch.setattr(trace_memory, "available", lambda: need / trace_memory.MEMORY_SHARE + 1)
    target = tg.Target(ess_bulk=1e6, block=50, min_draws=50, max_draws=150)
    tree, verdict = tg.sample(compiled, target, chains=2, tune=100, seed=1)
    assert (verdict.stopped_by, verdict.draws, verdict.memory_draws) == ("memory budget", 130, 130)
    assert verdict.checked == [50, 100, 130]
    assert tree["posterior"].to_dataset().sizes["draw"] == 130
    assert "the memory budget ran out at 130 draws per chain" in verdict.line()
    assert "draw budget lowered from 150 to 130" in caplog.text
    # the first 130 draws are those of the fit with memory to spare (same seed)
    monkeypatch.setattr(trace_memory, "available", lambda: 1e12)
    free, verdict2 = tg.sample(compiled, target, chains=2, tune=100, seed=1)
    assert (verdict2.stopped_by, verdict2.memory_draws) == ("draw budget", None)
    np.testing.assert_array_equal(
        free["posterior"]["mu"].values[:, :130], tree["posterior"]["mu"].values
    )
    monkeypatch.setattr(trace_memory, "available", lambda: 2 * 100 * per_draw)
    with pytest.raises(MemoryError, match="2 chains x \\(100 \\+ 50\\) draws"):
        tg.sample(compiled, target, chains=2, tune=100, seed=1)


def test_names_restrict_what_decides(compiled):
    target = tg.Target(ess_bulk=1e6, block=50, min_draws=50, max_draws=100)
    _, verdict = tg.sample(compiled, target, chains=2, tune=100, seed=1, names=["mu"])
    assert set(verdict.unmet["ess_bulk"]) == {"mu"}


# -- wired into the fit: the spec's stop, the CLI's defaults, the verdict --------------------


def test_a_failed_check_jumps_to_the_draws_it_predicts():
    target = tg.Target(block=100, min_draws=200, max_draws=4000)
    points = target.checkpoints()  # 200, 300, ..., 4000
    # ESS 300 at 200 draws: 400 needs about 267 draws: the check at 300
    k = tg.next_check(points, 0, {"rhat": 1.005, "ess_bulk": 300, "ess_tail": 900}, target)
    assert points[k] == 300
    # R-hat 1.015 at 400 draws: its excess shrinks to 0.01 by about 600 draws
    k = tg.next_check(points, 2, {"rhat": 1.015, "ess_bulk": 900, "ess_tail": 900}, target)
    assert points[k] == 600
    # at most twice the draws; at least the next block; the budget last
    k = tg.next_check(points, 0, {"rhat": 1.5, "ess_bulk": 1, "ess_tail": 1}, target)
    assert points[k] == 400
    k = tg.next_check(points, 3, {"rhat": 1.0101, "ess_bulk": 900, "ess_tail": 900}, target)
    assert k == 4
    last = len(points) - 1
    assert (
        tg.next_check(points, last - 1, {"rhat": 2, "ess_bulk": 1, "ess_tail": 1}, target) == last
    )
    assert (
        tg.next_check(points, last, {"rhat": 2, "ess_bulk": 1, "ess_tail": 1}, target) == last + 1
    )


def test_the_target_settings_keep_every_earlier_spec_and_its_hash():
    from socialgradient.spec import Sampling, Spec, SpecError

    fixed = Spec("referrals")
    assert fixed.sampling.stop == "draws"  # a spec samples fixed draws unless it says target
    assert "stop" not in fixed.to_json()
    assert "max_draws" not in fixed.to_json()
    target = Spec("referrals", sampling=Sampling(stop="target", max_draws=900, ess=200))
    assert target.hash != fixed.hash
    assert Spec.from_json(target.to_json()) == target
    assert target.replace(draws=300).sampling.stop == "draws"  # --draws N: fixed draws
    assert target.replace(tune=300).sampling.stop == "target"
    assert tg.Target.of(target.sampling).max_draws == 900
    assert tg.Target.of(target.sampling).ess_tail == 200
    with pytest.raises(SpecError, match="nutpie"):
        target.replace(sampler="pymc")
    with pytest.raises(SpecError, match=r"sampling\.rhat"):
        Sampling(rhat=1.0)


def test_cli_run_and_fit_sample_to_the_target_unless_draws_are_given(tmp_path):
    from socialgradient.cli import commands
    from socialgradient.cli.parsing import DEFAULT_SPEC, parser

    def spec(*argv, **kw):
        args = parser().parse_args(list(argv))
        return commands._spec(args, getattr(args, "outcome", None), **kw).sampling

    assert spec("run", stop="target").stop == "target"
    assert spec("run", "--draws", "300", stop="target").stop == "draws"
    assert spec("run", "--draws", "300", stop="target").draws == 300
    assert spec("run", "--max-draws", "900", "--ess", "200", stop="target").max_draws == 900
    fit = ("fit", "t.csv", "--outcome", "referrals", "--out", str(tmp_path))
    assert spec(*fit).stop == "target"
    assert spec(*fit, "--spec", str(DEFAULT_SPEC)).stop == "target"  # as the spec says
    fixed = tmp_path / "fixed.toml"  # a spec of fixed draws keeps them unless --stop target
    fixed.write_text('outcome = "referrals"\n[sampling]\ndraws = 300\n')
    assert spec(*fit, "--spec", str(fixed)).stop == "draws"
    assert spec(*fit, "--spec", str(fixed)).draws == 300
    assert spec(*fit, "--spec", str(fixed), "--stop", "target").stop == "target"
    assert parser().parse_args(["run"]).compare is False  # the Poisson fit on demand
    with pytest.raises(ValueError, match=r"--max-draws.*--stop target"):  # not ignored
        spec("run", "--draws", "300", "--max-draws", "900", stop="target")


@pytest.fixture(scope="module")
def small_table():
    from socialgradient.data.synthetic import england

    return england.simulate(seed=5, scale=0.02).table


def test_a_fit_to_the_target_is_reproducible_and_says_when_the_budget_ran_out(small_table):
    import json

    import socialgradient.api as sg

    settings = dict(progressbar=False, chains=2, tune=150, max_draws=300, ess=60, seed=3)
    a = sg.fit(small_table, "referrals", **settings)
    b = sg.fit(small_table, "referrals", **settings)
    verdict = json.loads(a.attrs["sampling_target"])
    assert a["posterior"].sizes["draw"] == verdict["draws"] <= 300
    np.testing.assert_array_equal(a["posterior"]["b_w"].values, b["posterior"]["b_w"].values)
    assert json.loads(b.attrs["sampling_target"])["draws"] == verdict["draws"]
    d = sg.diagnose(a)
    assert d["sampling"]["stopped_by"] == verdict["stopped_by"]
    # a target out of reach: the budget runs out, and the verdict says what was not reached
    short = sg.fit(small_table, "referrals", **(settings | {"ess": 1e6, "max_draws": 200}))
    d = sg.diagnose(short)
    assert d["sampling"]["stopped_by"] == "draw budget"
    assert not d["sampling"]["reached"]
    assert short["posterior"].sizes["draw"] == 200
    assert d["verdict"] != "PASS"
    assert any("draw budget ran out at 200" in r and "ess_bulk" in r for r in d["reasons"])
    assert "memory_draws" not in d["sampling"]  # memory did not bind
    # where it binds, the diagnostics say so (the verdict of a fit stopped by memory)
    verdict = json.loads(short.attrs["sampling_target"])
    short.attrs["sampling_target"] = json.dumps(
        verdict | {"stopped_by": "memory budget", "memory_draws": 200}
    )
    d = sg.diagnose(short)
    assert (d["sampling"]["stopped_by"], d["sampling"]["memory_draws"]) == ("memory budget", 200)
    assert any("memory budget ran out at 200" in r for r in d["reasons"])


def test_fixed_draws_are_reproducible_too(small_table):
    import socialgradient.api as sg

    settings = dict(progressbar=False, chains=2, tune=100, draws=100, seed=4)
    a = sg.fit(small_table, "referrals", **settings)
    b = sg.fit(small_table, "referrals", **settings)
    assert "sampling_target" not in a.attrs
    assert a["posterior"].sizes["draw"] == 100
    np.testing.assert_array_equal(a["posterior"]["la_sd"].values, b["posterior"]["la_sd"].values)


def test_a_constant_quantity_does_not_keep_the_sampler_running():
    """A reference level fixed at 0 (R-hat NaN) meets the R-hat target; a NaN draw does not."""
    rng = np.random.default_rng(3)
    draws = rng.normal(size=(4, 300, 3))
    draws[:, :, 0] = 0.0  # the reference stratum's effect
    ds = xr.Dataset({"stratum_effect": (("chain", "draw", "stratum"), draws)})
    worst, unmet = tg.diagnose(ds, tg.Target())
    assert unmet == {}
    assert worst["rhat"] < 1.01
    draws[0, 5, 1] = np.nan  # not computable: still unmet
    _, unmet = tg.diagnose(
        xr.Dataset({"stratum_effect": (("chain", "draw", "stratum"), draws)}), tg.Target()
    )
    assert unmet["rhat"] == ["stratum_effect[1]"]


def test_a_check_reads_the_draws_nutpies_inspect_gives(compiled):
    """The check's snapshot (nutpie's Arrow trace, the posterior columns only) holds the same
    draws as nutpie's public ``inspect()`` posterior, up to the draws every chain has; a
    trace that does not read falls back to ``inspect()``."""
    import time

    import nutpie

    sampler = nutpie.sample(
        compiled, draws=120, tune=60, chains=3, cores=3, seed=5, progress_bar=False, blocking=False
    )
    while not tg._finished(sampler):  # wait() would take the results out of the sampler
        time.sleep(0.05)
    public = sampler.inspect()["posterior"].to_dataset()
    light = _nutpie_trace.snapshot(sampler, None)
    assert set(light.data_vars) == set(public.data_vars) == {"mu", "sd"}
    assert (light.sizes["chain"], light.sizes["draw"]) == (3, 120)
    for name in ("mu", "sd"):
        np.testing.assert_array_equal(light[name].values, public[name].values)
    assert list(_nutpie_trace.snapshot(sampler, ["sd"]).data_vars) == ["sd"]

    class Broken:  # a nutpie whose private trace changed
        _sampler = None
        _compiled_model = sampler._compiled_model
        inspect = sampler.inspect

    fallback = _nutpie_trace.snapshot(Broken(), None)
    np.testing.assert_array_equal(fallback["mu"].values, public["mu"].values)
    sampler.abort()
