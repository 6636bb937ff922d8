"""Checks on a fit: convergence diagnostics with a verdict, posterior predictive checks, LOO.

Verdict rules (all parameters, including every LA's intercept and slope):

* **PASS**: max R-hat <= 1.01, min bulk and tail ESS >= 400, no divergences, min E-BFMI >= 0.3;
* **FAIL**: max R-hat > 1.05, min bulk ESS < 100, or divergences in more than 1% of draws;
* **WARN**: anything in between. A WARN fit can be read for exploration, not published.

Never PASS: a diagnostic that cannot be computed (R-hat of one chain, any NaN) -- it is
reported as NaN (``null`` in JSON) with a reason, and the verdict is at best WARN (FAIL if no
ESS can be computed); inputs that pass the input contract but are physically implausible
(more events than exposure in a row, e.g. more referrals than children; exposure below 1)
add a reason and make the verdict at best WARN.

A fit sampled to a target (``stop = "target"``) also reports ``sampling``: the draws per chain
kept after ``tune`` (``sampling.tuning``), what stopped sampling (``target``, ``draw budget``,
``memory budget`` or ``time budget``; :mod:`socialgradient.sampling.target`) and, when a
budget ran out, the criteria not reached with the quantities that missed them (a reason too).
"""

from __future__ import annotations

import json
import warnings
from typing import cast

import arviz_stats as az  # the diagnostics alone: arviz would also import arviz_plots (pyplot)
import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse

from socialgradient.data.deprivation import decile_index
from socialgradient.results import spatial
from socialgradient.results.gradients import SAMPLE_DIMS
from socialgradient.sampling import convergence
from socialgradient.sampling.target import Verdict, extreme

PARAMETERS = (
    "a",
    "b_w",
    "b_b",
    "b_x",
    "la_sd",
    "la_corr",
    "phi",
    "la_effect",
    "stratum_offset",
    "moderator_effect",
    "la_moderator_effect",
)
PASS = {"rhat": 1.01, "ess": 400, "ebfmi": 0.3}
FAIL = {"rhat": 1.05, "ess": 100, "divergent_share": 0.01}


