"""Prior and likelihood power-scaling sensitivity of the headline quantities.

Power-scaling sensitivity (Kallioinen et al. 2024, *Detecting and diagnosing prior and
likelihood sensitivity with power-scaling*, Stat Comput 34, 57; ArviZ's
:func:`arviz_stats.psense`) asks how much each headline quantity's posterior moves when the
prior, or the likelihood, is raised to a power near 1 (0.99 and 1.01). The change is
measured by the cumulative Jensen-Shannon distance per unit of log power, estimated by
Pareto-smoothed importance sampling from the existing draws: no refit.

What is scaled: the *prior* is the joint density of the model's priors, as priorsense
does: those a user sets in ``[priors]`` on the top-level parameters
(:func:`socialgradient.model.priors.log_prior`: the fixed effects ``a``, ``b_w``, ``b_b``,
``b_x``, the LA SDs and correlation, the negative binomial's dispersion and the stratum
offsets) and those of the model's terms
(:func:`socialgradient.results.prior_density.term_log_prior`): the moderators' and the
LA moderators' coefficients per SD of the moderator (Normal(0, [``moderator_intercept``,
``moderator_slope``])), the stratum trend's per SD of its column (Normal(0,
[``trend_intercept``, ``trend_slope``])), the LA outcome's intercept (Normal(0, 2.5)),
gradient (Normal(0, 1)), adjustments per SD (Normal(0, 1)) and residual SD
(HalfNormal(0.5)), the spline curve's SD (Gamma(2, 2 / ``curve_sd``)) and the BYM2 term's SD
(HalfNormal(1)) and spatial share (Beta(1, 1)). A joint (multi-threshold) fit scales
every threshold's fixed effects and ``phi``, the 2K LA SDs and the LKJ(``lkj_eta``) density
of the 2K x 2K correlation matrix of the LA coefficients
(:func:`socialgradient.results.prior_density.joint_log_prior`). The
hierarchical distributions (the LA effects given their SDs, the curve's coefficients given
its SD, the BYM2 field, the LA outcome's residuals) are part of the model and are not
scaled. The output lists the scaled priors (``scaled_priors``). Densities are on the
parameters as the priors state them, up to constants (the weights are normalised). The
*likelihood* is the sum of the rows' pointwise log-likelihoods (the ``log_likelihood``
group LOO uses, on the draws of the replicates; a joint fit's over every threshold).

The quantities: the national gradients of :func:`socialgradient.results.gradients.national`,
``la_sd_intercept`` and ``la_sd_slope``, and each term's reported effects
(``moderator_effect:<moderator>:<effect>``, ``la_moderator_effect:...``,
``trend_effect:<effect>``, ``stratum_offset:<contrast>:slope``,
``la_outcome_effect:gradient``); a joint fit's per threshold (``thresholds``) and its
consecutive gradient ratios (``gradient_ratio:<later>/<earlier>``).

Diagnosis per quantity, with priorsense's threshold 0.05: both sensitivities >= 0.05 is a
*prior-data conflict*; prior > 0.05 > likelihood a *strong prior / weak likelihood*; else
none (""). A quantity with a prior-data conflict adds a reason to the diagnostics and makes a
PASS verdict WARN (:func:`flag`).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import arviz_stats as az
import numpy as np
import xarray as xr

from socialgradient.model import families
from socialgradient.model.priors import log_prior
from socialgradient.results import gradients
from socialgradient.results.prior_density import (
    SAMPLE,
    joint_log_prior,
    term_log_prior,
    term_scales,
)
from socialgradient.sampling import predict
from socialgradient.sampling.saved import JOINT_LOG_LIKELIHOOD, outcomes, with_log_likelihood
from socialgradient.spec import Spec
from socialgradient.util.imports import forget_unloaded_jax
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
#: the posterior variables of the terms reported as quantities (what summary.json reports of
#: them: every element, but the LA outcome's gradient only, not its adjustments, and the
#: stratum offsets' slopes only, the strata's gradients, not their rates)
TERM_QUANTITIES = (
    "moderator_effect",
    "la_moderator_effect",
    "trend_effect",
    "stratum_offset",
    "la_outcome_effect",
)


def power_scaling(tree: xr.DataTree, threshold: float = THRESHOLD) -> dict[str, Any]:
    """Return the prior and likelihood sensitivity of each headline quantity.

    Parameters
    ----------
    tree : DataTree
        A fit (:func:`socialgradient.sampling.fit.fit`), single-outcome or joint; its
        pointwise ``log_likelihood`` is reused, or computed on the replicates' draws when
        absent.
    threshold : float
        The sensitivity above which a component counts as influential (0.05).

    Returns
    -------
    dict
        ``quantities``: per quantity (module docstring), ``prior`` and ``likelihood``
        sensitivity (CJS distance per unit log power) and ``diagnosis`` (:data:`CONFLICT`,
        :data:`WEAK` or ""); for a joint fit ``thresholds`` holds each threshold's
        quantities and ``quantities`` the gradient ratios; ``conflict``: the quantities
        with a prior-data conflict (a joint fit's as ``<threshold>:<quantity>``);
        ``scaled_priors``, ``threshold``, ``draws``, ``method``. One threshold of a joint
        fit (:func:`socialgradient.sampling.joint.view`), or a fit without the draws to
        compute its log-likelihood on, gives ``skipped`` with the reason instead.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"power_scaling: threshold must be in (0, 1), got {threshold}")
    forget_unloaded_jax()  # scipy's logsumexp (PSIS) would load a lazy jax: ~1 s
    spec = Spec.from_json(tree.attrs["spec"])
    thresholds = outcomes(tree)
    if len(spec.outcomes) > 1 and not thresholds:
        return {
            "skipped": "one threshold of a joint fit: its prior is the joint model's; see the "
            "joint fit's sensitivity"
        }
    total = _total_log_likelihood(tree, bool(thresholds))
    if total is None:
        return {"skipped": "no log_likelihood, nor posterior_predictive draws to compute it on"}
    if total.size < MIN_DRAWS:  # PSIS of the power-scaled weights needs a tail to fit
        return {
            "skipped": f"only {total.size} draws with a log-likelihood; power-scaling needs "
            f"at least {MIN_DRAWS}"
        }
    post = tree["posterior"].to_dataset().sel(chain=total["chain"], draw=total["draw"])
    default_mean = families.get(tree.attrs["family"]).a_prior_mean
    if thresholds:
        parts = joint_log_prior(post, spec.priors, default_mean)
        headline = joint_quantities(post, thresholds)
    else:
        parts = log_prior(post, spec.priors, default_mean)
        parts |= term_log_prior(post, spec.priors, _fit_scales(tree, post))
        headline = quantities_of(post)
    quantities = _sensitivities(headline, sum(parts.values()), total, threshold)
    out: dict[str, Any] = {
        "method": "power-scaling (arviz_stats.psense, alphas 0.99 and 1.01, CJS distance)",
        "threshold": threshold,
        "draws": int(total.size),
        "scaled_priors": sorted(parts),
    }
    if thresholds:
        out["thresholds"] = {
            t: {k.partition(":")[2]: v for k, v in quantities.items() if k.startswith(f"{t}:")}
            for t in thresholds
        }
        quantities = {k: v for k, v in quantities.items() if k.startswith("gradient_ratio:")}
        conflict = [
            f"{t}:{k}"
            for t, per in out["thresholds"].items()
            for k, v in per.items()
            if v["diagnosis"] == CONFLICT
        ]
    else:
        conflict = []
    out["quantities"] = quantities
    out["conflict"] = conflict + [k for k, v in quantities.items() if v["diagnosis"] == CONFLICT]
    return out


