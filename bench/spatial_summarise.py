"""Summarise the spatial benchmarks' JSON lines into the files the docs read.

``python bench/spatial_summarise.py ENGLAND.jsonl COVERAGE.jsonl`` writes
``bench/spatial_england.json`` (each fit's line, by ``none`` / ``bym2``) and
``bench/spatial_coverage.json`` (per model, ``none``/``bym2`` for the negative binomial and
``poisson_none``/``poisson_bym2``: replicates, coverage of b_w's 95% interval,
mean width, share of replicates whose Moran's I check has p < 0.05), and copies the lines
next to them (``bench/spatial_england.jsonl``, ``bench/spatial_coverage.jsonl``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(england: str, coverage: str) -> int:
    lines = [json.loads(x) for x in Path(england).read_text().splitlines() if x.strip()]
    (HERE / "spatial_england.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    by = {x["spatial"]: x for x in lines}
    (HERE / "spatial_england.json").write_text(json.dumps(by, indent=1) + "\n")
    rows = [json.loads(x) for x in Path(coverage).read_text().splitlines() if x.strip()]
    for r in rows:
        r.setdefault("family", "negbin")
    done = {(r["family"], r["replicate"]) for r in rows if r["spatial"] == "bym2"}
    rows = [r for r in rows if (r["family"], r["replicate"]) in done]  # both fits done
    (HERE / "spatial_coverage.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    out = {}
    for family, kind in [(f, k) for f in ("negbin", "poisson") for k in ("none", "bym2")]:
        mine = [r for r in rows if r["spatial"] == kind and r["family"] == family]
        n = len(mine)
        if not n:
            continue
        out[kind if family == "negbin" else f"{family}_{kind}"] = {
            "replicates": n,
            "coverage": sum(r["covers"] for r in mine) / n,
            "width": sum(r["width"] for r in mine) / n,
            "moran_flagged": sum(r["moran_p"] < 0.05 for r in mine) / n,
            "divergent_fits": sum(r["divergences"] > 0 for r in mine),
        }
    (HERE / "spatial_coverage.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
