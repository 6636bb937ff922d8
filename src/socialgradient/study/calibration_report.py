"""The calibration study's report.

``calibration.json`` (every model's aggregate, with the definitions, ranges and study values),
``calibration.md``, the SBC rank histograms ``calibration_sbc.png`` and the terminal headline,
from the aggregates of :mod:`socialgradient.study.sbc`, for
:mod:`socialgradient.study.calibrate`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

from socialgradient.study.sbc import LEVELS, RANGES, SBC_PARAMETERS, STUDY, _plain
from socialgradient.util.files import atomic_write


def write(out_dir: Path, model: str, agg: dict) -> dict[str, Path]:
    """Write ``calibration.json``, ``calibration.md`` and ``calibration_sbc.png``.

    Put ``agg`` under ``model`` in ``calibration.json`` (other models' sections kept),
    and rewrite ``calibration.md`` and ``calibration_sbc.png`` from all of it.
    """
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
    """Return the report ``calibration.md`` of ``calibration.json``'s content."""
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
    """Plot the SBC rank histograms of every model.

    Rank histograms: one row per model, one panel per SBC parameter, with the uniform
    count and its pointwise 95% binomial band.
    """
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
    """Return a few lines for the terminal."""
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
