"""Full-size recovery on the default synthetic England (``make test-slow``, ~3-5 minutes).

The negative-binomial national model must converge (R-hat <= 1.01, bulk and tail ESS >= 400
for every parameter, no divergences), its 95% intervals must cover the generator's true
national quantities, at least 90% of the per-LA 95% intervals must cover the true LA
gradients, and the posterior predictive checks must pass.
"""

import json

import pytest

import socialgradient.api as sg
from socialgradient.results.testing import assert_converged, assert_covers, assert_ppc
from socialgradient.study.calibrate import NATIONAL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def truth():
    return json.loads((sg.DEFAULT_DATA.parent / "truth.json").read_text())["thresholds"]


@pytest.fixture(scope="module")
def tree():
    return sg.fit(sg.default_data(), "referrals", family="negbin", progressbar=False)


def test_converges(tree):
    assert_converged(tree, rhat_max=1.01, ess_min=400, divergences=0)


@pytest.mark.parametrize("name", NATIONAL)
def test_national_quantity_covered(tree, truth, name):
    assert_covers(tree, name, truth["referrals"][name])


def test_la_gradients_covered(tree, truth):
    las = sg.la_gradients(tree)
    true = las["la"].map({code: v["gradient"] for code, v in truth["referrals"]["la"].items()})
    covered = (las["gradient_lo95"] <= true) & (true <= las["gradient_hi95"])
    assert covered.mean() >= 0.90, f"{covered.mean():.1%} of LA intervals cover the truth"


def test_posterior_predictive(tree):
    assert_ppc(tree)
