"""Rank-normalised split R-hat, bulk ESS and tail ESS of many quantities at once.

A vectorised re-implementation of ArviZ's ``arviz_stats.rhat`` (``method="rank"``: the larger
of the bulk and the folded split R-hat) and ``arviz_stats.ess`` (``method="bulk"`` and
``method="tail"``), after Vehtari, Gelman, Simpson, Carpenter and Buerkner (2021),
"Rank-normalization, folding, and localization: an improved R-hat for assessing convergence of
MCMC", Bayesian Analysis 16(2). ArviZ computes them one quantity at a time in Python (a
ranking, an FFT and Geyer's truncation loop per quantity); here every step runs on an array
``(quantity, chain, draw)`` with numpy: ranks with averaged ties along the samples (as
:func:`scipy.stats.rankdata`), the FFT autocovariance along the draws, and Geyer's initial
positive and monotone sequences as masks and a running minimum across all quantities. The
sampler's stop-at-target checks (:mod:`socialgradient.sampling.target`) and the convergence verdict
(:func:`socialgradient.results.checks.diagnose`) read them.

It follows arviz_stats 1.3 (``arviz_stats/base/diagnostics.py``: ``_rhat_rank``,
``_z_scale``, ``_split_chains``, ``_ess``, ``_ess_bulk``, ``_ess_tail``, ``_ess_quantile``)
step by step: an odd number of draws drops the middle draw of every chain when the chains
are split; a quantity with a NaN, fewer than 4 draws (or, for R-hat, fewer than 2 chains) gives
NaN; a constant quantity has R-hat NaN and an ESS of all its draws; the tail ESS is the
smaller ESS of the indicators of the quantiles ``1 - prob`` and ``prob``, with ``prob``
ArviZ's ``rcParams["stats.ci_prob"]`` unless given (arviz_stats' default: 0.89 gives the 11%
and 89% quantiles, not the paper's 5% and 95%, which ``prob=0.95`` gives: the target and the
verdict pass :data:`TAIL_PROB`).
``tests/test_convergence.py`` checks every value against arviz_stats to a relative tolerance
of 1e-10; ``bench/convergence.md`` times both on England's posterior.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from scipy.fftpack import next_fast_len  # arviz_stats' FFT length (2, 3, 5-smooth)
from scipy.special import ndtri  # scipy.stats.norm.ppf without its checks

SAMPLE_DIMS = ("chain", "draw")
MIN_DRAWS = 4  # draws per chain below which every diagnostic is NaN (as arviz_stats)
#: The tail ESS's ``prob`` of the target and the verdict: the 5% and 95% quantiles, those of
#: Vehtari et al. (2021) and of Stan and the R package posterior (ArviZ's default, 0.89, reads
#: the 11% and 89% quantiles: less of the tails).
TAIL_PROB = 0.95
#: Values (quantities x chains x draws) diagnosed at a time. Ranking, the FFT and the tail
#: indicators hold about twenty arrays of that size at once (float64, int64 and complex), so
#: a posterior is diagnosed in blocks of whole quantities (England's BYM2 field, 32,844
#: LSOAs x 4 x 2,000 draws, had taken ~10 GB in one piece), and blocks this small keep
#: those arrays in the CPU's caches: twice as fast as blocks of 4,000,000 values on
#: England's ~300 quantities at 200-1,000 draws and on 300-20,000 quantities at 500-4,000
#: draws (timed in one process; 30,000-100,000 were as fast). Each quantity's values do not
#: depend on the block it is in (tested).
BLOCK_VALUES = 50_000


def default_prob() -> float:
    """Return ArviZ's ``rcParams["stats.ci_prob"]``: the tail ESS's default ``prob``."""
    from arviz_base import rcParams

    return float(rcParams["stats.ci_prob"])


# --- the array core: ``x`` is (K, chain, draw), C-contiguous float ------------------------


def _invalid(x: np.ndarray, min_chains: int) -> np.ndarray:
    """Return, per quantity, whether arviz_stats' ``not_valid`` refuses it (NaN, shape)."""
    _, chains, draws = x.shape
    short = chains < min_chains or draws < MIN_DRAWS
    return np.isnan(x).any(axis=(1, 2)) | short


def _split(x: np.ndarray) -> np.ndarray:
    """Split every chain into its first and last halves (the middle draw of an odd count out)."""
    half = x.shape[2] // 2
    return np.ascontiguousarray(np.concatenate((x[:, :, :half], x[:, :, x.shape[2] - half :]), 1))


