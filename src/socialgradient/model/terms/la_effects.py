"""The LA effects: intercepts and slopes per LA around ``(a + b_b m_c, b_w + b_x m_c)``.

The term every model has: the national coefficients ``a``, ``b_w``, ``b_b``, ``b_x`` (the
cross-level interaction), the LKJ covariance of the LA effects and ``la_effect`` (dims la,
effect), centred or non-centred per LA (:func:`la_theta`,
:mod:`socialgradient.model.parameterisation`), and their part of the rows' linear predictor.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from socialgradient.model.priors import fixed
from socialgradient.model.terms.base import Context, NewRows, Term
from socialgradient.spec import Priors


class LAEffects(Term):
    """LA intercepts and slopes with their hierarchy (always on)."""

    name = "la_effects"
    reported = ("a", "b_w", "b_b", "b_x", "la_sd", "la_corr", "la_effect")
    derived = ("la_cov", "la_cov_corr", "la_cov_stds")
    always = True

    def centre(self, ctx: Context) -> None:
        """Create the national coefficients, the LA covariance and the LA effects' means.

        Create ``a``, ``b_w``, ``b_b``, ``b_x`` and the LKJ covariance ``la_cov`` (with
        ``la_sd``, ``la_corr``); the LA effects' means ``(a + b_b m_c, b_w + b_x m_c)``.
        """
        p = ctx.priors
        m_c = pm.Data("m_c", ctx.data.m_c, dims="la")
        a = fixed("a", p, ctx.a_mean)
        b_w = fixed("b_w", p)
        b_b = fixed("b_b", p)
        b_x = fixed("b_x", p)
        chol, corr, sd = pm.LKJCholeskyCov(
            "la_cov",
            eta=p.lkj_eta,
            n=2,
            sd_dist=pm.HalfNormal.dist(sigma=np.array([p.la_sd_intercept, p.la_sd_slope]), size=2),
            # An explicit start (LA SDs 0.2 and 0.1, uncorrelated): the default draws the
            # SDs through scipy, which fails on PyTensor's read-only constants for some
            # graphs (Poisson with strata under nutpie: "cannot set WRITEABLE flag").
            initval=np.array([0.2, 0.0, 0.1]),
        )
        pm.Deterministic("la_sd", sd, dims="effect")
        pm.Deterministic("la_corr", corr[0, 1])
        ctx.chol = chol
        ctx.centre = pt.stack([a + b_b * m_c, b_w + b_x * m_c], axis=1)

    def effects(self, ctx: Context) -> None:
        """Create ``la_effect`` (dims la, effect) and start the rows' linear predictor.

        ``la_effect`` is free when every LA is centred, else a deterministic of
        :func:`la_theta`'s blocks. The rows' linear predictor starts as each row's LA
        intercept plus slope times ``w`` (rows sorted by LA, reached by ``repeat``), its part
        linear in the counts from the per-LA sufficient statistics ``la_y_sum``,
        ``la_yw_sum``; the other terms add to both in the rows phase.
        """
        data = ctx.data
        theta = ctx.theta = _la_effect(ctx)
        idx, n_la = data.la_index, len(data.la)
        ctx.eta = pt.repeat(theta[:, 0], ctx.per_la) + pt.repeat(theta[:, 1], ctx.per_la) * ctx.w
        y_sum = pm.Data("la_y_sum", np.bincount(idx, weights=data.y, minlength=n_la), dims="la")
        yw_sum = pm.Data(
            "la_yw_sum", np.bincount(idx, weights=data.y * data.w, minlength=n_la), dims="la"
        )
        ctx.linear = pt.sum(theta[:, 0] * y_sum + theta[:, 1] * yw_sum)

    def predict_eta(
        self, posterior: xr.Dataset, new: NewRows, eta: np.ndarray, slope: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add each new row's LA intercept and slope times ``w`` (its slope to ``slope``).

        An LA of the fit keeps its fitted effects; a new LA's are drawn from the fitted
        hierarchy, ``MVN((a + b_b m_c, b_w + b_x m_c), Sigma)`` at its ``m_c`` (its mean
        deprivation less the fit's ``x_bar``), one draw per posterior draw from
        ``default_rng(new.seed)``, so its intervals include the between-LA spread.
        """
        fitted, post = new.fitted, posterior
        effect = post["la_effect"].transpose("chain", "draw", "la", "effect").values
        new_codes = sorted(set(new.la[new.new_la]))
        if new_codes:
            rng = np.random.default_rng(new.seed)
            m_c = np.array([new.m_la[c] for c in new_codes]) - fitted.x_bar
            sd = post["la_sd"].transpose("chain", "draw", "effect").values
            r = post["la_corr"].values
            z = rng.standard_normal((*r.shape, len(new_codes), 2))
            z1 = r[..., None] * z[..., 0] + np.sqrt(1 - r[..., None] ** 2) * z[..., 1]
            centre_a = post["a"].values[..., None] + post["b_b"].values[..., None] * m_c
            centre_b = post["b_w"].values[..., None] + post["b_x"].values[..., None] * m_c
            drawn = np.stack([centre_a + sd[..., :1] * z[..., 0], centre_b + sd[..., 1:] * z1], -1)
            effect = np.concatenate([effect, drawn], axis=2)
        codes = [*fitted.la, *new_codes]
        position = {code: i for i, code in enumerate(codes)}
        effect = effect[:, :, [position[c] for c in new.la]]
        return eta + effect[..., 0] + effect[..., 1] * new.w, slope + effect[..., 1]


