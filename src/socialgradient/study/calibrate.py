r"""Calibration at England size: ``socialgradient calibrate`` (over 400 lines because this
docstring is the study's full statement -- ranges, models, caveats -- and the replicate, the
aggregation and its report are read together).

Each replicate draws a truth from the stated ranges below (:data:`RANGES`), simulates an
England-sized table from it (``scale`` 1.0: 32,844 LSOAs in 150 LAs, as the default synthetic
England, :func:`socialgradient.data.synthetic.england.simulate`), fits it with the package's
own fit (:func:`socialgradient.sampling.fit.fit`, the spec's defaults but the calibration's
draws) and records, in ``OUT/replicates/<model>/<seed>.json``:

* the truth (every drawn parameter and the national quantities it implies, and each LA's
  realised gradient :math:`\exp(b_l)`);
* for the national quantities (:data:`NATIONAL`) and every LA's gradient: the median, the 95%
  and 80% equal-tailed intervals as the package reports them (``summary.json``,
  ``la_gradients.csv``) and whether each covers the truth;
* the diagnostics of the fit (max R-hat, min bulk and tail ESS, divergences, the PASS/WARN/FAIL
  verdict of :func:`socialgradient.results.checks.diagnose`; and R-hat/ESS of the national
  quantities);
* simulation-based calibration (SBC) ranks of the truth of ``a``, ``b_w``, ``b_b``, ``b_x``
  among :data:`SBC_DRAWS` (L = 99) posterior draws thinned evenly over all chains: the number of
  thinned draws below the truth, 0..L.

Models (``--model``):

``national``
    The national negative-binomial model of referrals (spec ``referrals``: family negbin,
    children as exposure). The table is :func:`~socialgradient.data.synthetic.england.simulate`
    with the referrals threshold's parameters replaced by the drawn ones (``parameters=``); the
    other columns are the default England's.
``binomial``
    Re-referrals out of referrals, binomial family, logit link (as ``models/rereferrals.toml``,
    whose study truth is ``records_model.REREFERRAL``: p0 0.22, c_w 0.10, c_x -0.15). The trials
    are the referrals of the synthetic England of the replicate's seed at the study's default
    parameters; LSOAs with no referral carry no trials and are dropped (as the records aggregate
    does), as is an LA left with fewer than 2 LSOAs (the model's minimum; recorded in the
    result's ``dropped``), and the LA effects and counts are drawn on the *remaining* table's
    deprivation decomposition, so the truth is defined on exactly the table that is fitted:
    :math:`(a_l, b_l) \sim \mathrm{MVN}((a + b_b m_c, b_w + b_x m_c), \Sigma)`,
    :math:`y_i \sim \mathrm{Binomial}(N_i, \mathrm{logit}^{-1}(a_l + b_l w_i))`.

Stated ranges of the truths (independent across parameters; ``uniform`` on the range, ``log``
uniform on the log of the range). Around the study's (``england.PARAMETERS["referrals"]`` and
``england.B_X``; for re-referrals ``records_model.REREFERRAL`` and the LA SD of
``models/rereferrals.toml``):

=========  =========================  ============================  ========================
parameter  national (study value)     binomial (study value)        meaning
=========  =========================  ============================  ========================
a          -4.47 .. -3.87 (-4.17)     -1.57 .. -0.97 (logit 0.22)   intercept (log rate per
                                                                    child / logit), m_c = 0
b_w        0.33 .. 0.63 (log 1.62)    0.00 .. 0.20 (0.10)           within-LA log gradient
b_b        0.10 .. 0.40 (0.25)        -0.15 .. 0.15 (0)             between-LA slope
b_x        -0.36 .. -0.16 (-0.258)    -0.25 .. -0.05 (-0.15)        cross-level interaction
sigma_a    0.15 .. 0.35 (0.25)        0.10 .. 0.30 (~0.19)          SD of LA intercepts
sigma_b    0.12 .. 0.26 (0.19)        0.06 .. 0.16                  SD of LA slopes
rho        -0.6 .. 0.1 (-0.3)         -0.5 .. 0.3                   intercept-slope corr.
phi        10 .. 40 log (20)          --                            NB2 dispersion
=========  =========================  ============================  ========================

**Not SBC in the strict sense.** SBC's ranks are uniform when the truths are drawn from the
model's *prior*; here they are drawn from narrow ranges around the study's values, far inside
the weakly informative priors (:mod:`socialgradient.model.build`). At England size the posterior is
dominated by the likelihood, so the ranks are still expected to be close to uniform, and a
clear departure (the chi-square test of :func:`uniformity`) points at a biased or overconfident
posterior -- but a mild one could also come from the prior not matching the drawing
distribution, and uniform ranks here do not prove calibration over the whole prior. The
interval coverages are frequentist coverages at truths in these ranges.

The replicates run as tasks on Dask distributed exactly as ``socialgradient suite``'s fits
(:func:`socialgradient.study.suite.client`: a ``LocalCluster`` of ``workers`` single-threaded
processes by default, or the running cluster at ``scheduler``; ``OUT`` must be a folder every
worker sees at the same path). A task simulates its own table from its seed (nothing large is
sent), fits, and writes its result file atomically (:func:`socialgradient.util.files.atomic_write`);
no posterior is written. A result file that exists, parses and records the same configuration
is not refitted, so a stopped study resumes where it stopped; a worker that dies mid-replicate
has written nothing, and the scheduler runs its task again on another worker.

``OUT/calibration.json`` and ``OUT/calibration.md`` aggregate the replicates
(:func:`aggregate`): coverage of the 95% and 80% intervals per national quantity and pooled,
per-LA coverage pooled over LAs and replicates, each with a binomial standard error
(:math:`\sqrt{p(1-p)/n}`, which treats the intervals as independent: the pooled ones are not,
quite, as they share a replicate's data), SBC rank histograms (:data:`BINS` bins) with a
chi-square uniformity p-value per parameter, and ``OUT/calibration_sbc.png``. Replicates with a
FAIL verdict are counted and listed, and kept in every coverage and rank (never dropped).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from pathlib import Path

import numpy as np
from scipy import special, stats

from socialgradient.util.files import atomic_write

log = logging.getLogger(__name__)

MODELS = ("national", "binomial")
NATIONAL = (
    "gradient_mean_la",
    "gradient_less_deprived_la",
    "gradient_more_deprived_la",
    "between_la_gradient",
    "contextual_effect",
)
SBC_PARAMETERS = ("a", "b_w", "b_b", "b_x")
SBC_DRAWS = 99  # L: thinned posterior draws per replicate; ranks run 0..L
BINS = 10  # bins of the rank histograms (L + 1 = 100 ranks: 10 ranks per bin)
LEVELS = (95, 80)
#: Default draws per chain, tuning draws and chains per replicate (see bench/calibration.md).
#: 4 x 500 after 500 kept the national quantities at R-hat <= 1.006 and bulk ESS >= 1,080 on
#: two England-sized national fits, but the LA effects' max R-hat was 1.012 and 1.015 (a WARN
#: verdict): 1,000 draws per chain, so that the per-LA gradients meet the verdict's PASS too.
SAMPLING = {"draws": 1000, "tune": 500, "chains": 4}
#: What the tasks send to a running Dask cluster (the warning of socialgradient.study.clusters).
SENDS = "the calibration's tasks and results (simulated data only)"
#: Sampler options per model (the binomial as models/rereferrals.toml).
TARGET_ACCEPT = {"national": None, "binomial": 0.9}
BINOMIAL_STREAM = 13  # default_rng([seed, 13]): the binomial's LA effects and counts
TRUTH_STREAM = 29  # default_rng([seed, 29]): the replicate's truth

#: Stated ranges of the truths: parameter -> (low, high, "uniform" | "log").
RANGES = {
    "national": {
        "a": (-4.47, -3.87, "uniform"),
        "b_w": (round(math.log(1.62) - 0.15, 4), round(math.log(1.62) + 0.15, 4), "uniform"),
        "b_b": (0.10, 0.40, "uniform"),
        "b_x": (-0.3583, -0.1583, "uniform"),
        "sigma_a": (0.15, 0.35, "uniform"),
        "sigma_b": (0.12, 0.26, "uniform"),
        "rho": (-0.6, 0.1, "uniform"),
        "phi": (10.0, 40.0, "log"),
    },
    "binomial": {
        "a": (round(special.logit(0.22) - 0.3, 4), round(special.logit(0.22) + 0.3, 4),
              "uniform"),
        "b_w": (0.0, 0.2, "uniform"),
        "b_b": (-0.15, 0.15, "uniform"),
        "b_x": (-0.25, -0.05, "uniform"),
        "sigma_a": (0.10, 0.30, "uniform"),
        "sigma_b": (0.06, 0.16, "uniform"),
        "rho": (-0.5, 0.3, "uniform"),
    },
}
STUDY = {
    "national": "england.PARAMETERS['referrals'] (gradient 1.62, so b_w = log 1.62 = 0.482; "
                "a -4.17, b_b 0.25, sigma_a 0.25, sigma_b 0.19, rho -0.3, phi 20) and "
                "england.B_X (-0.2583)",
    "binomial": "records_model.REREFERRAL (p0 0.22, so a = logit 0.22 = -1.266; c_w 0.10 = "
                "b_w; c_x -0.15 = b_x; no between-LA slope, b_b 0) and the LA intercept SD "
                "~0.19 of models/rereferrals.toml",
}


# -- truths and tables --------------------------------------------------------------------

def draw_truth(model: str, seed: int) -> dict:
    """The replicate's parameters, drawn from :data:`RANGES` with ``default_rng([seed, 29])``."""
    rng = np.random.default_rng([int(seed), TRUTH_STREAM])
    out = {}
    for name, (lo, hi, kind) in RANGES[_check_model(model)].items():
        u = rng.uniform()
        out[name] = float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
                          if kind == "log" else lo + u * (hi - lo))
    return out


