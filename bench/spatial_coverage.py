"""Coverage of the within-LA gradient b_w with and without BYM2 on small spatial tables.

Each replicate: ``lattice_table(12, 12, las=4, sd=0.5, rho=0.9, b_w=0.3,
clustered_income=0.08, seed=r)`` (income deprivation clustered in space, a BYM2 field
independent of it), fitted by the package (Poisson; LKJ LA effects) with and without
``spatial = "bym2"`` (2 chains x 200 + 200 draws). One JSON line per replicate and model:
b_w's 95% interval, whether it covers 0.3, its width::

    PYTHONPATH=src python bench/spatial_coverage.py --replicates 50 --out coverage.jsonl

``--family negbin`` fits only the non-spatial model: BYM2 is refused with a family that has
its own extra-Poisson variation (the negative binomial's phi and BYM2's iid part are the same
variation with one row per LSOA), so ``spatial_coverage.md``'s "negative binomial, BYM2" row,
made before that refusal, cannot be made again.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def fit_both(table, pairs, *, family, draws, seed, truth, priors=None):
    """Fit ``table`` without and with BYM2 on ``pairs``; yield (kind, fit, JSON line) each.

    2 chains x ``draws`` + ``draws``; the line holds b_w's median and 95% interval, whether it
    covers ``truth``, its width, the Moran check's p, the divergences and the seconds.
    """
    import numpy as np

    import socialgradient.api as sg

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.csv"
        pairs.to_csv(path, index=False)
        for kind in ("", "bym2") if family == "poisson" else ("",):
            start = time.perf_counter()
            tree = sg.fit(
                table,
                "referrals",
                family=family,
                spatial=kind,
                neighbours=str(path),
                draws=draws,
                tune=draws,
                chains=2,
                seed=seed,
                **({"priors": priors} if priors else {}),
                progressbar=False,
                pointwise=False,
            )
            lo, mid, hi = np.quantile(tree["posterior"]["b_w"].values, [0.025, 0.5, 0.975])
            line = {
                "replicate": seed,
                "family": family,
                "spatial": kind or "none",
                "b_w": [round(float(v), 4) for v in (mid, lo, hi)],
                "covers": bool(lo <= truth <= hi),
                "width": round(float(hi - lo), 4),
                "moran_p": float(sg.ppc(tree)["spatial"]["p_value"].values[0]),
                "divergences": int(tree["sample_stats"]["diverging"].values.sum()),
                "seconds": round(time.perf_counter() - start, 1),
            }
            yield kind, tree, line


def record(line: dict, out: str) -> None:
    """Print one JSON line, and append it to ``out`` when given."""
    print(json.dumps(line), flush=True)
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def main() -> int:
    from socialgradient.data.synthetic.spatial import lattice_table

    p = argparse.ArgumentParser()
    p.add_argument("--replicates", type=int, default=20)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--out", default="")
    p.add_argument("--family", default="poisson", choices=["negbin", "poisson"])
    a = p.parse_args()
    truth = 0.3
    for r in range(a.start, a.start + a.replicates):
        table, pairs, _ = lattice_table(
            12, 12, las=4, sd=0.5, rho=0.9, b_w=truth, clustered_income=0.08, seed=r
        )
        for _, _, line in fit_both(table, pairs, family=a.family, draws=200, seed=r, truth=truth):
            record(line, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
