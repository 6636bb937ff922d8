"""The pseudo-true gradient: the Poisson (KL) projection of true expected counts.

:func:`socialgradient.data.synthetic.pseudo_true.pseudo_true_gradient` is the truth of a
log-linear fit to counts whose true curve is not log-linear in w (the CP categories, whose
shares follow a softmax). It must return the slope itself where the truth is log-linear, and
for the softmax categories a slope between their local slopes at the data's lowest and
highest w.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from socialgradient.data import records as r
from socialgradient.data.deprivation import decompose
from socialgradient.data.synthetic import england, pseudo_true
from socialgradient.data.synthetic.records import simulate_records
from socialgradient.study import claims, truths

D = np.array([v[2] for v in r.CP_CATEGORIES.values()])


@pytest.fixture(scope="module")
def geography():
    """A small synthetic England: its LSOAs' within-LA w, LAs and m_c (10-point units)."""
    geo = england.simulate(seed=5, scale=0.05).table
    dec = decompose(geo["income"], geo["children"], geo["la"])
    n = geo["children"].to_numpy(float) * 18 / 16
    return dec, n


def log_linear(dec, n, b_w=0.55, b_x=-0.15, seed=0):
    """Expected counts exactly log-linear in w within each LA: slope b_w + b_x m_c + u_la."""
    rng = np.random.default_rng(seed)
    n_la = len(dec.la)
    c = rng.normal(-5.0, 0.4, n_la)
    u = rng.normal(0.0, 0.1, n_la)
    slope = b_w + b_x * dec.m_c + u
    return n * np.exp(c[dec.la_index] + slope[dec.la_index] * dec.w), slope


def test_projection_of_a_log_linear_truth_is_its_slope(geography):
    dec, n = geography
    e, slope = log_linear(dec, n)
    got = pseudo_true.projected_la_slopes(e, n, dec.w, dec.la_index, len(dec.la))
    ok = np.isfinite(got)
    assert ok.mean() > 0.9
    np.testing.assert_allclose(got[ok], slope[ok], rtol=0, atol=1e-8)
    # without LA departures the second stage returns b_w and b_x themselves
    rng = np.random.default_rng(1)
    c = rng.normal(-5.0, 0.4, len(dec.la))
    exact = n * np.exp(c[dec.la_index] + (0.55 - 0.15 * dec.m_c[dec.la_index]) * dec.w)
    pt = pseudo_true.pseudo_true_gradient(exact, n, dec.w, dec.la_index, dec.m_c)
    assert pt["b_w"] == pytest.approx(0.55, abs=1e-8)
    assert pt["b_x"] == pytest.approx(-0.15, abs=1e-8)
    assert pt["gradient"] == pytest.approx(math.exp(0.55), abs=1e-8)


def test_log_linear_factor_shares_keep_the_old_truth(geography):
    """A factor's probability is log-linear in w (never clipped on these data), so the
    projection of a log-linear parent times it is the parent's slope plus delta: the
    stratum-level truth exp(b + delta) the findings use, to 1e-8."""
    dec, n = geography
    b_a = math.log(england.PARAMETERS["assessments"]["gradient"])
    rng = np.random.default_rng(2)
    c = rng.normal(-4.0, 0.4, len(dec.la))
    parent = n * np.exp(c[dec.la_index] + b_a * dec.w)
    p = r.factor_probabilities(dec.w, b_a)
    assert p.max() < 1.0  # not clipped: exactly log-linear
    for k, (_, _, _, g) in enumerate(r.FACTORS.values()):
        pt = pseudo_true.pseudo_true_gradient(parent * p[:, k], n, dec.w, dec.la_index, dec.m_c)
        assert pt["gradient"] == pytest.approx(g, abs=1e-8)


def test_softmax_categories_project_between_their_low_and_high_w_slopes(geography):
    dec, n = geography
    b = 0.59
    rng = np.random.default_rng(3)
    c = rng.normal(-6.0, 0.4, len(dec.la))
    parent = n * np.exp(c[dec.la_index] + b * dec.w)
    shares = r.cp_category_shares(dec.w)
    np.testing.assert_allclose(shares.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(
        r.cp_category_shares([0.0])[0], [v[1] for v in r.CP_CATEGORIES.values()], atol=1e-12
    )

    def local(w):  # d log share_k / dw at w
        return D - r.cp_category_shares([w])[0] @ D

    lo, hi = local(dec.w.min()), local(dec.w.max())
    for k in range(len(D)):
        got = pseudo_true.pseudo_true_gradient(
            parent * shares[:, k], n, dec.w, dec.la_index, dec.m_c
        )
        share_slope = got["b_w"] - b
        # the Poisson score equation holds in every LA: the fitted rate's weighted mean of w
        # is the expected counts' (which weighted least squares of the logs would not give)
        e = parent * shares[:, k]
        s = pseudo_true.projected_la_slopes(e, n, dec.w, dec.la_index, len(dec.la))
        fit = n * np.exp(s[dec.la_index] * dec.w)
        ok = np.isfinite(s)[dec.la_index]

        def wmean(x, i=dec.la_index[ok], w=dec.w[ok]):
            return np.bincount(i, x * w, len(dec.la)) / np.bincount(i, x, len(dec.la))

        gap = wmean(e[ok]) - wmean(fit[ok])
        assert np.nanmax(np.abs(gap)) < 1e-10
        assert min(lo[k], hi[k]) < share_slope < max(lo[k], hi[k])
        # and not the local slope at w = 0 (the old truth): the curve matters
        assert abs(share_slope - local(0.0)[k]) > 1e-4


def test_records_truth_and_the_findings_use_the_projection():
    truth = simulate_records(seed=7, scale=0.05).truth
    shift = math.exp(
        truth["thresholds"]["assessments"]["lsoa_level"]["b_w"]
        - truth["thresholds"]["assessments"]["b_w"]
    )
    for v in truth["factors"].values():
        # log-linear shares: the projection differs from the pooled truth only by how the
        # pooling over ethnic groups is fitted (weighted least squares of the logs there)
        assert v["gradient_pseudo_true"] == pytest.approx(v["gradient"] * shift, rel=0.005)
    for code, v in truth["cp_categories"].items():
        assert truths._cp(code)(truth) == v["gradient_pseudo_true"]
        assert 1.0 < v["gradient_pseudo_true"] < 2.5
    ranked = claims._gradients("cp_categories")(truth)
    assert ranked == {
        f"cp_{v['name']}": v["gradient_pseudo_true"] for v in truth["cp_categories"].values()
    }
