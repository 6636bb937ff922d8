"""Prior and likelihood power-scaling sensitivity of the headline quantities.

Power-scaling sensitivity (Kallioinen et al. 2024, *Detecting and diagnosing prior and
likelihood sensitivity with power-scaling*, Stat Comput 34, 57; ArviZ's
:func:`arviz_stats.psense`) asks how much each headline quantity's posterior moves when the
prior, or the likelihood, is raised to a power near 1 (0.99 and 1.01). The change is
measured by the cumulative Jensen-Shannon distance per unit of log power, estimated by
Pareto-smoothed importance sampling from the existing draws: no refit.

What is scaled: the *prior* is the joint density of the priors a user sets in ``[priors]``
on the model's top-level parameters (:func:`socialgradient.model.priors.log_prior`: the
fixed effects ``a``, ``b_w``, ``b_b``, ``b_x``, the LA SDs and correlation, the negative
binomial's dispersion and the stratum offsets), as priorsense does; the hierarchical
distribution of the LA effects is part of the model and is not scaled, nor are the priors
of moderators, a stratum trend or an LA outcome. The *likelihood* is the sum of the rows'
pointwise log-likelihoods (the ``log_likelihood`` group LOO uses, on the draws of the
replicates).

Diagnosis per quantity, with priorsense's threshold 0.05: both sensitivities >= 0.05 is a
*prior-data conflict*; prior > 0.05 > likelihood a *strong prior / weak likelihood*; else
none (""). A headline with a prior-data conflict adds a reason to the diagnostics and makes a
PASS verdict WARN (:func:`flag`).
"""

from __future__ import annotations

import logging
from typing import Any

import arviz_stats as az
import xarray as xr

from socialgradient.model import families
from socialgradient.model.priors import log_prior
from socialgradient.results import gradients
from socialgradient.sampling import predict
from socialgradient.spec import Spec
from socialgradient.util.progress import step

log = logging.getLogger(__name__)

#: the fewest draws (all chains) power-scaling is computed on: Pareto smoothing of its
#: weights fits a tail of about 3 sqrt(S) draws (fewer than 100 draws leave arviz_stats'
#: psense an index error, not an answer)
MIN_DRAWS = 100
#: priorsense's threshold of the sensitivity values
THRESHOLD = 0.05
CONFLICT = "prior-data conflict"
WEAK = "strong prior / weak likelihood"


def power_scaling(tree: xr.DataTree, threshold: float = THRESHOLD) -> dict[str, Any]:
    """Return the prior and likelihood sensitivity of each headline quantity.

    Parameters
    ----------
    tree : DataTree
        A single-outcome fit (:func:`socialgradient.sampling.fit.fit`); its pointwise
        ``log_likelihood`` is reused, or computed on the replicates' draws when absent.
    threshold : float
        The sensitivity above which a component counts as influential (0.05).

    Returns
    -------
    dict
        ``quantities``: per headline quantity (the national gradients of
        :func:`socialgradient.results.gradients.national` and ``la_sd_intercept``,
        ``la_sd_slope``), ``prior`` and ``likelihood`` sensitivity (CJS distance per unit
        log power) and ``diagnosis`` (:data:`CONFLICT`, :data:`WEAK` or ""); ``conflict``:
        the quantities with a prior-data conflict; ``scaled_priors``, ``threshold``,
        ``draws``, ``method``. A joint (multi-threshold) fit, or one without the draws to
        compute its log-likelihood on, gives ``skipped`` with the reason instead.
    """
    spec = Spec.from_json(tree.attrs["spec"])
    if len(spec.outcomes) > 1:
        return {"skipped": "joint fits: the thresholds' priors are not power-scaled yet"}
    if not 0 < threshold < 1:
        raise ValueError(f"power_scaling: threshold must be in (0, 1), got {threshold}")
    total = _total_log_likelihood(tree)
    if total is None:
        return {"skipped": "no log_likelihood, nor posterior_predictive draws to compute it on"}
    if total.size < MIN_DRAWS:  # PSIS of the power-scaled weights needs a tail to fit
        return {
            "skipped": f"only {total.size} draws with a log-likelihood; power-scaling needs "
            f"at least {MIN_DRAWS}"
        }
    post = tree["posterior"].to_dataset().sel(chain=total["chain"], draw=total["draw"])
    default_mean = families.get(tree.attrs["family"]).a_prior_mean
    parts = log_prior(post, spec.priors, default_mean)
    lp = sum(parts.values())
    headline = gradients.national(post)
    for effect in ("intercept", "slope"):
        headline[f"la_sd_{effect}"] = post["la_sd"].sel(effect=effect, drop=True)
    sample = {"chain": total["chain"].values, "draw": total["draw"].values}
    dt = xr.DataTree.from_dict(
        {
            "posterior": headline,
            "log_prior": xr.Dataset({"prior": (("chain", "draw"), lp)}, coords=sample),
            "log_likelihood": xr.Dataset({"likelihood": total}),
        }
    )
    values = {group: az.psense(dt, group=group) for group in ("prior", "likelihood")}
    quantities = {}
    for name in headline.data_vars:
        prior = float(values["prior"][name])
        likelihood = float(values["likelihood"][name])
        quantities[str(name)] = {
            "prior": round(prior, 4),
            "likelihood": round(likelihood, 4),
            "diagnosis": diagnose(prior, likelihood, threshold),
        }
    return {
        "method": "power-scaling (arviz_stats.psense, alphas 0.99 and 1.01, CJS distance)",
        "threshold": threshold,
        "draws": int(total.size),
        "scaled_priors": sorted(parts),
        "quantities": quantities,
        "conflict": [k for k, v in quantities.items() if v["diagnosis"] == CONFLICT],
    }


