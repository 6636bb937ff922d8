"""Inputs that escaped the rules (issue 27, item 6): each attack fails cleanly with a named
rule, or, where a value is legitimate but was costly (one huge count), no longer costs what
it did. Fast: nothing here samples.

The table rules themselves are in ``test_schema.py`` and the CIN Census returns' in
``test_census_xml.py``; here are the paths through the API and the model.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import stats

import socialgradient.api as sg
from socialgradient.data.schema import InputError
from socialgradient.model import build as model_module
from socialgradient.model import families, nb_counts
from socialgradient.model.build import build_model
from socialgradient.model.data import NeighbourhoodData
from socialgradient.model.families import EXACT_COUNTS, Rows
from socialgradient.spec import Spec
from test_model import assert_same_density, reference_model


def small_table(n_la: int = 4, per_la: int = 8) -> pd.DataFrame:
    t = sg.default_data()
    las = t["la"].unique()[:n_la]
    return t[t["la"].isin(las)].groupby("la").head(per_la).reset_index(drop=True)


# -- sampling settings passed to the API as keyword arguments --------------------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [("seed", -1), ("chains", 1_000_000), ("draws", 2**63 - 1), ("tune", 0), ("seed", True)],
)
def test_fit_refuses_sampling_settings_out_of_range(setting, value):
    """api.fit(..., seed=-1) etc. are checked by the spec's Sampling before any data is read
    (the table here would fail validation: a check after encoding would say so instead)."""
    with pytest.raises(ValueError, match=f"sampling.{setting}") as err:
        sg.fit(pd.DataFrame(), "referrals", **{setting: value})
    assert not isinstance(err.value, InputError)
    assert repr(value) in str(err.value)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("draws", 2**63 - 1), ("draws", 0), ("seed", -1), ("seed", 2**32), ("draws", 10.5)],
)
def test_prior_predictive_refuses_draws_and_seed_out_of_range(setting, value):
    with pytest.raises(ValueError, match=f"^{setting} must be an integer") as err:
        sg.prior_predictive(pd.DataFrame(), "referrals", **{setting: value})
    assert not isinstance(err.value, InputError)


# -- exposures and outcomes through the API ----------------------------------------------------


@pytest.mark.parametrize("value", [1e308, 5e-324])
def test_fit_refuses_an_implausible_exposure_before_fitting(value):
    """children of 1e308 overflowed the LA means (inf, NaN); 5e-324 a log exposure of -744."""
    table = small_table()
    table["children"] = table["children"].astype(float)
    table.loc[5, "children"] = value
    with pytest.raises(InputError) as err:
        sg.fit(table, "referrals", progressbar=False)
    assert (err.value.rule, err.value.rows) == ("children_out_of_range", [5])


def test_fit_refuses_an_outcome_without_events():
    """All-zero counts gave WARN, exit 0 and the prior as the 'gradient': refused (rather
    than a FAIL verdict after sampling) because no fit of such a table means anything; a
    prior predictive check, which does not look at the counts, still takes it."""
    table = small_table().assign(referrals=0)
    with pytest.raises(InputError) as err:
        sg.fit(table, "referrals", progressbar=False)
    assert err.value.rule == "no_events"
    assert err.value.rows == list(range(len(table)))
    with pytest.raises(InputError) as err:  # the joint threshold model, each threshold
        sg.encode(table, Spec("referrals", outcomes=["referrals", "assessments"]))
    assert err.value.rule == "no_events"
    assert sg.encode(table, "referrals", events=False).y.sum() == 0


def test_binomial_without_events_or_without_non_events_is_refused():
    table = small_table().assign(trials=lambda t: t["referrals"] + 2, rereferrals=0)
    spec = Spec("rereferrals", family="binomial", trials="trials")
    with pytest.raises(InputError) as err:
        sg.encode(table, spec)
    assert err.value.rule == "no_events"
    with pytest.raises(InputError) as err:
        sg.encode(table.assign(rereferrals=table["trials"]), spec)
    assert err.value.rule == "every_trial_an_event"
    sg.encode(table.assign(rereferrals=table["trials"] // 2), spec)


# -- one huge count: the negative binomial's cost no longer grows with max(count) --------------


def test_exceedances_are_bounded_whatever_the_largest_count():
    """K_j ran to max(y): np.bincount of 2**53 asked for 64 PiB, one count of 1,000,000 made
    every gradient evaluation a million log1p (a fit 17x slower)."""
    y = np.array([0, 3, 3, 7, 2_000, 2_000, 1_000_000, 2**53 - 1])
    start = time.perf_counter()
    k_j, tail = nb_counts._exceedances(y), nb_counts._tail(y)
    assert time.perf_counter() - start < 1.0
    assert len(k_j) == EXACT_COUNTS
    np.testing.assert_array_equal(k_j[:8], [7, 7, 7, 5, 5, 5, 5, 4])
    assert k_j[-1] == 4  # rows with y > 1023
    np.testing.assert_array_equal(
        tail, [[EXACT_COUNTS, 2_000, 1_000_000], [2_000, 1_000_000, 2**53 - 1], [4, 2, 1]]
    )
    small = np.array([0, 1, 5, 5, 1024])
    assert nb_counts._tail(small) is None  # tables of ordinary counts keep their graph
    np.testing.assert_array_equal(  # the K_j of before
        nb_counts._exceedances(small),
        (len(small) - np.cumsum(np.bincount(small)))[:-1].astype(float),
    )


def _direct(y, phi):
    """sum over rows of sum_{j<y} log1p(j / phi), one term at a time (exact to rounding)."""
    return math.fsum(math.fsum(np.log1p(np.arange(v) / phi)) for v in y)


def test_the_closed_form_above_exact_counts_is_the_sum_it_replaces():
    y = np.array([0, 3, 1024, 1025, 2_000, 2_000, 5_000, 1_000_000])
    rows = Rows(y=y, log_exposure=np.zeros(len(y)))
    eta = np.full(len(y), -2.0)
    phi = pt.dscalar("phi")
    nb = families.get("negbin")
    outs = [nb.normaliser(eta, rows, {"phi": phi}, stable=s) for s in (True, False)]
    f = pytensor.function([phi], [*outs, pytensor.grad(outs[0], phi)], mode="FAST_COMPILE")
    for p in (1e-3, 0.5, 20.0, 1e4, 1e9, 1e13):
        stable, cheap, grad = f(p)
        rest = math.fsum((y + p) * np.log1p(np.exp(eta) / p))
        want = _direct(y, p) - rest
        assert stable == pytest.approx(want, rel=1e-12, abs=1e-9), p
        if p <= 1e4:  # the cheaper form loses precision towards the Poisson limit (by design)
            assert cheap == pytest.approx(want, rel=1e-9), p
        h = p * 1e-5
        num = (_direct(y, p + h) - math.fsum((y + p + h) * np.log1p(np.exp(eta) / (p + h)))) - (
            _direct(y, p - h) - math.fsum((y + p - h) * np.log1p(np.exp(eta) / (p - h)))
        )
        assert grad == pytest.approx(num / (2 * h), rel=1e-4), p


def test_pointwise_with_a_huge_count_matches_scipy_without_a_draws_by_count_table():
    """The pointwise log likelihood built a draws x max(y) table (4,000 draws and a count of
    1,000,000: 32 GB)."""
    y = np.array([0, 4, 1_500, 1_000_000])
    rows = Rows(y=y, log_exposure=np.log(np.array([100.0, 200.0, 300.0, 400.0])))
    phi = np.array([0.7, 3.0, 50.0])
    eta = np.log(np.array([0.01, 0.02, 5.0, 2_500.0]))[None, :].repeat(3, axis=0)
    got = families.get("negbin").pointwise(eta, rows, {"phi": phi})
    mu = np.exp(eta + rows.log_exposure)
    want = stats.nbinom.logpmf(y, phi[:, None], phi[:, None] / (phi[:, None] + mu))
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.fixture(scope="module")
def huge():
    """A small simulated table whose largest counts are above EXACT_COUNTS."""
    from socialgradient.data.synthetic.england import simulate

    table = simulate(seed=3, scale=0.05).table
    table = table[table["la"].isin(table["la"].unique()[:6])].reset_index(drop=True)
    table.loc[[1, 2, 9], "referrals"] = [1_000_000, 3_000, 3_000]
    return NeighbourhoodData.from_table(table, "referrals")


@pytest.mark.parametrize("stable", [True, False])
def test_the_model_with_a_huge_count_is_the_textbook_density(huge, stable, monkeypatch):
    monkeypatch.setattr(model_module, "nb_stable", lambda data, family: stable)
    model = build_model(huge, Spec("referrals", family="negbin", la_effects="centred"))
    assert model["rows_exceedances"].get_value().shape == (EXACT_COUNTS,)
    assert model["rows_tail"].get_value().shape == (3, 2)
    rng = np.random.default_rng(4)
    start = model.initial_point()
    points = [{k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in start.items()} for _ in range(4)]
    assert_same_density(model, reference_model(huge, "negbin"), points)
