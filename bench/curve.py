"""Recovery of the deprivation curve: spline against log-linear fits, written to bench/curve.json.

On synthetic Englands of 1,644 LSOAs (``england.simulate(seed, scale=0.05, curvature=k)``)
with a curved (k = -0.3, +0.2) or log-linear (k = 0) truth, and on the default England
(``data/neighbourhoods.parquet``, log-linear truth), referrals, negative binomial: each form
fitted with 2 chains x 300 draws after 300 tuning (nutpie), compared by PSIS-LOO
(``elpd_diff = elpd(spline) - elpd(log-linear)``), and the spline's 95% local gradients
checked against the true ones at the ten income deciles; the default England's spline is
also fitted with the package's default sampling (``sg.fit(table, "referrals",
curve="spline")``: sampling to the target, R-hat <= 1.01 and ESS >= 400, 4 chains,
``target_accept`` 0.8). ``docs/curve.md`` reads its numbers from the file.

Run from the repository root (about ten minutes on two idle cores)::

    PYTHONPATH=src .venv/bin/python bench/curve.py

or one part at a time (``runs``, ``england``, ``default``; each is merged into the file)::

    PYTHONPATH=src .venv/bin/python bench/curve.py default
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import arviz_stats
import numpy as np

import socialgradient.api as sg
from socialgradient.data import schema
from socialgradient.data.synthetic import england
from socialgradient.results import compare, curve
from socialgradient.results.summaries import summary
from socialgradient.spec import Spec

OUT = Path(__file__).with_name("curve.json")
RUNS = ((-0.3, 3), (0.0, 3), (0.2, 3), (-0.3, 5), (0.0, 5))
SHORT = {"draws": 300, "tune": 300, "chains": 2, "progressbar": False}


def _compare(table, truth: dict) -> dict:
    """Fit both forms to ``table``'s referrals and compare them against ``truth``."""
    fits, seconds = {}, {}
    for form in ("spline", "log-linear"):
        start = time.perf_counter()
        fits[form] = sg.fit(table, Spec("referrals", curve=form), **SHORT)
        seconds[form] = round(time.perf_counter() - start, 1)
    result = compare.compare(fits["spline"], fits["log-linear"], names=("spline", "log-linear"))
    s = summary(fits["spline"])
    if "curve" in truth:
        true = [t["gradient"] for t in truth["curve"]["local_gradients"]]
    else:
        true = [float(np.exp(truth["b_w"]))] * 10
    flat = curve.summary(fits["log-linear"])["local_gradients"]
    rows = s["curve"]["local_gradients"]
    return {
        "n_lsoa": len(table),
        "seconds": seconds,
        "elpd_diff": result["elpd_diff"],
        "se": result["se"],
        "z": result["z"],
        "preferred": result["preferred"] or "neither",
        "b_w": {k: float(v["posterior"]["b_w"].median()) for k, v in fits.items()},
        "b_w_true": truth["b_w"],
        "b_w_summary_true": truth.get("curve", {}).get("b_w_summary", truth["b_w"]),
        "curve_sd": s["curve"]["curve_sd"],
        "verdict": s["diagnostics"]["verdict"],
        "reasons": s["diagnostics"]["reasons"],
        "divergences": s["diagnostics"]["divergences"],
        "covered": int(sum(r["lo95"] <= t <= r["hi95"] for r, t in zip(rows, true, strict=True))),
        "loglinear_covered": int(
            sum(r["lo95"] <= t <= r["hi95"] for r, t in zip(flat, true, strict=True))
        ),
        "deciles": [
            {"true": t, **{k: r[k] for k in ("decile", "income", "median", "lo95", "hi95")}}
            for r, t in zip(rows, true, strict=True)
        ],
    }


def _default(table, truth: dict) -> dict:
    """Fit the spline to ``table``'s referrals with the package's default sampling."""
    start = time.perf_counter()
    tree = sg.fit(table, "referrals", curve="spline", progressbar=False)
    seconds = round(time.perf_counter() - start, 1)
    s = summary(tree)
    d = s["diagnostics"]
    true = float(np.exp(truth["b_w"]))
    rows = s["curve"]["local_gradients"]
    return {
        "seconds": seconds,
        "draws_per_chain": int(tree["posterior"].sizes["draw"]),
        "chains": int(tree["posterior"].sizes["chain"]),
        "verdict": d["verdict"],
        "reasons": d["reasons"],
        "divergences": d["divergences"],
        "rhat_max": d["rhat_max"],
        "ess_bulk_min": d["ess_bulk_min"],
        "ess_tail_min": d["ess_tail_min"],
        "ess_curve_sd": _ess(tree["posterior"]["curve_sd"]),
        "b_w": float(tree["posterior"]["b_w"].median()),
        "curve_sd": s["curve"]["curve_sd"],
        "true_gradient": true,
        "covered": int(sum(r["lo95"] <= true <= r["hi95"] for r in rows)),
        "deciles": [{k: r[k] for k in ("decile", "median", "lo95", "hi95")} for r in rows],
    }


def _ess(draws) -> dict:
    """Return the bulk and tail ESS of one scalar's draws (dims chain, draw)."""
    return {m: float(arviz_stats.ess(draws, method=m)) for m in ("bulk", "tail")}


def main(parts: list[str]) -> None:
    """Run the named parts (``runs``, ``england``, ``default``; all by default) into :data:`OUT`."""
    warnings.filterwarnings("ignore")
    parts = parts or ["runs", "england", "default"]
    out: dict = json.loads(OUT.read_text()) if OUT.exists() else {}
    out["settings"] = "2 chains x 300 draws after 300 tuning, nutpie"
    if "runs" in parts:
        out["runs"] = []
        for kappa, seed in RUNS:
            syn = england.simulate(seed=seed, scale=0.05, curvature=kappa)
            one = _compare(syn.table, syn.truth["thresholds"]["referrals"])
            out["runs"].append({"curvature": kappa, "seed": seed, **one})
            print(kappa, seed, one["elpd_diff"], one["se"], one["verdict"], flush=True)
    table = schema.read_table("data/neighbourhoods.parquet")
    truth = json.loads(Path("data/truth.json").read_text())["thresholds"]["referrals"]
    if "england" in parts:
        out["england"] = _compare(table, truth)
    if "default" in parts:
        out["england_default_sampling"] = _default(table, truth)
    # another part may have written the file meanwhile: merge into its latest content
    latest = json.loads(OUT.read_text()) if OUT.exists() else {}
    latest.update({k: v for k, v in out.items() if k == "settings" or _ran(k, parts)})
    OUT.write_text(json.dumps(latest, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


def _ran(key: str, parts: list[str]) -> bool:
    """Whether ``key`` of the file was written by one of ``parts``."""
    return {"runs": "runs", "england": "england", "england_default_sampling": "default"}.get(
        key, ""
    ) in parts


if __name__ == "__main__":
    main(sys.argv[1:])
