"""A sparse Cholesky factor of the grounded ICAR precision, and its triangular solve as an Op.

The ICAR's precision is the graph's Laplacian ``Q``, singular along each component's constant
vector. Holding one node of each component of two or more nodes at 0 ("grounding" it)
removes that null space: the grounded Laplacian ``Q_g`` (those rows and columns removed, and
the islands') is sparse and positive definite, and ``x ~ N(0, Q_g^{-1})`` padded with the
grounded nodes' zeros has the ICAR's distribution of contrasts ``x_i - x_j`` exactly (the
ICAR is a distribution of contrasts; centring ``x`` per component gives ``N(0, Q+)``, see
:mod:`socialgradient.data.icar`).

:func:`grounded_factor` computes ``Q_g[o][:, o] = C C^T`` with ``o`` a fill-reducing order
(SuperLU's minimum degree on ``Q + Q'``, no pivoting: the symmetric LU of a positive definite
matrix is ``L D L^T``, so ``C = L D^{1/2}``); for England's shipped graph (32,843 LSOAs, six
components) ``C`` has 0.32 million non-zeros (``bench/bym2_rho.md``). Then
``x = C^{-T} z`` with ``z ~ N(0, I)`` is ``N(0, Q_g[o][:, o]^{-1})``: the prior-whitened
("non-centred") ICAR.

:class:`SparseTriSolve` solves ``C^T x = b`` (``transpose=True``) or ``C y = b`` for a lower
triangular ``C`` in compressed sparse columns, diagonal first in each column. Its gradient is
the other solve (``d/db <g, C^{-T} b> = C^{-1} g``). Both run as numba kernels: in
:meth:`SparseTriSolve.perform` and, registered with PyTensor's numba backend (the one nutpie
compiles through), inside the compiled log density, without object mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pytensor.tensor as pt
import scipy.sparse as sp
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import (
    numba_njit,
    register_funcify_default_op_cache_key,
)
from scipy.sparse.linalg import splu

from socialgradient.data.neighbours import Adjacency

__all__ = ["GroundedFactor", "SparseTriSolve", "cholesky", "grounded_factor", "tri_solve"]


def _solve_lower_py(indptr, indices, data, b):  # pragma: no cover - compiled
    """``y`` with ``C y = b`` (forward substitution, column by column)."""
    y = b.copy()
    for j in range(len(indptr) - 1):
        start, end = indptr[j], indptr[j + 1]
        yj = y[j] / data[start]
        y[j] = yj
        for k in range(start + 1, end):
            y[indices[k]] -= data[k] * yj
    return y


def _solve_lower_t_py(indptr, indices, data, b):  # pragma: no cover - compiled
    """``x`` with ``C^T x = b`` (back substitution: each column a dot product)."""
    x = b.copy()
    for j in range(len(indptr) - 2, -1, -1):
        start, end = indptr[j], indptr[j + 1]
        s = x[j]
        for k in range(start + 1, end):
            s -= data[k] * x[indices[k]]
        x[j] = s / data[start]
    return x


#: The kernels for ``perform`` (numba, cached on disk). The numba backend compiles its own
#: from the same source with PyTensor's ``numba_njit``: calling these (separately compiled)
#: from the backend's function gave gradients that differed in the last bit between
#: PyTensor's numba cache on and off (``tests/test_icar_sparse.py``).
_solve_lower = numba.njit(cache=True)(_solve_lower_py)
_solve_lower_t = numba.njit(cache=True)(_solve_lower_t_py)


class SparseTriSolve(Op):
    """``C^{-T} b`` (``transpose``) or ``C^{-1} b``; inputs ``indptr, indices, data, b``.

    ``C`` is lower triangular in compressed sparse columns with each column's diagonal entry
    first (:func:`cholesky` returns it so). Differentiable in ``b`` only (``C`` is data).
    """

    __props__ = ("transpose",)

    def __init__(self, transpose: bool = True) -> None:
        self.transpose = bool(transpose)

    def make_node(self, indptr, indices, data, b) -> Apply:  # type: ignore[override]
        """Check the inputs' kinds (integer index vectors, float vectors) and build the node."""
        indptr, indices = pt.as_tensor_variable(indptr), pt.as_tensor_variable(indices)
        data, b = pt.as_tensor_variable(data), pt.as_tensor_variable(b)
        if indptr.dtype != "int64" or indices.dtype != "int64":
            raise TypeError("indptr and indices must be int64")
        if any(v.ndim != 1 for v in (indptr, indices, data, b)):
            raise TypeError("all inputs must be vectors")
        b = pt.cast(b, data.dtype) if b.dtype != data.dtype else b
        return Apply(self, [indptr, indices, data, b], [b.type()])

    def perform(self, node, inputs, output_storage) -> None:
        """Solve with the numba kernel."""
        kernel = _solve_lower_t if self.transpose else _solve_lower
        output_storage[0][0] = kernel(*inputs)

    def infer_shape(self, node, shapes):
        """Return ``b``'s shape (the solution's)."""
        return [shapes[3]]

    def connection_pattern(self, node):
        """Only ``b`` is differentiable."""
        return [[False], [False], [False], [True]]

    def pullback(self, inputs, outputs, cotangents):
        """``d/db <g, C^{-T} b> = C^{-1} g`` (and the transpose for the other solve)."""
        indptr, indices, data, _ = inputs
        other = SparseTriSolve(not self.transpose)(indptr, indices, data, cotangents[0])
        return [DisconnectedType()(), DisconnectedType()(), DisconnectedType()(), other]


