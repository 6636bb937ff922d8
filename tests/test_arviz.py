"""ArviZ on every kind of fit, as the README promises: ``az.summary``, ``az.plot_forest``,
``az.plot_trace`` and ``az.loo`` take the result tree as it is (no ``var_names``), as
``api.fit`` returns it and as ``load_fit`` reads it back (the CLI's posterior.nc has no
pointwise log-likelihood; loading computes it).

Four tiny fits (5 LAs x 12 LSOAs of the default England, 2 chains x 50 draws) cover every
family, one and two stratum columns, a stratum trend, neighbourhood and LA moderators, an
LA-level outcome and the joint threshold model, several in one fit to compile fewer model
structures (each compiles once: a few seconds from the callbacks' disk cache, tens of
seconds without it).
"""

from __future__ import annotations

import functools
import re
import warnings

import arviz as az
import matplotlib
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import socialgradient.api as sg
from socialgradient.sampling import joint as joint_fit
from socialgradient.sampling.fit import load, save
from socialgradient.spec import Spec

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LA_DATA = "data/las.parquet"
SAMPLING = {"draws": 50, "tune": 50, "chains": 2, "progressbar": False}
#: A few hundred posterior draws at most: ArviZ warns that some Pareto k of PSIS-LOO is
#: high (an unreliable LOO estimate, not an error); the tests check LOO runs, not its value.
PARETO_K = "Estimated shape parameter of Pareto distribution"
#: ArviZ's summary labels each value in its variable's own dim order but stacks the values
#: in the dims' order of first appearance over the variables (arviz_base 1.3 with xarray's
#: to_stacked_array): the (level, effect) tables of strata cannot follow la_effect's (la,
#: effect) order, so a whole-posterior summary mislabels their rows (fit.arviz_order).
#: A known ArviZ bug, pinned here: should ArviZ fix it, this set empties and the test says so.
MISLABELLED = {
    "binomial-two-strata-trend": {"stratum_effect", "stratum_offset"},
    "poisson-stratum-moderators": {"stratum_effect"},
}


def geography(n_la: int = 5, per_la: int = 12) -> pd.DataFrame:
    """Real-shaped LSOAs of a few LAs of the default England (with their ``la_name``)."""
    t = sg.default_data()
    las = t["la"].unique()[::10][:n_la]
    return t[t["la"].isin(las)].groupby("la").head(per_la).reset_index(drop=True)


