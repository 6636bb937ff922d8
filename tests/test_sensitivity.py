"""Power-scaling sensitivity of the headline quantities (summary.json's ``sensitivity``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr

import socialgradient.api as sg
from socialgradient.model import forward, joint
from socialgradient.model.priors import log_prior
from socialgradient.results import prior_density, sensitivity
from socialgradient.results.summaries import NATIONAL_KEYS
from socialgradient.spec import LAOutcome, Priors, Spec

THRESHOLDS = ("referrals", "assessments")


def geography(n_la: int, per_la: int) -> pd.DataFrame:
    t = sg.default_data()
    las = t["la"].unique()[::3][:n_la]
    return t[t["la"].isin(las)].groupby("la").head(per_la).reset_index(drop=True)


@pytest.mark.filterwarnings("ignore:The effect of Potentials:UserWarning")
def test_log_prior_matches_the_model_density():
    """Differences between draws of the numpy log prior equal PyMC's (constants cancel)."""
    p = Priors(fixed="student_t", fixed_nu=5, b_w_mean=0.3, inv_sqrt_phi=0.7)
    table = geography(3, 10).assign(age_band=lambda t: np.where(t.index % 2, "0-4", "5-9"))
    model = sg.build(table, Spec("referrals", stratum="age_band", priors=p))
    names = ["a", "b_w", "b_b", "b_x", "inv_sqrt_phi", "stratum_offset", "la_sd", "la_corr"]
    prior = pm.sample_prior_predictive(draws=6, model=model, random_seed=3, var_names=names)
    prior = prior["prior"].to_dataset().assign(phi=lambda d: 1 / d["inv_sqrt_phi"] ** 2)
    ours = log_prior(prior, p, default_mean=-4.0)
    assert set(ours) == {"a", "b_w", "b_b", "b_x", "la_sd", "la_corr", "phi", "stratum_offset"}
    for name, rv in (("b_w", "b_w"), ("a", "a"), ("phi", "inv_sqrt_phi")):
        theirs = pm.logp(model[rv], prior[rv].values[0]).eval()  # elementwise over the draws
        np.testing.assert_allclose(np.diff(ours[name][0]), np.diff(theirs), rtol=1e-6, atol=1e-9)
    offsets = prior["stratum_offset"].values[0]  # (draw, contrast, effect): broadcast
    theirs = pm.logp(model["stratum_offset"], offsets).eval().sum(axis=(1, 2))
    np.testing.assert_allclose(np.diff(ours["stratum_offset"][0]), np.diff(theirs), rtol=1e-6)
    r = prior["la_corr"].values[0]
    np.testing.assert_allclose(ours["la_corr"][0], (p.lkj_eta - 1) * np.log(1 - r**2))


def test_diagnosis_and_flag_follow_priorsense():
    assert sensitivity.diagnose(0.06, 0.06) == sensitivity.CONFLICT
    assert sensitivity.diagnose(0.2, 0.01) == sensitivity.WEAK
    assert sensitivity.diagnose(0.01, 0.3) == ""
    passing = {"verdict": "PASS", "reasons": []}
    assert sensitivity.flag(passing, {"conflict": []}) is passing
    flagged = sensitivity.flag(passing, {"conflict": ["gradient_mean_la"], "threshold": 0.05})
    assert flagged["verdict"] == "WARN"
    assert "prior-data conflict" in flagged["reasons"][0]
    assert "gradient_mean_la" in flagged["reasons"][0]
    assert passing == {"verdict": "PASS", "reasons": []}  # not modified
    failing = {"verdict": "FAIL", "reasons": ["R-hat"]}
    assert sensitivity.flag(failing, {"conflict": ["x"], "threshold": 0.05})["verdict"] == "FAIL"


@pytest.mark.slow  # two small fits: 8 s with nutpie's compile cache warm, 60 s cold
def test_a_strong_wrong_prior_is_a_prior_data_conflict_and_the_default_is_not():
    table, truth = forward.draw(geography(12, 30), forward.Truth(), outcome="events", seed=5)
    assert truth["gradient_mean_la"] > 1.3  # the data say a steep gradient
    fits = {}
    for label, priors in (("default", Priors()), ("wrong", Priors(b_w_mean=-0.5, b_w=0.15))):
        spec = Spec("events", priors=priors)
        tree = sg.fit(table, spec, draws=200, tune=200, chains=2, progressbar=False)
        fits[label] = sg.summarise(tree)
    default, wrong = fits["default"]["sensitivity"], fits["wrong"]["sensitivity"]
    assert default["conflict"] == []
    assert all(q["prior"] < 0.05 for q in default["quantities"].values()), default
    assert default["quantities"]["gradient_mean_la"]["likelihood"] > 0.05
    assert wrong["quantities"]["gradient_mean_la"]["diagnosis"] == sensitivity.CONFLICT
    assert "gradient_mean_la" in wrong["conflict"]
    reasons = fits["wrong"]["diagnostics"]["reasons"]
    assert any("prior-data conflict" in r and "gradient_mean_la" in r for r in reasons)
    assert fits["wrong"]["diagnostics"]["verdict"] != "PASS"
    assert not any("prior-data" in r for r in fits["default"]["diagnostics"]["reasons"])


