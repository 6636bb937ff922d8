"""Centred or non-centred LA effects, chosen per LA from how informative its data are.

An LA's intercept and slope can be sampled *centred* on their hierarchical means,
``theta_l ~ MVN(centre_l, Sigma)``, or *non-centred*, ``theta_l = centre_l + L z_l`` with
``z_l ~ N(0, I)``. Which geometry samples well depends on how the data's information about
``theta_l`` compares with the prior's (Betancourt and Girolami 2015; Gorinova et al. 2020):
where the likelihood pins the effect down (England-sized referral counts: hundreds of
events per LA), the centred form is well conditioned and the non-centred one is not
(measured: R-hat 1.1-1.5); where it does not (rare outcomes, small LAs, a small slope
spread), the centred form is a funnel (measured: R-hat 1.13-2.04 with divergences) and the
non-centred one mixes cleanly.

``auto`` decides per LA before sampling, from the data alone:

1. each LA's intercept and slope are estimated by a ridge-stabilised Newton fit of the
   family's working model (Poisson/log for counts, logistic for the binomial), rows'
   information ``W_i`` (``mu_i``; ``mu_i / (1 + mu_i / phi)`` for the negative binomial
   with a moment estimate of ``phi``; ``N_i p_i (1 - p_i)`` for the binomial);
2. the data's standard errors ``se_l`` come from each LA's 2x2 information matrix
   ``sum_i W_i [1, w_i][1, w_i]^T``;
3. the between-LA spread ``tau`` of each effect is a moment estimate (DerSimonian-Laird,
   meta-regression form): the spread of the LA estimates around their linear trend in LA
   deprivation beyond what their standard errors explain, floored at 0.05 (intercept) and
   0.02 (slope);
4. a centred LA is a funnel only when ``tau`` itself is uncertain. How well the LAs pin
   ``tau`` down is the normal-normal model's Fisher information,
   ``sd(log tau) = 1 / sqrt(2 sum_l w_l^2)`` with ``w_l = tau^2 / (tau^2 + se_l^2)``. When
   both effects' ``sd(log tau)`` is below ``TAU_PINNED`` every LA is centred, whatever its
   own data say: its prior is then a fixed-width normal, not a funnel;
5. otherwise each LA centres the leading effects its data outweigh the prior for,
   ``se_l < tau / 2`` (the prior's weight below 0.2; for the intercept ``se_l < tau`` when
   its spread is well determined, sd(log tau) < 0.2): both (2), the intercept alone (1:
   intercept centred, slope non-centred given it), or neither (0). The intercept-only
   form is the common case of long follow-up with a small slope spread: CIN-plan
   durations (records, 150 LAs, slope SD 0.05), where every LA non-centred gave bulk ESS
   68 on the LA intercepts (FAIL), every LA centred 172 divergences, and 126 LAs
   centring the intercept alone PASSed.

The rule only picks a geometry: every form gives the same posterior.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from socialgradient.model import families
from socialgradient.model.families import Family
from socialgradient.model.terms.la_effects import as_counts

__all__ = ["as_counts", "choose", "information", "la_fit", "tau_uncertainty"]

TAU_FLOOR = np.array([0.05, 0.02])
#: An effect (intercept, slope) is centred when se < CENTRED_RATIO * tau: the data's weight
#: in the LA's posterior above 0.8 (se^2 / (se^2 + tau^2) < 0.2). At 1 (weight 0.5) a
#: binomial table (60 LAs, slope SD 0.06) centred 4 LAs and diverged 87 times; at 0.5 it
#: PASSes.
CENTRED_RATIO = np.array([0.5, 0.5])
#: ... except the intercept, centred at weight above 0.5 (se < tau) when its spread is well
#: determined (sd(log tau) below INTERCEPT_PINNED). CIN-plan durations (records, slope SD
#: 0.05, intercept sd(log tau) 0.088): at 0.5, 23 intercepts centred, R-hat 1.012, bulk ESS
#: 491 (WARN); at 1, 126, R-hat 1.005, ESS 819 (PASS), 4 x 2,000 draws, no divergences. On
#: 12 LAs (sd(log tau) 0.26) se < tau centred every intercept and PyMC's NUTS overflowed
#: in tuning.
INTERCEPT_RATIO_PINNED, INTERCEPT_PINNED = 1.0, 0.2
#: Every LA centred when sd(log tau) is below this for both effects (tau known to about
#: +/-20%). On the default England every threshold has sd(log tau) 0.06-0.09, and centring
#: every LA beat the per-LA choice (same data, 4 x 1,000 draws, bulk ESS min): referrals
#: 6,751 vs 2,568; CP plans 2,500 vs 1,104 (34 centred); looked after 1,536 vs 1,408 (12
#: centred), none diverging. The sparse tables in the tests have 0.25-11.
TAU_PINNED = 0.1
_RIDGE = np.array([1 / 3.0**2, 1 / 1.0**2])  # keeps LAs without events finite


def choose(data, family: str, la_effects: str) -> np.ndarray:
    """Return how many leading LA effects each LA samples centred.

    How many leading LA effects each LA samples centred (dims la, int): 2 = intercept
    and slope, 1 = the intercept only, 0 = neither. ``la_effects`` is the spec's choice.
    """
    return la_choice(data, family, la_effects)[0]


def la_choice(data, family: str, la_effects: str) -> tuple[np.ndarray, bool]:
    """Return :func:`choose`'s centring and whether the data pin every LA SD down.

    "Pinned": ``sd(log tau)`` (:func:`tau_uncertainty`) below :data:`TAU_PINNED` for the
    intercept and the slope, whatever ``la_effects`` says; then every LA is centred under
    ``auto``, and a fit tunes briefly (:mod:`socialgradient.sampling.tuning`). One pass over
    the data for both.
    """
    n_la = len(data.la)
    se, tau = information(data, families.get(family))
    spread = tau_uncertainty(se, tau)
    pinned = bool(np.all(spread < TAU_PINNED))
    if la_effects == "centred" or (la_effects == "auto" and pinned):
        return np.full(n_la, 2), pinned
    if la_effects == "noncentred":
        return np.zeros(n_la, int), pinned
    ratio = CENTRED_RATIO.copy()
    if spread[0] < INTERCEPT_PINNED:
        ratio[0] = INTERCEPT_RATIO_PINNED
    return np.cumprod(se < ratio * tau, axis=1).sum(axis=1), pinned


def tau_uncertainty(se: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Return ``sd(log tau)`` of each effect (dims effect).

    ``sd(log tau)`` of each effect (dims effect) from the LAs' information about it:
    ``1 / sqrt(2 sum_l w_l^2)``, ``w_l = tau^2 / (tau^2 + se_l^2)`` (the normal-normal
    model's Fisher information for ``log tau`` at the moment estimate).
    """
    weight = tau**2 / (tau**2 + se**2)
    return 1.0 / np.sqrt(2.0 * np.sum(weight**2, axis=0))


