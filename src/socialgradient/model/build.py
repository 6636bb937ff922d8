r"""The national social-gradient model: a hierarchical Poisson / negative-binomial GLM
(over 400 lines because this docstring is the model's full statement, priors included, and
the model's pieces -- LA effects, strata, moderators, likelihood -- are read together).

For LSOA :math:`i` in local authority :math:`l` with child population :math:`n_i`,
within-LA deprivation :math:`w_i` and LA deprivation :math:`m_{c,l}` (both in units of
10 percentage points of income deprivation, see :mod:`socialgradient.data.deprivation`):

.. math::

    \log \mathrm{E}[y_i] = \log n_i + \alpha_l + \beta_l w_i, \qquad
    (\alpha_l, \beta_l) \sim \mathrm{MVN}\big((a + b_b m_{c,l},\; b_w + b_x m_{c,l}),\;
    \Sigma\big)

with :math:`\Sigma = \mathrm{diag}(\sigma)\, R\, \mathrm{diag}(\sigma)`. The family is
Poisson, negative binomial (NB2: variance :math:`\mu + \mu^2/\phi`) or binomial (logit
link, ``trials`` per row, no offset: the gradient is then an odds ratio); each is one object
in :mod:`socialgradient.model.families`.

An optional LA-level outcome (``[la_outcome]`` in the spec) regresses LA totals on the
model's own LA slopes :math:`\beta_l`, jointly: :mod:`socialgradient.model.la_outcome`.

Moderators (named in the spec, all adjusted for LA deprivation, which stays in):

* a *neighbourhood* moderator :math:`z_i` (a table column, e.g. ``rural``) adds
  :math:`g z_i + h z_i w_i`: a main effect and a change of the within-LA slope;
* an *LA* moderator :math:`v_l` (a column of an LA table, e.g. spend per child) adds
  :math:`c v_l` to the mean of :math:`\alpha_l` and :math:`d v_l` to the mean of
  :math:`\beta_l`.

Moderators are centred at their child-weighted mean (so ``a``, ``b_w`` keep their meaning
at the average moderator) and scaled by their child-weighted SD while sampling; the
posterior reports ``moderator_effect`` / ``la_moderator_effect`` (dims moderator, effect)
per *unit* of the moderator, on the log (or logit) scale.

For a stratified table (one row per LSOA x stratum, e.g. age band), the linear predictor
gains stratum offsets to the intercept and the slope, :math:`\gamma_s + \delta_s w_i`, zero
for the reference stratum (the one with most children): the gradient of stratum :math:`s`
in an averagely deprived LA is :math:`\exp(b_w + \delta_s)`.
With several stratum columns (``strata = ["age_band", "gender"]``: one row per LSOA x age
band x gender) each column :math:`k` has its own offsets, added on the log scale,
:math:`\sum_k (\gamma_{k,s_k} + \delta_{k,s_k} w_i)`, each zero for its column's reference
level (most children): the gradient of level :math:`s` of column :math:`k` is
:math:`\exp(b_w + \delta_{k,s})` at the reference levels of the other columns, and a
contrast between two levels of a column, :math:`\exp(\delta_{k,s} - \delta_{k,t})`, holds
at every level of the others (the offsets are additive: no interaction between columns).

A *stratum trend* (``stratum_trend = "age"``, a numeric cell column :math:`t`, e.g. single
years of age) adds :math:`\kappa (t - \bar t) + \tau (t - \bar t) w_i`: :math:`\kappa`
is the change in the log rate per unit of :math:`t` (at :math:`w = 0`) and :math:`\tau` the
change in the log gradient per unit (``trend_effect``, dims effect: intercept, slope);
:math:`\bar t` is the child-weighted mean, so :math:`b_w` stays the gradient at the
average age. It combines with strata (then the trend is within their levels).

Priors (weakly informative on the log-rate-per-child scale; checked by
:func:`socialgradient.results.checks.prior_predictive`):

========  ==========================  =====================================================
name      prior                       why
========  ==========================  =====================================================
a         Normal(-4, 2.5)             log rate per child at an LA's mean deprivation, for an
                                      LA at the national mean: e^-4 = 180 per 10,000; the
                                      95% range is about 1.4 to 25,000 per 10,000 (binomial:
                                      Normal(0, 2.5) on the logit of the proportion)
b_w       Normal(0, 1)                within-LA log gradient per 10 points: scores 0.14-7
b_b       Normal(0, 1)                between-LA log gradient per 10 points of LA deprivation
b_x       Normal(0, 1)                change in the within-LA log gradient per 10 points of LA
                                      deprivation (cross-level interaction)
la_sd     HalfNormal([1, 0.5])        SDs of LA intercepts and slopes (effect dim)
la_corr   LKJ(eta=2)                  mildly favours small intercept-slope correlations
phi       1/sqrt(phi) ~ HalfNormal(1) NB2 dispersion, a Stan-style "penalised complexity"-ish
                                      prior that shrinks towards the Poisson (phi -> inf)
gamma,    Normal(0, [1, 0.5])         stratum offsets to the log rate and the log gradient
delta                                 (each non-reference level of each stratum column)
kappa,    Normal(0, [1, 0.5]) per SD  stratum trend: change in the log rate and in the log
tau                                   gradient per SD of the trend column (for age, SD ~5.2
                                      years: tau's prior SD is ~0.1 per year of age)
g, h      Normal(0, [1, 0.5]) per SD  neighbourhood moderator: main effect, slope change
c, d      Normal(0, [1, 0.5]) per SD  LA moderator: on the LA intercept and slope means
========  ==========================  =====================================================

Every scale (and a's mean) can be set in the spec's ``[priors]`` table
(:class:`socialgradient.spec.Priors`); :func:`socialgradient.results.checks.prior_predictive`
shows what a spec's priors imply for rates and gradients.

Parameterisation (``la_effects`` in the spec): LA effects are sampled *centred on their
hierarchical means* where an LA's data pin them down (England-sized referral counts:
non-centred forms give R-hat 1.1-1.5 there) and *non-centred* where they do not (rare
outcomes: the centred form is a funnel). ``auto`` (the default) chooses per LA
(:mod:`socialgradient.model.parameterisation`); either way ``la_effect`` (dims la, effect) is in
the posterior.

Speed: the likelihood is written through sufficient statistics. The :math:`y\,\eta` part is
linear in the LA parameters, so it collapses to per-LA sums :math:`\sum y` and
:math:`\sum y w`; the negative binomial's :math:`\log\Gamma(y+\phi)-\log\Gamma(\phi)` terms
depend on the data only through how many LSOAs have each count. Only the
:math:`\mu`-dependent normaliser runs over LSOAs: rows are sorted by LA so LA effects reach
them by ``repeat``, and it costs one ``exp`` and one ``log`` per row. The resulting log
density equals the textbook per-LSOA log-likelihood up to a constant that does not depend
on the parameters (``tests/test_model.py`` checks this against ``pm.Poisson`` /
``pm.NegativeBinomial``); ``bench/results.md`` records what each step buys.
Pointwise log-likelihood and posterior predictive draws are computed after sampling
(:mod:`socialgradient.sampling.predict`), so no per-LSOA quantity is stored during sampling.
"""

