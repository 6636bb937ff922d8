"""The BYM2 spatial term (issue 29 items 2 and 5).

Scaling factors against dense algebra, ICAR draws and density, Moran's I that sees a spatial
field and not iid noise, and recovery of a known ``sd`` and ``rho`` by nutpie.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy.spatial import Delaunay

from socialgradient.data.icar import icar_draws, laplacian, scaling_factors
from socialgradient.data.neighbours import Adjacency, build_adjacency, pairs_from_frame
from socialgradient.data.synthetic.spatial import draw_bym2, lattice_pairs
from socialgradient.model.spatial import SpatialError, add_bym2, icar_logp
from socialgradient.results.spatial import moran_check, morans_i

ENGLAND = Path(__file__).resolve().parents[1] / "data" / "lsoa11_neighbours.csv.gz"


def lattice(rows: int, cols: int) -> Adjacency:
    """Return the rook graph of a ``rows x cols`` lattice."""
    codes, frame = lattice_pairs(rows, cols)
    return build_adjacency(pairs_from_frame(frame), codes)


def delaunay(n: int, seed: int, extra: tuple[str, ...] = ()) -> Adjacency:
    """Return a stand-in irregular planar graph: the Delaunay triangulation of random points."""
    pts = np.random.default_rng(seed).uniform(size=(n, 2))
    tri = Delaunay(pts).simplices
    e = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [0, 2]]]), axis=1)
    e = np.unique(e, axis=0)
    codes = np.array([f"D{i:04d}" for i in range(n)])
    frame = pd.DataFrame({"lsoa": codes[e[:, 0]], "neighbour": codes[e[:, 1]]})
    return build_adjacency(pairs_from_frame(frame), [*codes, *extra])


def dense_scaling(adj: Adjacency, nodes: np.ndarray) -> float:
    """Riebler's definition by the Moore-Penrose inverse of the component's Laplacian."""
    q = laplacian(adj, nodes)[0].toarray()
    return float(np.exp(np.mean(np.log(np.diag(np.linalg.pinv(q, rtol=1e-10, hermitian=True))))))


def test_scaling_closed_forms_and_components():
    """Complete graphs K2 and K3 have closed forms; an island has no factor."""
    # K2: Q+ = [[1/4, -1/4], ...]; K3: diag (n-1)/n^2 = 2/9; one island: none
    frame = pd.DataFrame(
        [("a", "b"), ("c", "d"), ("d", "e"), ("c", "e")], columns=["lsoa", "neighbour"]
    )
    adj = build_adjacency(pairs_from_frame(frame), ["a", "b", "c", "d", "e", "z"])
    s = scaling_factors(adj)
    assert s.method == ("exact", "exact", "island")
    np.testing.assert_allclose(s.factor[:2], [2 / 9, 1 / 4], rtol=1e-10)
    assert np.isnan(s.factor[2])
    assert np.isnan(s.per_node(adj)[5])


def test_scaling_exact_and_sampled_against_dense_pinv():
    """Check both methods against the dense pseudo-inverse on a 300-node irregular graph.

    With a second component: the exact path equals the dense pseudo-inverse; the sparse Monte
    Carlo path is within 4 of its stated standard errors and 3% of it.
    """
    adj = delaunay(300, seed=4)
    both = build_adjacency(
        pairs_from_frame(
            pd.concat(
                [
                    pd.DataFrame({"lsoa": [adj.codes[i] for i in adj.edges[:, 0]]}).assign(
                        neighbour=[adj.codes[j] for j in adj.edges[:, 1]]
                    ),
                    lattice_pairs(6, 7, prefix="G")[1],
                ]
            )
        ),
        [*adj.codes, *lattice_pairs(6, 7, prefix="G")[0]],
    )
    truth = [dense_scaling(both, np.flatnonzero(both.component == c)) for c in range(2)]
    exact = scaling_factors(both)
    np.testing.assert_allclose(exact.factor, truth, rtol=1e-8)
    sampled = scaling_factors(both, exact_max=100, draws=400, seed=11)
    assert sampled.method == ("sampled", "exact")
    err = np.log(sampled.factor[0] / truth[0])
    assert 0 < sampled.log_se[0] < 0.03
    assert abs(err) < 4 * sampled.log_se[0]
    assert abs(err) < 0.03


def test_icar_draws_and_density():
    """ICAR draws sum to zero, have the pseudo-inverse's variances; the density is the dense one."""
    adj = delaunay(60, seed=2, extra=("island",))
    draws = icar_draws(adj, 4000, np.random.default_rng(0))
    assert np.abs(draws.sum(axis=1)).max() < 1e-8  # one component (+ island): sum zero
    assert np.all(draws[:, -1] == 0)
    nodes = np.flatnonzero(adj.degree > 0)
    pinv = np.diag(np.linalg.pinv(laplacian(adj, nodes)[0].toarray(), rtol=1e-10, hermitian=True))
    np.testing.assert_allclose(draws[:, nodes].var(axis=0), pinv, rtol=0.12)
    # the ICAR log density equals the dense quadratic form plus the stated constraint terms
    phi = np.random.default_rng(1).normal(size=adj.n)
    q = np.zeros((adj.n, adj.n))
    q[np.ix_(nodes, nodes)] = laplacian(adj, nodes)[0].toarray()
    want = -0.5 * phi @ q @ phi - 0.5 * (phi[nodes].sum() / (0.001 * len(nodes))) ** 2
    want += -0.5 * phi[-1] ** 2
    np.testing.assert_allclose(float(icar_logp(phi, adj).eval()), want, rtol=1e-10)


