"""A sparse table fitted with ``sg.fit``'s defaults (sampling to the target): does it PASS?

The synthetic England at ``SCALE`` with looked-after children at a rate of ``exp(A)`` per
child per year (the default England's is ``exp(-7.26)``), fitted with
``sg.fit(table, "looked_after")``; prints the table's sparsity, the time, the diagnostics and
the target's verdict as JSON. Results are recorded in ``bench/run_time.md``.

    PYTHONPATH=src .venv/bin/python bench/target_sparse.py -8.0 0.3
    PYTHONPATH=src .venv/bin/python bench/target_sparse.py -9.0 0.2
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import socialgradient.api as sg
from socialgradient.data.synthetic import england


def main() -> None:
    """Simulate the sparse table, fit it with the defaults and print what came out."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=float, help="log rate per child per year at w = 0")
    p.add_argument("scale", type=float, help="LSOAs per LA multiplier")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--tune", type=int, help="tuning draws per chain (default: the package's)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    truth = dict(england.PARAMETERS["looked_after"], a=args.a)
    syn = england.simulate(seed=args.seed, scale=args.scale, parameters={"looked_after": truth})
    y = syn.table["looked_after"]
    start = time.perf_counter()
    tune = {"tune": args.tune} if args.tune else {}
    tree = sg.fit(syn.table, "looked_after", progressbar=False, **tune)
    wall = time.perf_counter() - start
    d = sg.diagnose(tree)
    keys = ("verdict", "reasons", "rhat_max", "ess_bulk_min", "ess_tail_min", "divergences")
    print(
        json.dumps(
            {
                "a": args.a,
                "tune": json.loads(tree.attrs["spec"])["sampling"]["tune"],
                "scale": args.scale,
                "lsoas": len(y),
                "events_per_lsoa": round(float(y.mean()), 3),
                "zeros": round(float((y == 0).mean()), 3),
                "events": int(y.sum()),
                "wall_s": round(wall, 1),
                "compile_s": round(float(tree.attrs["compile_seconds"]), 1),
                "sampling_s": round(float(tree.attrs["sampling_seconds"]), 1),
                **{k: d[k] for k in keys},
                "worst": {"rhat": d["worst_rhat"], "ess": d["worst_ess"]},
                "sampling": {k: d["sampling"][k] for k in ("draws", "stopped_by", "checked")},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
