"""Whether the private nutpie, numba and PyTensor APIs of the callback fast path still fit.

The fast path (:mod:`socialgradient.sampling._nutpie`) leans on nutpie's private
``nutpie.compile_pymc._make_functions`` (a 7-tuple unpacked by position),
``_prepare_dims_and_coords``, ``address_as_void_pointer``, the fields of
``CompiledPyMCModel`` and the way its ``_make_model`` hands ``user_data.ctypes.data`` to the
callbacks; on numba's ``numba.core.utils._dynamic_modname``/``_dynamic_module`` and, to
keep the callbacks' cache beside them, ``numba.core.ccallback.CFunc`` (built as
``numba.cfunc`` does, with ``numba.core.sigutils.normalize_signature``; its ``_cache`` a
``numba.core.caching.FunctionCache`` whose ``CompileResultCacheImpl`` has
``_locator_classes = [InTreeCacheLocator]``); on PyTensor's ``Function.vm.jit_fn``.
pyproject.toml caps nutpie, PyTensor and numba at their next minor for that reason.
:func:`probe` checks those names, their arities and fields before anything is generated.
"""

from __future__ import annotations

import dataclasses
import inspect

#: The ``CompiledPyMCModel`` fields :func:`~socialgradient.sampling._nutpie_model._assemble` fills.
FIELDS = frozenset(
    {
        "_n_dim",
        "dims",
        "_coords",
        "_shapes",
        "compiled_logp_func",
        "compiled_expand_func",
        "initial_point_func",
        "shared_data",
        "shared_var_keys",
        "user_data",
        "n_expanded",
        "shape_info",
        "logp_func",
        "expand_func",
        "reparameterized_names",
    }
)


#: What ``CompiledPyMCModel._make_model`` must do for the callbacks to read their data: hand
#: nutpie the callbacks' addresses and our ``user_data`` array's address.
ABI = (
    "self.compiled_logp_func.address",
    "self.compiled_expand_func.address",
    "self.user_data.ctypes.data",
)


def probe() -> str | None:
    """Return why the fast path's private APIs do not fit, or None when they do.

    Checked against the installed nutpie, numba and PyTensor: every name present and callable
    with the arguments the fast path passes, ``CompiledPyMCModel``'s fields those it fills,
    and its ``_make_model`` handing the callbacks the user-data address. Cheap (no model,
    nothing generated).
    """
    try:
        import numba.core.caching as numba_caching
        import numba.core.ccallback as numba_ccallback
        import numba.core.sigutils as numba_sigutils
        import numba.core.utils as numba_utils
        import nutpie.compile_pymc as cp
    except Exception as err:
        return f"import failed: {type(err).__name__}: {err}"
    names = [
        (cp, "_make_functions"),
        (cp, "_prepare_dims_and_coords"),
        (cp, "address_as_void_pointer"),
        (cp, "CompiledPyMCModel"),
        (numba_utils, "_dynamic_modname"),
        (numba_utils, "_dynamic_module"),
        (numba_caching, "FunctionCache"),
        (numba_caching, "CompileResultCacheImpl"),
        (numba_caching, "InTreeCacheLocator"),
        (numba_ccallback, "CFunc"),
        (numba_sigutils, "normalize_signature"),
    ]
    for owner, attr in names:
        if not hasattr(owner, attr):
            return f"{owner.__name__}.{attr} is missing"
    calls = [
        (
            cp._make_functions,
            (None,),
            {
                "mode": "NUMBA",
                "compute_grad": True,
                "join_expanded": True,
                "pymc_initial_point_fn": None,
            },
        ),
        (cp._prepare_dims_and_coords, (None, None, None), {}),
    ]
    for fn, args, kwargs in calls:
        fn_name = getattr(fn, "__name__", repr(fn))
        if not callable(fn):
            return f"nutpie.compile_pymc.{fn_name} is not callable"
        try:
            inspect.signature(fn).bind(*args, **kwargs)
        except (TypeError, ValueError) as err:
            return (
                f"nutpie.compile_pymc.{fn_name} does not take "
                f"{len(args)} positional and {sorted(kwargs)} keyword arguments: {err}"
            )
    cls = cp.CompiledPyMCModel
    if not dataclasses.is_dataclass(cls):
        return "nutpie.compile_pymc.CompiledPyMCModel is not a dataclass"
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if FIELDS - set(fields):
        return f"CompiledPyMCModel lacks the fields {sorted(FIELDS - set(fields))}"
    required = {
        n
        for n, f in fields.items()
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    } - FIELDS
    if required:
        return f"CompiledPyMCModel requires fields the fast path does not fill: {sorted(required)}"
    try:
        source = inspect.getsource(cp.CompiledPyMCModel._make_model)  # cls: narrowed to a dataclass
    except (AttributeError, OSError, TypeError) as err:
        return f"CompiledPyMCModel._make_model cannot be checked: {err}"
    lacking = [needle for needle in ABI if needle not in source]
    if lacking:
        return f"CompiledPyMCModel._make_model no longer passes {lacking} to the callbacks"
    if not isinstance(getattr(numba_caching.FunctionCache, "cache_path", None), property):
        return "numba.core.caching.FunctionCache has no cache_path"
    if not isinstance(
        getattr(numba_caching.CompileResultCacheImpl, "_locator_classes", None), list
    ):
        return "numba.core.caching.CompileResultCacheImpl has no _locator_classes"
    try:
        inspect.signature(numba_ccallback.CFunc).bind(None, None, locals={}, options={})
    except (TypeError, ValueError) as err:
        return f"numba.core.ccallback.CFunc does not take (pyfunc, sig, locals, options): {err}"
    if not callable(getattr(numba_ccallback.CFunc, "compile", None)):
        return "numba.core.ccallback.CFunc has no compile()"
    return None