def _check_model(model: str) -> str:
    if model not in MODELS:
        raise ValueError(f"unknown calibration model {model!r}: choose one of {MODELS}")
    return model


def national_quantities(p: dict) -> dict:
    """The national quantities (:data:`NATIONAL`) of parameters ``p`` (``b_w``, ``b_b``,
    ``b_x``), as :func:`socialgradient.results.gradients.national` defines them."""
    return {
        "gradient_mean_la": math.exp(p["b_w"]),
        "gradient_less_deprived_la": math.exp(p["b_w"] - p["b_x"]),
        "gradient_more_deprived_la": math.exp(p["b_w"] + p["b_x"]),
        "between_la_gradient": math.exp(p["b_b"]),
        "contextual_effect": p["b_b"] - p["b_w"],
    }


def simulate(model: str, seed: int, scale: float = 1.0):
    """``(table, spec, truth)`` of one replicate: the table to fit, the spec to fit it with
    (sampling not yet set) and the truth: ``{"parameters", "national", "la": {code: gradient}}``.
    """
    from socialgradient.data.synthetic import england
    from socialgradient.spec import Spec

    p = draw_truth(model, seed)
    if model == "national":
        params = {k: v for k, v in p.items() if k != "b_w"} | {"gradient": math.exp(p["b_w"])}
        syn = england.simulate(seed=seed, scale=scale, parameters={"referrals": params})
        t = syn.truth["thresholds"]["referrals"]
        la = {code: v["gradient"] for code, v in t["la"].items()}
        table = syn.table[["lsoa", "la", "la_name", "children", "income", "referrals"]]
        return table, Spec("referrals"), {"parameters": p, "national": national_quantities(p),
                                          "la": la}
    return _binomial(seed, scale, p)


