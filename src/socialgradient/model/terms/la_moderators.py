r"""LA moderators: columns :math:`v_l` of an LA table that shift the LA effects' means.

An LA moderator adds :math:`c v_l` to the mean of the LA intercept and :math:`d v_l` to the
mean of the LA slope; centred at the child-weighted (LA children) mean and scaled by the SD
while sampling (``la_moderator_coef``), reported per unit (``la_moderator_effect``, dims
la_moderator, effect). Priors Normal(0, [1, 0.5]) per SD (``moderator_intercept``,
``moderator_slope`` in ``[priors]``). The LA table is read and checked by
:mod:`socialgradient.model.moderators`.
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
class LAModerators(Term):
    """LA moderators: ``values`` (dims la, la_moderator), raw; ``names`` their columns."""

    values: np.ndarray
    names: tuple[str, ...]

    name = "la_moderators"
    adds_coords = True  # in its phase, with its variables
    spec_keys = ("la_moderators", "la_data")
    reported = ("la_moderator_effect",)
    derived = ("la_moderator_coef",)

    @classmethod
    def encode(
        cls, table: pd.DataFrame, spec: Any, core: Any, la_table: pd.DataFrame | None
    ) -> LAModerators | None:
        """Return the LA table's moderator columns in the model's LA order."""
        names = tuple(spec.la_moderators)
        if not names:
            return None
        if la_table is None:
            raise ValueError(f"LA moderators {list(names)} need an LA table (la_data)")
        values = la_table.set_index("la").loc[core.la, list(names)].to_numpy(dtype=float)
        return cls(values, names)

    @classmethod
    def from_tree(cls, tree: xr.DataTree, const: xr.Dataset) -> LAModerators | None:
        """Return the moderators a fit keeps in ``constant_data``."""
        if "la_moderator_value" not in const:
            return None
        return cls(
            const["la_moderator_value"].values, tuple(const["la_moderator"].values.astype(str))
        )

    def scaling(self, data: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return the child-weighted (LA children) mean and SD of each moderator."""
        la_children = np.bincount(data.la_index, data.children, len(data.la))
        return weighted_moments(self.values, la_children)

    def coords(self) -> dict[str, list]:
        """Return the ``la_moderator`` coordinate."""
        return {"la_moderator": list(self.names)}

    def constant_data(self, row: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``la_moderator_value`` (dims la, la_moderator)."""
        return (
            {"la_moderator_value": (("la", "la_moderator"), self.values)},
            {"la_moderator": list(self.names)},
        )

    def hash_parts(self) -> list[np.ndarray]:
        """Return the values and the names."""
        return [self.values, np.asarray(self.names)]

    def centre(self, ctx: Context) -> None:
        """Add the ``la_moderator`` coordinate and ``V c``, ``V d`` to the LA effects' means.

        ``V`` is the moderators standardised (:meth:`scaling`).
        """
        pm.modelcontext(None).add_coords(self.coords())
        p = ctx.priors
        mean, sd = self.scaling(ctx.data)
        v = (self.values - mean) / sd
        coef = pm.Normal(
            "la_moderator_coef",
            0.0,
            np.array([p.moderator_intercept, p.moderator_slope]),
            dims=("la_moderator", "effect"),
        )
        pm.Deterministic("la_moderator_effect", coef / sd[:, None], dims=("la_moderator", "effect"))
        ctx.centre = ctx.centre + pt.as_tensor(v) @ coef

    def predict_eta(
        self, posterior: xr.Dataset, new: NewRows, eta: np.ndarray, slope: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add nothing (the fitted LA effects include the moderators); refuse new LAs.

        A new LA's effects would need its moderators' values, which a table of
        neighbourhoods does not carry.
        """
        if new.new_la.any():
            raise ValueError(
                "predict: new LAs need LA moderators, which this fit uses; "
                f"unknown LAs: {sorted(set(new.la[new.new_la]))}"
            )
        return eta, slope
