"""The study's claims as probabilities: rankings, equivalence, the LA range, the table rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

import socialgradient.api as sg
from fakes import fake_tree
from socialgradient.sampling.fit import save
from socialgradient.study import catalogue, claims, findings

SAMPLE = ("chain", "draw")


def stratified(log_gradients: dict[str, tuple[float, float]], draws: int = 2000, seed: int = 0):
    """A posterior whose strata have log gradients ~ N(mean, sd), b_w = 0 (exact draws)."""
    rng = np.random.default_rng(seed)
    levels = list(log_gradients)
    slope = np.stack(
        [rng.normal(m, s, (2, draws // 2)) for m, s in log_gradients.values()], axis=-1
    )
    effect = np.stack([np.zeros_like(slope), slope], axis=-1)
    return xr.Dataset(
        {
            "b_w": (SAMPLE, np.zeros((2, draws // 2))),
            "stratum_effect": ((*SAMPLE, "stratum", "effect"), effect),
        },
        coords={"stratum": levels, "effect": ["intercept", "slope"]},
    )


def test_rank_probabilities_are_shares_of_draws():
    # a is steeper than b in half the draws (b fixed, a symmetric around it); c never
    post = stratified({"a": (0.5, 0.1), "b": (0.5, 1e-9), "c": (0.0, 0.01)})
    strata = np.exp(post["b_w"] + post["stratum_effect"].sel(effect="slope"))
    steep = claims.extreme(strata, "steepest")
    flat = claims.extreme(strata, "flattest")
    assert sum(steep.values()) == pytest.approx(1.0)
    assert steep["a"] == pytest.approx(0.5, abs=0.04)
    assert steep["c"] == 0.0
    assert flat["c"] == 1.0
    # against a direct count
    values = strata.values.reshape(-1, 3)
    assert steep["b"] == pytest.approx(np.mean(values.argmax(axis=1) == 1))
    with pytest.raises(ValueError, match="steepest"):
        claims.extreme(strata, "highest")
    with pytest.raises(ValueError, match="two strata"):
        claims.extreme(strata.isel(stratum=[0]), "steepest")


def test_equivalence_is_the_mass_inside_the_rope_both_ways_round():
    # log ratio ~ N(0, 0.05): P(|log ratio| <= log 1.05) = 2 Phi(log 1.05 / 0.05) - 1
    post = stratified({"M": (0.5, 0.05), "F": (0.5, 1e-12)}, draws=20000)
    strata = np.exp(post["b_w"] + post["stratum_effect"].sel(effect="slope"))
    out = claims.equivalent(strata)
    from scipy.stats import norm

    want = 2 * norm.cdf(math.log(1.05) / 0.05) - 1  # 0.669
    assert out["M/F"] == pytest.approx(want, abs=0.015)
    assert out["F/M"] == pytest.approx(out["M/F"], abs=1e-3)  # the ROPE is log-symmetric
    assert claims.ROPE[0] == pytest.approx(0.95238, abs=1e-5)
    assert claims.ROPE[1] == 1.05
    far = stratified({"M": (0.8, 0.01), "F": (0.5, 0.01)})
    far_strata = np.exp(far["b_w"] + far["stratum_effect"].sel(effect="slope"))
    assert claims.equivalent(far_strata)["M/F"] == 0.0
    with pytest.raises(ValueError, match="contain 1"):
        claims.equivalent(strata, rope=(1.01, 1.1))


def test_la_range_is_the_percentiles_over_las_in_every_draw():
    tree = fake_tree(n_la=12, chains=2, draws=100)
    post = tree["posterior"].to_dataset()
    out = claims.la_percentiles(post)
    g = np.exp(post["la_effect"].sel(effect="slope").values).reshape(200, 12)
    for key, q in (("la_gradient_p05", 0.05), ("la_gradient_p95", 0.95)):
        per_draw = np.quantile(g, q, axis=1)
        assert out[key]["median"] == pytest.approx(np.median(per_draw))
        lo, hi = out[key]["ci95"]
        assert lo == pytest.approx(np.quantile(per_draw, 0.025))
        assert hi == pytest.approx(np.quantile(per_draw, 0.975))
    assert out["la_gradient_p05"]["median"] < out["la_gradient_p95"]["median"]


def test_compute_answers_what_the_fit_holds():
    plain = claims.compute(fake_tree()["posterior"].to_dataset())
    assert set(plain) == {"rope", "la_gradient_p05", "la_gradient_p95"}
    post = stratified({"x": (0.4, 0.05), "y": (0.6, 0.05)})
    post["moderator_effect"] = xr.DataArray(
        np.stack([np.zeros((2, 1000)), np.full((2, 1000), 0.01)], axis=-1)[:, :, None, :],
        dims=(*SAMPLE, "moderator", "effect"),
        coords={"moderator": ["rural"], "effect": ["intercept", "slope"]},
    )
    out = claims.compute(post)
    assert out["steepest"]["y"] > 0.99
    assert out["flattest"]["x"] > 0.99
    assert set(out["equivalent"]) == {"x/y", "y/x"}
    assert out["moderator_equivalent"] == {"rural": 1.0}  # 0.01 < log 1.05
    several = claims.compute(post, {"stratum_columns": '{"a": ["x"], "b": ["y"]}'})
    assert "steepest" not in several


def test_attach_reads_the_posterior_of_each_output_set_and_fills_table_rows(tmp_path):
    tree = fake_tree(n_la=10)
    tree["posterior"] = stratified({"x": (0.4, 0.05), "y": (0.6, 0.05)}, draws=100).merge(
        tree["posterior"].to_dataset().drop_vars("b_w")
    )
    (tmp_path / "s" / "internal").mkdir(parents=True)
    save(tree, tmp_path / "s" / "internal" / "posterior.nc")
    rows = (
        catalogue.Finding("t", "P(y steepest)", "s", "claims.steepest.y", lambda t: 1.0),
        catalogue.Finding("t", "LA p95", "s", "claims.la_gradient_p95", lambda t: 1.5, 2.4),
        catalogue.Finding("t", "other", "u", "g"),
    )
    summaries = {"s": {"diagnostics": {"verdict": "PASS"}}}  # "u" was not fitted
    assert claims.attach(summaries, {"s": tmp_path / "s"}, rows) == ["s"]
    out = findings.table(summaries, {"s": {}}, rows).set_index("finding")
    assert out.loc["P(y steepest)", "median"] > 0.99
    assert out.loc["P(y steepest)", "truth"] == 1.0
    assert out.loc["LA p95", "published"] == 2.4
    assert out.loc["LA p95", "lo95"] <= out.loc["LA p95", "median"] <= out.loc["LA p95", "hi95"]
    assert out.loc["other", "verdict"] == "not fitted"


def test_the_study_figures_are_in_every_row_that_has_one():
    by_quantity = {(f.spec, f.quantity): f.published for f in findings.FINDINGS}
    assert by_quantity[("needs_factors", "stratum_gradient.factor_neglect")] == 1.84
    assert by_quantity[("needs_factors", "stratum_gradient.factor_physical_disability_child")] == (
        1.47
    )
    assert by_quantity[("cp_categories", "stratum_gradient.cp_neglect")] == 1.98
    assert by_quantity[("cp_categories", "stratum_gradient.cp_sexual")] == 1.62
    assert by_quantity[
        ("needs_factors", "stratum_contrast.factor_neglect/factor_physical_disability_child")
    ] == pytest.approx(1.84 / 1.47)
    assert by_quantity[("cp_categories", "stratum_contrast.cp_neglect/cp_sexual")] == (
        pytest.approx(1.98 / 1.62)
    )
    assert by_quantity[("national_referrals", "claims.la_gradient_p05")] == 1.2
    assert by_quantity[("national_referrals", "claims.la_gradient_p95")] == 2.4


def test_claim_truths_resolve_on_the_default_truth():
    default = sg.default_truth()
    la = [v["gradient"] for v in default["thresholds"]["referrals"]["la"].values()]
    (p05,) = [f for f in claims.CLAIMS if f.quantity == "claims.la_gradient_p05"]
    assert p05.truth(default) == pytest.approx(np.quantile(la, 0.05))
    assert 1.1 < p05.truth(default) < 1.3  # data/README.md: LA gradients 5%-95% 1.19-2.27
    assert claims.stack("needs_factors") == ("factor_neglect", "factor_physical_disability_child")
    assert {f.spec for f in claims.CLAIMS} <= {
        s.name for _, s, _ in findings_specs() if s is not None
    }


def findings_specs():
    from socialgradient.study.suite import national_specs

    return national_specs(sg.MODELS)