def test_morans_i_sees_a_field_not_noise():
    """Moran's I equals its dense formula, is about 0 for noise and large for a BYM2 field."""
    adj = lattice(20, 20)
    x = np.random.default_rng(0).normal(size=(3, adj.n))
    w = adj.matrix().toarray()
    z = x[0] - x[0].mean()
    dense = adj.n / w.sum() * (z @ w @ z) / (z @ z)
    assert np.isclose(morans_i(x[0], adj), dense)
    noise = morans_i(np.random.default_rng(1).normal(size=(200, adj.n)), adj)
    assert abs(noise.mean()) < 0.02  # E[I] = -1/(n-1) under independence
    field = draw_bym2(adj, sd=1.0, rho=0.9, seed=5).effect
    assert morans_i(field, adj) > 0.3
    assert morans_i(field, adj) > np.quantile(noise, 0.999)


def test_moran_check_flags_a_missed_field_only():
    """The predictive check flags a model without the field, and not one with it."""
    adj = lattice(20, 20)
    rng = np.random.default_rng(3)
    field = draw_bym2(adj, sd=0.5, rho=0.9, seed=6).effect
    n = rng.integers(200, 600, adj.n)
    y = rng.poisson(n * 0.05 * np.exp(field))
    draws = 200
    for mu, flagged in [(n * 0.05 * np.exp(field), False), (n * 0.05 * np.exp(0 * field), True)]:
        mu = np.broadcast_to(mu * y.sum() / mu.sum(), (draws, adj.n))
        rep = rng.poisson(mu)
        out = moran_check(y, mu, rep, adj)
        assert out["draws"] == draws
        if flagged:
            assert out["p_value"] < 0.01
            assert out["observed_i"] > 0.2 > 0.05 > abs(out["replicated_i"])
        else:
            assert 0.01 < out["p_value"] < 0.99


def test_add_bym2_checks_its_coord_and_graph():
    """A mismatched coord and a graph without pairs are refused; the named variables exist."""
    adj = lattice(3, 3)
    with (
        pm.Model(coords={"lsoa": list(reversed(adj.codes))}),
        pytest.raises(SpatialError, match="first difference at position 0"),
    ):
        add_bym2(adj)
    with pm.Model():
        add_bym2(adj, keep_effect=True)
        assert {"spatial_sd", "spatial_rho", "spatial_z", "spatial_theta", "spatial"} <= set(
            pm.modelcontext(None).named_vars
        )
    lonely = build_adjacency(pairs_from_frame(pd.DataFrame(columns=["lsoa", "neighbour"])), ["a"])
    with pm.Model(), pytest.raises(SpatialError, match="no pairs"):
        add_bym2(lonely)