def _sensitivities(
    headline: dict[str, xr.DataArray], lp: Any, total: xr.DataArray, threshold: float
) -> dict[str, dict]:
    """Return each quantity's prior and likelihood sensitivity and diagnosis."""
    sample = {"chain": total["chain"].values, "draw": total["draw"].values}
    names = list(headline)  # the DataTree's variables by position: names may hold '/'
    dt = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({f"q{i}": headline[n] for i, n in enumerate(names)}),
            "log_prior": xr.Dataset({"prior": (SAMPLE, np.asarray(lp))}, coords=sample),
            "log_likelihood": xr.Dataset({"likelihood": total}),
        }
    )
    values = {group: az.psense(dt, group=group) for group in ("prior", "likelihood")}
    out = {}
    for i, name in enumerate(names):
        prior = float(values["prior"][f"q{i}"])
        likelihood = float(values["likelihood"][f"q{i}"])
        out[name] = {
            "prior": round(prior, 4),
            "likelihood": round(likelihood, 4),
            "diagnosis": diagnose(prior, likelihood, threshold),
        }
    return out


def quantities_of(post: xr.Dataset) -> dict[str, xr.DataArray]:
    """Return a single-outcome fit's quantities, each with dims (chain, draw).

    Parameters
    ----------
    post : Dataset
        The posterior.

    Returns
    -------
    dict of str to DataArray
        The national gradients (rate ratios per 10 points; ``contextual_effect`` log), the
        LA SDs ``la_sd_intercept`` (log rate) and ``la_sd_slope`` (log gradient), and the
        terms' effects (:data:`TERM_QUANTITIES`), one entry per element, named
        ``<variable>:<coordinate>:...``.
    """
    out = {str(k): v for k, v in gradients.national(post).data_vars.items()}
    for effect in ("intercept", "slope"):
        out[f"la_sd_{effect}"] = post["la_sd"].sel(effect=effect, drop=True)
    for name in TERM_QUANTITIES:
        if name not in post:
            continue
        da = post[name]
        if name == "la_outcome_effect":
            out[name + ":gradient"] = da.sel(la_outcome_term="gradient", drop=True)
        elif name == "stratum_offset":  # the strata's gradients; their rates are nuisance
            out |= {f"{k}:slope": v for k, v in _flat(name, da.sel(effect="slope")).items()}
        else:
            out |= _flat(name, da)
    return out


