r"""What a term of the linear predictor is: :class:`Term`, and the :class:`Context` it adds to.

A term owns its data (encoded from the table and the spec by :meth:`Term.encode`, rebuilt
from a saved fit by :meth:`Term.from_tree`), its spec keys, its PyMC contribution and its
reported quantities. The model (:func:`socialgradient.model.build.build_model`) runs three
phases over the terms, in :data:`socialgradient.model.terms.TERMS` order, so the graph's
variables come in one fixed order:

1. :meth:`Term.centre`: the LA effects' hyperpriors and additions to their means
   (:attr:`Context.centre`, dims la, effect);
2. :meth:`Term.effects`: the LA effects themselves (:attr:`Context.theta`), with the rows'
   linear predictor they start (:attr:`Context.eta`, rows sorted by LA) and its part
   linear in the counts, :math:`\sum_i y_i \eta_i` (:attr:`Context.linear`, collapsed over
   rows by sufficient statistics), and what reads them (the LA outcome);
3. :meth:`Term.rows`: additions to each row's linear predictor and to its part linear in
   the counts.

After sampling, :meth:`Term.row_effect` and :meth:`Term.row_eta` give the same
contributions in numpy from posterior draws (:mod:`socialgradient.sampling.predict`), and
:meth:`Term.predict_eta` gives them for new rows (:class:`NewRows`, read from a table: each
term's :meth:`Term.predict_columns`), with their slopes in ``w``.

Adding a term (a flexible curve, a spatial effect) is one new module here with a
:class:`Term` subclass, and one line in :data:`socialgradient.model.terms.TERMS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from socialgradient.spec import Priors


@dataclass
class Context:
    """The model under construction, as the terms see it.

    ``data`` the encoded table, ``priors`` the spec's, ``centred`` each LA's count of
    centred leading effects, ``a_mean`` the intercept's prior mean; ``order`` sorts the rows
    by LA and ``w`` is the within-LA deprivation in that order (or its ``pm.Data``);
    ``centre``, ``chol``, ``theta``, ``eta``, ``linear`` are filled by the phases.
    """

    data: Any
    priors: Priors
    centred: np.ndarray | None = None
    a_mean: float = -4.0
    order: np.ndarray | None = None
    w: Any = None
    per_la: Any = None
    centre: Any = None
    chol: Any = None
    theta: Any = None
    eta: Any = None
    linear: Any = None


@dataclass(frozen=True)
class NewRows:
    """New rows to predict (:func:`socialgradient.sampling.predict.predict`), as terms see them.

    ``table`` the new rows (with every term's :meth:`Term.predict_columns`), ``fitted`` the
    fit's data (a :class:`~socialgradient.model.data.NeighbourhoodData`, whose rows set the
    terms' centring), ``la`` each row's LA code, ``new_la`` whether it is an LA the fit does
    not have, ``m_la`` the mean deprivation of every LA (the fit's, and each new LA's from
    its rows here; 10-point units), ``w`` each row's within-LA deprivation (10-point units),
    ``seed`` the seed of the new LAs' draws.
    """

    table: pd.DataFrame
    fitted: Any
    la: np.ndarray
    new_la: np.ndarray
    m_la: dict[str, float]
    w: np.ndarray
    seed: int


class Term:
    """One part of the linear predictor (the base does nothing in every phase).

    Class attributes: ``name`` (the term's key in a data hash and in messages),
    ``spec_keys`` (the spec fields that switch it on), ``reported`` (posterior variables it
    adds in their reported form), ``derived`` (its sampler-side forms, dropped from the
    result tree), ``cells`` (its rows are cells, LSOA x something: dim ``cell``) and
    ``always`` (every model has it: made without :meth:`encode`) and ``adds_coords`` (its
    phases add :meth:`coords` to the model themselves, with the variables on those dims, as
    PyMC allows: the model is created without them). A phase or hook the class does not
    override is skipped (not called) by the model and the fit.
    """

    name: ClassVar[str] = ""
    spec_keys: ClassVar[tuple[str, ...]] = ()
    reported: ClassVar[tuple[str, ...]] = ()
    derived: ClassVar[tuple[str, ...]] = ()
    cells: ClassVar[bool] = False
    always: ClassVar[bool] = False
    adds_coords: ClassVar[bool] = False

    @classmethod
    def encode(
        cls, table: pd.DataFrame, spec: Any, core: Any, la_table: pd.DataFrame | None
    ) -> Term | None:
        """Return the term's data from a validated ``table`` and ``spec``.

        Return the term's data from a validated ``table`` and ``spec`` (None when the spec
        does not use it); ``core`` holds the decomposition (``la``, ``la_index``, ``m_c``).
        """
        return None

    @classmethod
    def from_tree(cls, tree: xr.DataTree, const: xr.Dataset) -> Term | None:
        """Return the term's data as a saved fit holds it (None when the fit has none)."""
        return None

    @classmethod
    def absent_attrs(cls) -> dict[str, str]:
        """Return the root attrs a fit without the term records (its empty values)."""
        return {}

    #: Whether the term adds to the rows' linear predictor beyond the LA effects: a class
    #: attribute in the terms that always do (strata, a trend, moderators, a curve), an
    #: instance's where it depends on the term's data (a neighbour graph kept for the
    #: residual check only adds nothing). An attribute, not a property: the table's walk
    #: through the model (``bench/walk.py``) enters no file for it.
    on_rows: ClassVar[bool] = False

    # -- the model's coords and the fit's record ----------------------------------------
    def coords(self) -> dict[str, list]:
        """Return coordinates of the model's dims that the term adds."""
        return {}

    def row_coords(self, n_rows: int) -> dict[str, Any]:
        """Return coordinates of the row dim (``cell``) that the term adds."""
        return {}

    def constant_data(self, row: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the ``constant_data`` variables and coords the term keeps in a fit."""
        return {}, {}

    def attrs(self) -> dict[str, str]:
        """Return the root attrs the term writes in a fit."""
        return {}

    def hash_parts(self) -> list[np.ndarray]:
        """Return the arrays of the term that a fit's data hash covers."""
        return []

    # -- the model (PyMC), in phases ----------------------------------------------------
    def centre(self, ctx: Context) -> None:
        """Phase 1: the LA effects' hyperpriors and means."""

    def effects(self, ctx: Context) -> None:
        """Phase 2: the LA effects and what reads them."""

    def rows(self, ctx: Context) -> None:
        """Phase 3: the rows' linear predictor."""

    # -- after sampling (numpy, one chain) ----------------------------------------------
    def row_effect(self, chain: xr.Dataset, data: Any, effect: np.ndarray) -> np.ndarray:
        """Return each row's LA effects with the term's additions.

        Return each row's (intercept, slope) ``effect`` (dims draw, row, effect) with the
        term's additions, from one chain's draws.
        """
        return effect

    def row_eta(self, chain: xr.Dataset, data: Any, eta: np.ndarray) -> np.ndarray:
        """Return each row's linear predictor with the term's additions.

        Return each row's linear predictor ``eta`` (dims draw, row) with the term's
        additions, from one chain's draws.
        """
        return eta

    # -- new rows (numpy, every chain) ---------------------------------------------------
    def predict_columns(self) -> list[str]:
        """Return the columns a table of new rows needs for the term (:meth:`predict_eta`)."""
        return []

    def predict_eta(
        self, posterior: xr.Dataset, new: NewRows, eta: np.ndarray, slope: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return new rows' linear predictor and its slope in ``w`` with the term's additions.

        ``eta`` and ``slope`` (dims chain, draw, row; log or logit scale, ``slope`` per 10
        points of ``w``) start at 0 and every term adds its part, from ``posterior``'s draws.
        The base adds nothing for a term that is not on the rows (:attr:`on_rows`) and
        refuses, naming the term, one that is: such a term cannot predict new rows until
        its class overrides this hook.
        """
        if self.on_rows:
            raise ValueError(
                f"predict: the fit's term {self.name!r} cannot predict new rows "
                f"({type(self).__name__} has no predict_eta)"
            )
        return eta, slope


def weighted_moments(values: Any, weight: np.ndarray) -> tuple[Any, Any]:
    """Return the ``weight``-weighted mean and SD of ``values`` over their first axis."""
    mean = np.average(values, axis=0, weights=weight)
    sd = np.sqrt(np.average((values - mean) ** 2, axis=0, weights=weight))
    return mean, sd
