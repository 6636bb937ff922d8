"""The LA outcome as a term: LA totals regressed on the model's own LA slopes.

The regression's statement, its priors and its summary are
:mod:`socialgradient.model.la_outcome`'s; this term encodes the ``[la_outcome]`` of a spec
and adds the regression to the model once the LA effects exist (:func:`add_terms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from socialgradient.model import la_outcome
from socialgradient.model.terms.base import Context, Term


@dataclass(frozen=True)
class LAOutcomeTerm(Term):
    """An LA-level outcome and its covariates, encoded (``outcome``)."""

    outcome: la_outcome.LAOutcomeData

    name = "la_outcome"
    spec_keys = ("la_outcome",)
    reported = ("la_outcome_effect", "la_outcome_intercept", "la_outcome_sd")
    derived = la_outcome.DERIVED

    @classmethod
    def encode(
        cls, table: pd.DataFrame, spec: Any, core: Any, la_table: pd.DataFrame | None
    ) -> LAOutcomeTerm | None:
        """Return the LA totals of the spec's ``[la_outcome]`` columns and covariates."""
        if spec.la_outcome is None:
            return None
        return cls(
            la_outcome.encode(table, spec.la_outcome, core.la, core.la_index, core.m_c, la_table)
        )

    def constant_data(self, row: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the LA totals and covariate values (dims la)."""
        lo = self.outcome
        return (
            {
                "la_outcome_count": ("la", lo.count),
                "la_outcome_trials": ("la", lo.trials),
                "la_outcome_covariate_value": (("la", "la_outcome_covariate"), lo.covariates),
            },
            {"la_outcome_covariate": list(lo.terms)},
        )

    def hash_parts(self) -> list[np.ndarray]:
        """Return the totals, covariates and names."""
        lo = self.outcome
        names = np.asarray([lo.count_name, lo.trials_name, *lo.terms])
        return [lo.count, lo.trials, lo.covariates, names]

    def effects(self, ctx: Context) -> None:
        """Add the LA outcome's likelihood on every draw of the LA slopes."""
        add_terms(ctx.theta, self.outcome)


def add_terms(theta, data: la_outcome.LAOutcomeData) -> None:
    """Add the LA outcome's likelihood on the LA slopes ``theta[:, 1]`` to the current model."""
    model = pm.modelcontext(None)
    model.add_coord("la_outcome_term", ["gradient", *data.terms])
    model.add_coord("la_outcome_covariate", list(data.terms))
    mean, sd = data.covariates.mean(0), data.covariates.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    z_cov = (data.covariates - mean) / sd
    k0 = pm.Normal("la_outcome_intercept", 0.0, 2.5)
    k_g = pm.Normal("la_outcome_gradient", 0.0, 1.0)
    coef = pm.Normal("la_outcome_coef", 0.0, 1.0, dims="la_outcome_covariate")
    sigma = pm.HalfNormal("la_outcome_sd", 0.5)
    z = pm.Normal("la_outcome_z", 0.0, 1.0, dims="la")
    pm.Deterministic(
        "la_outcome_effect", pt.concatenate([k_g[None], coef / sd]), dims="la_outcome_term"
    )
    slope = theta[:, 1]
    eta = k0 + k_g * (slope - slope.mean()) + pt.as_tensor(z_cov) @ coef + sigma * z
    keep = data.trials > 0
    pm.Potential(
        "la_outcome_loglik",
        pm.logp(pm.Binomial.dist(n=data.trials[keep], logit_p=eta[keep]), data.count[keep]).sum(),
    )
