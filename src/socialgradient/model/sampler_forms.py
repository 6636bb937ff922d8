"""The sampler-side forms of a model: variables the sampler needs and the posterior drops.

The families and terms name them (``derived``): e.g. the LKJ factor (``la_cov``; the posterior
reports ``la_sd`` and ``la_corr``), phi's transform, per-SD moderator coefficients, BYM2's
whitened field and iid part; with them the LA-effect blocks of
:func:`socialgradient.model.terms.la_effects.la_theta`. The posterior
(:func:`socialgradient.sampling.fit.reported`) leaves them out, and nutpie's fast path does
not store them (:func:`socialgradient.sampling._nutpie.unstored`).
"""

from __future__ import annotations

from socialgradient.model import families
from socialgradient.model.build import LA_THETA_BLOCKS
from socialgradient.model.terms import TERMS

#: The families' and terms' sampler-side names.
DERIVED = (
    *(name for family in families.FAMILIES.values() for name in family.derived),
    *(name for term in TERMS for name in term.derived),
)


def derived(name: str) -> bool:
    """Whether ``name`` is a sampler-side form: in :data:`DERIVED` or an LA-effect block."""
    return name in DERIVED or LA_THETA_BLOCKS.match(name) is not None
