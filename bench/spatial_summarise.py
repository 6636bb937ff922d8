"""Summarise the spatial benchmarks' JSON lines into the files the docs read.

``python bench/spatial_summarise.py ENGLAND.jsonl COVERAGE.jsonl`` writes
``bench/spatial_england.json`` (each fit's line, by ``none`` / ``bym2``) and
``bench/spatial_coverage.json`` (per model, ``none``/``bym2`` for the negative binomial and
``poisson_none``/``poisson_bym2``: replicates, coverage of b_w's 95% interval,
mean width, share of replicates whose Moran's I check has p < 0.05), and copies the lines
next to them (``bench/spatial_england.jsonl``, ``bench/spatial_coverage.jsonl``).

``python bench/spatial_summarise.py --smooth SMOOTH.jsonl`` summarises the second design
(``bench/spatial_coverage_smooth.py``) into ``bench/spatial_coverage_smooth.json`` (per
model ``none``/``bym2``, replicates with both fits: coverage and its binomial SE, mean
width, bias of b_w's posterior median and its Monte Carlo SE, fits with divergences and
their total, Moran flags; for BYM2 the medians of ``spatial_sd``/``spatial_rho`` and how
often their 95% intervals cover the design's truth) and copies the lines to
``bench/spatial_coverage_smooth.jsonl`` (run with ``PYTHONPATH=src``: it redraws the
tables to find each field's realised SD within its LAs).

``python bench/spatial_summarise.py --no-field NOFIELD.jsonl`` adds the lines of
``bench/spatial_fit_england.py --no-field --save DIR`` (the default England, no field: the
two fits and their LOO line) to ``bench/spatial_england.jsonl``, replacing any earlier
no-field lines, and writes ``bench/spatial_england.json`` again with them under
``no_field`` (by ``none`` / ``bym2`` / ``loo_bym2_minus_none``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _england(lines: list[dict]) -> None:
    """Write ``spatial_england.jsonl`` and ``.json`` (no-field lines under ``no_field``)."""
    (HERE / "spatial_england.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    by: dict = {x["spatial"]: x for x in lines if x.get("field", True)}
    plain = {x["spatial"]: x for x in lines if not x.get("field", True)}
    if plain:
        by["no_field"] = plain
    (HERE / "spatial_england.json").write_text(json.dumps(by, indent=1) + "\n")


def no_field(lines: str) -> int:
    """Add the no-field lines to the England files (see the module's docstring)."""
    new = [json.loads(x) for x in Path(lines).read_text().splitlines() if x.strip()]
    for x in new:
        x["field"] = False  # the LOO line has no field key of its own
    old = HERE / "spatial_england.jsonl"
    kept = [json.loads(x) for x in old.read_text().splitlines() if x.strip()]
    _england([x for x in kept if x.get("field", True)] + new)
    print(json.dumps(new))
    return 0


def main(england: str, coverage: str) -> int:
    lines = [json.loads(x) for x in Path(england).read_text().splitlines() if x.strip()]
    _england(lines)
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


def _sizing(
    rows: list[dict], truth: float, n: int = 8, a: float = 1.3, b: float = 1.7, c: float = 1.1
) -> dict:
    """How often ``tests/test_spatial_coverage.py``'s slow test would fail on the study.

    Resamples ``n`` of the study's replicates (with replacement, 20,000 times) and counts
    the resamples where the non-spatial z-scores' root mean square is <= ``a``, BYM2's is
    >= ``b`` or the mean widths' ratio is <= ``c``; and, for reference, how often ``n``
    standard normal z-scores (calibrated intervals) have a root mean square > ``a``.
    """
    import numpy as np

    pick = {
        k: sorted((r for r in rows if r["spatial"] == k), key=lambda r: r["replicate"])
        for k in ("none", "bym2")
    }
    z = {
        k: np.array([(r["b_w"][0] - truth) / (r["width"] / 3.92) for r in v])
        for k, v in pick.items()
    }
    w = {k: np.array([r["width"] for r in v]) for k, v in pick.items()}
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(z["none"]), (20000, n))
    rms = {k: np.sqrt(np.mean(v[idx] ** 2, axis=1)) for k, v in z.items()}
    ratio = w["bym2"][idx].mean(axis=1) / w["none"][idx].mean(axis=1)
    fail = (rms["none"] <= a) | (rms["bym2"] >= b) | (ratio <= c)
    normal = np.sqrt(np.mean(rng.standard_normal((20000, n)) ** 2, axis=1))
    return {
        "replicates": n,
        "none_rms_above": a,
        "bym2_rms_below": b,
        "width_ratio_above": c,
        "resampled_failure_rate": float(fail.mean()),
        "calibrated_rms_above_a": float((normal > a).mean()),
    }


