"""Residual spatial check: Moran's I of LSOA residuals against its posterior predictive.

For each posterior draw ``s`` with expected counts ``mu_s`` (and variance ``v_s``, the
family's: ``mu`` for Poisson, ``mu + mu^2 / phi`` for the negative binomial), the Pearson
residuals of the observed counts, ``(y - mu_s) / sqrt(v_s)``, and of a replicated data set
``y_rep_s`` drawn from the same draw, ``(y_rep_s - mu_s) / sqrt(v_s)``, each give a Moran's I
on the neighbour graph (binary weights)::

    I = (n / W) * sum_{i~j} w_ij z_i z_j / sum_i z_i^2,    z = r - mean(r),  W = sum w_ij

(each undirected pair counted both ways, ``W = 2 * n_pairs``). The check's p-value is
``P(I_rep >= I_obs)`` over draws: small when the residuals are more alike between neighbours
than the model's own replications are, i.e. spatial structure the model misses (a posterior
predictive p-value, Gelman, Meng and Stern 1996). Residuals of the ratio form ``y / mu - 1``
are available too (``residual="ratio"``). Everything is vectorised over draws with the
sparse edge list (two gathers per draw block); islands contribute to ``n`` and the variance
only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from socialgradient.data.neighbours import Adjacency
from socialgradient.model import families
from socialgradient.model.terms.spatial import SpatialEffect
from socialgradient.sampling import predict

SAMPLE_DIMS = ("chain", "draw")

__all__ = ["fit_graph", "moran_check", "morans_i", "spatial_check", "spatial_summary"]


def morans_i(values: np.ndarray, adjacency: Adjacency) -> np.ndarray:
    """Moran's I (binary weights) of each row of ``values`` on ``adjacency``.

    Parameters
    ----------
    values : numpy.ndarray
        Shape ``(n,)`` or ``(draws, n)``, nodes in ``adjacency.codes`` order.
    adjacency : Adjacency
        The graph (at least one pair).

    Returns
    -------
    numpy.ndarray
        One I per row (a 0-d array for a 1-d input).
    """
    x = np.asarray(values, dtype=float)
    if x.shape[-1] != adjacency.n:
        raise ValueError(f"values have {x.shape[-1]} nodes, the graph {adjacency.n}")
    if len(adjacency.edges) == 0:
        raise ValueError("Moran's I needs a graph with at least one pair of neighbours")
    z = x - x.mean(axis=-1, keepdims=True)
    i, j = adjacency.edges[:, 0], adjacency.edges[:, 1]
    cross = 2.0 * np.sum(z[..., i] * z[..., j], axis=-1)
    return (adjacency.n / (2.0 * len(i))) * cross / np.sum(z * z, axis=-1)


def moran_check(
    observed: np.ndarray,
    expected: np.ndarray,
    replicated: np.ndarray,
    adjacency: Adjacency,
    *,
    variance: np.ndarray | None = None,
    residual: str = "pearson",
    block: int = 200,
) -> dict[str, float]:
    """Compare Moran's I of the observed residuals with that of replicated data.

    Parameters
    ----------
    observed : numpy.ndarray
        Counts ``y``, shape ``(n,)``.
    expected : numpy.ndarray
        Posterior expected counts ``mu``, shape ``(draws, n)``.
    replicated : numpy.ndarray
        Posterior predictive counts, shape ``(draws, n)`` (one replication per draw).
    adjacency : Adjacency
        The graph, nodes in the same order as the columns.
    variance : numpy.ndarray, optional
        The family's variance per draw and LSOA (default ``expected``: Poisson).
    residual : {"pearson", "ratio"}
        ``(y - mu) / sqrt(v)`` or ``y / mu - 1``.
    block : int
        Draws per vectorised block (bounds memory: ``block x n`` floats at a time).

    Returns
    -------
    dict
        ``observed_i`` (posterior median of I of the observed residuals), ``replicated_i``
        (median of the replications'), ``replicated_lo``/``_hi`` (their 95% ETI),
        ``p_value`` (``P(I_rep >= I_obs)``), ``draws``.
    """
    y = np.asarray(observed, dtype=float)
    mu = np.asarray(expected, dtype=float)
    rep = np.asarray(replicated, dtype=float)
    if mu.ndim != 2 or rep.shape != mu.shape or y.shape != mu.shape[1:]:
        raise ValueError(
            f"shapes: observed {y.shape}, expected {mu.shape}, replicated {rep.shape}; "
            "expected (n,), (draws, n), (draws, n)"
        )
    if residual not in ("pearson", "ratio"):
        raise ValueError(f"residual must be 'pearson' or 'ratio', not {residual!r}")
    var = mu if variance is None else np.asarray(variance, dtype=float)
    i_obs, i_rep = [], []
    for start in range(0, len(mu), block):
        m = mu[start : start + block]
        if residual == "pearson":
            sd = np.sqrt(var[start : start + block])
            r_obs, r_rep = (y - m) / sd, (rep[start : start + block] - m) / sd
        else:
            r_obs, r_rep = y / m - 1.0, rep[start : start + block] / m - 1.0
        i_obs.append(morans_i(r_obs, adjacency))
        i_rep.append(morans_i(r_rep, adjacency))
    obs, repl = np.concatenate(i_obs), np.concatenate(i_rep)
    return {
        "observed_i": float(np.median(obs)),
        "replicated_i": float(np.median(repl)),
        "replicated_lo": float(np.quantile(repl, 0.025)),
        "replicated_hi": float(np.quantile(repl, 0.975)),
        "p_value": float(np.mean(repl >= obs)),
        "draws": len(obs),
    }


def fit_graph(tree: xr.DataTree) -> SpatialEffect | None:
    """Return the neighbour graph a fit keeps (``spatial`` or ``neighbours`` in its spec)."""
    return SpatialEffect.from_tree(tree, tree["constant_data"].to_dataset())


def spatial_summary(tree: xr.DataTree, interval: Any) -> dict | None:
    """Return ``summary.json``'s ``spatial`` entry, or None for a fit without BYM2.

    ``sd`` (``spatial_sd``: the marginal SD of the LSOA effect, log-rate units) and ``rho``
    (its spatial share), each ``interval(draws)`` with ``lo95``/``hi95`` (the 95% ETI's
    ends); ``graph``: the neighbour graph's file, LSOAs, pairs and islands.
    """
    post = tree["posterior"].to_dataset()
    if "spatial_sd" not in post:
        return None
    out: dict[str, Any] = {}
    for key, name in (("sd", "spatial_sd"), ("rho", "spatial_rho")):
        entry = interval(post[name])
        out[key] = {"median": entry["median"], "lo95": entry["ci95"][0], "hi95": entry["ci95"][1]}
        out[key] |= {k: v for k, v in entry.items() if k != "median"}
    graph = fit_graph(tree)
    if graph is not None:
        degree = np.bincount(graph.edges.ravel(), minlength=len(graph.codes))
        out["graph"] = {
            "neighbours": graph.source,
            "lsoas": len(graph.codes),
            "pairs": len(graph.edges),
            "islands": int((degree == 0).sum()),
        }
    return out


def spatial_check(tree: xr.DataTree) -> xr.Dataset | None:
    """Return the residual Moran's I check of a fit with a neighbour graph (None without).

    On the posterior predictive draws the fit keeps: each draw's expected counts (its
    linear predictor, with the BYM2 effect when the model has it), the observed and that
    draw's replicated counts, summed per LSOA (cells of a stratified table add up), give
    Pearson residuals and their Moran's I (:func:`moran_check`, the family's variance). The
    result has the fields of :func:`socialgradient.results.checks.ppc`'s datasets
    (``observed``: median over draws of the observed residuals' I; ``replicated_*``: the
    replicates' I; ``p_value`` = P(I_rep >= I_obs), small when neighbours' residuals are
    more alike than the model expects) on dim ``statistic`` = ``["morans_i"]``. Log-link
    families only (None for the binomial).
    """
    graph = fit_graph(tree)
    if graph is None or len(graph.edges) == 0 or tree.attrs["family"] == "binomial":
        return None
    data = predict.encoded_data(tree)
    outcome = tree.attrs["outcome"]
    rep = tree["posterior_predictive"][outcome]
    post = tree["posterior"].to_dataset()
    few = post.sel(chain=rep["chain"].values, draw=rep["draw"].values)
    mu_rows = np.exp(predict.log_mean(few, data).transpose(*SAMPLE_DIMS, ...).values)
    mu_rows = mu_rows.reshape(-1, mu_rows.shape[-1])
    rep_rows = rep.transpose(*SAMPLE_DIMS, ...).values.reshape(len(mu_rows), -1)
    family = families.get(tree.attrs["family"])
    var_rows = mu_rows
    if "phi" in family.parameters:
        phi = few["phi"].transpose(*SAMPLE_DIMS).values.reshape(-1, 1)
        var_rows = mu_rows + mu_rows**2 / phi
    n = len(graph.codes)

    def per_lsoa(values: np.ndarray) -> np.ndarray:
        out = np.zeros((values.shape[0], n))
        np.add.at(out.T, graph.index, values.T)
        return out

    y = np.bincount(graph.index, weights=data.y.astype(float), minlength=n)
    adjacency = graph.adjacency()
    result = moran_check(
        y, per_lsoa(mu_rows), per_lsoa(rep_rows), adjacency, variance=per_lsoa(var_rows)
    )
    lo, hi = result["replicated_lo"], result["replicated_hi"]
    p = result["p_value"]
    values = {
        "observed": result["observed_i"],
        "replicated_median": result["replicated_i"],
        "replicated_lower": lo,
        "replicated_upper": hi,
        "p_value": p,
        "p_two_sided": min(1.0, 2 * min(p, 1 - p)),
    }
    index = pd.Index(["morans_i"], name="statistic")
    return xr.Dataset(
        {k: ("statistic", [v]) for k, v in values.items()}, coords={"statistic": index}
    )
