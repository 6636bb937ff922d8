"""``socialgradient warm``: compile at install time what the first fit would compile.

What a cold first fit spends its time on (``bench/cold_start.md``): not imports, not the
data, but numba. With every cache empty, compiling a model of the default spec for nutpie
(:func:`socialgradient.sampling.compiled.compile_nutpie`; a small table's, profiled) typed and
compiled 517 numba functions: PyTensor's numba implementation of each op of the log density
and its gradient (elemwise kernels, subtensors, reductions, ..., cached on disk in PyTensor's
``base_compiledir/numba``, keyed by the op and its types, not by the data's size) and
numba's own implementations of the NumPy calls in them, then nutpie's two C callbacks
around them (cached per model code in the callbacks' cache,
:mod:`socialgradient.sampling._nutpie`). A model structure never compiled, with PyTensor's
cache warm, pays only its own callbacks and the graph's functions.

What is chosen: compile, without sampling, the model of each default spec on the embedded
default data, through the very function a fit calls, into the caches a fit reads: PyTensor's
``base_compiledir`` and the callbacks' folder (``SOCIALGRADIENT_NUTPIE_CACHE_DIR`` or the
user's cache folder). ``make``'s install step runs it after ``pip install``. Then
``make run`` and a first ``fit`` of the default data load their callbacks from the cache, as
does the first fit of any table of the same model code (a default spec, England's number of
LAs and centring, whatever its LSOAs); a table of another shape (another LA count: another
model code) finds PyTensor's op functions compiled and pays only its own callbacks. The specs warmed
by default are ``run``'s (``models/national_referrals.toml``) and ``fit``'s without
``--spec`` (the outcome ``referrals``, every other field default); ``--spec`` and
``--outcome`` name others, ``--data`` another table. Not chosen: callbacks that serve every
table size of a spec (the graph PyMC builds fixes the LA count and the parameters' shapes,
so the callbacks' code depends on them; a size-free model is a change to the model builder,
not to the cache), and shipping compiled caches in the wheel (machine code of one CPU, numba
and LLVM version, loaded as pickles: the callbacks' cache accepts only files this user
wrote, :mod:`socialgradient.sampling._nutpie_cache`).

Idempotent: an entry already in the callbacks' cache (checked as a fit checks it) is not
compiled again, so a second run costs the imports, reading the table and building the
models. It writes nothing but what a fit of the same specs would write, to the same places.
Where a cache cannot be written (a read-only folder, one not private to the user, PyTensor's
folder unusable) or the cached-callback path is off or unavailable, it says so and does
nothing: exit status 0, since a fit still works, compiling as it goes.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from socialgradient.spec import Sampling, Spec, load_spec

log = logging.getLogger("socialgradient.cli")


@dataclass(frozen=True)
class Warmed:
    """What :func:`warm` did for one spec.

    Attributes
    ----------
    spec : str
        The spec's name (or its outcome).
    status : str
        ``cached`` (the entry was there: nothing compiled), ``compiled`` (compiled and cached
        now), ``not cached`` (compiled, but this model cannot be cached), ``failed`` (the
        fast path fell back: nothing cached) or ``skipped`` (a joint spec: not warmed).
    entry : str
        The callbacks' cache entry (its folder's name), or empty.
    seconds : float
        Seconds spent building and compiling the model (wall clock).
    """

    spec: str
    status: str
    entry: str
    seconds: float


def unwritable() -> str | None:
    """Return why the caches a fit compiles into cannot be written now, or None.

    The callbacks' folder (:func:`socialgradient.sampling._nutpie.private_folder`: created,
    private) and PyTensor's ``base_compiledir``: each must take a new file (created and
    removed at once).
    """
    from socialgradient.sampling import _nutpie as callbacks

    try:
        root = callbacks.private_folder()
    except (OSError, callbacks.UnsafeCache) as err:
        return f"the callbacks' cache {callbacks.folder()} cannot be used: {err}"
    problem = _probe(root)
    if problem:
        return f"the callbacks' cache {root} is not writable: {problem}"
    try:
        import pytensor
        from pytensor.link.numba import cache  # noqa: F401 (creates base_compiledir/numba)

        base = Path(pytensor.config.base_compiledir)
    except (ImportError, OSError) as err:
        return f"PyTensor's compilation folder cannot be used: {err}"
    problem = _probe(base / "numba")
    if problem:
        return f"PyTensor's compilation folder {base} is not writable: {problem}"
    return None


def _probe(folder: Path) -> str | None:
    """Create and remove a file in ``folder`` (made if missing); the error, or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".warm-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        return f"{type(err).__name__}: {err}"
    return None