def cells(table: pd.DataFrame, strata: dict[str, list], seed: int = 0) -> pd.DataFrame:
    """LSOA x stratum cells (one column per key of ``strata``) with children split evenly
    and counts drawn at about 2% (binomial, so the children are valid trials too)."""
    rng = np.random.default_rng(seed)
    keys = list(strata)
    grid = pd.MultiIndex.from_product(list(strata.values()), names=keys).to_frame(index=False)
    out = table[["lsoa", "la", "la_name", "income", "children"]].merge(grid, how="cross")
    out["children"] = (out["children"] // len(grid)).clip(lower=1).astype(int)
    out["referrals"] = rng.binomial(out["children"], 0.02)
    return out


@functools.cache
def fit_of(name: str) -> xr.DataTree:
    """The fit of variant ``name`` (once per test process)."""
    base = geography()
    las = pd.read_parquet(LA_DATA)
    if name == "negbin-la-outcome":
        spec = Spec(
            "referrals",
            la_data=LA_DATA,
            la_outcome={
                "count": "cin_plans",
                "trials": "referrals",
                "adjust": ["m_c", "spend_per_child"],
            },
        )
        return sg.fit(base, spec, la_table=las, **SAMPLING)
    if name == "poisson-stratum-moderators":
        spec = Spec(
            "referrals",
            family="poisson",
            stratum="age_band",
            neighbourhood_moderators=("rural",),
            la_data=LA_DATA,
            la_moderators=("spend_per_child",),
        )
        table = cells(base, {"age_band": ["0-4", "5-15"]}).merge(base[["lsoa", "rural"]], on="lsoa")
        return sg.fit(table, spec, la_table=las, **SAMPLING)
    if name == "binomial-two-strata-trend":
        spec = Spec(
            "referrals",
            family="binomial",
            trials="children",
            strata=("gender", "group"),
            stratum_trend="age",
        )
        table = cells(base, {"gender": ["F", "M"], "group": ["a", "b", "c"], "age": [0, 15]})
        return sg.fit(table, spec, **SAMPLING)
    if name == "joint":
        spec = Spec("referrals", outcomes=("referrals", "assessments", "cin_plans"))
        return sg.fit(base, spec, **SAMPLING)
    raise ValueError(name)


VARIANTS = ["negbin-la-outcome", "poisson-stratum-moderators", "binomial-two-strata-trend", "joint"]


def mislabelled(tree: xr.DataTree, summary: pd.DataFrame) -> set[str]:
    """The variables with a row of ``summary`` whose mean is not that of the draws its
    label names."""
    post = tree["posterior"].to_dataset()
    out = set()
    for label, mean in summary["mean"].items():
        name, _, inside = re.fullmatch(r"([^\[]+)(\[(.*)\])?", label).groups()
        draws = post[name]
        if inside:
            dims = [d for d in draws.dims if d not in ("chain", "draw")]
            draws = draws.sel(dict(zip(dims, inside.split(", "), strict=True)))
        if not np.isclose(float(draws.mean()), mean):
            out.add(name)
    return out


def check_arviz(name: str, tree: xr.DataTree, plots: bool = True) -> None:
    """The four calls on the whole tree, without ``var_names`` (the plots only if
    ``plots``)."""
    post = tree["posterior"]
    assert "la_name" not in post.coords  # names stay in constant_data (fit.la_names)
    with warnings.catch_warnings():
        # A stratified fit's reference level has effects fixed at 0: R-hat and the MCSE of
        # its SD divide 0 by 0 (NaN, with numpy's warning), checked just below.
        warnings.filterwarnings(
            "ignore", "invalid value encountered in scalar divide", RuntimeWarning
        )
        summary = az.summary(tree, round_to="none")
    n_values = sum(
        int(np.prod([post.sizes[d] for d in post[v].dims if d not in ("chain", "draw")]))
        for v in post.data_vars
    )
    assert len(summary) == n_values
    constant = summary["sd"] == 0
    assert summary.index[summary["r_hat"].isna()].equals(summary.index[constant])
    assert mislabelled(tree, summary) == MISLABELLED.get(name, set())
    try:
        if not plots:
            return
        az.plot_forest(tree)
        # ArviZ refuses a figure of over 40 panels (rcParams plot.max_subplots) and the
        # trace plot draws one per coefficient: the joint fit's three thresholds take 66 at
        # 5 LAs (an England-sized fit, hundreds: there pass var_names).
        with az.rc_context({"plot.max_subplots": 100}):
            az.plot_trace(tree)
    finally:
        plt.close("all")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", PARETO_K, UserWarning)
        loo = az.loo(tree, pointwise=True)
    rows = sum(int(np.prod(da.shape[2:])) for da in tree["log_likelihood"].data_vars.values())
    assert loo.pareto_k.size == loo.n_data_points == rows
    assert np.isfinite(loo.elpd)


@pytest.mark.parametrize("name", VARIANTS)
def test_arviz_takes_every_fit_as_it_is(name):
    check_arviz(name, fit_of(name))


@pytest.mark.parametrize("name", VARIANTS)
def test_and_the_fit_saved_and_loaded(name, tmp_path):
    """As the CLI saves it (no pointwise log-likelihood for a single-outcome fit: load
    computes it) and as load_fit reads it back; the plots as on the fit (same layout)."""
    tree = fit_of(name)
    lean = tree.copy()
    if not joint_fit.outcomes(tree):
        del lean["log_likelihood"]
    save(lean, tmp_path / "posterior.nc")
    back = sg.load_fit(tmp_path / "posterior.nc")
    assert list(back["posterior"].data_vars) == list(tree["posterior"].data_vars)
    np.testing.assert_array_equal(
        back["constant_data"]["la_name"].values, tree["constant_data"]["la_name"].values
    )
    check_arviz(name, back, plots=False)


def test_joint_log_likelihood_is_one_variable_and_views_keep_theirs():
    tree = fit_of("joint")
    (var,) = tree["log_likelihood"].data_vars
    ll = tree["log_likelihood"][var]
    assert ll.dims == ("chain", "draw", "threshold", "lsoa")
    assert list(ll["threshold"].values) == joint_fit.outcomes(tree)
    for outcome in joint_fit.outcomes(tree):
        one = joint_fit.view(tree, outcome)
        np.testing.assert_array_equal(
            one["log_likelihood"][outcome].values, ll.sel(threshold=outcome).values
        )
        assert one["log_likelihood"][outcome].dims == ("chain", "draw", "lsoa")
    # elpd of the joint fit: the sum of its thresholds' (one PSIS-LOO over every count)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", PARETO_K, UserWarning)
        total = az.loo(tree).elpd
        parts = [az.loo(joint_fit.view(tree, o)).elpd for o in joint_fit.outcomes(tree)]
    assert total == pytest.approx(sum(parts), rel=1e-9)


@pytest.mark.parametrize("name", ["negbin-la-outcome", "joint"])
def test_a_fit_saved_in_the_old_layout_loads_in_the_new(name, tmp_path):
    """posterior.nc files written before: la_name in the posterior, its variables in the
    sampler's order, a joint fit's log-likelihood one variable per threshold."""
    tree = fit_of(name)
    old = tree.copy()
    post = tree["posterior"].to_dataset()
    names = list(post.data_vars)
    post = post[[*names[1:], names[0]]].assign_coords(
        la_name=("la", tree["constant_data"]["la_name"].values)
    )
    old["posterior"] = xr.DataTree(post)
    if joint_fit.outcomes(tree):
        ll = tree["log_likelihood"]["joint"]
        old["log_likelihood"] = xr.DataTree(
            xr.Dataset({o: ll.sel(threshold=o, drop=True) for o in joint_fit.outcomes(tree)})
        )
    with pytest.raises(ValueError, match="coordinate 'la_name' not present"):
        az.summary(old)  # the reported failure
    save(old, tmp_path / "old.nc")
    back = load(tmp_path / "old.nc")
    assert list(back["posterior"].data_vars) == names
    check_arviz(name, back, plots=False)
