r"""The joint threshold model: every threshold of intervention in one model.

For thresholds :math:`k = 1..K` (referrals, assessments, CIN plans, CP plans, looked after)
of the same LSOAs, each threshold has its own national model (:mod:`socialgradient.model.build`)

.. math::

    \log \mathrm{E}[y_{ik}] = \log n_i + \alpha_{lk} + \beta_{lk} w_i,

with its own ``a_k, b_w_k, b_b_k, b_x_k`` (and ``phi_k``), and the :math:`2K` LA effects
:math:`(\alpha_{l1}, \beta_{l1}, ..., \alpha_{lK}, \beta_{lK})` of an LA drawn from one
multivariate normal (LKJ(eta) correlation over all :math:`2K`), so an LA that intervenes
more, or more steeply, at one threshold may do so at the others. Because every threshold's
gradient comes from one posterior, "the gradient steepens at each threshold" gets a
probability: ``p_steepens`` = P(b_w of threshold k+1 > b_w of threshold k) for each
consecutive pair, and ``p_steepens_every_step`` = P(all of them at once).

Spec: ``outcomes = ["referrals", "assessments", ...]`` (in threshold order). Priors are the
single-outcome ones, per threshold. Strata, moderators, other exposures and the binomial
are not part of the joint model (a clear error says so).

A joint fit's tree has the dim ``threshold`` on ``a, b_w, b_b, b_x, phi, la_sd`` and
``la_effect`` (dims la, threshold, effect); ``la_corr`` holds the :math:`K(2K-1)`
correlations between LA coefficients (dim ``la_pair``). ``observed_data`` and
``posterior_predictive`` hold one variable per threshold; ``log_likelihood`` holds one,
``joint`` (dims chain, draw, threshold, lsoa: each threshold's count in each LSOA is a
factor of the likelihood), so ArviZ's LOO takes the tree as it is (``az.loo(tree)``: one
PSIS-LOO over every threshold-LSOA count, its elpd the sum of the thresholds').
:func:`socialgradient.sampling.joint.view` gives any one threshold as an ordinary
single-outcome fit, so every summary, table, check and figure of the package applies to it
unchanged.

This module builds the model (:func:`build`, :func:`choose`);
:mod:`socialgradient.sampling.joint` samples it and views one threshold of a fit,
:mod:`socialgradient.results.summaries` gives its steepening and per-threshold summaries, and
:mod:`socialgradient.release.joint` its ``summary.json`` and output set.
"""

from __future__ import annotations

import itertools

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from socialgradient.model import families, parameterisation
from socialgradient.model.build import nb_stable
from socialgradient.model.data import EFFECTS, NeighbourhoodData
from socialgradient.model.priors import fixed
from socialgradient.model.terms.la_effects import la_theta
from socialgradient.spec import Spec


def check_spec(spec: Spec) -> None:
    """Refuse what the joint model does not support, naming it."""
    bad = [
        name
        for name, on in (
            ("stratum", spec.stratum),
            ("strata", spec.strata),
            ("stratum_trend", spec.stratum_trend),
            ("trials", spec.trials),
            ("neighbourhood_moderators", spec.neighbourhood_moderators),
            ("la_moderators", spec.la_moderators),
            ("exposure", spec.exposure != "children"),
        )
        if on
    ]
    if bad or families.get(spec.family).link != "log":
        raise ValueError(
            f"the joint threshold model supports negbin/poisson counts per "
            f"child only; remove {bad or [f'family = {spec.family}']}"
        )


