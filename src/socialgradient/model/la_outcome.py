r"""The LA-level question: do LAs with steeper gradients have more of an LA-level outcome.

Issue 10 (Hood, Goldacre et al. 2021): do local authorities with steeper social gradients
have higher re-referral and repeat-CP-plan rates, after adjusting for LA deprivation and
resources? A spec answers it with an ``[la_outcome]`` table
(:class:`socialgradient.spec.LAOutcome`): the gradient model of :mod:`socialgradient.model.build`
is fitted jointly with a binomial regression of LA totals on the model's *own latent* LA
slopes, so every posterior draw of every LA gradient enters the regression and the
gradients' uncertainty is carried through (never plugged-in medians):

.. math::

    r_l \sim \mathrm{Binomial}\big(N_l,\ \mathrm{logit}^{-1}(k_0 + k_g (\beta_l - \bar\beta)
    + k_m \tilde m_{c,l} + \textstyle\sum_j k_j \tilde v_{j,l} + \sigma_r z_l)\big),
    \qquad z_l \sim \mathrm{Normal}(0, 1)

with :math:`r_l`, :math:`N_l` the LA totals of the table's ``count`` and ``trials``
columns (e.g. re-referred out of referred children), :math:`\beta_l` the LA slopes
(``la_effect[..., slope]``, log gradient per 10 points of within-LA deprivation),
:math:`\bar\beta` their mean over LAs in the same draw, :math:`m_{c,l}` the LA's
deprivation (always adjusted for) and :math:`v_{j,l}` the LA covariates named in
``adjust`` (columns of the spec's ``la_data``, e.g. spend per child, agency share,
turnover); a tilde marks a covariate centred and scaled by its SD over the LAs while
sampling. :math:`\sigma_r z_l` is an LA residual (non-centred: with little residual
variation the centred form is a funnel), so LAs that differ for reasons the regression does
not name do not make :math:`k_g` overconfident. Because the model is joint, the LA outcome
also informs the LA slopes a little; with ~150 LAs against England-sized referral counts
that feedback is small.

========================  ======================  ===========================================
name                      prior                   why
========================  ======================  ===========================================
la_outcome_intercept k_0  Normal(0, 2.5)          logit of the LA outcome's rate at average
                                                  covariates: 0.7% to 99% (95% range)
k_g                       Normal(0, 1)            log-odds per unit of log gradient: an LA
                                                  0.1 steeper has odds x0.82 to x1.22
k_m, k_j                  Normal(0, 1) per SD     log-odds per SD of the covariate
la_outcome_sd sigma_r     HalfNormal(0.5)         LA residual SD on the logit scale
========================  ======================  ===========================================

The posterior gains ``la_outcome_effect`` (dims ``la_outcome_term``: ``gradient`` = k_g
per unit of log gradient, then ``m_c`` and each covariate per *unit*), ``la_outcome_intercept``
and ``la_outcome_sd``; :func:`summary` is the ``la_outcome`` entry of ``summary.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from socialgradient.data.schema import fail
from socialgradient.spec import LAOutcome

#: The step of log gradient the odds ratio is reported per: 0.1 (a gradient ~10.5% steeper).
STEP = 0.1


@dataclass(frozen=True)
class LAOutcomeData:
    """An LA-level outcome, encoded: dims (la,) in the order of the model's ``la``.

    ``count``/``trials`` are the LA totals of the columns ``count_name``/``trials_name``;
    ``covariates`` (la, term) the raw adjustment values, ``terms`` their names (``m_c``
    first).
    """

    count: np.ndarray
    trials: np.ndarray
    covariates: np.ndarray
    terms: tuple[str, ...]
    count_name: str
    trials_name: str


def check_columns(table: pd.DataFrame, spec: LAOutcome) -> None:
    """Raise a clear error naming the ``[la_outcome]`` column the table lacks."""
    for key in ("count", "trials"):
        column = getattr(spec, key)
        if column not in table.columns:
            raise fail(
                "missing_column",
                f"la_outcome.{key} names {column!r}, not a column of "
                f"the table (columns: {[str(c) for c in table.columns]})",
                columns=[column],
            )


def encode(
    table: pd.DataFrame,
    spec: LAOutcome,
    la: np.ndarray,
    la_index: np.ndarray,
    m_c: np.ndarray,
    la_table: pd.DataFrame | None = None,
) -> LAOutcomeData:
    """Return the LA totals of a table's ``count`` and ``trials`` columns, with covariates.

    LA totals of a validated table's ``count`` and ``trials`` columns (rows placed by
    ``la_index`` into ``la``), with ``m_c`` and the covariates of ``la_table`` (validated by
    :func:`socialgradient.model.moderators.validate_la_table`, one row per LA of ``la``).
    """
    check_columns(table, spec)
    count = np.bincount(la_index, table[spec.count].to_numpy(float), len(la)).astype(np.int64)
    trials = np.bincount(la_index, table[spec.trials].to_numpy(float), len(la)).astype(np.int64)
    over = count > trials
    if over.any():
        raise fail(
            "count_exceeds_trials",
            f"la_outcome: LA totals of {spec.count!r} exceed "
            f"those of {spec.trials!r} in LAs {list(np.asarray(la)[over][:10])}",
            columns=[spec.count, spec.trials],
        )
    if (trials == 0).all():
        raise fail(
            "no_trials", f"la_outcome: {spec.trials!r} is 0 in every LA", columns=[spec.trials]
        )
    values = [np.asarray(m_c, float)]
    covariates = spec.covariates
    if covariates:
        if la_table is None:
            raise ValueError(f"la_outcome: the covariates {list(covariates)} need la_data")
        las = la_table.set_index("la").loc[[str(c) for c in la], list(covariates)]
        values += [las[c].to_numpy(float) for c in covariates]
    return LAOutcomeData(
        count, trials, np.column_stack(values), ("m_c", *covariates), spec.count, spec.trials
    )


#: Sampler-side forms dropped from the result tree (``la_outcome_effect`` keeps them per unit).
DERIVED = ("la_outcome_gradient", "la_outcome_coef", "la_outcome_z")


def summary(post: xr.Dataset, const: xr.Dataset, spec: dict, interval) -> dict:
    """Return ``summary.json``'s ``la_outcome`` entry.

    ``summary.json``'s ``la_outcome``: k_g (``gradient``, log-odds per unit of log
    gradient) and the odds ratio per :data:`STEP` of log gradient, each with
    ``p_positive`` = P(k_g > 0), the adjustments per unit, the intercept and residual SD;
    ``spec`` is the spec's ``la_outcome`` (as in its JSON), ``interval`` makes a
    ``{median, ci95, ci80}`` dict of draws.
    """
    effect = post["la_outcome_effect"]
    k_g = effect.sel(la_outcome_term="gradient", drop=True)
    p = float((k_g > 0).mean())
    terms = [str(t) for t in effect["la_outcome_term"].values if t != "gradient"]
    return {
        "count": spec["count"],
        "trials": spec["trials"],
        "p_positive": p,
        "gradient": interval(k_g) | {"p_positive": p},
        "odds_ratio_per_tenth": interval(np.exp(STEP * k_g)) | {"p_positive": p},
        "adjust": {t: interval(effect.sel(la_outcome_term=t, drop=True)) for t in terms},
        "intercept": interval(post["la_outcome_intercept"]),
        "residual_sd": interval(post["la_outcome_sd"]),
        "n_la": int((const["la_outcome_trials"] > 0).sum()),
        "units": (
            "gradient: log-odds of the LA outcome per unit of the LA's log gradient "
            "(the model's own LA slopes, every draw); odds_ratio_per_tenth: odds ratio "
            "per 0.1 of log gradient (a gradient ~10.5% steeper); adjust: log-odds per "
            "unit of each covariate; p_positive = P(gradient > 0)"
        ),
    }