def default_specs() -> list[Spec]:
    """Return the specs a first ``run`` and a first ``fit`` use.

    ``run``'s (``models/national_referrals.toml``, sampled to the target) and ``fit``'s
    without ``--spec`` (outcome ``referrals``, sampled to the target).
    """
    from socialgradient.cli.parsing import DEFAULT_SPEC

    return [
        load_spec(DEFAULT_SPEC).replace(stop="target"),
        Spec(outcome="referrals", sampling=Sampling(stop="target")),
    ]


def warm(table: pd.DataFrame, specs: list[Spec]) -> list[Warmed]:
    """Compile each spec's model of ``table`` for nutpie into the on-disk caches.

    The model a fit would build (:func:`socialgradient.model.encode.encode`, the LA-effect
    parameterisation it would choose, :func:`socialgradient.model.build.build_model`), its
    callbacks compiled unless their cache entry is there already. Nothing is sampled.

    Parameters
    ----------
    table : pandas.DataFrame
        The neighbourhood table (validated as a fit validates it).
    specs : list of Spec
        The specs to warm; a joint spec (several outcomes) is skipped.

    Returns
    -------
    list of Warmed
        One per spec, in order.
    """
    from socialgradient.api import encode
    from socialgradient.sampling import _nutpie as callbacks
    from socialgradient.sampling import compiled
    from socialgradient.sampling.fit import model_of

    done = []
    for spec in specs:
        start = time.perf_counter()
        name = spec.name or spec.outcome
        data = encode(table, spec)
        if isinstance(data, list):
            done.append(Warmed(name, "skipped", "", time.perf_counter() - start))
            continue
        model, _ = model_of(data, spec)  # the model a fit samples
        code = compiled.code_key(model)
        entry = callbacks._name(code)
        if _present(callbacks.folder() / entry):
            status = "cached"
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", callbacks.FastPathWarning)
                callbacks.compile_model(model, code)
            fell_back = any(issubclass(w.category, callbacks.FastPathWarning) for w in caught)
            for w in caught:
                log.warning("%s", w.message)
            if fell_back:
                status = "failed"
            else:
                status = "compiled" if _present(callbacks.folder() / entry) else "not cached"
        done.append(Warmed(name, status, entry, time.perf_counter() - start))
    return done


def _present(entry: Path) -> bool:
    """Whether the cache entry ``entry`` is there and passes the checks a fit makes."""
    from socialgradient.sampling import _nutpie as callbacks

    if not entry.is_dir():
        return False
    try:
        callbacks.verify(entry)
    except (callbacks.Tampered, OSError):
        return False  # a fit would discard and rebuild it: compile_model does
    return True


def _warm(args) -> int:
    """``warm``: fill the compilation caches for the default specs (or those named).

    Exit status 0 whenever a fit would still work (a cache that cannot be written, the fast
    path off: a message, nothing done); 2 on an unreadable table or spec.
    """
    from socialgradient.data import schema
    from socialgradient.sampling import _nutpie as callbacks

    if not callbacks.enabled():
        print(
            f"socialgradient warm: {callbacks.ENV_SWITCH} turns the cached callbacks off; skipped"
        )
        return 0
    problem = callbacks.probe()
    if problem is not None:
        print(f"socialgradient warm: the cached callbacks cannot serve ({problem}): skipped")
        return 0
    problem = unwritable()
    if problem is not None:
        print(f"socialgradient warm: {problem}; skipped (a fit compiles as it goes)")
        return 0
    specs = [load_spec(p) for p in args.spec or []]
    specs += [Spec(outcome=o, sampling=Sampling(stop="target")) for o in args.outcome or []]
    specs = specs or default_specs()
    table = schema.load(args.data, sorted({s.outcome for s in specs}))
    log.info("warming %d spec(s) on %s (%d LSOAs)", len(specs), args.data, len(table))
    start = time.perf_counter()
    for w in warm(table, specs):
        print(f"{w.spec}: {w.status} ({w.seconds:.1f} s){' ' + w.entry if w.entry else ''}")
    print(
        f"warm: {time.perf_counter() - start:.1f} s; callbacks in {callbacks.folder()}, "
        f"PyTensor's in {_pytensor_folder()}"
    )
    return 0


def _pytensor_folder() -> str:
    import pytensor

    return str(pytensor.config.base_compiledir)