def _doubled_ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return twice the ranks (integers; ties averaged) of ``x`` (K, N) and ``x`` sorted.

    The ranks along the last axis are 1-based, a run of tied values taking the mean of its
    places as :func:`scipy.stats.rankdata` (method "average"): doubled, they are integers.
    """
    k, n = x.shape
    order = np.argsort(x, axis=1)
    ordered = np.take_along_axis(x, order, axis=1)
    doubled = np.tile(np.arange(2, 2 * n + 1, 2), k)  # twice the place in the order, flat
    # Runs of tied values (repeated draws, the two values either side of a median) are few:
    # the flat places equal to the one before, in runs that never cross a row (column 0).
    same = np.flatnonzero(ordered[:, 1:] == ordered[:, :-1])  # in a (K, N - 1) array
    tied = same // (n - 1) * n + same % (n - 1) + 1
    if tied.size:
        breaks = np.flatnonzero(np.diff(tied) != 1) + 1
        first = tied[np.concatenate(([0], breaks))] - 1
        last = tied[np.concatenate((breaks - 1, [tied.size - 1]))]
        lengths = last - first + 1
        places = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        mean = first % n + last % n + 2  # twice the mean of the run's (1-based) places
        doubled[np.repeat(first, lengths) + places] = np.repeat(mean, lengths)
    out = np.empty((k, n), dtype=doubled.dtype)
    out[np.arange(k)[:, None], order] = doubled.reshape(k, n)
    return out, ordered


def _ranks(x: np.ndarray) -> np.ndarray:
    """Return the ranks (1-based, ties averaged) of ``x`` (K, N) along its last axis."""
    return _doubled_ranks(x)[0] / 2


def _z_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank-normalise each quantity over all its chains and draws (Blom's offset 3/8).

    Returns the normal scores (shaped as ``x``) and each quantity's values sorted (K, N).
    The score of each possible rank (1, 1.5, 2, ... N) is computed once and looked up.
    """
    flat = x.reshape(x.shape[0], -1)
    doubled, ordered = _doubled_ranks(flat)
    c = 3 / 8
    ranks = np.arange(2, 2 * flat.shape[1] + 1) / 2
    scores = ndtri((ranks - c) / (flat.shape[1] - 2 * c + 1))
    return scores[doubled - 2].reshape(x.shape), ordered