def _binomial(seed: int, scale: float, p: dict):
    """Re-referrals out of referrals (see the module docstring)."""
    from socialgradient.data.deprivation import decompose
    from socialgradient.data.synthetic import england
    from socialgradient.spec import Spec

    syn = england.simulate(seed=seed, scale=scale)
    table = syn.table.loc[syn.table["referrals"] > 0,
                          ["lsoa", "la", "la_name", "children", "income", "referrals"]]
    # The model needs 2 LSOAs per LA: an LA left with fewer (City of London at small scales)
    # is dropped too, before the decomposition, so the truth is of the LAs fitted.
    rows = table.groupby("la")["lsoa"].transform("size")
    table = table[rows >= 2].reset_index(drop=True)
    dec = decompose(table["income"], table["children"], table["la"])
    rng = np.random.default_rng([int(seed), BINOMIAL_STREAM])
    e = rng.standard_normal((len(dec.la), 2))
    a_la, b_la = england.la_effects(p, dec.m_c, e)
    eta = a_la[dec.la_index] + b_la[dec.la_index] * dec.w
    table["rereferrals"] = rng.binomial(table["referrals"].to_numpy(np.int64),
                                        special.expit(eta)).astype(np.int64)
    la = {str(code): float(np.exp(b_la[j])) for j, code in enumerate(dec.la)}
    spec = Spec("rereferrals", family="binomial", trials="referrals",
                target_accept=TARGET_ACCEPT["binomial"])
    dropped = {"lsoa": int(len(syn.table) - len(table)),
               "la": sorted(set(syn.table["la"]) - set(table["la"]))}
    return table, spec, {"parameters": p, "national": national_quantities(p), "la": la,
                         "dropped": dropped}


# -- one replicate ------------------------------------------------------------------------

def config(model: str, scale: float, draws: int, tune: int, chains: int) -> dict:
    """What a replicate's result depends on, besides its seed (a result of another
    configuration is refitted)."""
    return {"model": _check_model(model), "scale": float(scale), "draws": int(draws),
            "tune": int(tune), "chains": int(chains), "sbc_draws": SBC_DRAWS,
            "ranges": {k: list(v) for k, v in RANGES[model].items()}}


def result_path(out_dir: Path, model: str, seed: int) -> Path:
    return Path(out_dir) / "replicates" / model / f"{seed}.json"


def read_result(path: Path, cfg: dict) -> dict | None:
    """The result at ``path`` if it is complete and of configuration ``cfg``, else None."""
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or not result.get("complete") or result.get("config") != cfg:
        return None
    return result