from __future__ import annotations

import re

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from socialgradient.model import families, la_outcome, parameterisation
from socialgradient.model.data import NeighbourhoodData
from socialgradient.spec import Priors, Spec

LIKELIHOODS = ("sufficient", "pointwise")


def la_effects(
    data: NeighbourhoodData,
    priors: Priors | None = None,
    centred: np.ndarray | None = None,
    a_mean: float = -4.0,
):
    """Priors and the LA intercepts and slopes, in the current model context.

    Creates ``a``, ``b_w``, ``b_b``, ``b_x``, the LKJ covariance ``la_cov`` (with
    deterministics ``la_sd``, ``la_corr``), LA-moderator coefficients if any, and returns
    ``la_effect`` (dims la, effect) with means ``(a + b_b m_c, b_w + b_x m_c)``: a free
    variable when every LA is centred (``centred`` None or all 2), else a deterministic
    (:func:`la_theta`, LAs centring only some of their effects). Shared
    by :func:`build_model` and the textbook reference models of the tests and benchmarks.
    """
    p = priors or Priors()
    m_c = pm.Data("m_c", data.m_c, dims="la")
    a = pm.Normal("a", a_mean if p.a_mean is None else p.a_mean, p.a)
    b_w = pm.Normal("b_w", 0.0, p.b_w)
    b_b = pm.Normal("b_b", 0.0, p.b_b)
    b_x = pm.Normal("b_x", 0.0, p.b_x)
    chol, corr, sd = pm.LKJCholeskyCov(
        "la_cov",
        eta=p.lkj_eta,
        n=2,
        sd_dist=pm.HalfNormal.dist(sigma=np.array([p.la_sd_intercept, p.la_sd_slope]), size=2),
        # An explicit start (LA SDs 0.2 and 0.1, uncorrelated): the default draws the SDs
        # through scipy, which fails on PyTensor's read-only constants for some graphs
        # (Poisson with strata under nutpie: "cannot set WRITEABLE flag").
        initval=np.array([0.2, 0.0, 0.1]),
    )
    pm.Deterministic("la_sd", sd, dims="effect")
    pm.Deterministic("la_corr", corr[0, 1])
    centre = pt.stack([a + b_b * m_c, b_w + b_x * m_c], axis=1)
    if data.la_moderator_names:
        centre = centre + _la_moderator_terms(data, p)
    counts = None if centred is None else parameterisation.as_counts(centred)
    if counts is None or (counts == 2).all():
        return pm.MvNormal("la_effect", mu=centre, chol=chol, dims=("la", "effect"))
    return pm.Deterministic(
        "la_effect", la_theta(centre, chol, counts, data.la, "effect"), dims=("la", "effect")
    )


