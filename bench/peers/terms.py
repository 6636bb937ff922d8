"""Recovery and peer agreement for the model-language terms: moderators and the binomial.

    .venv/bin/python bench/peers/terms.py [--out bench/peers]      (needs Rscript + glmmTMB:
                                                                   bench/peers/install.sh)

Each case draws a table from the model at a stated truth (``socialgradient.model.forward``) on
real-shaped geography (LSOAs of the default England with its ``rural`` flag, the LA table's
``spend_per_child``), fits it with socialgradient's default spec (4 x 1,000 + 1,000 draws)
and with glmmTMB (Laplace, the same formula, the same centring), and reports for each
parameter: the truth, our posterior median and 95% ETI, whether it covers the truth, and
glmmTMB's estimate in units of our posterior SD. Writes ``terms.json`` and ``terms.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import socialgradient.api as sg
from socialgradient.data.deprivation import decompose
from socialgradient.model import forward

ROOT = Path(__file__).resolve().parents[2]
GLMMTMB = {
    "(Intercept)": "a",
    "w": "b_w",
    "m_c": "b_b",
    "w:m_c": "b_x",
    "z": "rural.intercept",
    "w:z": "rural.slope",
    "z:w": "rural.slope",
    "v": "spend_per_child.intercept",
    "w:v": "spend_per_child.slope",
    "v:w": "spend_per_child.slope",
}


def geography(n_la: int, per_la: int) -> pd.DataFrame:
    t = sg.default_data()
    las = t["la"].unique()[::2][:n_la]
    return t[t["la"].isin(las)].groupby("la").head(per_la).reset_index(drop=True)


def case(kind: str, seed: int = 1):
    """(table, spec, truth by parameter name, columns for R) for ``kind``."""
    las = pd.read_parquet(ROOT / "data" / "las.parquet")
    g = geography(60, 80)
    if kind == "moderators":
        truth = forward.Truth(
            a=-4.2,
            moderators={"rural": (0.25, 0.15)},
            la_moderators={"spend_per_child": (0.0006, -0.0004)},
        )
        table, _ = forward.draw(g, truth, "negbin", outcome="y", la_table=las, seed=seed)
        spec = sg.Spec(
            "y",
            neighbourhood_moderators=("rural",),
            la_data=str(ROOT / "data" / "las.parquet"),
            la_moderators=("spend_per_child",),
        )
        values = {
            "rural.intercept": 0.25,
            "rural.slope": 0.15,
            "spend_per_child.intercept": 0.0006,
            "spend_per_child.slope": -0.0004,
        }
    else:
        rng = np.random.default_rng(seed)
        g = g.assign(trials=rng.poisson(g["children"] * 0.05) + 1)
        truth = forward.Truth(a=-1.5, b_w=0.12, b_b=0.05, b_x=-0.06, sigma_a=0.2, sigma_b=0.06)
        table, _ = forward.draw(g, truth, "binomial", outcome="y", trials="trials", seed=seed)
        spec = sg.Spec("y", family="binomial", trials="trials")
        values = {}
    values |= {"a": truth.a, "b_w": truth.b_w, "b_b": truth.b_b, "b_x": truth.b_x}
    d = decompose(table["income"], table["children"], table["la"])
    r = pd.DataFrame(
        {
            "la": table["la"],
            "y": table["y"],
            "children": table["children"],
            "w": d.w,
            "m_c": d.m_c[d.la_index],
        }
    )
    if kind == "moderators":
        weight = table["children"].to_numpy(float)
        z = table["rural"].to_numpy(float)
        r["z"] = z - np.average(z, weights=weight)
        v = las.set_index("la").loc[d.la, "spend_per_child"].to_numpy(float)
        la_children = np.bincount(d.la_index, weight)
        r["v"] = (v - np.average(v, weights=la_children))[d.la_index]
    else:
        r["trials"] = table["trials"]
    return table, spec, values, r, las


def ours(kind: str, table, spec, las) -> dict:
    start = time.perf_counter()
    tree = sg.fit(table, spec, progressbar=False, la_table=las if kind == "moderators" else None)
    wall = time.perf_counter() - start
    post = tree["posterior"]
    draws = {name: post[name].values.ravel() for name in ("a", "b_w", "b_b", "b_x")}
    if "moderator_effect" in post:
        for var, dim in (
            ("moderator_effect", "moderator"),
            ("la_moderator_effect", "la_moderator"),
        ):
            for m in post[dim].values:
                for e in ("intercept", "slope"):
                    draws[f"{m}.{e}"] = post[var].sel({dim: m, "effect": e}).values.ravel()
    d = sg.diagnose(tree)
    return {
        "draws": draws,
        "wall_seconds": wall,
        "diagnostics": {k: d[k] for k in ("verdict", "rhat_max", "ess_bulk_min", "divergences")},
    }


def peer(kind: str, r: pd.DataFrame) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        csv, out = Path(tmp) / "d.csv", Path(tmp) / "o.json"
        r.to_csv(csv, index=False)
        subprocess.run(
            ["Rscript", str(ROOT / "bench/peers/terms.R"), str(csv), kind, str(out)], check=True
        )
        return json.loads(out.read_text())


def compare(kind: str, seed: int = 1) -> dict:
    table, spec, truth, r, las = case(kind, seed)
    mine, theirs = ours(kind, table, spec, las), peer(kind, r)
    rows = []
    for term, estimate in theirs["estimate"].items():
        name = GLMMTMB[term]
        draws = mine["draws"][name]
        lo, med, hi = np.quantile(draws, [0.025, 0.5, 0.975])
        sd = float(np.std(draws))
        rows.append(
            {
                "parameter": name,
                "truth": truth[name],
                "median": float(med),
                "lo95": float(lo),
                "hi95": float(hi),
                "sd": sd,
                "covered": bool(lo <= truth[name] <= hi),
                "glmmtmb": float(estimate),
                "glmmtmb_se": float(theirs["se"][term]),
                "diff_in_sd": float((estimate - med) / sd),
            }
        )
    return {
        "kind": kind,
        "seed": seed,
        "n_rows": len(table),
        "n_la": int(table["la"].nunique()),
        "ours": {k: v for k, v in mine.items() if k != "draws"},
        "glmmtmb": {k: theirs[k] for k in ("wall_seconds", "converged", "glmmTMB")},
        "rows": rows,
    }


def markdown(results: list[dict]) -> str:
    lines = [
        "# Model-language terms: recovery and agreement with glmmTMB",
        "",
        "Made by `.venv/bin/python bench/peers/terms.py` (see its docstring). Our fit: "
        "default spec, 4 x 1,000 + 1,000 draws, nutpie; glmmTMB: Laplace, same formula "
        "and centring. `diff/sd` = (glmmTMB - our median) / our posterior SD.",
        "",
    ]
    for res in results:
        o = res["ours"]
        lines += [
            f"## {res['kind']} ({res['n_rows']:,} rows, {res['n_la']} LAs, seed {res['seed']})",
            "",
            f"Ours: {o['diagnostics']['verdict']}, R-hat max "
            f"{o['diagnostics']['rhat_max']:.4f}, bulk ESS min "
            f"{o['diagnostics']['ess_bulk_min']:.0f}, {o['diagnostics']['divergences']} "
            f"divergences, {o['wall_seconds']:.0f} s. glmmTMB "
            f"{res['glmmtmb']['glmmTMB']}: converged {res['glmmtmb']['converged']}, "
            f"{res['glmmtmb']['wall_seconds']:.1f} s.",
            "",
            "| parameter | truth | ours: median [95% ETI] | covered | glmmTMB (se) | diff/sd |",
            "|---|---|---|---|---|---|",
        ]
        for r in res["rows"]:
            lines.append(
                f"| {r['parameter']} | {r['truth']:.5g} | {r['median']:.5g} "
                f"[{r['lo95']:.5g}, {r['hi95']:.5g}] | {r['covered']} | "
                f"{r['glmmtmb']:.5g} ({r['glmmtmb_se']:.2g}) | {r['diff_in_sd']:+.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "peers")
    p.add_argument("--kinds", nargs="+", default=["moderators", "binomial"])
    args = p.parse_args(argv)
    results = [compare(kind) for kind in args.kinds]
    (args.out / "terms.json").write_text(json.dumps(results, indent=2))
    (args.out / "terms.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
