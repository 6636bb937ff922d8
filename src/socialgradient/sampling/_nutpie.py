"""nutpie's compiled model with its C callbacks cached on disk, per model structure.
(over 400 lines because the guarded fast path is one concern a reviewer must read whole: the
generated module, the compatibility probe, the private cache with its integrity checks and
pruning, and the fallback.)

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

**Private APIs, and the public fallback.** This fast path leans on nutpie's private
``nutpie.compile_pymc._make_functions`` (a 7-tuple unpacked by position),
``_prepare_dims_and_coords``, ``address_as_void_pointer``, the fields of
``CompiledPyMCModel`` and the way its ``_make_model`` hands ``user_data.ctypes.data`` to the
callbacks; on numba's ``numba.core.utils._dynamic_modname``/``_dynamic_module`` and, to
keep the callbacks' cache beside them, ``numba.core.ccallback.CFunc`` (built as
``numba.cfunc`` does, with ``numba.core.sigutils.normalize_signature``; its ``_cache`` a
``numba.core.caching.FunctionCache`` whose ``CompileResultCacheImpl`` has
``_locator_classes = (InTreeCacheLocator,)``); on
PyTensor's ``Function.vm.jit_fn``. pyproject.toml caps nutpie, PyTensor and numba at their
next minor for that reason. :func:`probe` checks those names, their arities and fields before
anything is generated; when it finds a mismatch, or anything in the fast path raises (a
changed tuple, a layout that does not add up, an error generating, loading or compiling the
callbacks), :func:`compile_model` warns once (:class:`FastPathWarning`) and returns nutpie's
public ``nutpie.compile_pymc_model(model)``, which samples the same posterior (the same draws
for the same seed, tested) after the full 11-15 s compilation. ``SOCIALGRADIENT_NUTPIE_CACHE=0``
(or ``false``/``no``/``off``) turns the fast path off: the public path, no warning.

**The cache on disk, private and checked.** The generated callbacks are code this process
runs, and numba's cache of them is a pickle (``.nbi``, its index) and machine code (``.nbc``),
so nothing is loaded from a folder anyone but this user could write. The cache lives in
``nutpie_callbacks/`` of the user's own cache folder (``platformdirs.user_cache_dir``:
``$XDG_CACHE_HOME`` or ``~/.cache/socialgradient`` on Linux, ``~/Library/Caches`` on macOS,
``%LOCALAPPDATA%`` on Windows), or where ``SOCIALGRADIENT_NUTPIE_CACHE_DIR`` says; not beside
PyTensor's own cache in its ``base_compiledir``, which a ``PYTENSOR_FLAGS`` setting may point at
a shared folder and whose modes PyTensor manages. :func:`private_folder` creates it with mode
0700; on POSIX it must be owned by this user (a folder of ours open to others is made 0700
again, with a warning), and every folder above it owned by this user or root and writable by
no one else (or sticky, as ``/tmp``): otherwise the fast path is refused
(:class:`UnsafeCache`) and nutpie's public compilation serves, with a
:class:`FastPathWarning`. Windows has no such modes: there the folder's ACLs (private to the
user under ``%LOCALAPPDATA%``) are trusted and only the hashes below are checked.

One folder per entry: the generated source, its layout file, numba's ``__pycache__`` (numba
caches them beside their source file, whatever ``NUMBA_CACHE_DIR`` says; a
``NUMBA_CACHE_LOCATOR_CLASSES`` that would put them elsewhere refuses the fast path), a ``used``
marker whose modification time is refreshed at every load, and ``manifest.json``: the SHA-256
of every other file, numba's included. An entry is built in a private staging folder
(``.build-*``), where numba compiles and caches the callbacks; then its files are made 0600
(folders 0700), hashed into the manifest, and the folder is renamed into place, so a published
entry is whole and never written again. Before anything of an entry is used
(:func:`verify`), every folder and file in it must be a plain one (no link) owned by this user
and writable by no one else, every file the manifest names must have its hash and every
``.py``/``.json``/``.nbi``/``.nbc`` file must be named there; the source is executed from the
bytes that were hashed. Any mismatch: a warning is logged, the entry is discarded (renamed to a
tombstone, then deleted) and built again; nothing of it is executed. What this guards against
is a cache that others can write (a group- or world-writable folder, another user's files):
anyone who runs as this user (or root) can rewrite the cache and its manifest alike, and numba
reads its files after they were checked, so they are as safe as the private folder is.

After a new entry is published the least recently used ones are removed beyond
``SOCIALGRADIENT_NUTPIE_CACHE_ENTRIES`` entries (default 32) or ``SOCIALGRADIENT_NUTPIE_CACHE_MB``
megabytes (default 256; an entry is ~1-3 MB); the entry just written always stays. Safe for
processes sharing the folder (Dask workers): an entry is removed by renaming its folder to a
tombstone first (one atomic step) and then deleting that, and a process that finds an entry
gone, or replaced, while loading it loads or generates it again. The earlier location
(``<PyTensor's base_compiledir>/nutpie_callbacks``) is deleted at the first pruning. A model
whose shared variables are not all ``pm.Data`` cannot be loaded without PyTensor's functions,
so its callbacks are compiled every time and not kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata
import inspect
import json
import logging
import math
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
import types
import uuid
import warnings
from pathlib import Path

import numpy as np
import pymc as pm

from socialgradient.util.files import atomic_write

log = logging.getLogger(__name__)


class FastPathWarning(UserWarning):
    """The cached-callback fast path could not serve (an incompatible nutpie, numba or
    PyTensor, or an error in it): nutpie's public ``compile_pymc_model`` compiled the model
    instead, with the same posterior and the full compilation time."""


#: Environment variables: the switch (``0``/``false``/``no``/``off`` turns the fast path off)
#: and the cache's bounds (entries; megabytes).
ENV_SWITCH = "SOCIALGRADIENT_NUTPIE_CACHE"
ENV_ENTRIES = "SOCIALGRADIENT_NUTPIE_CACHE_ENTRIES"
ENV_MB = "SOCIALGRADIENT_NUTPIE_CACHE_MB"
#: Where the cache lives instead of the user's cache folder.
ENV_DIR = "SOCIALGRADIENT_NUTPIE_CACHE_DIR"
MAX_ENTRIES = 32
MAX_MB = 256.0
#: In an entry's folder: the marker whose mtime says when the entry was last used, the
#: layout file and the manifest (every other file's SHA-256).
MARKER, LAYOUT, MANIFEST = "used", "layout.json", "manifest.json"
PREFIX, TOMBSTONE, STAGING = "callbacks_", ".tomb-", ".build-"
#: What is loaded from an entry (so must be in its manifest): our source and layout,
#: numba's index (a pickle) and its cached machine code.
LOADED = (".py", ".json", ".nbi", ".nbc")
#: Staging folders of builds older than this (a killed process's) are removed when pruning.
STALE_S = 3600.0
#: Owner and mode checks: POSIX only (Windows: ACLs, the user's own %LOCALAPPDATA%).
_OWNERSHIP_AVAILABLE = os.name == "posix" and hasattr(os, "geteuid")

#: The generated module: every name it needs is a literal or a module-level global, so
#: numba can cache ``logp`` and ``expand`` (``LOGP``/``EXPAND`` are set before compiling).
TEMPLATE = '''"""Generated by socialgradient.sampling._nutpie: nutpie's C callbacks."""
import numba
import numpy as np
from nutpie.compile_pymc import address_as_void_pointer