def diagnose(tree: xr.DataTree, parameters=PARAMETERS) -> dict:
    """Convergence diagnostics and a PASS/WARN/FAIL verdict over ``parameters``.

    ``parameters`` names the posterior variables checked (those absent are skipped);
    the default covers the national model, including every LA's intercept and slope.
    R-hat and the bulk and tail ESS are arviz_stats' (``rhat`` method "rank", ``ess``), as
    vectorised in :mod:`socialgradient.sampling.convergence` (checked against arviz_stats to a
    relative 1e-10), the tail ESS at the 5% and 95% quantiles (Vehtari et al. 2021;
    ``convergence.TAIL_PROB``); E-BFMI is arviz_stats' ``bfmi``.

    Returns
    -------
    dict
        ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min``, ``divergences``, ``draws``,
        ``ebfmi_min``, ``worst_rhat`` / ``worst_ess`` (variable names), ``verdict`` and
        ``reasons`` (list of str; empty for PASS).
    """
    post = tree["posterior"].to_dataset()
    post = post[[v for v in parameters if v in post]]
    # arviz_stats' rhat, ess bulk and tail; the tail at the 5% and 95% quantiles
    rhat, bulk, tail = convergence.diagnostics(post, prob=convergence.TAIL_PROB)
    stats = tree["sample_stats"].to_dataset()
    divergences = int(stats["diverging"].sum())
    draws = int(stats["diverging"].size)
    ebfmi = float(np.min(np.asarray(az.bfmi(tree)["energy"], dtype=float)))
    out: dict = {  # values of several types (the Datasets make mypy infer one)
        "rhat_max": extreme(rhat, max),
        "ess_bulk_min": extreme(bulk, min),
        "ess_tail_min": extreme(tail, min),
        "divergences": divergences,
        "draws": draws,
        "ebfmi_min": ebfmi,
        "worst_rhat": max(rhat, key=lambda v: float(np.nan_to_num(rhat[v].max(), nan=np.inf))),
        "worst_ess": min(bulk, key=lambda v: float(np.nan_to_num(bulk[v].min(), nan=-np.inf))),
    }
    fail = []
    if out["rhat_max"] > FAIL["rhat"]:
        fail.append(f"R-hat {out['rhat_max']:.3f} > {FAIL['rhat']} ({out['worst_rhat']})")
    if out["ess_bulk_min"] < FAIL["ess"]:
        fail.append(f"bulk ESS {out['ess_bulk_min']:.0f} < {FAIL['ess']} ({out['worst_ess']})")
    if divergences > FAIL["divergent_share"] * draws:
        fail.append(f"{divergences} divergences in {draws} draws")
    warn = []
    if out["rhat_max"] > PASS["rhat"]:
        warn.append(f"R-hat {out['rhat_max']:.3f} > {PASS['rhat']} ({out['worst_rhat']})")
    if min(out["ess_bulk_min"], out["ess_tail_min"]) < PASS["ess"]:
        warn.append(
            f"ESS bulk {out['ess_bulk_min']:.0f} / tail {out['ess_tail_min']:.0f} < {PASS['ess']}"
        )
    if divergences:
        warn.append(f"{divergences} divergences")
    if ebfmi < PASS["ebfmi"]:
        warn.append(f"E-BFMI {ebfmi:.2f} < {PASS['ebfmi']}")
    notes = []
    unknown = [
        name
        for name in ("rhat_max", "ess_bulk_min", "ess_tail_min", "ebfmi_min")
        if not np.isfinite(out[name])
    ]
    if unknown:
        chains = int(post.sizes.get("chain", 0))
        notes.append(
            f"{', '.join(unknown)} cannot be computed ({chains} chain"
            f"{'s' if chains != 1 else ''}): convergence not checked"
        )
        if "ess_bulk_min" in unknown:
            fail.append("bulk ESS cannot be computed")
    notes += _implausible(tree) + _target(tree, out)
    out["verdict"] = "FAIL" if fail else "WARN" if warn or notes else "PASS"
    out["reasons"] = (fail or warn) + notes
    return out


def _target(tree: xr.DataTree, out: dict) -> list[str]:
    """Put the verdict of sampling to a target in ``out["sampling"]``; a reason if unmet."""
    if "sampling_target" not in tree.attrs:
        return []
    v = json.loads(tree.attrs["sampling_target"])
    keep = ("draws", "stopped_by", "reached", "checked", "seconds", "unmet", "target")
    out["sampling"] = {k: v[k] for k in keep}
    if v.get("memory_draws") is not None:  # the draw budget, lowered to what memory holds
        out["sampling"]["memory_draws"] = v["memory_draws"]
    if "tune" in tree.attrs:  # the tuning draws per chain (chosen from the data if unset)
        out["sampling"]["tune"] = int(tree.attrs["tune"])
    out["sampling"]["unmet"] = {  # the first 20 quantities of each criterion, and how many more
        k: names[:20] + ([f"... {len(names) - 20} more"] if len(names) > 20 else [])
        for k, names in v["unmet"].items()
    }
    return [] if v["reached"] else [Verdict(**v).line()]


