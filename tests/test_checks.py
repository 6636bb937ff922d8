"""Diagnostics verdict, posterior predictive checks and LOO on fake fitted trees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

from fakes import fake_table, fake_tree
from socialgradient.model.data import NeighbourhoodData
from socialgradient.results import checks
from socialgradient.sampling import predict
from socialgradient.sampling.fit import assemble
from socialgradient.spec import Spec

NAN = float("nan")


@pytest.fixture
def mixed() -> xr.DataTree:
    """Well-mixed iid draws: 4 chains x 500."""
    return fake_tree(chains=4, draws=500, seed=1)


def with_group(tree: xr.DataTree, name: str, **changes) -> xr.DataTree:
    ds = tree[name].to_dataset()
    for var, values in changes.items():
        ds[var] = ds[var].copy(data=values)
    tree = tree.copy()
    tree[name] = ds
    return tree


def with_divergences(tree: xr.DataTree, n: int) -> xr.DataTree:
    div = np.zeros(tree["sample_stats"]["diverging"].shape, dtype=bool)
    div.ravel()[np.linspace(0, div.size - 1, n).astype(int)] = True
    return with_group(tree, "sample_stats", diverging=div)


def test_well_mixed_passes(mixed):
    out = checks.diagnose(mixed)
    assert out["verdict"] == "PASS", out["reasons"]
    assert out["reasons"] == []
    assert out["rhat_max"] <= 1.01
    assert out["ess_bulk_min"] >= 400
    assert out["divergences"] == 0
    assert out["draws"] == 2000
    assert out["ebfmi_min"] >= 0.3
    expected = {"rhat_max", "ess_bulk_min", "ess_tail_min", "divergences", "draws", "ebfmi_min"}
    assert expected | {"worst_rhat", "worst_ess", "verdict", "reasons"} == set(out)


def test_shifted_chains_fail_on_rhat(mixed):
    a = mixed["posterior"]["a"].values.copy()
    a[0] += 0.5  # posterior SD is 0.05: chain 0 sits somewhere else
    out = checks.diagnose(with_group(mixed, "posterior", a=a))
    assert out["verdict"] == "FAIL"
    assert out["worst_rhat"] == "a"
    assert any(r.startswith("R-hat") and "(a)" in r for r in out["reasons"])


def test_shifted_la_effect_fails(mixed):
    """Every LA's intercept and slope counts, not just the national parameters."""
    eff = mixed["posterior"]["la_effect"].values.copy()
    eff[1, :, 3, 1] += 1.0
    out = checks.diagnose(with_group(mixed, "posterior", la_effect=eff))
    assert out["verdict"] == "FAIL"
    assert out["worst_rhat"] == "la_effect"


def test_slight_rhat_excess_warns(mixed):
    a = mixed["posterior"]["a"].values.copy()
    a[0] += 0.025  # half a posterior SD: 1.01 < R-hat < 1.05
    out = checks.diagnose(with_group(mixed, "posterior", a=a))
    assert 1.01 < out["rhat_max"] < 1.05
    assert out["verdict"] == "WARN"
    assert any(r.startswith("R-hat") for r in out["reasons"])


def test_few_divergences_warn(mixed):
    out = checks.diagnose(with_divergences(mixed, 5))  # 0.25% of 2,000 draws
    assert out["divergences"] == 5
    assert out["verdict"] == "WARN"
    assert out["reasons"] == ["5 divergences"]


def test_many_divergences_fail(mixed):
    out = checks.diagnose(with_divergences(mixed, 30))  # 1.5% of 2,000 draws
    assert out["verdict"] == "FAIL"
    assert out["reasons"] == ["30 divergences in 2000 draws"]
    at_limit = checks.diagnose(with_divergences(mixed, 20))  # exactly 1%: not more than 1%
    assert at_limit["verdict"] == "WARN"


