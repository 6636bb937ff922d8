"""The data every model reads: :class:`NeighbourhoodData`, its core and its terms.

The data every model reads: :class:`NeighbourhoodData`, one row per neighbourhood (or
cell), with the within/between decomposition of deprivation and the encoded terms of the
spec (:mod:`socialgradient.model.terms`); built by :meth:`NeighbourhoodData.from_table`,
the model itself is in :mod:`socialgradient.model.build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from socialgradient.data.deprivation import decompose
from socialgradient.model.terms import TERMS, Term
from socialgradient.spec import LAOutcome

EFFECTS = ("intercept", "slope")

T = TypeVar("T", bound=Term)


@dataclass(frozen=True)
class NeighbourhoodData:
    """One outcome of a validated neighbourhood table, encoded for the model.

    Rows are LSOAs (dim ``lsoa``) or, for a term whose rows are cells (strata, a trend),
    LSOA x stratum cells (dim ``cell``, with the LSOA and stratum of each cell as
    coordinates).

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
    exposure : ndarray of float, dims (row,)
        The offset's exposure: ``children`` unless another column was named; for a
        binomial outcome, its trials (the denominator of the observed rates).
    exposure_name : str
        Name of the exposure column.
    trials : ndarray of int, dims (row,), or None
        Binomial trials (None for count families).
    la_name : ndarray of str, dims (la,), or None
        LA names (from the table's ``la_name`` column; None when it has none), for labels.
    terms : tuple of Term
        The encoded terms of the linear predictor, in
        :data:`socialgradient.model.terms.TERMS` order (the LA effects first, always).
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
    # None means ``children``, filled in by __post_init__, so readers always see an array
    exposure: np.ndarray = None  # type: ignore[assignment]
    exposure_name: str = "children"
    trials: np.ndarray | None = None
    la_name: np.ndarray | None = None
    terms: tuple[Term, ...] = ()

    def __post_init__(self) -> None:
        if self.exposure is None:
            object.__setattr__(self, "exposure", self.children)
        if not self.terms:  # the LA effects, which every model has
            object.__setattr__(self, "terms", (TERMS[0](),))

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame,
        outcome: str,
        stratum: str | tuple | list | None = None,
        exposure: str = "children",
        *,
        trials: str = "",
        moderators: Any = (),
        la_table: pd.DataFrame | None = None,
        la_moderators: Any = (),
        la_outcome_spec: LAOutcome | None = None,
        trend: str = "",
    ) -> NeighbourhoodData:
        """Encode a table that has passed :func:`socialgradient.data.schema.validate`.

        (And, for LA moderators or an LA outcome's covariates, an LA table that passed
        :func:`socialgradient.model.moderators.validate_la_table`.) ``stratum``: one stratum
        column, or a sequence of them; ``trend``: the stratum trend's column; the other
        keywords name the terms' columns as a spec does (each term reads its own).
        """
        terms = SimpleNamespace(
            stratum="",
            strata=stratum,
            stratum_trend=trend,
            neighbourhood_moderators=tuple(moderators),
            la_moderators=tuple(la_moderators),
            la_outcome=la_outcome_spec,
        )
        return cls.from_spec(table, outcome, terms, exposure, trials, la_table)

    @classmethod
    def from_spec(
        cls,
        table: pd.DataFrame,
        outcome: str,
        spec: Any,
        exposure: str = "children",
        trials: str = "",
        la_table: pd.DataFrame | None = None,
    ) -> NeighbourhoodData:
        """Encode a validated ``table``'s ``outcome`` with the terms ``spec`` switches on.

        Encode a validated ``table``'s ``outcome`` with the terms ``spec`` (a
        :class:`socialgradient.spec.Spec`, or anything with its term keys) switches on.
        """
        d = decompose(table["income"], table["children"], table["la"])
        denominator = trials or exposure
        encoded = (
            kind() if kind.always else kind.encode(table, spec, d, la_table) for kind in TERMS
        )
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
            exposure=table[denominator].to_numpy(dtype=float),
            exposure_name=denominator,
            trials=table[trials].to_numpy(dtype=np.int64) if trials else None,
            la_name=_la_names(table, d.la),
            terms=tuple(t for t in encoded if t is not None),
        )

    def term(self, kind: type[T]) -> T | None:
        """Return the encoded term of class ``kind``, or None when the data have none."""
        return next((t for t in self.terms if isinstance(t, kind)), None)

    @property
    def row_terms(self) -> bool:
        """Whether a term adds to the rows' linear predictor beyond the LA effects."""
        return any(t.on_rows for t in self.terms)

    @property
    def row_dim(self) -> str:
        """``lsoa`` for one row per LSOA, ``cell`` for LSOA x stratum (or trend) rows."""
        return "cell" if any(t.cells for t in self.terms) else "lsoa"

    @property
    def row_coords(self) -> dict[str, Any]:
        """Return the coordinates of the row dim.

        Coordinates of the row dim (LSOA codes, or cell number with LSOA and stratum;
        with several stratum columns one ``stratum_<column>`` coordinate each).
        """
        if self.row_dim == "lsoa":
            return {"lsoa": self.lsoa}
        coords: dict[str, Any] = {"cell": np.arange(len(self.y)), "lsoa": ("cell", self.lsoa)}
        for t in _overriding(self.terms, "row_coords"):
            coords.update(t.row_coords(len(self.y)))
        return coords

    @property
    def coords(self) -> dict[str, list]:
        """Coordinates for the model's named dims."""
        return self._coords(_overriding(self.terms, "coords"))

    @property
    def model_coords(self) -> dict[str, list]:
        """Return the coordinates a model is created with.

        :attr:`coords` less those of the terms that add theirs in their phases
        (``Term.adds_coords``).
        """
        return self._coords([t for t in _overriding(self.terms, "coords") if not t.adds_coords])

    def _coords(self, terms: list[Term]) -> dict[str, list]:
        """Return the LA, effect and row coordinates with those of ``terms``."""
        coords: dict[str, list] = {"la": list(self.la), "effect": list(EFFECTS)}
        for t in terms:
            coords.update(t.coords())
        if self.row_dim == "cell":
            return {**coords, "cell": list(range(len(self.y)))}
        return {**coords, "lsoa": list(self.lsoa)}


def _overriding(terms: tuple[Term, ...], hook: str) -> list[Term]:
    """Return the terms whose class overrides ``hook`` (the others would add nothing)."""
    return [t for t in terms if getattr(type(t), hook) is not getattr(Term, hook)]


def _la_names(table: pd.DataFrame, la: np.ndarray) -> np.ndarray | None:
    """Return each LA's name, or None when the table has no ``la_name`` column.

    Each LA's name (its first ``la_name`` in the table; the code where it has none),
    or None when the table has no ``la_name`` column.
    """
    if "la_name" not in table:
        return None
    first = table.groupby(table["la"].astype(str), sort=False)["la_name"].first()
    names = first.reindex(la)
    return np.where(names.notna(), names.astype(str), la).astype(str)
