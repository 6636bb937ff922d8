"""The LA outcome as a term: LA totals regressed on the model's own LA slopes.

The regression, its priors and its summary are :mod:`socialgradient.model.la_outcome`'s;
this term encodes the ``[la_outcome]`` of a spec and adds the regression to the model once
the LA effects exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

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
        la_outcome.add_terms(ctx.theta, self.outcome)
