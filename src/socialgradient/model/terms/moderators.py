r"""Neighbourhood moderators: table columns :math:`z_i` that add :math:`g z_i + h z_i w_i`.

A main effect and a change of the within-LA slope per moderator, adjusted for LA
deprivation; centred at the child-weighted mean and scaled by the child-weighted SD while
sampling (``moderator_coef``), reported per unit (``moderator_effect``, dims moderator,
effect). Priors Normal(0, [1, 0.5]) per SD (``moderator_intercept``, ``moderator_slope``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from socialgradient.model.terms.base import Context, NewRows, Term, weighted_moments


@dataclass(frozen=True)
class NeighbourhoodModerators(Term):
    """Neighbourhood moderators: ``values`` (dims row, moderator), raw; ``names``."""

    values: np.ndarray
    names: tuple[str, ...]

    name = "moderators"
    spec_keys = ("neighbourhood_moderators",)
    reported = ("moderator_effect",)
    derived = ("moderator_coef",)
    on_rows = True
    adds_coords = True  # in its phase, with its variables

    @classmethod
    def encode(
        cls, table: pd.DataFrame, spec: Any, core: Any, la_table: pd.DataFrame | None
    ) -> NeighbourhoodModerators | None:
        """Return the moderator columns of the table."""
        names = tuple(spec.neighbourhood_moderators)
        if not names:
            return None
        return cls(table[list(names)].to_numpy(dtype=float), names)

    @classmethod
    def from_tree(cls, tree: xr.DataTree, const: xr.Dataset) -> NeighbourhoodModerators | None:
        """Return the moderators a fit keeps in ``constant_data``."""
        if "moderator_value" not in const:
            return None
        return cls(const["moderator_value"].values, tuple(const["moderator"].values.astype(str)))

    def scaling(self, data: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return the child-weighted mean and SD of each moderator, dims (moderator,)."""
        return weighted_moments(self.values, data.children)

    def coords(self) -> dict[str, list]:
        """Return the ``moderator`` coordinate."""
        return {"moderator": list(self.names)}

    def constant_data(self, row: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``moderator_value`` (dims row, moderator)."""
        return (
            {"moderator_value": ((row, "moderator"), self.values)},
            {"moderator": list(self.names)},
        )

    def hash_parts(self) -> list[np.ndarray]:
        """Return the values and the names."""
        return [self.values, np.asarray(self.names)]

    def rows(self, ctx: Context) -> None:
        """Add the ``moderator`` coordinate and ``Z g + (Z w) h`` (standardised ``Z``)."""
        pm.modelcontext(None).add_coords(self.coords())
        data, order, w, p = ctx.data, ctx.order, ctx.w, ctx.priors
        mean, sd = self.scaling(data)
        coef = pm.Normal(
            "moderator_coef",
            0.0,
            np.array([p.moderator_intercept, p.moderator_slope]),
            dims=("moderator", "effect"),
        )
        pm.Deterministic("moderator_effect", coef / sd[:, None], dims=("moderator", "effect"))
        z = (self.values - mean) / sd
        ctx.eta = (
            ctx.eta
            + pt.as_tensor(z[order]) @ coef[:, 0]
            + pt.as_tensor(z[order] * w[:, None]) @ coef[:, 1]
        )
        ctx.linear = (
            ctx.linear
            + pt.sum(coef[:, 0] * (data.y @ z))
            + pt.sum(coef[:, 1] * ((data.y * data.w) @ z))
        )

    def row_eta(self, chain: xr.Dataset, data: Any, eta: np.ndarray) -> np.ndarray:
        """Add the moderators' effects per unit to ``eta``."""
        mean, _ = self.scaling(data)
        z = self.values - mean
        coef = chain["moderator_effect"].transpose("draw", "moderator", "effect").values
        eta += coef[..., 0] @ z.T + coef[..., 1] @ (z * data.w[:, None]).T
        return eta

    def predict_columns(self) -> list[str]:
        """Return the moderators' columns (as ``str``: a saved fit's names are numpy's)."""
        return [str(name) for name in self.names]

    def predict_eta(
        self, posterior: xr.Dataset, new: NewRows, eta: np.ndarray, slope: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add the moderators' effects per unit at the new rows' values (centred as the fit's)."""
        mean, _ = self.scaling(new.fitted)
        z = new.table[self.predict_columns()].to_numpy(float) - mean
        effect = posterior["moderator_effect"]
        coef = effect.transpose("chain", "draw", "moderator", "effect").values
        eta = eta + np.einsum("cdk,rk->cdr", coef[..., 0], z)
        slope = slope + np.einsum("cdk,rk->cdr", coef[..., 1], z)
        return eta + np.einsum("cdk,rk->cdr", coef[..., 1], z * new.w[:, None]), slope