def information(data: Any, family: str | Family) -> tuple[np.ndarray, np.ndarray]:
    """Return each LA's standard errors and the between-LA spread of each effect.

    The data's standard errors of each LA's (intercept, slope), dims (la, effect), and
    the between-LA spread ``tau`` of each effect (dims effect), as in the module docstring.
    """
    family = families.get(family) if isinstance(family, str) else family
    theta, mean, weight = la_fit(data, family)
    weight = family.information_weight(data.y, mean, weight)
    info = _info(data.la_index, data.w, weight, len(data.la)) + 1e-9 * np.eye(2)
    se = np.sqrt(np.diagonal(np.linalg.inv(info), axis1=1, axis2=2))
    tau = np.array([_between_sd(theta[:, k], se[:, k], data.m_c) for k in range(2)])
    return se, np.maximum(tau, TAU_FLOOR)


def la_fit(data: Any, family: str | Family) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit each LA's (intercept, slope) by a ridge-stabilised Newton fit.

    Each LA's (intercept, slope) by a ridge-stabilised Newton fit of the family's working
    model (Poisson/log for counts, logistic for the binomial), dims (la, effect), with the
    rows' fitted means and Poisson/binomial information weights.
    """
    idx, n_la = data.la_index, len(data.la)
    y, w = data.y.astype(float), data.w
    family = families.get(family) if isinstance(family, str) else family
    binomial = family.link == "logit"
    if binomial:
        n = data.trials.astype(float)
        p0 = np.clip(y.sum() / n.sum(), 1e-6, 1 - 1e-6)
        start = np.array([special.logit(p0), 0.0])
    else:
        log_e = np.log(data.exposure)
        start = np.array([np.log(max(y.sum(), 0.5) / data.exposure.sum()), 0.0])
    theta = np.tile(start, (n_la, 1))

    def moments(theta):
        eta = theta[idx, 0] + theta[idx, 1] * w
        if binomial:
            p = special.expit(eta)
            return n * p, n * p * (1 - p)
        mean = np.exp(log_e + eta)
        return mean, mean

    for _ in range(12):
        mean, weight = moments(theta)
        r = y - mean
        grad = np.stack([np.bincount(idx, r, n_la), np.bincount(idx, r * w, n_la)], 1)
        grad -= _RIDGE * (theta - start)
        info = _info(idx, w, weight, n_la) + np.diag(_RIDGE)
        step = np.linalg.solve(info, grad[..., None])[..., 0]
        theta += np.clip(step, -2.0, 2.0)
    return (theta, *moments(theta))


def _between_sd(estimate, se, m_c) -> float:
    """Return the DerSimonian-Laird moment estimate of the between-LA SD.

    DerSimonian-Laird moment estimate of the SD of ``estimate`` around its linear trend
    in LA deprivation (the model's hierarchical means), given standard errors ``se``: the
    meta-regression form, where LAs with little information weigh little.
    """
    x = np.column_stack([np.ones_like(m_c), m_c])
    wt = 1.0 / se**2
    xtwx = x.T @ (wt[:, None] * x)
    beta = np.linalg.solve(xtwx, x.T @ (wt * estimate))
    q = np.sum(wt * (estimate - x @ beta) ** 2)
    denominator = wt.sum() - np.trace(np.linalg.solve(xtwx, x.T @ (wt[:, None] ** 2 * x)))
    return float(np.sqrt(max(q - (len(estimate) - 2), 0.0) / denominator))


def _info(idx, w, weight, n_la) -> np.ndarray:
    """Per-LA 2x2 information matrices sum_i W_i [1, w_i][1, w_i]^T, dims (la, 2, 2)."""
    s0 = np.bincount(idx, weight, n_la)
    s1 = np.bincount(idx, weight * w, n_la)
    s2 = np.bincount(idx, weight * w * w, n_la)
    return np.stack([np.stack([s0, s1], -1), np.stack([s1, s2], -1)], -2)
