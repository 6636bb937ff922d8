r"""Per-row quantities from posterior draws: pointwise log-likelihood, replicates, prediction.

The model stores no per-LSOA quantity while sampling (see :mod:`socialgradient.model.build`);
this module computes them from the LA effects, the family's parameters and the data, as
labelled xarray objects with dims ``(chain, draw, lsoa)`` (``cell`` for stratified data).
The family (:mod:`socialgradient.model.families`) supplies the distribution; this module only
builds each row's linear predictor :math:`\eta` (LA effects, strata, moderators).

:func:`predict` does the same for *new* neighbourhoods, in LAs of the fit or in new LAs
whose effects are drawn from the fitted hierarchy: each term adds its part
(:meth:`socialgradient.model.terms.base.Term.predict_eta`), so it names none of them.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import xarray as xr

from socialgradient.data.deprivation import UNIT
from socialgradient.model import families
from socialgradient.model.data import NeighbourhoodData
from socialgradient.model.terms import TERMS
from socialgradient.model.terms.base import NewRows
from socialgradient.util.memory import release_memory


def thin(posterior: xr.Dataset, max_draws: int) -> xr.Dataset:
    """Keep about ``max_draws`` draws in total, evenly spaced within each chain.

    Every chain keeps at least one draw, so fewer than ``chains`` draws cannot be asked for.
    """
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    per_chain = max(1, min(n_draw, max_draws // n_chain))
    keep = np.unique(np.linspace(0, n_draw - 1, per_chain).round().astype(int))
    return posterior.isel(draw=keep)


def _eta(chain: xr.Dataset, data: NeighbourhoodData) -> np.ndarray:
    """Return the linear predictor without offset for one chain, dims (draw, row).

    Linear predictor without offset for one chain, dims (draw, row): each row's LA
    effects plus the terms' additions to them (strata), then the terms' additions to the
    linear predictor (a trend, moderators).
    """
    effect = chain["la_effect"].transpose("draw", "la", "effect").values[:, data.la_index]
    for term in data.terms:
        effect = term.row_effect(chain, data, effect)
    eta = effect[..., 1] * data.w
    eta += effect[..., 0]
    for term in data.terms:
        eta = term.row_eta(chain, data, eta)
    return eta


def _rows(data: NeighbourhoodData) -> families.Rows:
    return families.Rows(data.y, np.log(data.exposure), data.trials)


def _params(chain: xr.Dataset, family: families.Family) -> dict:
    return {name: chain[name].values for name in family.parameters}


#: Draws x rows computed at a time by the per-row quantities (:func:`log_likelihood`,
#: :func:`replicate`, :func:`log_mean`, :func:`log_likelihood_total`): each (draw, row)
#: temporary of a block holds at most 2**20 values (8 MB of float64) whatever the table's
#: size: their memory is a block per thread, not a chain (a chain at a time, England's 250
#: draws x 32,844 LSOAs took ~560 MB of temporaries on 2 threads). The results do not
#: depend on it.
BLOCK_VALUES = 2**20


def _blocks(n_draw: int, n_row: int, block_values: int | None = None) -> list[slice]:
    """Return slices of ``range(n_draw)`` of at most ``block_values // n_row`` draws (>= 1)."""
    size = max(1, (BLOCK_VALUES if block_values is None else block_values) // max(n_row, 1))
    return [slice(start, min(start + size, n_draw)) for start in range(0, n_draw, size)]


def _by_chain(
    posterior: xr.Dataset,
    data: NeighbourhoodData,
    name: str,
    dtype,
    compute,
    *,
    per_row: bool = True,
    block_values: int | None = None,
) -> xr.DataArray:
    """Fill a (chain, draw, row) DataArray block by block of draws within each chain.

    ``compute(c, draws, block, eta)`` gives the values of chain ``c``'s draws ``draws`` (a
    slice), ``block`` their posterior and ``eta`` their linear predictor (dims draw, row),
    each block on one of as many threads as there are cores (numpy's ufuncs and random
    draws release the GIL: the log-likelihood and replicates of England's 1,000 x 32,844
    in 3.3 s instead of 6.2 s on 2 cores). A block holds at most ``block_values`` draw x row
    values (default :data:`BLOCK_VALUES`), so the temporary memory is a block per thread
    whatever the number of draws. ``per_row=False``: ``compute`` returns one value per
    draw (a sum over the rows) and the result has dims (chain, draw).
    """
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    shape = (n_chain, n_draw, len(data.y)) if per_row else (n_chain, n_draw)
    out = np.empty(shape, dtype)
    tasks = [
        (c, draws) for c in range(n_chain) for draws in _blocks(n_draw, len(data.y), block_values)
    ]

    def fill(task):
        c, draws = task
        block = posterior.isel(chain=c, draw=draws)
        out[c, draws] = compute(c, draws, block, _eta(block, data))

    with ThreadPoolExecutor(max(1, min(len(tasks), os.cpu_count() or 1))) as pool:
        list(pool.map(fill, tasks))
    release_memory()  # the worker threads' freed temporaries
    coords = {"chain": posterior["chain"].values, "draw": posterior["draw"].values}
    if not per_row:
        return xr.DataArray(out, dims=("chain", "draw"), coords=coords, name=name)
    return xr.DataArray(
        out, dims=("chain", "draw", data.row_dim), coords={**coords, **data.row_coords}, name=name
    )


def log_mean(posterior: xr.Dataset, data: NeighbourhoodData) -> xr.DataArray:
    """Log expected count ``log(exposure) + eta`` of a log-link fit, dims (chain, draw, row)."""
    log_e = np.log(data.exposure)
    return _by_chain(posterior, data, "log_mean", float, lambda c, d, _, eta: eta + log_e)


#: Pointwise log-likelihoods of more values than this (draws x rows, all thresholds of a
#: joint fit together) are stored as float32, half the memory: a 322k-cell stratified fit's
#: 308 draws (0.8 GB as float64) or a joint fit's 5 x 1,000 x 32,844 (1.3 GB). Each value
#: is computed in float64 and rounded once (7 significant digits, as against CmdStan's 6 by
#: default); ArviZ's LOO then accumulates in float64 (``bench/run_time.md``: the elpd and
#: Pareto k's change this makes). Smaller fits, England's 1,000 x 32,844 among them, keep
#: float64.
FLOAT32_LOG_LIKELIHOOD_ABOVE = 50_000_000


def log_likelihood_dtype(values: int) -> type:
    """Return the dtype of ``values`` pointwise log-likelihoods (float32 above the cut)."""
    return np.float32 if values > FLOAT32_LOG_LIKELIHOOD_ABOVE else np.float64


def log_likelihood(
    posterior: xr.Dataset,
    data: NeighbourhoodData,
    family: str,
    *,
    block_values: int | None = None,
    dtype: type | None = None,
) -> xr.DataArray:
    """Pointwise log-likelihood of each row's count, dims (chain, draw, row).

    Computed in blocks of at most ``block_values`` draw x row values (default
    :data:`BLOCK_VALUES`); each value is the same, to rounding, whatever the block. Stored
    as ``dtype`` (default: :func:`log_likelihood_dtype` of draws x rows; computed in
    float64 either way).
    """
    fam, rows = families.get(family), _rows(data)
    if dtype is None:
        draws = posterior.sizes["chain"] * posterior.sizes["draw"]
        dtype = log_likelihood_dtype(draws * len(data.y))
    return _by_chain(
        posterior,
        data,
        data.outcome,
        dtype,
        lambda c, d, block, eta: fam.pointwise(eta, rows, _params(block, fam)),
        block_values=block_values,
    )


def log_likelihood_total(
    posterior: xr.Dataset,
    data: NeighbourhoodData,
    family: str,
    *,
    block_values: int | None = None,
) -> xr.DataArray:
    """Return each draw's log-likelihood summed over the rows, dims (chain, draw).

    The sum over rows of :func:`log_likelihood` without holding it: a block of at most
    ``block_values`` draw x row values at a time (default :data:`BLOCK_VALUES`), so
    England's 1,000 draws x 32,844 LSOAs need a block's temporaries per thread (8 MB each)
    instead of 263 MB for the pointwise values and as much again for their temporaries.
    Each draw's sum is numpy's (pairwise) sum of its row's values, as
    ``log_likelihood(...).sum(row)`` computes it.
    """
    fam, rows = families.get(family), _rows(data)
    return _by_chain(
        posterior,
        data,
        data.outcome,
        float,
        lambda c, d, block, eta: fam.pointwise(eta, rows, _params(block, fam)).sum(axis=-1),
        per_row=False,
        block_values=block_values,
    )


def replicate(
    posterior: xr.Dataset,
    data: NeighbourhoodData,
    family: str,
    seed: int,
    *,
    block_values: int | None = None,
) -> xr.DataArray:
    """Return posterior predictive counts, one replicate per draw, dims (chain, draw, row).

    Posterior predictive counts (int32), one replicate per draw. Each draw has a random
    stream of its own: the d-th spawned child of chain ``c``'s stream, itself the c-th
    spawned child of ``default_rng(seed)``. So the counts do not depend on which thread ran
    which chain, nor on the blocks of draws computed together (``block_values``, default
    :data:`BLOCK_VALUES`), which bound the memory of the temporaries.
    """
    fam, rows = families.get(family), _rows(data)
    n_draw = posterior.sizes["draw"]
    # spawned here, in order, before any thread runs: a Generator's spawn is not thread-safe
    rngs = [
        chain.spawn(n_draw) for chain in np.random.default_rng(seed).spawn(posterior.sizes["chain"])
    ]

    def compute(c, draws, block, eta):
        params = _params(block, fam)
        return np.concatenate(
            [
                fam.replicate(
                    eta[i : i + 1], rows, {k: v[i : i + 1] for k, v in params.items()}, rng
                )
                for i, rng in enumerate(rngs[c][draws])
            ]
        )

    return _by_chain(posterior, data, data.outcome, np.int32, compute, block_values=block_values)


def encoded_data(tree: xr.DataTree) -> NeighbourhoodData:
    """Rebuild the :class:`NeighbourhoodData` a fit was made from (e.g. after :func:`load`)."""
    const = tree["constant_data"].to_dataset()
    outcome = tree.attrs["outcome"]
    la = const["la"].values.astype(str)
    la_pos = {code: i for i, code in enumerate(la)}
    terms = (kind() if kind.always else kind.from_tree(tree, const) for kind in TERMS)
    return NeighbourhoodData(
        lsoa=const["lsoa"].values.astype(str),
        la=la,
        la_index=np.array([la_pos[c] for c in const["lsoa_la"].values.astype(str)]),
        children=const["children"].values,
        income=const["income"].values,
        y=tree["observed_data"].to_dataset()[outcome].values.astype(np.int64),
        w=const["w"].values,
        m_la=const["m_la"].values,
        m_c=const["m_c"].values,
        x_bar=float(tree.attrs["x_bar"]),
        outcome=outcome,
        exposure=const["exposure" if "exposure" in const else "children"].values,
        exposure_name=tree.attrs.get("exposure", "children"),
        trials=const["trials"].values.astype(np.int64) if "trials" in const else None,
        terms=tuple(t for t in terms if t is not None),
    )


def predict(
    tree: xr.DataTree, table: pd.DataFrame, seed: int = 0, counts: bool = False
) -> xr.Dataset:
    """Rates (or proportions), gradients and optionally counts in new rows, as posterior draws.

    Parameters
    ----------
    tree : DataTree
        A fit of :func:`socialgradient.sampling.fit.fit` (stratified or not).
    table : DataFrame
        One row per neighbourhood (a stratified fit: per neighbourhood x stratum cell):
        ``la``, ``income`` (share 0-1), ``children`` (weights a new LA's mean deprivation),
        the fit's neighbourhood moderators, its stratum column(s) (levels the fit knows) and
        its stratum trend's column; for a BYM2 fit, an ``lsoa`` column adds each fitted
        LSOA's effect (none: rates at a zero LSOA effect, the median neighbourhood, as for an
        LSOA not in the fit). An LA of the fit keeps its fitted effects and mean deprivation;
        a new LA gets its mean deprivation from its rows here and its effects drawn from the
        fitted hierarchy, ``MVN((a + b_b m_c, b_w + b_x m_c), Sigma)`` (one draw per
        posterior draw, so its intervals include the between-LA spread). LA moderators are
        not supported for new LAs.
    seed : int
        Seed of the new LAs' draws (and, on a stream of its own, of the counts).
    counts : bool
        Also draw posterior predictive counts (``count``): one per draw and row from the
        fit's family (Poisson, NB2 with the draw's ``phi``, or binomial), at the table's
        exposure (the fit's exposure column, ``children`` unless another was named; a
        binomial's trials column).

    Returns
    -------
    Dataset
        ``rate_per_10k`` (log-link families: per 10,000 of exposure; binomial: the
        proportion per 10,000 trials) and ``gradient`` (exp of the row's slope: rate or
        odds ratio per 10 points; a spline fit's local slope there), dims (chain, draw,
        row); with ``counts``, ``count`` (dims chain, draw, row); ``new_la`` (dims row)
        marks rows whose LA was not in the fit.
    """
    fitted = encoded_data(tree)
    fam = families.get(tree.attrs["family"])
    post = tree["posterior"].to_dataset()
    needed = ["la", "income", "children", *(c for t in fitted.terms for c in t.predict_columns())]
    exposure = _exposure_column(tree, fam) if counts else None
    missing = [
        c
        for c in dict.fromkeys([*needed, *([exposure] if exposure else [])])
        if c not in table.columns
    ]
    if missing:
        raise ValueError(f"predict: the table lacks columns {missing}")
    la = table["la"].astype(str).to_numpy()
    x = table["income"].to_numpy(float) * 100 / UNIT
    known = set(fitted.la)
    new_la = np.array([code not in known for code in la])
    weights = table["children"].to_numpy(float)
    m_la = dict(zip(fitted.la, fitted.m_la, strict=True))
    for code in sorted(set(la[new_la])):
        rows = la == code
        m_la[code] = np.average(x[rows], weights=weights[rows])
    w = x - np.array([m_la[c] for c in la])
    new = NewRows(table, fitted, la, new_la, m_la, w, seed)
    # every term adds its part: the LA effects (a new LA's drawn from the hierarchy),
    # strata, a trend, a curve, moderators, a BYM2 LSOA effect
    eta = np.zeros((post.sizes["chain"], post.sizes["draw"], len(table)))
    slope = np.zeros_like(eta)
    for term in fitted.terms:
        eta, slope = term.predict_eta(post, new, eta, slope)
    coords = {
        "chain": post["chain"].values,
        "draw": post["draw"].values,
        "row": np.arange(len(table)),
    }
    dims = ("chain", "draw", "row")
    variables = {
        "rate_per_10k": (dims, 1e4 * fam.inverse_link(eta)),
        "gradient": (dims, np.exp(slope)),
        "new_la": ("row", new_la),
    }
    if exposure is not None:
        variables["count"] = (dims, _counts(fam, post, eta, table, exposure, seed))
    return xr.Dataset(
        variables,
        coords={**coords, "la": ("row", la)},
        attrs={"scale": fam.scale, "family": fam.name},
    )


def _exposure_column(tree: xr.DataTree, fam: families.Family) -> str:
    """Return the table column the counts are drawn at: the trials or the exposure."""
    if fam.of_trials:
        return str(json.loads(tree.attrs["spec"]).get("trials") or "trials")
    return str(tree.attrs.get("exposure", "children"))


def _counts(
    fam: families.Family,
    post: xr.Dataset,
    eta: np.ndarray,
    table: pd.DataFrame,
    column: str,
    seed: int,
) -> np.ndarray:
    """Return one predictive count per draw and row, dims (chain, draw, row)."""
    exposure = pd.to_numeric(table[column], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(exposure) | (exposure < 0)
    if fam.of_trials:
        bad |= exposure != np.round(exposure)
    if bad.any():
        kind = "non-negative integers (trials)" if fam.of_trials else "finite and >= 0"
        raise ValueError(
            f"predict: column {column!r} must be {kind} to draw counts; bad rows: "
            f"{np.flatnonzero(bad)[:10].tolist()}"
        )
    n_chain, n_draw, n_row = eta.shape
    with np.errstate(divide="ignore"):  # an exposure of 0 gives a count of 0
        log_exposure = np.log(exposure)
    trials = exposure.astype(np.int64) if fam.of_trials else None
    rows = families.Rows(np.zeros(n_row, np.int64), log_exposure, trials)
    params = {
        name: post[name].transpose("chain", "draw").values.reshape(-1) for name in fam.parameters
    }
    rng = np.random.default_rng([seed, 1])  # a stream apart from the new LAs' draws
    drawn = fam.replicate(eta.reshape(n_chain * n_draw, n_row), rows, params, rng)
    return np.asarray(drawn).reshape(n_chain, n_draw, n_row)
