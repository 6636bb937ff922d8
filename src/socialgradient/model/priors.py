r"""The priors of the fixed effects, and the log density of the power-scaled priors.

:func:`fixed` creates ``a``, ``b_w``, ``b_b`` or ``b_x`` with the spec's prior: Normal
(the default) or Student-t with ``fixed_nu`` degrees of freedom, at the spec's mean and
scale (``[priors]`` keys ``<name>`` for the scale, ``<name>_mean`` for the mean; ``a``'s
mean defaults to the family's, -4 for log-rate families, 0 for the binomial's logit). Units:
``a`` is a log rate per child (logit for the binomial); ``b_w``, ``b_b``, ``b_x`` are log
rate (or odds) ratios per 10 percentage points of income deprivation.

:func:`log_prior` evaluates, per posterior draw and in numpy, the log density of the
priors that power-scaling sensitivity scales (:mod:`socialgradient.results.sensitivity`):
the user-set priors on the model's top-level parameters -- the fixed effects ``a``,
``b_w``, ``b_b``, ``b_x``, the LA effects' SDs (half-Normal) and correlation (LKJ), the
negative binomial's ``1/sqrt(phi)`` (half-Normal) and the stratum offsets (Normal) -- as
priorsense does (Kallioinen et al. 2024: the hierarchical distribution of the LA effects
is part of the model, not a prior, and is not scaled). Densities are up to constants
(power-scaling weights are normalised, so a constant cancels).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
from scipy import stats

from socialgradient.spec import Priors

#: The fixed effects whose prior family and mean the spec sets.
FIXED = ("a", "b_w", "b_b", "b_x")


def fixed(name: str, priors: Priors, default_mean: float = 0.0, dims: Any = None) -> Any:
    """Create the fixed effect ``name`` with the spec's prior, in the current model.

    Parameters
    ----------
    name : str
        One of :data:`FIXED`.
    priors : Priors
        The spec's priors: scale ``priors.<name>``, mean ``priors.<name>_mean`` (``a``'s
        ``a_mean``, None for ``default_mean``), family ``priors.fixed`` (``fixed_nu``).
    default_mean : float
        ``a``'s mean when ``priors.a_mean`` is None (the family's default).
    dims : str or tuple, optional
        The variable's dims (a joint fit's ``threshold``).

    Returns
    -------
    TensorVariable
        The free random variable.
    """
    mean, scale = fixed_location(name, priors, default_mean)
    if priors.fixed == "student_t":
        return pm.StudentT(name, nu=priors.fixed_nu, mu=mean, sigma=scale, dims=dims)
    return pm.Normal(name, mean, scale, dims=dims)


def fixed_location(name: str, priors: Priors, default_mean: float = 0.0) -> tuple[float, float]:
    """Return the prior mean and scale of the fixed effect ``name``.

    Parameters
    ----------
    name : str
        One of :data:`FIXED`.
    priors : Priors
        The spec's priors.
    default_mean : float
        ``a``'s mean when ``priors.a_mean`` is None.

    Returns
    -------
    tuple of float
        The mean and the scale (Normal SD, or Student-t scale).
    """
    if name not in FIXED:
        raise ValueError(f"fixed: {name!r} is not a fixed effect; expected one of {FIXED}")
    mean = getattr(priors, f"{name}_mean")
    return (default_mean if mean is None else mean), getattr(priors, name)


def fixed_logpdf(
    name: str, values: np.ndarray, priors: Priors, default_mean: float = 0.0
) -> np.ndarray:
    """Return the log prior density of the fixed effect ``name`` at ``values`` (elementwise).

    Parameters
    ----------
    name : str
        One of :data:`FIXED`.
    values : ndarray
        Values of the parameter (any shape).
    priors : Priors
        The spec's priors.
    default_mean : float
        ``a``'s mean when ``priors.a_mean`` is None.

    Returns
    -------
    ndarray
        The log density, the shape of ``values``.
    """
    mean, scale = fixed_location(name, priors, default_mean)
    if priors.fixed == "student_t":
        return stats.t.logpdf(values, df=priors.fixed_nu, loc=mean, scale=scale)
    return stats.norm.logpdf(values, loc=mean, scale=scale)


def log_prior(posterior: Any, priors: Priors, default_mean: float) -> dict[str, np.ndarray]:
    """Return the log density of each power-scaled prior per draw, dims (chain, draw).

    Parameters
    ----------
    posterior : Dataset
        A single-outcome fit's posterior (``a``, ``b_w``, ``b_b``, ``b_x``, ``la_sd`` dims
        effect, scalar ``la_corr``; ``phi`` and ``stratum_offset`` when the model has them).
    priors : Priors
        The spec's priors.
    default_mean : float
        ``a``'s mean when ``priors.a_mean`` is None (the family's default).

    Returns
    -------
    dict of str to ndarray
        One entry per prior (the parameter's name), summed over its non-sample dims.
    """
    out = {}
    for name in FIXED:
        out[name] = fixed_logpdf(name, draws_of(posterior, name), priors, default_mean)
    sd = draws_of(posterior[["la_sd"]].transpose("chain", "draw", "effect"), "la_sd")
    scales = np.array([priors.la_sd_intercept, priors.la_sd_slope])
    out["la_sd"] = stats.halfnorm.logpdf(sd, scale=scales).sum(axis=-1)
    # LKJ(eta) for a 2 x 2 correlation matrix: density of r proportional to (1 - r^2)^(eta - 1)
    r = draws_of(posterior, "la_corr")
    out["la_corr"] = (priors.lkj_eta - 1.0) * np.log1p(-np.square(r))
    if "phi" in posterior:
        # scaled as the prior is stated: on 1/sqrt(phi), half-Normal (no Jacobian to phi)
        inv_sqrt = 1.0 / np.sqrt(draws_of(posterior, "phi"))
        out["phi"] = stats.halfnorm.logpdf(inv_sqrt, scale=priors.inv_sqrt_phi)
    if "stratum_offset" in posterior:
        off = posterior["stratum_offset"].transpose("chain", "draw", ..., "effect").values
        scales = np.array([priors.stratum_intercept, priors.stratum_slope])
        lp = stats.norm.logpdf(off, scale=scales)
        out["stratum_offset"] = lp.reshape(lp.shape[0], lp.shape[1], -1).sum(axis=-1)
    return out


def draws_of(posterior: Any, name: str) -> np.ndarray:
    """Return a variable's draws as an array led by (chain, draw)."""
    return np.asarray(posterior[name].transpose("chain", "draw", ...).values, dtype=float)