def _la_effect(ctx: Context) -> Any:
    """Return ``la_effect``: free when every LA is centred, else :func:`la_theta`'s."""
    counts = None if ctx.centred is None else as_counts(ctx.centred)
    if counts is None or (counts == 2).all():
        return pm.MvNormal("la_effect", mu=ctx.centre, chol=ctx.chol, dims=("la", "effect"))
    return pm.Deterministic(
        "la_effect",
        la_theta(ctx.centre, ctx.chol, counts, ctx.data.la, "effect"),
        dims=("la", "effect"),
    )


def as_counts(centred: np.ndarray) -> np.ndarray:
    """Return each LA's count of centred leading effects from either form a caller may hold.

    Counts (2 intercept and slope, 1 the intercept, 0 neither:
    :func:`socialgradient.model.parameterisation.choose`), or a boolean per LA (True = both
    effects centred, the form before intercept-only centring, as older fits saved it).
    """
    centred = np.asarray(centred)
    return np.where(centred, 2, 0) if centred.dtype == bool else centred.astype(int)


def la_effects(
    data: Any,
    priors: Priors | None = None,
    centred: np.ndarray | None = None,
    a_mean: float = -4.0,
) -> Any:
    """Priors and the LA intercepts and slopes, in the current model context.

    Creates ``a``, ``b_w``, ``b_b``, ``b_x``, the LKJ covariance ``la_cov`` (with
    deterministics ``la_sd``, ``la_corr``), LA-moderator coefficients if any, and returns
    ``la_effect`` (dims la, effect) with means ``(a + b_b m_c, b_w + b_x m_c)``: a free
    variable when every LA is centred (``centred`` None or all 2), else a deterministic
    (:func:`la_theta`, LAs centring only some of their effects). Shared by
    :func:`socialgradient.model.build.build_model` (which runs the phases of every term)
    and the textbook reference models of the tests and benchmarks.
    """
    ctx = Context(data, priors or Priors(), centred, a_mean)
    for term in data.terms:
        if type(term).centre is not Term.centre:
            term.centre(ctx)
    return _la_effect(ctx)


def la_theta(centre: Any, chol: Any, centred: np.ndarray, la: np.ndarray, coef_dim: str) -> Any:
    """Return LA coefficients, some sampled centred and the rest non-centred.

    Return LA coefficients (dims la x ``coef_dim``) with means ``centre`` and covariance
    ``chol chol^T``, the first ``centred[l]`` coefficients of LA ``l`` sampled centred and
    the rest non-centred.

    With the coefficients in order, the top-left block of the Cholesky factor ``L`` is the
    factor of the leading coefficients' covariance, so for an LA centring its first ``c``:
    ``u_C ~ MVN(centre_C, L_CC L_CC^T)`` is free (``la_effect_c<c>``),
    ``z_C = L_CC^{-1} (u_C - centre_C)``, ``z_N ~ N(0, I)`` (``la_z_c<c>``) and
    ``u_N = centre_N + L_NC z_C + L_NN z_N``: together ``u = centre + L z`` with z standard
    normal, the same model as either pure form. One block per distinct ``c`` (LAs in coord
    ``la_c<c>``). Used by the single-outcome model (coefficients intercept, slope: ``c`` 2,
    1 or 0, :func:`socialgradient.model.parameterisation.choose`) and the joint model (two per
    threshold, :mod:`socialgradient.model.joint`).
    """
    model = pm.modelcontext(None)
    coefs = np.asarray(model.coords[coef_dim])
    parts, order = [], []
    for c in map(int, np.unique(centred)):
        rows = np.flatnonzero(centred == c)
        group = f"la_c{c}"
        model.add_coord(group, la[rows])
        mu = centre[rows]
        if c == coefs.size:
            u = pm.MvNormal(f"la_effect_c{c}", mu=mu, chol=chol, dims=(group, coef_dim))
        else:
            model.add_coord(f"la_coef_n{c}", coefs[c:])
            z_n = pm.Normal(f"la_z_c{c}", 0.0, 1.0, dims=(group, f"la_coef_n{c}"))
            if c == 0:
                u = mu + z_n @ chol.T
            else:
                model.add_coord(f"la_coef_c{c}", coefs[:c])
                l_cc = chol[:c, :c]
                u_c = pm.MvNormal(
                    f"la_effect_c{c}", mu=mu[:, :c], chol=l_cc, dims=(group, f"la_coef_c{c}")
                )
                z_c = pt.linalg.solve_triangular(l_cc, (u_c - mu[:, :c]).T, lower=True).T
                u_n = mu[:, c:] + z_c @ chol[c:, :c].T + z_n @ chol[c:, c:].T
                u = pt.concatenate([u_c, u_n], axis=1)
        parts.append(u)
        order.append(rows)
    inverse = np.argsort(np.concatenate(order))
    return pt.concatenate(parts, axis=0)[inverse]


#: Names of :func:`la_theta`'s sampler-side blocks and of their coords: a fit's posterior
#: drops them and keeps ``la_effect`` itself.
LA_THETA_BLOCKS = re.compile(r"la_(effect|z)_c\d+$")
LA_THETA_COORDS = re.compile(r"la_(c|coef_c|coef_n)\d+$")