LOGP = None
EXPAND = None
N_DIM = {n_dim}
N_EXPANDED = {n_expanded}
N_USER = {n_user}


def logp(dim, x_, out_, logp_, user_):
    if dim != N_DIM:
        return -1
    try:
        x = numba.carray(x_, (N_DIM,))
        out = numba.carray(out_, (N_DIM,))
        lp = numba.carray(logp_, ())
        user = numba.carray(user_, (N_USER,), np.uint64)
{logp_arrays}
        value, grad = LOGP(x{logp_args})
        lp[()] = value
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(value):
            return 4
    except Exception:  # noqa: BLE001
        return 1
    return 0


def expand(dim, expanded, x_, out_, user_):
    if dim != N_DIM or expanded != N_EXPANDED:
        return -1
    try:
        x = numba.carray(x_, (N_DIM,))
        out = numba.carray(out_, (N_EXPANDED,))
        user = numba.carray(user_, (N_USER,), np.uint64)
{expand_arrays}
        (values,) = EXPAND(x{expand_args})
        out[...] = values
    except Exception:  # noqa: BLE001
        return -2
    return 0
'''

#: Packages whose versions change the generated machine code for the same model graph.
CODE_VERSIONS = ("numba", "llvmlite", "pytensor", "pymc", "nutpie", "numpy")

#: The ``CompiledPyMCModel`` fields :func:`_assemble` fills.
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


class _Mismatch(RuntimeError):
    """What a private API gave is not what the fast path expects."""


class UnsafeCache(RuntimeError):
    """The cache folder is not private to this user (another user's, or under a folder
    others can write), or numba would keep its cache outside it: the fast path is refused."""


class Tampered(RuntimeError):
    """An entry of the cache is not what was written: a file or folder of another owner,
    writable by others or a link, a hash that differs from its manifest, a file the manifest
    does not name, or no manifest."""


def enabled() -> bool:
    """Whether the fast path is on (``SOCIALGRADIENT_NUTPIE_CACHE``, default on)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def probe() -> str | None:
    """Why the private APIs the fast path uses do not fit the installed nutpie, numba and
    PyTensor, or None when they do: every name present and callable with the arguments the
    fast path passes, ``CompiledPyMCModel``'s fields those it fills, and its ``_make_model``
    handing the callbacks the user-data address. Cheap (no model, nothing generated)."""
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
        source = inspect.getsource(cls._make_model)
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


def compile_model(model: pm.Model, key: str):
    """``nutpie.compile_pymc_model(model)`` (numba backend, default options), with callbacks
    loaded from the disk cache when a model of the same code (``key``:
    :func:`socialgradient.sampling.compiled.code_key`, computed before compiling) was compiled
    before; nutpie's public compilation itself when the fast path is off
    (``SOCIALGRADIENT_NUTPIE_CACHE=0``, no warning) or cannot serve (:func:`probe`, or any
    error in it: one :class:`FastPathWarning`)."""
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
        stacklevel=2,
    )
    return _public(model)


def _public(model: pm.Model):
    import nutpie

    return nutpie.compile_pymc_model(model)


def folder() -> Path:
    """Where the generated callbacks and their numba cache live (one folder per entry):
    ``SOCIALGRADIENT_NUTPIE_CACHE_DIR``, else ``nutpie_callbacks`` in the user's cache folder
    (``platformdirs.user_cache_dir("socialgradient")``). Unchecked: see :func:`private_folder`."""
    raw = os.environ.get(ENV_DIR, "").strip()
    if raw:
        return Path(raw).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("socialgradient", appauthor=False), "nutpie_callbacks")


def _old_folder() -> Path:
    """The cache's earlier location, in PyTensor's ``base_compiledir``."""
    import pytensor

    return Path(pytensor.config.base_compiledir) / "nutpie_callbacks"


def private_folder() -> Path:
    """:func:`folder`, resolved, created with mode 0700 where missing, and checked private
    (POSIX): a folder owned by this user (made 0700 again, with a warning, if it was open to
    others), every folder above it owned by this user or root and writable by no one else
    unless sticky. Raises :class:`UnsafeCache` otherwise."""
    root = Path(os.path.abspath(folder()))
    missing = []
    for path in [root, *root.parents]:
        if os.path.lexists(path):
            break
        missing.append(path)
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
    root = root.resolve()
    _check_private(root)
    return root


def _check_private(root: Path) -> None:
    if not _OWNERSHIP_AVAILABLE:
        return
    me = os.geteuid()
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeCache(f"the callback cache {root} is not a folder")
    if st.st_uid != me:
        raise UnsafeCache(
            f"the callback cache {root} is owned by uid {st.st_uid}, not by "
            f"this user (uid {me}); set {ENV_DIR} to a private folder"
        )
    if st.st_mode & 0o077:
        os.chmod(root, 0o700)
        log.warning(
            "the callback cache %s was open to others (mode %o): made private "
            "(0700); its entries are checked before use",
            root,
            stat.S_IMODE(st.st_mode),
        )
    for parent in root.parents:
        st = os.stat(parent)
        if st.st_uid not in (me, 0):
            raise UnsafeCache(
                f"{parent}, above the callback cache {root}, is owned by uid "
                f"{st.st_uid}, neither this user (uid {me}) nor root; set "
                f"{ENV_DIR} to a private folder"
            )
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise UnsafeCache(
                f"{parent}, above the callback cache {root}, is writable by "
                f"others (mode {stat.S_IMODE(st.st_mode):o}): they could "
                f"replace the cache; set {ENV_DIR} to a private folder"
            )


def _check_node(path: Path, folder_: bool) -> None:
    """Raise :class:`Tampered` unless ``path`` is a plain folder (``folder_``) or a regular
    file, not a link, and (POSIX) owned by this user and writable by no one else."""
    st = os.lstat(path)
    kind = stat.S_ISDIR(st.st_mode) if folder_ else stat.S_ISREG(st.st_mode)
    if not kind:
        what = (
            "a link"
            if stat.S_ISLNK(st.st_mode)
            else "not a plain " + ("folder" if folder_ else "file")
        )
        raise Tampered(f"{path} is {what}")
    _check_owner(path, st)


def _check_owner(path: Path, st: os.stat_result) -> None:
    if not _OWNERSHIP_AVAILABLE:
        return
    if st.st_uid != os.geteuid():
        raise Tampered(f"{path} is owned by uid {st.st_uid}, not by this user")
    if st.st_mode & 0o022:
        raise Tampered(f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):o})")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(entry: Path) -> dict[str, Path]:
    """Every file of ``entry`` by its path relative to it (with /), each folder and file
    checked by :func:`_check_node` (a file gone meanwhile is left out)."""
    _check_node(entry, True)
    found = {}
    for top, dirs, files in os.walk(entry, onerror=_raise):
        for d in dirs:
            _check_node(Path(top, d), True)
        for f in files:
            path = Path(top, f)
            try:
                _check_node(path, False)
            except FileNotFoundError:  # a temporary file, gone
                continue
            found[path.relative_to(entry).as_posix()] = path
    return found


def _raise(err: OSError) -> None:
    raise err


def verify(entry: Path) -> dict[str, bytes]:
    """The bytes of ``entry``'s source and layout files, once its folders and files are
    checked (:func:`_check_node`) and every file its manifest names has the SHA-256 recorded
    there, every file that is loaded (:data:`LOADED`) being named. Raises :class:`Tampered`
    (or FileNotFoundError when the entry is gone, or replaced meanwhile)."""
    before = os.lstat(entry)
    try:
        files = _files(entry)
        try:
            manifest = json.loads(files.pop(MANIFEST).read_bytes())
            recorded = manifest["files"]
            if manifest.get("name") != entry.name or not isinstance(recorded, dict):
                raise ValueError(f"a manifest of {manifest.get('name')!r}")
        except KeyError:
            raise Tampered(f"{entry} has no manifest") from None
        except (TypeError, ValueError) as err:
            raise Tampered(f"{entry / MANIFEST} is not a manifest: {err}") from err
        unnamed = sorted(r for r in files if r.endswith(LOADED) and r not in recorded)
        if unnamed:
            raise Tampered(f"{entry}: {unnamed} are not in its manifest")
        kept = {}
        for rel, digest in recorded.items():
            if rel not in files:
                raise Tampered(f"{entry}: {rel}, in its manifest, is missing")
            data = files[rel].read_bytes()
            if _digest(data) != digest:
                raise Tampered(
                    f"{entry / rel} does not match the SHA-256 recorded when it was written"
                )
            if rel.endswith((".py", ".json")):
                kept[rel] = data
    except (Tampered, FileNotFoundError):
        with contextlib.suppress(OSError):
            after = os.lstat(entry)
            if (after.st_ino, after.st_dev) == (before.st_ino, before.st_dev):
                raise
        raise FileNotFoundError(f"{entry} was replaced while it was checked") from None
    return kept


def _discard(entry: Path, why: Exception) -> None:
    """Log ``why`` and remove ``entry`` (tombstoned, then deleted): it is built again."""
    log.warning("callback cache entry %s refused, removed and generated again: %s", entry.name, why)
    _remove(entry)


def _seal(staging: Path, name: str) -> None:
    """Make a staging entry's files 0600 and folders 0700, and record their SHA-256 in its
    manifest (the marker's content is not hashed: only its mtime changes)."""
    recorded = {}
    for top, dirs, files in os.walk(staging):
        for d in dirs:
            os.chmod(Path(top, d), 0o700)
        for f in files:
            path = Path(top, f)
            os.chmod(path, 0o600)
            rel = path.relative_to(staging).as_posix()
            if rel != MARKER:
                recorded[rel] = _digest(path.read_bytes())
    os.chmod(staging, 0o700)
    _write(
        staging / MANIFEST, json.dumps({"name": name, "files": recorded}, indent=1, sort_keys=True)
    )


def _publish(staging: Path, entry: Path) -> None:
    """Move the sealed ``staging`` folder to ``entry``, replacing what is there (a process
    that publishes the same entry meanwhile wins: ours is dropped)."""
    _remove(entry)
    try:
        os.rename(staging, entry)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)


def layout(shared: list) -> tuple[dict, int]:
    """Each shared variable's offset in the user-data array (its address, then its shape)
    and the array's length."""
    offsets, k = {}, 0
    for var in shared:
        offsets[var] = k
        k += 1 + var.type.ndim
    return offsets, max(k, 1)


def _arrays(offsets: dict, inputs: list) -> tuple[str, str]:
    """Source lines rebuilding ``inputs`` from the user data, and the call's extra arguments."""
    lines = []
    for var in inputs:
        off, ndim = offsets[var], var.type.ndim
        shape = "(" + "".join(f"user[{off + 1 + i}], " for i in range(ndim)) + ")"
        lines.append(
            f"        a{off} = numba.carray(address_as_void_pointer(user[{off}]), "
            f"{shape}, np.{np.dtype(var.type.dtype).name})"
        )
    return "\n".join(lines) or "        pass", "".join(f", a{offsets[v]}" for v in inputs)


def user_data(shared: list, values: dict) -> np.ndarray:
    """The user-data array for ``values`` (shared variable -> read-only C array)."""
    offsets, n_user = layout(shared)
    user = np.zeros(n_user, dtype=np.uint64)
    for var, off in offsets.items():
        arr = values[var]
        if arr.ndim != var.type.ndim or arr.dtype != np.dtype(var.type.dtype):
            raise ValueError(
                f"data {var.name!r}: expected {var.type.ndim}-d "
                f"{var.type.dtype}, got {arr.ndim}-d {arr.dtype}"
            )
        user[off] = arr.ctypes.data
        user[off + 1 : off + 1 + arr.ndim] = arr.shape
    return user


def _frozen(value) -> np.ndarray:
    arr = np.array(value, order="C", copy=True)
    arr.flags.writeable = False
    return arr


def _name(key: str) -> str:
    """The generated module's name: the code key, the template and the code versions."""
    versions = " ".join(f"{p}={importlib.metadata.version(p)}" for p in CODE_VERSIONS)
    digest = hashlib.sha256(f"{key}\n{versions}\n{sys.version}\n{TEMPLATE}".encode())
    return f"{PREFIX}{digest.hexdigest()[:32]}"


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, private to the user (mode 0600)."""
    atomic_write(
        path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline="\n"), mode=0o600
    )


def _exec(source: bytes | str, path: Path):
    """The generated module whose source is ``source`` (the bytes checked, never read again
    from the file), as if imported from ``path`` (numba finds its cache beside it)."""
    name = path.stem
    module = types.ModuleType(f"socialgradient_{name}")
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def _cfuncs(module):
    """numba C callbacks of ``module``'s ``logp`` and ``expand``, cached on disk in the
    ``__pycache__`` beside the module's file (:func:`_cfunc`)."""
    import numba

    ptr, u64 = numba.types.CPointer(numba.types.double), numba.types.uint64
    logp_c = _cfunc(module.logp, numba.types.int64(u64, ptr, ptr, ptr, numba.types.voidptr))
    expand_c = _cfunc(module.expand, numba.types.int64(u64, u64, ptr, ptr, numba.types.voidptr))
    return logp_c, expand_c


@functools.cache
def _beside_cache() -> type:
    """numba's ``FunctionCache`` that keeps a function's cache in the ``__pycache__`` beside
    its source file only (numba's in-tree locator), never where ``NUMBA_CACHE_DIR`` or the
    user-wide locator would put it."""
    from numba.core import caching

    class Impl(caching.CompileResultCacheImpl):
        _locator_classes = (caching.InTreeCacheLocator,)

    class BesideCache(caching.FunctionCache):
        _impl_class = Impl

    return BesideCache


def _cfunc(fn, sig):
    """``numba.cfunc(sig, cache=True)(fn)`` (what that decorator does, with
    :func:`_beside_cache`), so the callbacks' cache is in the private entry whatever
    ``NUMBA_CACHE_DIR`` says; :class:`UnsafeCache` if numba would still cache it elsewhere
    (``NUMBA_CACHE_LOCATOR_CLASSES`` overrides every locator)."""
    from numba.core import sigutils
    from numba.core.ccallback import CFunc

    beside = os.path.normcase(os.path.join(os.path.dirname(fn.__code__.co_filename), "__pycache__"))
    cache = _beside_cache()(fn)
    where = os.path.normcase(os.path.abspath(cache.cache_path))
    if where != beside:
        raise UnsafeCache(
            f"numba would cache the callbacks in {where}, not in the private "
            f"{beside} (NUMBA_CACHE_LOCATOR_CLASSES set?)"
        )
    compiled = CFunc(fn, sigutils.normalize_signature(sig), locals={}, options={})
    compiled._cache = cache
    compiled.compile()
    return compiled


def _check_layout(layout_: dict) -> None:
    """Raise :class:`_Mismatch` unless the layout adds up: the slices tile the expanded
    vector in order, each as long as its shape, the free variables first and tiling the
    sampler's vector."""
    try:
        n_dim, n_expanded = layout_["n_dim"], layout_["n_expanded"]
        names, slices, shapes = layout_["names"], layout_["slices"], layout_["shapes"]
        free, free_shapes = layout_["free_names"], layout_["free_shapes"]
        ok = (
            isinstance(n_dim, int)
            and isinstance(n_expanded, int)
            and len(names) == len(slices) == len(shapes)
            and names[: len(free)] == free
            and shapes[: len(free)] == free_shapes
            and isinstance(layout_["shared"], list)
            and isinstance(layout_["reparameterized"], list)
        )
        stop = 0
        for k, ((start, end), shape) in enumerate(zip(slices, shapes, strict=True)):
            ok = ok and start == stop and end - start == math.prod(shape)
            stop = end
            if k == len(free) - 1:
                ok = ok and stop == n_dim
        ok = ok and stop == n_expanded and (free or n_dim == 0)
    except (KeyError, TypeError, ValueError) as err:
        raise _Mismatch(f"layout {sorted(layout_)}: {err}") from err
    if not ok:
        raise _Mismatch(
            f"the layout does not add up: n_dim {layout_['n_dim']}, "
            f"n_expanded {layout_['n_expanded']}, slices {layout_['slices']}, "
            f"shapes {layout_['shapes']}"
        )


def _initial_point(model: pm.Model, names: list[str], shapes: list) -> object:
    """nutpie's initial-point function for ``model``: a flat float64 array per seed, the
    free variables in ``names`` order (what nutpie's ``_rv_dict_to_flat_array_wrapper``
    around its locked ``make_initial_point_fn`` gives, written here: one private name less)."""
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

    shape_info = (
        layout_["names"],
        [slice(*s) for s in layout_["slices"]],
        [tuple(s) for s in layout_["shapes"]],
    )
    values = {v: _frozen(v.get_value()) for v in shared}
    dims, coords = cp._prepare_dims_and_coords(model, shape_info, layout_["reparameterized"])
    initial = _initial_point(model, layout_["free_names"], layout_["free_shapes"])
    return cp.CompiledPyMCModel(
        _n_dim=layout_["n_dim"],
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp_c,
        compiled_expand_func=expand_c,
        initial_point_func=initial,
        shared_data={v.name: values[v] for v in shared},
        shared_var_keys={v: v.name for v in shared},
        user_data=user_data(shared, values),
        n_expanded=layout_["n_expanded"],
        shape_info=shape_info,
        logp_func=logp_pt,
        expand_func=expand_pt,
        reparameterized_names=layout_["reparameterized"],
    )


def _cached(model: pm.Model, name: str):
    """The compiled model straight from the cache, without building PyTensor's functions
    (~1.3 s for England): the layout file says what they would give and numba loads the
    callbacks. None when the entry is missing, refused (:func:`verify`: then discarded, with
    a warning) or does not serve this model (then :func:`_fast` builds it)."""
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
    """The compiled model from the cache, or built and cached; a process that removes the
    entry meanwhile (pruning) makes this one build it again (three tries)."""
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
    """Build PyTensor's functions with nutpie's ``_make_functions``, generate and compile
    the callbacks in a private staging folder (numba caches them there), write the layout
    file and the manifest, publish the folder as the entry ``name`` and prune the cache."""
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
        layout_ = {
            "n_dim": int(n_dim),
            "n_expanded": int(n_expanded),
            "names": list(names_),
            "slices": [[int(s.start), int(s.stop)] for s in slices],
            "shapes": [list(map(int, s)) for s in shapes],
            "reparameterized": list(reparameterized),
            "free_names": free_names,
        }
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
    source = TEMPLATE.format(
        n_dim=n_dim,
        n_expanded=n_expanded,
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


def _touch(entry: Path) -> None:
    """Mark ``entry`` used now (its marker's mtime orders the pruning); the marker is made
    private (0600) if it has to be created. An entry gone meanwhile: nothing to do."""
    marker = entry / MARKER
    try:
        os.utime(marker)
    except FileNotFoundError:
        with contextlib.suppress(FileNotFoundError):
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600))


def limits() -> tuple[int, int]:
    """The cache's bounds: (entries, bytes), from the environment or the defaults."""

    def number(var: str, default: float, kind: type) -> float:
        raw = os.environ.get(var)
        if raw is None or not raw.strip():
            return default
        try:
            value = kind(raw)
            if value < 0:
                raise ValueError(raw)
            return value
        except ValueError:
            log.warning("%s=%r is not a non-negative number; using %s", var, raw, default)
            return default

    return (int(number(ENV_ENTRIES, MAX_ENTRIES, int)), int(number(ENV_MB, MAX_MB, float) * 2**20))


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def _remove(path: Path) -> None:
    """Remove ``path`` (an entry's folder or a file) in one atomic step for everyone else: a
    rename to a tombstone, then the deletion of that. Gone already: nothing to do."""
    tomb = path.parent / f"{TOMBSTONE}{path.name}-{uuid.uuid4().hex}"
    try:
        os.rename(path, tomb)
    except FileNotFoundError:
        return
    if tomb.is_dir():
        shutil.rmtree(tomb, ignore_errors=True)
    else:
        tomb.unlink(missing_ok=True)


def entries() -> list[tuple[float, int, Path]]:
    """The cache's entries as (last used, bytes, folder), most recently used first."""
    where = folder()
    found = []
    try:
        paths = list(where.iterdir())
    except FileNotFoundError:
        return []
    for path in paths:
        if not path.name.startswith(PREFIX) or not path.is_dir():
            continue
        try:
            try:
                used = (path / MARKER).stat().st_mtime
            except FileNotFoundError:
                used = path.stat().st_mtime
        except FileNotFoundError:  # removed meanwhile
            continue
        found.append((used, _size(path), path))
    return sorted(found, key=lambda e: -e[0])


def prune(keep: str | None = None) -> list[str]:
    """Remove the least recently used entries beyond :func:`limits` (never ``keep``), the
    tombstones other processes left behind, staging folders an hour old (a killed build's)
    and the cache's earlier location in PyTensor's folder. Returns the names of the entries
    removed."""
    max_entries, max_bytes = limits()
    where = folder()
    now = time.time()
    _forget_old_location(where)
    try:
        paths = list(where.iterdir())
    except FileNotFoundError:
        return []
    for path in paths:
        try:
            if path.name.startswith(TOMBSTONE):  # left by a process that died deleting it
                if path.is_dir():  # (racing another rmtree is harmless)
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            elif path.name.startswith(STAGING) and now - path.stat().st_mtime > STALE_S:
                _remove(path)
        except FileNotFoundError:
            continue
    found = entries()
    found.sort(key=lambda e: e[2].name != keep)  # stable: keep first, then newest first
    removed, count, total = [], 0, 0
    for _, size, path in found:
        if path.name == keep or (count < max_entries and total + size <= max_bytes):
            count, total = count + 1, total + size
        else:
            _remove(path)
            removed.append(path.name)
    if removed:
        log.info(
            "pruned %d callback cache entries (bounds: %d entries, %.0f MB)",
            len(removed),
            max_entries,
            max_bytes / 2**20,
        )
    return removed


def _forget_old_location(where: Path) -> None:
    """Delete the cache's earlier location (``nutpie_callbacks`` in PyTensor's
    ``base_compiledir``) unless the cache is there now."""
    try:
        old = _old_folder()
        if not old.is_dir() or old.resolve() == Path(where).resolve():
            return
    except (ImportError, OSError):
        return
    _remove(old)
    log.info("removed the callback cache's earlier location %s", old)


def _pymc_initial_point(model: pm.Model):
    """nutpie's default starting points for ``model`` (support points, jittered), a dict."""
    from pymc.initial_point import make_initial_point_fn

    return make_initial_point_fn(
        model=model,
        overrides=None,
        default_strategy="support_point",
        jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )


def _is_ours(compiled) -> bool:
    """Whether ``compiled`` came from the fast path (our flat ``uint64`` user data) rather
    than nutpie's public compilation (its structured record)."""
    data = getattr(compiled, "user_data", None)
    return isinstance(data, np.ndarray) and data.dtype == np.uint64 and data.ndim == 1


def with_data(compiled, model: pm.Model):
    """``compiled`` sampling ``model``, a model of the same structure with other data: its
    shared variables' values (same rank and dtype; shapes may differ) and its starting
    points, which may depend on the data (an LA effect starts at its mean, a + b_b m_c).
    Serves a compilation of either path (for nutpie's own, through its ``with_data``)."""
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
