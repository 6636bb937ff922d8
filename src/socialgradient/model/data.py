"""The data every model reads: :class:`NeighbourhoodData`, one row per neighbourhood (and
stratum), with the within/between decomposition of deprivation, strata, trend and moderator
columns and their scaling (built by :meth:`NeighbourhoodData.from_table`; the model itself is
in :mod:`socialgradient.model.build`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from socialgradient.data.deprivation import decompose
from socialgradient.model import la_outcome
from socialgradient.spec import LAOutcome

EFFECTS = ("intercept", "slope")


@dataclass(frozen=True)
class NeighbourhoodData:
    """One outcome of a validated neighbourhood table, encoded for the model.

    Rows are LSOAs (dim ``lsoa``) or, for a stratified table, LSOA x stratum cells (dim
    ``cell``, with the LSOA and stratum of each cell as coordinates).

    Attributes
    ----------
    lsoa : ndarray of str, dims (row,)
        LSOA code of each row.
    la : ndarray of str, dims (la,)
        LA codes.
    la_index : ndarray of int, dims (row,)
        Position of each row's LA in ``la``.
    children : ndarray of float, dims (row,)
        Child population (weights of the LA deprivation means).
    income : ndarray of float, dims (row,)
        Share (0-1) of families in income deprivation.
    y : ndarray of int, dims (row,)
        Outcome counts.
    w : ndarray, dims (row,); m_la, m_c : ndarray, dims (la,); x_bar : float
        The deprivation decomposition in 10-point units.
    outcome : str
        Name of the outcome column.
    strata : tuple of str
        Stratum levels, the reference (most children) first; empty when unstratified. With
        several stratum columns, every column's levels labelled ``column=level``, column
        after column, each column's reference first.
    stratum_index : ndarray of int, dims (row,), or (row, column) with several columns, or None
        Position of each row's stratum (of each column's level) in ``strata``.
    stratum_name : str
        Name of the stratum column ("" when unstratified or with several columns).
    stratum_columns : tuple of str
        The stratum columns when there are several (() for none or one).
    trend : ndarray of float, dims (row,), or None
        The stratum trend's column, raw values (e.g. age in years); ``trend_name`` its name.
    exposure : ndarray of float, dims (row,)
        The offset's exposure: ``children`` unless another column was named; for a
        binomial outcome, its trials (the denominator of the observed rates).
    exposure_name : str
        Name of the exposure column.
    trials : ndarray of int, dims (row,), or None
        Binomial trials (None for count families).
    moderators : ndarray of float, dims (row, moderator), or None
        Neighbourhood moderators, raw values; ``moderator_names`` their columns.
    la_moderators : ndarray of float, dims (la, la_moderator), or None
        LA moderators, raw values; ``la_moderator_names`` their columns.
    la_outcome : LAOutcomeData or None
        An LA-level outcome and its covariates (:mod:`socialgradient.model.la_outcome`).
    la_name : ndarray of str, dims (la,), or None
        LA names (from the table's ``la_name`` column; None when it has none), for labels.
    """

    lsoa: np.ndarray
    la: np.ndarray
    la_index: np.ndarray
    children: np.ndarray
    income: np.ndarray
    y: np.ndarray
    w: np.ndarray
    m_la: np.ndarray
    m_c: np.ndarray
    x_bar: float
    outcome: str
    strata: tuple = ()
    stratum_index: np.ndarray | None = None
    stratum_name: str = ""
    stratum_columns: tuple = ()
    trend: np.ndarray | None = None
    trend_name: str = ""
    exposure: np.ndarray | None = None
    exposure_name: str = "children"
    trials: np.ndarray | None = None
    moderators: np.ndarray | None = None
    moderator_names: tuple = ()
    la_moderators: np.ndarray | None = None
    la_moderator_names: tuple = ()
    la_outcome: la_outcome.LAOutcomeData | None = None
    la_name: np.ndarray | None = None

    def __post_init__(self):
        if self.exposure is None:
            object.__setattr__(self, "exposure", self.children)

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame,
        outcome: str,
        stratum: str | tuple | list | None = None,
        exposure: str = "children",
        *,
        trials: str = "",
        moderators=(),
        la_table: pd.DataFrame | None = None,
        la_moderators=(),
        la_outcome_spec: LAOutcome | None = None,
        trend: str = "",
    ) -> NeighbourhoodData:
        """Encode a table that has passed :func:`socialgradient.data.schema.validate`
        (and, for LA moderators or an LA outcome's covariates, an LA table that passed
        :func:`socialgradient.model.moderators.validate_la_table`). ``stratum``: one stratum
        column, or a sequence of them; ``trend``: the stratum trend's column."""
        d = decompose(table["income"], table["children"], table["la"])
        columns = [stratum] if isinstance(stratum, str) else list(stratum or [])
        strata, stratum_index = (), None
        if len(columns) == 1:
            stratum = columns[0]
            strata, stratum_index = _levels(table, stratum)
        elif columns:
            stratum, parts, start = "", [], 0
            stratum_index = np.empty((len(table), len(columns)), dtype=np.int64)
            for k, column in enumerate(columns):
                levels, index = _levels(table, column)
                parts += [f"{column}={level}" for level in levels]
                stratum_index[:, k] = index + start
                start += len(levels)
            strata = tuple(parts)
        moderators, la_moderators = tuple(moderators), tuple(la_moderators)
        la_values = None
        if la_moderators:
            la_values = (
                la_table.set_index("la").loc[d.la, list(la_moderators)].to_numpy(dtype=float)
            )
        denominator = trials or exposure
        return cls(
            lsoa=table["lsoa"].to_numpy(dtype=str),
            la=d.la,
            la_index=d.la_index,
            children=table["children"].to_numpy(dtype=float),
            income=table["income"].to_numpy(dtype=float),
            y=table[outcome].to_numpy(dtype=np.int64),
            w=d.w,
            m_la=d.m_la,
            m_c=d.m_c,
            x_bar=d.x_bar,
            outcome=outcome,
            strata=strata,
            stratum_index=stratum_index,
            stratum_name=stratum or "",
            stratum_columns=tuple(columns) if len(columns) > 1 else (),
            trend=table[trend].to_numpy(dtype=float) if trend else None,
            trend_name=trend,
            exposure=table[denominator].to_numpy(dtype=float),
            exposure_name=denominator,
            trials=table[trials].to_numpy(dtype=np.int64) if trials else None,
            moderators=(table[list(moderators)].to_numpy(dtype=float) if moderators else None),
            moderator_names=moderators,
            la_moderators=la_values,
            la_moderator_names=la_moderators,
            la_outcome=None
            if la_outcome_spec is None
            else la_outcome.encode(table, la_outcome_spec, d.la, d.la_index, d.m_c, la_table),
            la_name=_la_names(table, d.la),
        )

    @property
    def row_dim(self) -> str:
        """``lsoa`` for one row per LSOA, ``cell`` for LSOA x stratum (or trend) rows."""
        return "cell" if self.strata or self.trend_name else "lsoa"

    @property
    def stratum_positions(self) -> np.ndarray:
        """Position in ``strata`` of each row's level of each stratum column, dims
        (row, column)."""
        index = np.asarray(self.stratum_index)
        return index[:, None] if index.ndim == 1 else index

    @property
    def row_coords(self) -> dict:
        """Coordinates of the row dim (LSOA codes, or cell number with LSOA and stratum;
        with several stratum columns one ``stratum_<column>`` coordinate each)."""
        if self.row_dim == "lsoa":
            return {"lsoa": self.lsoa}
        cell = np.arange(len(self.y))
        coords = {"cell": cell, "lsoa": ("cell", self.lsoa)}
        if self.stratum_columns:
            labels = np.asarray(self.strata)[self.stratum_index]
            for k, column in enumerate(self.stratum_columns):
                level = np.char.partition(labels[:, k].astype(str), "=")[:, 2]
                coords[f"stratum_{column}"] = ("cell", level)
        elif self.strata:
            coords["stratum"] = ("cell", np.asarray(self.strata)[self.stratum_index])
        return coords

    @property
    def coords(self) -> dict[str, list]:
        """Coordinates for the model's named dims."""
        coords = {"la": list(self.la), "effect": list(EFFECTS)}
        if self.moderator_names:
            coords["moderator"] = list(self.moderator_names)
        if self.la_moderator_names:
            coords["la_moderator"] = list(self.la_moderator_names)
        if self.strata:
            return {**coords, "cell": list(range(len(self.y))), "stratum": list(self.strata)}
        if self.trend_name:
            return {**coords, "cell": list(range(len(self.y)))}
        return {**coords, "lsoa": list(self.lsoa)}

    def moderator_scaling(self) -> tuple[np.ndarray, np.ndarray]:
        """Child-weighted mean and SD of each neighbourhood moderator, dims (moderator,)."""
        return _weighted_moments(self.moderators, self.children)

    def trend_scaling(self) -> tuple[float, float]:
        """Child-weighted mean and SD of the stratum trend's column."""
        mean, sd = _weighted_moments(self.trend, self.children)
        return float(mean), float(sd)

    def la_moderator_scaling(self) -> tuple[np.ndarray, np.ndarray]:
        """Child-weighted (LA children) mean and SD of each LA moderator, dims
        (la_moderator,)."""
        la_children = np.bincount(self.la_index, self.children, len(self.la))
        return _weighted_moments(self.la_moderators, la_children)


def _levels(table: pd.DataFrame, column: str) -> tuple[tuple, np.ndarray]:
    """A stratum column's levels, most children first (the reference), and each row's."""
    size = table.groupby(table[column].astype(str))["children"].sum()
    levels = tuple(size.sort_values(ascending=False, kind="stable").index)
    lookup = {level: i for i, level in enumerate(levels)}
    return levels, table[column].astype(str).map(lookup).to_numpy()


def _la_names(table: pd.DataFrame, la: np.ndarray) -> np.ndarray | None:
    """Each LA's name (its first ``la_name`` in the table; the code where it has none),
    or None when the table has no ``la_name`` column."""
    if "la_name" not in table:
        return None
    first = table.groupby(table["la"].astype(str), sort=False)["la_name"].first()
    names = first.reindex(la)
    return np.where(names.notna(), names.astype(str), la).astype(str)


def _weighted_moments(values: np.ndarray, weight: np.ndarray):
    mean = np.average(values, axis=0, weights=weight)
    sd = np.sqrt(np.average((values - mean) ** 2, axis=0, weights=weight))
    return mean, sd