def test_low_ebfmi_warns(mixed):
    energy = np.cumsum(np.random.default_rng(0).normal(size=(4, 500)), axis=1)  # random walk
    out = checks.diagnose(with_group(mixed, "sample_stats", energy=energy))
    assert out["ebfmi_min"] < 0.3
    assert out["verdict"] == "WARN"
    assert any("E-BFMI" in r for r in out["reasons"])


def test_short_chains_warn_on_ess():
    out = checks.diagnose(fake_tree(chains=2, draws=100, seed=2))
    assert out["verdict"] == "WARN"
    assert any(r.startswith("ESS") for r in out["reasons"])


def calibrated_tree(family: str, observed_from: str = "negbin", seed: int = 5) -> xr.DataTree:
    """Observed counts and replicates drawn from the same (point-mass) posterior."""
    base = fake_tree(n_la=8, n_lsoa_per_la=40, chains=2, draws=1, family="negbin", seed=seed)
    truth = base["posterior"].to_dataset().isel(chain=[0], draw=[0])
    data = NeighbourhoodData.from_table(fake_table(8, 40, seed), "referrals")
    y = predict.replicate(truth, data, observed_from, seed=seed + 1).values.ravel()
    data = dataclasses.replace(data, y=y.astype(np.int64))
    post = truth.isel(chain=[0, 0], draw=[0] * 200).assign_coords(
        chain=np.arange(2), draw=np.arange(200)
    )
    if family == "poisson":
        post = post.drop_vars("phi")
    stats = xr.Dataset(
        {
            "diverging": (("chain", "draw"), np.zeros((2, 200), dtype=bool)),
            "energy": (("chain", "draw"), np.random.default_rng(seed).normal(size=(2, 200))),
        },
        coords={"chain": np.arange(2), "draw": np.arange(200)},
    )
    raw = xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})
    return assemble(raw, data, Spec("referrals", family=family))


def test_ppc_layout_and_calibration():
    tree = calibrated_tree("negbin")
    out = checks.ppc(tree)
    assert set(out) == {"decile", "la", "statistic"}
    assert out["decile"].sizes["decile"] == 10
    np.testing.assert_array_equal(out["decile"]["decile"].values, np.arange(1, 11))
    la = tree["constant_data"]["la"].values
    np.testing.assert_array_equal(out["la"]["la"].values, la)
    assert list(out["statistic"]["statistic"].values) == [
        "total",
        "dispersion",
        "zero_share",
        "max",
    ]
    inside = []
    for name, ds in out.items():
        assert set(ds.data_vars) >= {
            "observed",
            "replicated_median",
            "replicated_lower",
            "replicated_upper",
            "p_value",
        }, name
        assert not set(ds.dims) & {"chain", "draw", "lsoa"}
        p = ds["p_value"].values
        assert np.all((p >= 0) & (p <= 1)), name
        assert np.all(ds["replicated_lower"] <= ds["replicated_median"])
        assert np.all(ds["replicated_median"] <= ds["replicated_upper"])
        inside.append(
            (
                (ds["observed"] >= ds["replicated_lower"])
                & (ds["observed"] <= ds["replicated_upper"])
            ).values.ravel()
        )
    inside = np.concatenate(inside)
    # 22 checks, each with a 95% interval: a calibrated model leaves nearly all inside.
    assert inside.mean() >= 0.85, inside
    # Observed totals add up to the data.
    y = tree["observed_data"]["referrals"].values
    assert float(out["statistic"]["observed"].sel(statistic="total")) == y.sum()
    assert float(out["decile"]["observed"].sum()) == y.sum()
    assert float(out["la"]["observed"].sum()) == y.sum()


def test_ppc_flags_overdispersion_under_poisson():
    out = checks.ppc(calibrated_tree("poisson", observed_from="negbin"))
    disp = out["statistic"].sel(statistic="dispersion")
    assert float(disp["observed"]) > float(disp["replicated_upper"])
    assert float(disp["p_value"]) < 0.01


