"""One replicate of the calibration study: its truth, its table, its fit and its scores.

:func:`draw_truth` draws the replicate's parameters from the stated ranges
(:data:`socialgradient.study.sbc.RANGES`), :func:`simulate` the table and truth of one seed,
:func:`replicate` fits and scores it, and :func:`replicate_task` is the Dask task that writes its
result file. The models, the ranges and the caveats are stated in
:mod:`socialgradient.study.calibrate`, which runs the replicates.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path

import numpy as np
from scipy import special

from socialgradient.study.sbc import (
    LEVELS,
    NATIONAL,
    RANGES,
    SBC_DRAWS,
    SBC_PARAMETERS,
    _plain,
    sbc_rank,
)
from socialgradient.util.files import atomic_write

MODELS = ("national", "binomial")
#: Sampler options per model (the binomial as models/rereferrals.toml).
BINOMIAL_TARGET_ACCEPT = 0.9
TARGET_ACCEPT = {"national": None, "binomial": BINOMIAL_TARGET_ACCEPT}
BINOMIAL_STREAM = 13  # default_rng([seed, 13]): the binomial's LA effects and counts
TRUTH_STREAM = 29  # default_rng([seed, 29]): the replicate's truth

# -- truths and tables --------------------------------------------------------------------


def draw_truth(model: str, seed: int) -> dict:
    """Draw the replicate's parameters from :data:`RANGES` with ``default_rng([seed, 29])``."""
    rng = np.random.default_rng([int(seed), TRUTH_STREAM])
    out = {}
    for name, (lo, hi, kind) in RANGES[_check_model(model)].items():
        u = rng.uniform()
        out[name] = float(
            math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
            if kind == "log"
            else lo + u * (hi - lo)
        )
    return out


def _check_model(model: str) -> str:
    if model not in MODELS:
        raise ValueError(f"unknown calibration model {model!r}: choose one of {MODELS}")
    return model


def national_quantities(p: dict) -> dict:
    """Return the national quantities (:data:`NATIONAL`) of parameters ``p``.

    The national quantities (:data:`NATIONAL`) of parameters ``p`` (``b_w``, ``b_b``,
    ``b_x``), as :func:`socialgradient.results.gradients.national` defines them.
    """
    return {
        "gradient_mean_la": math.exp(p["b_w"]),
        "gradient_less_deprived_la": math.exp(p["b_w"] - p["b_x"]),
        "gradient_more_deprived_la": math.exp(p["b_w"] + p["b_x"]),
        "between_la_gradient": math.exp(p["b_b"]),
        "contextual_effect": p["b_b"] - p["b_w"],
    }