def test_a_fit_without_draws_for_the_likelihood_is_skipped_not_an_error():
    spec = Spec("referrals")
    post = xr.Dataset({"a": (("chain", "draw"), np.zeros((1, 4)))})
    tree = xr.DataTree.from_dict({"posterior": post})
    tree.attrs.update(spec=spec.to_json(), outcome="referrals", family="negbin")
    out = sensitivity.power_scaling(tree)
    assert "log_likelihood" in out["skipped"]
    one_threshold = Spec("t1", outcomes=("t1", "t2"))  # a view of a joint fit: no "outcomes"
    tree.attrs["spec"] = one_threshold.to_json()
    assert "one threshold of a joint fit" in sensitivity.power_scaling(tree)["skipped"]
    assert sensitivity.flag({"verdict": "PASS", "reasons": []}, out)["verdict"] == "PASS"


def test_too_few_draws_for_power_scaling_are_skipped_with_the_count():
    """calibrate's replicates keep a handful of draws with a log-likelihood: no crash."""
    spec = Spec("referrals")
    sample = {"chain": [0, 1], "draw": np.arange(20)}
    post = xr.Dataset({"a": (("chain", "draw"), np.zeros((2, 20)))}, coords=sample)
    loglik = xr.Dataset(
        {"referrals": (("chain", "draw", "lsoa"), np.zeros((2, 20, 3)))}, coords=sample
    )
    tree = xr.DataTree.from_dict({"posterior": post, "log_likelihood": loglik})
    tree.attrs.update(spec=spec.to_json(), outcome="referrals", family="negbin")
    out = sensitivity.power_scaling(tree)
    assert out == {
        "skipped": f"only 40 draws with a log-likelihood; power-scaling needs at least "
        f"{sensitivity.MIN_DRAWS}"
    }


def _logp_diff(model, name: str, values: np.ndarray) -> np.ndarray:
    """Differences between draws of PyMC's log density of ``name`` at ``values``."""
    theirs = np.asarray(pm.logp(model[name], values).eval())
    return np.diff(theirs.reshape(len(values), -1).sum(axis=1))


@pytest.mark.filterwarnings("ignore:The effect of Potentials:UserWarning")
def test_joint_log_prior_matches_the_model_density():
    """Every threshold's priors and the LKJ density of the 2K x 2K LA correlation matrix."""
    p = Priors(fixed="student_t", fixed_nu=4, b_w_mean=0.2, la_sd_slope=0.3, lkj_eta=3.0)
    spec = Spec("referrals", outcomes=THRESHOLDS, priors=p)
    datas = sg.encode(geography(3, 10), spec)
    model = joint.build(datas, spec)
    names = ["a", "b_w", "b_b", "b_x", "inv_sqrt_phi", "la_cov", "la_sd", "la_corr"]
    prior = pm.sample_prior_predictive(draws=6, model=model, random_seed=4, var_names=names)
    prior = prior["prior"].to_dataset().assign(phi=lambda d: 1 / d["inv_sqrt_phi"] ** 2)
    ours = prior_density.joint_log_prior(prior, p, default_mean=-4.0)
    assert set(ours) == {"a", "b_w", "b_b", "b_x", "la_sd", "la_corr", "phi"}
    for name, rv in (("a", "a"), ("b_w", "b_w"), ("b_x", "b_x"), ("phi", "inv_sqrt_phi")):
        diff = _logp_diff(model, rv, prior[rv].values[0])  # summed over the thresholds
        np.testing.assert_allclose(np.diff(ours[name][0]), diff, rtol=1e-6, atol=1e-9)
    k = len(THRESHOLDS)
    sd = prior["la_sd"].values[0].reshape(6, 2 * k)  # (threshold, effect) -> the LA coefs
    half = pm.HalfNormal.dist(sigma=np.tile([p.la_sd_intercept, p.la_sd_slope], k))
    theirs = pm.logp(half, sd).eval().sum(axis=1)
    np.testing.assert_allclose(np.diff(ours["la_sd"][0]), np.diff(theirs), rtol=1e-6)
    # the correlation matrix from the sampled Cholesky factor, not from la_corr's order
    n = 2 * k
    for draw in range(6):
        chol = np.zeros((n, n))
        chol[np.tril_indices(n)] = prior["la_cov"].values[0, draw]
        cov = chol @ chol.T
        corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
        expected = (p.lkj_eta - 1) * np.linalg.slogdet(corr)[1]
        assert ours["la_corr"][0, draw] == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.filterwarnings("ignore:The effect of Potentials:UserWarning")
