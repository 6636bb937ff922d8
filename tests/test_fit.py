"""Real (tiny) fits: the DataTree layout, attrs, save/load, and parameter recovery."""

from __future__ import annotations

import time

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from socialgradient.data.synthetic.england import simulate
from socialgradient.model.data import NeighbourhoodData
from socialgradient.results import checks
from socialgradient.sampling.fit import data_hash, fit, load, save
from socialgradient.sampling.predict import encoded_data
from socialgradient.spec import Sampling, Spec

GROUPS = {
    "posterior",
    "sample_stats",
    "observed_data",
    "constant_data",
    "log_likelihood",
    "posterior_predictive",
}
MAX_PRED = 100


def first_las(table, n):
    return table[table["la"].isin(table["la"].unique()[:n])].reset_index(drop=True)


@pytest.fixture(scope="module")
def data() -> NeighbourhoodData:
    return NeighbourhoodData.from_table(
        first_las(simulate(seed=4, scale=0.05).table, 20), "referrals"
    )


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec(
        "referrals", family="negbin", sampling=Sampling(draws=150, tune=150, chains=2, seed=1)
    )


@pytest.fixture(scope="module")
def tree(data, spec) -> xr.DataTree:
    return fit(data, spec, progressbar=False, max_predictive_draws=MAX_PRED)


def check_layout(tree: xr.DataTree, data: NeighbourhoodData, chains: int, draws: int, family: str):
    assert set(tree.children) == GROUPS
    post = tree["posterior"]
    expected = {"a", "b_w", "b_b", "b_x", "la_effect", "la_sd", "la_corr"}
    expected |= {"phi"} if family == "negbin" else set()
    assert set(post.data_vars) == expected
    for name in ("a", "b_w", "b_b", "b_x", "la_corr", *({"phi"} & expected)):
        assert post[name].dims == ("chain", "draw"), name
    assert post["la_effect"].dims == ("chain", "draw", "la", "effect")
    assert post["la_sd"].dims == ("chain", "draw", "effect")
    assert post.sizes["chain"] == chains
    assert post.sizes["draw"] == draws
    np.testing.assert_array_equal(post["la"].values.astype(str), data.la)
    assert list(post["effect"].values) == ["intercept", "slope"]
    assert not [c for c in post.coords if c.startswith("la_cov")]
    assert np.all(post["la_sd"].values > 0)
    assert np.all(np.abs(post["la_corr"].values) <= 1)
    assert "diverging" in tree["sample_stats"]
    assert tree["sample_stats"]["diverging"].shape == (chains, draws)
    np.testing.assert_array_equal(tree["observed_data"][data.outcome].values, data.y)
    for group in ("log_likelihood", "posterior_predictive"):
        assert tree[group][data.outcome].dims == ("chain", "draw", "lsoa"), group
        np.testing.assert_array_equal(tree[group]["lsoa"].values.astype(str), data.lsoa)
    assert set(tree["constant_data"].data_vars) == {
        "children",
        "income",
        "w",
        "lsoa_la",
        "m_la",
        "m_c",
        "centred",
    }
    assert tree["constant_data"]["centred"].dims == ("la",)


def test_layout(tree, data, spec):
    check_layout(tree, data, 2, 150, "negbin")
    assert np.all(np.isfinite(tree["log_likelihood"]["referrals"].values))
    assert np.all(tree["posterior_predictive"]["referrals"].values >= 0)


def test_attrs(tree, data, spec):
    attrs = tree.attrs
    assert Spec.from_json(attrs["spec"]) == spec
    assert attrs["spec_hash"] == spec.hash
    assert attrs["data_hash"] == data_hash(data)
    assert attrs["outcome"] == "referrals"
    assert attrs["family"] == "negbin"
    assert attrs["x_bar"] == pytest.approx(data.x_bar)
    assert attrs["compile_seconds"] > 0
    assert attrs["sampling_seconds"] > 0


def test_data_hash_sensitive(data):
    import dataclasses

    assert data_hash(data) == data_hash(dataclasses.replace(data))
    y = data.y.copy()
    y[0] += 1
    assert data_hash(dataclasses.replace(data, y=y)) != data_hash(data)


