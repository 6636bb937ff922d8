"""Per-LSOA quantities derived from posterior draws after sampling.

The model stores no per-LSOA quantity while sampling (see :mod:`socialgradient.model`);
this module computes them from the LA effects, the dispersion and the data, as labelled
xarray objects with dims ``(chain, draw, lsoa)`` (``cell`` for stratified data).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import special

from socialgradient.model import NeighbourhoodData


def thin(posterior: xr.Dataset, max_draws: int) -> xr.Dataset:
    """Keep about ``max_draws`` draws in total, evenly spaced within each chain.

    Every chain keeps at least one draw, so fewer than ``chains`` draws cannot be asked for.
    """
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    per_chain = max(1, min(n_draw, max_draws // n_chain))
    keep = np.unique(np.linspace(0, n_draw - 1, per_chain).round().astype(int))
    return posterior.isel(draw=keep)


def _log_mean(chain: xr.Dataset, data: NeighbourhoodData) -> np.ndarray:
    """``log(exposure) + a_la + b_la * w`` (+ stratum offsets) for one chain, (draw, row)."""
    effect = chain["la_effect"].transpose("draw", "la", "effect").values[:, data.la_index]
    if data.strata:
        offset = chain["stratum_effect"].transpose("draw", "stratum", "effect").values
        effect = effect + offset[:, data.stratum_index]
    eta = effect[..., 1] * data.w
    eta += effect[..., 0]
    eta += np.log(data.exposure)
    return eta


def _by_chain(posterior: xr.Dataset, data: NeighbourhoodData, name: str, dtype, compute):
    """Fill a (chain, draw, row) DataArray one chain at a time, bounding temporary memory."""
    out = np.empty((posterior.sizes["chain"], posterior.sizes["draw"], len(data.y)), dtype)
    for c in range(out.shape[0]):
        chain = posterior.isel(chain=c)
        out[c] = compute(chain, _log_mean(chain, data))
    coords = {"chain": posterior["chain"].values, "draw": posterior["draw"].values}
    return xr.DataArray(
        out, dims=("chain", "draw", data.row_dim), coords={**coords, **data.row_coords}, name=name
    )


def log_mean(posterior: xr.Dataset, data: NeighbourhoodData) -> xr.DataArray:
    """Log expected count ``log(exposure) + a_la + b_la * w`` (+ stratum offsets).

    Dims (chain, draw, row), the row dim being ``lsoa`` or ``cell`` (stratified data).
    """
    return _by_chain(posterior, data, "log_mean", float, lambda _, eta: eta)


def log_likelihood(posterior: xr.Dataset, data: NeighbourhoodData, family: str) -> xr.DataArray:
    """Pointwise log-likelihood of each row's count, dims (chain, draw, row)."""
    y = data.y
    log_y_factorial = special.gammaln(y + 1)

    def compute(chain, log_mu):
        if family == "poisson":
            return y * log_mu - np.exp(log_mu) - log_y_factorial
        phi = chain["phi"].values[:, None]
        log_mu_phi = np.logaddexp(log_mu, np.log(phi))
        return (
            special.gammaln(y + phi)
            - special.gammaln(phi)
            - log_y_factorial
            + phi * (np.log(phi) - log_mu_phi)
            + y * (log_mu - log_mu_phi)
        )

    return _by_chain(posterior, data, data.outcome, float, compute)


def replicate(
    posterior: xr.Dataset, data: NeighbourhoodData, family: str, seed: int
) -> xr.DataArray:
    """Posterior predictive counts, one replicate per draw, dims (chain, draw, row)."""
    rng = np.random.default_rng(seed)

    def compute(chain, log_mu):
        rate = np.exp(log_mu)
        if family != "poisson":
            phi = chain["phi"].values[:, None]
            rate = rng.gamma(phi, rate / phi)
        return rng.poisson(rate)

    return _by_chain(posterior, data, data.outcome, np.int32, compute)