def sbc_rank(draws: np.ndarray, truth: float, n: int = SBC_DRAWS) -> int:
    """Rank of ``truth`` among ``n`` draws thinned evenly from ``draws`` (all chains, in
    order): the number below it, 0..n."""
    flat = np.asarray(draws, dtype=float).ravel()
    if len(flat) < n:
        raise ValueError(f"SBC needs at least {n} posterior draws, got {len(flat)}")
    keep = np.linspace(0, len(flat) - 1, n).round().astype(int)
    return int((flat[keep] < truth).sum())


def _covers(lo: float, hi: float, truth: float) -> bool:
    return bool(lo <= truth <= hi)


def replicate(model: str, seed: int, cfg: dict, progressbar: bool = False) -> dict:
    """Simulate, fit and score one replicate; the result dict (not written)."""
    import arviz_stats as az

    from socialgradient.model.encode import encode
    from socialgradient.release import report
    from socialgradient.results import checks, gradients
    from socialgradient.sampling import fit

    start = time.perf_counter()
    table, spec, truth = simulate(model, seed, cfg["scale"])
    spec = spec.replace(draws=cfg["draws"], tune=cfg["tune"], chains=cfg["chains"], seed=seed)
    data = encode(table, spec)
    simulated = time.perf_counter()
    # One predictive draw per chain: the log-likelihood and replicates are not needed here.
    tree = fit.fit(data, spec, progressbar=progressbar, max_predictive_draws=cfg["chains"])
    fitted = time.perf_counter()
    diag = checks.diagnose(tree)
    post = tree["posterior"].to_dataset()
    nat = gradients.national(post)[list(NATIONAL)]
    summary = report.summary(tree, diag)
    national = {}
    for key in NATIONAL:
        s, t = summary[key], truth["national"][key]
        national[key] = {"truth": t, "median": s["median"], "ci95": s["ci95"],
                         "ci80": s["ci80"], "covered95": _covers(*s["ci95"], t),
                         "covered80": _covers(*s["ci80"], t)}
    las = report.la_gradients(tree)
    true_la = las["la"].map(truth["la"]).to_numpy(dtype=float)
    la = {"la": las["la"].tolist(), "truth": true_la.tolist()}
    for level in LEVELS:
        lo, hi = las[f"gradient_lo{level}"].to_numpy(), las[f"gradient_hi{level}"].to_numpy()
        la[f"lo{level}"], la[f"hi{level}"] = lo.tolist(), hi.tolist()
        la[f"covered{level}"] = ((lo <= true_la) & (true_la <= hi)).tolist()
    ranks = {name: sbc_rank(post[name].transpose("chain", "draw").values,
                            truth["parameters"][name]) for name in SBC_PARAMETERS}
    rhat, ess = az.rhat(nat), az.ess(nat, method="bulk")
    diag = diag | {"national_rhat_max": max(float(rhat[k]) for k in NATIONAL),
                   "national_ess_bulk_min": min(float(ess[k]) for k in NATIONAL)}
    return {
        "complete": True,
        "model": model,
        "seed": int(seed),
        "config": cfg,
        "outcome": spec.outcome,
        "family": spec.family,
        "n_lsoa": len(table),
        "n_la": len(truth["la"]),
        "truth": truth["parameters"] | truth["national"],
        **({"dropped": truth["dropped"]} if "dropped" in truth else {}),
        "national": national,
        "la": la,
        "sbc": {"draws": SBC_DRAWS, "ranks": ranks},
        "diagnostics": _plain(diag),
        "seconds": {"simulate": simulated - start, "fit": fitted - simulated,
                    "compile": _plain(tree.attrs.get("compile_seconds")),
                    "sampling": _plain(tree.attrs.get("sampling_seconds")),
                    "total": time.perf_counter() - start},
    }


