"""Sampling the joint threshold model, and one threshold of its fit as a single fit.

Sampling the joint threshold model (:mod:`socialgradient.model.joint`), and any one
threshold of its fit as an ordinary single-outcome fit (:func:`view`).
"""

from __future__ import annotations

import json
import logging

import xarray as xr

from socialgradient.model.data import NeighbourhoodData
from socialgradient.model.joint import build, choose
from socialgradient.sampling import fit as fit_module
from socialgradient.sampling import predict, tuning
from socialgradient.spec import Spec
from socialgradient.util.progress import step

log = logging.getLogger(__name__)

#: The one variable of a joint fit's ``log_likelihood`` (dims chain, draw, threshold, row).
LOG_LIKELIHOOD = fit_module.JOINT_LOG_LIKELIHOOD

#: nutpie's cap on the tree depth for the joint model (its default is 10: up to 1,023
#: leapfrog steps a draw). Early in tuning the joint model's step size collapses (to
#: 0.003-0.06 around tuning draws 50-99) and its trees run to the cap; with 7 (127 steps) the
#: tuning took 22-58% fewer evaluations and the smallest bulk ESS per evaluation (tuning and
#: sampling) was 1.5-4x the default's on each of four seeds, 400 + 200 draws
#: (``bench/joint_profile.md``, issue 32). A capped NUTS is still a valid MCMC kernel; a
#: chain left badly adapted may hit the cap while sampling, which costs ESS, not correctness,
#: and the target's checks see it. nutpie only (the cap applies to tuning and sampling both).
NUTPIE_MAXDEPTH = 7


def fit(datas: list[NeighbourhoodData], spec: Spec, progressbar: bool = True) -> xr.DataTree:
    """Sample the joint model; the tree described in the module docstring."""
    from socialgradient.sampling.fit import MAX_PREDICTIVE_DRAWS, data_hash, la_names, sample

    centred = choose(datas, spec)
    model = build(datas, spec, centred)
    nuts: dict = {"target_accept": spec.target_accept}
    if spec.sampling.sampler == "nutpie":
        nuts["maxdepth"] = NUTPIE_MAXDEPTH
    s = tuning.resolve(spec, pinned=False)  # ten LA coefficients: measured at 400 only
    raw, compile_seconds, sampling_seconds = sample(model, s, progressbar, **nuts)
    # la_coef: the flat order of the LA coefficients, reported as (threshold, effect)
    post = fit_module.reported(raw["posterior"].to_dataset()).drop_vars("la_coef", errors="ignore")
    first = datas[0]
    row, coords = first.row_dim, first.row_coords
    few = predict.thin(post, MAX_PREDICTIVE_DRAWS)
    loglik, replicates = {}, {}
    n_draws = few.sizes["chain"] * few.sizes["draw"]
    dtype = predict.log_likelihood_dtype(n_draws * len(first.y) * len(datas))  # all thresholds
    for j, d in enumerate(datas):
        view_post = _select(few, d.outcome)
        with step(log, "%s: pointwise log-likelihood and replicates", d.outcome):
            loglik[d.outcome] = predict.log_likelihood(view_post, d, spec.family, dtype=dtype)
            replicates[d.outcome] = predict.replicate(
                view_post, d, spec.family, seed=spec.sampling.seed + j
            )
    tree = xr.DataTree.from_dict(
        {
            "posterior": post,
            "sample_stats": raw["sample_stats"].to_dataset(),
            "observed_data": xr.Dataset({d.outcome: (row, d.y) for d in datas}, coords=coords),
            "constant_data": xr.Dataset(
                {
                    "children": (row, first.children),
                    "income": (row, first.income),
                    "w": (row, first.w),
                    "lsoa_la": (row, first.la[first.la_index]),
                    "m_la": ("la", first.m_la),
                    "m_c": ("la", first.m_c),
                    "centred": ("la", centred),
                },
                coords={**coords, "la": first.la, **la_names(first)},
            ),
            "log_likelihood": stacked_log_likelihood(loglik),
            "posterior_predictive": xr.Dataset(replicates),
        }
    )
    tree.attrs.update(
        spec=spec.to_json(),
        spec_hash=spec.hash,
        data_hash=data_hash(datas),
        outcome=first.outcome,
        outcomes=json.dumps([d.outcome for d in datas]),
        family=spec.family,
        x_bar=first.x_bar,
        stratum_name="",
        strata="[]",
        exposure="children",
        compile_seconds=compile_seconds,
        sampling_seconds=sampling_seconds,
    )
    tree.attrs.update({k: raw.attrs[k] for k in fit_module.SAMPLER_ATTRS if k in raw.attrs})
    return tree


#: Kept here for callers of the joint model; defined in :mod:`socialgradient.sampling.fit`, which
#: brings saved joint fits to today's layout without importing this module.
stacked_log_likelihood = fit_module.stacked_log_likelihood
outcomes = fit_module.outcomes


def _select(post: xr.Dataset, outcome: str) -> xr.Dataset:
    """One threshold's posterior in the single-outcome layout."""
    one = post.sel(threshold=outcome, drop=True)
    pair = f"{outcome}:intercept~{outcome}:slope"
    one["la_corr"] = post["la_corr"].sel(la_pair=pair, drop=True)
    return one.drop_dims("la_pair", errors="ignore")


def view(tree: xr.DataTree, outcome: str) -> xr.DataTree:
    """Threshold ``outcome`` of a joint fit as an ordinary single-outcome fit."""
    const = tree["constant_data"].to_dataset()
    # this threshold's LAs centred: those centring more leading thresholds than its index
    const["centred"] = const["centred"] > outcomes(tree).index(outcome)
    groups = {
        "posterior": _select(tree["posterior"].to_dataset(), outcome),
        "sample_stats": tree["sample_stats"].to_dataset(),
        "constant_data": const,
    }
    for name in ("observed_data", "posterior_predictive"):
        groups[name] = tree[name].to_dataset()[[outcome]]
    if "log_likelihood" in tree.children:
        loglik = tree["log_likelihood"][LOG_LIKELIHOOD].sel(threshold=outcome, drop=True)
        groups["log_likelihood"] = xr.Dataset({outcome: loglik})
    out = xr.DataTree.from_dict(groups)
    out.attrs.update({k: v for k, v in tree.attrs.items() if k != "outcomes"})
    out.attrs["outcome"] = outcome
    return out
