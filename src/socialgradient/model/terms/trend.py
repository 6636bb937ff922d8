r"""A stratum trend: a numeric cell column adding a main effect and a slope change.

A stratum trend: a numeric cell column :math:`t` adding :math:`\kappa (t - \bar t) +
\tau (t - \bar t) w_i`.

``stratum_trend = "age"`` (e.g. single years of age): :math:`\kappa` is the change in the
log rate per unit of :math:`t` (at :math:`w = 0`), :math:`\tau` the change in the log
gradient per unit (``trend_effect``, dims effect); :math:`\bar t` is the child-weighted mean
and the column is scaled by its child-weighted SD while sampling (``trend_coef``). Priors
Normal(0, [1, 0.5]) per SD (``trend_intercept``, ``trend_slope`` in ``[priors]``). It
combines with strata (then the trend is within their levels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from socialgradient.model.terms.base import Context, NewRows, Term, weighted_moments


@dataclass(frozen=True)
class Trend(Term):
    """The stratum trend: ``values`` (dims row), raw; ``column`` its name."""

    values: np.ndarray
    column: str

    name = "trend"
    spec_keys = ("stratum_trend",)
    reported = ("trend_effect",)
    derived = ("trend_coef",)
    cells = True
    on_rows = True

    @classmethod
    def encode(
        cls, table: pd.DataFrame, spec: Any, core: Any, la_table: pd.DataFrame | None
    ) -> Trend | None:
        """Return the trend's column of the table."""
        column = spec.stratum_trend
        return cls(table[column].to_numpy(dtype=float), column) if column else None

    @classmethod
    def from_tree(cls, tree: xr.DataTree, const: xr.Dataset) -> Trend | None:
        """Return the trend a fit keeps (attr ``stratum_trend``, ``trend_value``)."""
        column = tree.attrs.get("stratum_trend", "")
        return cls(const["trend_value"].values, column) if column else None

    def scaling(self, data: Any) -> tuple[float, float]:
        """Return the child-weighted mean and SD of the column."""
        mean, sd = weighted_moments(self.values, data.children)
        return float(mean), float(sd)

    def constant_data(self, row: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``trend_value`` (dims row)."""
        return {"trend_value": (row, self.values)}, {}

    def attrs(self) -> dict[str, str]:
        """Return ``stratum_trend``, the column."""
        return {"stratum_trend": self.column}

    def hash_parts(self) -> list[np.ndarray]:
        """Return the values and the column's name."""
        return [self.values, np.asarray(self.column)]

    def rows(self, ctx: Context) -> None:
        r"""Add :math:`\kappa t + \tau t w` (standardised ``t``) to the rows."""
        data, order, w, p = ctx.data, ctx.order, ctx.w, ctx.priors
        mean, sd = self.scaling(data)
        coef = pm.Normal(
            "trend_coef", 0.0, np.array([p.trend_intercept, p.trend_slope]), dims="effect"
        )
        pm.Deterministic("trend_effect", coef / sd, dims="effect")
        t = (self.values - mean) / sd
        ctx.eta = ctx.eta + coef[0] * t[order] + coef[1] * (t[order] * w)
        ctx.linear = ctx.linear + coef[0] * (data.y @ t) + coef[1] * ((data.y * data.w) @ t)

    def row_eta(self, chain: xr.Dataset, data: Any, eta: np.ndarray) -> np.ndarray:
        """Add the trend's effects per unit to ``eta``."""
        mean, _ = self.scaling(data)
        t = self.values - mean
        coef = chain["trend_effect"].transpose("draw", "effect").values
        eta += coef[:, :1] * t + coef[:, 1:] * (t * data.w)
        return eta

    def predict_columns(self) -> list[str]:
        """Return the trend's column."""
        return [self.column]

    def predict_eta(
        self, posterior: xr.Dataset, new: NewRows, eta: np.ndarray, slope: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add the trend's effects per unit at the new rows' column (centred as the fit's)."""
        mean, _ = self.scaling(new.fitted)
        t = new.table[self.column].to_numpy(float) - mean
        coef = posterior["trend_effect"].transpose("chain", "draw", "effect").values
        return eta + coef[..., :1] * t + coef[..., 1:] * (t * new.w), slope + coef[..., 1:] * t
