r"""The joint threshold model: every threshold of intervention in one model.

For thresholds :math:`k = 1..K` (referrals, assessments, CIN plans, CP plans, looked after)
of the same LSOAs, each threshold has its own national model (:mod:`socialgradient.model.build`)

.. math::

    \log \mathrm{E}[y_{ik}] = \log n_i + \alpha_{lk} + \beta_{lk} w_i,

with its own ``a_k, b_w_k, b_b_k, b_x_k`` (and ``phi_k``), and the :math:`2K` LA effects
:math:`(\alpha_{l1}, \beta_{l1}, ..., \alpha_{lK}, \beta_{lK})` of an LA drawn from one
multivariate normal (LKJ(eta) correlation over all :math:`2K`), so an LA that intervenes
more, or more steeply, at one threshold may do so at the others. Because every threshold's
gradient comes from one posterior, "the gradient steepens at each threshold" gets a
probability: ``p_steepens`` = P(b_w of threshold k+1 > b_w of threshold k) for each
consecutive pair, and ``p_steepens_every_step`` = P(all of them at once).

Spec: ``outcomes = ["referrals", "assessments", ...]`` (in threshold order). Priors are the
single-outcome ones, per threshold. Strata, moderators, other exposures and the binomial
are not part of the joint model (a clear error says so).

A joint fit's tree has the dim ``threshold`` on ``a, b_w, b_b, b_x, phi, la_sd`` and
``la_effect`` (dims la, threshold, effect); ``la_corr`` holds the :math:`K(2K-1)`
correlations between LA coefficients (dim ``la_pair``). ``observed_data`` and
``posterior_predictive`` hold one variable per threshold; ``log_likelihood`` holds one,
``joint`` (dims chain, draw, threshold, lsoa: each threshold's count in each LSOA is a
factor of the likelihood), so ArviZ's LOO takes the tree as it is (``az.loo(tree)``: one
PSIS-LOO over every threshold-LSOA count, its elpd the sum of the thresholds'). :func:`view`
gives any one threshold as an ordinary single-outcome fit, so every summary, table, check
and figure of the package applies to it unchanged.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from socialgradient.model import families, parameterisation
from socialgradient.model.build import la_theta
from socialgradient.model.data import EFFECTS, NeighbourhoodData
from socialgradient.results.gradients import national
from socialgradient.sampling import fit as fit_module
from socialgradient.sampling import predict
from socialgradient.spec import Spec
from socialgradient.util.progress import step

log = logging.getLogger(__name__)

#: The one variable of a joint fit's ``log_likelihood`` (dims chain, draw, threshold, row).
LOG_LIKELIHOOD = fit_module.JOINT_LOG_LIKELIHOOD


def check_spec(spec: Spec) -> None:
    """Refuse what the joint model does not support, naming it."""
    bad = [name for name, on in (("stratum", spec.stratum), ("strata", spec.strata),
                                 ("stratum_trend", spec.stratum_trend), ("trials", spec.trials),
                                 ("neighbourhood_moderators", spec.neighbourhood_moderators),
                                 ("la_moderators", spec.la_moderators),
                                 ("exposure", spec.exposure != "children")) if on]
    if bad or spec.family == "binomial":
        raise ValueError(f"the joint threshold model supports negbin/poisson counts per "
                         f"child only; remove {bad or ['family = binomial']}")


def build(datas: list[NeighbourhoodData], spec: Spec,
          centred: np.ndarray | None = None) -> pm.Model:
    """The joint model of ``datas`` (one per threshold, same rows, same order)."""
    check_spec(spec)
    family, p = families.get(spec.family), spec.priors
    first, k = datas[0], len(datas)
    names = [d.outcome for d in datas]
    coefs = [f"{o}:{e}" for o in names for e in EFFECTS]
    pairs = [f"{coefs[i]}~{coefs[j]}" for i, j in itertools.combinations(range(2 * k), 2)]
    if centred is None:
        centred = choose(datas, spec)
    idx, n_la = first.la_index, len(first.la)
    order = np.argsort(idx, kind="stable")
    per_la = np.bincount(idx, minlength=n_la)
    w = first.w[order]
    coords = {**first.coords, "threshold": names, "la_coef": coefs, "la_pair": pairs}
    with pm.Model(coords=coords) as model:
        m_c = pm.Data("m_c", first.m_c, dims="la")
        mean_a = family.a_prior_mean if p.a_mean is None else p.a_mean
        a = pm.Normal("a", mean_a, p.a, dims="threshold")
        b_w = pm.Normal("b_w", 0.0, p.b_w, dims="threshold")
        b_b = pm.Normal("b_b", 0.0, p.b_b, dims="threshold")
        b_x = pm.Normal("b_x", 0.0, p.b_x, dims="threshold")
        sd0 = np.tile([0.2, 0.1], k)
        chol, corr, sd = pm.LKJCholeskyCov(
            "la_cov", eta=p.lkj_eta, n=2 * k,
            sd_dist=pm.HalfNormal.dist(sigma=np.tile([p.la_sd_intercept, p.la_sd_slope], k),
                                       size=2 * k),
            initval=np.diag(sd0)[np.tril_indices(2 * k)],  # see model.la_effects
        )
        pm.Deterministic("la_sd", sd.reshape((k, 2)), dims=("threshold", "effect"))
        upper = np.triu_indices(2 * k, 1)
        pm.Deterministic("la_corr", corr[upper], dims="la_pair")
        centre = pt.stack([a[None, :] + b_b[None, :] * m_c[:, None],
                           b_w[None, :] + b_x[None, :] * m_c[:, None]], axis=2)
        flat = la_theta(centre.reshape((n_la, 2 * k)), chol, 2 * centred, first.la, "la_coef")
        theta = pm.Deterministic("la_effect", flat.reshape((n_la, k, 2)),
                                 dims=("la", "threshold", "effect"))
        if family.name == "negbin":
            inv = pm.HalfNormal("inv_sqrt_phi", p.inv_sqrt_phi, dims="threshold")
            phi = pm.Deterministic("phi", 1.0 / pt.square(inv), dims="threshold")
        loglik = 0.0
        for j, d in enumerate(datas):
            rows = families.Rows(d.y[order], np.log(d.exposure)[order])
            eta = pt.repeat(theta[:, j, 0], per_la) + pt.repeat(theta[:, j, 1], per_la) * w
            y_sum = np.bincount(idx, weights=d.y, minlength=n_la)
            yw_sum = np.bincount(idx, weights=d.y * d.w, minlength=n_la)
            params = {"phi": phi[j]} if family.name == "negbin" else {}
            loglik = loglik + pt.sum(theta[:, j, 0] * y_sum + theta[:, j, 1] * yw_sum)
            loglik = loglik + family.normaliser(eta, rows, params)
        pm.Potential("loglik", loglik)
    return model


def choose(datas: list[NeighbourhoodData], spec: Spec) -> np.ndarray:
    """How many leading thresholds each LA has centred (dims la, 0 to K).

    Per threshold, :func:`socialgradient.model.parameterisation.choose` says whether the LA's
    data pin its intercept and slope down; an LA centres the longest run of thresholds,
    from the first, that all do. Thresholds are nested (each a subset of the one before),
    so the run is almost always every threshold the rule accepts. On the default England
    the first four thresholds pin the LA spreads down, so every LA centres them, and 12
    LAs also centre looked-after children (README); on sparser tables the run varies by LA
    (with one all-or-nothing choice per LA, well-informed referral effects of LAs
    non-centred for a sparse threshold mixed slowly: R-hat 1.088)."""
    ok = np.stack([parameterisation.choose(d, spec.family, spec.la_effects) == 2
                   for d in datas])
    return np.cumprod(ok, axis=0).sum(axis=0)


def fit(datas: list[NeighbourhoodData], spec: Spec, progressbar: bool = True) -> xr.DataTree:
    """Sample the joint model; the tree described in the module docstring."""
    from socialgradient.sampling.fit import MAX_PREDICTIVE_DRAWS, data_hash, la_names, sample

    centred = choose(datas, spec)
    model = build(datas, spec, centred)
    raw, compile_seconds, sampling_seconds = sample(
        model, spec.sampling, progressbar, target_accept=spec.target_accept)
    # la_coef: the flat order of the LA coefficients, reported as (threshold, effect)
    post = fit_module.reported(raw["posterior"].to_dataset()).drop_vars("la_coef",
                                                                   errors="ignore")
    first = datas[0]
    row, coords = first.row_dim, first.row_coords
    few = predict.thin(post, MAX_PREDICTIVE_DRAWS)
    loglik, replicates = {}, {}
    for j, d in enumerate(datas):
        view_post = _select(few, d.outcome)
        with step(log, "%s: pointwise log-likelihood and replicates", d.outcome):
            loglik[d.outcome] = predict.log_likelihood(view_post, d, spec.family)
            replicates[d.outcome] = predict.replicate(view_post, d, spec.family,
                                                      seed=spec.sampling.seed + j)
    tree = xr.DataTree.from_dict({
        "posterior": post,
        "sample_stats": raw["sample_stats"].to_dataset(),
        "observed_data": xr.Dataset({d.outcome: (row, d.y) for d in datas}, coords=coords),
        "constant_data": xr.Dataset(
            {"children": (row, first.children), "income": (row, first.income),
             "w": (row, first.w), "lsoa_la": (row, first.la[first.la_index]),
             "m_la": ("la", first.m_la), "m_c": ("la", first.m_c), "centred": ("la", centred)},
            coords={**coords, "la": first.la, **la_names(first)}),
        "log_likelihood": stacked_log_likelihood(loglik),
        "posterior_predictive": xr.Dataset(replicates),
    })
    tree.attrs.update(
        spec=spec.to_json(), spec_hash=spec.hash, data_hash=data_hash(datas),
        outcome=first.outcome, outcomes=json.dumps([d.outcome for d in datas]),
        family=spec.family, x_bar=first.x_bar, stratum_name="", strata="[]",
        exposure="children", compile_seconds=compile_seconds,
        sampling_seconds=sampling_seconds)
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
    groups = {"posterior": _select(tree["posterior"].to_dataset(), outcome),
              "sample_stats": tree["sample_stats"].to_dataset(),
              "constant_data": const}
    for name in ("observed_data", "posterior_predictive"):
        groups[name] = tree[name].to_dataset()[[outcome]]
    if "log_likelihood" in tree.children:
        loglik = tree["log_likelihood"][LOG_LIKELIHOOD].sel(threshold=outcome, drop=True)
        groups["log_likelihood"] = loglik.to_dataset(name=outcome)
    out = xr.DataTree.from_dict(groups)
    out.attrs.update({k: v for k, v in tree.attrs.items() if k != "outcomes"})
    out.attrs["outcome"] = outcome
    return out


def steepening(tree: xr.DataTree) -> dict:
    """``p_steepens`` per consecutive pair (``"a<b"``: P(b_w[b] > b_w[a])),
    ``p_steepens_every_step``, and ``gradient_ratio`` (``"b/a"``: b's gradient at an
    averagely deprived LA over a's, median and ETIs), from the joint posterior."""
    from socialgradient.results.summaries import interval

    names = outcomes(tree)
    b_w = tree["posterior"]["b_w"]
    steps = [b_w.sel(threshold=hi) > b_w.sel(threshold=lo)
             for lo, hi in itertools.pairwise(names)]
    every = xr.concat(steps, "step").all("step")
    return {
        "p_steepens": {f"{lo}<{hi}": float(s.mean())
                       for (lo, hi), s in zip(itertools.pairwise(names), steps, strict=True)},
        "p_steepens_every_step": float(every.mean()),
        "gradient_ratio": {
            f"{hi}/{lo}": interval(np.exp(b_w.sel(threshold=hi) - b_w.sel(threshold=lo)))
            for lo, hi in itertools.pairwise(names)},
    }


def threshold_summary(tree: xr.DataTree) -> dict:
    """``{outcome: {gradient_mean_la, gradient_less_deprived_la, gradient_more_deprived_la,
    contextual_effect}}`` with medians and 95%/80% ETIs."""
    from socialgradient.results.summaries import interval

    out = {}
    for name in outcomes(tree):
        nat = national(_select(tree["posterior"].to_dataset(), name))
        out[name] = {key: interval(nat[key]) for key in (
            "gradient_mean_la", "gradient_less_deprived_la", "gradient_more_deprived_la",
            "contextual_effect")}
    return out


def summary(tree: xr.DataTree, diagnostics: dict | None = None) -> dict:
    """``summary.json`` of a joint fit: every threshold's headline (``thresholds``), the
    steepening probabilities, diagnostics over the whole joint posterior, and the
    single-outcome summary of the first threshold's view (``first``) for its other keys."""
    from socialgradient.release import report
    from socialgradient.results import checks

    diagnostics = diagnostics if diagnostics is not None else checks.diagnose(tree)
    first = report.summary(view(tree, outcomes(tree)[0]), diagnostics)
    return {
        "thresholds": threshold_summary(tree),
        **steepening(tree),
        "diagnostics": diagnostics,
        "family": first["family"],
        "scale": first["scale"],
        "model": {**first["model"], "outcome": "+".join(outcomes(tree)),
                  "outcomes": outcomes(tree), "la_effects": _centring(tree)},
        "units": first["units"] + "; p_steepens: posterior probability that the gradient "
                 "at an averagely deprived LA is steeper at the later threshold",
    }


def _centring(tree: xr.DataTree) -> dict:
    """Per threshold, how many LAs had its effects sampled centred and non-centred."""
    centred = tree["constant_data"]["centred"].values
    return {name: {"centred": int((centred > j).sum()),
                   "noncentred": int((centred <= j).sum())}
            for j, name in enumerate(outcomes(tree))}


def write(tree: xr.DataTree, out_dir, extra: dict | None = None, rule=None,
          posterior=None, command: str = "write", ledger=None) -> dict:
    """The output set of a joint fit, as :func:`socialgradient.release.report.write` writes one
    fit's: ``release/summary.json`` (this module's :func:`summary`), ``la_gradients.csv``
    with a ``threshold`` column, ``ppc.json`` by threshold, every observed count through the
    disclosure gate per threshold; figures of each threshold in ``release/<threshold>/``;
    ``internal/`` the joint posterior. ``ledger``: the release ledger, as for
    :func:`socialgradient.release.report.write` (each threshold's totals are checked against the
    earlier releases and recorded)."""
    from socialgradient.release import disclosure, report
    from socialgradient.release import ledger as ledgers
    from socialgradient.results import plots

    rule = rule or disclosure.Rule()
    rule.check()
    led = ledger if isinstance(ledger, ledgers.Ledger) else ledgers.Ledger(ledger)
    s = summary(tree)
    s.update(extra or {})
    with led.locked():
        keys = led.keys() if rule.perturb else None
        s = report.release_summary(s, view(tree, outcomes(tree)[0]), led, keys)
        earlier = led.publications(measures=outcomes(tree))
        return _write(tree, out_dir, s, rule, posterior, command, led, keys, earlier, plots)


def _write(tree, out_dir, s, rule, posterior, command, led, keys, earlier, plots) -> dict:
    from pathlib import Path

    import pandas as pd

    from socialgradient.release import disclosure, report
    from socialgradient.util import outputs

    tables, ppcs, figures, entries, pubs = [], {}, {}, [], []
    meta = {"command": command, "spec_hash": tree.attrs["spec_hash"],
            "data_hash": tree.attrs["data_hash"], "outcome": s["model"]["outcome"]}
    with outputs.Writer(out_dir, **meta) as w:
        rel, internal = w.release, w.internal
        for name in outcomes(tree):
            one = view(tree, name)
            parts, decile = report.gate(one, rule, led, earlier)
            pubs.append(parts.publication)
            las = report.release_la_gradients(one, parts, keys)
            tables.append(las.assign(threshold=name))
            checked = report.release_ppc(one, parts, decile)
            ppcs[name] = report._records(checked)
            (rel / name).mkdir()
            with step(log, "%s: figures", name):
                saved = plots.save_all(one, rel / name,
                                       observed=report._gated_decile_rates(one, parts, decile,
                                                                           keys),
                                       checks=checked)
            figures |= {f"{name}/{k}": p for k, p in saved.items()}
            entries.append((name, int(parts.hidden["la"].sum()),
                            disclosure.public_actions(parts.actions),
                            report._log_check(parts, rule, led)))
        (rel / "summary.json").write_text(report.to_json(s) + "\n", encoding="utf-8", newline="\n")
        table = pd.concat(tables, ignore_index=True)
        table.insert(0, "threshold", table.pop("threshold"))
        table.to_csv(rel / "la_gradients.csv", index=False, lineterminator="\n")
        (rel / "ppc.json").write_text(report.to_json(ppcs) + "\n", encoding="utf-8", newline="\n")
        entries = [report._log_entry(
            f"la_gradients.csv + ppc.json [{name}]", rel / "la_gradients.csv", "la", rule,
            f"{name}: LA, decile and national totals protected together; figures in "
            f"{name}/ drawn from these gated totals and model outputs only",
            suppressed=hidden, **check, actions=actions)
            for name, hidden, actions, check in entries]
        with open(rel / disclosure.LOG_NAME, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(json.dumps(e, default=str) + "\n" for e in entries)
        if posterior is not None:
            report._copy(Path(posterior), internal / "posterior.nc")
        else:
            fit_module.save(tree, internal / "posterior.nc")
        led.record([p for p in pubs if p is not None], command=command, out=str(w.out.resolve()),
                   data_id=s["model"].get("data_id"), rule=dataclasses.asdict(rule))
        w.commit()
    paths = {"summary": w.path("release/summary.json"),
             "la_gradients": w.path("release/la_gradients.csv"),
             "ppc_json": w.path("release/ppc.json"),
             "disclosure_log": w.path(f"release/{disclosure.LOG_NAME}"),
             "posterior": w.path("internal/posterior.nc")}
    paths.update({k: w.path(f"release/{k.split('/')[0]}/{p.name}")
                  for k, p in figures.items()})
    return paths


def headline(s: dict) -> str:
    """A plain-text table of a joint summary: each threshold's gradients, the steepening
    probabilities and the verdict."""
    lines = [f"{'threshold':<16}{'gradient, average LA [95% ETI]':>34}"
             f"{'less / more deprived LA':>28}"]
    for name, t in s["thresholds"].items():
        g, lo, hi = t["gradient_mean_la"], t["gradient_less_deprived_la"], \
            t["gradient_more_deprived_la"]
        lines.append(f"{name:<16}{g['median']:>12.3f} [{g['ci95'][0]:.3f}, {g['ci95'][1]:.3f}]"
                     f"{lo['median']:>16.3f} / {hi['median']:.3f}")
    for pair, p in s["p_steepens"].items():
        lines.append(f"P(gradient {pair.replace('<', ' < ')}) = {p:.3f}")
    lines.append(f"P(steepens at every step) = {s['p_steepens_every_step']:.3f}")
    d = s["diagnostics"]
    lines.append(f"Diagnostics: {d['verdict']}")
    lines.extend(f"  - {reason}" for reason in d["reasons"])
    return "\n".join(lines)
