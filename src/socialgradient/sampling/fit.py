"""Sampling, seeds, and saving/loading fitted results.

Over 400 lines because saving and loading include bringing fits saved by earlier versions
to today's layout.

:func:`fit` returns an ArviZ 1.x ``xarray.DataTree`` with the groups ``posterior``,
``sample_stats``, ``observed_data``, ``constant_data``, ``log_likelihood`` and
``posterior_predictive``. The last two are computed after sampling
(:mod:`socialgradient.sampling.predict`) on at most ``max_predictive_draws`` draws (fewer for very
large tables, see ``MAX_PREDICTIVE_VALUES``), evenly thinned
within chains, because at England's size they hold one value per LSOA per draw
(1,000 draws x 32,844 LSOAs = 33M values). The root attrs hold the spec (``spec``, JSON),
its hash (``spec_hash``), a hash of the data (``data_hash``), the sampler's timings
(``compile_seconds``, ``sampling_seconds``) and the national mean deprivation ``x_bar``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import time

import numpy as np
import pymc as pm
import xarray as xr

from socialgradient.model import parameterisation
from socialgradient.model.build import LA_THETA_COORDS, build_model
from socialgradient.model.data import NeighbourhoodData
from socialgradient.model.sampler_forms import DERIVED, derived
from socialgradient.model.terms import TERMS
from socialgradient.sampling import compiled as compiled_module
from socialgradient.sampling import predict, tuning
from socialgradient.sampling import target as target_module
from socialgradient.sampling.saved import (
    JOINT_LOG_LIKELIHOOD,
    REQUIRED_ATTRS,
    REQUIRED_GROUPS,
    _log_likelihood,
    arviz_order,
    current_layout,
    load,
    outcomes,
    save,
    stacked_log_likelihood,
    with_log_likelihood,
)
from socialgradient.spec import Sampling, Spec
from socialgradient.util.memory import fixed_thresholds, release_memory
from socialgradient.util.progress import step
from socialgradient.util.threads import one_blas_thread

log = logging.getLogger(__name__)

#: Draws (all chains together) kept for the pointwise log-likelihood and replicates ...
MAX_PREDICTIVE_DRAWS = 1000
#: ... and at most this many draw x row values each (about 0.8 GB of float64), so a
#: 330k-cell stratified fit keeps ~300 draws rather than running out of memory.
MAX_PREDICTIVE_VALUES = 100_000_000
#: The sampler's tree attrs a fit keeps: the target's verdict (JSON), the tuning draws used.
SAMPLER_ATTRS = ("sampling_target", "tune")


def reported(posterior: xr.Dataset) -> xr.Dataset:
    """Return ``posterior`` without its sampler-side forms.

    ``posterior`` without its sampler-side forms: :data:`DERIVED` and the LA-effect blocks
    of :func:`socialgradient.model.build.la_theta`, with the coords only they used; its variables
    in :func:`arviz_order`.
    """
    posterior = posterior.drop_vars([v for v in posterior.data_vars if derived(str(v))])
    if "spatial_effect" in posterior:  # one value per LSOA and draw: float32 halves it
        posterior["spatial_effect"] = posterior["spatial_effect"].astype(np.float32)
    return arviz_order(
        posterior.drop_vars(
            [
                c
                for c in map(str, posterior.coords)
                if c.startswith("la_cov") or LA_THETA_COORDS.match(c)
            ]
        )
    )


def data_hash(data: NeighbourhoodData | list[NeighbourhoodData]) -> str:
    """Return the SHA-256 (first 16 hex digits) of the arrays a fit depends on.

    SHA-256 (first 16 hex digits) of the arrays a fit depends on (of each threshold's,
    for the joint model's list).
    """
    if isinstance(data, list):
        return hashlib.sha256("|".join(data_hash(d) for d in data).encode()).hexdigest()[:16]
    h = hashlib.sha256()
    parts = [data.lsoa, data.la[data.la_index], data.children, data.income, data.y]
    slots = {t.name: t.hash_parts() for t in data.terms}
    if data.exposure_name != "children":  # (hashes of children-exposure fits unchanged)
        slots["exposure"] = [np.asarray(data.exposure), np.asarray(data.exposure_name)]
    if data.trials is not None:
        slots["trials"] = [data.trials]
    for name in sorted(slots, key=_hash_rank):
        parts += slots[name]
    for part in parts:
        h.update(np.ascontiguousarray(part).tobytes())
        h.update(b"|")
    h.update(data.outcome.encode())
    return h.hexdigest()[:16]


#: The order in which parts entered the data hash over the versions, so that earlier fits'
#: hashes are unchanged; a term not named here (a new one) comes after them.
HASH_ORDER = ("strata", "exposure", "trials", "moderators", "la_moderators", "la_outcome", "trend")


def _hash_rank(name: str) -> int:
    return HASH_ORDER.index(name) if name in HASH_ORDER else len(HASH_ORDER)


def la_names(data: NeighbourhoodData) -> dict:
    """Return the ``la_name`` coordinate of ``constant_data``.

    The ``la_name`` coordinate (dim ``la``, a non-index coordinate beside the codes) of
    ``constant_data``, so the LA figures and tables can show LA names; empty when the data
    has no names. Names are public; the data hash does not include them.

    Only ``constant_data`` carries it: in ``posterior`` a non-index coordinate on some
    variables (those with dim ``la``) but not others makes ArviZ's summary fail (xarray's
    ``to_stacked_array``: "coordinate 'la_name' not present in all datasets"), and ArviZ's
    labels show the index (the codes) anyway. :func:`load` drops it from the posterior of a
    fit saved before.
    """
    return {} if data.la_name is None else {"la_name": ("la", np.asarray(data.la_name, str))}


def model_of(data: NeighbourhoodData, spec: Spec) -> tuple[pm.Model, np.ndarray]:
    """Return the model :func:`fit` samples for ``data`` and ``spec``, and its centring.

    The LA effects' parameterisation chosen for these data
    (:func:`socialgradient.model.parameterisation.choose`: which coefficients of each LA are
    sampled centred) and the model built with it; ``socialgradient warm`` compiles the same.
    """
    model, centred, _ = _model(data, spec)
    return model, centred


def _model(data: NeighbourhoodData, spec: Spec) -> tuple[pm.Model, np.ndarray, bool]:
    """:func:`model_of`, and whether the data pin the LA SDs down (for the tuning)."""
    centred, pinned = parameterisation.la_choice(data, spec.family, spec.la_effects)
    return build_model(data, spec, centred=centred), centred, pinned


def fit(
    data: NeighbourhoodData,
    spec: Spec,
    *,
    progressbar: bool = True,
    max_predictive_draws: int = MAX_PREDICTIVE_DRAWS,
    pointwise: bool = True,
) -> xr.DataTree:
    """Fit the national model for one outcome.

    Parameters
    ----------
    data : NeighbourhoodData
        The encoded outcome (:meth:`NeighbourhoodData.from_table`).
    spec : Spec
        Family and sampling settings (sampler, draws and tune per chain, chains, seed).
    progressbar : bool
        Show the sampler's progress bar.
    max_predictive_draws : int
        Draws (all chains) used for ``log_likelihood`` and ``posterior_predictive``; fewer
        when draws x rows would exceed ``MAX_PREDICTIVE_VALUES``.
    pointwise : bool
        Compute the pointwise ``log_likelihood`` now (for LOO). ``False`` leaves it out
        (``socialgradient fit`` does: the biggest part of ``posterior.nc``);
        :func:`with_log_likelihood` (which :func:`load` and LOO comparisons call) adds it.

    Returns
    -------
    xarray.DataTree
        Posterior variables with dims (chain, draw[, la, effect]); ``log_likelihood`` and
        ``posterior_predictive`` with dims (chain, draw, lsoa).
    """
    model, centred, pinned = _model(data, spec)
    tree, compile_seconds, sampling_seconds = sample(
        model, tuning.resolve(spec, pinned), progressbar, target_accept=spec.target_accept
    )
    return assemble(
        tree,
        data,
        spec,
        centred=centred,
        compile_seconds=compile_seconds,
        sampling_seconds=sampling_seconds,
        max_predictive_draws=max_predictive_draws,
        pointwise=pointwise,
    )


def require_numpyro() -> None:
    """Raise a clear ImportError if the optional numpyro sampler is not installed."""
    missing = [m for m in ("jax", "numpyro") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"sampler 'numpyro' needs {' and '.join(missing)}, which socialgradient does not "
            "install by default: pip install 'socialgradient[numpyro]' (or use the default "
            "sampler 'nutpie', or 'pymc')"
        )


def checked(model: pm.Model) -> list[str]:
    """Return the reported quantities whose diagnostics the target checks.

    ``model``'s variables but :data:`DERIVED`, the LA-effect blocks and any with a row dim.
    """
    rows = {d for d in model.coords if d in ("lsoa", "cell", "row")}
    names = []
    for var in [*model.free_RVs, *model.deterministics]:
        name = var.name
        if derived(name):
            continue
        if rows & set(model.named_vars_to_dims.get(name, ())):
            continue
        names.append(name)
    return names


def sample(model: pm.Model, s: Sampling, progressbar: bool = True, **nuts):
    """Run NUTS on ``model`` with the sampler, draws, chains and seed of ``s``.

    ``nuts`` passes sampler options (e.g. ``target_accept``). Returns the sampler's
    DataTree, the compile time (NaN for PyMC and numpyro, which compile while sampling)
    and the sampling time, in seconds. With ``s.stop == "target"`` the draws are those of
    :func:`socialgradient.sampling.target.sample` and the tree's attrs hold its verdict
    (``sampling_target``, JSON). nutpie's chains run with one BLAS thread each
    (:func:`socialgradient.util.threads.one_blas_thread`). Afterwards the C heap's free memory
    (the compilers', the sampler's) goes back to the system
    (:func:`socialgradient.util.memory.release_memory`).
    """
    if s.sampler == "numpyro":
        require_numpyro()
    s = tuning.fallback(s)  # a caller that applied no data rule (sampling.tuning)
    # a line when each step starts, not only when it ends: compiling can take half a minute
    draws = f"up to {s.max_draws} draws to the target" if s.stop == "target" else f"{s.draws} draws"
    what = f"{s.chains} chains x {draws} ({s.tune} tuning) with {s.sampler}"
    kept = s.draws
    start = time.perf_counter()
    if slow := fixed_thresholds():
        log.warning(slow)
    if s.sampler == "nutpie":
        log.info("compiling the model for nutpie ...")
        compiled, reused = compiled_module.compile_nutpie(model)
        compile_seconds = time.perf_counter() - start
        log.info(
            "compiled the model for nutpie: %.1f s%s",
            compile_seconds,
            " (reusing this process's compilation of a model of the same structure)"
            if reused
            else "",
        )
        log.info("sampling %s ...", what)
        start = time.perf_counter()
        with one_blas_thread():  # the chains are the threads (util.threads)
            tree, kept = _sample_nutpie(compiled, model, s, progressbar, **nuts)
    else:
        compile_seconds = float("nan")
        log.info("sampling %s (compiling the model first) ...", what)
        with model:
            tree = pm.sample(
                draws=s.draws,
                tune=s.tune,
                chains=s.chains,
                random_seed=s.seed,
                progressbar=progressbar,
                nuts_sampler=s.sampler,
                compute_convergence_checks=False,
                **nuts,
            )
    sampling_seconds = time.perf_counter() - start
    tree.attrs["tune"] = s.tune
    # the compilers' and sampler's freed memory back to the system before the per-row steps
    release_memory(collect=True)
    log.info(
        "sampled %d chains x %d draws (%s): compile %.1f s, sampling %.1f s",
        s.chains,
        kept,
        s.sampler,
        compile_seconds,
        sampling_seconds,
    )
    return tree, compile_seconds, sampling_seconds


def _sample_nutpie(compiled, model: pm.Model, s: Sampling, progressbar: bool, **nuts):
    """Run nutpie on ``compiled``: to the target (``s.stop == "target"``) or fixed draws.

    Returns the sampler's DataTree (its attrs hold the target's verdict, JSON, when sampled
    to a target) and the draws per chain kept.
    """
    import nutpie

    if s.stop != "target":
        tree = nutpie.sample(
            compiled,
            draws=s.draws,
            tune=s.tune,
            chains=s.chains,
            seed=s.seed,
            progress_bar=progressbar,
            save_warmup=False,
            **nuts,
        )
        return tree, s.draws
    tree, verdict = target_module.sample(
        compiled,
        target_module.Target.of(s),
        chains=s.chains,
        tune=tuning.tune_of(s),
        seed=s.seed,
        names=checked(model),
        progress_bar=progressbar,
        **nuts,
    )
    tree.attrs["sampling_target"] = json.dumps(verdict.to_dict())
    log.info(verdict.line())
    return tree, verdict.draws


def assemble(
    tree: xr.DataTree,
    data: NeighbourhoodData,
    spec: Spec,
    *,
    centred: np.ndarray | None = None,
    compile_seconds: float = float("nan"),
    sampling_seconds: float = float("nan"),
    max_predictive_draws: int = MAX_PREDICTIVE_DRAWS,
    pointwise: bool = True,
) -> xr.DataTree:
    """Turn a sampled model into the package's result tree.

    Use it for a model built with :func:`socialgradient.api.build` (and extended or
    sampled by hand, with ``pm.sample`` or nutpie): ``tree`` is the sampler's result
    (``posterior`` with the model's variables, ``sample_stats``), ``data`` and ``spec``
    what the model was built from. The result has the groups, attrs, pointwise
    log-likelihood and replicates of :func:`fit`'s, so ``summary``, ``la_gradients``,
    ``plot``, ``ppc`` and LOO work on it.
    """
    if "posterior" not in tree.children or "la_effect" not in tree["posterior"]:
        raise ValueError(
            "assemble: the tree has no posterior la_effect; sample a model "
            "built by socialgradient (build_model / api.build)"
        )
    posterior = reported(tree["posterior"].to_dataset())
    cap = max(posterior.sizes["chain"], MAX_PREDICTIVE_VALUES // len(data.y))
    few = predict.thin(posterior, min(max_predictive_draws, cap))
    row, coords = data.row_dim, data.row_coords
    n_draws = few.sizes["chain"] * few.sizes["draw"]
    loglik = _log_likelihood(few, data, spec.family) if pointwise else None
    with step(log, "posterior predictive replicates (%d draws x %d rows)", n_draws, len(data.y)):
        replicates = predict.replicate(few, data, spec.family, seed=spec.sampling.seed).to_dataset()
    term_data: dict = {}
    term_coords: dict = {}
    for term in data.terms:
        variables, extra = term.constant_data(row)
        term_data.update(variables)
        term_coords.update(extra)
    groups = {
        "posterior": posterior,
        "sample_stats": tree["sample_stats"].to_dataset(),
        "observed_data": xr.Dataset({data.outcome: (row, data.y)}, coords=coords),
        "constant_data": xr.Dataset(
            {
                "children": (row, data.children),
                "income": (row, data.income),
                "w": (row, data.w),
                "lsoa_la": (row, data.la[data.la_index]),
                "m_la": ("la", data.m_la),
                "m_c": ("la", data.m_c),
                **({"exposure": (row, data.exposure)} if data.exposure_name != "children" else {}),
                **({"trials": (row, data.trials)} if data.trials is not None else {}),
                **({"centred": ("la", centred)} if centred is not None else {}),
                **term_data,
            },
            coords={**coords, "la": data.la, **la_names(data), **term_coords},
        ),
        **({"log_likelihood": loglik} if loglik is not None else {}),
        "posterior_predictive": replicates,
    }
    out = xr.DataTree.from_dict(groups)
    out.attrs.update(
        spec=spec.to_json(),
        spec_hash=spec.hash,
        data_hash=data_hash(data),
        outcome=data.outcome,
        family=spec.family,
        x_bar=data.x_bar,
        exposure=data.exposure_name,
        compile_seconds=compile_seconds,
        sampling_seconds=sampling_seconds,
    )
    out.attrs.update({k: tree.attrs[k] for k in SAMPLER_ATTRS if k in tree.attrs})
    for kind in TERMS:  # every fit records, e.g., its strata, "[]" when it has none
        out.attrs.update(kind.absent_attrs())
    for term in data.terms:
        out.attrs.update(term.attrs())
    return out


#: Its own names and those re-exported from :mod:`socialgradient.sampling.saved` (old import paths).
__all__ = [
    "DERIVED",
    "HASH_ORDER",
    "JOINT_LOG_LIKELIHOOD",
    "MAX_PREDICTIVE_DRAWS",
    "MAX_PREDICTIVE_VALUES",
    "REQUIRED_ATTRS",
    "REQUIRED_GROUPS",
    "arviz_order",
    "assemble",
    "current_layout",
    "data_hash",
    "fit",
    "la_names",
    "load",
    "outcomes",
    "reported",
    "require_numpyro",
    "sample",
    "save",
    "stacked_log_likelihood",
    "with_log_likelihood",
]
