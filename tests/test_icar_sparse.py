"""The prior-whitened ICAR (issue 29, ``spatial_rho``'s mixing): sparse Cholesky, solve Op, prior.

The factor against the grounded Laplacian, the triangular-solve Op's value and gradient
against dense SciPy solves and PyTensor's ``verify_grad``, its numba implementation (no
object mode), and the whitened field's implied covariance against the inverse of
:func:`icar_logp`'s precision on graphs with several components and an island.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.linalg as sla
from scipy.spatial import Delaunay

from socialgradient.data.neighbours import Adjacency, build_adjacency, pairs_from_frame
from socialgradient.model.sparse_chol import (
    SparseTriSolve,
    cholesky,
    grounded_factor,
    tri_solve,
)
from socialgradient.model.spatial import SpatialError, add_bym2, icar_from_white, icar_logp


def graph(n: int = 40, seed: int = 1, extra: int = 2) -> Adjacency:
    """A Delaunay graph of ``n`` points, plus a triangle, a pair and ``extra`` islands."""
    pts = np.random.default_rng(seed).uniform(size=(n, 2))
    tri = Delaunay(pts).simplices
    e = np.unique(
        np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [0, 2]]]), axis=1), axis=0
    )
    codes = [f"D{i:03d}" for i in range(n)]
    pairs = [(codes[a], codes[b]) for a, b in e]
    pairs += [("T0", "T1"), ("T1", "T2"), ("T0", "T2"), ("P0", "P1")]
    frame = pd.DataFrame(pairs, columns=["lsoa", "neighbour"])
    # shuffle the node order so that components interleave
    names = [*codes, "T0", "T1", "T2", "P0", "P1", *(f"I{k}" for k in range(extra))]
    order = np.random.default_rng(seed + 1).permutation(len(names))
    return build_adjacency(pairs_from_frame(frame), [names[k] for k in order])


def test_cholesky_factorises_the_grounded_laplacian():
    adj = graph()
    g = grounded_factor(adj)
    q = (np.diag(adj.degree) - adj.matrix().toarray())[np.ix_(g.order, g.order)]
    c = g.factor.toarray()
    assert np.allclose(np.triu(c, 1), 0)
    np.testing.assert_allclose(c @ c.T, q, atol=1e-12)
    # one grounded node per component of two or more; islands neither grounded nor factored
    assert (g.ground >= 0).sum() == (adj.sizes > 1).sum()
    assert set(g.order) | set(g.ground[g.ground >= 0]) | set(adj.islands) == set(range(adj.n))
    assert len(g.order) == adj.n - (adj.sizes > 1).sum() - len(adj.islands)
    with pytest.raises(np.linalg.LinAlgError):
        cholesky(-np.eye(3))


@pytest.mark.parametrize("transpose", [True, False])
def test_tri_solve_value_gradient_and_numba(transpose):
    adj = graph(30, seed=3)
    c = grounded_factor(adj).factor
    dense = c.toarray()
    rng = np.random.default_rng(0)
    b_val, w = rng.standard_normal((2, c.shape[0]))
    b = pt.vector("b")
    x = tri_solve(c, b, transpose=transpose)
    expect = sla.solve_triangular(dense, b_val, lower=True, trans="T" if transpose else "N")
    objective = pt.dot(w, x)
    # d<w, C^{-T} b>/db = C^{-1} w (and C^{-T} w for the other solve)
    grad_expect = sla.solve_triangular(dense, w, lower=True, trans="N" if transpose else "T")
    for mode in ("FAST_RUN", "NUMBA"):
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*object mode.*")
            f = pytensor.function([b], [x, pytensor.grad(objective, b)], mode=mode)
        value, grad = f(b_val)
        np.testing.assert_allclose(value, expect, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grad, grad_expect, rtol=1e-10, atol=1e-12)
    args = [pt.as_tensor(v) for v in (c.indptr.astype(np.int64), c.indices.astype(np.int64))]
    data = pt.as_tensor(c.data)
    pytensor.gradient.verify_grad(
        lambda v: SparseTriSolve(transpose)(*args, data, v), [b_val], rng=rng
    )


@pytest.mark.parametrize("loose", [True, False])
def test_whitened_field_has_the_icar_prior(loose):
    """``phi = M z``: ``M M^T`` equals the inverse of ``icar_logp``'s precision (its Hessian)."""
    adj = graph(25, seed=5)
    z = pt.vector("z")
    phi = icar_from_white(z, adj, loose=loose)
    # both maps are linear: their matrices column by column
    f = pytensor.function([z], phi)
    m = np.column_stack([f(e) for e in np.eye(adj.n)])
    p = pt.vector("p")
    g = pytensor.function([p], pytensor.grad(icar_logp(p, adj, loose), p))
    precision = -np.column_stack([g(e) for e in np.eye(adj.n)])
    np.testing.assert_allclose(m @ m.T, np.linalg.inv(precision), rtol=1e-8, atol=1e-9)
    # the contrasts within a component: the ICAR's, i.e. the Laplacian's pseudo-inverse
    big = np.flatnonzero(adj.component == 0)
    q = (np.diag(adj.degree) - adj.matrix().toarray())[np.ix_(big, big)]
    centre = np.eye(len(big)) - 1.0 / len(big)
    cov = centre @ (m @ m.T)[np.ix_(big, big)] @ centre
    np.testing.assert_allclose(cov, np.linalg.pinv(q, hermitian=True), atol=1e-9)
    # islands are their own z
    for i in adj.islands:
        assert np.array_equal(m[i], np.eye(adj.n)[i])