def test_bym2_recovers_sd_and_rho():
    """Recover a BYM2 field's sd and rho from Poisson counts.

    A 20 x 20 lattice with a field of sd 0.5, rho 0.7: nutpie's 95% intervals cover both,
    and the fit mixes.
    """
    nutpie = pytest.importorskip("nutpie")
    import arviz as az

    adj = lattice(20, 20)
    truth = draw_bym2(adj, sd=0.5, rho=0.7, seed=3)
    rng = np.random.default_rng(1)
    n = rng.integers(200, 600, adj.n)
    y = rng.poisson(n * np.exp(-2.5 + truth.effect))
    with pm.Model(coords={"lsoa": list(adj.codes)}) as model:
        a = pm.Normal("a", -2.0, 2.0)
        b = add_bym2(adj)
        pm.Poisson("y", n * pm.math.exp(a + b), observed=y, dims="lsoa")
    start = time.perf_counter()
    idata = nutpie.sample(
        nutpie.compile_pymc_model(model),
        draws=600,
        tune=600,
        chains=2,
        seed=2,
        progress_bar=False,
    )
    elapsed = time.perf_counter() - start
    post = idata.posterior
    for name, value in [("spatial_sd", truth.sd), ("spatial_rho", truth.rho)]:
        lo, hi = np.quantile(post[name].values.ravel(), [0.025, 0.975])
        assert lo < value < hi, (name, lo, hi)
    assert float(az.rhat(idata, var_names=["spatial_sd"])["spatial_sd"]) < 1.05
    assert elapsed < 120


@pytest.mark.slow
def test_england_scaling_factors_and_field():
    """Scale England's real graph and draw a field on it.

    The mainland sampled, the other components exact, the island none; a field drawn on all
    32,844 LSOAs.
    """
    from socialgradient.data.neighbours import read_neighbours

    pairs = read_neighbours(ENGLAND)
    adj = build_adjacency(pairs, [*np.unique(pairs.pairs), "E01019077"])
    start = time.perf_counter()
    s = scaling_factors(adj)
    assert time.perf_counter() - start < 120
    assert s.method == ("sampled", "exact", "exact", "exact", "exact", "exact", "island")
    assert s.log_se[0] < 0.03
    assert 0.5 < s.factor[0] < 1.5
    field = draw_bym2(adj, sd=0.3, rho=0.8, seed=1, scaling=s).effect
    assert field.shape == (32844,)
    assert morans_i(field, adj) > 0.3


@pytest.mark.slow
def test_bym2_claims_no_field_where_there_is_none():
    """Without a spatial field (iid Poisson noise only) BYM2's sd stays near zero."""
    nutpie = pytest.importorskip("nutpie")

    adj = lattice(20, 20)
    rng = np.random.default_rng(7)
    n = rng.integers(200, 600, adj.n)
    y = rng.poisson(n * np.exp(-2.5))
    with pm.Model(coords={"lsoa": list(adj.codes)}) as model:
        a = pm.Normal("a", -2.0, 2.0)
        b = add_bym2(adj)
        pm.Poisson("y", n * pm.math.exp(a + b), observed=y, dims="lsoa")
    idata = nutpie.sample(
        nutpie.compile_pymc_model(model),
        draws=600,
        tune=600,
        chains=2,
        seed=3,
        progress_bar=False,
    )
    sd = idata.posterior["spatial_sd"].values.ravel()
    assert np.quantile(sd, 0.975) < 0.1
    moran = morans_i(y / n / (y.sum() / n.sum()) - 1, adj)
    assert abs(float(moran)) < 0.1
