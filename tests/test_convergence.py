"""The vectorised R-hat, bulk and tail ESS (socialgradient.sampling.convergence) give
arviz_stats' values: rhat (method "rank"), ess (methods "bulk" and "tail") on every kind of
draws the sampler can hand them, NaN where arviz_stats gives NaN; and the stop-at-target
check and the convergence verdict read the same values as before."""

from __future__ import annotations

import warnings

import arviz_stats as az
import numpy as np
import pytest
import xarray as xr
from scipy.stats import rankdata

from socialgradient.results import checks
from socialgradient.sampling import convergence as cv
from socialgradient.sampling import target as tg

RTOL = 1e-10  # measured: the largest relative difference is under 1e-15 (summation order)


def arviz(ds: xr.Dataset, prob=None) -> tuple[xr.Dataset, xr.Dataset, xr.Dataset]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz_stats warns on a constant quantity (0 / 0)
        return (
            az.rhat(ds),
            az.ess(ds, method="bulk"),
            az.ess(ds, method="tail", prob=prob),
        )


def as_dataset(x: np.ndarray) -> xr.Dataset:
    """Draws (chain, draw, K) as two variables: a scalar and one with a labelled dim."""
    return xr.Dataset(
        {
            "scalar": (("chain", "draw"), x[:, :, 0]),
            "vector": (("chain", "draw", "k"), x[:, :, 1:]),
        },
        coords={"k": [f"q{i}" for i in range(x.shape[2] - 1)]},
    )


def draws(kind: str, rng: np.random.Generator) -> np.ndarray:
    shape = (4, 300, 50)
    if kind == "normal":
        return rng.normal(size=shape)
    if kind == "shifted chain":
        x = rng.normal(size=shape)
        x[1] += 3.0
        return x
    if kind == "student t df 2":
        return rng.standard_t(2, size=shape)
    if kind == "autocorrelated":  # a slow random walk on noise: ESS far below the draws
        return rng.normal(size=shape) + 0.2 * np.cumsum(rng.normal(size=shape), axis=1)
    if kind == "short random walk":  # Geyer's sequence reaches its last pair of lags
        return np.cumsum(rng.normal(size=(4, 12, 400)), axis=1)
    if kind == "odd draws":
        return rng.normal(size=(4, 301, 50))
    if kind == "ties":  # a few integers: runs of tied ranks everywhere
        return rng.poisson(1.5, size=shape).astype(float)
    if kind == "one chain":
        return rng.normal(size=(1, 300, 50))
    if kind == "4 draws":
        return rng.normal(size=(4, 4, 50))
    if kind == "7 draws":
        return rng.normal(size=(4, 7, 50))
    if kind == "3 draws":  # too few: every value NaN
        return rng.normal(size=(4, 3, 50))
    raise ValueError(kind)


KINDS = [
    "normal",
    "shifted chain",
    "student t df 2",
    "autocorrelated",
    "short random walk",
    "odd draws",
    "ties",
    "one chain",
    "4 draws",
    "7 draws",
    "3 draws",
]


@pytest.mark.parametrize("kind", KINDS)
def test_datasets_match_arviz_stats(kind):
    ds = as_dataset(draws(kind, np.random.default_rng(KINDS.index(kind))))
    ours = cv.diagnostics(ds)
    for mine, theirs in zip(ours, arviz(ds), strict=True):
        assert list(mine.data_vars) == list(theirs.data_vars)
        xr.testing.assert_allclose(mine, theirs, rtol=RTOL, atol=0)  # NaN where NaN
    rhat, bulk, tail = (
        np.concatenate([d["scalar"].values[None], d["vector"].values]) for d in ours
    )
    if kind == "shifted chain":
        assert (rhat > 1.1).all()
    if kind in ("one chain", "3 draws"):
        assert np.isnan(rhat).all()
    else:
        assert np.isfinite(rhat).all()
    assert np.isnan(bulk).all() == (kind == "3 draws")
    assert np.isnan(tail).all() == (kind == "3 draws")


def test_a_constant_and_a_nan_quantity_give_what_arviz_gives():
    x = np.random.default_rng(1).normal(size=(4, 200, 4))
    x[:, :, 1] = 2.5  # constant: R-hat NaN (0 / 0), ESS every draw
    x[2, 17, 2] = np.nan  # one NaN draw: every diagnostic NaN
    x[:, :, 3] = np.nan
    ds = as_dataset(x)
    for mine, theirs in zip(cv.diagnostics(ds), arviz(ds), strict=True):
        xr.testing.assert_allclose(mine, theirs, rtol=RTOL, atol=0)
    rhat, bulk, tail = (d["vector"].values for d in cv.diagnostics(ds))
    assert np.isnan(rhat).all()
    np.testing.assert_array_equal(bulk, [800.0, np.nan, np.nan])
    np.testing.assert_array_equal(tail, [800.0, np.nan, np.nan])


