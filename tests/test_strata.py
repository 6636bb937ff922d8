"""Stratified tables (one row per LSOA x stratum): contract, model density, recovery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import pytest

import socialgradient.api as sg
from socialgradient.data.deprivation import decompose
from socialgradient.data.schema import InputError, validate
from socialgradient.model.build import build_model, la_effects
from socialgradient.model.data import NeighbourhoodData
from socialgradient.model.terms import Strata
from socialgradient.spec import Spec
from textbook import assert_same_density, observe

SHARE = {"0-4": 0.30, "5-9": 0.32, "10-15": 0.38}
# True stratum offsets to the log rate and the slope (10-15 is the reference: most children).
OFFSET = {"0-4": (0.3, 0.15), "5-9": (0.05, 0.05), "10-15": (0.0, 0.0)}
A, B_W, B_B, B_X, PHI = -4.2, 0.48, 0.25, -0.26, 20.0


def stratified(n_la: int, seed: int) -> pd.DataFrame:
    """LSOA x age-band cells drawn from the stratified model (LA effects at their means)."""
    rng = np.random.default_rng(seed)
    t = sg.default_data()
    t = t[t["la"].isin(t["la"].unique()[:n_la])]
    d = decompose(t["income"], t["children"], t["la"])
    m_c = d.m_c[d.la_index]
    a_la = A + B_B * m_c + rng.normal(0, 0.2, len(d.la))[d.la_index]
    b_la = B_W + B_X * m_c + rng.normal(0, 0.1, len(d.la))[d.la_index]
    cells = []
    for band, (da, db) in OFFSET.items():
        n = (t["children"].to_numpy() * SHARE[band]).round()
        mu = n * np.exp(a_la + da + (b_la + db) * d.w)
        y = rng.poisson(rng.gamma(PHI, mu / PHI))
        cells.append(t[["lsoa", "la", "income"]].assign(children=n, age_band=band, referrals=y))
    return pd.concat(cells, ignore_index=True)


@pytest.fixture(scope="module")
def table():
    return stratified(n_la=12, seed=5)


def test_valid_stratified_table_keeps_every_cell(table):
    out = validate(table, ["referrals"], stratum="age_band")
    assert len(out) == len(table)
    assert out["age_band"].tolist() == table["age_band"].tolist()


def test_without_stratum_repeated_lsoas_are_duplicates(table):
    with pytest.raises(InputError) as err:
        validate(table, ["referrals"])
    assert err.value.rule == "duplicate_lsoa"


def test_duplicate_cell(table):
    bad = pd.concat([table, table.iloc[[3]]], ignore_index=True)
    with pytest.raises(InputError) as err:
        validate(bad, ["referrals"], stratum="age_band")
    assert err.value.rule == "duplicate_cell"
    assert err.value.rows == [3, len(table)]


def test_income_must_agree_within_an_lsoa(table):
    bad = table.copy()
    bad.loc[0, "income"] = bad.loc[0, "income"] + 0.01
    with pytest.raises(InputError) as err:
        validate(bad, ["referrals"], stratum="age_band")
    assert err.value.rule == "income_varies_within_lsoa"
    lsoa = table.loc[0, "lsoa"]
    assert err.value.rows == table.index[table["lsoa"] == lsoa].tolist()


def test_missing_stratum_column_and_values(table):
    with pytest.raises(InputError) as err:
        validate(table.drop(columns="age_band"), ["referrals"], stratum="age_band")
    assert err.value.rule == "missing_column"
    bad = table.copy()
    bad.loc[7, "age_band"] = None
    with pytest.raises(InputError) as err:
        validate(bad, ["referrals"], stratum="age_band")
    assert (err.value.rule, err.value.rows) == ("missing_value", [7])


def test_reference_stratum_has_most_children(table):
    data = NeighbourhoodData.from_table(table, "referrals", "age_band")
    strata = data.term(Strata)
    assert strata.levels[0] == "10-15"
    assert data.row_dim == "cell"
    assert set(strata.levels) == set(SHARE)


@pytest.mark.parametrize("family", ["poisson", "negbin"])
def test_logp_equals_textbook_stratified_model(table, family):
    data = NeighbourhoodData.from_table(table, "referrals", "age_band")
    model = build_model(
        data, Spec("referrals", family=family, stratum="age_band", la_effects="centred")
    )  # as the reference below
    with pm.Model(coords=model.coords) as ref:
        theta = la_effects(data)
        raw = pm.Normal(
            "stratum_offset", 0, np.array([1.0, 0.5]), dims=("stratum_contrast", "effect")
        )
        off = pt.concatenate([pt.zeros((1, 2)), raw], axis=0)
        i, s = data.la_index, data.term(Strata).index
        eta = theta[i, 0] + off[s, 0] + (theta[i, 1] + off[s, 1]) * data.w
        observe(family, data.children * pt.exp(eta), data.y)
    assert_same_density(model, ref)


@pytest.mark.slow  # a recovery fit (22-54 s); the default tier keeps the logp identity
def test_stratum_gradients_recovered(table):
    tree = sg.fit(
        table,
        Spec("referrals", stratum="age_band"),
        draws=250,
        tune=250,
        chains=2,
        progressbar=False,
    )
    assert tree["log_likelihood"]["referrals"].dims == ("chain", "draw", "cell")
    # Stratum contrasts do not depend on the 12 LAs' random effects: they must be covered.
    post = tree["posterior"]["stratum_effect"]
    for band, (da, db) in OFFSET.items():
        for effect, truth in (("intercept", da), ("slope", db)):
            draws = post.sel(stratum=band, effect=effect).values.ravel()
            lo, hi = np.quantile(draws, [0.005, 0.995])
            assert lo <= truth <= hi, (band, effect, truth, lo, hi)
    summary = sg.summarise(tree)
    assert set(summary["stratum_gradient"]) == set(SHARE)
    assert summary["stratum_gradient"]["10-15"] == summary["gradient_mean_la"]
    las = sg.la_gradients(tree)
    assert las["n_lsoa"].sum() == table["lsoa"].nunique()
