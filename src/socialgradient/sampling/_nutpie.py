"""nutpie's compiled model with its C callbacks cached on disk, per model structure.

``nutpie.compile_pymc_model`` spends most of its time (11-15 s of ~14-17 s for the England
model on 2 cores) in numba compiling two small C callbacks, ``logp`` and ``expand``, around
PyTensor's numba functions. PyTensor caches its own functions on disk, but the callbacks
cannot be: nutpie builds them as closures over the model's data arrays (which numba then
bakes into the machine code as constants) and over the functions themselves. So every
process paid the whole compilation again, for the same model.

:func:`compile_model` builds the same ``nutpie.compile_pymc.CompiledPyMCModel`` with
callbacks that are cacheable: their source is written to a file named by the model's code
(:func:`socialgradient.sampling.compiled.code_key`: the graph and the lengths of its dims, not their
labels, so tables of different LAs of the same count share one entry; stable across
processes) and by the versions of everything that generates code, and the data reach them by
address through the user-data pointer nutpie passes on every call (one ``uint64`` array: per
shared variable its address, then its shape). A layout file beside the source records what
nutpie's ``_make_functions`` gave (sizes, names, shapes, shared inputs), so a second process
that builds a model of the same code needs no PyTensor function: it loads the callbacks from
numba's cache, ~1 s for England. The callbacks do what nutpie's do (same return codes: 3 for
a non-finite gradient, 4 for a non-finite log density, 1 for an exception), so nutpie samples
them the same way.

**What the trace stores.** nutpie stores every value its ``expand`` callback writes, each
draw: the free variables and every other named variable. The callbacks here write only
what the posterior reports: the sampler-side forms that :func:`socialgradient.sampling.fit.reported`
drops anyway (:func:`unstored`: the LKJ factor's, BYM2's ``spatial_z`` and ``spatial_theta``,
the LA-effect blocks) are computed but not copied out. For England's BYM2 model that is
33,155 values a draw instead of 98,855, so three times the draws fit in the same memory
(:mod:`socialgradient.sampling.trace_memory`). nutpie's public compilation (the
fallback) stores them all; the posterior is the same.

**Private APIs, and the public fallback.** This fast path leans on private APIs of nutpie,
numba and PyTensor (:mod:`socialgradient.sampling._nutpie_probe` lists them);
pyproject.toml caps nutpie, PyTensor and numba at their next minor for that reason.
:func:`probe` checks them before anything is generated; when it finds a mismatch, or anything
in the fast path raises (a changed tuple, a layout that does not add up, an error generating,
loading or compiling the callbacks), :func:`compile_model` warns once (:class:`FastPathWarning`)
and returns nutpie's public ``nutpie.compile_pymc_model(model)``, which samples the same
posterior (the same draws for the same seed, tested) after the full 11-15 s compilation.
``SOCIALGRADIENT_NUTPIE_CACHE=0`` (or ``false``/``no``/``off``) turns the fast path off: the
public path, no warning.

**The cache on disk, private and checked** (:mod:`socialgradient.sampling._nutpie_cache`): one
folder per entry, in a folder private to the user (:func:`folder`), each entry sealed with the
SHA-256 of its files and verified before anything of it is used; pruned to its bounds
(:mod:`socialgradient.sampling._nutpie_prune`). A model whose shared variables are not all
``pm.Data`` cannot be loaded without PyTensor's functions, so its callbacks are compiled every
time and not kept.

This module is the fast path itself (:func:`compile_model`: load, or build and publish) and
the one place the other modules' names are reached from (tests, and
:mod:`socialgradient.sampling.compiled`, use them as ``_nutpie.NAME``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pymc as pm
import pytensor

from socialgradient.model.sampler_forms import derived
from socialgradient.sampling._nutpie_cache import (  # noqa: F401 (as before the split)
    ENV_DIR,
    LAYOUT,
    LOADED,
    MANIFEST,
    MARKER,
    PREFIX,
    STAGING,
    TOMBSTONE,
    Tampered,
    UnsafeCache,
    _digest,
    _discard,
    _publish,
    _remove,
    _seal,
    _touch,
    _write,
    ensure_private,
    folder,
    verify,
)
from socialgradient.sampling._nutpie_codegen import (  # noqa: F401 (as before the split)
    CODE_VERSIONS,
    NUMERICS,
    TEMPLATE,
    _arrays,
    _cfuncs,
    _check_layout,
    _exec,
    _Mismatch,
    _name,
    layout,
    store_lines,
    stored,
    trace_names,
    user_data,
)
from socialgradient.sampling._nutpie_model import (  # noqa: F401 (as before the split)
    _assemble,
    _is_ours,
    _pymc_initial_point,
    with_data,
)
from socialgradient.sampling._nutpie_probe import ABI, FIELDS, probe  # noqa: F401 (as before)
from socialgradient.sampling._nutpie_prune import (  # noqa: F401 (as before the split)
    ENV_ENTRIES,
    ENV_MB,
    MAX_ENTRIES,
    MAX_MB,
    STALE_S,
    _old_folder,
    entries_in,
    limits,
    prune_in,
)

log = logging.getLogger(__name__)


class FastPathWarning(UserWarning):
    """The cached-callback fast path could not serve.

    An incompatible nutpie, numba or PyTensor, or an error in it: nutpie's public
    ``compile_pymc_model`` compiled the model instead, with the same posterior and the full
    compilation time.
    """


#: The switch: ``0``/``false``/``no``/``off`` turns the fast path off.
ENV_SWITCH = "SOCIALGRADIENT_NUTPIE_CACHE"


def enabled() -> bool:
    """Whether the fast path is on (``SOCIALGRADIENT_NUTPIE_CACHE``, default on)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def private_folder() -> Path:
    """Return :func:`folder`, resolved, created private and checked (:func:`ensure_private`)."""
    return ensure_private(folder())