def la_theta(centre, chol, centred: np.ndarray, la: np.ndarray, coef_dim: str):
    """LA coefficients (dims la x ``coef_dim``) with means ``centre`` and covariance
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


def _la_moderator_terms(data: NeighbourhoodData, p: Priors):
    """``V c`` and ``V d`` for the LA moderators (standardised while sampling), dims (la, 2)."""
    mean, sd = data.la_moderator_scaling()
    v = (data.la_moderators - mean) / sd
    coef = pm.Normal(
        "la_moderator_coef",
        0.0,
        np.array([p.moderator_intercept, p.moderator_slope]),
        dims=("la_moderator", "effect"),
    )
    pm.Deterministic("la_moderator_effect", coef / sd[:, None], dims=("la_moderator", "effect"))
    return pt.as_tensor(v) @ coef


def dispersion(priors: Priors | None = None):
    """NB2 dispersion ``phi`` with 1/sqrt(phi) ~ HalfNormal(1), in the current model context."""
    return families.get("negbin").add_parameters(priors or Priors())["phi"]


def build_model(
    data: NeighbourhoodData,
    spec: Spec,
    likelihood: str = "sufficient",
    centred: np.ndarray | None = None,
) -> pm.Model:
    """Build the national model for one outcome.

    Parameters
    ----------
    data : NeighbourhoodData
        The encoded outcome.
    spec : Spec
        Uses ``family``, ``priors``, ``la_effects`` and the moderators' names (which
        ``data`` must carry).
    likelihood : {"sufficient", "pointwise"}
        ``sufficient`` (default, fast): the likelihood enters as the potential ``loglik``
        through sufficient statistics. ``pointwise``: the textbook per-row likelihood, an
        observed variable named after the outcome (dims lsoa or cell), for PyMC's own
        tools (``pm.sample_posterior_predictive``, ``pm.compute_log_likelihood``); the
        same posterior, several times slower to sample.
    centred : ndarray of int (or bool), dims (la,), optional
        Each LA's centred leading effects (2 both, 1 the intercept, 0 none; True = 2);
        default :func:`socialgradient.model.parameterisation.choose`.

    Returns
    -------
    pm.Model
        Free variables ``a``, ``b_w``, ``b_b``, ``b_x``, the LA effects (``la_effect``,
        dims la x effect, free when all LAs are centred, else built by :func:`la_theta`
        from blocks ``la_effect_c<c>`` / ``la_z_c<c>``),
        the LKJ covariance (``la_sd`` dims effect, ``la_corr``), for the negative binomial
        ``phi``, for stratified data
        ``stratum_effect`` (dims stratum, effect; zero for the reference stratum), and for
        moderators ``moderator_effect`` / ``la_moderator_effect`` (dims moderator or
        la_moderator, effect; per unit); with an LA outcome (``data.la_outcome``)
        ``la_outcome_effect`` (dims la_outcome_term), ``la_outcome_intercept`` and
        ``la_outcome_sd`` (:mod:`socialgradient.model.la_outcome`).
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}: choose one of {LIKELIHOODS}")
    family = families.get(spec.family)
    if centred is None:
        centred = parameterisation.choose(data, spec.family, spec.la_effects)
    n_la = len(data.la)
    idx = data.la_index
    # Rows sorted by LA, so LA effects reach rows by `repeat`, whose gradient is a contiguous
    # segment sum (30% faster sampling than gather/scatter on England-sized data).
    order = np.argsort(idx, kind="stable")
    per_la = np.bincount(idx, minlength=n_la)
    w = data.w[order]
    rows = families.Rows(
        y=data.y[order],
        log_exposure=np.log(data.exposure)[order],
        trials=None if data.trials is None else data.trials[order],
    )
    with pm.Model(coords=data.coords) as model:
        theta = la_effects(data, spec.priors, centred, family.a_prior_mean)
        if data.la_outcome is not None:  # the LA-level question, on every draw of theta
            la_outcome.add_terms(theta, data.la_outcome)
        # The rows' data enter as pm.Data (inputs, not constants): one compiled log density
        # serves every table of the same structure (families.Rows.as_data).
        if likelihood == "sufficient":
            rows = rows.as_data()
            w = pm.Data("rows_w", w)
            per_la = pm.Data("rows_per_la", per_la)
        eta = pt.repeat(theta[:, 0], per_la) + pt.repeat(theta[:, 1], per_la) * w
        y_sum = pm.Data("la_y_sum", np.bincount(idx, weights=data.y, minlength=n_la), dims="la")
        yw_sum = pm.Data(
            "la_yw_sum", np.bincount(idx, weights=data.y * data.w, minlength=n_la), dims="la"
        )
        linear = pt.sum(theta[:, 0] * y_sum + theta[:, 1] * yw_sum)
        if data.strata:
            offset = _stratum_effect(data, spec.priors)
            n_s, s_y, s_yw = len(data.strata), 0.0, 0.0
            for s_idx in data.stratum_positions.T:  # one stratum column after another
                eta = eta + offset[s_idx[order], 0] + offset[s_idx[order], 1] * w
                s_y = s_y + np.bincount(s_idx, weights=data.y, minlength=n_s)
                s_yw = s_yw + np.bincount(s_idx, weights=data.y * data.w, minlength=n_s)
            linear = linear + pt.sum(offset[:, 0] * s_y + offset[:, 1] * s_yw)
        if data.trend_name:
            coef = _trend_coef(data, spec.priors)
            mean, sd = data.trend_scaling()
            t = (data.trend - mean) / sd
            eta = eta + coef[0] * t[order] + coef[1] * (t[order] * w)
            linear = linear + coef[0] * (data.y @ t) + coef[1] * ((data.y * data.w) @ t)
        if data.moderator_names:
            coef = _moderator_coef(data, spec.priors)
            mean, sd = data.moderator_scaling()
            z = (data.moderators - mean) / sd
            eta = (
                eta
                + pt.as_tensor(z[order]) @ coef[:, 0]
                + pt.as_tensor(z[order] * w[:, None]) @ coef[:, 1]
            )
            linear = (
                linear
                + pt.sum(coef[:, 0] * (data.y @ z))
                + pt.sum(coef[:, 1] * ((data.y * data.w) @ z))
            )
        params = family.add_parameters(spec.priors)
        if likelihood == "sufficient":
            pm.Potential(
                "loglik",
                linear + family.normaliser(eta, rows, params, stable=nb_stable(data, family.name)),
            )
        else:
            unsort = np.argsort(order, kind="stable")
            original = families.Rows(data.y, np.log(data.exposure), data.trials)
            family.observed(data.outcome, eta[unsort], original, params, data.row_dim)
    return model


