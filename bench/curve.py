"""Recovery of the deprivation curve: spline against log-linear fits, written to bench/curve.json.

On synthetic Englands of 1,644 LSOAs (``england.simulate(seed, scale=0.05, curvature=k)``)
with a curved (k = -0.3, +0.2) or log-linear (k = 0) truth, and on the default England
(``data/neighbourhoods.parquet``, log-linear truth), referrals, negative binomial: each form
fitted with 2 chains x 300 draws after 300 tuning (nutpie), compared by PSIS-LOO
(``elpd_diff = elpd(spline) - elpd(log-linear)``), and the spline's 95% local gradients
checked against the true ones at the ten income deciles; the default England is also fitted
with the spec's default sampling. ``docs/curve.md`` reads its numbers from the file.

Run from the repository root (about ten minutes on two cores)::

    PYTHONPATH=src .venv/bin/python bench/curve.py
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np

import socialgradient.api as sg
from socialgradient.data import schema
from socialgradient.data.synthetic import england
from socialgradient.model.data import NeighbourhoodData
from socialgradient.model.terms import Curve
from socialgradient.results import compare, curve
from socialgradient.results.summaries import summary
from socialgradient.spec import Spec

OUT = Path(__file__).with_name("curve.json")
RUNS = ((-0.3, 3), (0.0, 3), (0.2, 3), (-0.3, 5), (0.0, 5))
SHORT = {"draws": 300, "tune": 300, "chains": 2, "progressbar": False}


def _compare(table, truth: dict) -> dict:
    """Fit both forms to ``table``'s referrals and compare them against ``truth``."""
    spec = Spec("referrals", curve="spline")
    data = NeighbourhoodData.from_spec(table, "referrals", spec)
    strength = data.term(Curve).strength(data)
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
        "strength": round(strength, 2),
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
        "covered": int(sum(r["lo95"] <= t <= r["hi95"] for r, t in zip(rows, true, strict=True))),
        "loglinear_covered": int(
            sum(r["lo95"] <= t <= r["hi95"] for r, t in zip(flat, true, strict=True))
        ),
        "deciles": [
            {"true": t, **{k: r[k] for k in ("decile", "income", "median", "lo95", "hi95")}}
            for r, t in zip(rows, true, strict=True)
        ],
    }


def main() -> None:
    """Run every comparison and write :data:`OUT`."""
    warnings.filterwarnings("ignore")
    out: dict = {"settings": "2 chains x 300 draws after 300 tuning, nutpie", "runs": []}
    for kappa, seed in RUNS:
        syn = england.simulate(seed=seed, scale=0.05, curvature=kappa)
        one = _compare(syn.table, syn.truth["thresholds"]["referrals"])
        out["runs"].append({"curvature": kappa, "seed": seed, **one})
        print(kappa, seed, one["elpd_diff"], one["se"], one["verdict"], flush=True)
    table = schema.read_table("data/neighbourhoods.parquet")
    truth = json.loads(Path("data/truth.json").read_text())["thresholds"]["referrals"]
    out["england"] = _compare(table, truth)
    start = time.perf_counter()
    tree = sg.fit(table, Spec("referrals", curve="spline"), progressbar=False)
    s = summary(tree)
    out["england_default_sampling"] = {
        "seconds": round(time.perf_counter() - start, 1),
        "verdict": s["diagnostics"]["verdict"],
        "reasons": s["diagnostics"]["reasons"],
        "divergences": s["diagnostics"]["divergences"],
        "curve_sd": s["curve"]["curve_sd"],
    }
    OUT.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