def test_loo_compare_refuses_different_data():
    fits = {"one": fake_tree(seed=0), "two": fake_tree(seed=1)}
    assert fits["one"].attrs["data_hash"] != fits["two"].attrs["data_hash"]
    with pytest.raises(ValueError, match="same rows"):
        checks.loo_compare(fits)


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto:UserWarning")
def test_loo_compare_table():
    fits = {"negbin": fake_tree(family="negbin"), "poisson": fake_tree(family="poisson")}
    table = checks.loo_compare(fits)
    assert set(table.index) == set(fits)
    assert {"elpd_diff", "weight", "good_k", "pareto_k_bad"} <= set(table.columns)
    assert table["elpd_diff"].iloc[0] == 0
    assert (table["pareto_k_bad"] >= 0).all()
    # ArviZ's sample-size threshold, not a fixed 0.7: S = 2 chains x 50 draws gives 0.5
    assert table["good_k"].tolist() == pytest.approx([0.5, 0.5])


def _trend_tree(y, children, lsoa):
    """A stratum-trend fit's data groups: one cell per LSOA x single year of age."""
    cell = {"cell": np.arange(len(y)), "lsoa": ("cell", lsoa)}
    return xr.DataTree.from_dict(
        {
            "observed_data": xr.Dataset({"referrals": ("cell", np.asarray(y))}, coords=cell),
            "constant_data": xr.Dataset({"children": ("cell", np.asarray(children))}, coords=cell),
        }
    )


def test_trend_cells_are_checked_summed_over_the_trend():
    """Single-year cells carry expected children (a band split evenly over its years): a
    referral in a cell of 0.5 children is plausible; more referrals than an LSOA's children
    is not."""
    tree = _trend_tree([1, 0, 0, 2], [0.5, 0.5, 3.0, 3.0], ["A", "A", "B", "B"])
    tree.attrs.update(outcome="referrals", stratum_trend="age")
    assert checks._implausible(tree) == []
    tree.attrs.pop("stratum_trend")  # the same cells read as whole rows are flagged
    assert any("have more referrals" in n for n in checks._implausible(tree))
    tree = _trend_tree([1, 1, 0, 2], [0.5, 0.5, 3.0, 3.0], ["A", "A", "B", "B"])
    tree.attrs.update(outcome="referrals", stratum_trend="age")
    (note,) = checks._implausible(tree)
    assert note.startswith("implausible input: 1 LSOAs have more referrals than children")


def test_group_totals_equal_a_groupby_for_draws_and_for_observed_rows():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 7, 500)
    rep = xr.DataArray(rng.poisson(4.0, (2, 5, 500)), dims=("chain", "draw", "lsoa"))
    got = checks.group_totals(rep, codes, np.arange(7), "la")
    assert got.dims == ("chain", "draw", "la")
    want = np.stack(
        [np.bincount(codes, weights=v, minlength=7) for v in rep.values.reshape(-1, 500)]
    ).reshape(2, 5, 7)
    np.testing.assert_array_equal(got.values, want)
    observed = rep.isel(chain=0, draw=0)
    np.testing.assert_array_equal(
        checks.group_totals(observed, codes, np.arange(7), "la"), want[0, 0]
    )


def test_replicates_are_the_same_whichever_thread_draws_which_chain(monkeypatch):
    """Each chain draws from its own spawned stream, so threads cannot reorder draws."""
    tree = fake_tree(n_la=5, n_lsoa_per_la=30, chains=4, draws=20, family="negbin", seed=7)
    post = tree["posterior"].to_dataset()
    data = NeighbourhoodData.from_table(fake_table(5, 30, 7), "referrals")
    threaded = predict.replicate(post, data, "negbin", seed=11).values
    monkeypatch.setattr(predict.os, "cpu_count", lambda: 1)  # one thread, chains in order
    np.testing.assert_array_equal(predict.replicate(post, data, "negbin", seed=11).values, threaded)
    assert not np.array_equal(threaded[0], threaded[1])  # chains use different streams