def nb_stable(data: NeighbourhoodData, family: str) -> bool:
    """Whether the model needs the negative binomial's stable normaliser
    (:meth:`socialgradient.model.families.Family.normaliser`): yes unless the data rule out the
    Poisson limit (:func:`socialgradient.model.families.overdispersed`) around the per-LA fit of
    intercepts and slopes, which is the whole mean structure only without strata, trend or
    neighbourhood moderators (with them, the LA fit would mistake their effects for
    overdispersion, so the stable form is kept)."""
    if family != "negbin" or data.strata or data.trend_name or data.moderator_names:
        return True
    _, mean, _ = parameterisation.la_fit(data, "poisson")
    return not families.overdispersed(data.y, mean)


def _stratum_effect(data: NeighbourhoodData, p: Priors):
    """Stratum offsets to the intercept and slope, zero for the reference stratum (of each
    stratum column, with several).

    Priors: Normal(0, 1) on the log-rate offset (rate ratios 0.14-7 against the reference),
    Normal(0, 0.5) on the slope offset (gradient ratios 0.37-2.7). The reference stratum is
    the one with most children, so its offsets are the best identified zero.
    """
    # each column's levels sit together in `strata`, its reference (lowest position) first
    starts = sorted(int(i) for i in data.stratum_positions.min(axis=0))
    contrasts = [s for i, s in enumerate(data.strata) if i not in starts]
    model = pm.modelcontext(None)
    model.add_coord("stratum_contrast", contrasts)
    raw = pm.Normal(
        "stratum_offset",
        0.0,
        np.array([p.stratum_intercept, p.stratum_slope]),
        dims=("stratum_contrast", "effect"),
    )
    if not data.stratum_columns:
        full = pt.concatenate([pt.zeros((1, 2)), raw], axis=0)
    else:  # a zero row at each column's reference, the column's contrasts after it
        parts, k = [], 0
        for start, stop in zip(starts, [*starts[1:], len(data.strata)], strict=True):
            n = stop - start - 1
            parts += [pt.zeros((1, 2)), raw[k : k + n]]
            k += n
        full = pt.concatenate(parts, axis=0)
    return pm.Deterministic("stratum_effect", full, dims=("stratum", "effect"))