#: Salts PyTensor's numba cache key of the Op: bump it when a kernel above changes.
_KERNEL_VERSION = 2


@register_funcify_default_op_cache_key(SparseTriSolve)
def _numba_funcify_sparse_tri_solve(op, node=None, **kwargs):
    kernel = numba_njit(_solve_lower_t_py if op.transpose else _solve_lower_py)

    @numba_njit
    def sparse_tri_solve(indptr, indices, data, b):  # pragma: no cover - compiled
        return kernel(indptr, indices, data, b)

    return sparse_tri_solve, _KERNEL_VERSION


def tri_solve(factor: sp.csc_matrix, b, transpose: bool = True):
    """Return ``factor^{-T} b`` (or ``factor^{-1} b``) as a PyTensor expression."""
    return SparseTriSolve(transpose)(
        pt.as_tensor(factor.indptr.astype(np.int64)),
        pt.as_tensor(factor.indices.astype(np.int64)),
        pt.as_tensor(factor.data.astype(np.float64)),
        b,
    )


def cholesky(q: sp.spmatrix) -> tuple[sp.csc_matrix, np.ndarray]:
    """Return ``(C, o)`` with ``q[o][:, o] = C C^T``, ``C`` lower (CSC, diagonal first).

    ``q`` must be symmetric positive definite. SuperLU with a symmetric minimum-degree order
    and no pivoting factorises ``P q P^T = L U`` with ``U = D L^T``.
    """
    q = sp.csc_matrix(q)
    lu = splu(
        q,
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
    )
    if not np.array_equal(lu.perm_r, lu.perm_c):
        raise np.linalg.LinAlgError("SuperLU pivoted: the matrix is not positive definite")
    d = lu.U.diagonal()
    if np.any(d <= 0):
        raise np.linalg.LinAlgError("non-positive pivot: the matrix is not positive definite")
    c = sp.csc_matrix(lu.L @ sp.diags(np.sqrt(d)))
    c.sort_indices()
    order = np.argsort(lu.perm_c)  # row k of C is q's node order[k]
    first = c.indices[c.indptr[:-1]]
    if not np.array_equal(first, np.arange(q.shape[0])):
        raise np.linalg.LinAlgError("the factor is not lower triangular")
    return c, order


@dataclass(frozen=True)
class GroundedFactor:
    """The grounded ICAR's factor over a graph's nodes.

    Attributes
    ----------
    factor : scipy.sparse.csc_matrix
        ``C``, lower triangular, ``C C^T = Q_g[o][:, o]``.
    order : numpy.ndarray
        ``o``: the node of each row of ``C`` (every node of a component of two or more, but
        its grounded node).
    ground : numpy.ndarray
        The grounded node of each component (``-1`` for an island's component).
    """

    factor: sp.csc_matrix
    order: np.ndarray
    ground: np.ndarray


def grounded_factor(adjacency: Adjacency) -> GroundedFactor:
    """Factorise the grounded Laplacian of every component of two or more nodes.

    Each component's grounded node is its first. The components are independent, so the
    block-diagonal ``Q_g`` of them all is factorised at once (the order keeps the blocks).
    """
    sizes = adjacency.sizes
    ground = np.full(len(sizes), -1, dtype=np.int64)
    first = np.full(len(sizes), adjacency.n, dtype=np.int64)
    np.minimum.at(first, adjacency.component, np.arange(adjacency.n))
    ground[sizes > 1] = first[sizes > 1]
    connected = np.flatnonzero(adjacency.degree > 0)
    keep = np.setdiff1d(connected, ground[ground >= 0])
    a = adjacency.matrix().tocsc()
    q = (sp.diags(adjacency.degree.astype(float)) - a).tocsr()[keep][:, keep]
    factor, order = cholesky(q)
    return GroundedFactor(factor=factor, order=keep[order], ground=ground)
