"""One nutpie compilation per model structure in a process, and a key for that structure.

Compiling a model for nutpie took 11-15 s for the England model on 2 cores, whatever the
size of the table, almost all of it numba compiling nutpie's C callbacks;
:mod:`socialgradient.sampling._nutpie` now caches those on disk, so a process that compiles a
structure compiled before (by any process) takes ~1-1.5 s. Within a process even that is
saved: the model's data enter as ``pm.Data`` (:meth:`socialgradient.model.families.Rows.as_data`),
so two models built from tables of the same structure (same spec, LAs, centring pattern)
compile to the same function and differ only in the values of their data, and the second one
reuses the first compilation with :func:`socialgradient.sampling._nutpie.with_data` (its data and
its starting points) and starts sampling at once. This serves every repeated fit in one
process: the replicates of ``socialgradient calibrate`` on a Dask worker, a notebook that
refits a changed table, a test that fits twice.

Two models share a compilation only when :func:`structure_key` says they are the same
computation: every node of the log density's, the free variables' and the deterministics'
graphs (op, props and inputs), the value of every constant, the name and type of every
shared variable (not its value), the coordinates and dims. The key is the same in every
process, and a reused compilation samples exactly what a fresh one would: same seed, same
draws (tested). The callbacks' disk cache is named by :func:`code_key` instead: the same graph
but only the lengths of the dims, not their labels, since the machine code does not depend on
which LAs a table holds, only on how many (a compilation reused in a process carries its
coordinates, so there the labels count).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import pymc as pm
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant
from pytensor.graph.traversal import graph_inputs, io_toposort

from socialgradient.sampling import _nutpie as callbacks

#: Compilations kept per process (least recently used dropped first).
KEEP = 4
_CACHE: OrderedDict[str, object] = OrderedDict()


def _graph_hash(model: pm.Model):
    """Return a sha256 of the model's graphs and constants.

    A sha256 of every node of the log density's, the free variables' and the
    deterministics' graphs (op, props, inputs), every constant's value and every shared
    variable's name and type (not its value), and the outputs' names.
    """
    outputs = [model.logp(), *model.free_RVs, *model.deterministics]
    h = hashlib.sha256()
    index: dict = {}

    def ref(var) -> int:
        if var not in index:
            index[var] = len(index)
            if isinstance(var, Constant):
                data = np.asarray(var.data)
                h.update(f"constant {var.type} {data.dtype} {data.shape}".encode())
                # an object array's bytes are addresses: hash what they point to
                h.update(
                    repr(var.data).encode()
                    if data.dtype == object
                    else np.ascontiguousarray(data).tobytes()
                )
            elif isinstance(var, SharedVariable):
                h.update(f"shared {var.name} {var.type}".encode())
            elif var.owner is None:
                h.update(f"input {var.name} {var.type}".encode())
        return index[var]

    for node in io_toposort(list(graph_inputs(outputs)), outputs):
        op = node.op
        props = op._props_dict() if hasattr(op, "_props_dict") else {}
        inputs = [ref(v) for v in node.inputs]
        h.update(f"{type(op).__module__}.{type(op).__qualname__} {op} {props!r} {inputs}".encode())
        for out in node.outputs:
            ref(out)
    h.update(repr([ref(v) for v in outputs]).encode())
    h.update(repr([v.name for v in outputs]).encode())
    return h


def _sizes(model: pm.Model) -> str:
    """Return what fixes the shapes of the free variables and deterministics.

    What fixes the shapes of the free variables and deterministics (so nutpie's layout:
    n_dim, n_expanded, slices) beyond the graph: per variable its dims and their lengths, or
    its static shape; where neither fixes it (no dims, an unknown static length), the shapes
    of every shared variable's value, which then may.
    """
    lengths = {
        name: int(
            np.asarray(
                length.get_value()
                if isinstance(length, SharedVariable)
                else length.data
                if isinstance(length, Constant)
                else length.eval()
            )
        )
        for name, length in model.dim_lengths.items()
    }
    parts: list[object] = []
    unknown = False
    for var in [*model.free_RVs, *model.deterministics]:
        dims = model.named_vars_to_dims.get(var.name)
        if dims is not None and None not in dims:
            parts.append((var.name, tuple(dims), tuple(lengths[d] for d in dims)))
        else:
            shape = tuple(var.type.shape)
            unknown |= None in shape
            parts.append((var.name, None, shape))
    if unknown:
        shared = [
            v
            for v in graph_inputs([*model.free_RVs, *model.deterministics])
            if isinstance(v, SharedVariable)
        ]
        parts.append(sorted((str(v.name), np.shape(v.get_value())) for v in shared))
    return repr(parts)


def keys(model: pm.Model) -> tuple[str, str]:
    """:func:`structure_key` and :func:`code_key` of ``model`` (one walk of its graph)."""
    graph = _graph_hash(model)
    structure, code = graph.copy(), graph
    structure.update(
        repr(sorted((k, tuple(map(str, v))) for k, v in model.coords.items())).encode()
    )
    structure.update(repr(sorted(model.named_vars_to_dims.items())).encode())
    code.update(b"code\n" + _sizes(model).encode())
    return structure.hexdigest(), code.hexdigest()


def structure_key(model: pm.Model) -> str:
    """Return a hash equal for models whose compiled sampler differs only in data.

    A hash equal for two models whose compiled sampler differs only in data values: the
    graph, and the coordinates' values and dims (a compilation carries its coordinates, so
    one reused in this process labels the draws with them).
    """
    return keys(model)[0]


def code_key(model: pm.Model) -> str:
    """Return a hash equal for models whose nutpie callbacks are the same code.

    A hash equal for two models whose nutpie callbacks are the same machine code: the
    graph, and the lengths (not the labels) of the variables' dims. Two tables of different
    LAs of the same count share it (their coordinates differ, so :func:`structure_key`
    does not): it names the callbacks' disk cache, where coordinates play no part.
    """
    return keys(model)[1]


def compile_nutpie(model: pm.Model):
    """Compile ``model`` for nutpie, reusing this process's compilation when it can.

    Nutpie's compilation of ``model``: an earlier one of the same structure in this
    process with ``model``'s data, else :func:`socialgradient.sampling._nutpie.compile_model`
    (its C callbacks from the disk cache when any process compiled this structure before).
    Returns (compiled, reused).
    """
    key, code = keys(model)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return callbacks.with_data(_CACHE[key], model), True
    compiled = callbacks.compile_model(model, code)
    _CACHE[key] = compiled
    while len(_CACHE) > KEEP:
        _CACHE.popitem(last=False)
    return compiled, False


def clear() -> None:
    """Forget every compilation of this process."""
    _CACHE.clear()