def _trend_coef(data: NeighbourhoodData, p: Priors):
    """The stratum trend's coefficients per SD of its column (free, ``trend_coef``) and per
    unit (``trend_effect``: change in the log rate and in the log gradient per unit, e.g.
    per year of age), dims (effect,); returns the per-SD ones.

    Priors: Normal(0, 1) on the main effect and Normal(0, 0.5) on the change in the log
    gradient, per SD of the column (``trend_intercept``, ``trend_slope`` in ``[priors]``).
    """
    _, sd = data.trend_scaling()
    coef = pm.Normal("trend_coef", 0.0, np.array([p.trend_intercept, p.trend_slope]), dims="effect")
    pm.Deterministic("trend_effect", coef / sd, dims="effect")
    return coef


def _moderator_coef(data: NeighbourhoodData, p: Priors):
    """Neighbourhood-moderator coefficients per SD (free, ``moderator_coef``) and per unit
    (``moderator_effect``), dims (moderator, effect); returns the per-SD ones."""
    _, sd = data.moderator_scaling()
    coef = pm.Normal(
        "moderator_coef",
        0.0,
        np.array([p.moderator_intercept, p.moderator_slope]),
        dims=("moderator", "effect"),
    )
    pm.Deterministic("moderator_effect", coef / sd[:, None], dims=("moderator", "effect"))
    return coef