def test_add_bym2_sparse_form_matches_icar_form():
    """The two forms' log densities of the same ``phi`` differ by a constant only."""
    adj = graph(30, seed=7, extra=1)
    groups = (adj.component == 0).astype(np.int64)
    models = {}
    for form in ("icar", "sparse"):
        with pm.Model() as model:
            add_bym2(adj, groups=groups, phi_form=form)
        models[form] = model
    sparse, icar = models["sparse"], models["icar"]
    assert "spatial_phi" not in sparse.named_vars  # not recorded: rebuilt from spatial_z
    zv = pt.vector("z")
    phi_of_z = pytensor.function([zv], icar_from_white(zv, adj, loose=True))
    icar_logp_f = icar.compile_logp()
    sparse_logp_f = sparse.compile_logp()
    rng = np.random.default_rng(2)
    diffs = []
    for _ in range(4):
        point = sparse.initial_point()
        point["spatial_z"] = rng.standard_normal(adj.n)
        ipoint = icar.initial_point()
        ipoint["spatial_phi"] = phi_of_z(point["spatial_z"])
        ipoint["spatial_theta"] = point["spatial_theta"] = rng.standard_normal(adj.n)
        diffs.append(icar_logp_f(ipoint) - sparse_logp_f(point))
    np.testing.assert_allclose(diffs, diffs[0], atol=1e-8)
    with pytest.raises(SpatialError, match="phi_form"), pm.Model():
        add_bym2(adj, phi_form="dense")


def test_sparse_form_gradient_is_the_same_from_the_cache_and_compiled_fresh():
    """As the package compiles (fast-math off): bit for bit, PyTensor's numba cache on or off."""
    adj = graph(60, seed=9, extra=1)
    groups = (np.arange(adj.n) % 3).astype(np.int64)
    y = np.random.default_rng(4).poisson(3.0, adj.n)
    with pm.Model() as model:
        effect = add_bym2(adj, groups=groups, phi_form="sparse")
        pm.Poisson("y", pm.math.exp(1.0 + effect), observed=y)
    values = model.value_vars
    logp = model.logp(jacobian=True)
    rng = np.random.default_rng(0)
    point = [rng.standard_normal(np.shape(model.initial_point()[v.name])) for v in values]
    out = {}
    with pytensor.config.change_flags(numba__fastmath=False):
        for cache in (True, False, True):
            with pytensor.config.change_flags(numba__cache=cache):
                f = pytensor.function(values, [logp, *pytensor.grad(logp, values)], mode="NUMBA")
                out.setdefault(cache, []).append([np.asarray(o) for o in f(*point)])
    ref = out[True][0]
    assert np.isfinite(ref[0])
    for got in (*out[True][1:], *out[False]):
        for a, b in zip(ref, got, strict=True):
            assert np.array_equal(a, b)
