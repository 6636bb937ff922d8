r"""Strata: offsets :math:`\gamma_s + \delta_s w_i` to the intercept and slope per stratum.

For a stratified table (one row per LSOA x stratum, e.g. age band) each non-reference level
has offsets to the log rate and the log gradient (``stratum_offset``), zero for the
reference, the level with most children (``stratum_effect``, dims stratum, effect). With
several stratum columns (``strata = ["age_band", "gender"]``) each column has its own
offsets, added on the log scale, each zero at its column's reference. Priors
Normal(0, [1, 0.5]) (``stratum_intercept``, ``stratum_slope`` in ``[priors]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from socialgradient.model.terms.base import Context, NewRows, Term


@dataclass(frozen=True)
class Strata(Term):
    """Stratum levels and each row's.

    ``levels``: the reference (most children) first; with several stratum columns every
    column's levels labelled ``column=level``, column after column, each column's reference
    first. ``index``: position of each row's level in ``levels``, dims (row,), or (row,
    column) with several columns. ``column``: the stratum column ("" with several);
    ``columns``: the columns when there are several (() for one).
    """

    levels: tuple[str, ...]
    index: np.ndarray
    column: str = ""
    columns: tuple[str, ...] = ()

    name = "strata"
    spec_keys = ("stratum", "strata")
    reported = ("stratum_effect", "stratum_offset")
    cells = True
    on_rows = True
    adds_coords = True  # in its phase, with its variables

    @classmethod
    def encode(
        cls, table: pd.DataFrame, spec: Any, core: Any, la_table: pd.DataFrame | None
    ) -> Strata | None:
        """Return the levels of the spec's stratum column(s) and each row's."""
        stratum = spec.strata or spec.stratum or None
        columns = [stratum] if isinstance(stratum, str) else list(stratum or [])
        if not columns:
            return None
        if len(columns) == 1:
            levels, index = _levels(table, columns[0])
            return cls(levels, index, columns[0])
        parts: list[str] = []
        start = 0
        several = np.empty((len(table), len(columns)), dtype=np.int64)
        for k, column in enumerate(columns):
            levels, index = _levels(table, column)
            parts += [f"{column}={level}" for level in levels]
            several[:, k] = index + start
            start += len(levels)
        return cls(tuple(parts), several, "", tuple(columns))

    @classmethod
    def from_tree(cls, tree: xr.DataTree, const: xr.Dataset) -> Strata | None:
        """Return the strata a fit records.

        Return the strata a fit records (attrs ``strata``, ``stratum_columns``; the row
        coordinates).
        """
        levels = tuple(json.loads(tree.attrs.get("strata", "[]")))
        if not levels:
            return None
        columns = tuple(json.loads(tree.attrs.get("stratum_columns", "{}")))
        position = {level: i for i, level in enumerate(levels)}
        if columns:
            index = np.column_stack(
                [
                    [position[f"{c}={s}"] for s in const[f"stratum_{c}"].values.astype(str)]
                    for c in columns
                ]
            )
        else:
            index = np.array([position[s] for s in const["stratum"].values.astype(str)])
        return cls(levels, index, tree.attrs.get("stratum_name", ""), columns)

    @classmethod
    def absent_attrs(cls) -> dict[str, str]:
        """Return ``stratum_name`` "" and ``strata`` "[]": every fit records its strata."""
        return {"stratum_name": "", "strata": "[]"}

    @property
    def positions(self) -> np.ndarray:
        """Position in ``levels`` of each row's level of each column, dims (row, column)."""
        return self.index[:, None] if self.index.ndim == 1 else self.index

    def column_levels(self) -> dict[str, list[str]]:
        """Return ``{column: [levels, reference first]}`` with several stratum columns."""
        labels = np.asarray(self.levels)
        out = {}
        for k, column in enumerate(self.columns):
            used = np.unique(self.positions[:, k])
            out[column] = [str(label).partition("=")[2] for label in labels[used]]
        return out

    def coords(self) -> dict[str, list]:
        """Return the ``stratum`` coordinate."""
        return {"stratum": list(self.levels)}

    def row_coords(self, n_rows: int) -> dict[str, Any]:
        """Return each cell's stratum (one ``stratum_<column>`` per column with several)."""
        labels = np.asarray(self.levels)[self.index]
        if not self.columns:
            return {"stratum": ("cell", labels)}
        coords = {}
        for k, column in enumerate(self.columns):
            level = np.char.partition(labels[:, k].astype(str), "=")[:, 2]
            coords[f"stratum_{column}"] = ("cell", level)
        return coords

    def attrs(self) -> dict[str, str]:
        """Return ``stratum_name``, ``strata`` and, with several columns, their levels."""
        out = {"stratum_name": self.column, "strata": json.dumps(list(self.levels))}
        if self.columns:
            out["stratum_columns"] = json.dumps(self.column_levels())
        return out

    def hash_parts(self) -> list[np.ndarray]:
        """Return each row's level label(s)."""
        return [np.asarray(self.levels)[self.index]]

    def rows(self, ctx: Context) -> None:
        """Add the ``stratum`` coordinate and each row's stratum offsets (of each column)."""
        pm.modelcontext(None).add_coords(self.coords())
        data, order, w = ctx.data, ctx.order, ctx.w
        offset = self._effect(ctx)
        n_s = len(self.levels)
        s_y: Any = 0.0
        s_yw: Any = 0.0
        for s_idx in self.positions.T:  # one stratum column after another
            ctx.eta = ctx.eta + offset[s_idx[order], 0] + offset[s_idx[order], 1] * w
            s_y = s_y + np.bincount(s_idx, weights=data.y, minlength=n_s)
            s_yw = s_yw + np.bincount(s_idx, weights=data.y * data.w, minlength=n_s)
        ctx.linear = ctx.linear + pt.sum(offset[:, 0] * s_y + offset[:, 1] * s_yw)

    def _effect(self, ctx: Context) -> Any:
        """Create the stratum offsets to the intercept and slope.

        Stratum offsets to the intercept and slope, zero for the reference stratum (of
        each stratum column, with several).

        Priors: Normal(0, 1) on the log-rate offset (rate ratios 0.14-7 against the
        reference), Normal(0, 0.5) on the slope offset (gradient ratios 0.37-2.7). The
        reference stratum is the one with most children, so its offsets are the best
        identified zero.
        """
        p = ctx.priors
        # each column's levels sit together in `levels`, its reference (lowest position) first
        starts = sorted(int(i) for i in self.positions.min(axis=0))
        contrasts = [s for i, s in enumerate(self.levels) if i not in starts]
        model = pm.modelcontext(None)
        model.add_coord("stratum_contrast", contrasts)
        raw = pm.Normal(
            "stratum_offset",
            0.0,
            np.array([p.stratum_intercept, p.stratum_slope]),
            dims=("stratum_contrast", "effect"),
        )
        if not self.columns:
            full = pt.concatenate([pt.zeros((1, 2)), raw], axis=0)
        else:  # a zero row at each column's reference, the column's contrasts after it
            parts, k = [], 0
            for start, stop in zip(starts, [*starts[1:], len(self.levels)], strict=True):
                n = stop - start - 1
                parts += [pt.zeros((1, 2)), raw[k : k + n]]
                k += n
            full = pt.concatenate(parts, axis=0)
        return pm.Deterministic("stratum_effect", full, dims=("stratum", "effect"))

    def row_effect(self, chain: xr.Dataset, data: Any, effect: np.ndarray) -> np.ndarray:
        """Add each row's stratum offsets (of each column) to its LA effects."""
        offset = chain["stratum_effect"].transpose("draw", "stratum", "effect").values
        for s_idx in self.positions.T:  # one stratum column after another
            effect = effect + offset[:, s_idx]
        return effect

    def predict_columns(self) -> list[str]:
        """Return the stratum column(s)."""
        return list(self.columns) or [self.column]

    def predict_positions(self, table: pd.DataFrame) -> np.ndarray:
        """Return each row's position in ``levels`` per stratum column, dims (row, column).

        Raises ValueError naming the column and its levels the fit does not know.
        """
        columns = self.predict_columns()
        position = {level: i for i, level in enumerate(self.levels)}
        out = np.empty((len(table), len(columns)), dtype=np.int64)
        for k, column in enumerate(columns):
            values = table[column].astype(str).to_numpy()
            labels = values if not self.columns else np.char.add(f"{column}=", values)
            unknown = sorted(set(values[[label not in position for label in labels]]))
            if unknown:
                prefix = f"{column}=" if self.columns else ""
                fitted = [s.removeprefix(prefix) for s in self.levels if s.startswith(prefix)]
                raise ValueError(
                    f"predict: stratum column {column!r} has levels the fit does not know: "
                    f"{unknown} (the fit's: {fitted})"
                )
            out[:, k] = [position[label] for label in labels]
        return out

    def predict_eta(
        self, posterior: xr.Dataset, new: NewRows, eta: np.ndarray, slope: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add each new row's stratum offsets (of each column): ``gamma_s + delta_s w``."""
        offset = posterior["stratum_effect"].transpose("chain", "draw", "stratum", "effect").values
        for s_idx in self.predict_positions(new.table).T:
            eta = eta + offset[:, :, s_idx, 0] + offset[:, :, s_idx, 1] * new.w
            slope = slope + offset[:, :, s_idx, 1]
        return eta, slope


def _levels(table: pd.DataFrame, column: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Return a stratum column's levels, most children first (the reference), and each row's."""
    size = table.groupby(table[column].astype(str))["children"].sum()
    levels = tuple(size.sort_values(ascending=False, kind="stable").index)
    lookup = {level: i for i, level in enumerate(levels)}
    return levels, table[column].astype(str).map(lookup).to_numpy()
