"""Structure of the national model, and its log density against a textbook per-LSOA model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest

from socialgradient.api import default_data
from socialgradient.data.synthetic.england import simulate
from socialgradient.model import build as model_module
from socialgradient.model import families
from socialgradient.model.build import build_model, dispersion, la_effects
from socialgradient.model.data import EFFECTS, NeighbourhoodData
from socialgradient.model.families import Rows
from socialgradient.model.terms import NeighbourhoodModerators
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
    model = build_model(data, Spec("referrals", family="negbin", la_effects="centred"))
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
    model = build_model(data, Spec("referrals", family="poisson", la_effects="centred"))
    names = set(model.named_vars)
    assert "inv_sqrt_phi" not in names
    assert "phi" not in names
    assert {rv.name for rv in model.free_RVs} == {"a", "b_w", "b_b", "b_x", "la_effect", "la_cov"}


def assert_same_density(model, ref, points):
    """Log densities equal up to a constant, and gradients equal, at ``points``."""

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


@pytest.mark.parametrize("family", ["poisson", "negbin"])
def test_logp_equals_textbook_model_up_to_a_constant(data, family):
    model = build_model(data, Spec("referrals", family=family, la_effects="centred"))
    ref = reference_model(data, family)
    assert set(model.initial_point()) == set(ref.initial_point())
    assert_same_density(model, ref, random_points(model, 6, seed=1))


@pytest.mark.parametrize("stable", [True, False])
def test_both_negbin_normalisers_equal_the_textbook_model(data, stable, monkeypatch):
    """The stable normaliser and the cheaper one for overdispersed data
    (``model.nb_stable``) are the same density as PyMC's NegativeBinomial."""
    monkeypatch.setattr(model_module, "nb_stable", lambda data, family: stable)
    model = build_model(data, Spec("referrals", family="negbin", la_effects="centred"))
    assert_same_density(model, reference_model(data, "negbin"), random_points(model, 6, seed=2))


def test_cheaper_normaliser_only_where_the_data_rule_out_the_poisson_limit(data):
    rng = np.random.default_rng(8)
    mean = rng.uniform(0.5, 30.0, 20_000)
    assert families.overdispersed(rng.negative_binomial(5.0, 5.0 / (5.0 + mean)), mean)
    assert not families.overdispersed(rng.poisson(mean), mean)
    england = default_data()
    referrals = NeighbourhoodData.from_table(england, "referrals")
    assert not model_module.nb_stable(referrals, "negbin")  # z = 41
    assert model_module.nb_stable(
        NeighbourhoodData.from_table(england, "looked_after"), "negbin"
    )  # z = 1.5
    assert model_module.nb_stable(referrals, "poisson")  # only the NB has two forms
    # strata, trend or moderators: the per-LA fit is not the mean structure, keep stable
    z = NeighbourhoodModerators(np.zeros((len(referrals.y), 1)), ("z",))
    assert model_module.nb_stable(
        dataclasses.replace(referrals, terms=(*referrals.terms, z)), "negbin"
    )


@pytest.mark.parametrize("family", ["poisson", "negbin", "binomial"])
@pytest.mark.parametrize("centred", ["all", "none", "mixed"])
def test_sufficient_equals_pointwise_for_every_family_and_geometry(data, family, centred):
    """The fast likelihood equals PyMC's own per-row distribution (``likelihood="pointwise"``)
    for every family, with centred, non-centred and mixed LA effects and a moderator."""
    rng = np.random.default_rng(4)
    z = NeighbourhoodModerators(rng.normal(0, 1, (len(data.y), 1)), ("z",))
    data = dataclasses.replace(data, terms=(*data.terms, z))
    if family == "binomial":
        trials = data.y + rng.integers(0, 30, len(data.y))
        data = dataclasses.replace(data, trials=trials, exposure=trials.astype(float))
        spec = Spec("referrals", family=family, trials="trials")
    else:
        spec = Spec("referrals", family=family)
    mask = {
        "all": np.ones(N_LA, bool),
        "none": np.zeros(N_LA, bool),
        "mixed": np.arange(N_LA) % 3 == 0,
    }[centred]
    fast = build_model(data, spec, centred=mask)
    ref = build_model(data, spec, likelihood="pointwise", centred=mask)
    assert [p.name for p in ref.potentials] == []
    assert ref.observed_RVs[0].name == "referrals"
    assert set(fast.initial_point()) == set(ref.initial_point())
    assert_same_density(fast, ref, random_points(fast, 4, seed=3))


