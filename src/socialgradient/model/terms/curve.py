r"""A flexible deprivation curve: a penalised spline of within-LA deprivation.

``curve = "spline"`` in the spec adds :math:`f(w_i)` to each row's linear predictor,

.. math::

    \log \mathrm{E}[y_i] = \log n_i + \alpha_l + \beta_l w_i + f(w_i), \qquad
    f(w) = \sum_k Z_k(w)\, \gamma_k, \quad \gamma_k \sim \mathrm{Normal}(0, \sigma_f^2),

with the LA-varying slopes :math:`\beta_l` (and their hierarchy) kept as they are.

The basis :math:`Z` is a P-spline (Eilers and Marx) in mixed-model form:

1. cubic B-splines :math:`B_j(w)` on :data:`SEGMENTS` equally spaced segments over the range
   of ``w`` in the data (equal spacing is what makes the second-difference penalty's null
   space exactly the straight lines; quantile knots would let the penalty leak into the
   linear part);
2. the second-difference (random-walk-2) penalty :math:`D^\top D` on the B-spline
   coefficients, eigen-decomposed: its null space (constant and linear in ``w``) is dropped
   and the other eigenvectors are scaled by :math:`\lambda^{-1/2}`, so i.i.d. normal
   :math:`\gamma` is the P-spline prior (smooth departures get most of the variance);
3. each column is made orthogonal to :math:`[1, w]` under the rows' child weights, so
   :math:`f` has child-weighted mean 0 and no child-weighted linear trend in ``w``: ``a``
   keeps its meaning and ``b_w`` stays the child-weighted log-linear summary of the curve
   (the headline gradients are defined as before, and comparable with a log-linear fit's);
4. the whole basis is scaled so that the prior expectation of the child-weighted mean of
   :math:`(f/\sigma_f)^2` over the rows is 1.

So ``curve_sd`` (:math:`\sigma_f`) is the root-mean-square departure of the log rate from its
log-linear summary across children, on the log (binomial: logit) scale. Prior
:math:`\sigma_f \sim \mathrm{Gamma}(2, 2/s)` (shape 2, rate :math:`2/s`), :math:`s` =
``curve_sd`` in ``[priors]`` (default 0.5): its mean is :math:`s`, its median :math:`0.84 s`
and its 95% interval :math:`(0.12 s, 2.8 s)`; a departure of a factor e^0.5 = 1.65 either
way is the prior mean. The shape of 2 makes the prior *boundary-avoiding* (Chung et al.
2013, "A nondegenerate penalized likelihood estimator for variance parameters in multilevel
models"; Gelman 2006 on group-level scales): its density is 0 at :math:`\sigma_f = 0` and
rises linearly from it, so the posterior of a scale the data put near 0 (a straight line)
stays a compact hump a decade or so wide instead of running down to 0 on a log scale. That
tail is where the sampler diverged under the former HalfNormal(0.5), whose density is highest
at 0: on the default England (no curve) 26 to 37 divergences in 4 x 1,000 draws at
``target_accept`` 0.8, at the smallest ``curve_sd`` (median log10 -3.7 at the divergent
draws, -2.2 overall). A straight line is still reachable: a scale near 0 makes ``f`` near 0
whatever the prior's shape, and the data decide between a flat curve (``curve_sd`` of
order 0.01 on England-sized data) and a bend (of order 0.1). Beyond the range of the data
``f`` continues as a straight line (its slope at the boundary), so a local gradient there is
the boundary's.

A *local gradient* at within-LA deprivation :math:`w_0`, for an averagely deprived LA
(:math:`m_c = 0`), is :math:`\exp(b_w + f'(w_0))` per 10 points: the same units as the
headline ``gradient_mean_la`` = :math:`\exp(b_w)`, which is their child-weighted log-linear
summary. :mod:`socialgradient.results.curve` reports them at the income deciles.

Geometry. The coefficients are sampled *centred* (``curve_coef ~ Normal(0, curve_sd)``
itself), one form for every table. Under the half-normal prior the form had to follow the
data (centred with a clear curve, non-centred without one, by a score test), and neither
sampled the default England cleanly. Under the Gamma prior the centred form samples the
1,644-LSOA tables of ``bench/curve.py`` with and without a curve, and leaves 3 divergences
in 4 x 1,400 draws on the default England at the package's default sampling (the residue
of the funnel's neck at the smallest ``curve_sd``); the non-centred form left 27 there, at
the largest, where England-sized data pin the coefficients down (``docs/curve.md``).

The posterior keeps ``curve_sd`` and ``curve_coef`` (dims ``curve_basis``); the fit keeps
the basis's definition in ``constant_data`` (``curve_knots``, ``curve_transform``,
``curve_projection``), so :meth:`Curve.basis` and :meth:`Curve.slopes` evaluate :math:`Z`
and :math:`Z'` at any ``w`` after sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy.interpolate import BSpline

from socialgradient.model.terms.base import Context, NewRows, Term
from socialgradient.spec import CURVES

#: Equally spaced B-spline segments over the range of ``w`` (13 cubic B-splines, 11 basis
#: columns once the straight lines are dropped); the penalty, not the count, sets smoothness.
SEGMENTS = 10
DEGREE = 3
#: Shape of the Gamma prior of ``curve_sd`` (its mean is ``[priors] curve_sd``): 2, no density
#: at 0 and a linear rise from it (Chung et al. 2013; module docstring).
PRIOR_SHAPE = 2.0


def _design(knots: np.ndarray, w: np.ndarray, deriv: int = 0) -> np.ndarray:
    """Return the B-splines (or their first derivatives) at ``w``, dims (row, bspline).

    Outside the knots' range each B-spline continues linearly from the boundary.
    """
    n = len(knots) - DEGREE - 1
    spline = BSpline(knots, np.eye(n), DEGREE)
    lo, hi = knots[DEGREE], knots[n]
    inside = np.clip(np.asarray(w, dtype=float), lo, hi)
    slope = spline.derivative()(inside)
    if deriv:
        return slope
    return spline(inside) + (np.asarray(w, dtype=float) - inside)[:, None] * slope


@dataclass(frozen=True)
class Curve(Term):
    """The spline's definition, as the fit keeps it.

    ``knots`` the B-spline knots, ``transform`` (bspline x basis) from B-splines to the
    penalised basis, ``projection`` (2 x basis) of that basis on ``[1, w]`` (child-weighted).
    """

    knots: np.ndarray
    transform: np.ndarray
    projection: np.ndarray

    name = "curve"
    spec_keys = ("curve",)
    reported = ("curve_sd", "curve_coef")
    on_rows = True

    @classmethod
    def build(cls, w: np.ndarray, children: np.ndarray) -> Curve:
        """Return the basis for within-LA deprivation ``w`` and child weights ``children``.

        Parameters
        ----------
        w : ndarray of float, dims (row,)
            Within-LA deprivation (10-point units).
        children : ndarray of float, dims (row,)
            Child weights of the orthogonalisation and the scaling.

        Returns
        -------
        Curve
            The basis (module docstring, steps 1-4).
        """
        w = np.asarray(w, dtype=float)
        weight = np.asarray(children, dtype=float)
        lo, hi = float(w.min()), float(w.max())
        if not hi - lo > 1e-9:
            raise ValueError(
                'curve = "spline" needs within-LA spread of deprivation: every row has the '
                "same w, so there is no curve in w to fit"
            )
        if not (weight > 0).any():
            raise ValueError('curve = "spline" needs rows with children (the weights)')
        step = (hi - lo) / SEGMENTS
        knots = lo + step * np.arange(-DEGREE, SEGMENTS + DEGREE + 1)
        n = SEGMENTS + DEGREE
        diff = np.diff(np.eye(n), 2, axis=0)
        values, vectors = np.linalg.eigh(diff.T @ diff)
        keep = values > 1e-9 * values.max()
        transform = vectors[:, keep] / np.sqrt(values[keep])
        z0 = _design(knots, w) @ transform
        x = np.column_stack([np.ones_like(w), w])
        projection = np.linalg.solve(x.T @ (x * weight[:, None]), (x * weight[:, None]).T @ z0)
        z = z0 - x @ projection
        scale = np.sqrt(np.sum(weight[:, None] * z**2) / weight.sum())
        return cls(knots, transform / scale, projection / scale)

    @classmethod
    def encode(
        cls, table: pd.DataFrame, spec: Any, core: Any, la_table: pd.DataFrame | None
    ) -> Curve | None:
        """Return the spline's basis when the spec asks for one (``curve = "spline"``)."""
        curve = getattr(spec, "curve", "log-linear")
        if curve not in CURVES:
            raise ValueError(f"unknown curve {curve!r}: choose one of {CURVES}")
        if curve != "spline":
            return None
        return cls.build(core.w, table["children"].to_numpy(dtype=float))

    @classmethod
    def from_tree(cls, tree: xr.DataTree, const: xr.Dataset) -> Curve | None:
        """Return the basis a fit keeps in ``constant_data`` (None for a log-linear fit)."""
        if "curve_knots" not in const:
            return None
        return cls(
            const["curve_knots"].values,
            const["curve_transform"].transpose("curve_bspline", "curve_basis").values,
            const["curve_projection"].transpose("curve_linear", "curve_basis").values,
        )

    def basis(self, w: np.ndarray) -> np.ndarray:
        """Return :math:`Z(w)`, dims (row, curve_basis): ``f(w) = Z(w) @ curve_coef``."""
        w = np.asarray(w, dtype=float)
        x = np.column_stack([np.ones_like(w), w])
        return _design(self.knots, w) @ self.transform - x @ self.projection

    def slopes(self, w: np.ndarray) -> np.ndarray:
        """Return :math:`Z'(w)`, dims (row, curve_basis): ``f'(w) = Z'(w) @ curve_coef``."""
        return _design(self.knots, w, deriv=1) @ self.transform - self.projection[1]

    def coords(self) -> dict[str, list]:
        """Return the ``curve_basis`` coordinate."""
        return {"curve_basis": list(range(self.transform.shape[1]))}

    def constant_data(self, row: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``curve_knots``, ``curve_transform`` and ``curve_projection``."""
        return (
            {
                "curve_knots": ("curve_knot", self.knots),
                "curve_transform": (("curve_bspline", "curve_basis"), self.transform),
                "curve_projection": (("curve_linear", "curve_basis"), self.projection),
            },
            {"curve_basis": list(range(self.transform.shape[1])), "curve_linear": ["1", "w"]},
        )

    def attrs(self) -> dict[str, str]:
        """Return ``curve``: ``spline``."""
        return {"curve": "spline"}

    def hash_parts(self) -> list[np.ndarray]:
        """Return the basis's definition (itself a function of ``w`` and ``children``)."""
        return [self.knots, self.transform, self.projection]

    def rows(self, ctx: Context) -> None:
        r"""Add :math:`f(w) = Z(w)\, \gamma` to the rows (and ``y Z`` to the linear part)."""
        data, order = ctx.data, ctx.order
        z = self.basis(data.w)
        # Gamma(2, 2 / s): mean s, no density at 0 (boundary-avoiding; module docstring)
        scale = ctx.priors.curve_sd
        sd = pm.Gamma("curve_sd", alpha=PRIOR_SHAPE, beta=PRIOR_SHAPE / scale)
        coef = pm.Normal("curve_coef", 0.0, sd, dims="curve_basis")
        ctx.eta = ctx.eta + pt.as_tensor(z[order]) @ coef
        ctx.linear = ctx.linear + pt.dot(data.y @ z, coef)

    def row_eta(self, chain: xr.Dataset, data: Any, eta: np.ndarray) -> np.ndarray:
        """Add :math:`f(w)` of each draw to ``eta``."""
        coef = chain["curve_coef"].transpose("draw", "curve_basis").values
        eta += coef @ self.basis(data.w).T
        return eta

    def predict_eta(
        self, posterior: xr.Dataset, new: NewRows, eta: np.ndarray, slope: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add the curve :math:`f(w)` and its slope :math:`f'(w)` at the new rows' ``w``."""
        coef = posterior["curve_coef"].transpose("chain", "draw", "curve_basis").values
        return eta + coef @ self.basis(new.w).T, slope + coef @ self.slopes(new.w).T
