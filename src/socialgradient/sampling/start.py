"""Where nutpie's chains start: near the posterior, from the data, jittered per chain.

nutpie's default start is PyMC's: each free variable at its support point (an LA effect at
its prior mean, the coefficients at 0, ``phi`` at 1) plus a uniform jitter of +/-1 on the
sampler's scale, some ten posterior SDs from where the LA effects are on England's table
(their posterior SDs are 0.02-0.1). Tuning then spends its first draws walking in.

:func:`near_posterior` starts the chains from what the data say before sampling, the
estimates :mod:`socialgradient.model.parameterisation` already makes to choose the LA
effects' geometry:

* each LA's intercept and slope: its ridge-stabilised Newton estimate shrunk towards the
  national line by the weight its data carry, ``c_l + w_l (theta_l - c_l)``,
  ``w_l = tau^2 / (tau^2 + se_l^2)``, where ``c_l`` is the precision-weighted regression of
  the estimates on LA deprivation ``m_c`` (``a + b_b m_c`` for the intercept,
  ``b_w + b_x m_c`` for the slope), which also gives ``a``, ``b_b``, ``b_w`` and ``b_x``;
* the LA covariance from the moment estimates of the SDs ``tau`` and the correlation of the
  shrunk effects; the NB's ``phi`` from the moment estimate of
  :meth:`socialgradient.model.families.NegativeBinomial.information_weight`.

Every chain starts at these values plus ``uniform(-JITTER, JITTER)`` times each value's
approximate posterior SD (``sqrt(1 / (1 / se^2 + 1 / tau^2))`` for an LA effect, the
regression's standard errors for the national coefficients), drawn from the chain's seed:
over-dispersed around the posterior, as R-hat needs, and reproducible. Only the start
changes: the model, and so the posterior, are the same.

Only models whose only term is the LA effects, every LA centred (``la_effect`` a free
variable), get it; any other (strata, moderators, a spatial field, non-centred LAs) starts as
nutpie starts it. Measured in ``bench/england_target.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm

from socialgradient.model import families
from socialgradient.model import parameterisation as par

#: Each start is the estimate plus uniform(-JITTER, JITTER) approximate posterior SDs.
JITTER = 2.0
#: The jitter's SD of log(1 / sqrt(phi)) (phi within about +/-10%), and of the LA SDs' logs
#: at least (the normal-normal model's ``sd(log tau)`` when larger).
LOG_SD = 0.05

Start = dict[str, tuple[np.ndarray, np.ndarray]]


def near_posterior(data: Any, family: str, model: pm.Model) -> Start | None:
    """Return each free variable's start and jitter SD on the sampler's scale, or None.

    A mapping of value-variable names (``a``, ``b_w``, ``b_b``, ``b_x``,
    ``la_cov_cholesky-cov-packed__``, ``la_effect``, ``inv_sqrt_phi_log__``) to (estimate,
    approximate posterior SD), arrays of the variable's shape; None for a model it does not
    serve (other terms, or ``la_effect`` not a free variable): nutpie's default start then.
    """
    if any(term.name != "la_effects" for term in data.terms):
        return None
    values = {model.rvs_to_values[v].name for v in model.free_RVs}
    if "la_effect" not in values:  # some LAs non-centred: la_theta's blocks
        return None
    fam = families.get(family)
    theta, mean, _ = par.la_fit(data, fam)
    se, tau = par.information(data, fam)
    x = np.column_stack([np.ones_like(data.m_c), data.m_c])
    centre = np.empty_like(theta)
    coef, coef_sd = [], []
    for k in range(2):
        weight = 1.0 / (se[:, k] ** 2 + tau[k] ** 2)
        xtwx = x.T @ (weight[:, None] * x)
        beta = np.linalg.solve(xtwx, x.T @ (weight * theta[:, k]))
        centre[:, k] = x @ beta
        coef.append(beta)
        coef_sd.append(np.sqrt(np.diag(np.linalg.inv(xtwx))))
    effect = centre + tau**2 / (tau**2 + se**2) * (theta - centre)
    effect_sd = np.sqrt(1.0 / (1.0 / se**2 + 1.0 / tau**2))
    r = float(np.clip(np.corrcoef((effect - centre).T)[0, 1], -0.9, 0.9))
    log_tau_sd = np.maximum(par.tau_uncertainty(se, tau), LOG_SD)
    n_la = len(data.la)
    start: Start = {
        "a": (np.array(coef[0][0]), np.array(coef_sd[0][0])),
        "b_b": (np.array(coef[0][1]), np.array(coef_sd[0][1])),
        "b_w": (np.array(coef[1][0]), np.array(coef_sd[1][0])),
        "b_x": (np.array(coef[1][1]), np.array(coef_sd[1][1])),
        # LKJCholeskyCov's packed factor (L00, L10, L11), log on the diagonal
        "la_cov_cholesky-cov-packed__": (
            np.array([np.log(tau[0]), r * tau[1], np.log(tau[1] * np.sqrt(1 - r * r))]),
            np.array([log_tau_sd[0], tau[1] * (1 - r * r) / np.sqrt(n_la), log_tau_sd[1]]),
        ),
        "la_effect": (effect, effect_sd),
    }
    if "inv_sqrt_phi_log__" in values:
        y = data.y.astype(float)
        excess = np.sum((y - mean) ** 2 - mean)
        if excess > 0:  # else no sign of extra-Poisson variation: nutpie's start for phi
            phi = np.sum(mean**2) / excess
            start["inv_sqrt_phi_log__"] = (np.array(-0.5 * np.log(phi)), np.array(LOG_SD))
    return {k: v for k, v in start.items() if k in values}


def jittered(start: Start, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Return one chain's start: each estimate plus uniform(-JITTER, JITTER) of its SD."""
    return {
        name: value + JITTER * sd * rng.uniform(-1.0, 1.0, np.shape(value))
        for name, (value, sd) in start.items()
    }