def _plain(value):
    """JSON-safe: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def replicate_task(model: str, seed: int, cfg: dict, path: Path,
                   progressbar: bool = False) -> dict:
    """One task, run on a worker: the replicate's result, written atomically to ``path``.

    A result already complete (a rerun of a task whose worker died after writing) is read
    back, not refitted: ``{"status": "up to date", ...}``.
    """
    done = read_result(path, cfg)
    if done is not None:
        return {"status": "up to date", "result": done}
    result = replicate(model, seed, cfg, progressbar)
    result["fitted_by"] = {"host": socket.gethostname(), "pid": os.getpid()}
    text = json.dumps(result, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8",
                                                    newline="\n"))
    return {"status": "fitted", "result": result}


# -- the study ----------------------------------------------------------------------------

def run(out_dir: Path, replicates: int = 100, model: str = "national", *, scale: float = 1.0,
        draws: int | None = None, tune: int | None = None, chains: int | None = None,
        seed: int = 2021, scheduler=None, workers: int = 2, progressbar: bool = False,
        dashboard: bool = False, security=None, insecure: bool = False) -> dict:
    """Run (or resume) the study: replicates ``seed .. seed + replicates - 1`` of ``model``,
    each a task on the Dask cluster (:func:`socialgradient.study.suite.client`; ``dashboard``,
    ``security`` and ``insecure`` as :func:`socialgradient.study.clusters.target`), then write
    ``calibration.json``, ``calibration.md`` and ``calibration_sbc.png`` in ``out_dir``.

    Returns ``{"aggregate", "fitted", "up_to_date", "failed"}`` (the seeds fitted in this run,
    those read back, and ``{seed: error}`` for tasks that raised). A replicate whose task
    failed is left out of the aggregate and named in it; a FAIL verdict is not a failure.
    """
    from socialgradient.study import clusters

    _check_model(model)
    if replicates < 1:
        raise ValueError(f"calibrate: --replicates must be at least 1, got {replicates}")
    if not scale > 0:
        raise ValueError(f"calibrate: --scale must be positive, got {scale}")
    out_dir = Path(out_dir).resolve()  # the workers' working folders may differ from ours
    s = SAMPLING | {k: v for k, v in (("draws", draws), ("tune", tune), ("chains", chains))
                    if v is not None}
    if s["draws"] * s["chains"] < SBC_DRAWS:
        raise ValueError(f"calibrate: draws x chains must be at least {SBC_DRAWS} (the SBC "
                         f"ranks thin {SBC_DRAWS} posterior draws)")
    cfg = config(model, scale, s["draws"], s["tune"], s["chains"])
    cluster = clusters.target(scheduler, workers, dashboard=dashboard, security=security,
                              insecure=insecure, sends=SENDS)
    seeds = list(range(seed, seed + replicates))
    results, fitted, up_to_date, failed = {}, [], [], {}
    todo = []
    for sd in seeds:
        done = read_result(result_path(out_dir, model, sd), cfg)
        if done is None:
            todo.append(sd)
        else:
            results[sd] = done
            up_to_date.append(sd)
    log.info("calibrate %s: %d replicates, %d up to date, %d to fit (scale %g, %d x %d draws "
             "after %d tuning)", model, len(seeds), len(up_to_date), len(todo), scale,
             s["chains"], s["draws"], s["tune"])
    if todo:
        _run_tasks(model, todo, cfg, out_dir, cluster, workers, progressbar, results,
                   fitted, up_to_date, failed)
    agg = aggregate([results[sd] for sd in seeds if sd in results])
    agg["failed_tasks"] = {str(k): v for k, v in failed.items()}
    agg["config"] = cfg | {"seeds": [seeds[0], seeds[-1]], "replicates": replicates}
    write(out_dir, model, agg)
    return {"aggregate": agg, "fitted": fitted, "up_to_date": up_to_date, "failed": failed}


def _run_tasks(model, todo, cfg, out_dir, scheduler, workers, progressbar, results, fitted,
               up_to_date, failed) -> None:
    """Fit the replicates of seeds ``todo`` on the cluster
    (:func:`socialgradient.study.clusters.run_tasks`), filling ``results``, ``fitted``,
    ``up_to_date`` and ``failed`` as they finish."""
    from socialgradient.study import clusters

    total = len(todo)

    def finished(n, sd, answer, error):
        if error is not None:
            log.error("replicate %d/%d (seed %d) failed: %r", n, total, sd, error)
            failed[sd] = repr(error)
            return
        result = answer["result"]
        results[sd] = result
        (fitted if answer["status"] == "fitted" else up_to_date).append(sd)
        d = result["diagnostics"]
        log.info("replicate %d/%d done in %.0f s (seed %d, %s, R-hat %.3f, bulk ESS %.0f)",
                 n, total, result["seconds"]["total"], sd, d["verdict"],
                 d["rhat_max"] or float("nan"), d["ess_bulk_min"] or float("nan"))

    tasks = [(f"calibrate-{model}-{sd}", replicate_task,
              (model, sd, cfg, result_path(out_dir, model, sd), progressbar), sd)
             for sd in todo]
    clusters.run_tasks(tasks, scheduler, workers, finished, what="replicates")


# -- aggregation --------------------------------------------------------------------------

def proportion(hits, n: int | None = None) -> dict:
    """``{"k", "n", "p", "se"}`` of boolean ``hits``: the share and its binomial SE."""
    hits = np.asarray(hits, dtype=bool).ravel()
    n = hits.size
    k = int(hits.sum())
    p = k / n if n else float("nan")
    se = math.sqrt(p * (1 - p) / n) if n else float("nan")
    return {"k": k, "n": n, "p": p, "se": se}


def rank_histogram(ranks, draws: int = SBC_DRAWS, bins: int = BINS) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Counts of ``ranks`` (0..``draws``) in ``bins`` bins of consecutive ranks, and the
    counts a uniform rank would give (equal when ``draws + 1`` divides by ``bins``)."""
    ranks = np.asarray(ranks, dtype=int)
    if ranks.size and (ranks.min() < 0 or ranks.max() > draws):
        raise ValueError(f"ranks must lie in 0..{draws}")
    which = np.arange(draws + 1) * bins // (draws + 1)  # bin of each possible rank
    counts = np.bincount(which[ranks], minlength=bins)
    expected = ranks.size * np.bincount(which, minlength=bins) / (draws + 1)
    return counts, expected