def _implausible(tree: xr.DataTree) -> list[str]:
    """Warnings for inputs the contract allows but that are physically implausible."""
    outcome = tree.attrs.get("outcome")
    if "constant_data" not in tree.children or "observed_data" not in tree.children:
        return []
    const = tree["constant_data"]
    if outcome not in tree["observed_data"] or "children" not in const:
        return []  # not a national fit (e.g. the LA panel)
    name = tree.attrs.get("exposure", "children")
    if name != "children":
        # Another exposure (person-days at risk, binomial trials) has its own scale: several
        # same-day closings in under a day at risk are not implausible, and the binomial's
        # trials bound its counts by contract.
        return []
    observed = cast(xr.DataArray, tree["observed_data"][tree.attrs["outcome"]])
    y, exposure = observed.values, cast(xr.DataArray, const["children"]).values
    unit = "rows"
    if tree.attrs.get("stratum_trend"):
        # A trend's cells (e.g. single years of age) carry expected children (a band's
        # children split evenly over its years), so compare counts and children of each
        # LSOA (x stratum), summed over the trend, where both are whole numbers of children.
        keys = [c for c in observed.coords if c != "cell" and observed[c].dims == ("cell",)]
        cells = pd.DataFrame({k: observed[k].values for k in keys}).assign(y=y, n=exposure)
        summed = cells.groupby(keys, sort=False)[["y", "n"]].sum()
        y, exposure = summed["y"].to_numpy(), summed["n"].to_numpy()
        unit = "LSOAs" if keys == ["lsoa"] else "LSOA x stratum cells"
    out = []
    if more := int((y > exposure).sum()):
        out.append(
            f"implausible input: {more} {unit} have more {tree.attrs['outcome']} than "
            f"{name} (overall {1e4 * y.sum() / exposure.sum():,.0f} per 10,000)"
        )
    if small := int((exposure < 1).sum()):
        out.append(f"implausible input: {small} {unit} have {name} below 1")
    return out


def _compare(observed: xr.DataArray, replicated: xr.DataArray) -> xr.Dataset:
    """Observed statistic against its replicates: median, 95% ETI, PPC p-values.

    ``p_value`` = P(rep >= obs); ``p_two_sided`` = 2 min(P(rep >= obs), P(rep <= obs)),
    capped at 1 (ties count on both sides, so discrete statistics do not fail spuriously).
    """
    # ArviZ's 95% ETI (linear quantiles at (1 - 0.95) / 2 and its complement, as every
    # interval of a fit); the median as the 0.5 quantile
    eti = az.eti(replicated, prob=0.95, dim=list(SAMPLE_DIMS))
    p_ge = (replicated >= observed).mean(SAMPLE_DIMS)
    p_le = (replicated <= observed).mean(SAMPLE_DIMS)
    return xr.Dataset(
        {
            "observed": observed,
            "replicated_median": replicated.quantile(0.5, dim=SAMPLE_DIMS).drop_vars("quantile"),
            "replicated_lower": eti.sel(ci_bound="lower", drop=True),
            "replicated_upper": eti.sel(ci_bound="upper", drop=True),
            "p_value": p_ge,
            "p_two_sided": np.minimum(1.0, 2 * np.minimum(p_ge, p_le)),
        }
    )


def deprivation_decile(income: np.ndarray) -> np.ndarray:
    """Decile (1 = least deprived) of each LSOA's income deprivation, over the LSOAs given."""
    return decile_index(income) + 1


def ppc(tree: xr.DataTree) -> dict[str, xr.Dataset]:
    """Posterior predictive checks of the replicated counts against the observed ones.

    Returns
    -------
    dict of Dataset
        ``decile``: totals by deprivation decile (dim ``decile``); ``la``: totals by LA (dim
        ``la``); ``statistic``: national total, dispersion (variance / mean of LSOA counts),
        share of zero counts and maximum count (dim ``statistic``). Each holds
        ``observed``, ``replicated_median``, ``replicated_lower``/``_upper`` (95% ETI) and
        ``p_value`` = P(replicated >= observed) and ``p_two_sided``. A fit with a
        neighbour graph (``spatial`` or ``neighbours`` in its spec) adds ``spatial``: the
        residual Moran's I (dim ``statistic``,
        :func:`socialgradient.results.spatial.spatial_check`).
    """
    outcome = tree.attrs["outcome"]
    y = cast(xr.DataArray, tree["observed_data"][outcome])
    rep = cast(xr.DataArray, tree["posterior_predictive"][outcome])
    const = tree["constant_data"].to_dataset()
    las = const["la"].values
    la_code = pd.Index(las).get_indexer(const["lsoa_la"].values)

    def totals(codes, labels, dim):
        return _compare(group_totals(y, codes, labels, dim), group_totals(rep, codes, labels, dim))

    def stats(v):
        v, flat = _block(v)
        n = flat.shape[1]
        values = np.empty((flat.shape[0], 4))
        for rows in _draw_blocks(flat):  # a block of draws at a time: no float copy of all
            block = flat[rows].astype(float)
            total = block.sum(axis=1)
            # the sum of squares in one pass, without (draw, row) temporaries: numpy's var
            # took 2.7 s on England's 1,000 x 32,844 replicates
            var = (np.einsum("ij,ij->i", block, block) - total * total / n) / n
            values[rows] = np.stack(
                [total, var / (total / n), (block == 0).mean(axis=1), block.max(axis=1)], axis=1
            )
        return xr.DataArray(
            values.reshape(*v.shape[:-1], 4),
            dims=(*v.dims[:-1], "statistic"),
            coords={"statistic": ["total", "dispersion", "zero_share", "max"]},
        )

    decile = deprivation_decile(const["income"].values)
    out = {
        "decile": totals(decile - 1, np.arange(1, 11), "decile"),
        "la": totals(la_code, las, "la"),
        "statistic": _compare(stats(y), stats(rep)),
    }
    moran = spatial.spatial_check(tree)  # a fit with a neighbour graph
    return out if moran is None else {**out, "spatial": moran}


