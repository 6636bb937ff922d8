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
:math:`\sigma_f \sim` HalfNormal(0.5) (``curve_sd`` in ``[priors]``): a departure of a factor
e^0.5 = 1.65 either way is one prior SD; the half-normal's mode at 0 is the straight line,
which the data must argue away. Beyond the range of the data ``f`` continues as a straight
line (its slope at the boundary), so a local gradient there is the boundary's.

A *local gradient* at within-LA deprivation :math:`w_0`, for an averagely deprived LA
(:math:`m_c = 0`), is :math:`\exp(b_w + f'(w_0))` per 10 points: the same units as the
headline ``gradient_mean_la`` = :math:`\exp(b_w)`, which is their child-weighted log-linear
summary. :mod:`socialgradient.results.curve` reports them at the income deciles.

Geometry. Where the data show a clear curve the coefficients are sampled *centred*
(``curve_coef`` itself); where they do not, *non-centred* (``curve_sd`` times standard normals,
``curve_z``), chosen by a score test at a per-LA log-linear fit (:meth:`Curve.strength`,
above :data:`CENTRED_ABOVE`): the same posterior either way. Measured on tables of 1,644
LSOAs (``tests/test_curve.py``'s): with a curve the non-centred form gave 16 divergences in
600 draws and a bulk ESS of 41 for ``curve_sd``; without one the centred form gave 9
divergences (``curve_sd`` stuck at 0.005, ESS 21), the funnel of a scale near 0. On the
default England (no curve, 32,844 LSOAs) the non-centred form needed ``target_accept =
0.95`` (10 to 20 divergences in 600 draws at 0.8, 1 at 0.95; the centred form 1 at 0.8):
data that size pin even a flat curve's coefficients down, and a per-component choice is the
next step (``docs/curve.md``).

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

from socialgradient.model import families, parameterisation
from socialgradient.model.terms.base import Context, NewRows, Term
from socialgradient.spec import CURVES

#: Equally spaced B-spline segments over the range of ``w`` (13 cubic B-splines, 11 basis
#: columns once the straight lines are dropped); the penalty, not the count, sets smoothness.
SEGMENTS = 10
DEGREE = 3
#: :meth:`Curve.strength` above which the coefficients are sampled centred (11 degrees of
#: freedom: without a curve the statistic is about 1, above 3 with probability ~0.0003).
CENTRED_ABOVE = 3.0


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
    derived = ("curve_z",)
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

    def strength(self, data: Any) -> float:
        r"""Return the score statistic for a curve, per degree of freedom (about 1 without one).

        The score test of :math:`\gamma = 0` at a per-LA fit of intercepts and slopes
        (:func:`socialgradient.model.parameterisation.la_fit`, Poisson or logistic working
        model): :math:`U^\top I^{-1} U / (k \hat\phi)` with :math:`U = \tilde Z^\top (y -
        \mu)`, :math:`I = \tilde Z^\top W \tilde Z`, :math:`\tilde Z` the basis less its
        per-LA weighted projection on :math:`[1, w]` and :math:`\hat\phi \ge 1` the Pearson
        dispersion, so overdispersed counts do not pass for a curve.
        """
        binomial = data.trials is not None
        working = families.get("binomial" if binomial else "poisson")
        _, mean, weight = parameterisation.la_fit(data, working)
        idx, n_la, w = data.la_index, len(data.la), data.w
        z = self.basis(w)
        s = [np.bincount(idx, weight * w**j, n_la) for j in range(3)]
        det = s[0] * s[2] - s[1] ** 2 + 1e-12 * (1 + s[0] ** 2)
        t0 = np.stack([np.bincount(idx, weight * col, n_la) for col in z.T], 1)
        t1 = np.stack([np.bincount(idx, weight * w * col, n_la) for col in z.T], 1)
        c0 = (s[2][:, None] * t0 - s[1][:, None] * t1) / det[:, None]
        c1 = (s[0][:, None] * t1 - s[1][:, None] * t0) / det[:, None]
        z = z - c0[idx] - c1[idx] * w[:, None]
        resid = data.y - mean
        score = z.T @ resid
        info = z.T @ (weight[:, None] * z)
        dof = max(1, len(data.y) - 2 * n_la)
        phi = max(1.0, float(np.sum(resid**2 / np.maximum(weight, 1e-12)) / dof))
        return float(score @ np.linalg.lstsq(info, score, rcond=None)[0]) / (len(score) * phi)

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
        sd = pm.HalfNormal("curve_sd", ctx.priors.curve_sd)
        if self.strength(data) > CENTRED_ABOVE:  # a clear curve: centred (see the module)
            coef = pm.Normal("curve_coef", 0.0, sd, dims="curve_basis")
        else:  # no clear curve: curve_sd may be near 0, where the centred form is a funnel
            z_std = pm.Normal("curve_z", 0.0, 1.0, dims="curve_basis")
            coef = pm.Deterministic("curve_coef", sd * z_std, dims="curve_basis")
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