def test_predictive_groups_are_thinned(tree):
    post_draws = tree["posterior"]["draw"].values
    for group in ("log_likelihood", "posterior_predictive"):
        g = tree[group]
        assert g.sizes["chain"] * g.sizes["draw"] <= MAX_PRED
        assert g.sizes["draw"] == MAX_PRED // 2
        kept = g["draw"].values
        assert set(kept) <= set(post_draws)
        assert kept[0] == post_draws[0]
        assert kept[-1] == post_draws[-1]
        assert np.all(np.diff(kept) > 0)


def test_log_likelihood_matches_scipy(tree, data):
    """Pointwise NB2 log-likelihood equals scipy's nbinom at the thinned draws."""
    ll = tree["log_likelihood"]["referrals"]
    post = tree["posterior"].sel(draw=ll["draw"])
    eff = post["la_effect"].values[..., data.la_index, :]
    mu = data.children * np.exp(eff[..., 0] + eff[..., 1] * data.w)
    phi = post["phi"].values[..., None]
    expected = stats.nbinom.logpmf(data.y, phi, phi / (phi + mu))
    np.testing.assert_allclose(ll.values, expected, rtol=1e-8)


def test_save_load_round_trip(tree, data, tmp_path):
    path = tmp_path / "sub" / "fit.nc"
    save(tree, path)
    assert path.exists()
    assert not list(path.parent.glob("*.tmp"))
    back = load(path)
    assert set(back.children) == GROUPS
    for name in ("a", "b_w", "b_b", "b_x", "la_effect", "la_sd", "la_corr", "phi"):
        np.testing.assert_array_equal(
            back["posterior"][name].values, tree["posterior"][name].values
        )
    np.testing.assert_array_equal(
        back["posterior_predictive"]["referrals"].values,
        tree["posterior_predictive"]["referrals"].values,
    )
    # log_likelihood is stored as float32.
    np.testing.assert_allclose(
        back["log_likelihood"]["referrals"].values,
        tree["log_likelihood"]["referrals"].values,
        rtol=1e-6,
    )
    for key in ("spec", "spec_hash", "data_hash", "outcome", "family"):
        assert back.attrs[key] == tree.attrs[key], key
    # LA names ride along as a non-index coordinate of dim la in constant_data (not the
    # posterior: ArviZ's summary fails on it there); the codes stay the index
    const = back["constant_data"]
    assert const["la_name"].dims == ("la",)
    assert "la_name" not in const.indexes
    assert "la_name" not in back["posterior"].coords
    np.testing.assert_array_equal(const["la_name"].values, data.la_name)
    for group in ("posterior", "constant_data"):
        np.testing.assert_array_equal(back[group]["la"].values, data.la)
    assert Spec.from_json(back.attrs["spec"]) == Spec.from_json(tree.attrs["spec"])

    again = encoded_data(back)
    assert again.outcome == data.outcome
    assert again.x_bar == pytest.approx(data.x_bar, rel=1e-15)
    for field in ("lsoa", "la", "la_index", "children", "income", "y", "w", "m_la", "m_c"):
        np.testing.assert_array_equal(getattr(again, field), getattr(data, field), err_msg=field)
    assert again.y.dtype == np.int64
    assert again.lsoa.dtype.kind == "U"
    assert data_hash(again) == tree.attrs["data_hash"]
    # A second save over the same path replaces the file.
    save(back, path)
    assert load(path).attrs["data_hash"] == tree.attrs["data_hash"]


def test_encoded_data_in_memory(tree, data):
    again = encoded_data(tree)
    for field in ("lsoa", "la", "la_index", "children", "income", "y", "w", "m_la", "m_c"):
        np.testing.assert_array_equal(getattr(again, field), getattr(data, field), err_msg=field)