def joint_quantities(post: xr.Dataset, thresholds: list[str]) -> dict[str, xr.DataArray]:
    """Return a joint fit's quantities per threshold and its gradient ratios.

    Parameters
    ----------
    post : Dataset
        The joint posterior (dim ``threshold``).
    thresholds : list of str
        The thresholds, in order.

    Returns
    -------
    dict of str to DataArray
        ``<threshold>:<quantity>`` for the national gradients and the LA SDs of each
        threshold, and ``gradient_ratio:<later>/<earlier>`` (the ratio of consecutive
        thresholds' gradients at an averagely deprived LA), each dims (chain, draw).
    """
    out = {}
    for t in thresholds:
        one = post[["b_w", "b_b", "b_x", "la_sd"]].sel(threshold=t, drop=True)
        for k, v in quantities_of(one).items():
            out[f"{t}:{k}"] = v
    b_w = post["b_w"]
    for lo, hi in itertools.pairwise(thresholds):
        step = b_w.sel(threshold=hi, drop=True) - b_w.sel(threshold=lo, drop=True)
        out[f"gradient_ratio:{hi}/{lo}"] = gradients._exp(step)
    return out


def _flat(name: str, da: xr.DataArray) -> dict[str, xr.DataArray]:
    """Return one entry per element of ``da``'s non-sample dims, ``name:<coord>:...``."""
    extra = [d for d in da.dims if d not in SAMPLE]
    labels = [
        [str(v) for v in (da[d].values if d in da.coords else range(da.sizes[d]))] for d in extra
    ]
    out = {}
    for idx in itertools.product(*(range(da.sizes[d]) for d in extra)):
        key = ":".join([name, *(labels[k][i] for k, i in enumerate(idx))])
        out[key] = da.isel(dict(zip(extra, idx, strict=True)), drop=True)
    return out


def _fit_scales(tree: xr.DataTree, post: xr.Dataset) -> dict[str, np.ndarray]:
    """Return :func:`term_scales` of a single-outcome fit (its data only when needed)."""
    scaled = ("moderator_effect", "la_moderator_effect", "trend_effect", "la_outcome_effect")
    if not any(v in post for v in scaled):
        return {}
    const = tree["constant_data"]
    covariates = (
        const["la_outcome_covariate_value"].transpose("la", ...).values
        if "la_outcome_covariate_value" in const
        else None
    )
    return term_scales(predict.encoded_data(tree), covariates)


def _total_log_likelihood(tree: xr.DataTree, joint: bool) -> xr.DataArray | None:
    """Return each draw's log-likelihood summed over the rows, dims (chain, draw).

    From the tree's ``log_likelihood`` when it has one (a joint fit's: computed per threshold
    when missing, :func:`socialgradient.sampling.saved.with_log_likelihood`), else computed on
    the draws of its replicates (:func:`socialgradient.sampling.predict.log_likelihood_total`,
    in blocks of draws: the pointwise values are never held); None without either.
    """
    if joint or "log_likelihood" in tree.children:
        tree = with_log_likelihood(tree)
        if "log_likelihood" not in tree.children:
            return None
        name = JOINT_LOG_LIKELIHOOD if joint else tree.attrs["outcome"]
        loglik = tree["log_likelihood"].to_dataset()[name]
        # summed in float64 whatever the stored dtype (a large fit's is float32)
        return loglik.sum([d for d in loglik.dims if d not in SAMPLE], dtype=np.float64)
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
