"""Does the model language cost the default England fit anything? Old vs new, one run.

    .venv/bin/python bench/language.py OLD_SRC [--runs 2]

``OLD_SRC`` is the ``src`` folder of a checkout of the commit before the model language
(0808199: ``git worktree add /tmp/old_sg 0808199`` then ``/tmp/old_sg/src``). Each run fits
the negative-binomial national model of referrals to the default England (4 x 1,000 +
1,000 draws, nutpie, seed 2021) in a fresh process, alternating old and new so that machine
load affects both alike, and reports compile and sampling seconds, R-hat, ESS and the
headline gradient. Results: ``bench/language.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = """
import json, time
import numpy as np, arviz as az
import socialgradient.api as sg
from socialgradient.results import checks
t = sg.default_data()
start = time.perf_counter()
tree = sg.fit(t, "referrals", draws=1000, tune=1000, progressbar=False)  # old default; new tunes 500
wall = time.perf_counter() - start
d = checks.diagnose(tree)
g = np.exp(tree["posterior"]["b_w"].values.ravel())
print(json.dumps({"wall": wall, "compile": tree.attrs["compile_seconds"],
                  "sampling": tree.attrs["sampling_seconds"], "rhat_max": d["rhat_max"],
                  "ess_bulk_min": d["ess_bulk_min"], "divergences": d["divergences"],
                  "verdict": d["verdict"], "gradient": float(np.median(g)),
                  "gradient_lo95": float(np.quantile(g, 0.025)),
                  "gradient_hi95": float(np.quantile(g, 0.975))}))
"""


def run(src: str) -> dict:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", WORKER],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old_src")
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args()
    results = {"old": [], "new": []}
    for _ in range(args.runs):
        for label, src in (("old", args.old_src), ("new", str(ROOT / "src"))):
            results[label].append(run(src))
            print(label, results[label][-1], flush=True)
    lines = [
        "| version | run | compile s | sampling s | R-hat max | bulk ESS min | "
        "divergences | verdict | gradient [95% ETI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, rows in results.items():
        for i, r in enumerate(rows):
            lines.append(
                f"| {label} | {i + 1} | {r['compile']:.1f} | {r['sampling']:.1f} | "
                f"{r['rhat_max']:.4f} | {r['ess_bulk_min']:.0f} | {r['divergences']} | "
                f"{r['verdict']} | {r['gradient']:.3f} [{r['gradient_lo95']:.3f}, "
                f"{r['gradient_hi95']:.3f}] |"
            )
    print("\n".join(lines))
    (ROOT / "bench" / "language.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
