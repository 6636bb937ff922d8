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


def log_mean(posterior: xr.Dataset, data: NeighbourhoodData) -> xr.DataArray:
    """Log expected count ``log(children) + a_la + b_la * w`` (+ stratum offsets).

    Dims (chain, draw, row), the row dim being ``lsoa`` or ``cell`` (stratified data).
    """
    row = data.row_dim
    effect = posterior["la_effect"].isel(la=xr.DataArray(data.la_index, dims=row))
    if data.strata:
        s = xr.DataArray(data.stratum_index, dims=row)
        effect = effect + posterior["stratum_effect"].isel(stratum=s).drop_vars("stratum")
    w = xr.DataArray(data.w, dims=row)
    eta = np.log(xr.DataArray(data.children, dims=row)) + effect.sel(effect="intercept")
    eta = eta + effect.sel(effect="slope") * w
    eta = eta.drop_vars(["la", "effect"], errors="ignore").assign_coords(data.row_coords)
    return eta.transpose("chain", "draw", row)


def log_likelihood(posterior: xr.Dataset, data: NeighbourhoodData, family: str) -> xr.DataArray:
    """Pointwise log-likelihood of each row's count, dims (chain, draw, row)."""
    log_mu = log_mean(posterior, data)
    y = xr.DataArray(data.y, dims=data.row_dim, coords=data.row_coords)
    if family == "poisson":
        out = y * log_mu - np.exp(log_mu) - special.gammaln(y + 1)
    else:
        phi = posterior["phi"]
        log_mu_phi = np.logaddexp(log_mu, np.log(phi))
        out = (
            special.gammaln(y + phi)
            - special.gammaln(phi)
            - special.gammaln(y + 1)
            + phi * (np.log(phi) - log_mu_phi)
            + y * (log_mu - log_mu_phi)
        )
    return out.rename(data.outcome).transpose("chain", "draw", data.row_dim)


def replicate(
    posterior: xr.Dataset, data: NeighbourhoodData, family: str, seed: int
) -> xr.DataArray:
    """Posterior predictive counts, one replicate per draw, dims (chain, draw, row)."""
    rng = np.random.default_rng(seed)
    mu = np.exp(log_mean(posterior, data))
    if family == "poisson":
        rate = mu.values
    else:
        phi = posterior["phi"].values[..., None]
        rate = rng.gamma(phi, mu.values / phi)
    return mu.copy(data=rng.poisson(rate).astype(np.int32)).rename(data.outcome)