def uniformity(ranks, draws: int = SBC_DRAWS, bins: int = BINS) -> dict:
    """Chi-square test that ``ranks`` are uniform on 0..``draws``, over ``bins`` bins:
    ``{"counts", "expected", "chi2", "df", "p_value"}`` (NaN with no ranks)."""
    counts, expected = rank_histogram(ranks, draws, bins)
    if counts.sum() == 0:
        chi2, p = float("nan"), float("nan")
    else:
        chi2, p = stats.chisquare(counts, expected)
    return {"counts": counts.tolist(), "expected": expected.tolist(), "chi2": float(chi2),
            "df": bins - 1, "p_value": float(p)}


def aggregate(results: list[dict], bins: int = BINS) -> dict:
    """Coverage, SBC uniformity and diagnostics over replicate results (as
    :func:`replicate` returns them). Nothing is dropped: FAIL verdicts are counted and listed.
    """
    out = {"replicates": len(results), "seeds": [r["seed"] for r in results]}
    national, pooled = {}, {level: [] for level in LEVELS}
    for key in NATIONAL:
        national[key] = {}
        for level in LEVELS:
            hits = [r["national"][key][f"covered{level}"] for r in results]
            national[key][f"coverage{level}"] = proportion(hits)
            pooled[level] += hits
    out["national"] = national
    out["national_pooled"] = {f"coverage{level}": proportion(pooled[level])
                              for level in LEVELS}
    out["per_la"] = {}
    for level in LEVELS:
        hits = [h for r in results for h in r["la"][f"covered{level}"]]
        per_rep = [float(np.mean(r["la"][f"covered{level}"])) for r in results]
        out["per_la"][f"coverage{level}"] = proportion(hits) | {
            "replicate_min": min(per_rep, default=float("nan")),
            "replicate_max": max(per_rep, default=float("nan"))}
    draws = {r["sbc"]["draws"] for r in results} or {SBC_DRAWS}
    if len(draws) > 1:
        raise ValueError(f"replicates with different SBC draws {sorted(draws)}")
    (L,) = draws
    out["sbc"] = {"draws": L, "bins": bins, "parameters": {}}
    for name in SBC_PARAMETERS:
        ranks = [r["sbc"]["ranks"][name] for r in results]
        out["sbc"]["parameters"][name] = uniformity(ranks, L, bins) | {"ranks": ranks}
    verdicts = [r["diagnostics"]["verdict"] for r in results]
    diag = [r["diagnostics"] for r in results]

    def values(name):
        return [d[name] for d in diag if d.get(name) is not None]

    seconds = [r["seconds"]["total"] for r in results]
    out["diagnostics"] = {
        "verdicts": {v: verdicts.count(v) for v in ("PASS", "WARN", "FAIL")},
        "fail": [{"seed": r["seed"], "reasons": r["diagnostics"].get("reasons", [])}
                 for r in results if r["diagnostics"]["verdict"] == "FAIL"],
        "warn": [{"seed": r["seed"], "reasons": r["diagnostics"].get("reasons", [])}
                 for r in results if r["diagnostics"]["verdict"] == "WARN"],
        "rhat_max": max(values("rhat_max"), default=None),
        "ess_bulk_min": min(values("ess_bulk_min"), default=None),
        "national_rhat_max": max(values("national_rhat_max"), default=None),
        "national_ess_bulk_min": min(values("national_ess_bulk_min"), default=None),
        "divergences": int(sum(values("divergences"))),
        "replicates_with_divergences": sum(1 for d in diag if d.get("divergences")),
    }
    out["seconds"] = {"median": float(np.median(seconds)) if seconds else None,
                      "max": max(seconds, default=None), "sum": float(sum(seconds))}
    return _plain(out)


# -- outputs ------------------------------------------------------------------------------

