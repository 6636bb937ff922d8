r"""Likelihood families: each one object that owns its link, log density and replicates.

A family says everything the rest of the package needs to know about the distribution of
a row's count given its linear predictor :math:`\eta` (LA effects, strata, moderators; no
offset):

==========  =====  ================================  ==========  ===========================
family      link   mean of y                         extra       exp(slope) is a ...
==========  =====  ================================  ==========  ===========================
poisson     log    :math:`n \exp(\eta)`              --          rate ratio
negbin      log    :math:`n \exp(\eta)`, variance    ``phi``     rate ratio
                   :math:`\mu + \mu^2/\phi` (NB2)
binomial    logit  :math:`N\,\mathrm{logit}^{-1}      --          odds ratio
                   (\eta)` of ``trials`` N
==========  =====  ================================  ==========  ===========================

(:math:`n` is the exposure, ``children`` unless the spec names another column; a binomial
row's exposure is its number of trials, e.g. re-referrals out of referrals.)

The model (:mod:`socialgradient.model.build`) writes every family's log likelihood as
:math:`\sum_i y_i \eta_i + \text{normaliser}(\eta)`: the first part collapses to per-LA
sums because :math:`\eta` is linear in the LA effects, so a family supplies only
:meth:`Family.normaliser`, the part that must run over rows. :meth:`Family.pointwise` and
:meth:`Family.replicate` give the per-row log likelihood and posterior predictive draws
after sampling (numpy, one chain at a time), :meth:`Family.observed` the textbook
per-row PyMC likelihood (for ``pm.sample_posterior_predictive`` and for the tests that
prove the fast form equals it).
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import special

from socialgradient.model.nb_counts import (
    EXACT_COUNTS,
    OVERDISPERSED_Z,
    _log_rising,
    overdispersed,
    statistics,
)
from socialgradient.model.rows import Rows
from socialgradient.spec import Priors


class Family:
    """One likelihood family (see the module table); subclasses fill in the distribution.

    Class attributes: ``name`` (as in a spec's ``family``), ``link`` ("log" or "logit"),
    ``scale`` (what exp(slope) is), ``parameters`` (the family's own parameters in the
    posterior, e.g. ``phi``), ``derived`` (their sampler-side forms, dropped from a fit),
    ``a_prior_mean`` (the intercept's default prior mean, on the link scale), ``nests``
    (the family this one nests in or is nested in, which the main job compares it with by
    LOO; None: no such comparison) and ``cheaper_normaliser`` (:meth:`normaliser` has a
    cheaper form, ``stable=False``, for data that rule out the family's Poisson limit,
    :func:`overdispersed`: only the NB) and ``of_trials`` (counts out of a number of trials,
    not at an exposure: only the binomial).
    """

    name: ClassVar[str]
    link: ClassVar[str] = "log"
    scale: ClassVar[str] = "rate ratio"
    parameters: ClassVar[tuple[str, ...]] = ()
    derived: ClassVar[tuple[str, ...]] = ()  # sampler-side forms of the parameters
    a_prior_mean: ClassVar[float] = -4.0
    nests: ClassVar[str | None] = None
    cheaper_normaliser: ClassVar[bool] = False
    of_trials: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- inside the model --------------------------------------------------------------
    def add_parameters(self, priors: Priors, dims: str | None = None) -> dict[str, Any]:
        """Create the family's parameters in the current model context; name -> tensor.

        ``dims``: a dim the parameters are repeated over (the joint model's ``threshold``).
        """
        return {}

    def normaliser(self, eta: Any, rows: Rows, params: dict, stable: bool = True) -> Any:
        r"""Return the log likelihood minus :math:`\sum y\eta`, up to a data-only constant.

        ``stable`` (negative binomial only): the form that keeps its precision as
        phi -> infinity, the Poisson limit. ``False`` is the cheaper form for data that rule
        that limit out (:func:`overdispersed`): half the cost per gradient evaluation on
        England (bench/language.md), exact to 1e-4 nats on 33,000 rows up to phi = 1e6.
        """
        raise NotImplementedError

    def observed(self, name: str, eta: Any, rows: Rows, params: dict, dims: str) -> Any:
        """Return the textbook per-row likelihood as an observed PyMC variable."""
        raise NotImplementedError

    def add_likelihood(
        self, priors: Priors, linear: Any, eta: Any, rows: Rows, stable: bool = True
    ) -> None:
        """Create the family's parameters and the likelihood, the potential ``loglik``.

        ``linear`` is its part linear in the counts (collapsed over rows by the terms),
        :meth:`normaliser` the rest, in its ``stable`` form or not.
        """
        params = self.add_parameters(priors)
        pm.Potential("loglik", linear + self.normaliser(eta, rows, params, stable))

    def information_weight(self, y: np.ndarray, mean: np.ndarray, weight: np.ndarray) -> Any:
        """Return each row's information about its linear predictor.

        Each row's information about its linear predictor, from the working model's
        fitted ``mean`` and ``weight`` (:func:`socialgradient.model.parameterisation.la_fit`).
        """
        return weight

    # -- after sampling (numpy, dims (draw, row)) --------------------------------------
    def pointwise(self, eta: np.ndarray, rows: Rows, params: dict) -> np.ndarray:
        """Return the log likelihood of each row's count, dims (draw, row)."""
        raise NotImplementedError

    def replicate(
        self, eta: np.ndarray, rows: Rows, params: dict, rng: np.random.Generator
    ) -> np.ndarray:
        """Return one posterior predictive count per draw and row, dims (draw, row)."""
        return rng.poisson(np.exp(eta + rows.log_exposure))

    def inverse_link(self, eta: Any) -> Any:
        """Return the mean per unit of exposure (a rate) or per trial (a probability)."""
        return np.exp(eta)

    def draw(
        self,
        eta: np.ndarray,
        exposure: np.ndarray,
        trials: np.ndarray | None,
        params: dict,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Return one count per row at known parameters (:mod:`socialgradient.model.forward`)."""
        return rng.poisson(exposure * np.exp(eta))


class Poisson(Family):
    r"""Poisson counts, log link, mean :math:`n e^\eta`."""

    name = "poisson"
    nests = "negbin"  # the NB2 with phi -> infinity

    def normaliser(self, eta: Any, rows: Rows, params: dict, stable: bool = True) -> Any:
        r"""Return :math:`-\sum n e^\eta` (see :meth:`Family.normaliser`)."""
        return -pt.sum(pt.exp(rows.log_exposure + eta))

    def observed(self, name: str, eta: Any, rows: Rows, params: dict, dims: str) -> Any:
        """Return ``pm.Poisson`` observed on the rows (see :meth:`Family.observed`)."""
        return pm.Poisson(name, mu=pt.exp(rows.log_exposure + eta), observed=rows.y, dims=dims)

    def pointwise(self, eta: np.ndarray, rows: Rows, params: dict) -> np.ndarray:
        """Return the Poisson log density of each row's count, dims (draw, row)."""
        y = rows.y
        log_mu = eta + rows.log_exposure
        return y * log_mu - np.exp(log_mu) - special.gammaln(y + 1)


class NegativeBinomial(Family):
    r"""NB2 counts: log link, variance :math:`\mu + \mu^2/\phi`; its own ``phi``."""

    name = "negbin"
    nests = "poisson"
    parameters = ("phi",)
    derived = ("inv_sqrt_phi",)
    cheaper_normaliser = True

    def add_parameters(self, priors: Priors, dims: str | None = None) -> dict[str, Any]:
        """Create ``phi`` with 1/sqrt(phi) ~ HalfNormal(``priors.inv_sqrt_phi``)."""
        inv_sqrt_phi = pm.HalfNormal("inv_sqrt_phi", priors.inv_sqrt_phi, dims=dims)
        return {"phi": pm.Deterministic("phi", 1.0 / pt.square(inv_sqrt_phi), dims=dims)}

    def normaliser(self, eta: Any, rows: Rows, params: dict, stable: bool = True) -> Any:
        """Return the NB2 normaliser (see :meth:`Family.normaliser`)."""
        # With mu = n e^eta,
        #   log NB2(y | mu, phi) = sum_{j<y} log1p(j / phi) + y log mu - lgamma(y + 1)
        #                          - (y + phi) log1p(mu / phi).
        # The first sum is lgamma(y + phi) - lgamma(phi) - y log(phi) without the
        # cancellation of two huge lgammas (0.5 nats of noise at phi = 1e11 on 2,000 rows
        # made chains stick); it depends on the data only through K_j = #{rows: y > j}.
        # K_j runs over j < EXACT_COUNTS one j at a time; above, over the runs of j
        # between consecutive distinct counts in closed form (``_log_rising``), so the
        # cost does not grow with max(y).
        phi = params["phi"]
        k_j, tail = (
            statistics(rows.y) if rows.exceedances is None else (rows.exceedances, rows.tail)
        )
        j = pt.arange(k_j.shape[0])
        counts = pt.sum(k_j * pt.log1p(j / phi))
        sum_y = pt.sum(k_j)  # sum(y) as sum_j K_j: the same integer, not over every row
        if tail is not None:
            counts = counts + pt.sum(tail[2] * _log_rising(tail[0], tail[1], phi, pt))
            sum_y = sum_y + pt.sum(tail[2] * (tail[1] - tail[0]))
        if not stable:
            # log1p(mu / phi) = log(mu + phi) - log(phi): one libm log per row instead
            # of log1p (numba calls glibc, whose log1p costs about 10 ns more a row);
            # its rounding, phi * eps * log(phi) a row, is what the stable form avoids.
            mu = pt.exp(rows.log_exposure + eta)
            return (
                counts
                + (sum_y + rows.y.shape[0] * phi) * pt.log(phi)
                - pt.sum((rows.y + phi) * pt.log(mu + phi))
            )
        # exp(.) times 1/phi, not exp(. - log phi): PyTensor rewrites log1p(exp(x)) to
        # a branchy softplus; and one scalar reciprocal, not a division per row.
        r = pt.exp(rows.log_exposure + eta) * pt.reciprocal(phi)
        return counts - pt.sum((rows.y + phi) * pt.log1p(r))

    def observed(self, name: str, eta: Any, rows: Rows, params: dict, dims: str) -> Any:
        """Return ``pm.NegativeBinomial`` observed on the rows."""
        return pm.NegativeBinomial(
            name,
            mu=pt.exp(rows.log_exposure + eta),
            alpha=params["phi"],
            observed=rows.y,
            dims=dims,
        )

    def information_weight(self, y: np.ndarray, mean: np.ndarray, weight: np.ndarray) -> Any:
        """Return ``mean / (1 + mean / phi)`` with a moment estimate of ``phi``."""
        y = y.astype(float)
        excess = np.sum((y - mean) ** 2 - mean)
        phi = np.sum(mean**2) / excess if excess > 0 else np.inf
        return mean / (1 + mean / phi)

    def pointwise(self, eta: np.ndarray, rows: Rows, params: dict) -> np.ndarray:
        """Return the NB2 log density of each row's count, dims (draw, row)."""
        y = rows.y
        log_mu = eta + rows.log_exposure
        phi = params["phi"][:, None]
        # The stable form of the model's normaliser (see ``normaliser``): sum_{j<y}
        # log1p(j/phi) from a table up to EXACT_COUNTS, above it in closed form.
        top = min(max(int(y.max()), 1), EXACT_COUNTS)
        j = np.arange(top)
        table = np.concatenate(
            [np.zeros((phi.shape[0], 1)), np.cumsum(np.log1p(j / phi), axis=1)], axis=1
        )
        small = np.minimum(y, top)
        counts = table[:, small]
        big = np.flatnonzero(y > top)
        if big.size:
            counts[:, big] += _log_rising(float(top), y[big].astype(float), phi, np)
        return (
            counts
            + y * log_mu
            - special.gammaln(y + 1)
            - (y + phi) * np.log1p(np.exp(log_mu - np.log(phi)))
        )

    def replicate(
        self, eta: np.ndarray, rows: Rows, params: dict, rng: np.random.Generator
    ) -> np.ndarray:
        """Return NB2 replicates, a Poisson draw of a gamma-distributed rate."""
        rate = np.exp(eta + rows.log_exposure)
        phi = params["phi"][:, None]
        return rng.poisson(rng.gamma(phi, rate / phi))

    def draw(
        self,
        eta: np.ndarray,
        exposure: np.ndarray,
        trials: np.ndarray | None,
        params: dict,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Return NB2 counts at a known ``phi``: a Poisson draw of a gamma-distributed mean."""
        mu = exposure * np.exp(eta)
        return rng.poisson(rng.gamma(params["phi"], mu / params["phi"]))


class Binomial(Family):
    """Binomial proportions of ``trials``: logit link, no offset; exp(slope) an odds ratio."""

    name = "binomial"
    link = "logit"
    scale = "odds ratio"
    a_prior_mean = 0.0
    of_trials = True

    def normaliser(self, eta: Any, rows: Rows, params: dict, stable: bool = True) -> Any:
        r"""Return :math:`-\sum N \log(1 + e^\eta)` (see :meth:`Family.normaliser`)."""
        return -pt.sum(rows.trials * pt.softplus(eta))

    def observed(self, name: str, eta: Any, rows: Rows, params: dict, dims: str) -> Any:
        """Return ``pm.Binomial`` observed on the rows."""
        return pm.Binomial(name, n=rows.trials, logit_p=eta, observed=rows.y, dims=dims)

    def pointwise(self, eta: np.ndarray, rows: Rows, params: dict) -> np.ndarray:
        """Return the binomial log probability of each row's count, dims (draw, row)."""
        y, n = rows.y, cast(np.ndarray, rows.trials)
        log_choose = special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
        return log_choose + y * eta - n * np.logaddexp(0.0, eta)

    def replicate(
        self, eta: np.ndarray, rows: Rows, params: dict, rng: np.random.Generator
    ) -> np.ndarray:
        """Return binomial replicates out of each row's trials."""
        return rng.binomial(cast(np.ndarray, rows.trials).astype(np.int64), special.expit(eta))

    def inverse_link(self, eta: Any) -> Any:
        """Return the probability, the inverse logit."""
        return special.expit(eta)

    def draw(
        self,
        eta: np.ndarray,
        exposure: np.ndarray,
        trials: np.ndarray | None,
        params: dict,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Return binomial counts out of each row's ``trials``."""
        return rng.binomial(cast(np.ndarray, trials), special.expit(eta))


#: The families by name, from their classes (``spec.FAMILIES``, the spec's allowed values,
#: must be the same names: ``tests/test_families.py``).
FAMILIES: dict[str, Family] = {f.name: f for f in (Poisson(), NegativeBinomial(), Binomial())}


def get(name: str) -> Family:
    """Return the family called ``name``; a clear error naming the choices otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}: choose one of {tuple(FAMILIES)}")
    return FAMILIES[name]


#: Its own names and those re-exported from :mod:`socialgradient.model.nb_counts`.
__all__ = [
    "EXACT_COUNTS",
    "FAMILIES",
    "OVERDISPERSED_Z",
    "Binomial",
    "Family",
    "NegativeBinomial",
    "Poisson",
    "Rows",
    "get",
    "overdispersed",
]
