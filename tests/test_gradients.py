"""Derived quantities on hand-made posterior draws (no sampling)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from socialgradient.results import gradients as g

CHAINS, DRAWS, N_LA = 2, 300, 7
LAS = [f"E06{i:06d}" for i in range(N_LA)]


@pytest.fixture(scope="module")
def posterior() -> xr.Dataset:
    rng = np.random.default_rng(42)
    shape = (CHAINS, DRAWS)
    sample = ("chain", "draw")
    return xr.Dataset(
        {
            "a": (sample, rng.normal(-4, 0.1, shape)),
            "b_w": (sample, rng.normal(0.5, 0.1, shape)),
            "b_b": (sample, rng.normal(0.3, 0.1, shape)),
            "b_x": (sample, rng.normal(-0.2, 0.1, shape)),
            "la_effect": (
                (*sample, "la", "effect"),
                rng.normal([-4.0, 0.5], [0.3, 0.2], (*shape, N_LA, 2)),
            ),
        },
        coords={
            "chain": np.arange(CHAINS),
            "draw": np.arange(DRAWS),
            "la": LAS,
            "effect": ["intercept", "slope"],
        },
    )


def test_national_formulas(posterior):
    nat = g.national(posterior)
    b_w, b_b, b_x = (posterior[k].values for k in ("b_w", "b_b", "b_x"))
    expected = {
        "gradient_mean_la": np.exp(b_w),
        "gradient_less_deprived_la": np.exp(b_w - b_x),
        "gradient_more_deprived_la": np.exp(b_w + b_x),
        "interaction": np.exp(b_x),
        "between_la_gradient": np.exp(b_b),
        "contextual_effect": b_b - b_w,
    }
    assert set(nat.data_vars) == set(expected)
    for name, values in expected.items():
        assert nat[name].dims == ("chain", "draw")
        np.testing.assert_allclose(nat[name].values, values, rtol=1e-12, err_msg=name)


def test_la_gradient(posterior):
    grad = g.la_gradient(posterior)
    assert grad.dims == ("chain", "draw", "la")
    assert "effect" not in grad.coords
    np.testing.assert_allclose(grad.values, np.exp(posterior["la_effect"].values[..., 1]))


def test_la_rank_one_is_steepest(posterior):
    grad = g.la_gradient(posterior)
    rank = g.la_rank(grad)
    assert rank.dims == grad.dims
    assert list(rank["la"].values) == LAS
    r = rank.values
    # A permutation of 1..n_la in every draw.
    np.testing.assert_array_equal(
        np.sort(r, axis=-1), np.broadcast_to(np.arange(1, N_LA + 1), r.shape)
    )
    # Rank 1 is the largest gradient, rank n_la the smallest.
    gv = grad.values
    np.testing.assert_array_equal(
        np.take_along_axis(gv, (r == 1).argmax(-1)[..., None], -1)[..., 0], gv.max(-1)
    )
    np.testing.assert_array_equal(
        np.take_along_axis(gv, (r == N_LA).argmax(-1)[..., None], -1)[..., 0], gv.min(-1)
    )
    # Ranks are monotone in the gradient within a draw.
    order = np.argsort(-gv, axis=-1)
    np.testing.assert_array_equal(
        np.take_along_axis(r, order, -1), np.broadcast_to(np.arange(1, N_LA + 1), r.shape)
    )


def test_la_rank_by_hand():
    grad = xr.DataArray(
        [[[1.5, 3.0, 0.8, 2.0]]], dims=("chain", "draw", "la"), coords={"la": list("ABCD")}
    )
    np.testing.assert_array_equal(g.la_rank(grad).values[0, 0], [3, 1, 4, 2])


def test_describe_against_numpy(posterior):
    draws = g.la_gradient(posterior)
    out = g.describe(draws)
    flat = draws.values.reshape(CHAINS * DRAWS, N_LA)
    np.testing.assert_allclose(out["median"].values, np.median(flat, axis=0))
    assert out["median"].dims == ("la",)
    for name, prob in (("eti95", 0.95), ("eti80", 0.80)):
        ci = out[name]
        assert ci.dims == ("ci_bound", "la")
        assert list(ci["ci_bound"].values) == ["lower", "upper"]
        assert ci.attrs["ci_kind"] == "eti"
        assert ci.attrs["ci_prob"] == pytest.approx(prob)
        tail = (1 - prob) / 2
        np.testing.assert_allclose(ci.sel(ci_bound="lower").values, np.quantile(flat, tail, axis=0))
        np.testing.assert_allclose(
            ci.sel(ci_bound="upper").values, np.quantile(flat, 1 - tail, axis=0)
        )
    assert np.all(out["eti95"].sel(ci_bound="lower") <= out["eti80"].sel(ci_bound="lower"))
    assert np.all(out["eti80"].sel(ci_bound="upper") <= out["eti95"].sel(ci_bound="upper"))


def test_describe_scalar_and_custom_probs(posterior):
    out = g.describe(posterior["a"], probs=(0.5,))
    assert set(out.data_vars) == {"median", "eti50"}
    assert out["median"].dims == ()
    np.testing.assert_allclose(
        out["eti50"].values, np.quantile(posterior["a"].values, [0.25, 0.75])
    )


def test_rate_curve(posterior):
    x_bar = 1.6
    income = np.array([0.02, 0.1, 0.16, 0.3, 0.5])
    la_dep = {"affluent": -1.0, "average": 0.0, "deprived": 0.7}
    curve = g.rate_curve(posterior, income, la_dep, x_bar)
    assert curve.dims == ("chain", "draw", "la_type", "income")
    assert list(curve["la_type"].values) == list(la_dep)
    a, b_w, b_b, b_x = (posterior[k].values[..., None] for k in ("a", "b_w", "b_b", "b_x"))
    x = income * 10
    for label, m_c in la_dep.items():
        expected = 1e4 * np.exp(a + b_b * m_c + (b_w + b_x * m_c) * (x - x_bar - m_c))
        np.testing.assert_allclose(curve.sel(la_type=label).values, expected)
    # At the LA's own mean deprivation x = x_bar + m_c the rate is 1e4 exp(a + b_b m_c).
    for label, m_c in la_dep.items():
        at_mean = g.rate_curve(posterior, np.array([(x_bar + m_c) / 10]), {label: m_c}, x_bar)
        np.testing.assert_allclose(
            at_mean.isel(la_type=0, income=0).values,
            1e4 * np.exp(posterior["a"].values + posterior["b_b"].values * m_c),
            rtol=1e-12,
        )


def test_gradient_deprivation_corr(posterior):
    m_c = xr.DataArray(np.linspace(-1, 1, N_LA) ** 3, dims="la", coords={"la": LAS})
    r = g.gradient_deprivation_corr(posterior, m_c)
    assert r.dims == ("chain", "draw")
    slope = posterior["la_effect"].values[..., 1]
    expected = np.array(
        [[np.corrcoef(slope[c, d], m_c.values)[0, 1] for d in range(DRAWS)] for c in range(CHAINS)]
    )
    np.testing.assert_allclose(r.values, expected, rtol=1e-10, atol=1e-12)


def test_gradient_deprivation_corr_detects_a_planted_relation(posterior):
    m_c = xr.DataArray(np.linspace(-1, 1, N_LA), dims="la", coords={"la": LAS})
    planted = posterior.copy()
    effect = planted["la_effect"].copy()
    effect.loc[{"effect": "slope"}] = 0.5 - 0.3 * m_c + 0.01 * effect.sel(effect="slope")
    planted["la_effect"] = effect
    r = g.gradient_deprivation_corr(planted, m_c)
    assert float(r.max()) < -0.95