def write(out_dir: Path, model: str, agg: dict) -> dict[str, Path]:
    """Put ``agg`` under ``model`` in ``calibration.json`` (other models' sections kept),
    and rewrite ``calibration.md`` and ``calibration_sbc.png`` from all of it."""
    out_dir = Path(out_dir)
    path = out_dir / "calibration.json"
    try:
        whole = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        whole = {}
    if not isinstance(whole.get("models"), dict):
        whole = {"models": {}}
    whole["definitions"] = DEFINITIONS
    whole["ranges"] = {m: {k: list(v) for k, v in r.items()} for m, r in RANGES.items()}
    whole["study_values"] = STUDY
    whole["models"][model] = agg
    text = json.dumps(_plain(whole), indent=1, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8",
                                                    newline="\n"))
    md = markdown(whole)
    atomic_write(out_dir / "calibration.md", lambda tmp: Path(tmp).write_text(
        md, encoding="utf-8", newline="\n"))
    fig = sbc_figure(whole)
    atomic_write(out_dir / "calibration_sbc.png",
                 lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    return {"json": path, "markdown": out_dir / "calibration.md",
            "figure": out_dir / "calibration_sbc.png"}


DEFINITIONS = {
    "coverage95": "share of 95% equal-tailed intervals containing the truth; k of n, with "
                  "binomial SE sqrt(p(1-p)/n) (intervals treated as independent)",
    "coverage80": "the same for 80% intervals",
    "national_pooled": "all national quantities of all replicates together",
    "per_la": "every LA's gradient exp(b_la) in every replicate, pooled; replicate_min/max "
              "the lowest and highest share in one replicate",
    "sbc": "rank of the truth among L posterior draws thinned evenly over all chains (0..L), "
           "histogram in bins of consecutive ranks, chi-square test of uniformity (df bins-1). "
           "Truths come from stated ranges around the study, not from the prior: see "
           "socialgradient.study.calibrate",
    "diagnostics": "verdicts of socialgradient.results.checks.diagnose; FAIL replicates are listed "
                   "and kept in every coverage and rank",
}

LABELS = {
    "gradient_mean_la": "Gradient, averagely deprived LA",
    "gradient_less_deprived_la": "Gradient, LA 10 points less deprived",
    "gradient_more_deprived_la": "Gradient, LA 10 points more deprived",
    "between_la_gradient": "Between-LA gradient exp(b_b)",
    "contextual_effect": "Contextual effect b_b - b_w",
}


def _pct(c: dict) -> str:
    if not c["n"]:
        return "--"
    return f"{100 * c['p']:.1f}% ± {100 * c['se']:.1f} ({c['k']}/{c['n']})"


def markdown(whole: dict) -> str:
    """The report ``calibration.md`` of ``calibration.json``'s content."""
    lines = ["# Calibration study", "",
             "Written by `socialgradient calibrate` (socialgradient.study.calibrate). Coverage: "
             "share "
             "of equal-tailed intervals containing the truth, ± binomial SE, (k/n). SBC: ranks "
             "of the truth among thinned posterior draws; p-value of a chi-square test of "
             "uniformity.", "",
             "Truths are drawn from stated ranges around the study's values, not from the "
             "model's prior, so this is not simulation-based calibration in the strict sense: "
             "at England size the likelihood dominates the posterior and ranks should still be "
             "near uniform, but uniform ranks do not prove calibration over the whole prior.",
             ""]
    for model, agg in whole["models"].items():
        cfg = agg["config"]
        lines += [f"## Model `{model}`", "",
                  f"{agg['replicates']} replicates (seeds {cfg['seeds'][0]}..{cfg['seeds'][1]}"
                  f"), scale {cfg['scale']:g}, {cfg['chains']} chains x {cfg['draws']} draws "
                  f"after {cfg['tune']} tuning; SBC with L = {cfg['sbc_draws']}.", ""]
        if agg.get("failed_tasks"):
            lines += [f"**{len(agg['failed_tasks'])} replicate task(s) raised an error** and "
                      "are not in the results: " + ", ".join(
                          f"seed {s}: {e}" for s, e in agg["failed_tasks"].items()), ""]
        lines += ["Stated ranges of the truths (" + whole["study_values"][model] + "):", "",
                  "| parameter | low | high | drawn |", "|---|---|---|---|"]
        for name, (lo, hi, kind) in whole["ranges"][model].items():
            lines.append(f"| {name} | {lo:g} | {hi:g} | {kind} |")
        lines += ["", "### Coverage of the national quantities", "",
                  "| quantity | 95% intervals | 80% intervals |", "|---|---|---|"]
        for key, c in agg["national"].items():
            lines.append(f"| {LABELS[key]} | {_pct(c['coverage95'])} | "
                         f"{_pct(c['coverage80'])} |")
        p = agg["national_pooled"]
        lines.append(f"| **pooled** | {_pct(p['coverage95'])} | {_pct(p['coverage80'])} |")
        la = agg["per_la"]
        lines += ["", "### Coverage of the per-LA gradients (pooled over LAs and replicates)",
                  "", "| intervals | coverage | lowest / highest replicate |", "|---|---|---|"]
        for level in LEVELS:
            c = la[f"coverage{level}"]
            rng = ("--" if c["n"] == 0 else
                   f"{100 * c['replicate_min']:.1f}% / {100 * c['replicate_max']:.1f}%")
            lines.append(f"| {level}% | {_pct(c)} | {rng} |")
        sbc = agg["sbc"]
        lines += ["", f"### SBC ranks ({sbc['bins']} bins of ranks 0..{sbc['draws']})", "",
                  "| parameter | counts per bin | chi-square (df) | p-value |",
                  "|---|---|---|---|"]
        for name, s in sbc["parameters"].items():
            chi2 = "--" if s["chi2"] is None else f"{s['chi2']:.1f} ({s['df']})"
            pv = "--" if s["p_value"] is None else f"{s['p_value']:.3f}"
            lines.append(f"| {name} | {' '.join(str(c) for c in s['counts'])} | {chi2} | "
                         f"{pv} |")
        if agg["replicates"] < 5 * sbc["bins"]:
            lines += ["", f"(Fewer than {5 * sbc['bins']} replicates: under 5 expected per "
                      "bin, the chi-square p-values are rough.)"]
        d = agg["diagnostics"]
        v = d["verdicts"]
        lines += ["", "### Diagnostics", "",
                  f"Verdicts: {v['PASS']} PASS, {v['WARN']} WARN, {v['FAIL']} FAIL "
                  "(all kept above). "
                  f"Max R-hat {_num(d['rhat_max'], 3)}, min bulk ESS "
                  f"{_num(d['ess_bulk_min'], 0)} over all parameters (LA effects included); "
                  f"national quantities: max R-hat {_num(d['national_rhat_max'], 3)}, min bulk "
                  f"ESS {_num(d['national_ess_bulk_min'], 0)}. Divergences: "
                  f"{d['divergences']} in {d['replicates_with_divergences']} replicate(s).",
                  "", f"Wall time per replicate: median {_num(agg['seconds']['median'], 0)} s, "
                  f"max {_num(agg['seconds']['max'], 0)} s.", ""]
        if d["fail"]:
            lines += ["**Replicates with a FAIL verdict** (kept in every result above):", ""]
            lines += [f"- seed {f['seed']}: {'; '.join(f['reasons'])}" for f in d["fail"]]
            lines.append("")
    lines += ["![SBC rank histograms](calibration_sbc.png)", ""]
    return "\n".join(lines)


def _num(v, digits: int) -> str:
    return "--" if v is None else f"{v:.{digits}f}"


def sbc_figure(whole: dict):
    """Rank histograms: one row per model, one panel per SBC parameter, with the uniform
    count and its pointwise 95% binomial band."""
    from matplotlib.figure import Figure

    models = list(whole["models"])
    fig = Figure(figsize=(2.4 * len(SBC_PARAMETERS), 2.2 * max(1, len(models)) + 0.4),
                 layout="constrained")
    axes = fig.subplots(max(1, len(models)), len(SBC_PARAMETERS), squeeze=False)
    for row, model in zip(axes, models or [None], strict=True):
        for ax, name in zip(row, SBC_PARAMETERS, strict=True):
            if model is None:
                ax.set_axis_off()
                continue
            s = whole["models"][model]["sbc"]["parameters"][name]
            counts, expected = np.asarray(s["counts"]), np.asarray(s["expected"])
            n = int(counts.sum())
            x = np.arange(len(counts))
            if n:
                share = expected / n
                lo, hi = stats.binom.ppf(0.025, n, share), stats.binom.ppf(0.975, n, share)
                ax.fill_between(np.r_[x - 0.5, x[-1] + 0.5], np.r_[lo, lo[-1]],
                                np.r_[hi, hi[-1]], step="post", color="0.85", lw=0)
            ax.bar(x, counts, width=0.9, color="C0")
            ax.step(np.r_[x - 0.5, x[-1] + 0.5], np.r_[expected, expected[-1]], where="post",
                    color="k", lw=1)
            p = s["p_value"]
            ax.set_title(f"{model}: {name}" + ("" if p is None else f"  (p = {p:.2f})"),
                         fontsize=9)
            ax.set_xticks([0, len(counts) - 1], ["low", "high"])
            ax.tick_params(labelsize=8)
    fig.suptitle("SBC ranks of the truth (grey: 95% band of a uniform rank)", fontsize=10)
    return fig


def headline(agg: dict, model: str) -> str:
    """A few lines for the terminal."""
    nat, la = agg["national_pooled"], agg["per_la"]
    pv = ", ".join(f"{k} p={_num(v['p_value'], 2)}" for k, v in agg["sbc"]["parameters"].items())
    v = agg["diagnostics"]["verdicts"]
    n = agg["replicates"]
    return (f"calibrate {model}: {n} replicate{'' if n == 1 else 's'}; national 95% coverage "
            f"{_pct(nat['coverage95'])}, 80% {_pct(nat['coverage80'])}; per-LA 95% "
            f"{_pct(la['coverage95'])}, 80% {_pct(la['coverage80'])}\n"
            f"SBC uniformity: {pv}\n"
            f"verdicts: {v['PASS']} PASS, {v['WARN']} WARN, {v['FAIL']} FAIL")