def simulate(model: str, seed: int, scale: float = 1.0):
    """Simulate one replicate: ``(table, spec, truth)``.

    ``(table, spec, truth)`` of one replicate: the table to fit, the spec to fit it with
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
        return (
            table,
            Spec("referrals"),
            {"parameters": p, "national": national_quantities(p), "la": la},
        )
    return _binomial(seed, scale, p)


def _binomial(seed: int, scale: float, p: dict):
    """Re-referrals out of referrals (see the module docstring)."""
    from socialgradient.data.deprivation import decompose
    from socialgradient.data.synthetic import england
    from socialgradient.spec import Spec

    syn = england.simulate(seed=seed, scale=scale)
    table = syn.table.loc[
        syn.table["referrals"] > 0, ["lsoa", "la", "la_name", "children", "income", "referrals"]
    ]
    # The model needs 2 LSOAs per LA: an LA left with fewer (City of London at small scales)
    # is dropped too, before the decomposition, so the truth is of the LAs fitted.
    rows = table.groupby("la")["lsoa"].transform("size")
    table = table[rows >= 2].reset_index(drop=True)
    dec = decompose(table["income"], table["children"], table["la"])
    rng = np.random.default_rng([int(seed), BINOMIAL_STREAM])
    e = rng.standard_normal((len(dec.la), 2))
    a_la, b_la = england.la_effects(p, dec.m_c, e)
    eta = a_la[dec.la_index] + b_la[dec.la_index] * dec.w
    table["rereferrals"] = rng.binomial(
        table["referrals"].to_numpy(np.int64), special.expit(eta)
    ).astype(np.int64)
    la = {str(code): float(np.exp(b_la[j])) for j, code in enumerate(dec.la)}
    spec = Spec(
        "rereferrals",
        family="binomial",
        trials="referrals",
        target_accept=BINOMIAL_TARGET_ACCEPT,
    )
    dropped = {
        "lsoa": int(len(syn.table) - len(table)),
        "la": sorted(set(syn.table["la"]) - set(table["la"])),
    }
    return (
        table,
        spec,
        {"parameters": p, "national": national_quantities(p), "la": la, "dropped": dropped},
    )


# -- one replicate ------------------------------------------------------------------------


def config(model: str, scale: float, draws: int, tune: int, chains: int) -> dict:
    """Return what a replicate's result depends on, besides its seed.

    What a replicate's result depends on, besides its seed (a result of another
    configuration is refitted).
    """
    return {
        "model": _check_model(model),
        "scale": float(scale),
        "draws": int(draws),
        "tune": int(tune),
        "chains": int(chains),
        "sbc_draws": SBC_DRAWS,
        "ranges": {k: list(v) for k, v in RANGES[model].items()},
    }


def result_path(out_dir: Path, model: str, seed: int) -> Path:
    """Return the result file of replicate ``seed``: ``replicates/<model>/<seed>.json``."""
    return Path(out_dir) / "replicates" / model / f"{seed}.json"


def read_result(path: Path, cfg: dict) -> dict | None:
    """Return the result at ``path`` if it is complete and of configuration ``cfg``, else None."""
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or not result.get("complete") or result.get("config") != cfg:
        return None
    return result


def _covers(lo: float, hi: float, truth: float) -> bool:
    return bool(lo <= truth <= hi)


def replicate(model: str, seed: int, cfg: dict, progressbar: bool = False) -> dict:
    """Simulate, fit and score one replicate; the result dict (not written)."""
    import arviz_stats as az

    from socialgradient.model.encode import encode, single
    from socialgradient.release import report
    from socialgradient.results import checks, gradients
    from socialgradient.sampling import fit

    start = time.perf_counter()
    table, spec, truth = simulate(model, seed, cfg["scale"])
    spec = spec.replace(draws=cfg["draws"], tune=cfg["tune"], chains=cfg["chains"], seed=seed)
    data = single(encode(table, spec))
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
        national[key] = {
            "truth": t,
            "median": s["median"],
            "ci95": s["ci95"],
            "ci80": s["ci80"],
            "covered95": _covers(s["ci95"][0], s["ci95"][1], t),
            "covered80": _covers(s["ci80"][0], s["ci80"][1], t),
        }
    las = report.la_gradients(tree)
    true_la = las["la"].map(truth["la"]).to_numpy(dtype=float)
    la = {"la": las["la"].tolist(), "truth": true_la.tolist()}
    for level in LEVELS:
        lo, hi = las[f"gradient_lo{level}"].to_numpy(), las[f"gradient_hi{level}"].to_numpy()
        la[f"lo{level}"], la[f"hi{level}"] = lo.tolist(), hi.tolist()
        la[f"covered{level}"] = ((lo <= true_la) & (true_la <= hi)).tolist()
    ranks = {
        name: sbc_rank(post[name].transpose("chain", "draw").values, truth["parameters"][name])
        for name in SBC_PARAMETERS
    }
    rhat, ess = az.rhat(nat), az.ess(nat, method="bulk")
    diag = diag | {
        "national_rhat_max": max(float(rhat[k]) for k in NATIONAL),
        "national_ess_bulk_min": min(float(ess[k]) for k in NATIONAL),
    }
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
        "seconds": {
            "simulate": simulated - start,
            "fit": fitted - simulated,
            "compile": _plain(tree.attrs.get("compile_seconds")),
            "sampling": _plain(tree.attrs.get("sampling_seconds")),
            "total": time.perf_counter() - start,
        },
    }


def replicate_task(model: str, seed: int, cfg: dict, path: Path, progressbar: bool = False) -> dict:
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
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline="\n"))
    return {"status": "fitted", "result": result}