def _total_log_likelihood(tree: xr.DataTree) -> xr.DataArray | None:
    """Return each draw's log-likelihood summed over the rows, dims (chain, draw).

    From the tree's ``log_likelihood`` when it has one, else computed on the draws of its
    replicates (:func:`socialgradient.sampling.predict.log_likelihood_total`, in blocks of
    draws: the pointwise values are never held); None without either.
    """
    outcome = tree.attrs["outcome"]
    if "log_likelihood" in tree.children:
        loglik = tree["log_likelihood"].to_dataset()[outcome]
        return loglik.sum([d for d in loglik.dims if d not in ("chain", "draw")])
    if "posterior_predictive" not in tree.children:
        return None
    pp = tree["posterior_predictive"]
    posterior = tree["posterior"].to_dataset().sel(chain=pp["chain"], draw=pp["draw"])
    data = predict.encoded_data(tree)
    with step(
        log,
        "log-likelihood per draw (%d draws x %d rows)",
        pp.sizes["chain"] * pp.sizes["draw"],
        len(data.y),
    ):
        return predict.log_likelihood_total(posterior, data, tree.attrs["family"])


def diagnose(prior: float, likelihood: float, threshold: float = THRESHOLD) -> str:
    """Return priorsense's diagnosis of one quantity's sensitivities ("" for none).

    Parameters
    ----------
    prior, likelihood : float
        The prior and likelihood power-scaling sensitivities.
    threshold : float
        The threshold (0.05).

    Returns
    -------
    str
        :data:`CONFLICT` when both are >= ``threshold``, :data:`WEAK` when only the prior's
        is above it, else "".
    """
    if prior >= threshold and likelihood >= threshold:
        return CONFLICT
    if prior > threshold > likelihood:
        return WEAK
    return ""


def flag(diagnostics: dict, sensitivity: dict) -> dict:
    """Return the diagnostics with a reason (and at least WARN) for a prior-data conflict.

    Parameters
    ----------
    diagnostics : dict
        :func:`socialgradient.results.checks.diagnose`'s verdict (not modified).
    sensitivity : dict
        :func:`power_scaling`'s result.

    Returns
    -------
    dict
        A copy: unchanged without a conflict; else ``reasons`` gains one naming the
        quantities and a PASS ``verdict`` becomes WARN (a FAIL stays FAIL).
    """
    conflict = sensitivity.get("conflict") or []
    if not conflict:
        return diagnostics
    out = dict(diagnostics)
    threshold = sensitivity["threshold"]
    out["reasons"] = [
        *diagnostics.get("reasons", []),
        f"prior-data conflict (prior and likelihood power-scaling sensitivity >= {threshold}): "
        + ", ".join(conflict),
    ]
    if out.get("verdict") == "PASS":
        out["verdict"] = "WARN"
    return out