def test_array_core_and_single_diagnostics_match_arviz_on_arrays():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 101, 20)) + 0.3 * np.cumsum(rng.normal(size=(3, 101, 20)), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(cv.rhat_array(x), az.rhat(x), rtol=RTOL)
        np.testing.assert_allclose(cv.ess_bulk_array(x), az.ess(x, method="bulk"), rtol=RTOL)
        for prob in (0.95, (0.1, 0.8)):
            np.testing.assert_allclose(
                cv.ess_tail_array(x, prob), az.ess(x, method="tail", prob=prob), rtol=RTOL
            )
    one = x[:, :, 0]  # one quantity as (chain, draw)
    np.testing.assert_allclose(cv.rhat_array(one), cv.rhat_array(x)[:1], rtol=0)
    ds = as_dataset(x)
    mine = (cv.rhat(ds), cv.ess_bulk(ds), cv.ess_tail(ds))
    for single, joint in zip(mine, cv.diagnostics(ds), strict=True):
        xr.testing.assert_identical(single, joint)


def test_blocks_of_quantities_give_the_values_of_one_block(monkeypatch):
    """A posterior is diagnosed a few quantities at a time (memory bounded): every quantity's
    values are those of one pass over all of them, for arrays and datasets, with a block that
    does not divide the quantities and one smaller than a quantity's draws."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 150, 23)) + 0.4 * np.cumsum(rng.normal(size=(4, 150, 23)), axis=1)
    x[:, :, 7] = 1.5  # a constant quantity and a NaN draw inside the blocks
    x[3, 40, 12] = np.nan
    ds = as_dataset(x)
    whole = cv.diagnostics(ds), cv.rhat_array(x), cv.ess_tail_array(x, 0.9)
    calls = []
    original = cv._diagnose
    monkeypatch.setattr(
        cv, "_diagnose", lambda a, *args: calls.append(a.shape) or original(a, *args)
    )
    for block in (4 * 150 * 5, 1):
        monkeypatch.setattr(cv, "BLOCK_VALUES", block)
        calls.clear()
        parts = cv.diagnostics(ds), cv.rhat_array(x), cv.ess_tail_array(x, 0.9)
        for mine, one in zip(parts[0], whole[0], strict=True):
            xr.testing.assert_allclose(mine, one, rtol=1e-14, atol=0)  # NaN where NaN
        np.testing.assert_allclose(parts[1], whole[1], rtol=1e-14)
        np.testing.assert_allclose(parts[2], whole[2], rtol=1e-14)
        assert max(k * c * d for k, c, d in calls) <= max(block, 4 * 150)
        assert len(calls) > 3


def test_the_tail_quantiles_are_arviz_stats_default():
    # arviz_stats' tail ESS without prob reads rcParams["stats.ci_prob"] (0.89: the 11% and
    # 89% quantiles); ours too, so the stopping rule is the one it was
    from arviz_base import rc_context

    ds = as_dataset(draws("autocorrelated", np.random.default_rng(3)))
    for prob in (None, 0.95):
        xr.testing.assert_allclose(cv.ess_tail(ds, prob), arviz(ds, prob)[2], rtol=RTOL, atol=0)
    with rc_context({"stats.ci_prob": 0.8}):
        xr.testing.assert_allclose(cv.ess_tail(ds), arviz(ds)[2], rtol=RTOL, atol=0)
    assert not np.allclose(cv.ess_tail(ds)["vector"], cv.ess_tail(ds, 0.95)["vector"])


def test_ranks_average_ties_as_scipy():
    rng = np.random.default_rng(4)
    for x in (
        rng.normal(size=(6, 40)),
        rng.integers(0, 3, size=(6, 40)).astype(float),
        np.ones((2, 5)),
        np.array([[1.0, 1.0], [2.0, 1.0]]),
    ):
        np.testing.assert_array_equal(cv._ranks(x), rankdata(x, axis=1))


def test_refuses_draws_without_chain_and_draw():
    with pytest.raises(ValueError, match="chain and draw"):
        cv.diagnostics(xr.Dataset({"a": ("draw", np.zeros(10))}))
    with pytest.raises(ValueError, match=r"\(chain, draw, K\)"):
        cv.rhat_array(np.zeros(10))


def test_the_stop_at_target_check_decides_as_with_arviz_stats(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 200, 30)) + 0.1 * np.cumsum(rng.normal(size=(4, 200, 30)), axis=1)
    x[3, :, 4] += 0.5  # one chain off for one quantity
    ds = as_dataset(x)
    target = tg.Target()
    worst, unmet = tg.diagnose(ds, target)
    monkeypatch.setattr(cv, "diagnostics", arviz)
    worst_az, unmet_az = tg.diagnose(ds, target)
    assert unmet == unmet_az
    assert unmet["rhat"]  # the decision is not trivially "all pass"
    assert worst == pytest.approx(worst_az, rel=RTOL)


@pytest.fixture(scope="module")
def small_fit():
    import socialgradient.api as sg
    from socialgradient.data.synthetic import england

    table = england.simulate(seed=5, scale=0.02).table
    return sg.fit(table, "referrals", progressbar=False, chains=4, tune=100, draws=100, seed=4)


def test_the_verdict_on_a_small_real_fit_is_unchanged(small_fit, monkeypatch):
    ours = checks.diagnose(small_fit)
    monkeypatch.setattr(cv, "diagnostics", arviz)
    before = checks.diagnose(small_fit)
    assert set(ours) == set(before)
    for key, value in before.items():
        if isinstance(value, float):
            assert ours[key] == pytest.approx(value, rel=RTOL, nan_ok=True), key
        else:
            assert ours[key] == value, key
    assert ours["verdict"] in ("PASS", "WARN", "FAIL")
    assert np.isfinite(ours["rhat_max"])


def test_the_verdict_reads_the_tail_at_the_5_and_95_percent_quantiles(small_fit):
    """Vehtari et al. (2021), Stan and posterior's tail ESS, not ArviZ's 0.89 default."""
    post = small_fit["posterior"].to_dataset()
    post = post[[v for v in checks.PARAMETERS if v in post]]
    tails = az.ess(post, method="tail", prob=(0.05, 0.95))
    expected = min(float(np.nanmin(tails[v].values)) for v in tails.data_vars)
    assert cv.TAIL_PROB == 0.95
    assert checks.diagnose(small_fit)["ess_tail_min"] == pytest.approx(expected, rel=RTOL)
    default = az.ess(post, method="tail")  # 11% and 89%: another number on these draws
    assert min(float(np.nanmin(default[v].values)) for v in default.data_vars) != pytest.approx(
        expected, rel=1e-6
    )
