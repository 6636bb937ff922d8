"""Sampling, seeds, and saving/loading fitted results (over 400 lines because saving and
loading include bringing fits saved by earlier versions to today's layout).

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
import warnings
from pathlib import Path

import numpy as np
import pymc as pm
import xarray as xr

from socialgradient.model import families, parameterisation
from socialgradient.model.build import LA_THETA_BLOCKS, LA_THETA_COORDS, build_model
from socialgradient.model.data import NeighbourhoodData
from socialgradient.model.terms import TERMS
from socialgradient.sampling import compiled as compiled_module
from socialgradient.sampling import predict
from socialgradient.spec import Sampling, Spec
from socialgradient.util.files import atomic_write
from socialgradient.util.progress import step

log = logging.getLogger(__name__)

#: Draws (all chains together) kept for the pointwise log-likelihood and replicates ...
MAX_PREDICTIVE_DRAWS = 1000
#: ... and at most this many draw x row values each (about 0.8 GB of float64), so a
#: 330k-cell stratified fit keeps ~300 draws rather than running out of memory.
MAX_PREDICTIVE_VALUES = 100_000_000
#: Sampler-side forms of quantities the posterior keeps in their reported form, as the
#: families and terms name them: e.g. the LKJ factor (la_sd, la_corr), phi's transform and
#: per-SD moderator coefficients (moderator_effect, per unit).
DERIVED = (
    *(name for family in families.FAMILIES.values() for name in family.derived),
    *(name for term in TERMS for name in term.derived),
)


def reported(posterior: xr.Dataset) -> xr.Dataset:
    """``posterior`` without its sampler-side forms: :data:`DERIVED` and the LA-effect blocks
    of :func:`socialgradient.model.build.la_theta`, with the coords only they used; its variables
    in :func:`arviz_order`."""
    posterior = posterior.drop_vars(
        [v for v in posterior.data_vars if v in DERIVED or LA_THETA_BLOCKS.match(v)]
    )
    return arviz_order(
        posterior.drop_vars(
            [c for c in posterior.coords if c.startswith("la_cov") or LA_THETA_COORDS.match(c)]
        )
    )


def arviz_order(posterior: xr.Dataset) -> xr.Dataset:
    """``posterior`` with ``la_effect`` first, then the variables of most dims, so that
    ``az.summary(tree)`` labels its rows right.

    ArviZ's summary (``arviz_base.dataset_to_dataarray``, 1.3) stacks the variables' values
    with xarray's ``to_stacked_array``, which orders the dims by their first appearance over
    the variables, but labels each value in its own variable's dim order: a variable whose
    dims came in the other order gets wrong labels, with no error (``la_effect`` (la,
    effect) after ``la_sd`` (effect), as the sampler lists them, had every LA's slope
    labelled as another LA's intercept). With ``la_effect`` (la[, threshold], effect) first,
    every other variable of a fit follows its order, except the (level, effect) tables of
    strata and moderators (``stratum_effect``, ``stratum_offset``, ``moderator_effect``,
    ``la_moderator_effect``): no order of variables serves them beside ``la_effect`` or each
    other, so a summary of a whole posterior that has them mislabels them (summarise them
    one at a time: ``az.summary(tree, var_names=["stratum_effect"])``)."""
    sample = {"chain", "draw"}
    names = sorted(
        posterior.data_vars, key=lambda v: (v != "la_effect", -len(set(posterior[v].dims) - sample))
    )
    return posterior if names == list(posterior.data_vars) else posterior[names]


def data_hash(data: NeighbourhoodData | list[NeighbourhoodData]) -> str:
    """SHA-256 (first 16 hex digits) of the arrays a fit depends on (of each threshold's,
    for the joint model's list)."""
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
    """The ``la_name`` coordinate (dim ``la``, a non-index coordinate beside the codes) of
    ``constant_data``, so the LA figures and tables can show LA names; empty when the data
    has no names. Names are public; the data hash does not include them.

    Only ``constant_data`` carries it: in ``posterior`` a non-index coordinate on some
    variables (those with dim ``la``) but not others makes ArviZ's summary fail (xarray's
    ``to_stacked_array``: "coordinate 'la_name' not present in all datasets"), and ArviZ's
    labels show the index (the codes) anyway. :func:`load` drops it from the posterior of a
    fit saved before."""
    return {} if data.la_name is None else {"la_name": ("la", np.asarray(data.la_name, str))}


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
    centred = parameterisation.choose(data, spec.family, spec.la_effects)
    model = build_model(data, spec, centred=centred)
    tree, compile_seconds, sampling_seconds = sample(
        model, spec.sampling, progressbar, target_accept=spec.target_accept
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


def sample(model: pm.Model, s: Sampling, progressbar: bool = True, **nuts):
    """Run NUTS on ``model`` with the sampler, draws, chains and seed of ``s``.

    ``nuts`` passes sampler options (e.g. ``target_accept``). Returns the sampler's
    DataTree, the compile time (NaN for PyMC and numpyro, which compile while sampling)
    and the sampling time, in seconds.
    """
    if s.sampler == "numpyro":
        require_numpyro()
    # a line when each step starts, not only when it ends: compiling can take half a minute
    what = f"{s.chains} chains x {s.draws} draws ({s.tune} tuning) with {s.sampler}"
    start = time.perf_counter()
    if s.sampler == "nutpie":
        import nutpie

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
    log.info(
        "sampled %d chains x %d draws (%s): compile %.1f s, sampling %.1f s",
        s.chains,
        s.draws,
        s.sampler,
        compile_seconds,
        sampling_seconds,
    )
    return tree, compile_seconds, sampling_seconds


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
    for kind in TERMS:  # every fit records, e.g., its strata, "[]" when it has none
        out.attrs.update(kind.absent_attrs())
    for term in data.terms:
        out.attrs.update(term.attrs())
    return out


def save(tree: xr.DataTree, path: str | Path) -> None:
    """Write a fit to netCDF (h5netcdf), atomically: a killed run leaves no partial file."""
    # The replicates (integer counts) zlib level 1 after byte shuffling: 40% faster to write
    # than level 4 without shuffling, and 11% smaller. The pointwise log-likelihood as
    # float32 without compression: zlib took 2.2 s of an England-sized fit's 4.9 s write
    # and saved 18% of its size (162 against 138 MB in all, written in 2.7 against 4.9 s).
    encoding = {
        f"/{name}": {
            v: {"zlib": True, "complevel": 1, "shuffle": True} for v in tree[name].data_vars
        }
        for name in ("posterior_predictive",)
        if name in tree.children
    }
    if "log_likelihood" in tree.children:
        encoding["/log_likelihood"] = {
            v: {"dtype": "float32"} for v in tree["log_likelihood"].data_vars
        }

    def to_netcdf(tmp):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=xr.SerializationWarning)
            tree.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)

    with step(log, "wrote %s", Path(path).name):
        atomic_write(path, to_netcdf)


REQUIRED_GROUPS = ("posterior", "sample_stats", "observed_data", "constant_data")
REQUIRED_ATTRS = ("outcome", "family", "spec", "spec_hash", "data_hash", "x_bar")


def load(path: str | Path, pointwise: bool = True) -> xr.DataTree:
    """Read a fit written by :func:`save`, fully into memory, with its pointwise
    log-likelihood (:func:`with_log_likelihood`: computed when the file has none, as
    ``socialgradient fit`` writes it; ``pointwise=False`` skips that).

    A missing, damaged or foreign file is a ``ValueError`` (``FileNotFoundError``) naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved fit at {path}")
    try:
        tree = xr.open_datatree(path, engine="h5netcdf").load()
    except Exception as err:  # h5py/h5netcdf/xarray raise many kinds on a damaged file
        raise ValueError(
            f"{path}: not a readable netCDF fit (damaged or not netCDF: "
            f"{type(err).__name__}: {err})"
        ) from None
    missing = [g for g in REQUIRED_GROUPS if g not in tree.children]
    missing += [f"attr {a}" for a in REQUIRED_ATTRS if a not in tree.attrs]
    if missing:
        raise ValueError(f"{path}: not a socialgradient fit (no {', '.join(missing)})")
    tree = current_layout(tree)
    return with_log_likelihood(tree) if pointwise else tree


#: The one log-likelihood variable of a joint fit (dims chain, draw, threshold, row).
JOINT_LOG_LIKELIHOOD = "joint"


def stacked_log_likelihood(per_threshold: dict[str, xr.DataArray]) -> xr.Dataset:
    """The ``log_likelihood`` group of a joint fit: the thresholds' pointwise
    log-likelihoods (``{outcome: dims (chain, draw, row)}``, in threshold order) as the one
    variable :data:`JOINT_LOG_LIKELIHOOD` with dims (chain, draw, threshold, row). ArviZ's LOO
    needs one variable (with several it asks which). Empties ``per_threshold`` as it fills
    the result, so a fit holds one threshold's values beside it, not a second copy of all
    (1.3 GB at England's size, five thresholds x 1,000 draws)."""
    names = list(per_threshold)
    first = per_threshold[names[0]]
    row = next(d for d in first.dims if d not in ("chain", "draw"))
    coords = {k: v for k, v in first.coords.items()}
    values = np.empty(
        (first.sizes["chain"], first.sizes["draw"], len(names), first.sizes[row]), first.dtype
    )
    del first
    for j, outcome in enumerate(names):
        values[:, :, j] = per_threshold.pop(outcome).transpose("chain", "draw", row).values
    stacked = xr.DataArray(
        values, dims=("chain", "draw", "threshold", row), coords={**coords, "threshold": names}
    )
    return xr.Dataset({JOINT_LOG_LIKELIHOOD: stacked})


def outcomes(tree: xr.DataTree) -> list[str]:
    """The thresholds of a joint fit, in order ([] for a single-outcome fit)."""
    return json.loads(tree.attrs.get("outcomes", "[]"))


def current_layout(tree: xr.DataTree) -> xr.DataTree:
    """A fit saved by an earlier version in today's layout, so ArviZ takes it as it is
    (``az.summary``, ``az.loo``): ``posterior`` without the ``la_name`` coordinate (it
    stays in ``constant_data``, see :func:`la_names`) and in :func:`arviz_order`, and, for a
    joint fit, with its per-threshold log-likelihoods as the one variable of
    :func:`stacked_log_likelihood`. A current fit is returned as is."""
    changes = {}
    saved = tree["posterior"].to_dataset()
    posterior = arviz_order(saved.drop_vars("la_name", errors="ignore"))
    if "la_name" in saved.coords or list(posterior.data_vars) != list(saved.data_vars):
        changes["posterior"] = posterior
    names = outcomes(tree)
    if (
        names
        and "log_likelihood" in tree.children
        and set(names) <= set(tree["log_likelihood"].data_vars)
    ):
        loglik = tree["log_likelihood"].to_dataset()
        changes["log_likelihood"] = stacked_log_likelihood({o: loglik[o] for o in names})
    if not changes:
        return tree
    out = tree.copy()
    for name, group in changes.items():
        out[name] = xr.DataTree(group)
    return out


def with_log_likelihood(tree: xr.DataTree) -> xr.DataTree:
    """``tree`` with its pointwise ``log_likelihood`` (dims chain, draw, row) for LOO: as it
    is when it has one (a joint fit always does), else computed from the posterior on the
    draws of its replicates, as :func:`fit` computes it."""
    if "log_likelihood" in tree.children or "posterior_predictive" not in tree.children:
        return tree
    pp = tree["posterior_predictive"]
    posterior = tree["posterior"].to_dataset().sel(chain=pp["chain"], draw=pp["draw"])
    out = tree.copy()
    out["log_likelihood"] = xr.DataTree(
        _log_likelihood(posterior, predict.encoded_data(tree), tree.attrs["family"])
    )
    return out


def _log_likelihood(posterior: xr.Dataset, data: NeighbourhoodData, family: str) -> xr.Dataset:
    """The pointwise log-likelihood group on ``posterior``'s draws, logged as a step."""
    n_draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    with step(log, "pointwise log-likelihood (%d draws x %d rows)", n_draws, len(data.y)):
        return predict.log_likelihood(posterior, data, family).to_dataset()
