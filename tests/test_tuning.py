"""Tuning draws chosen from the data where a spec leaves ``tune`` out (sampling.tuning)."""

import dataclasses

import pytest

import socialgradient.api as sg
from socialgradient.data.synthetic import england
from socialgradient.model import parameterisation
from socialgradient.model.data import NeighbourhoodData
from socialgradient.sampling import tuning
from socialgradient.spec import Sampling, Spec


def _pinned(data, spec):
    return parameterisation.la_choice(data, spec.family, spec.la_effects)[1]


@pytest.fixture(scope="module")
def england_referrals():
    return NeighbourhoodData.from_table(sg.default_data(), "referrals")


def test_england_gets_the_short_tuning_and_a_sparse_table_the_long(england_referrals):
    spec = Spec(outcome="referrals")
    assert spec.sampling.tune is None
    assert _pinned(england_referrals, spec)
    assert tuning.resolve(spec, True).tune == tuning.SHORT == 200
    # bench/run_time.md's sparse table: 330 looked-after children in 6,569 LSOAs, whose la_sd
    # needed 3,200 draws per chain after 200 tuning draws and 900 after 500
    truth = dict(england.PARAMETERS["looked_after"], a=-9.0)
    sparse = england.simulate(seed=11, scale=0.2, parameters={"looked_after": truth}).table
    data = NeighbourhoodData.from_table(sparse, "looked_after")
    cla = Spec(outcome="looked_after")
    assert not _pinned(data, cla)
    assert tuning.resolve(cla, False).tune == tuning.LONG == 500
    # pinned or not is the data's: forcing the centring does not change it
    for forced in ("centred", "noncentred"):
        assert _pinned(england_referrals, dataclasses.replace(spec, la_effects=forced))
        assert not _pinned(data, dataclasses.replace(cla, la_effects=forced))


def test_a_spec_that_sets_tune_gets_it():
    for tune in (7, 200, 500, 1500):
        spec = Spec(outcome="referrals", sampling=Sampling(tune=tune))
        assert tuning.resolve(spec, True).tune == tune
        assert tuning.resolve(spec, False).tune == tune
    assert tuning.fallback(Sampling()).tune == tuning.LONG
    assert tuning.fallback(Sampling(tune=9)).tune == 9


def test_other_scale_parameters_get_the_long_tuning():
    spec = Spec(outcome="referrals")
    for other in (
        dataclasses.replace(spec, curve="spline"),  # the spline's curve_sd
        dataclasses.replace(spec, spatial="bym2"),  # BYM2's sd and rho
        Spec(outcome="referrals", outcomes=("referrals", "assessments")),  # 10-dim LA covariance
    ):
        assert not tuning.short(other, True)
        assert tuning.resolve(other, True).tune == tuning.LONG
    assert tuning.short(spec, True)


def test_a_fit_records_the_tuning_it_used():
    table = england.simulate(seed=5, scale=0.02).table
    data = NeighbourhoodData.from_table(table, "referrals")
    spec = Spec(outcome="referrals")
    chosen = tuning.resolve(spec, _pinned(data, spec)).tune
    tree = sg.fit(table, "referrals", progressbar=False, chains=2, max_draws=100, ess=10, seed=3)
    assert tree.attrs["tune"] == chosen
    assert sg.diagnose(tree)["sampling"]["tune"] == chosen
    fixed = sg.fit(table, "referrals", progressbar=False, chains=1, draws=20, tune=30, seed=3)
    assert fixed.attrs["tune"] == 30
