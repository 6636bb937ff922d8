"""The joint threshold model: structure, steepening probabilities, views, output set."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytensor.tensor as pt
import pytest

import socialgradient.api as sg
from socialgradient.model import joint
from socialgradient.model.build import la_theta
from socialgradient.sampling import joint as joint_fit
from socialgradient.spec import Spec, load_spec
from socialgradient.util import outputs

THRESHOLDS = ("referrals", "assessments", "cin_plans")
N_LA = 10


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    t = sg.default_data()
    return t[t["la"].isin(t["la"].unique()[::5][:N_LA])].reset_index(drop=True)


@pytest.fixture(scope="module")
def tree(table):
    spec = Spec("referrals", outcomes=THRESHOLDS)
    return sg.fit(table, spec, draws=100, tune=150, chains=2, progressbar=False)


def test_spec():
    spec = Spec.from_dict({"outcomes": list(THRESHOLDS)})
    assert spec.outcome == "referrals"
    assert spec.name == "referrals_assessments_cin_plans_negbin"
    assert Spec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="at least two outcomes"):
        Spec("referrals", outcomes=("referrals",))
    with pytest.raises(ValueError, match="joint threshold model supports"):
        joint.check_spec(Spec("referrals", outcomes=THRESHOLDS, stratum="age_band"))
    assert load_spec("models/joint_thresholds.toml").outcomes == (
        "referrals",
        "assessments",
        "cin_plans",
        "cp_plans",
        "looked_after",
    )


def test_model_structure(table):
    datas = sg.encode(table, Spec("referrals", outcomes=THRESHOLDS))
    model = joint.build(datas, Spec("referrals", outcomes=THRESHOLDS))
    assert model.named_vars_to_dims["la_effect"] == ("la", "threshold", "effect")
    assert model.named_vars_to_dims["b_w"] == ("threshold",)
    assert len(model.coords["la_pair"]) == 6 * 5 // 2
    assert [p.name for p in model.potentials] == ["loglik"]


def test_joint_density_is_the_sum_of_the_single_models(table):
    """At any point, the joint likelihood potential equals the sum of the single-outcome
    potentials at each threshold's LA effects (the joint model only adds the correlation
    of LA effects across thresholds, in the prior)."""
    from socialgradient.model.build import build_model

    spec = Spec("referrals", outcomes=THRESHOLDS[:2], family="poisson", la_effects="centred")
    datas = sg.encode(table, spec)
    model = joint.build(datas, spec)
    rng = np.random.default_rng(0)
    point = model.initial_point()
    point = {k: v + rng.normal(0, 0.1, np.shape(v)) for k, v in point.items()}
    (pot,) = model.replace_rvs_by_values([model["loglik"]])
    joint_value = model.compile_fn(
        pot, inputs=model.value_vars, mode="FAST_COMPILE", on_unused_input="ignore"
    )(point)
    flat = point["la_effect_c4"].reshape(len(datas[0].la), 2, 2)  # both thresholds centred
    total = 0.0
    for j, d in enumerate(datas):
        single = build_model(d, Spec(d.outcome, family="poisson", la_effects="centred"))
        (p1,) = single.replace_rvs_by_values([single["loglik"]])
        f = single.compile_fn(
            p1, inputs=single.value_vars, mode="FAST_COMPILE", on_unused_input="ignore"
        )
        total += f(single.initial_point() | {"la_effect": flat[:, j, :]})
    np.testing.assert_allclose(joint_value, total, rtol=1e-10)


@pytest.mark.parametrize("stable", [True, False])
def test_joint_density_is_the_textbook_negative_binomial(table, monkeypatch, stable):
    """The joint potential (all thresholds' rows reached by one repeat; each threshold's NB
    normaliser in its stable or cheaper form) differs between two points by exactly what
    the textbook NB2 log likelihood of every threshold's counts does (scipy), so the model
    is the same whichever form and layout the graph takes."""
    from scipy import stats

    monkeypatch.setattr(joint, "nb_stable", lambda data, family: stable)
    spec = Spec("referrals", outcomes=THRESHOLDS, family="negbin")
    datas = sg.encode(table, spec)
    model = joint.build(datas, spec)
    outs = model.replace_rvs_by_values([model["loglik"], model["la_effect"], model["phi"]])
    f = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    rng = np.random.default_rng(2)
    start = model.initial_point()
    values = []
    for _ in range(2):
        point = {k: v + rng.normal(0, 0.1, np.shape(v)) for k, v in start.items()}
        pot, theta, phi = f(point)
        textbook = 0.0
        for j, d in enumerate(datas):
            coef = theta[d.la_index, j, :]
            mu = d.exposure * np.exp(coef[:, 0] + coef[:, 1] * d.w)
            textbook += stats.nbinom.logpmf(d.y, phi[j], phi[j] / (phi[j] + mu)).sum()
        values.append((pot, textbook))
    (pot1, text1), (pot2, text2) = values
    assert abs(pot1 - pot2) > 1.0  # the points differ
    np.testing.assert_allclose(pot1 - pot2, text1 - text2, rtol=0, atol=1e-6)


def test_summary_and_steepening(tree):
    s = sg.summarise(tree)
    assert list(s["thresholds"]) == list(THRESHOLDS)
    for t in s["thresholds"].values():
        assert set(t) == {
            "gradient_mean_la",
            "gradient_less_deprived_la",
            "gradient_more_deprived_la",
            "contextual_effect",
        }
    assert set(s["p_steepens"]) == {"referrals<assessments", "assessments<cin_plans"}
    post = tree["posterior"]
    expected = float(
        (post["b_w"].sel(threshold="assessments") > post["b_w"].sel(threshold="referrals")).mean()
    )
    assert s["p_steepens"]["referrals<assessments"] == pytest.approx(expected)
    assert s["p_steepens_every_step"] <= min(s["p_steepens"].values())
    assert s["model"]["outcomes"] == list(THRESHOLDS)


def test_view_is_an_ordinary_fit(tree):
    one = joint_fit.view(tree, "assessments")
    assert one.attrs["outcome"] == "assessments"
    assert one["posterior"]["la_effect"].dims == ("chain", "draw", "la", "effect")
    assert sg.la_gradients(one).shape[0] == N_LA
    s = sg.summarise(one)
    assert s["gradient_mean_la"]["median"] == pytest.approx(
        sg.summarise(tree)["thresholds"]["assessments"]["gradient_mean_la"]["median"]
    )


def test_output_set(tree, tmp_path):
    paths = sg.write(tree, tmp_path / "out")
    manifest = outputs.verify(tmp_path / "out")
    assert manifest["spec_hash"] == tree.attrs["spec_hash"]
    las = pd.read_csv(paths["la_gradients"])
    assert las["threshold"].tolist() == [t for t in THRESHOLDS for _ in range(N_LA)]
    assert las["p_steeper_than_england"].between(0, 1).all()
    bands = pd.read_csv(paths["la_bands"])
    assert set(bands["threshold"]) == set(THRESHOLDS)
    s = json.loads(paths["summary"].read_text())
    assert "p_steepens_every_step" in s
    for name in THRESHOLDS:
        assert (tmp_path / "out" / "release" / name / "gradient_curve.png").exists()


def test_centring_any_leading_coefficients_is_the_same_multivariate_normal():
    """Whatever run of leading coefficients an LA centres (an even count: whole thresholds;
    an odd one: a threshold's intercept alone, as single-outcome fits do), its coefficients are
    ``centre + L z`` with z standard normal: the free variables map to the same u, and the
    log density is the standard normal one of z minus log |det L_CC| of the centred block
    (the Jacobian of u_C = centre_C + L_CC z_C)."""
    import pymc as pm
    from scipy import stats

    rng = np.random.default_rng(1)
    k, n_la = 3, 8
    coefs = [f"t{j}:{e}" for j in range(k) for e in ("intercept", "slope")]
    a = rng.normal(size=(2 * k, 2 * k))
    chol = np.linalg.cholesky(a @ a.T + 2 * k * np.eye(2 * k))
    centre = rng.normal(size=(n_la, 2 * k))
    centred = np.array([0, 2, 4, 6, 6, 3, 0, 1])
    la = np.array([f"L{i}" for i in range(n_la)])
    with pm.Model(coords={"la_coef": coefs}) as model:
        u = la_theta(pt.as_tensor(centre), pt.as_tensor(chol), centred, la, "la_coef")
    z = rng.normal(size=(n_la, 2 * k))
    expected = centre + z @ chol.T
    point, log_jacobian = {}, 0.0
    for c in np.unique(centred):
        rows = np.flatnonzero(centred == c)
        if c:
            point[f"la_effect_c{c}"] = expected[rows, :c]
            log_jacobian += len(rows) * np.log(np.diag(chol)[:c]).sum()
        if c < 2 * k:
            point[f"la_z_c{c}"] = z[rows, c:]
    (u,) = model.replace_rvs_by_values([u])
    got = model.compile_fn(u, inputs=model.value_vars, on_unused_input="ignore")(point)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    logp = model.compile_logp()(point)
    np.testing.assert_allclose(logp, stats.norm.logpdf(z).sum() - log_jacobian, rtol=1e-10)