def build(
    datas: list[NeighbourhoodData], spec: Spec, centred: np.ndarray | None = None
) -> pm.Model:
    """Return the joint model of ``datas`` (one per threshold, same rows, same order)."""
    check_spec(spec)
    family, p = families.get(spec.family), spec.priors
    first, k = datas[0], len(datas)
    names = [d.outcome for d in datas]
    coefs = [f"{o}:{e}" for o in names for e in EFFECTS]
    pairs = [f"{coefs[i]}~{coefs[j]}" for i, j in itertools.combinations(range(2 * k), 2)]
    if centred is None:
        centred = choose(datas, spec)
    idx, n_la = first.la_index, len(first.la)
    order = np.argsort(idx, kind="stable")
    per_la = np.bincount(idx, minlength=n_la)
    w = first.w[order]
    # per threshold, the NB's cheaper normaliser where its counts rule out the Poisson limit
    stable = [nb_stable(d, family) for d in datas]
    coords = {**first.coords, "threshold": names, "la_coef": coefs, "la_pair": pairs}
    with pm.Model(coords=coords) as model:
        m_c = pm.Data("m_c", first.m_c, dims="la")
        a = fixed("a", p, family.a_prior_mean, dims="threshold")
        b_w = fixed("b_w", p, dims="threshold")
        b_b = fixed("b_b", p, dims="threshold")
        b_x = fixed("b_x", p, dims="threshold")
        sd0 = np.tile([0.2, 0.1], k)
        chol, corr, sd = pm.LKJCholeskyCov(
            "la_cov",
            eta=p.lkj_eta,
            n=2 * k,
            sd_dist=pm.HalfNormal.dist(
                sigma=np.tile([p.la_sd_intercept, p.la_sd_slope], k), size=2 * k
            ),
            initval=np.diag(sd0)[np.tril_indices(2 * k)],  # see model.la_effects
        )
        pm.Deterministic("la_sd", sd.reshape((k, 2)), dims=("threshold", "effect"))
        upper = np.triu_indices(2 * k, 1)
        pm.Deterministic("la_corr", corr[upper], dims="la_pair")
        centre = pt.stack(
            [a[None, :] + b_b[None, :] * m_c[:, None], b_w[None, :] + b_x[None, :] * m_c[:, None]],
            axis=2,
        )
        flat = la_theta(centre.reshape((n_la, 2 * k)), chol, 2 * centred, first.la, "la_coef")
        pm.Deterministic(
            "la_effect", flat.reshape((n_la, k, 2)), dims=("la", "threshold", "effect")
        )
        shared = family.add_parameters(p, dims="threshold")  # e.g. phi, one per threshold
        # The part linear in the counts, from per-LA sums (dims la, la_coef): one product.
        sums = np.stack(
            [
                np.bincount(idx, weights=d.y * v, minlength=n_la)
                for d in datas
                for v in (np.ones_like(d.w), d.w)
            ],
            axis=1,
        )
        loglik = pt.sum(flat * sums)
        # Every threshold's intercepts and slopes reach the rows (sorted by LA) in one
        # vector repeat of the coefficients in (la_coef, la) order, not 2K repeats.
        rows_of = pt.repeat(flat.T.ravel(), np.tile(per_la, 2 * k)).reshape((k, 2, w.size))
        eta = rows_of[:, 0, :] + rows_of[:, 1, :] * w
        for j, d in enumerate(datas):
            rows = families.Rows(d.y[order], np.log(d.exposure)[order])
            params = {name: value[j] for name, value in shared.items()}
            loglik = loglik + family.normaliser(eta[j], rows, params, stable[j])
        pm.Potential("loglik", loglik)
    return model


def choose(datas: list[NeighbourhoodData], spec: Spec) -> np.ndarray:
    """How many leading thresholds each LA has centred (dims la, 0 to K).

    Per threshold, :func:`socialgradient.model.parameterisation.choose` says whether the LA's
    data pin its intercept and slope down; an LA centres the longest run of thresholds,
    from the first, that all do. Thresholds are nested (each a subset of the one before),
    so the run is almost always every threshold the rule accepts. On the default England
    the first four thresholds pin the LA spreads down, so every LA centres them, and 12
    LAs also centre looked-after children (README); on sparser tables the run varies by LA
    (with one all-or-nothing choice per LA, well-informed referral effects of LAs
    non-centred for a sparse threshold mixed slowly: R-hat 1.088).
    """
    ok = np.stack([parameterisation.choose(d, spec.family, spec.la_effects) == 2 for d in datas])
    return np.cumprod(ok, axis=0).sum(axis=0)