def _realised_sd_covered(rows: list[dict]) -> float:
    """Share of BYM2 fits whose ``spatial_sd`` interval covers their own field's SD.

    Each replicate's table is drawn again (``lattice_table`` with the design and seed) and
    its field's SD around its LA means taken: what ``spatial_sd`` estimates once the LA
    intercepts have absorbed the field's LA means (``docs/spatial.md``), and one draw's
    realised value rather than the design's ``sd``.
    """
    import pandas as pd

    from socialgradient.data.synthetic.spatial import lattice_table

    hits = 0
    for r in rows:
        d = r["design"]
        table, _, truth = lattice_table(
            d["size"],
            d["size"],
            las=d["las"],
            sd=d["sd"],
            rho=d["rho"],
            b_w=0.3,
            clustered_income=d["clustered_income"],
            income_noise=d["income_noise"],
            seed=r["replicate"],
        )
        e = pd.Series(truth["effect"])
        within = float((e - e.groupby(table["la"]).transform("mean")).std())
        hits += r["spatial_sd"][1] <= within <= r["spatial_sd"][2]
    return hits / len(rows)


def smooth(lines: str, truth: float = 0.3) -> int:
    """Summarise the second design's lines (see the module's docstring)."""
    rows = [json.loads(x) for x in Path(lines).read_text().splitlines() if x.strip()]
    done = {r["replicate"] for r in rows if r["spatial"] == "bym2"}
    rows = [r for r in rows if r["replicate"] in done]  # both fits done
    (HERE / "spatial_coverage_smooth.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    out: dict = {}
    for kind in ("none", "bym2"):
        mine = [r for r in rows if r["spatial"] == kind]
        n = len(mine)
        if not n:
            continue
        cover = sum(r["covers"] for r in mine) / n
        errors = [r["b_w"][0] - truth for r in mine]
        bias = sum(errors) / n
        spread = (sum((e - bias) ** 2 for e in errors) / max(n - 1, 1)) ** 0.5
        entry = {
            "replicates": n,
            "coverage": cover,
            "coverage_se": (cover * (1 - cover) / n) ** 0.5,
            "misses": n - sum(r["covers"] for r in mine),
            "width": sum(r["width"] for r in mine) / n,
            "bias": bias,
            "bias_se": spread / n**0.5,
            "sd_of_median": spread,
            "moran_flagged": sum(r["moran_p"] < 0.05 for r in mine) / n,
            "divergent_fits": sum(r["divergences"] > 0 for r in mine),
            "divergences": sum(r["divergences"] for r in mine),
            "design": mine[0]["design"],
        }
        entry["z_rms"] = (
            sum(((r["b_w"][0] - truth) / (r["width"] / 3.92)) ** 2 for r in mine) / n
        ) ** 0.5
        if kind == "bym2":
            for name, key in (("spatial_sd", "sd"), ("spatial_rho", "rho")):
                true = mine[0]["design"][key]
                entry[f"{key}_median"] = sorted(r[name][0] for r in mine)[n // 2]
                entry[f"{key}_covered"] = sum(r[name][1] <= true <= r[name][2] for r in mine) / n
            entry["sd_realised_covered"] = _realised_sd_covered(mine)
        out[kind] = entry
    out["test_sizing"] = _sizing(rows, truth)
    (HERE / "spatial_coverage_smooth.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--smooth":
        raise SystemExit(smooth(sys.argv[2]))
    if sys.argv[1] == "--no-field":
        raise SystemExit(no_field(sys.argv[2]))
    raise SystemExit(main(*sys.argv[1:3]))