def entries() -> list[tuple[float, int, Path]]:
    """Return the cache's entries as (last used, bytes, folder), most recently used first."""
    return entries_in(folder())


def prune(keep: str | None = None) -> list[str]:
    """Prune the cache in :func:`folder` to its bounds; return the names of the entries removed.

    Removed (:func:`~socialgradient.sampling._nutpie_prune.prune_in`): the least recently used
    entries beyond :func:`limits` (never ``keep``), the tombstones other processes left behind,
    staging folders an hour old (a killed build's) and the cache's earlier location in
    PyTensor's folder.
    """
    return prune_in(folder(), keep, _old_folder)


def compile_model(model: pm.Model, key: str):
    """Compile ``model`` as ``nutpie.compile_pymc_model(model)`` does, callbacks from the cache.

    The numba backend, default options; the callbacks are loaded from the disk cache when a
    model of the same code (``key``: :func:`socialgradient.sampling.compiled.code_key`,
    computed before compiling) was compiled before. nutpie's public compilation itself when
    the fast path is off (``SOCIALGRADIENT_NUTPIE_CACHE=0``, no warning) or cannot serve
    (:func:`probe`, or any error in it: one :class:`FastPathWarning`). Either way compiled
    under :data:`NUMERICS` (numba's fast-math off), so that the draws for a seed do not depend
    on whether PyTensor's functions came from its disk cache.
    """
    with pytensor.config.change_flags(**NUMERICS):
        return _compile(model, key)


def _compile(model: pm.Model, key: str):
    """Do :func:`compile_model`'s work (under its flags)."""
    if not enabled():
        return _public(model)
    problem = probe()
    if problem is None:
        try:
            return _fast(model, key)
        except Exception as err:  # every failure falls back, with one warning
            log.debug("the cached-callback path failed", exc_info=True)
            problem = f"{type(err).__name__}: {err}"
    warnings.warn(
        FastPathWarning(
            f"socialgradient's cached nutpie callbacks cannot serve ({problem}); compiling with "
            "nutpie.compile_pymc_model instead (same posterior, ~10-15 s more per model). "
            f"{ENV_SWITCH}=0 turns the fast path off."
        ),
        stacklevel=3,
    )
    return _public(model)


def stored_names(model: pm.Model, names: list[str]) -> list[str]:
    """Return the expanded vector's ``names`` the trace stores: all but :func:`unstored`'s."""
    leave = set(unstored(model))
    return [n for n in names if n not in leave]


def unstored(model: pm.Model) -> list[str]:
    """Return the names the trace leaves out: the sampler-side forms the posterior drops.

    :func:`socialgradient.model.sampler_forms.derived`'s variables (free ones with their
    unconstrained value variables) are computed by the sampler but never stored: for
    England's BYM2 model that is two thirds of every draw (``spatial_z``, ``spatial_theta``).
    """
    out = {v.name for v in model.deterministics if derived(v.name)}
    for rv in model.free_RVs:
        if derived(rv.name):
            out |= {rv.name, model.rvs_to_values[rv].name}
    return sorted(out)


def _public(model: pm.Model):
    import nutpie

    return nutpie.compile_pymc_model(model)


def _cached(model: pm.Model, name: str):
    """Return the compiled model straight from the cache, or None.

    No PyTensor function is built (~1.3 s for England): the layout file says what they would
    give and numba loads the callbacks. None when the entry is missing, refused
    (:func:`verify`: then discarded, with a warning) or does not serve this model (then
    :func:`_fast` builds it).
    """
    entry = private_folder() / name
    if not os.path.lexists(entry):
        return None
    try:
        kept = verify(entry)
    except Tampered as err:
        _discard(entry, err)
        return None
    try:
        layout_ = json.loads(kept[LAYOUT])
        _check_layout(layout_)
        source = kept[f"{name}.py"]
    except (KeyError, ValueError, _Mismatch):
        return None
    data = {v.name: v for v in model.data_vars}
    if not set(layout_["shared"]) <= set(data):
        return None
    # an entry storing what this version would not: built again
    if trace_names(layout_) != stored_names(model, layout_["names"]):
        return None
    module = _exec(source, entry / f"{name}.py")  # LOGP/EXPAND stay None: only a cache
    try:  # hit can compile
        logp_c, expand_c = _cfuncs(module)
    except UnsafeCache:
        raise
    except Exception:  # gone meanwhile, or numba's typing error (LOGP is None): not in
        return None  # numba's cache
    _touch(entry)
    shared = [data[n] for n in layout_["shared"]]
    return _assemble(model, layout_, shared, logp_c, expand_c)


