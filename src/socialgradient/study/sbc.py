"""Coverage and simulation-based calibration (SBC) over calibration replicates: the ranks,
their uniformity, the aggregate of every replicate, and the report it writes
(``calibration.json``, ``calibration.md``, ``sbc_ranks.png``) for
:mod:`socialgradient.study.calibrate`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy import special, stats

from socialgradient.util.files import atomic_write

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
    """Rank of ``truth`` among ``n`` draws thinned evenly from ``draws`` (all chains, in
    order): the number below it, 0..n."""
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
    """Counts of ``ranks`` (0..``draws``) in ``bins`` bins of consecutive ranks, and the
    counts a uniform rank would give (equal when ``draws + 1`` divides by ``bins``)."""
    ranks = np.asarray(ranks, dtype=int)
    if ranks.size and (ranks.min() < 0 or ranks.max() > draws):
        raise ValueError(f"ranks must lie in 0..{draws}")
    which = np.arange(draws + 1) * bins // (draws + 1)  # bin of each possible rank
    counts = np.bincount(which[ranks], minlength=bins)
    expected = ranks.size * np.bincount(which, minlength=bins) / (draws + 1)
    return counts, expected


def uniformity(ranks, draws: int = SBC_DRAWS, bins: int = BINS) -> dict:
    """Chi-square test that ``ranks`` are uniform on 0..``draws``, over ``bins`` bins:
    ``{"counts", "expected", "chi2", "df", "p_value"}`` (NaN with no ranks)."""
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
    """Coverage, SBC uniformity and diagnostics over replicate results (as
    :func:`replicate` returns them). Nothing is dropped: FAIL verdicts are counted and listed.
    """
    out = {"replicates": len(results), "seeds": [r["seed"] for r in results]}
    national, pooled = {}, {level: [] for level in LEVELS}
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


def write(out_dir: Path, model: str, agg: dict) -> dict[str, Path]:
    """Put ``agg`` under ``model`` in ``calibration.json`` (other models' sections kept),
    and rewrite ``calibration.md`` and ``calibration_sbc.png`` from all of it."""
    out_dir = Path(out_dir)
    path = out_dir / "calibration.json"
    try:
        whole = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        whole = {}
    if not isinstance(whole.get("models"), dict):
        whole = {"models": {}}
    whole["definitions"] = DEFINITIONS
    whole["ranges"] = {m: {k: list(v) for k, v in r.items()} for m, r in RANGES.items()}
    whole["study_values"] = STUDY
    whole["models"][model] = agg
    text = json.dumps(_plain(whole), indent=1, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline="\n"))
    md = markdown(whole)
    atomic_write(
        out_dir / "calibration.md",
        lambda tmp: Path(tmp).write_text(md, encoding="utf-8", newline="\n"),
    )
    fig = sbc_figure(whole)
    atomic_write(
        out_dir / "calibration_sbc.png", lambda tmp: fig.savefig(tmp, dpi=120, format="png")
    )
    return {
        "json": path,
        "markdown": out_dir / "calibration.md",
        "figure": out_dir / "calibration_sbc.png",
    }


DEFINITIONS = {
    "coverage95": "share of 95% equal-tailed intervals containing the truth; k of n, with "
    "binomial SE sqrt(p(1-p)/n) (intervals treated as independent)",
    "coverage80": "the same for 80% intervals",
    "national_pooled": "all national quantities of all replicates together",
    "per_la": "every LA's gradient exp(b_la) in every replicate, pooled; replicate_min/max "
    "the lowest and highest share in one replicate",
    "sbc": "rank of the truth among L posterior draws thinned evenly over all chains (0..L), "
    "histogram in bins of consecutive ranks, chi-square test of uniformity (df bins-1). "
    "Truths come from stated ranges around the study, not from the prior: see "
    "socialgradient.study.calibrate",
    "diagnostics": "verdicts of socialgradient.results.checks.diagnose; FAIL replicates are listed "
    "and kept in every coverage and rank",
}


LABELS = {
    "gradient_mean_la": "Gradient, averagely deprived LA",
    "gradient_less_deprived_la": "Gradient, LA 10 points less deprived",
    "gradient_more_deprived_la": "Gradient, LA 10 points more deprived",
    "between_la_gradient": "Between-LA gradient exp(b_b)",
    "contextual_effect": "Contextual effect b_b - b_w",
}


def _pct(c: dict) -> str:
    if not c["n"]:
        return "--"
    return f"{100 * c['p']:.1f}% ± {100 * c['se']:.1f} ({c['k']}/{c['n']})"


def markdown(whole: dict) -> str:
    """The report ``calibration.md`` of ``calibration.json``'s content."""
    lines = [
        "# Calibration study",
        "",
        "Written by `socialgradient calibrate` (socialgradient.study.calibrate). Coverage: "
        "share "
        "of equal-tailed intervals containing the truth, ± binomial SE, (k/n). SBC: ranks "
        "of the truth among thinned posterior draws; p-value of a chi-square test of "
        "uniformity.",
        "",
        "Truths are drawn from stated ranges around the study's values, not from the "
        "model's prior, so this is not simulation-based calibration in the strict sense: "
        "at England size the likelihood dominates the posterior and ranks should still be "
        "near uniform, but uniform ranks do not prove calibration over the whole prior.",
        "",
    ]
    for model, agg in whole["models"].items():
        cfg = agg["config"]
        lines += [
            f"## Model `{model}`",
            "",
            f"{agg['replicates']} replicates (seeds {cfg['seeds'][0]}..{cfg['seeds'][1]}"
            f"), scale {cfg['scale']:g}, {cfg['chains']} chains x {cfg['draws']} draws "
            f"after {cfg['tune']} tuning; SBC with L = {cfg['sbc_draws']}.",
            "",
        ]
        if agg.get("failed_tasks"):
            lines += [
                f"**{len(agg['failed_tasks'])} replicate task(s) raised an error** and "
                "are not in the results: "
                + ", ".join(f"seed {s}: {e}" for s, e in agg["failed_tasks"].items()),
                "",
            ]
        lines += [
            "Stated ranges of the truths (" + whole["study_values"][model] + "):",
            "",
            "| parameter | low | high | drawn |",
            "|---|---|---|---|",
        ]
        for name, (lo, hi, kind) in whole["ranges"][model].items():
            lines.append(f"| {name} | {lo:g} | {hi:g} | {kind} |")
        lines += [
            "",
            "### Coverage of the national quantities",
            "",
            "| quantity | 95% intervals | 80% intervals |",
            "|---|---|---|",
        ]
        for key, c in agg["national"].items():
            lines.append(f"| {LABELS[key]} | {_pct(c['coverage95'])} | {_pct(c['coverage80'])} |")
        p = agg["national_pooled"]
        lines.append(f"| **pooled** | {_pct(p['coverage95'])} | {_pct(p['coverage80'])} |")
        la = agg["per_la"]
        lines += [
            "",
            "### Coverage of the per-LA gradients (pooled over LAs and replicates)",
            "",
            "| intervals | coverage | lowest / highest replicate |",
            "|---|---|---|",
        ]
        for level in LEVELS:
            c = la[f"coverage{level}"]
            rng = (
                "--"
                if c["n"] == 0
                else f"{100 * c['replicate_min']:.1f}% / {100 * c['replicate_max']:.1f}%"
            )
            lines.append(f"| {level}% | {_pct(c)} | {rng} |")
        sbc = agg["sbc"]
        lines += [
            "",
            f"### SBC ranks ({sbc['bins']} bins of ranks 0..{sbc['draws']})",
            "",
            "| parameter | counts per bin | chi-square (df) | p-value |",
            "|---|---|---|---|",
        ]
        for name, s in sbc["parameters"].items():
            chi2 = "--" if s["chi2"] is None else f"{s['chi2']:.1f} ({s['df']})"
            pv = "--" if s["p_value"] is None else f"{s['p_value']:.3f}"
            lines.append(f"| {name} | {' '.join(str(c) for c in s['counts'])} | {chi2} | {pv} |")
        if agg["replicates"] < 5 * sbc["bins"]:
            lines += [
                "",
                f"(Fewer than {5 * sbc['bins']} replicates: under 5 expected per "
                "bin, the chi-square p-values are rough.)",
            ]
        d = agg["diagnostics"]
        v = d["verdicts"]
        lines += [
            "",
            "### Diagnostics",
            "",
            f"Verdicts: {v['PASS']} PASS, {v['WARN']} WARN, {v['FAIL']} FAIL "
            "(all kept above). "
            f"Max R-hat {_num(d['rhat_max'], 3)}, min bulk ESS "
            f"{_num(d['ess_bulk_min'], 0)} over all parameters (LA effects included); "
            f"national quantities: max R-hat {_num(d['national_rhat_max'], 3)}, min bulk "
            f"ESS {_num(d['national_ess_bulk_min'], 0)}. Divergences: "
            f"{d['divergences']} in {d['replicates_with_divergences']} replicate(s).",
            "",
            f"Wall time per replicate: median {_num(agg['seconds']['median'], 0)} s, "
            f"max {_num(agg['seconds']['max'], 0)} s.",
            "",
        ]
        if d["fail"]:
            lines += ["**Replicates with a FAIL verdict** (kept in every result above):", ""]
            lines += [f"- seed {f['seed']}: {'; '.join(f['reasons'])}" for f in d["fail"]]
            lines.append("")
    lines += ["![SBC rank histograms](calibration_sbc.png)", ""]
    return "\n".join(lines)


def _num(v, digits: int) -> str:
    return "--" if v is None else f"{v:.{digits}f}"


def sbc_figure(whole: dict):
    """Rank histograms: one row per model, one panel per SBC parameter, with the uniform
    count and its pointwise 95% binomial band."""
    from matplotlib.figure import Figure

    models = list(whole["models"])
    fig = Figure(
        figsize=(2.4 * len(SBC_PARAMETERS), 2.2 * max(1, len(models)) + 0.4), layout="constrained"
    )
    axes = fig.subplots(max(1, len(models)), len(SBC_PARAMETERS), squeeze=False)
    for row, model in zip(axes, models or [None], strict=True):
        for ax, name in zip(row, SBC_PARAMETERS, strict=True):
            if model is None:
                ax.set_axis_off()
                continue
            s = whole["models"][model]["sbc"]["parameters"][name]
            counts, expected = np.asarray(s["counts"]), np.asarray(s["expected"])
            n = int(counts.sum())
            x = np.arange(len(counts))
            if n:
                share = expected / n
                lo, hi = stats.binom.ppf(0.025, n, share), stats.binom.ppf(0.975, n, share)
                ax.fill_between(
                    np.r_[x - 0.5, x[-1] + 0.5],
                    np.r_[lo, lo[-1]],
                    np.r_[hi, hi[-1]],
                    step="post",
                    color="0.85",
                    lw=0,
                )
            ax.bar(x, counts, width=0.9, color="C0")
            ax.step(
                np.r_[x - 0.5, x[-1] + 0.5],
                np.r_[expected, expected[-1]],
                where="post",
                color="k",
                lw=1,
            )
            p = s["p_value"]
            ax.set_title(f"{model}: {name}" + ("" if p is None else f"  (p = {p:.2f})"), fontsize=9)
            ax.set_xticks([0, len(counts) - 1], ["low", "high"])
            ax.tick_params(labelsize=8)
    fig.suptitle("SBC ranks of the truth (grey: 95% band of a uniform rank)", fontsize=10)
    return fig


def headline(agg: dict, model: str) -> str:
    """A few lines for the terminal."""
    nat, la = agg["national_pooled"], agg["per_la"]
    pv = ", ".join(f"{k} p={_num(v['p_value'], 2)}" for k, v in agg["sbc"]["parameters"].items())
    v = agg["diagnostics"]["verdicts"]
    n = agg["replicates"]
    return (
        f"calibrate {model}: {n} replicate{'' if n == 1 else 's'}; national 95% coverage "
        f"{_pct(nat['coverage95'])}, 80% {_pct(nat['coverage80'])}; per-LA 95% "
        f"{_pct(la['coverage95'])}, 80% {_pct(la['coverage80'])}\n"
        f"SBC uniformity: {pv}\n"
        f"verdicts: {v['PASS']} PASS, {v['WARN']} WARN, {v['FAIL']} FAIL"
    )
