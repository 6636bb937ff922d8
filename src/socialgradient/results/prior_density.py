"""The log prior densities power-scaling scales (:mod:`socialgradient.results.sensitivity`).

Those of a joint (multi-threshold) fit's user-set priors (:func:`joint_log_prior`) and of the
model's terms (:func:`term_log_prior`, with the scales of :func:`term_scales`), written out
from the model's own statements of them (the terms' modules): each is checked against PyMC's
log density of the same model at prior draws (``tests/test_sensitivity.py``), so that the
two cannot drift apart. The top-level priors' densities are
:func:`socialgradient.model.priors.log_prior`'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from socialgradient.model.priors import FIXED, draws_of, fixed_logpdf
from socialgradient.model.spatial import BYM2Priors
from socialgradient.model.terms.curve import PRIOR_SHAPE as CURVE_SD_SHAPE
from socialgradient.spec import Priors

SAMPLE = ("chain", "draw")

#: the LA outcome's priors (:func:`socialgradient.model.terms.la_outcome.add_terms`; not
#: user-set): Normal scales of the intercept (logit), the gradient (log-odds per unit of log
#: gradient) and the adjustments (per SD), and the half-Normal scale of the residual SD
LA_OUTCOME_PRIORS = {
    "la_outcome_intercept": 2.5,
    "la_outcome_gradient": 1.0,
    "la_outcome_coef": 1.0,
    "la_outcome_sd": 0.5,
}


def joint_log_prior(post: xr.Dataset, priors: Priors, default_mean: float) -> dict[str, Any]:
    """Return the log density of each power-scaled prior of a joint fit, dims (chain, draw).

    Parameters
    ----------
    post : Dataset
        A joint fit's posterior: ``a``, ``b_w``, ``b_b``, ``b_x``, ``phi`` (negative
        binomial) dims threshold; ``la_sd`` dims (threshold, effect); ``la_corr`` dims
        ``la_pair`` (the upper triangle of the 2K x 2K correlation matrix, row by row).
    priors : Priors
        The spec's priors (one set, every threshold's).
    default_mean : float
        ``a``'s mean when ``priors.a_mean`` is None.

    Returns
    -------
    dict of str to ndarray
        Per prior, summed over the thresholds: the fixed effects (Normal or Student-t, log
        rate; log rate ratio per 10 points), ``la_sd`` (half-Normal, ``la_sd_intercept``
        and ``la_sd_slope`` per threshold), ``la_corr`` (LKJ(``lkj_eta``): ``(eta - 1) log
        det R``) and ``phi`` (half-Normal(``inv_sqrt_phi``) on ``1/sqrt(phi)``).
    """
    out = {}
    for name in FIXED:
        values = draws_of(post, name)
        out[name] = fixed_logpdf(name, values, priors, default_mean).sum(axis=-1)
    sd = draws_of(post[["la_sd"]].transpose(*SAMPLE, "threshold", "effect"), "la_sd")
    scales = np.array([priors.la_sd_intercept, priors.la_sd_slope])
    out["la_sd"] = stats.halfnorm.logpdf(sd, scale=scales).sum(axis=(-2, -1))
    r = draws_of(post, "la_corr")  # (chain, draw, pair)
    n = 2 * post.sizes["threshold"]
    upper = np.triu_indices(n, 1)
    if r.shape[-1] != len(upper[0]):
        raise ValueError(
            f"joint_log_prior: la_corr has {r.shape[-1]} pairs, expected {len(upper[0])}"
        )
    corr = np.broadcast_to(np.eye(n), (*r.shape[:2], n, n)).copy()
    corr[..., upper[0], upper[1]] = r
    corr[..., upper[1], upper[0]] = r
    _, logdet = np.linalg.slogdet(corr)
    out["la_corr"] = (priors.lkj_eta - 1.0) * logdet
    if "phi" in post:
        inv_sqrt = 1.0 / np.sqrt(draws_of(post, "phi"))
        out["phi"] = stats.halfnorm.logpdf(inv_sqrt, scale=priors.inv_sqrt_phi).sum(axis=-1)
    return out


def term_scales(data: Any, la_outcome_covariates: np.ndarray | None = None) -> dict:
    """Return the SDs the terms' coefficients are sampled per.

    Parameters
    ----------
    data : NeighbourhoodData
        The encoded table (:func:`socialgradient.model.data.encode`, or a fit's
        :func:`socialgradient.sampling.predict.encoded_data`) with its terms.
    la_outcome_covariates : ndarray, optional
        The LA outcome's covariate values, dims (la, covariate), when ``data``'s terms do not
        hold them (a saved fit keeps them in ``constant_data``).

    Returns
    -------
    dict of str to ndarray
        For the terms ``data`` has: ``moderator_coef`` (dims moderator: each moderator's
        child-weighted SD, in its units), ``la_moderator_coef`` (dims la_moderator: over the
        LAs, weighted by their children), ``trend_coef`` (one: the trend column's
        child-weighted SD) and ``la_outcome_coef`` (dims covariate: each covariate's SD
        over the LAs, 1 where it is 0), as the model scales them.
    """
    out: dict[str, np.ndarray] = {}
    for term in data.terms:
        name = type(term).name
        if name in ("moderators", "la_moderators", "trend"):
            _, sd = term.scaling(data)
            out[f"{name.removesuffix('s')}_coef"] = np.atleast_1d(np.asarray(sd, float))
        elif name == "la_outcome" and la_outcome_covariates is None:
            la_outcome_covariates = term.outcome.covariates
    if la_outcome_covariates is not None:
        sd = np.asarray(la_outcome_covariates, float).std(axis=0)
        out["la_outcome_coef"] = np.where(sd > 0, sd, 1.0)
    return out


def term_log_prior(
    post: xr.Dataset, priors: Priors, scales: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Return the log density of each power-scaled prior of the terms, dims (chain, draw).

    Parameters
    ----------
    post : Dataset
        A single-outcome fit's posterior (the terms' reported variables: ``moderator_effect``
        dims (moderator, effect), ``la_moderator_effect`` dims (la_moderator, effect),
        ``trend_effect`` dims effect, ``la_outcome_effect``/``_intercept``/``_sd``,
        ``curve_sd``, ``spatial_sd``, ``spatial_rho``).
    priors : Priors
        The spec's priors.
    scales : dict
        :func:`term_scales`: the SDs that turn a per-unit effect into the coefficient per
        SD the prior is stated on.

    Returns
    -------
    dict of str to ndarray
        One entry per prior, named as the sampled parameter (``moderator_coef``,
        ``la_moderator_coef``, ``trend_coef``, ``la_outcome_intercept``,
        ``la_outcome_gradient``, ``la_outcome_coef``, ``la_outcome_sd``, ``curve_sd``,
        ``spatial_sd``, ``spatial_rho``), for the terms the posterior has; summed over its
        elements.
    """
    out = {}
    pair = np.array([priors.moderator_intercept, priors.moderator_slope])
    for var, dim in (("moderator_effect", "moderator"), ("la_moderator_effect", "la_moderator")):
        if var in post:
            coef_name = var.replace("_effect", "_coef")
            effect = draws_of(post[[var]].transpose(*SAMPLE, dim, "effect"), var)
            coef = effect * scales[coef_name][:, None]
            out[coef_name] = stats.norm.logpdf(coef, scale=pair).sum(axis=(-2, -1))
    if "trend_effect" in post:
        coef = draws_of(post[["trend_effect"]].transpose(*SAMPLE, "effect"), "trend_effect")
        coef = coef * scales["trend_coef"][0]
        trend = np.array([priors.trend_intercept, priors.trend_slope])
        out["trend_coef"] = stats.norm.logpdf(coef, scale=trend).sum(axis=-1)
    if "la_outcome_effect" in post:
        lo = post["la_outcome_effect"]
        scale = LA_OUTCOME_PRIORS
        k_g = lo.sel(la_outcome_term="gradient", drop=True).transpose(*SAMPLE).values
        covariates = [str(t) for t in lo["la_outcome_term"].values if t != "gradient"]
        per_unit = lo.sel(la_outcome_term=covariates).transpose(*SAMPLE, "la_outcome_term")
        coef = per_unit.values * scales["la_outcome_coef"]
        out["la_outcome_intercept"] = stats.norm.logpdf(
            draws_of(post, "la_outcome_intercept"), scale=scale["la_outcome_intercept"]
        )
        out["la_outcome_gradient"] = stats.norm.logpdf(k_g, scale=scale["la_outcome_gradient"])
        out["la_outcome_coef"] = stats.norm.logpdf(coef, scale=scale["la_outcome_coef"]).sum(-1)
        out["la_outcome_sd"] = stats.halfnorm.logpdf(
            draws_of(post, "la_outcome_sd"), scale=scale["la_outcome_sd"]
        )
    if "curve_sd" in post:
        shape = CURVE_SD_SHAPE  # Gamma(shape, rate shape / curve_sd): mean curve_sd
        out["curve_sd"] = stats.gamma.logpdf(
            draws_of(post, "curve_sd"), shape, scale=priors.curve_sd / shape
        )
    if "spatial_sd" in post:
        bym2 = BYM2Priors()
        out["spatial_sd"] = stats.halfnorm.logpdf(draws_of(post, "spatial_sd"), scale=bym2.sd_scale)
        out["spatial_rho"] = stats.beta.logpdf(
            draws_of(post, "spatial_rho"), bym2.rho_alpha, bym2.rho_beta
        )
    return out