def _fast(model: pm.Model, key: str):
    """Return the compiled model from the cache, or built and cached.

    A process that removes the entry meanwhile (pruning) makes this one build it again
    (three tries).
    """
    import numba.core.utils

    # The callbacks link PyTensor's functions, whose numba environment names the module
    # '<dynamic>': make that importable (it is numba's own stand-in) so a cached callback
    # can be loaded in a new process.
    sys.modules.setdefault(numba.core.utils._dynamic_modname, numba.core.utils._dynamic_module)
    name = _name(key)
    for attempt in range(3):
        try:
            compiled = _cached(model, name)
            return compiled if compiled is not None else _build(model, name)
        except FileNotFoundError:
            if attempt == 2:
                raise
            log.info("callback cache entry %s removed while in use; generating it again", name)
    raise AssertionError("unreachable")


def _build(model: pm.Model, name: str):
    """Build the compiled model and publish its callbacks as the cache entry ``name``.

    PyTensor's functions come from nutpie's ``_make_functions``; the callbacks are generated
    and compiled in a private staging folder (numba caches them there), the layout file and
    the manifest written, the folder published as the entry ``name`` and the cache pruned.
    """
    import nutpie.compile_pymc as cp

    root = private_folder()
    free_names = [model.rvs_to_values[v].name for v in model.free_RVs]
    result = cp._make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=_pymc_initial_point(model),
    )
    if not isinstance(result, tuple) or len(result) != 7:
        size = len(result) if isinstance(result, tuple) else "not a tuple"
        raise _Mismatch(
            f"nutpie's _make_functions gave {type(result).__name__} ({size}), "
            "not the 7-tuple (n_dim, n_expanded, logp, expand, initial point, "
            "shape info, reparameterized names)"
        )
    n_dim, n_expanded, logp_pt, expand_pt, _, shape_info, reparameterized = result
    try:
        names_, slices, shapes = shape_info
        layout_: dict[str, Any] = {
            "n_dim": int(n_dim),
            "n_expanded": int(n_expanded),
            "names": list(names_),
            "slices": [[int(s.start), int(s.stop)] for s in slices],
            "shapes": [list(map(int, s)) for s in shapes],
            "reparameterized": list(reparameterized),
            "free_names": free_names,
        }
        layout_["stored"] = stored_names(model, layout_["names"])
        by_name = dict(zip(layout_["names"], layout_["shapes"], strict=True))
        layout_["free_shapes"] = [by_name[n] for n in free_names]
        logp_inputs, expand_inputs = list(logp_pt.get_shared()), list(expand_pt.get_shared())
        logp_jit, expand_jit = logp_pt.vm.jit_fn, expand_pt.vm.jit_fn
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise _Mismatch(f"nutpie's _make_functions gave an unexpected {err}") from err
    shared = list(dict.fromkeys([*logp_inputs, *expand_inputs]))
    layout_["shared"] = [v.name for v in shared]
    _check_layout(layout_)
    if len(set(layout_["shared"])) != len(shared):
        raise ValueError(f"shared variables must have unique names: {layout_['shared']}")
    offsets, n_user = layout(shared)
    logp_arrays, logp_args = _arrays(offsets, logp_inputs)
    expand_arrays, expand_args = _arrays(offsets, expand_inputs)
    store, n_stored = store_lines(layout_)
    source = TEMPLATE.format(
        n_dim=n_dim,
        n_stored=n_stored,
        store=store,
        n_user=n_user,
        logp_arrays=logp_arrays,
        logp_args=logp_args,
        expand_arrays=expand_arrays,
        expand_args=expand_args,
    )
    keep = set(shared) <= set(model.data_vars)  # else only this path can serve
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING}{name}-", dir=root))  # mode 0700
    try:
        path = staging / f"{name}.py"
        _write(path, source)
        (staging / "__pycache__").mkdir(mode=0o700)
        module = _exec(source, path)
        module.LOGP, module.EXPAND = logp_jit, expand_jit
        logp_c, expand_c = _cfuncs(module)
        if keep:
            _write(staging / LAYOUT, json.dumps(layout_))
            _touch(staging)
            _seal(staging, name)
            _publish(staging, root / name)
    finally:
        if staging.exists():  # not published (or another process's was)
            shutil.rmtree(staging, ignore_errors=True)
    if keep:
        try:
            prune(keep=name)
        except OSError as err:  # a full or read-only disk must not fail the fit
            log.warning("could not prune the callback cache %s: %s", root, err)
    return _assemble(model, layout_, shared, logp_c, expand_c, logp_pt, expand_pt)
