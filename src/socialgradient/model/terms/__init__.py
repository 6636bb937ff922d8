"""The terms of the model's linear predictor, one module each.

:mod:`.base` says what a term is; :data:`TERMS` lists them in the order the model adds
them, which fixes the order of the graph's variables (and so a fit's draws at a given seed):
add a new term's class at the end.
"""

from socialgradient.model.terms.base import Context, Term
from socialgradient.model.terms.curve import Curve
from socialgradient.model.terms.la_effects import LAEffects
from socialgradient.model.terms.la_moderators import LAModerators
from socialgradient.model.terms.la_outcome import LAOutcomeTerm
from socialgradient.model.terms.moderators import NeighbourhoodModerators
from socialgradient.model.terms.spatial import SpatialEffect
from socialgradient.model.terms.strata import Strata
from socialgradient.model.terms.trend import Trend

TERMS: tuple[type[Term], ...] = (
    LAEffects,
    LAModerators,
    LAOutcomeTerm,
    Strata,
    Trend,
    NeighbourhoodModerators,
    SpatialEffect,
    Curve,
)

__all__ = [
    "TERMS",
    "Context",
    "Curve",
    "LAEffects",
    "LAModerators",
    "LAOutcomeTerm",
    "NeighbourhoodModerators",
    "SpatialEffect",
    "Strata",
    "Term",
    "Trend",
]
