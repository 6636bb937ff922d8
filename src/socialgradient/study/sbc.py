"""Coverage and simulation-based calibration (SBC) over calibration replicates.

The ranks, their uniformity and the aggregate of every replicate, for
:mod:`socialgradient.study.calibrate`; the report written from the aggregate
(``calibration.json``, ``calibration.md``, ``calibration_sbc.png``) is
:mod:`socialgradient.study.calibration_report`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special, stats

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
        "a": (round(special.logit(0.22) - 0.3, 4), round(special.logit(0.22) + 0.3, 4), "uniform"),
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


def sbc_rank(draws: np.ndarray, truth: float, n: int = SBC_DRAWS) -> int:
    """Return the SBC rank of ``truth`` among ``n`` thinned draws.

    Rank of ``truth`` among ``n`` draws thinned evenly from ``draws`` (all chains, in
    order): the number below it, 0..n.
    """
    flat = np.asarray(draws, dtype=float).ravel()
    if len(flat) < n:
        raise ValueError(f"SBC needs at least {n} posterior draws, got {len(flat)}")
    keep = np.linspace(0, len(flat) - 1, n).round().astype(int)
    return int((flat[keep] < truth).sum())


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


def proportion(hits, n: int | None = None) -> dict:
    """``{"k", "n", "p", "se"}`` of boolean ``hits``: the share and its binomial SE."""
    hits = np.asarray(hits, dtype=bool).ravel()
    n = hits.size
    k = int(hits.sum())
    p = k / n if n else float("nan")
    se = math.sqrt(p * (1 - p) / n) if n else float("nan")
    return {"k": k, "n": n, "p": p, "se": se}


def rank_histogram(
    ranks, draws: int = SBC_DRAWS, bins: int = BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Bin ``ranks`` and return the counts with those a uniform rank would give.

    Counts of ``ranks`` (0..``draws``) in ``bins`` bins of consecutive ranks, and the
    counts a uniform rank would give (equal when ``draws + 1`` divides by ``bins``).
    """
    ranks = np.asarray(ranks, dtype=int)
    if ranks.size and (ranks.min() < 0 or ranks.max() > draws):
        raise ValueError(f"ranks must lie in 0..{draws}")
    which = np.arange(draws + 1) * bins // (draws + 1)  # bin of each possible rank
    counts = np.bincount(which[ranks], minlength=bins)
    expected = ranks.size * np.bincount(which, minlength=bins) / (draws + 1)
    return counts, expected


def uniformity(ranks, draws: int = SBC_DRAWS, bins: int = BINS) -> dict:
    """Test that ``ranks`` are uniform (chi-square over ``bins`` bins).

    Chi-square test that ``ranks`` are uniform on 0..``draws``, over ``bins`` bins:
    ``{"counts", "expected", "chi2", "df", "p_value"}`` (NaN with no ranks).
    """
    counts, expected = rank_histogram(ranks, draws, bins)
    if counts.sum() == 0:
        chi2, p = float("nan"), float("nan")
    else:
        chi2, p = stats.chisquare(counts, expected)
    return {
        "counts": counts.tolist(),
        "expected": expected.tolist(),
        "chi2": float(chi2),
        "df": bins - 1,
        "p_value": float(p),
    }


def aggregate(results: list[dict], bins: int = BINS) -> dict:
    """Aggregate coverage, SBC uniformity and diagnostics over replicate results.

    Coverage, SBC uniformity and diagnostics over replicate results (as
    :func:`replicate` returns them). Nothing is dropped: FAIL verdicts are counted and listed.
    """
    out: dict[str, Any] = {"replicates": len(results), "seeds": [r["seed"] for r in results]}
    national: dict[str, dict] = {}
    pooled: dict[int, list[bool]] = {level: [] for level in LEVELS}
    for key in NATIONAL:
        national[key] = {}
        for level in LEVELS:
            hits = [r["national"][key][f"covered{level}"] for r in results]
            national[key][f"coverage{level}"] = proportion(hits)
            pooled[level] += hits
    out["national"] = national
    out["national_pooled"] = {f"coverage{level}": proportion(pooled[level]) for level in LEVELS}
    out["per_la"] = {}
    for level in LEVELS:
        hits = [h for r in results for h in r["la"][f"covered{level}"]]
        per_rep = [float(np.mean(r["la"][f"covered{level}"])) for r in results]
        out["per_la"][f"coverage{level}"] = proportion(hits) | {
            "replicate_min": min(per_rep, default=float("nan")),
            "replicate_max": max(per_rep, default=float("nan")),
        }
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
        "fail": [
            {"seed": r["seed"], "reasons": r["diagnostics"].get("reasons", [])}
            for r in results
            if r["diagnostics"]["verdict"] == "FAIL"
        ],
        "warn": [
            {"seed": r["seed"], "reasons": r["diagnostics"].get("reasons", [])}
            for r in results
            if r["diagnostics"]["verdict"] == "WARN"
        ],
        "rhat_max": max(values("rhat_max"), default=None),
        "ess_bulk_min": min(values("ess_bulk_min"), default=None),
        "national_rhat_max": max(values("national_rhat_max"), default=None),
        "national_ess_bulk_min": min(values("national_ess_bulk_min"), default=None),
        "divergences": int(sum(values("divergences"))),
        "replicates_with_divergences": sum(1 for d in diag if d.get("divergences")),
    }
    out["seconds"] = {
        "median": float(np.median(seconds)) if seconds else None,
        "max": max(seconds, default=None),
        "sum": float(sum(seconds)),
    }
    return _plain(out)
