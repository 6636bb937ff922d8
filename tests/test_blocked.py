"""Per-row quantities and checks computed in blocks of draws equal those computed at once.

The replicates, pointwise log-likelihood, log mean, the PPC's totals and statistics and the
sensitivity's total log-likelihood are computed a block of draws at a time to bound their
memory (``predict.BLOCK_VALUES``, ``checks.BLOCK_VALUES``); the blocks must not change any
value.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr

import socialgradient.api as sg
from fakes import fake_tree
from socialgradient.model.encode import encode, single
from socialgradient.results import checks, sensitivity
from socialgradient.sampling import predict
from socialgradient.spec import Spec

#: one draw per block; a few draws per block with a shorter last one; one block per chain
BLOCKS = (1, 7 * 160, 10**9)


def stratified_draws(seed: int = 3):
    """A stratified table's encoded data and 2 chains x 23 draws of its prior."""
    t = sg.default_data()
    t = t[t["la"].isin(t["la"].unique()[:4])].groupby("la").head(10)
    table = pd.concat(
        [t.assign(age_band=band, children=t["children"] // 2 + 1) for band in ("0-4", "5-15")],
        ignore_index=True,
    )
    rng = np.random.default_rng(seed)
    table["referrals"] = rng.poisson(0.05 * table["children"])
    spec = Spec("referrals", stratum="age_band")
    data = single(encode(table, spec))
    model = sg.build(table, spec)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*[Pp]otential.*", UserWarning)
        prior = pm.sample_prior_predictive(
            draws=46,
            model=model,
            random_seed=seed,
            var_names=["a", "b_w", "la_effect", "stratum_effect", "phi"],
            compile_kwargs={"mode": "FAST_COMPILE"},
        )["prior"].to_dataset()
    # 1 chain x 46 draws -> 2 chains x 23
    values = {
        name: (("chain", "draw", *da.dims[2:]), da.values.reshape(2, 23, *da.shape[2:]))
        for name, da in prior.data_vars.items()
    }
    coords = {k: v for k, v in prior.coords.items() if k not in ("chain", "draw")}
    post = xr.Dataset(values, coords={**coords, "chain": [0, 1], "draw": np.arange(23)})
    return post, data


@pytest.mark.parametrize("family", ["negbin", "poisson"])
def test_replicates_loglik_and_log_mean_do_not_depend_on_the_blocks(family):
    tree = fake_tree(n_la=5, n_lsoa_per_la=32, chains=3, draws=20, family=family, seed=4)
    post = tree["posterior"].to_dataset()
    data = predict.encoded_data(tree)
    assert len(data.y) == 160
    per = {
        b: (
            predict.replicate(post, data, family, seed=9, block_values=b),
            predict.log_likelihood(post, data, family, block_values=b),
            predict.log_likelihood_total(post, data, family, block_values=b),
        )
        for b in BLOCKS
    }
    rep, loglik, total = per[10**9]
    assert rep.dtype == np.int32
    assert rep.dims == ("chain", "draw", "lsoa")
    assert rep.shape == (3, 20, 160)
    for b in BLOCKS[:-1]:
        np.testing.assert_array_equal(per[b][0].values, rep.values)  # the same counts
        # the same float operations on each value: equal to rounding (rtol 1e-14); a sum
        # over a row may round differently in a block of another shape
        np.testing.assert_allclose(per[b][1].values, loglik.values, rtol=1e-14, atol=0)
        np.testing.assert_allclose(per[b][2].values, total.values, rtol=1e-14, atol=0)
    # the total is the pointwise values' sum over the rows (to rounding: rtol 1e-12)
    np.testing.assert_allclose(total.values, loglik.sum("lsoa").values, rtol=1e-12, atol=0)
    assert total.dims == ("chain", "draw")
    # every draw has a stream of its own: no two draws (nor chains) repeat one another
    flat = rep.values.reshape(60, 160)
    assert len({row.tobytes() for row in flat}) == 60


def test_stratified_blocks_give_the_same_values():
    """Strata add to each row's LA effects; a block of draws carries its own offsets."""
    post, data = stratified_draws()
    assert len(data.y) == 80
    ref = (
        predict.replicate(post, data, "negbin", seed=2, block_values=10**9).values,
        predict.log_likelihood(post, data, "negbin", block_values=10**9).values,
        predict.log_mean(post, data).values,
    )
    for b in (1, 5 * 80):
        np.testing.assert_array_equal(
            predict.replicate(post, data, "negbin", seed=2, block_values=b).values, ref[0]
        )
        np.testing.assert_allclose(
            predict.log_likelihood(post, data, "negbin", block_values=b).values,
            ref[1],
            rtol=1e-14,
            atol=0,
        )
    # the log mean adds each row's stratum offset to its LA's intercept: eta + log(exposure)
    eff = post["la_effect"].transpose("chain", "draw", "la", "effect").values[..., data.la_index, :]
    offset = post["stratum_effect"].transpose("chain", "draw", "stratum", "effect").values
    levels = list(post["stratum"].values)
    s = np.array([levels.index(v) for v in np.asarray(data.row_coords["stratum"][1])])
    eta = eff[..., 0] + offset[:, :, s, 0] + (eff[..., 1] + offset[:, :, s, 1]) * data.w
    np.testing.assert_allclose(ref[2], eta + np.log(data.exposure), rtol=1e-12)


def test_ppc_does_not_depend_on_the_blocks(monkeypatch):
    tree = fake_tree(n_la=6, n_lsoa_per_la=25, chains=2, draws=60, seed=8)
    whole = checks.ppc(tree)
    monkeypatch.setattr(checks, "BLOCK_VALUES", 3 * 150)  # 3 draws (of 120) per block
    blocked = checks.ppc(tree)
    assert set(blocked) == set(whole) == {"decile", "la", "statistic"}
    for name in whole:
        xr.testing.assert_identical(blocked[name], whole[name])
    rep = tree["posterior_predictive"]["referrals"]
    codes = np.arange(150) % 7
    np.testing.assert_array_equal(
        checks.group_totals(rep, codes, np.arange(7), "g", block_values=1).values,
        checks.group_totals(rep, codes, np.arange(7), "g").values,
    )


def test_sensitivity_without_pointwise_values_equals_with_them():
    """The blocked per-draw totals give the same power-scaling as the stored pointwise group."""
    tree = fake_tree(n_la=6, n_lsoa_per_la=25, chains=4, draws=60, seed=6)
    assert "log_likelihood" in tree.children
    stored = sensitivity.power_scaling(tree)
    without = xr.DataTree.from_dict(
        {name: tree[name].to_dataset() for name in tree.children if name != "log_likelihood"}
    )
    without.attrs.update(tree.attrs)
    blocked = sensitivity.power_scaling(without)
    assert blocked["draws"] == stored["draws"] == 240
    for name, q in stored["quantities"].items():
        for part in ("prior", "likelihood"):  # both rounded to 4 decimals
            assert blocked["quantities"][name][part] == pytest.approx(q[part], abs=1e-4)


def test_large_log_likelihoods_are_stored_as_float32_rounded_once(monkeypatch):
    """Above the size cut the pointwise values are float32: the float64 values rounded once.

    The cut counts draws x rows (``predict.FLOAT32_LOG_LIKELIHOOD_ABOVE``); lowered here to
    just under this fit's 60 x 160 values, so that a small fit crosses it.
    """
    tree = fake_tree(n_la=5, n_lsoa_per_la=32, chains=3, draws=20, family="negbin", seed=4)
    post, data = tree["posterior"].to_dataset(), predict.encoded_data(tree)
    wide = predict.log_likelihood(post, data, "negbin")
    assert wide.dtype == np.float64  # 9,600 values: far below the default cut
    monkeypatch.setattr(predict, "FLOAT32_LOG_LIKELIHOOD_ABOVE", 60 * 160 - 1)
    narrow = predict.log_likelihood(post, data, "negbin")
    assert narrow.dtype == np.float32
    np.testing.assert_array_equal(narrow.values, wide.values.astype(np.float32))
    assert predict.log_likelihood(post, data, "negbin", dtype=np.float64).dtype == np.float64
    # the per-draw total the sensitivity reads is accumulated in float64 from either
    stored = tree.copy()
    stored["log_likelihood"] = xr.DataTree(narrow.to_dataset())
    total = sensitivity._total_log_likelihood(stored, joint=False)
    assert total is not None
    assert total.dtype == np.float64
    np.testing.assert_allclose(
        total.values, wide.sum("lsoa").values, rtol=1e-6
    )  # float32 rounding of each value: relative 6e-8, summed over 160 rows
