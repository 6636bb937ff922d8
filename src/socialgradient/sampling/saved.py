"""Saved fits: writing, reading, and today's layout for fits of earlier versions.

Split from :mod:`socialgradient.sampling.fit`, which re-exports every name here.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from socialgradient.model.data import NeighbourhoodData
from socialgradient.sampling import predict
from socialgradient.util.files import atomic_write
from socialgradient.util.progress import step

log = logging.getLogger("socialgradient.sampling.fit")


def arviz_order(posterior: xr.Dataset) -> xr.Dataset:
    """Return ``posterior`` with ``la_effect`` first, then the variables of most dims.

    ``posterior`` with ``la_effect`` first, then the variables of most dims, so that
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
    one at a time: ``az.summary(tree, var_names=["stratum_effect"])``).
    """
    sample = {"chain", "draw"}
    names = sorted(
        posterior.data_vars, key=lambda v: (v != "la_effect", -len(set(posterior[v].dims) - sample))
    )
    return posterior if names == list(posterior.data_vars) else posterior[names]


def save(tree: xr.DataTree, path: str | Path) -> None:
    """Write a fit to netCDF (h5netcdf), atomically: a killed run leaves no partial file."""
    # The replicates (integer counts) zlib level 1 after byte shuffling: 40% faster to write
    # than level 4 without shuffling, and 11% smaller. The pointwise log-likelihood as
    # float32 without compression: zlib took 2.2 s of an England-sized fit's 4.9 s write
    # and saved 18% of its size (162 against 138 MB in all, written in 2.7 against 4.9 s).
    encoding: dict[str, dict] = {
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
    """Read a fit written by :func:`save`, fully into memory.

    Read a fit written by :func:`save`, fully into memory, with its pointwise
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
    """Return the ``log_likelihood`` group of a joint fit.

    The ``log_likelihood`` group of a joint fit: the thresholds' pointwise
    log-likelihoods (``{outcome: dims (chain, draw, row)}``, in threshold order) as the one
    variable :data:`JOINT_LOG_LIKELIHOOD` with dims (chain, draw, threshold, row). ArviZ's LOO
    needs one variable (with several it asks which). Empties ``per_threshold`` as it fills
    the result, so a fit holds one threshold's values beside it, not a second copy of all
    (1.3 GB at England's size, five thresholds x 1,000 draws).
    """
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
    """Return the thresholds of a joint fit, in order ([] for a single-outcome fit)."""
    return json.loads(tree.attrs.get("outcomes", "[]"))


def current_layout(tree: xr.DataTree) -> xr.DataTree:
    """Return a fit saved by an earlier version in today's layout.

    A fit saved by an earlier version in today's layout, so ArviZ takes it as it is
    (``az.summary``, ``az.loo``): ``posterior`` without the ``la_name`` coordinate (it
    stays in ``constant_data``, see :func:`la_names`) and in :func:`arviz_order`, and, for a
    joint fit, with its per-threshold log-likelihoods as the one variable of
    :func:`stacked_log_likelihood`. A current fit is returned as is.
    """
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
    """Return ``tree`` with its pointwise ``log_likelihood`` (dims chain, draw, row).

    ``tree`` with its pointwise ``log_likelihood`` (dims chain, draw, row) for LOO: as it
    is when it has one (a joint fit always does), else computed from the posterior on the
    draws of its replicates, as :func:`fit` computes it.
    """
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
    """Return the pointwise log-likelihood group on ``posterior``'s draws, logged as a step."""
    n_draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    with step(log, "pointwise log-likelihood (%d draws x %d rows)", n_draws, len(data.y)):
        return predict.log_likelihood(posterior, data, family).to_dataset()