@pytest.mark.parametrize(
    "sampler",
    # numpyro: ~14 s of JAX compilation on a 2-core machine, hence slow.
    ["pymc", pytest.param("numpyro", marks=pytest.mark.slow)],
)
def test_other_samplers_same_layout(data, tree, sampler):
    spec = Spec(
        "referrals", sampling=Sampling(sampler=sampler, draws=100, tune=100, chains=1, seed=3)
    )
    start = time.perf_counter()
    other = fit(data, spec, progressbar=False, max_predictive_draws=MAX_PRED)
    print(f"{sampler}: {time.perf_counter() - start:.1f}s")
    check_layout(other, data, 1, 100, "negbin")
    for group in GROUPS:
        assert set(other[group].data_vars) == set(tree[group].data_vars) or group == "sample_stats"
        assert set(other[group].dims) == set(tree[group].dims), group
    assert Spec.from_json(other.attrs["spec"]).sampling.sampler == sampler


def test_poisson_fit_layout(data):
    spec = Spec(
        "referrals", family="poisson", sampling=Sampling(draws=100, tune=100, chains=1, seed=2)
    )
    tree = fit(data, spec, progressbar=False, max_predictive_draws=MAX_PRED)
    check_layout(tree, data, 1, 100, "poisson")


def test_parameter_recovery():
    """Subset of 30 large LAs from a quarter-size England: national and per-LA truth recovered.

    Restricting to a subset of LAs changes x_bar, so ``a`` and ``b_w`` are compared after
    mapping back to the full data's centring (b_w_full = b_w - b_x (x_bar_sub - x_bar_full));
    b_b, b_x and the per-LA (a_la, b_la) keep their meaning.
    """
    syn = simulate(seed=11, scale=0.25)
    table = syn.table
    big = table["la"].value_counts().index[:30]
    table = table[table["la"].isin(big)].reset_index(drop=True)
    data = NeighbourhoodData.from_table(table, "referrals")
    spec = Spec("referrals", sampling=Sampling(draws=300, tune=300, chains=2, seed=1))
    tree = fit(data, spec, progressbar=False, max_predictive_draws=MAX_PRED)
    assert checks.diagnose(tree)["verdict"] != "FAIL"

    truth = syn.truth["thresholds"]["referrals"]
    post = tree["posterior"]
    shift = data.x_bar - syn.truth["x_bar"]
    implied = {
        "b_x": post["b_x"].values,
        "b_b": post["b_b"].values,
        "b_w": post["b_w"].values - post["b_x"].values * shift,
        "a": post["a"].values - post["b_b"].values * shift,
        "phi": post["phi"].values,
    }
    for name, draws in implied.items():
        lo, hi = np.quantile(draws, [0.025, 0.975])
        assert lo <= truth[name] <= hi, (name, truth[name], lo, hi)

    slope = post["la_effect"].sel(effect="slope").values
    true_b = np.array([truth["la"][code]["b_la"] for code in data.la])
    assert np.corrcoef(np.median(slope, axis=(0, 1)), true_b)[0, 1] > 0.8
    lo, hi = np.quantile(np.exp(slope), [0.025, 0.975], axis=(0, 1))
    assert np.mean((lo <= np.exp(true_b)) & (np.exp(true_b) <= hi)) >= 0.85

    intercept = post["la_effect"].sel(effect="intercept").values
    true_a = np.array([truth["la"][code]["a_la"] for code in data.la])
    assert np.corrcoef(np.median(intercept, axis=(0, 1)), true_a)[0, 1] > 0.8


def test_a_fit_saved_without_log_likelihood_gets_it_back_on_load(tree, tmp_path):
    """`socialgradient fit` leaves the pointwise log-likelihood out of posterior.nc; load
    (and LOO comparisons) compute it, on the replicates' draws, as fit did."""
    lean = tree.copy()
    del lean["log_likelihood"]
    save(lean, tmp_path / "lean.nc")
    assert "log_likelihood" not in load(tmp_path / "lean.nc", pointwise=False).children
    back = load(tmp_path / "lean.nc")
    np.testing.assert_allclose(
        back["log_likelihood"]["referrals"].values,
        tree["log_likelihood"]["referrals"].values,
        rtol=1e-12,
    )
    assert back["log_likelihood"]["referrals"].dims == tree["log_likelihood"]["referrals"].dims
