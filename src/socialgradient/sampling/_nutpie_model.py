"""nutpie's ``CompiledPyMCModel`` assembled around the cached callbacks, and given other data.

:func:`_assemble` fills the fields nutpie's own compilation fills (its private
``_prepare_dims_and_coords`` gives the dims and coordinates), with the callbacks of
:mod:`socialgradient.sampling._nutpie_codegen` and their user data; :func:`with_data` points a
compiled model (of either path) at a model of the same structure with other data.
"""

from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np
import pymc as pm

from socialgradient.sampling._nutpie_codegen import _frozen, stored, user_data


def _pymc_initial_point(model: pm.Model):
    """Return nutpie's default starting points for ``model`` (support points, jittered)."""
    from pymc.initial_point import make_initial_point_fn

    return make_initial_point_fn(
        model=model,
        overrides=None,
        default_strategy="support_point",
        jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )


def _initial_point(model: pm.Model, names: list[str], shapes: list) -> object:
    """Return nutpie's initial-point function for ``model``: a flat float64 array per seed.

    The free variables in ``names`` order (what nutpie's ``_rv_dict_to_flat_array_wrapper``
    around its locked ``make_initial_point_fn`` gives, written here: one private name less).
    """
    point_fn = _pymc_initial_point(model)
    lock = threading.Lock()
    shapes = [tuple(s) for s in shapes]
    total = sum(math.prod(s) for s in shapes)

    def initial_point(seed=None):
        with lock:
            point = point_fn(seed)
        flat = np.empty(total, dtype="float64", order="C")
        cursor = 0
        for name, shape in zip(names, shapes, strict=True):
            value = np.asarray(point[name])
            if tuple(value.shape) != shape:
                raise ValueError(
                    f"Size of initial value for {name} is {value.shape}, expected {shape}"
                )
            flat[cursor : cursor + value.size] = value.ravel().astype("float64")
            cursor += value.size
        return flat

    return initial_point


def _assemble(model, layout_: dict, shared: list, logp_c, expand_c, logp_pt=None, expand_pt=None):
    import nutpie.compile_pymc as cp

    names, slices, shapes = stored(layout_)  # what the trace keeps (not the derived forms)
    shape_info = (names, [slice(*s) for s in slices], [tuple(s) for s in shapes])
    free_shapes = dict(zip(layout_["free_names"], map(tuple, layout_["free_shapes"]), strict=True))
    values = {v: _frozen(v.get_value()) for v in shared}
    dims, coords = cp._prepare_dims_and_coords(model, shape_info, layout_["reparameterized"])
    initial = _initial_point(model, layout_["free_names"], layout_["free_shapes"])
    return cp.CompiledPyMCModel(
        _n_dim=layout_["n_dim"],
        dims=dims,
        _coords=coords,
        # the stored variables', and every free one's (with_data's starting points)
        _shapes=free_shapes | {name: shape for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp_c,
        compiled_expand_func=expand_c,
        initial_point_func=initial,
        shared_data={v.name: values[v] for v in shared},
        shared_var_keys={v: v.name for v in shared},
        user_data=user_data(shared, values),
        n_expanded=sum(math.prod(shape) for shape in shape_info[2]),
        shape_info=shape_info,
        logp_func=logp_pt,
        expand_func=expand_pt,
        reparameterized_names=layout_["reparameterized"],
    )


def _is_ours(compiled) -> bool:
    """Tell whether ``compiled`` came from the fast path rather than nutpie's public one.

    The fast path's user data is our flat ``uint64`` array; nutpie's, a structured record.
    """
    data = getattr(compiled, "user_data", None)
    return isinstance(data, np.ndarray) and data.dtype == np.uint64 and data.ndim == 1


def with_data(compiled, model: pm.Model):
    """Return ``compiled`` sampling ``model``, a model of the same structure with other data.

    ``model``'s shared variables' values (same rank and dtype; shapes may differ) and its
    starting points, which may depend on the data (an LA effect starts at its mean,
    a + b_b m_c). Serves a compilation of either path (for nutpie's own, through its
    ``with_data``).
    """
    values = {v.name: v.get_value() for v in model.data_vars}
    needed = {var.name for var in compiled.shared_var_keys}
    missing = sorted(needed - set(values))
    if missing:
        raise KeyError(f"model lacks the shared variables {missing}")
    names = [model.rvs_to_values[v].name for v in model.free_RVs]
    initial = _initial_point(model, names, [compiled.shapes[n] for n in names])
    if not _is_ours(compiled):
        updated = compiled.with_data(**{name: values[name] for name in sorted(needed)})
        return dataclasses.replace(updated, initial_point_func=initial)
    shared_data = {
        name: _frozen(np.asarray(values[name], dtype=value.dtype))
        for name, value in compiled.shared_data.items()
    }
    by_var = {var: shared_data[name] for var, name in compiled.shared_var_keys.items()}
    return dataclasses.replace(
        compiled,
        shared_data=shared_data,
        initial_point_func=initial,
        user_data=user_data(list(compiled.shared_var_keys), by_var),
    )
