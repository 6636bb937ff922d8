"""The types of a spec's values: each field's annotation is its rule.

msgspec (strict: no "0.9" -> 0.9, no true -> 1) checks a value against it, and its
description is what an error says is allowed. Where a float field takes an int, the int is
kept as it is (1 stays 1, not 1.0): the canonical JSON, so the hash, of every spec written
with an int is what it was. Re-exported by :mod:`socialgradient.spec`. (No ``from __future__
import annotations`` here or in :mod:`socialgradient.spec.parts`: the dataclasses' fields
hold these types themselves, wherever the classes are documented.)
"""

import re
import typing
from typing import Annotated, Literal

import msgspec

#: A spec's ``name`` becomes a folder under ``--out`` (``socialgradient suite``): a plain name,
#: no ``/``, ``\``, ``..``, absolute path or leading dot.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def plain_name(name: str) -> bool:
    """``name`` may be a folder under ``--out``: it matches :data:`NAME`, with no ``..``."""
    return isinstance(name, str) and bool(NAME.fullmatch(name)) and ".." not in name


# -- the types of spec values -------------------------------------------------------------
# Each field's annotation is its rule: msgspec (strict: no "0.9" -> 0.9, no true -> 1)
# checks a value against it, and its description is what an error says is allowed.
# Where a float field takes an int, the int is kept as it is (1 stays 1, not 1.0): the
# canonical JSON, so the hash, of every spec written with an int is what it was.


def _meta(**kw) -> msgspec.Meta:
    return msgspec.Meta(**kw)


Family = Literal["negbin", "poisson", "binomial"]
Sampler = Literal["nutpie", "pymc", "numpyro"]
Stop = Literal["draws", "target"]
LAEffects = Literal["auto", "centred", "noncentred"]
Spatial = Literal["", "bym2"]
Curve = Literal["log-linear", "spline"]
#: draws and tune per chain
Count = Annotated[int, _meta(ge=1, le=1_000_000, description="an integer from 1 to 1000000")]
#: tuning draws per chain, or left out: chosen from the data (socialgradient.sampling.tuning)
Tune = Annotated[
    Annotated[int, _meta(ge=1, le=1_000_000)] | None,
    _meta(description="an integer from 1 to 1000000 (or left out: chosen from the data)"),
]
Chains = Annotated[int, _meta(ge=1, le=64, description="an integer from 1 to 64")]
#: numpy's legacy seed range (nutpie takes a u64, PyMC a numpy seed)
Seed = Annotated[
    int, _meta(ge=0, le=2**32 - 1, description="an integer from 0 to 4294967295 (2**32 - 1)")
]
Rhat = Annotated[
    Annotated[int, _meta(gt=1, le=2)] | Annotated[float, _meta(gt=1, le=2)],
    _meta(description="in (1, 2] (a number)"),
]
Seconds = Annotated[
    Annotated[int, _meta(gt=0)] | Annotated[float, _meta(gt=0)] | None,
    _meta(description="> 0 (a number of seconds, or left out: no time budget)"),
]
TargetAccept = Annotated[float, _meta(ge=0.5, lt=1, description="in [0.5, 1) (a number)")]
PositiveNumber = Annotated[
    Annotated[int, _meta(gt=0)] | Annotated[float, _meta(gt=0)],
    _meta(description="> 0 (a finite number)"),
]
AnyNumber = Annotated[
    int | float | None, _meta(description="a finite number (or left out: the family's default)")
]
Number = Annotated[int | float, _meta(description="a finite number")]
#: the prior family of the fixed effects a, b_w, b_b, b_x (:mod:`socialgradient.model.priors`)
FixedFamily = Literal["normal", "student_t"]
Fraction = Annotated[
    Annotated[int, _meta(ge=1, le=1)] | Annotated[float, _meta(gt=0, le=1)],
    _meta(description="in (0, 1] (a number)"),
]

FAMILIES: tuple[str, ...] = typing.get_args(Family)
SAMPLERS: tuple[str, ...] = typing.get_args(Sampler)
LA_EFFECTS: tuple[str, ...] = typing.get_args(LAEffects)
CURVES: tuple[str, ...] = typing.get_args(Curve)