def _median(ordered: np.ndarray) -> np.ndarray:
    """Return each row's median from its sorted values, as :func:`numpy.median` computes it."""
    n = ordered.shape[1]
    middle = ordered[:, n // 2]
    return middle if n % 2 else (ordered[:, n // 2 - 1] + middle) / 2


def _rhat(x: np.ndarray) -> np.ndarray:
    """Return the (unsplit, untransformed) potential scale reduction of each quantity."""
    n = x.shape[2]
    chain_mean = np.mean(x, axis=2)
    chain_var = np.var(x, axis=2, ddof=1)
    between = n * np.var(chain_mean, axis=1, ddof=1)
    within = np.mean(chain_var, axis=1)
    return np.sqrt((between / within + n - 1) / n)


def _autocov(x: np.ndarray) -> np.ndarray:
    """Return the autocovariance at every lag along the draws (FFT, biased: divided by n)."""
    n = x.shape[2]
    m = next_fast_len(2 * n)
    centred = x - x.mean(axis=2, keepdims=True)
    spectrum = np.fft.rfft(centred, n=m, axis=2)
    spectrum *= np.conjugate(spectrum)
    cov = np.fft.irfft(spectrum, n=m, axis=2)[:, :, :n]
    cov /= n
    return cov


def _ess(x: np.ndarray) -> np.ndarray:
    """Return the effective sample size of each quantity of ``x`` (K, chain, draw).

    Geyer's initial positive sequence truncates the autocorrelations at the first pair of
    lags whose sum is not positive, and his initial monotone sequence replaces each pair sum
    by the running minimum of the pair sums before it, as in arviz_stats' ``_ess`` loop.
    """
    k, chains, n = x.shape
    constant = (x.max(axis=(1, 2)) - x.min(axis=(1, 2))) < np.finfo(float).resolution
    acov = np.ascontiguousarray(np.swapaxes(_autocov(x), 1, 2))  # (K, lag, chain)
    chain_mean = x.mean(axis=2)
    mean_var = np.mean(acov[:, 0], axis=1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if chains > 1:
        var_plus += np.var(chain_mean, axis=1, ddof=1)
    rho = 1.0 - (mean_var[:, None] - np.mean(acov, axis=2)) / var_plus[:, None]
    rho[:, 0] = 1.0
    caps = len(range(1, n - 3, 2))  # pairs of lags (2j, 2j + 1) ArviZ's loop may reach
    pairs = rho[:, : 2 * caps + 2].reshape(k, caps + 1, 2)
    sums = pairs[:, :, 0] + pairs[:, :, 1]
    positive = np.zeros((k, caps + 1), dtype=bool)  # the last column stops the loop at caps
    positive[:, :caps] = sums[:, :caps] > 0
    stop = np.argmin(positive, axis=1)  # the first pair not positive: pairs kept before it
    rows = np.arange(k)
    even = pairs[rows, stop, 0]
    kept = (stop == 0) | (sums[rows, stop] >= 0)
    after = np.where(even > 0, even, np.where(kept, even, 0.0))  # the lag after the last pair
    inside = np.arange(caps + 1)[None, :] < stop[:, None]
    floor = np.minimum.accumulate(np.where(inside, sums, np.inf), axis=1)
    lowered = np.zeros_like(inside)
    lowered[:, 1:] = inside[:, 1:] & (sums[:, 1:] > floor[:, :-1])
    previous = np.concatenate((floor[:, :1], floor[:, :-1]), axis=1)
    monotone = np.where(lowered[:, :, None], (previous / 2.0)[:, :, None], pairs)
    total = np.sum(np.where(inside[:, :, None], monotone, 0.0).reshape(k, -1), axis=1)
    tau = -1.0 + 2.0 * total + after
    size = chains * n
    least = 1 / np.log10(size)
    tau = np.where(least > tau, least, tau)
    ess = size / tau
    ess[np.isnan(rho[:, 1])] = np.nan
    return np.where(constant, float(size), ess)


def _pick(first: np.ndarray, second: np.ndarray, larger: bool) -> np.ndarray:
    """Python's ``max(first, second)`` / ``min(...)`` elementwise (NaN as Python's builtins)."""
    better = second > first if larger else second < first
    return np.where(better, second, first)


def _prepare(x: np.ndarray) -> np.ndarray:
    """Return ``x`` (chain, draw, K) as a C-contiguous float array (K, chain, draw)."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"need an array (chain, draw, K), got shape {x.shape}")
    return np.ascontiguousarray(np.moveaxis(x, 2, 0))


def _diagnose(x: np.ndarray, prob, which: Sequence[str]) -> dict[str, np.ndarray]:
    """Return the ``which`` of "rhat", "bulk", "tail" of ``x`` (K, chain, draw), sharing steps."""
    bad = _invalid(x, min_chains=1)  # R-hat also needs two chains
    bad_rhat = bad | (x.shape[1] < 2)
    out = {name: np.full(len(x), np.nan) for name in which}
    if bad.all():  # also too few draws to split and rank
        return out
    safe = np.where(bad[:, None, None], 0.0, x)
    split = _split(safe)
    with np.errstate(invalid="ignore", divide="ignore"):
        ordered = None  # the split draws sorted, once ranked
        if "rhat" in which or "bulk" in which:
            z, ordered = _z_scale(split)
            if "bulk" in which:
                out["bulk"] = np.where(bad, np.nan, _ess(z))
            if "rhat" in which and not bad_rhat.all():
                folded, _ = _z_scale(np.abs(split - _median(ordered)[:, None, None]))
                larger = _pick(_rhat(z), _rhat(folded), larger=True)
                out["rhat"] = np.where(bad_rhat, np.nan, larger)
        if "tail" in which:
            prob = default_prob() if prob is None else prob
            low, high = prob if isinstance(prob, Sequence) else sorted((prob, 1 - prob))
            # the quantiles of all draws: the split draws' (sorted) when none was left out
            whole = split.shape[2] * 2 == safe.shape[2]
            flat = ordered if ordered is not None and whole else safe.reshape(len(safe), -1)
            cuts = np.quantile(flat, [low, high], axis=1)  # (2, K)
            below = np.concatenate([safe <= cut[:, None, None] for cut in cuts])
            ess = _ess(_split(below.astype(float))).reshape(2, -1)
            out["tail"] = np.where(bad, np.nan, _pick(ess[0], ess[1], larger=False))
    return out


def _blocks(x: np.ndarray, prob, which: Sequence[str]) -> dict[str, np.ndarray]:
    """Return :func:`_diagnose` of ``x`` (chain, draw, K), :data:`BLOCK_VALUES` at a time."""
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"need an array (chain, draw, K), got shape {x.shape}")
    chains, draws, k = x.shape
    step = max(1, BLOCK_VALUES // max(1, chains * draws))
    if k <= step:
        return _diagnose(_prepare(x), prob, which)
    out = {name: np.empty(k) for name in which}
    for start in range(0, k, step):
        part = _diagnose(_prepare(x[:, :, start : start + step]), prob, which)
        for name in which:
            out[name][start : start + step] = part[name]
    return out


def rhat_array(x: np.ndarray) -> np.ndarray:
    """Return the rank-normalised split R-hat of every quantity of ``x``.

    Parameters
    ----------
    x : numpy.ndarray
        Draws, shape (chain, draw, K) (or (chain, draw) for one quantity).

    Returns
    -------
    numpy.ndarray
        Shape (K,): the larger of the bulk and the folded split R-hat (dimensionless, 1 at
        convergence), as ``arviz_stats.rhat(..., method="rank")``; NaN where arviz_stats gives
        NaN (a NaN draw, one chain, fewer than 4 draws, a constant quantity).
    """
    return _blocks(x, None, ["rhat"])["rhat"]


def ess_bulk_array(x: np.ndarray) -> np.ndarray:
    """Return the bulk effective sample size (draws) of every quantity of ``x`` (chain, draw, K).

    As ``arviz_stats.ess(..., method="bulk")``: the ESS of the rank-normalised split chains.
    """
    return _blocks(x, None, ["bulk"])["bulk"]


def ess_tail_array(x: np.ndarray, prob: float | Sequence[float] | None = None) -> np.ndarray:
    """Return the tail effective sample size (draws) of every quantity of ``x`` (chain, draw, K).

    As ``arviz_stats.ess(..., method="tail", prob=prob)``: the smaller ESS of the indicators
    of the quantiles ``1 - prob`` and ``prob`` (or the two given), ``prob`` by default ArviZ's
    ``rcParams["stats.ci_prob"]`` as in arviz_stats.
    """
    return _blocks(x, prob, ["tail"])["tail"]


# --- Datasets (dims chain, draw and any others) --------------------------------------------


def _each(ds: xr.Dataset, prob, which: Sequence[str]) -> list[xr.Dataset]:
    """Return the ``which`` diagnostics of every variable of ``ds``, one Dataset per diagnostic.

    Variable by variable, in blocks (:func:`_blocks`): the draws are never copied side by side.
    """
    out: dict[str, dict[str, xr.DataArray]] = {name: {} for name in which}
    for name in ds.data_vars:
        da = ds[name]
        if not set(SAMPLE_DIMS) <= set(da.dims):
            raise ValueError(f"{name} has no chain and draw dimensions: dims {da.dims}")
        da = da.transpose(*SAMPLE_DIMS, ...)
        values = np.asarray(da.values, dtype=float).reshape(da.shape[0], da.shape[1], -1)
        result = _blocks(values, prob, which)
        template = da.isel(chain=0, draw=0, drop=True)
        for diagnostic in which:
            data = result[diagnostic].reshape(template.shape)
            out[diagnostic][str(name)] = template.copy(deep=False, data=data)
    return [xr.Dataset(out[diagnostic]) for diagnostic in which]


def diagnostics(
    ds: xr.Dataset, prob: float | Sequence[float] | None = None
) -> tuple[xr.Dataset, xr.Dataset, xr.Dataset]:
    """Return the R-hat, bulk ESS and tail ESS of every variable of ``ds``, sharing their steps.

    Parameters
    ----------
    ds : xarray.Dataset
        Draws; every variable has dims ``chain`` and ``draw`` and any others.
    prob : float or (float, float), optional
        The tail ESS's quantiles (as :func:`ess_tail_array`).

    Returns
    -------
    rhat, ess_bulk, ess_tail : xarray.Dataset
        Each variable without its ``chain`` and ``draw`` dims, as ``arviz_stats.rhat(ds)``,
        ``arviz_stats.ess(ds, method="bulk")`` and ``arviz_stats.ess(ds, method="tail")``
        return them (R-hat dimensionless; ESS in draws).
    """
    rhat, bulk, tail = _each(ds, prob, ["rhat", "bulk", "tail"])
    return rhat, bulk, tail


def rhat(ds: xr.Dataset) -> xr.Dataset:
    """Return the rank-normalised split R-hat of every variable (``arviz_stats.rhat``)."""
    return _each(ds, None, ["rhat"])[0]


def ess_bulk(ds: xr.Dataset) -> xr.Dataset:
    """Return the bulk ESS (draws) of every variable (``arviz_stats.ess``, method "bulk")."""
    return _each(ds, None, ["bulk"])[0]


def ess_tail(ds: xr.Dataset, prob: float | Sequence[float] | None = None) -> xr.Dataset:
    """Return the tail ESS (draws) of every variable (``arviz_stats.ess``, method "tail")."""
    return _each(ds, prob, ["tail"])[0]