def test_term_log_prior_matches_the_model_density():
    """The terms' priors, from their reported per-unit effects and the data's SDs."""
    table = geography(3, 10)
    rng = np.random.default_rng(1)
    table = table.assign(z=rng.normal(2.0, 3.0, len(table)), age=np.arange(len(table)) % 5)
    p = Priors(moderator_intercept=0.7, moderator_slope=0.3, trend_intercept=0.8, trend_slope=0.2)
    p = Priors(**{**vars(p), "curve_sd": 0.4})
    spec = Spec(
        "referrals",
        neighbourhood_moderators=("z",),
        stratum_trend="age",
        curve="spline",
        la_outcome=LAOutcome("assessments", "referrals"),
        spatial="bym2",
        family="poisson",  # (the negative binomial with BYM2 is refused)
        priors=p,
    )
    model = sg.build(table, spec)
    scales = prior_density.term_scales(sg.encode(table, spec))
    assert set(scales) == {"moderator_coef", "trend_coef", "la_outcome_coef"}
    sampled = [
        "moderator_coef",
        "trend_coef",
        "la_outcome_intercept",
        "la_outcome_gradient",
        "la_outcome_coef",
        "la_outcome_sd",
        "curve_sd",
        "spatial_sd",
        "spatial_rho",
    ]
    reported = ["moderator_effect", "trend_effect", "la_outcome_effect"]
    prior = pm.sample_prior_predictive(
        draws=6, model=model, random_seed=5, var_names=sampled + reported
    )["prior"].to_dataset()
    # the scales turn the reported per-unit effects back into the sampled coefficients
    np.testing.assert_allclose(
        prior["moderator_effect"] * scales["moderator_coef"][:, None], prior["moderator_coef"]
    )
    np.testing.assert_allclose(prior["trend_effect"] * scales["trend_coef"], prior["trend_coef"])
    covariates = prior["la_outcome_effect"].isel(la_outcome_term=slice(1, None)).values
    np.testing.assert_allclose(covariates * scales["la_outcome_coef"], prior["la_outcome_coef"])
    ours = prior_density.term_log_prior(prior[reported + sampled[2:]], p, scales)
    assert set(ours) == set(sampled)
    for name in sampled:
        diff = _logp_diff(model, name, prior[name].values[0])
        np.testing.assert_allclose(np.diff(ours[name][0]), diff, rtol=1e-6, atol=1e-9)


@pytest.fixture(scope="module")
def joint_tree() -> xr.DataTree:
    """A tiny joint fit: 4 LAs x 40 LSOAs, two thresholds, 2 x 50 draws (= MIN_DRAWS)."""
    spec = Spec("referrals", outcomes=THRESHOLDS)
    table = geography(4, 40)
    return sg.fit(table, spec, draws=50, tune=100, chains=2, progressbar=False)


def _with_priors(tree: xr.DataTree, priors: Priors) -> xr.DataTree:
    """The same draws, read as a fit under ``priors`` (the prior power-scaling scales)."""
    out = tree.copy()
    spec = dataclasses.replace(Spec.from_json(tree.attrs["spec"]), priors=priors)
    out.attrs = {**tree.attrs, "spec": spec.to_json()}
    return out


FLAT = Priors(
    a=100.0,
    b_w=100.0,
    b_b=100.0,
    b_x=100.0,
    la_sd_intercept=100.0,
    la_sd_slope=100.0,
    lkj_eta=1.0,
    inv_sqrt_phi=100.0,
    moderator_intercept=100.0,
    moderator_slope=100.0,
)


