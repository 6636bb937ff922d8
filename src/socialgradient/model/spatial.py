"""The BYM2 spatial LSOA effect (Riebler et al. 2016), sparse, for a PyMC linear predictor.

For LSOA ``i`` in connected component ``c`` of the neighbour graph::

    b_i = spatial_sd * (sqrt(spatial_rho / s_c) * phi_i + sqrt(1 - spatial_rho) * theta_i)

* ``phi`` (``spatial_phi``, dim ``lsoa``) is the intrinsic CAR field with unit precision:
  log density ``-0.5 * sum_{i~j} (phi_i - phi_j)^2`` over the edge list (two vectorised
  gathers; no ``N x N`` matrix is ever formed), plus, for each component of two or more
  LSOAs, a soft sum-to-zero constraint ``sum_{i in c} phi_i ~ N(0, 0.001 * n_c)`` (Morris
  et al. 2019), which identifies the field against the intercept.
* ``theta`` (``spatial_theta``, dim ``lsoa``) is iid ``N(0, 1)``.
* ``s_c`` is the component's scaling factor (:func:`socialgradient.data.icar.scaling_factors`),
  so that ``spatial_sd`` is the marginal standard deviation of the effect (geometric mean over
  LSOAs) whatever the graph, and ``spatial_rho`` the share of its variance that is spatial.
* An island (an LSOA without neighbours, e.g. the Isles of Scilly) has no ICAR part: its
  effect is ``spatial_sd * theta_i`` (Freni-Sterrantino, Ventrucci and Rue 2018). Its
  ``phi_i`` is given an ``N(0, 1)`` density so that the posterior stays proper; it enters
  nothing else.

Priors (stated; the scale is an argument):

``spatial_sd ~ HalfNormal(1)``
    On the log-rate scale: ``sd = 1`` would make neighbourhoods' rates vary by a factor of
    ``e^2`` (95%) beyond deprivation and LA, more than anyone expects; the prior allows it,
    favours less.
``spatial_rho ~ Beta(1, 1)`` (uniform on [0, 1])
    Riebler's PC prior for ``rho`` needs the eigenvalues of the graph's Laplacian, a dense
    ``O(n^3)`` computation for England's 32,708-LSOA mainland that the sparse term avoids.
    Near ``rho = 0`` (the base model, all iid) the PC prior's density is finite and nearly
    flat (the distance ``sqrt(2 KLD)`` from the base grows linearly in ``rho``), as the
    uniform's is. The Stan case study's ``Beta(0.5, 0.5)`` (Morris et al. 2019) has infinite
    density at both ends: on data without a field it sent the sampler's ``logit(rho)`` to
    -15 and mixed worse (``rho``'s bulk ESS 11 against 29 of 1,200 draws on 30 LAs of the
    default England, Poisson, LA-centred).

Within groups (``groups``: each LSOA's LA, as the national model passes them), the effect is
centred exactly, ``b_i - mean_{j in g(i)} b_j`` (a segment mean over the group's LSOAs, in
every draw): the LA intercepts alone carry the LAs' levels. Without it an LA's intercept and
the mean of its LSOAs' effects are told apart only by their priors, and the LA effects mix
badly (issue 29: on 30 LAs of the default England, Poisson, the draws of each LA's intercept
and its LSOAs' mean effect correlate at a median of -0.45, and ``la_effect``'s R-hat was 1.26
after 2 x (200 + 200) draws; 0.00 and 1.06 centred). ``spatial_sd`` and ``spatial_rho`` keep
their meaning (the scale and spatial share of the BYM2 field before centring); only the
field's LA means, which the LA intercepts hold, leave the model. The ICAR's per-component
constraint is then loosened to ``sum_{i in c} phi_i ~ N(0, n_c)`` (a mean of unit-variance
values): the component's level is centred out with the LA means (exactly, where the
component is a union of whole LAs), and the tight ``0.001 n_c`` constraint was the narrowest
direction of the posterior (nutpie's step size 0.03 against 0.15 loosened, tree depth 7
against 5, on the same 30 LAs).

By default (``phi_form="sparse"``) the sampler sees ``spatial_z ~ N(0, I)`` and ``phi`` is
:func:`icar_from_white` of it: the same ICAR prior, whitened by the sparse Cholesky factor of
each component's grounded Laplacian (:mod:`socialgradient.model.sparse_chol`), so that NUTS
does not random-walk the ICAR's smooth, wide modes (``bench/bym2_rho.md``: ``spatial_rho``'s
bulk ESS per 1,000 draws 75-187 against 10-48 without a field, no worse with one).
``phi_form="icar"`` keeps the earlier form: ``phi`` a :class:`pymc.Flat` with the ICAR
density as a :class:`pymc.Potential` (the posterior is proper, but
``pm.sample_prior_predictive`` cannot draw it; draw ICAR fields with
:func:`socialgradient.data.icar.icar_draws`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from socialgradient.data.icar import ScalingFactors, scaling_factors
from socialgradient.data.neighbours import Adjacency
from socialgradient.model.sparse_chol import GroundedFactor, grounded_factor, tri_solve

__all__ = ["PHI_FORMS", "BYM2Priors", "SpatialError", "add_bym2", "icar_from_white", "icar_logp"]

#: How ``phi`` is sampled: ``"icar"`` (itself, with the ICAR density as a potential) or
#: ``"sparse"`` (prior-whitened through the grounded Laplacian's sparse Cholesky factor).
PHI_FORMS = ("icar", "sparse")

#: The soft sum-to-zero constraint's standard deviation per node: sum(phi_c) ~ N(0, 0.001 n_c).
CONSTRAINT_SD = 0.001


class SpatialError(ValueError):
    """The spatial term cannot be built as asked (the message says why)."""


@dataclass(frozen=True)
class BYM2Priors:
    """Prior settings of the BYM2 term.

    Attributes
    ----------
    sd_scale : float
        Scale of the half-Normal prior on ``spatial_sd`` (log-rate units).
    rho_alpha, rho_beta : float
        Beta prior on ``spatial_rho``.
    """

    sd_scale: float = 1.0
    rho_alpha: float = 1.0
    rho_beta: float = 1.0


def icar_logp(phi, adjacency: Adjacency, loose: bool = False):
    """Return the ICAR log density of ``phi`` with per-component soft sum-to-zero constraints.

    Parameters
    ----------
    phi : pytensor tensor
        The field, one value per node of ``adjacency`` (its order).
    adjacency : Adjacency
        The graph.
    loose : bool
        Constrain each component's sum to ``N(0, n_c)`` instead of ``N(0, (0.001 n_c)^2)``
        (for an effect centred within groups, where the component's level leaves the model).

    Returns
    -------
    pytensor scalar
        ``-0.5 * sum_{i~j} (phi_i - phi_j)^2``, minus ``0.5 * (sum_c phi / scale_c)^2`` for
        each component of two or more nodes (``scale_c`` ``0.001 n_c``, or ``sqrt(n_c)``
        loose), minus ``0.5 * phi_i^2`` for each island.
    """
    phi = pt.as_tensor_variable(phi)
    i = pt.as_tensor(adjacency.edges[:, 0].astype(np.int64))
    j = pt.as_tensor(adjacency.edges[:, 1].astype(np.int64))
    pairwise = -0.5 * pt.sum(pt.square(phi[i] - phi[j]))
    sizes = adjacency.sizes
    n_comp = len(sizes)
    sums = pt.inc_subtensor(pt.zeros(n_comp)[pt.as_tensor(adjacency.component)], phi)
    connected = sizes > 1
    scale = _constraint_scale(adjacency, loose)
    constraint = -0.5 * pt.sum(pt.square(sums / scale)[np.flatnonzero(connected)])
    islands = adjacency.islands
    island_part = -0.5 * pt.sum(pt.square(phi[islands])) if len(islands) else 0.0
    return pairwise + constraint + island_part


def _constraint_scale(adjacency: Adjacency, loose: bool) -> np.ndarray:
    """Each component's constraint SD on its sum (1 for an island's, which has none)."""
    sizes = adjacency.sizes
    return np.where(sizes > 1, np.sqrt(sizes) if loose else CONSTRAINT_SD * sizes, 1.0)


def icar_from_white(
    z, adjacency: Adjacency, loose: bool = False, grounded: GroundedFactor | None = None
):
    """Return ``phi`` with :func:`icar_logp`'s prior, from ``z ~ N(0, I)`` (one per node).

    Per component of two or more nodes: ``x = C^{-T} z`` over its nodes but the grounded one
    (:func:`~socialgradient.model.sparse_chol.grounded_factor`), 0 at the grounded node, is
    ``N(0, Q_g^{-1})``; centred it is ``N(0, Q+)``; the grounded node's ``z`` gives the
    component's mean, ``scale_c / n_c * z``, so that its sum is ``N(0, scale_c^2)``, the
    constraint of :func:`icar_logp` (``loose`` or not). An island's ``phi`` is its ``z``.
    ``z -> phi`` is linear and invertible, so ``phi``'s density is exactly ``icar_logp``'s.
    """
    g = grounded or grounded_factor(adjacency)
    z = pt.as_tensor_variable(z)
    sizes = adjacency.sizes
    comp = pt.as_tensor(adjacency.component.astype(np.int64))
    order = pt.as_tensor(g.order.astype(np.int64))
    raw = pt.set_subtensor(pt.zeros(adjacency.n)[order], tri_solve(g.factor, z[order]))
    sums = pt.inc_subtensor(pt.zeros(len(sizes))[comp], raw)
    connected = sizes > 1
    weight = np.where(connected, _constraint_scale(adjacency, loose) / sizes, 0.0)
    level = weight * z[pt.as_tensor(np.where(connected, g.ground, 0).astype(np.int64))]
    phi = raw + (level - sums / sizes)[comp]
    islands = adjacency.islands
    if len(islands):
        phi = pt.set_subtensor(phi[islands], z[islands])
    return phi


def group_centred(x, groups: np.ndarray):
    """Return ``x`` less its group's mean, ``x_i - mean_{j: g_j = g_i} x_j``.

    Parameters
    ----------
    x : pytensor vector
        One value per node.
    groups : numpy.ndarray
        Each node's group, integers ``0 .. G - 1``.

    Returns
    -------
    pytensor vector
        ``x`` centred within its groups (each group's mean exactly 0).
    """
    groups = np.asarray(groups, dtype=np.int64)
    n_groups = int(groups.max()) + 1
    size = np.maximum(np.bincount(groups, minlength=n_groups), 1).astype(float)
    g = pt.as_tensor(groups)
    sums = pt.inc_subtensor(pt.zeros(n_groups)[g], x)
    return x - (sums / size)[g]


def _check_coord(model: pm.Model, dim: str, adjacency: Adjacency) -> None:
    codes = list(adjacency.codes)
    if dim in model.coords and model.coords[dim] is not None:
        have = [str(c) for c in model.coords[dim]]
        if have != codes:
            where = next(
                (k for k, (a, b) in enumerate(zip(have, codes, strict=False)) if a != b), 0
            )
            detail = (
                f"{len(have)} in the model, {len(codes)} in the graph"
                if len(have) != len(codes)
                else f"first difference at position {where}: {have[where]} vs {codes[where]}"
            )
            raise SpatialError(
                f"the model's {dim!r} coord and the neighbour graph's LSOAs differ ({detail}); "
                "build the graph over the model's LSOA codes, in order"
            )
    else:
        model.add_coord(dim, codes)


def add_bym2(
    adjacency: Adjacency,
    *,
    priors: BYM2Priors | None = None,
    scaling: ScalingFactors | None = None,
    dim: str = "lsoa",
    keep_effect: bool = False,
    groups: np.ndarray | None = None,
    phi_form: str = "sparse",
):
    """Add the BYM2 LSOA effect to the current :class:`pymc.Model` and return it.

    Parameters
    ----------
    adjacency : Adjacency
        The neighbour graph over the model's LSOAs, in the order of the ``dim`` coord
        (:func:`socialgradient.data.neighbours.build_adjacency`).
    priors : BYM2Priors, optional
        Prior settings (default ``HalfNormal(1)`` and ``Beta(1, 1)``).
    scaling : ScalingFactors, optional
        Precomputed scaling factors (computed here when not given: about 15 s for England).
    dim : str
        The LSOA dim; added with ``adjacency.codes`` when the model lacks it, checked
        against them when it has it.
    keep_effect : bool
        Also record the effect as the deterministic ``spatial`` (dim ``dim``): one value per
        LSOA and draw, so large for England; it can be rebuilt from the draws instead.
    groups : numpy.ndarray, optional
        Each LSOA's group (its LA, integers from 0), in ``adjacency.codes`` order: the effect
        is then centred exactly within each group (its mean 0 in every draw) and the ICAR's
        component constraint loosened (``icar_logp(loose=True)``).
    phi_form : {"icar", "sparse"}
        ``"icar"``: ``spatial_phi`` is sampled, its density the potential ``spatial_icar``.
        ``"sparse"``: ``spatial_z ~ N(0, 1)`` (dim ``dim``) is sampled and ``phi`` is
        :func:`icar_from_white` of it, the same prior whitened (``phi`` is not recorded: one
        value per LSOA and draw; rebuild it from ``spatial_z`` with that function).

    Returns
    -------
    pytensor vector
        ``b``, one value per LSOA in ``adjacency.codes`` order, to add to the linear
        predictor (index it to the predictor's row order).

    Raises
    ------
    SpatialError
        No model context, the coord does not match, the graph has no edges at all, or
        ``groups`` is not one value per LSOA.
    """
    model = pm.modelcontext(None)
    if len(adjacency.edges) == 0:
        raise SpatialError("the neighbour graph has no pairs: a BYM2 term needs neighbours")
    priors = priors or BYM2Priors()
    scaling = scaling or scaling_factors(adjacency)
    if len(scaling.factor) != len(adjacency.sizes):
        raise SpatialError("the scaling factors were computed for another graph")
    if phi_form not in PHI_FORMS:
        raise SpatialError(f"phi_form must be one of {PHI_FORMS}, not {phi_form!r}")
    if groups is not None and np.shape(groups) != (adjacency.n,):
        raise SpatialError(f"groups has {np.size(groups)} values for {adjacency.n} LSOAs")
    _check_coord(model, dim, adjacency)
    inv_s = 1.0 / scaling.per_node(adjacency)
    inv_sqrt_s = np.where(np.isfinite(inv_s), np.sqrt(np.nan_to_num(inv_s)), 0.0)
    island = (adjacency.degree == 0).astype(float)

    sd = pm.HalfNormal("spatial_sd", sigma=priors.sd_scale)
    rho = pm.Beta("spatial_rho", alpha=priors.rho_alpha, beta=priors.rho_beta)
    if phi_form == "sparse":
        z = pm.Normal("spatial_z", 0.0, 1.0, dims=dim)
        phi = icar_from_white(z, adjacency, loose=groups is not None)
    else:
        phi = pm.Flat("spatial_phi", dims=dim)
    theta = pm.Normal("spatial_theta", 0.0, 1.0, dims=dim)
    if phi_form == "icar":
        pm.Potential("spatial_icar", icar_logp(phi, adjacency, loose=groups is not None))
    # islands: sqrt(1 - rho) -> 1 (iid only); others: the BYM2 mix
    iid_weight = island + (1.0 - island) * pt.sqrt(1.0 - rho)
    effect = sd * (pt.sqrt(rho) * inv_sqrt_s * phi + iid_weight * theta)
    if groups is not None:
        effect = group_centred(effect, groups)
    if keep_effect:
        effect = pm.Deterministic("spatial", effect, dims=dim)
    return effect
