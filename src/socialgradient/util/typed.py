"""Typed values from TOML: a dict checked against a frozen dataclass's field types with msgspec.

Strict (``"0.9"`` is not 0.9), with messages that name the key by its full path, the value
given and what is allowed (:class:`SpecError`); :mod:`socialgradient.spec` builds its
dataclasses with it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from typing import Annotated, Literal

import msgspec


class SpecError(ValueError):
    """A spec key or value that is not allowed.

    The message names the key by its full path (``sampling.draws``, ``priors.b_w``,
    ``records.by``), the value given and what is allowed. A ``ValueError``, so callers that
    catch those still do.
    """


def _check_keys(raw: dict, allowed: set[str], where: str) -> None:
    """Unknown keys are an error (a misspelt key would otherwise be a default in silence)."""
    unknown = sorted(set(raw) - allowed)
    if unknown:
        table = f"[{where}]" if where else "spec"
        raise SpecError(f"unknown key(s) {unknown} in {table}; allowed: {sorted(allowed)}")


@functools.cache
def _hints(cls) -> dict[str, object]:
    """Field name -> annotation (with its ``Annotated`` rules) of a spec dataclass."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _strip(tp):
    """Return the type under ``Annotated[...]``."""
    return typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp


def _table_type(tp):
    """Return the spec dataclass a field holds (``Priors``, ``RecordsTable | None``), else None."""
    tp = _strip(tp)
    for t in (tp, *typing.get_args(tp)):
        if dataclasses.is_dataclass(t):
            return t
    return None


def _usual(tp, value):
    """Return ``value`` in the forms specs always took.

    A tuple field given one item (``by = "age_band"``, ``years = 2019``) as a list of one;
    numpy's float64 as a float.
    """
    if isinstance(value, float) and type(value) is not float:
        return float(value)
    tp = _strip(tp)
    if typing.get_origin(tp) is tuple:
        item = typing.get_args(tp)[0]
        if isinstance(value, item) and not isinstance(value, bool):
            return [value]
    return value


_PLAIN = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


_MANY = {str: "strings", int: "integers", float: "numbers"}


def _describe(tp) -> str:
    """Say what a field allows, in words (its ``msgspec.Meta`` description, else its type)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        described = [m.description for m in args[1:] if isinstance(m, msgspec.Meta)]
        return described[0] if described and described[0] else _describe(args[0])
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        text = " or ".join(_describe(a) for a in kinds)
        return text + (" (or left out)" if len(kinds) < len(args) else "")
    if origin is tuple:
        one = _describe(args[0])
        return f"a list of {_MANY.get(args[0], one)} (or one {one.split(' ', 1)[-1]})"
    if dataclasses.is_dataclass(tp):
        return f"a table with keys {', '.join(sorted(_names(tp)))}"
    return _PLAIN.get(tp, getattr(tp, "__name__", str(tp)))


def _bad(key: str, value, tp) -> str:
    """Return the message of a value that breaks its field's rule."""
    allowed = _describe(tp)
    if typing.get_origin(_strip(tp)) is Literal:
        return f"unknown {key.rsplit('.', 1)[-1]} {value!r}: {key} must be {allowed}"
    return f"{key} must be {allowed}, got {value!r} ({type(value).__name__})"


def _prepare(raw, cls, where: str):
    """Return a parsed mapping ready for msgspec.

    Unknown keys refused (at every level), values in their usual forms (:func:`_usual`);
    nested tables likewise.
    """
    if not isinstance(raw, dict):
        return raw  # msgspec says what is wrong with it
    _check_keys(raw, _names(cls), where.rstrip("."))
    hints = _hints(cls)
    out = {}
    for name, value in raw.items():
        table = _table_type(hints[name])
        out[name] = (
            _prepare(value, table, f"{where}{name}.")
            if table is not None
            else _usual(hints[name], value)
        )
    return out


def _convert(raw, cls, where: str):
    """Convert a prepared mapping into the frozen dataclass ``cls`` with ``msgspec.convert``.

    Its ``__post_init__`` runs; every failure is a :class:`SpecError` that names the key.
    """
    try:
        return msgspec.convert(raw, type=cls, strict=True)
    except msgspec.ValidationError as err:
        cause = err.__cause__
        if isinstance(cause, SpecError):  # a rule of the spec's own __post_init__
            raise cause from None
        if isinstance(cause, ValueError | TypeError):
            raise SpecError(str(cause)) from cause
        raise SpecError(_explain(str(err), raw, cls, where)) from None


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")


_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]+)`")


def _explain(message: str, raw, cls, where: str) -> str:
    """Say msgspec's message with the full key, the value given and what the field allows.

    msgspec's: e.g. ``Expected `int`, got `str` - at `$.sampling.draws```.
    """
    at = _AT.search(message)
    path = re.sub(r"\[\d+\]", "|", at["path"]).split("|")[0] if at else ""
    names = [n for n in path.split(".") if n]
    missing = _MISSING.search(message)
    value, tp = raw, cls
    for name in names:
        tp = _hints(_table_type(tp))[name]
        value = value.get(name) if isinstance(value, dict) else None
    if missing:
        name = missing["name"]
        key = where + ".".join([*names, name])
        return f"{key} is required: {_describe(_hints(_table_type(tp))[name])}"
    if not names:  # the whole mapping is not one
        return f"{where.rstrip('.') or 'spec'} must be {_describe(cls)}, got {raw!r}"
    return _bad(where + ".".join(names), value, tp)


def _validate(obj) -> None:
    """Check every field of a spec dataclass against its type (msgspec, strict).

    Called in its ``__post_init__``, so a spec built in Python (``Spec(...)``, ``replace``)
    meets the rules a loaded one does: a nested table given as a dict becomes its dataclass,
    a list a tuple; an int in a float field stays an int (the canonical JSON, and so the
    hash, keep it).
    """
    cls: type = type(obj)  # not type[Any], which mypy holds unhashable for the cache
    where = type(obj)._where
    for name, tp in _hints(cls).items():
        value = getattr(obj, name)
        key = where + name
        table = _table_type(tp)
        if table is not None and isinstance(value, dict):
            new = _convert(_prepare(value, table, key + "."), table, key + ".")
        else:
            value = _usual(tp, value)
            try:
                new = msgspec.convert(value, type=tp, strict=True)
            except msgspec.ValidationError:
                raise SpecError(_bad(key, value, tp)) from None
            if isinstance(new, float) and not math.isfinite(new):
                raise SpecError(_bad(key, value, tp))
        if new is not getattr(obj, name):
            object.__setattr__(obj, name, new)