#: Draw x row values converted to float at a time by :func:`ppc` and :func:`group_totals`:
#: 2**20 (8 MB), instead of a float copy of every replicate (263 MB for England's 1,000
#: draws x 32,844 LSOAs). Each draw's statistics are the same whatever the blocks.
BLOCK_VALUES = 2**20


def _draw_blocks(flat: np.ndarray, block_values: int | None = None) -> list[slice]:
    """Return slices of the draws (rows of ``flat``) of at most ``block_values`` values each."""
    per = max(1, (BLOCK_VALUES if block_values is None else block_values) // max(flat.shape[1], 1))
    return [slice(i, min(i + per, flat.shape[0])) for i in range(0, flat.shape[0], per)]


def _block(v: xr.DataArray) -> tuple[xr.DataArray, np.ndarray]:
    """Return ``v`` with its row dim last, and its values as a (draws, rows) block.

    ``v`` (dims [chain, draw,] row) with its row dim last, and its values as a
    (draws, rows) numpy block.
    """
    v = v.transpose(..., next(d for d in v.dims if d not in SAMPLE_DIMS))
    return v, v.values.reshape(-1, v.shape[-1])


def group_totals(
    v: xr.DataArray, codes: np.ndarray, labels, dim: str, *, block_values: int | None = None
) -> xr.DataArray:
    """Sum ``v`` over groups of rows.

    Totals of ``v`` (dims ..., row) over groups of rows: ``codes`` (dims row) index
    ``labels``; dims (..., ``dim``). A sparse row-to-group matrix: numpy on the (draw, row)
    block, as xarray's groupby took ~9 s per England-sized fit and a dense one-hot product
    2.7 s; exact for counts (sums below 2^53). The draws are converted to float a block of at
    most ``block_values`` values at a time (default :data:`BLOCK_VALUES`); each total is the
    same whatever the blocks.
    """
    v, flat = _block(v)
    onehot = sparse.csr_matrix(
        (np.ones(codes.size), (codes, np.arange(codes.size))), shape=(len(labels), codes.size)
    )
    out = np.empty((flat.shape[0], len(labels)))
    for rows in _draw_blocks(flat, block_values):
        out[rows] = np.asarray(onehot @ flat[rows].astype(float).T).T
    return xr.DataArray(
        out.reshape(*v.shape[:-1], len(labels)), dims=(*v.dims[:-1], dim), coords={dim: labels}
    )


def loo_compare(fits: dict[str, xr.DataTree]) -> pd.DataFrame:
    """PSIS-LOO comparison of fits of the same rows (e.g. Poisson vs negative binomial).

    Fits are compared when they predict the same rows: the same observed counts with the same
    row labels, in order (:func:`socialgradient.results.compare.row_identity`), whatever
    their covariates, moderators, family or priors; fits of different rows are refused.

    Returns ArviZ's comparison table (``elpd``, ``p``, ``elpd_diff``, ``weight``,
    ``diag_elpd``, ...), best first, plus ``good_k``, ArviZ's Pareto-k threshold for the
    fit's sample size S (min(1 - 1/log10(S), 0.7)), and ``pareto_k_bad``: how many rows have a
    k above it (an unreliable PSIS estimate). Each fit's LOO is computed once, from its
    pointwise log-likelihood (computed here for a fit without one).
    """
    from socialgradient.results.compare import ROWS, row_identity
    from socialgradient.sampling.fit import with_log_likelihood

    fits = {name: with_log_likelihood(tree) for name, tree in fits.items()}
    ids = {name: row_identity(tree) for name, tree in fits.items()}
    if len(set(ids.values())) != 1:
        raise ValueError(
            f"LOO compares fits of the same rows; got row identities {ids}. Rows are "
            f"identified by {ROWS}"
        )
    with warnings.catch_warnings():
        # ArviZ warns when some Pareto k is high; the table reports how many, per model.
        warnings.filterwarnings("ignore", "Estimated shape parameter of Pareto", UserWarning)
        loos = {name: az.loo(tree, pointwise=True) for name, tree in fits.items()}
        table = az.compare(loos)
    table["good_k"] = pd.Series({name: float(loo.good_k) for name, loo in loos.items()})
    table["pareto_k_bad"] = pd.Series(
        {name: int((loo.pareto_k > loo.good_k).sum()) for name, loo in loos.items()}
    )
    return table


def prior_predictive(data, spec, draws: int = 1000, seed: int = 0) -> dict:
    """Sample what a spec's priors imply, before seeing the counts (a prior predictive check).

    Draws the parameters from the priors of the model of ``spec`` on the encoded ``data``
    (its exposure, deprivation and moderators; the counts are not used) and replicates
    every row's count with the spec's family. ``socialgradient.api.prior_predictive``
    takes a table.

    Returns
    -------
    dict
        ``rate_per_10k`` (the rate, or binomial proportion, per 10,000 at an averagely
        deprived LA: exp or expit of ``a``), ``gradient_mean_la`` (exp(b_w)), ``la_sd``
        (intercept, slope) and ``replicated_total`` (sum of the replicated counts, against
        ``observed_total``), each as quantiles 5%, 50%, 95%.
    """
    import pymc as pm

    from socialgradient.model import families
    from socialgradient.model.build import build_model
    from socialgradient.sampling import predict

    model = build_model(data, spec)
    with warnings.catch_warnings():
        # Forward sampling ignores the likelihood potential: that is the point here.
        warnings.filterwarnings("ignore", ".*[Pp]otential.*", UserWarning)
        needed = ("a", "b_w", "la_sd", "la_effect", "stratum_effect", "moderator_effect", "phi")
        prior = pm.sample_prior_predictive(
            draws=draws,
            model=model,
            random_seed=seed,
            var_names=[v for v in needed if v in model.named_vars],
            compile_kwargs={"mode": "FAST_COMPILE"},  # a few draws: compiling C costs more
        )
    prior = prior["prior"].to_dataset()
    fam = families.get(spec.family)
    rep = predict.replicate(prior, data, spec.family, seed=seed + 1)
    q = (0.05, 0.5, 0.95)

    def quantiles(values) -> list[float]:  # the median inside ArviZ's 90% ETI
        flat = np.asarray(values).ravel()
        lower, upper = az.eti(flat, prob=0.9)
        return [float(lower), float(np.quantile(flat, 0.5)), float(upper)]

    return {
        "rate_per_10k": quantiles(1e4 * fam.inverse_link(prior["a"].values)),
        "gradient_mean_la": quantiles(np.exp(prior["b_w"].values)),
        "la_sd": {
            e: quantiles(prior["la_sd"].sel(effect=e).values) for e in ("intercept", "slope")
        },
        "replicated_total": quantiles(rep.sum(str(rep.dims[-1])).values),
        "observed_total": int(data.y.sum()),
        "quantiles": list(q),
    }