@pytest.mark.filterwarnings("ignore:The effect of Potentials:UserWarning")
def test_a_joint_fit_s_summary_has_sensitivity_per_threshold(joint_tree):
    s = sg.summarise(joint_tree)
    sens = s["sensitivity"]
    assert sens["draws"] == 100
    assert sens["scaled_priors"] == ["a", "b_b", "b_w", "b_x", "la_corr", "la_sd", "phi"]
    assert list(sens["thresholds"]) == list(THRESHOLDS)
    for per in sens["thresholds"].values():
        assert set(per) == {*NATIONAL_KEYS, "la_sd_intercept", "la_sd_slope"}
        for q in per.values():
            assert min(q["prior"], q["likelihood"]) >= 0
            assert q["diagnosis"] == sensitivity.diagnose(q["prior"], q["likelihood"])
    assert list(sens["quantities"]) == ["gradient_ratio:assessments/referrals"]
    conflict = [
        f"{t}:{k}"
        for t, per in sens["thresholds"].items()
        for k, q in per.items()
        if q["diagnosis"] == sensitivity.CONFLICT
    ] + [k for k, q in sens["quantities"].items() if q["diagnosis"] == sensitivity.CONFLICT]
    assert sens["conflict"] == conflict
    flagged = any("prior-data conflict" in r for r in s["diagnostics"]["reasons"])
    assert flagged == bool(conflict)
    # what is scaled is the joint prior: a flat one moves nothing, a tight wrong one the gradients
    flat = sensitivity.power_scaling(_with_priors(joint_tree, FLAT))
    for per in flat["thresholds"].values():
        assert all(q["prior"] < 0.01 for q in per.values()), per
    assert flat["conflict"] == []
    wrong = sensitivity.power_scaling(_with_priors(joint_tree, Priors(b_w_mean=-3.0, b_w=0.05)))
    for t in THRESHOLDS:
        assert wrong["thresholds"][t]["gradient_mean_la"]["prior"] > sensitivity.THRESHOLD


def test_a_strong_wrong_term_prior_is_a_prior_data_conflict():
    """A moderator's main effect of 0.8 per SD held at 0 +- 0.02: flagged on the moderator."""
    rng = np.random.default_rng(2)
    geo = geography(6, 30)
    geo = geo.assign(z=rng.normal(0.0, 1.0, len(geo)))
    truth = forward.Truth(moderators={"z": (0.8, 0.0)})
    table, _ = forward.draw(geo, truth, outcome="events", seed=5)
    spec = Spec("events", neighbourhood_moderators=("z",), priors=Priors(moderator_intercept=0.02))
    tree = sg.fit(table, spec, draws=60, tune=150, chains=2, progressbar=False)
    s = sg.summarise(tree)
    sens = s["sensitivity"]
    assert {"moderator_coef", "a", "b_w", "la_sd"} <= set(sens["scaled_priors"])
    name = "moderator_effect:z:intercept"
    assert set(sens["quantities"]) >= {name, "moderator_effect:z:slope", "gradient_mean_la"}
    assert sens["quantities"][name]["diagnosis"] == sensitivity.CONFLICT, sens["quantities"]
    assert name in sens["conflict"]
    assert any(name in r for r in s["diagnostics"]["reasons"])
    assert s["diagnostics"]["verdict"] != "PASS"
    # the same draws under a flat moderator prior: the moderator is no longer prior-sensitive
    flat = sensitivity.power_scaling(_with_priors(tree, FLAT))
    assert flat["quantities"][name]["prior"] < sensitivity.THRESHOLD
    assert name not in flat["conflict"]


def test_the_terms_quantities_are_what_the_summary_reports_of_them():
    """Moderators' and the trend's every effect, the strata's slopes, the LA outcome's gradient."""
    rng = np.random.default_rng(0)
    sample = {"chain": [0], "draw": np.arange(4)}
    effect = ["intercept", "slope"]

    def draws(*dims: str, **coords: list) -> tuple:
        return ("chain", "draw", *dims), rng.normal(size=(1, 4, *(len(coords[d]) for d in dims)))

    coords = {
        "effect": effect,
        "moderator": ["z"],
        "stratum_contrast": ["5-9"],
        "la_outcome_term": ["gradient", "m_c"],
    }
    post = xr.Dataset(
        {
            "b_w": draws(),
            "b_b": draws(),
            "b_x": draws(),
            "la_sd": draws("effect", **coords),
            "moderator_effect": draws("moderator", "effect", **coords),
            "trend_effect": draws("effect", **coords),
            "stratum_offset": draws("stratum_contrast", "effect", **coords),
            "la_outcome_effect": draws("la_outcome_term", **coords),
        },
        coords={**sample, **coords},
    )
    out = sensitivity.quantities_of(post)
    assert set(out) == {
        *NATIONAL_KEYS,
        "la_sd_intercept",
        "la_sd_slope",
        "moderator_effect:z:intercept",
        "moderator_effect:z:slope",
        "trend_effect:intercept",
        "trend_effect:slope",
        "stratum_offset:5-9:slope",
        "la_outcome_effect:gradient",
    }
    assert all(v.dims == ("chain", "draw") for v in out.values())
    expected = post["stratum_offset"].sel(stratum_contrast="5-9", effect="slope")
    np.testing.assert_array_equal(out["stratum_offset:5-9:slope"], expected)
    moderator = post["moderator_effect"].sel(moderator="z", effect="intercept")
    np.testing.assert_array_equal(out["moderator_effect:z:intercept"], moderator)
