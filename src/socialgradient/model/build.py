r"""The national social-gradient model: a hierarchical Poisson / negative-binomial GLM.

Its statement, priors included; the builder runs the terms of
:mod:`socialgradient.model.terms`, one module each.

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

============  ============================  ========================================================
name          prior                         why
============  ============================  ========================================================
a             Normal(-4, 2.5)               log rate per child at an LA's mean deprivation, for an
                                            LA at the national mean: e^-4 = 180 per 10,000; the
                                            95% range is about 1.4 to 25,000 per 10,000 (binomial:
                                            Normal(0, 2.5) on the logit of the proportion)
b_w           Normal(0, 1)                  within-LA log gradient per 10 points: scores 0.14-7
b_b           Normal(0, 1)                  between-LA log gradient per 10 points of LA deprivation
b_x           Normal(0, 1)                  change in the within-LA log gradient per 10 points of LA
                                            deprivation (cross-level interaction)
la_sd         HalfNormal([1, 0.5])          SDs of LA intercepts and slopes (effect dim)
la_corr       LKJ(eta=2)                    mildly favours small intercept-slope correlations
phi           1/sqrt(phi) ~ HalfNormal(1)   NB2 dispersion, a Stan-style "penalised complexity"-ish
                                            prior that shrinks towards the Poisson (phi -> inf)
gamma, delta  Normal(0, [1, 0.5])           stratum offsets to the log rate and the log gradient
                                            (each non-reference level of each stratum column)
kappa, tau    Normal(0, [1, 0.5]) per SD    stratum trend: change in the log rate and in the log
                                            gradient per SD of the trend column (for age, SD ~5.2
                                            years: tau's prior SD is ~0.1 per year of age)
g, h          Normal(0, [1, 0.5]) per SD    neighbourhood moderator: main effect, slope change
c, d          Normal(0, [1, 0.5]) per SD    LA moderator: on the LA intercept and slope means
============  ============================  ========================================================

Every scale (and the means of a, b_w, b_b, b_x) can be set in the spec's ``[priors]``
table (:class:`socialgradient.spec.Priors`); ``fixed = "student_t"`` (with ``fixed_nu``
degrees of freedom, default 3) makes the priors of a, b_w, b_b and b_x Student-t at the
same means and scales (:mod:`socialgradient.model.priors`);
:func:`socialgradient.results.checks.prior_predictive`
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

from typing import Any

import numpy as np
import pymc as pm

from socialgradient.model import families, parameterisation
from socialgradient.model.data import NeighbourhoodData
from socialgradient.model.terms import Context, Term
from socialgradient.model.terms.la_effects import (
    LA_THETA_BLOCKS,
    LA_THETA_COORDS,
    la_effects,
    la_theta,
)
from socialgradient.spec import Priors, Spec

__all__ = [
    "LA_THETA_BLOCKS",
    "LA_THETA_COORDS",
    "LIKELIHOODS",
    "build_model",
    "dispersion",
    "la_effects",
    "la_theta",
    "nb_stable",
]

LIKELIHOODS = ("sufficient", "pointwise")

#: The model's phases (:mod:`socialgradient.model.terms.base`): each runs over every term.
PHASES = ("centre", "effects", "rows")


def dispersion(priors: Priors | None = None) -> Any:
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
    # Rows sorted by LA, so LA effects reach rows by `repeat`, whose gradient is a contiguous
    # segment sum (30% faster sampling than gather/scatter on England-sized data).
    order = np.argsort(data.la_index, kind="stable")
    exposure = np.asarray(data.exposure)
    rows = families.Rows(
        y=data.y[order],
        log_exposure=np.log(exposure)[order],
        trials=None if data.trials is None else data.trials[order],
    )
    ctx = Context(data, spec.priors, centred, family.a_prior_mean, order)
    ctx.w, ctx.per_la = data.w[order], np.bincount(data.la_index, minlength=len(data.la))
    with pm.Model(coords=data.model_coords) as model:
        if likelihood == "sufficient":
            # The rows' data enter as pm.Data (inputs, not constants): one compiled log
            # density serves every table of the same structure (families.Rows.as_data).
            rows = rows.as_data()
            ctx.w, ctx.per_la = pm.Data("rows_w", ctx.w), pm.Data("rows_per_la", ctx.per_la)
        for phase in PHASES:
            for term in data.terms:
                if getattr(type(term), phase) is not getattr(Term, phase):  # takes part
                    getattr(term, phase)(ctx)
        if likelihood == "sufficient":
            stable = nb_stable(data, family)
            family.add_likelihood(spec.priors, ctx.linear, ctx.eta, rows, stable)
        else:
            params = family.add_parameters(spec.priors)
            unsort = np.argsort(order, kind="stable")
            original = families.Rows(data.y, np.log(exposure), data.trials)
            family.observed(data.outcome, ctx.eta[unsort], original, params, data.row_dim)
    return model


def nb_stable(data: NeighbourhoodData, family: str | families.Family) -> bool:
    """Return whether the model needs the negative binomial's stable normaliser.

    Yes for a family without a cheaper form of its normaliser
    (:attr:`socialgradient.model.families.Family.cheaper_normaliser`: only the NB has two),
    and for the NB unless the data rule out its Poisson limit
    (:func:`socialgradient.model.families.overdispersed`) around the per-LA Poisson fit of
    intercepts and slopes, which is the whole mean structure only without terms on the rows
    (strata, a trend, neighbourhood moderators: the LA fit would mistake their effects for
    overdispersion, so the stable form is kept).
    """
    family = families.get(family) if isinstance(family, str) else family
    if not family.cheaper_normaliser or any(t.on_rows for t in data.terms):
        return True
    mean = parameterisation.la_fit(data, families.FAMILIES["poisson"])[1]
    return not families.overdispersed(data.y, mean)
