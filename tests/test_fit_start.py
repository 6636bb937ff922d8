"""Chains started near the posterior (socialgradient.sampling.start): where they start, that
each chain's start is its own and reproducible, and which models keep nutpie's start."""

from __future__ import annotations

import numpy as np
import pytest

from socialgradient.data.synthetic.england import PARAMETERS, simulate
from socialgradient.model.data import NeighbourhoodData
from socialgradient.sampling import start as st
from socialgradient.sampling._nutpie_model import starting_at
from socialgradient.sampling.compiled import compile_nutpie
from socialgradient.sampling.fit import fit, model_of
from socialgradient.spec import Sampling, Spec

TRUTH = PARAMETERS["referrals"]


@pytest.fixture(scope="module")
def table():
    return simulate(seed=4, scale=0.1).table


@pytest.fixture(scope="module")
def data(table) -> NeighbourhoodData:
    return NeighbourhoodData.from_table(table, "referrals")


def centred_spec(**sampling) -> Spec:
    return Spec(
        "referrals",
        family="negbin",
        la_effects="centred",
        sampling=Sampling(**({"draws": 100, "tune": 100, "chains": 2, "seed": 3} | sampling)),
    )


def test_the_start_is_the_data_s_estimates_near_the_truth(data):
    model, _ = model_of(data, centred_spec())
    start = st.near_posterior(data, "negbin", model)
    assert start is not None
    free = {model.rvs_to_values[v].name: v for v in model.free_RVs}
    assert set(start) == set(free)  # every free variable of this model
    for name, (value, sd) in start.items():
        assert np.shape(value) == np.shape(sd) == tuple(free[name].shape.eval()), name
        assert np.all(np.isfinite(value)), name
        assert np.all(sd > 0), name
    # the national coefficients within 4 of their approximate posterior SDs of the truth
    truth = {"a": TRUTH["a"], "b_w": np.log(TRUTH["gradient"]), "b_b": TRUTH["b_b"]}
    for name, true in truth.items():
        value, sd = start[name]
        assert abs(float(value) - true) < 4 * float(sd) + 0.02, (name, value, sd)
    packed, _ = start["la_cov_cholesky-cov-packed__"]
    np.testing.assert_allclose(np.exp(packed[0]), TRUTH["sigma_a"], rtol=0.3)
    # phi's moment estimate is rough on 20-odd LSOAs per LA (43 for a true 20 here): a start
    phi = np.exp(-2 * float(start["inv_sqrt_phi_log__"][0]))
    assert TRUTH["phi"] / 3 < phi < TRUTH["phi"] * 3, phi
    # the LA effects: intercepts spread about a + b_b m_c by roughly sigma_a
    effect, effect_sd = start["la_effect"]
    assert effect.shape == (len(data.la), 2)
    assert np.all(effect_sd < np.array([TRUTH["sigma_a"], TRUTH["sigma_b"]]))


def test_each_chain_starts_at_its_own_jitter_reproducibly(data):
    pytest.importorskip("nutpie")
    model, _ = model_of(data, centred_spec())
    start = st.near_posterior(data, "negbin", model)
    assert start is not None
    compiled = starting_at(compile_nutpie(model)[0], model, start)  # the fit's compilation
    first, again, other = (compiled.initial_point_func(s) for s in (11, 11, 12))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    n_la = len(data.la)
    names = [model.rvs_to_values[v].name for v in model.free_RVs]
    sizes = [int(np.prod(compiled.shapes[n])) for n in names]
    at = dict(zip(names, np.split(first, np.cumsum(sizes)[:-1]), strict=True))
    for name, (value, sd) in start.items():
        offset = np.abs(at[name] - np.ravel(value))
        assert np.all(offset <= st.JITTER * np.ravel(sd) + 1e-12), name
    # over-dispersed: the LA effects' offsets fill the jitter's range, in SDs
    z = (at["la_effect"] - np.ravel(start["la_effect"][0])) / np.ravel(start["la_effect"][1])
    assert z.size == 2 * n_la
    assert 0.8 < np.std(z) / (st.JITTER / np.sqrt(3)) < 1.2


def test_other_models_start_as_nutpie_starts_them(table, data):
    model, _ = model_of(data, Spec("referrals", la_effects="noncentred"))
    assert st.near_posterior(data, "negbin", model) is None  # la_theta's blocks
    strata = table.assign(urban=np.where(np.arange(len(table)) % 2, "urban", "rural"))
    with_strata = NeighbourhoodData.from_table(strata, "referrals", stratum="urban")
    model, _ = model_of(with_strata, centred_spec().replace(stratum="urban"))
    assert st.near_posterior(with_strata, "negbin", model) is None


def test_a_fit_from_the_start_is_reproducible_and_finds_the_truth(data):
    spec = centred_spec(draws=150, tune=150)
    a = fit(data, spec, progressbar=False, max_predictive_draws=20, pointwise=False)
    b = fit(data, spec, progressbar=False, max_predictive_draws=20, pointwise=False)
    np.testing.assert_array_equal(a["posterior"]["la_sd"].values, b["posterior"]["la_sd"].values)
    post = a["posterior"]
    b_w = post["b_w"].values
    # the truth inside the posterior's 99.9% interval (150 x 2 draws)
    lo, hi = np.quantile(b_w, [0.0005, 0.9995])
    assert lo < np.log(TRUTH["gradient"]) < hi, (lo, hi)
    assert int(a["sample_stats"]["diverging"].sum()) == 0
