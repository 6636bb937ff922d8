"""The BYM2 term is identified against the LA intercepts and the overdispersion (issue 29).

The effect is centred exactly within each LA (its LA means are zero in every draw and at any
point of the parameter space), and the negative binomial with BYM2 is refused with a message
naming the problem and the remedy.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest

import socialgradient.api as sg
from socialgradient.data.synthetic.spatial import lattice_table
from socialgradient.model.build import build_model
from socialgradient.model.spatial import SpatialError, add_bym2, group_centred
from socialgradient.model.terms import SpatialEffect
from socialgradient.model.terms.spatial import NEGBIN_REFUSED
from socialgradient.spec import Spec


@pytest.fixture(scope="module")
def lattice(tmp_path_factory):
    table, pairs, _ = lattice_table(6, 6, las=3, sd=0.5, rho=0.8, seed=5)
    path = tmp_path_factory.mktemp("graph") / "pairs.csv"
    pairs.to_csv(path, index=False)
    return table, path


def test_group_centred_is_exact():
    x = np.array([1.0, 2.0, 6.0, -1.0, 4.0])
    groups = np.array([0, 0, 0, 1, 1])
    out = group_centred(x, groups).eval()
    np.testing.assert_allclose(out, [-2.0, -1.0, 3.0, -2.5, 2.5], atol=1e-12)


def test_the_effect_has_zero_la_means_at_any_point(lattice):
    """At random points of the sampler's space the LA means of spatial_effect are 0 (to
    float32 rounding: the effect is kept as float32) and the LSOAs' LAs are the table's."""
    table, path = lattice
    spec = Spec("referrals", family="poisson", spatial="bym2", neighbours=str(path))
    data = sg.encode(table, spec)
    term = data.term(SpatialEffect)
    la = term.la_of_codes(data.la_index)
    by_table = table.groupby("lsoa")["la"].first().loc[term.codes].to_numpy()
    np.testing.assert_array_equal(np.asarray(data.la)[la], by_table)
    model = build_model(data, spec)
    inputs = {"inputs": model.value_vars, "on_unused_input": "ignore"}
    (out,) = model.replace_rvs_by_values([model["spatial_effect"]])  # values, not draws
    effect = model.compile_fn(out, **inputs)
    rng = np.random.default_rng(3)
    start = model.initial_point()
    for _ in range(3):
        point = {k: v + rng.normal(0, 1.0, np.shape(v)) for k, v in start.items()}
        b = np.asarray(effect(point), dtype=float)
        assert b.std() > 0.05  # not trivially zero
        means = np.bincount(la, weights=b) / np.bincount(la)
        np.testing.assert_allclose(means, 0.0, atol=1e-6)


def test_add_bym2_without_groups_keeps_the_la_means(lattice):
    """Only the grouped form is centred; groups must be one per LSOA."""
    table, path = lattice
    adj = (
        sg.encode(table, Spec("referrals", family="poisson", neighbours=str(path)))
        .term(SpatialEffect)
        .adjacency()
    )
    with pm.Model(coords={"lsoa": list(adj.codes)}) as model:
        b = add_bym2(adj)
    point = {k: v + 0.7 for k, v in model.initial_point().items()}
    (out,) = model.replace_rvs_by_values([b])
    values = model.compile_fn(out, inputs=model.value_vars, on_unused_input="ignore")(point)
    assert abs(float(np.mean(values))) > 0.05
    with pm.Model(), pytest.raises(SpatialError, match="groups has 3 values for 36"):
        add_bym2(adj, groups=np.zeros(3, dtype=int))


def test_negbin_with_bym2_is_refused_with_the_reason(lattice):
    table, path = lattice
    with pytest.raises(SpatialError, match='family = "poisson"') as err:
        sg.encode(table, Spec("referrals", spatial="bym2", neighbours=str(path)))
    assert str(err.value) == NEGBIN_REFUSED
    assert "overdispersion" in NEGBIN_REFUSED
    assert "--family poisson" in NEGBIN_REFUSED
    # the graph for the Moran check only is fine with the negative binomial
    data = sg.encode(table, Spec("referrals", neighbours=str(path)))
    assert not data.term(SpatialEffect).bym2
