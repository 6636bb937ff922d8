"""``sg.predict``: predictive counts, stratified fits, and clear errors for bad tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import socialgradient.api as sg
from socialgradient.model.terms import Strata
from socialgradient.sampling import predict
from socialgradient.spec import Spec

BANDS = {"0-4": (5, 0.3), "5-9": (5, 0.1), "10-15": (6, 0.0)}  # years, log-rate offset
GENDERS = {"M": (0.52, 0.0), "F": (0.48, -0.1)}


def cells(n_la: int, per_la: int, seed: int) -> pd.DataFrame:
    """LSOA x age band x gender cells with NB counts at a gradient of exp(0.45) per 10 points."""
    rng = np.random.default_rng(seed)
    t = sg.default_data()
    t = t[t["la"].isin(t["la"].unique()[:n_la])].groupby("la").head(per_la)
    out = []
    for band, (years, ga) in BANDS.items():
        for gender, (share, gg) in GENDERS.items():
            n = (t["children"].to_numpy() * years / 16 * share).round() + 1
            mu = n * np.exp(-3.5 + ga + gg + 0.45 * (t["income"].to_numpy() - 0.15) * 10)
            out.append(
                t[["lsoa", "la", "income"]].assign(
                    children=n, age_band=band, gender=gender, referrals=rng.poisson(mu)
                )
            )
    return pd.concat(out, ignore_index=True)


@pytest.fixture(scope="module")
def stratified():
    table = cells(n_la=5, per_la=12, seed=1)
    spec = Spec("referrals", strata=["age_band", "gender"])
    tree = sg.fit(table, spec, draws=150, tune=150, chains=2, progressbar=False)
    return table, tree


@pytest.mark.slow  # a stratified fit: 40-120 s on the shared 2-core machine
def test_stratified_fit_predicts_its_own_cells_as_the_model(stratified):
    """On the fit's own cells, predict's rates equal the model's mean (strata included)."""
    table, tree = stratified
    pred = sg.predict(tree, table)
    data = predict.encoded_data(tree)
    log_mean = predict.log_mean(tree["posterior"].to_dataset(), data)
    expected = 1e4 * np.exp(log_mean.values - np.log(data.exposure))
    np.testing.assert_allclose(pred["rate_per_10k"].values, expected, rtol=1e-10)
    assert "count" not in pred
    post = tree["posterior"]
    slope = post["la_effect"].sel(effect="slope").values[..., data.la_index]
    offset = post["stratum_effect"].sel(effect="slope")
    for column in ("age_band", "gender"):
        labels = [f"{column}={v}" for v in table[column]]
        slope = slope + offset.sel(stratum=labels).values
    np.testing.assert_allclose(pred["gradient"].values, np.exp(slope), rtol=1e-10)


@pytest.mark.slow  # a stratified fit: 40-120 s on the shared 2-core machine
def test_predictive_counts_average_to_rate_times_exposure(stratified):
    """The counts' mean over draws is the expected rate x exposure, within Monte Carlo error;
    counts are seeded; a new LA's cells are predicted too."""
    table, tree = stratified
    new = table[table["la"] == table["la"].iloc[0]].assign(la="E06999999", lsoa="X")
    rows = pd.concat([table, new], ignore_index=True).assign(children=lambda t: t["children"] * 40)
    pred = sg.predict(tree, rows, seed=7, counts=True)
    again = sg.predict(tree, rows, seed=7, counts=True)
    np.testing.assert_array_equal(pred["count"].values, again["count"].values)
    assert pred["count"].dims == ("chain", "draw", "row")
    assert pred["new_la"].values.sum() == len(new)
    expected = (pred["rate_per_10k"] * rows["children"].to_numpy() / 1e4).values
    count = pred["count"].values
    n = count.shape[0] * count.shape[1]
    diff = (count - expected).reshape(n, -1)
    z = diff.mean(axis=0) / (diff.std(axis=0) / np.sqrt(n))
    assert np.abs(z).max() < 4.5, np.abs(z).max()
    total = diff.sum(axis=1)
    assert abs(total.mean()) < 4 * total.std() / np.sqrt(n)
    assert count.mean() > 5  # counts of a real size, not all zero


@pytest.mark.slow  # a stratified fit: 40-120 s on the shared 2-core machine
def test_bad_tables_get_clear_errors(stratified):
    table, tree = stratified
    with pytest.raises(ValueError, match=r"lacks columns \['gender'\]"):
        sg.predict(tree, table.drop(columns="gender"))
    with pytest.raises(ValueError, match=r"'age_band' has levels the fit does not know: .'16-17'."):
        sg.predict(tree, table.assign(age_band="16-17"))
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        sg.predict(tree, table.assign(children=-1.0), counts=True)


def test_one_stratum_column_levels_are_checked():
    strata = Strata(("10-15", "0-4"), np.array([0, 1]), "age_band")
    table = pd.DataFrame({"age_band": ["0-4", "10-15", "0-4"]})
    np.testing.assert_array_equal(strata.predict_positions(table)[:, 0], [1, 0, 1])
    with pytest.raises(ValueError, match=r"\['5-9'\] \(the fit's: \['10-15', '0-4'\]\)"):
        strata.predict_positions(table.assign(age_band="5-9"))


@pytest.mark.parametrize("family", ["poisson", "negbin", "binomial"])
def test_counts_of_each_family_average_to_their_expectation(family):
    """Without a fit: draws of ``_counts`` at known parameters average to exposure x mean."""
    from socialgradient.model import families

    fam = families.get(family)
    eta = np.broadcast_to(np.array([-1.0, -2.0, 0.5]), (2, 2000, 3)).copy()
    table = pd.DataFrame({"n": [10.0, 200.0, 40.0]})
    post = xr.Dataset({"phi": (("chain", "draw"), np.full((2, 2000), 5.0))})
    count = predict._counts(fam, post, eta, table, "n", seed=3)
    mean = table["n"].to_numpy() * fam.inverse_link(eta[0, 0])
    sd = count.reshape(-1, 3).std(axis=0) / np.sqrt(4000)
    assert (np.abs(count.reshape(-1, 3).mean(axis=0) - mean) < 4 * sd).all()
    if family == "binomial":
        assert (count <= table["n"].to_numpy()).all()
        with pytest.raises(ValueError, match="non-negative integers"):
            predict._counts(fam, post, eta, table.assign(n=2.5), "n", seed=3)
