"""Priors of the fixed effects: means for b_w, b_b, b_x and a Student-t choice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import stats

import socialgradient.api as sg
from socialgradient.model import priors as fixed_priors
from socialgradient.spec import Priors, Spec, SpecError


def small() -> pd.DataFrame:
    t = sg.default_data()
    las = t["la"].unique()[:3]
    return t[t["la"].isin(las)].groupby("la").head(10).reset_index(drop=True)


def test_student_t_prior_has_the_spec_mean_scale_and_nu():
    p = Priors(fixed="student_t", fixed_nu=4, b_w=0.3, b_w_mean=0.5, b_x_mean=-1, a_mean=-3)
    model = sg.build(small(), Spec("referrals", priors=p))
    values = np.array([-2.0, 0.1, 0.5, 3.0])
    for name, mean, scale in (("a", -3, 2.5), ("b_w", 0.5, 0.3), ("b_b", 0, 1), ("b_x", -1, 1)):
        rv = model[name]
        assert rv.owner.op.name == "t", name  # PyMC's StudentT
        got = [float(pm.logp(rv, v).eval()) for v in values]
        want = stats.t.logpdf(values, df=4, loc=mean, scale=scale)
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(
            fixed_priors.fixed_logpdf(name, values, p, default_mean=-4.0), want, rtol=1e-10
        )


def test_normal_prior_takes_the_spec_means():
    p = Priors(b_w_mean=0.4, b_b_mean=-0.2, b_w=0.1)
    model = sg.build(small(), Spec("referrals", priors=p))
    assert model["b_w"].owner.op.name == "normal"
    values = np.array([0.0, 0.4, 1.0])
    got = [float(pm.logp(model["b_w"], v).eval()) for v in values]
    np.testing.assert_allclose(got, stats.norm.logpdf(values, 0.4, 0.1), rtol=1e-6)
    draws = pm.draw(model["b_b"], 4000, random_seed=1)
    assert abs(draws.mean() + 0.2) < 0.06


def test_default_priors_keep_spec_hashes_and_new_ones_change_them():
    base = Spec("referrals")
    same = Spec.from_dict({"outcome": "referrals", "priors": {"b_w_mean": 0, "fixed_nu": 3}})
    assert same.hash == base.hash
    assert "b_w_mean" not in base.to_json()
    assert "fixed" not in base.to_json()
    for change in ({"b_w_mean": 0.2}, {"fixed": "student_t"}):
        other = Spec.from_dict({"outcome": "referrals", "priors": change})
        assert other.hash != base.hash
        assert Spec.from_json(other.to_json()) == other


@pytest.mark.parametrize(
    ("priors", "key"),
    [
        ({"fixed_nu": 0}, "priors.fixed_nu"),
        ({"fixed_nu": -2.5}, "priors.fixed_nu"),
        ({"fixed": "cauchy"}, "priors.fixed"),
        ({"b_w_mean": "big"}, "priors.b_w_mean"),
        ({"b_x_mean": float("inf")}, "priors.b_x_mean"),
    ],
)
def test_bad_fixed_prior_values_name_the_key(priors, key):
    with pytest.raises(SpecError, match=key.replace(".", r"\.")):
        Spec.from_dict({"outcome": "referrals", "priors": priors})


def test_fixed_rejects_a_name_that_is_not_a_fixed_effect():
    with pytest.raises(ValueError, match="la_sd"):
        fixed_priors.fixed_location("la_sd", Priors())


def test_cli_prior_flags_take_means_and_the_family():
    from socialgradient.cli.commands import _priors

    flags = _priors(["b_w_mean=0.4", "fixed=student_t", "fixed_nu=5"])
    assert flags == {"b_w_mean": 0.4, "fixed": "student_t", "fixed_nu": 5.0}
    spec = Spec("referrals").replace(priors=flags)
    assert (spec.priors.fixed, spec.priors.fixed_nu, spec.priors.b_w_mean) == ("student_t", 5, 0.4)
    with pytest.raises(ValueError, match="NAME=NUMBER"):
        _priors(["b_w=wide"])