def test_noncentred_and_mixed_effects_keep_la_effect_in_la_order(data):
    mask = np.arange(N_LA) % 2 == 0
    model = build_model(data, Spec("referrals"), centred=mask)
    free = {rv.name for rv in model.free_RVs}
    assert {"la_z_c0", "la_effect_c2"} <= free
    assert "la_effect" in {d.name for d in model.deterministics}
    assert list(model.coords["la_c2"]) == list(data.la[mask])
    assert list(model.coords["la_c0"]) == list(data.la[~mask])
    point = model.initial_point()
    point["la_effect_c2"] = np.arange(mask.sum() * 2.0).reshape(-1, 2)
    point["la_z_c0"] = np.zeros(((~mask).sum(), 2))
    (out,) = model.replace_rvs_by_values([model["la_effect"]])
    value = model.compile_fn(out, inputs=model.value_vars, mode=MODE, on_unused_input="ignore")(
        point
    )
    np.testing.assert_allclose(value[mask], point["la_effect_c2"])


def test_intercept_only_centring_is_the_same_multivariate_normal():
    """LAs centring both effects, the intercept alone, or neither: theta = centre + L z with
    z standard normal in every block, so draws of la_effect have mean ``centre`` and
    covariance L L^T whatever the block (20,000 prior draws per LA)."""
    from socialgradient.model import parameterisation
    from socialgradient.model.build import la_theta

    n_la, draws = 6, 20_000
    counts = np.array([2, 1, 0, 1, 0, 2])
    chol = np.array([[0.3, 0.0], [0.12, 0.2]])
    centre = np.column_stack([np.linspace(-4, -3, n_la), np.linspace(0.3, 0.6, n_la)])
    la = np.array([f"E{i}" for i in range(n_la)])
    with pm.Model(coords={"la": la, "effect": ["intercept", "slope"]}) as model:
        theta = la_theta(pt.as_tensor(centre), pt.as_tensor(chol), counts, la, "effect")
    assert {rv.name for rv in model.free_RVs} == {
        "la_effect_c2",
        "la_effect_c1",
        "la_z_c1",
        "la_z_c0",
    }
    assert list(model.coords["la_c1"]) == ["E1", "E3"]
    value = pm.draw(theta, draws=draws, random_seed=5)  # (draws, la, effect)
    np.testing.assert_allclose(value.mean(axis=0), centre, atol=0.01)
    for j in range(n_la):
        cov = np.cov(value[:, j, :].T)
        np.testing.assert_allclose(cov, chol @ chol.T, atol=0.004)
    # a boolean per LA still means both (True) or neither (False)
    np.testing.assert_array_equal(parameterisation.as_counts(np.array([True, False])), [2, 0])


def test_auto_centres_informative_las_only():
    """England-sized counts pin the LA spreads down (sd(log tau) < 0.1): every LA is centred;
    a sparse outcome on small LAs: almost none."""
    from socialgradient.model import parameterisation

    table = simulate(seed=3, scale=1.0).table
    dense = NeighbourhoodData.from_table(table, "referrals")
    assert (parameterisation.choose(dense, "negbin", "auto") == 2).all()
    se, tau = parameterisation.information(dense, "negbin")
    assert (parameterisation.tau_uncertainty(se, tau) < 0.07).all()  # 0.060, 0.063
    assert 0.85 < np.all(se < tau / 2, axis=1).mean() < 1  # 137 of 150 by the per-LA rule
    small = table[table["la"].isin(table["la"].unique()[:40])]
    small = small.groupby("la").head(25).reset_index(drop=True)
    sparse = NeighbourhoodData.from_table(small, "looked_after")
    assert (parameterisation.choose(sparse, "negbin", "auto") == 2).mean() < 0.2
    se, tau = parameterisation.information(sparse, "negbin")
    assert (parameterisation.tau_uncertainty(se, tau) > 0.5).all()  # 0.82, 27.7
    assert (parameterisation.choose(sparse, "negbin", "centred") == 2).all()
    assert not parameterisation.choose(sparse, "negbin", "noncentred").any()


def test_logp_responds_to_the_data(data):
    """Guard against a likelihood that silently ignores y: changing counts changes logp."""
    spec = Spec("referrals", family="negbin")
    model = build_model(data, spec, centred=np.ones(N_LA, bool))
    other = build_model(dataclasses.replace(data, y=data.y + 1), spec, centred=np.ones(N_LA, bool))
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


def test_negbin_is_smooth_into_the_poisson_limit(data):
    """As phi grows the NB2 normaliser tends to the Poisson one without rounding noise
    (the lgamma-difference form was off by 0.5 nats at phi = 1e11 on 2,000 rows, and chains
    stuck there)."""
    rows = Rows(y=data.y, log_exposure=np.log(data.children))
    eta = np.random.default_rng(5).normal(-4, 0.5, len(data.y))
    phi = pt.dscalar("phi")
    gap = pytensor.function(
        [phi],
        families.get("negbin").normaliser(eta, rows, {"phi": phi})
        - families.get("poisson").normaliser(eta, rows, {}),
        mode=MODE,
    )
    gaps = np.abs([gap(p) for p in 10.0 ** np.arange(6, 16)])
    # Analytically the gap is O(sum y^2 / phi): it must shrink with phi, down to rounding.
    assert np.all(gaps[1:] <= gaps[:-1] + 1e-9), gaps
    assert gaps[-1] < 1e-6, gaps
