"""An exposure other than children: the contract, the likelihood's offset, fits and outputs.

Durations (closings per person-day at risk) and re-referral rates (per referred child) are
count models with another exposure; ``Spec(exposure=...)`` names its column.
"""

from __future__ import annotations

import numpy as np
import pytest

import socialgradient.api as sg
from socialgradient.data import schema
from socialgradient.data.schema import InputError
from socialgradient.model.build import build_model
from socialgradient.model.data import NeighbourhoodData
from socialgradient.sampling.fit import data_hash, load, save
from socialgradient.sampling.predict import encoded_data
from socialgradient.spec import Spec


@pytest.fixture(scope="module")
def table():
    t = sg.simulate(seed=5, scale=0.05).table
    t = t[t["la"].isin(t["la"].unique()[:12])].reset_index(drop=True)
    return t.assign(days=t["children"] * 3.5)


def test_contract_checks_the_exposure_column(table):
    out = schema.validate(table, ["referrals"], exposure="days")
    assert out["days"].dtype == np.float64
    with pytest.raises(InputError) as err:
        schema.validate(table, ["referrals"], exposure="person_days")
    assert err.value.rule == "missing_column"
    assert "person_days" in str(err.value)
    bad = table.copy()
    bad.loc[[3, 7], "days"] = 0.0
    with pytest.raises(InputError) as err:
        schema.validate(bad, ["referrals"], exposure="days")
    assert err.value.rule == "exposure_not_positive"
    assert list(err.value.rows) == [3, 7]
    assert "drop cells with no exposure" in str(err.value)


def test_exposure_is_the_offset(table):
    """Doubling the exposure is the same likelihood with intercepts lower by log 2."""
    spec = Spec("referrals", family="poisson", exposure="days")
    base = NeighbourhoodData.from_table(schema.validate(table, ["referrals"]), "referrals")
    double = NeighbourhoodData.from_table(
        schema.validate(table.assign(days=2 * table["children"]), ["referrals"], exposure="days"),
        "referrals",
        exposure="days",
    )
    assert np.array_equal(double.exposure, 2 * base.children)
    assert np.array_equal(double.children, base.children)  # weights unchanged
    theta = np.column_stack(
        [np.linspace(-4.5, -3.5, len(base.la)), np.linspace(0.3, 0.6, len(base.la))]
    )
    values = []
    for data, shift in ((base, 0.0), (double, np.log(2.0))):
        model = build_model(data, spec)
        f = model.compile_fn(
            model.potentials[0], inputs=[model["la_effect"]], on_unused_input="ignore"
        )
        # the sufficient-statistic likelihood drops the constant sum(y log exposure)
        constant = np.sum(data.y * np.log(data.exposure))
        values.append(f({"la_effect": theta - np.array([shift, 0.0])}) + constant)
    assert values[0] == pytest.approx(values[1], rel=1e-10)


def test_fit_with_exposure_round_trips(table, tmp_path):
    # The sampler is beside the point here: PyMC's own NUTS starts from pytensor's compiled-C
    # cache in seconds, where nutpie's numba compilation takes ~20 s per model.
    tree = sg.fit(
        table,
        Spec("referrals", family="poisson", exposure="days"),
        draws=60,
        tune=60,
        chains=1,
        sampler="pymc",
        progressbar=False,
    )
    assert tree.attrs["exposure"] == "days"
    assert json_spec(tree)["exposure"] == "days"
    data = encoded_data(tree)
    assert data.exposure_name == "days"
    assert np.allclose(data.exposure, 3.5 * data.children)
    plain = NeighbourhoodData.from_table(schema.validate(table, ["referrals"]), "referrals")
    assert data_hash(data) != data_hash(plain)
    save(tree, tmp_path / "fit.nc")
    back = encoded_data(load(tmp_path / "fit.nc"))
    assert back.exposure_name == "days"
    assert np.array_equal(back.exposure, data.exposure)
    # the LA table's observed rate is per 10,000 days, not per 10,000 children
    las = sg.la_gradients(tree)
    first = table[table["la"] == las["la"].iloc[0]]
    assert las["rate_per_10k"].iloc[0] == pytest.approx(
        1e4 * first["referrals"].sum() / first["days"].sum(), rel=1e-3
    )
    # ... and a fit with the default exposure stores none
    default = encoded_data(
        sg.fit(
            table,
            "referrals",
            family="poisson",
            draws=30,
            tune=30,
            chains=1,
            sampler="pymc",
            progressbar=False,
        )
    )
    assert default.exposure_name == "children"
    assert np.array_equal(default.exposure, default.children)


def json_spec(tree):
    import json

    return json.loads(tree.attrs["spec"])
