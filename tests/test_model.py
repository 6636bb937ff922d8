"""Structure of the national model, and its log density against a textbook per-LSOA model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest

from socialgradient.data.synthetic.england import simulate
from socialgradient.model import EFFECTS, NeighbourhoodData, build_model, dispersion, la_effects
from socialgradient.spec import Spec

N_LA = 15
# Python-only evaluation: no C compilation (tens of seconds per function on a busy machine).
MODE = "FAST_COMPILE"


@pytest.fixture(scope="module")
def data() -> NeighbourhoodData:
    table = simulate(seed=3, scale=0.05).table
    keep = table["la"].isin(table["la"].unique()[:N_LA])
    return NeighbourhoodData.from_table(table[keep].reset_index(drop=True), "referrals")


def reference_model(data: NeighbourhoodData, family: str) -> pm.Model:
    """The same priors (``la_effects``) with a textbook per-LSOA likelihood."""
    with pm.Model(coords=data.coords) as model:
        theta = la_effects(data)
        idx = data.la_index
        mu = data.children * pt.exp(theta[idx, 0] + theta[idx, 1] * data.w)
        if family == "poisson":
            pm.Poisson("y", mu=mu, observed=data.y, dims="lsoa")
        else:
            pm.NegativeBinomial("y", mu=mu, alpha=dispersion(), observed=data.y, dims="lsoa")
    return model


def random_points(model: pm.Model, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Perturbations of the initial point (on the unconstrained value variables)."""
    rng = np.random.default_rng(seed)
    start = model.initial_point()
    scale = {"la_effect": 0.3}
    return [
        {k: v + rng.normal(0, scale.get(k, 0.5), np.shape(v)) for k, v in start.items()}
        for _ in range(n)
    ]


def test_variables_dims_and_coords(data):
    model = build_model(data, Spec("referrals", family="negbin"))
    free = {rv.name for rv in model.free_RVs}
    assert free == {"a", "b_w", "b_b", "b_x", "la_effect", "la_cov", "inv_sqrt_phi"}
    assert {"la_sd", "la_corr", "phi"} <= {d.name for d in model.deterministics}
    assert [p.name for p in model.potentials] == ["loglik"]
    assert model.named_vars_to_dims["la_effect"] == ("la", "effect")
    assert model.named_vars_to_dims["la_sd"] == ("effect",)
    assert list(model.coords["la"]) == list(data.la)
    assert len(model.coords["la"]) == N_LA
    assert list(model.coords["lsoa"]) == list(data.lsoa)
    assert list(model.coords["effect"]) == ["intercept", "slope"] == list(EFFECTS)
    assert model.initial_point()["la_effect"].shape == (N_LA, 2)


def test_poisson_has_no_dispersion(data):
    model = build_model(data, Spec("referrals", family="poisson"))
    names = set(model.named_vars)
    assert "inv_sqrt_phi" not in names
    assert "phi" not in names
    assert {rv.name for rv in model.free_RVs} == {"a", "b_w", "b_b", "b_x", "la_effect", "la_cov"}


@pytest.mark.parametrize("family", ["poisson", "negbin"])
def test_logp_equals_textbook_model_up_to_a_constant(data, family):
    model = build_model(data, Spec("referrals", family=family))
    ref = reference_model(data, family)
    assert set(model.initial_point()) == set(ref.initial_point())
    points = random_points(model, 6, seed=1)

    logp, logp_ref = model.compile_logp(mode=MODE), ref.compile_logp(mode=MODE)
    ours = np.array([logp(p) for p in points])
    theirs = np.array([logp_ref(p) for p in points])
    assert np.all(np.isfinite(ours))
    # A constant offset (log n^y, log y! terms) is allowed; differences must agree.
    d_ours, d_theirs = ours - ours[0], theirs - theirs[0]
    np.testing.assert_allclose(d_ours[1:], d_theirs[1:], rtol=1e-8, atol=1e-8 * np.abs(ours).max())
    offset = ours - theirs
    np.testing.assert_allclose(offset, offset[0], rtol=0, atol=1e-8 * np.abs(ours).max())

    dlogp, dlogp_ref = model.compile_dlogp(mode=MODE), ref.compile_dlogp(mode=MODE)
    for p in points:
        g, g_ref = dlogp(p), dlogp_ref(p)
        np.testing.assert_allclose(g, g_ref, rtol=1e-8, atol=1e-8 * np.abs(g_ref).max())


def test_logp_responds_to_the_data(data):
    """Guard against a likelihood that silently ignores y: changing counts changes logp."""
    spec = Spec("referrals", family="negbin")
    model = build_model(data, spec)
    other = build_model(dataclasses.replace(data, y=data.y + 1), spec)
    p1, p2 = random_points(model, 2, seed=2)
    f, g = model.compile_logp(mode=MODE), other.compile_logp(mode=MODE)
    assert not np.isclose(f(p1) - f(p2), g(p1) - g(p2), rtol=1e-6)


def test_prior_predictive_is_weakly_informative(data):
    model = build_model(data, Spec("referrals", family="negbin"))
    # Forward sampling ignores the likelihood potential; PyMC says so, and that is expected.
    with pytest.warns(UserWarning, match="[Pp]otential"):
        prior = pm.sample_prior_predictive(
            draws=4000, model=model, var_names=["a", "b_w", "phi"], random_seed=11
        )
    draws = prior["prior"]
    rate = 1e4 * np.exp(draws["a"].values.ravel())
    lo, hi = np.quantile(rate, [0.05, 0.95])
    # 5-95% range of the rate per 10,000 at an averagely deprived LA covers 10 to 10,000
    # (analytically 3 to 11,200: the upper end is close, hence 4,000 draws).
    assert lo < 10
    assert hi > 10_000
    score = np.exp(draws["b_w"].values.ravel())
    lo, hi = np.quantile(score, [0.05, 0.95])
    assert lo < 1.1
    assert hi > 3
    assert lo > 0.05  # ... but not absurdly wide either (analytically 0.19 to 5.2)
    assert hi < 20
    assert np.all(draws["phi"].values > 0)


def test_unknown_family_raises(data):
    with pytest.raises(ValueError, match="unknown family"):
        Spec("referrals", family="gamma")
    spec = Spec("referrals")
    object.__setattr__(spec, "family", "gamma")  # bypass Spec's own validation
    with pytest.raises(ValueError, match="unknown family"):
        build_model(data, spec)
