"""Outputs of a fit: ``summary.json``, ``la_gradients.csv``, ``posterior.nc``, figures.

Every file is written atomically (temporary file in the same folder, then ``os.replace``),
so a killed run never leaves a partial file that looks complete. Only model outputs and
LA-level totals are written: no LSOA- or child-level rows.

Intervals are equal-tailed (ETI), 95% and 80%.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import xarray as xr

from socialgradient import checks, disclosure, families, fit, gradients
from socialgradient.files import atomic_write

NATIONAL_KEYS = (
    "gradient_mean_la",
    "gradient_less_deprived_la",
    "gradient_more_deprived_la",
    "interaction",
    "between_la_gradient",
    "contextual_effect",
)


def _interval(da: xr.DataArray) -> dict:
    d = gradients.describe(da)
    return {
        "median": float(d["median"]),
        "ci95": [float(v) for v in d["eti95"].values],
        "ci80": [float(v) for v in d["eti80"].values],
    }


def summary(tree: xr.DataTree, diagnostics: dict | None = None) -> dict:
    """The headline quantities with medians and 95%/80% ETIs, and the diagnostics.

    Gradient keys are on the gradient-score scale (rate ratio per 10 percentage points);
    ``contextual_effect`` is on the log scale with ``p_negative`` = P(b_b - b_w < 0).
    """
    post = tree["posterior"].to_dataset()
    nat = gradients.national(post)
    out = {key: _interval(nat[key]) for key in NATIONAL_KEYS}
    out["contextual_effect"]["p_negative"] = float((nat["contextual_effect"] < 0).mean())
    corr = gradients.gradient_deprivation_corr(post, tree["constant_data"]["m_c"])
    out["gradient_deprivation_corr"] = _interval(corr)
    out["family"] = tree.attrs["family"]
    out["scale"] = families.get(tree.attrs["family"]).scale
    if "moderator_effect" in post or "la_moderator_effect" in post:
        out["moderators"] = moderator_summary(post)
    if "stratum_effect" in post:
        strata = gradients.stratum_gradient(post)
        out["stratum_gradient"] = {
            str(level): _interval(strata.sel(stratum=level)) for level in strata["stratum"].values
        }
    out["diagnostics"] = diagnostics if diagnostics is not None else checks.diagnose(tree)
    out["model"] = {
        "outcome": tree.attrs["outcome"],
        "family": tree.attrs["family"],
        "spec": json.loads(tree.attrs["spec"]),
        "spec_hash": tree.attrs["spec_hash"],
        "data_hash": tree.attrs["data_hash"],
        "n_lsoa": len(set(tree["constant_data"]["lsoa"].values)),
        "n_rows": int(tree["observed_data"][tree.attrs["outcome"]].size),
        "stratum": tree.attrs.get("stratum_name", ""),
        "n_la": int(tree["constant_data"].sizes["la"]),
        "national_mean_income": float(tree.attrs["x_bar"]) / 10,
        "compile_seconds": _number(tree.attrs.get("compile_seconds")),
        "sampling_seconds": _number(tree.attrs.get("sampling_seconds")),
    }
    const = tree["constant_data"].to_dataset()
    if "centred" in const:
        out["model"]["la_effects"] = {
            "centred": int(const["centred"].sum()),
            "noncentred": int((~const["centred"].astype(bool)).sum()),
        }
    scale = out["scale"]
    log = "log odds ratio" if scale == "odds ratio" else "log rate ratio"
    out["units"] = (
        f"gradient scores: {scale} per 10-percentage-point rise in the share of "
        f"income-deprived families; contextual_effect: {log}; moderators: {log} per unit "
        "of the moderator (intercept) and change in the log gradient per unit (slope); "
        "intervals: equal-tailed 95% (ci95) and 80% (ci80)"
    )
    return out


def moderator_summary(post: xr.Dataset) -> dict:
    """``{name: {"level", "intercept", "slope"}}`` for every moderator, on the log (logit)
    scale per unit of the moderator: ``intercept`` the main effect (neighbourhood) or the
    shift of the LA intercepts' mean (LA); ``slope`` the change in the log gradient."""
    out = {}
    for var, dim, level in (("moderator_effect", "moderator", "neighbourhood"),
                            ("la_moderator_effect", "la_moderator", "la")):
        if var not in post:
            continue
        for name in post[dim].values:
            draws = post[var].sel({dim: name})
            out[str(name)] = {
                "level": level,
                "intercept": _interval(draws.sel(effect="intercept")),
                "slope": _interval(draws.sel(effect="slope")),
            }
            out[str(name)]["slope"]["p_positive"] = float(
                (draws.sel(effect="slope") > 0).mean())
    return out


def _number(value) -> float | None:
    return None if value is None or math.isnan(float(value)) else float(value)


def la_gradients(tree: xr.DataTree) -> pd.DataFrame:
    """One row per LA: size, observed count and rate, gradient and rank (1 = steepest) with ETIs.

    Unprotected: :func:`write` passes it through the disclosure gate before it leaves.
    """
    t = gradients.la_table(tree)
    lower, upper = {"ci_bound": "lower"}, {"ci_bound": "upper"}
    frame = pd.DataFrame(
        {
            "la": t["la"].values.astype(str),
            "n_lsoa": t["n_lsoa"].values.astype(int),
            "children": t["children"].values,
            "cases": t["cases"].values.astype(int),
            "rate_per_10k": t["rate_per_10k"].values,
            "la_income": (float(tree.attrs["x_bar"]) + t["m_c"].values) / 10,
            "gradient_median": t["gradient_median"].values,
            "gradient_lo95": t["gradient_eti95"].sel(lower).values,
            "gradient_hi95": t["gradient_eti95"].sel(upper).values,
            "gradient_lo80": t["gradient_eti80"].sel(lower).values,
            "gradient_hi80": t["gradient_eti80"].sel(upper).values,
            "rank_median": t["rank_median"].values,
            "rank_lo95": t["rank_eti95"].sel(lower).values,
            "rank_hi95": t["rank_eti95"].sel(upper).values,
        }
    )
    return frame.round({"children": 1, "rate_per_10k": 2, "la_income": 4})


def headline(s: dict) -> str:
    """A plain-text table of the headline quantities and the verdict."""
    rows = [
        ("Gradient, averagely deprived LA", "gradient_mean_la"),
        ("Gradient, LA 10 points less deprived", "gradient_less_deprived_la"),
        ("Gradient, LA 10 points more deprived", "gradient_more_deprived_la"),
        ("Between-LA gradient exp(b_b)", "between_la_gradient"),
        ("Contextual effect b_b - b_w (log)", "contextual_effect"),
    ]
    lines = [f"{'quantity':<40}{'median':>8}  {'95% ETI':>17}  {'80% ETI':>17}"]
    for label, key in rows:
        v = s[key]
        lines.append(
            f"{label:<40}{v['median']:>8.3f}  [{v['ci95'][0]:6.3f}, {v['ci95'][1]:6.3f}]"
            f"  [{v['ci80'][0]:6.3f}, {v['ci80'][1]:6.3f}]"
        )
    lines.append(f"P(contextual effect < 0) = {s['contextual_effect']['p_negative']:.3f}")
    d = s["diagnostics"]
    lines.append(
        f"Diagnostics: {d['verdict']}  (R-hat max {d['rhat_max']:.4f}, bulk ESS min "
        f"{d['ess_bulk_min']:.0f}, tail ESS min {d['ess_tail_min']:.0f}, "
        f"divergences {d['divergences']}, E-BFMI min {d['ebfmi_min']:.2f})"
    )
    lines.extend(f"  - {reason}" for reason in d["reasons"])
    return "\n".join(lines)


def write(
    tree: xr.DataTree,
    out_dir: str | Path,
    extra: dict | None = None,
    rule: disclosure.Rule | None = None,
) -> dict[str, Path]:
    """Write summary.json (plus ``extra`` keys), la_gradients.csv, ppc.json, posterior.nc, PNGs.

    ``la_gradients.csv`` goes through the disclosure gate with ``rule`` (default ``Rule()``:
    LA counts under 10 suppressed, with their rates, plus secondary suppression); its log is
    ``disclosure_log.jsonl``. ``posterior.nc`` holds LSOA-level data (observed counts,
    replicates) for the analyst's own use inside the secure environment: it is not an
    output for release. Returns a mapping of output name to path.
    """
    from socialgradient import plots  # matplotlib only when writing figures

    out = Path(out_dir)
    s = summary(tree)
    s.update(extra or {})
    paths = {
        "summary": atomic_write(
            out / "summary.json", lambda p: Path(p).write_text(json.dumps(s, indent=2))
        ),
        # LA-level observed counts leave only through the disclosure gate; the national total
        # is published (summary, PPC), so small LA counts are also secondary-suppressed.
        "la_gradients": disclosure.write_table(
            la_gradients(tree),
            out / "la_gradients.csv",
            level="la",
            count_columns=["cases"],
            group_columns=["la"],
            derived={"rate_per_10k": "cases"},
            rule=rule or disclosure.Rule(),
        ),
        "ppc_json": atomic_write(out / "ppc.json", lambda p: Path(p).write_text(ppc_json(tree))),
    }
    fit.save(tree, out / "posterior.nc")
    paths["posterior"] = out / "posterior.nc"
    paths.update(plots.save_all(tree, out))
    return paths


def ppc_json(tree: xr.DataTree) -> str:
    """The posterior predictive checks by decile and statistic (LA level omitted) as JSON."""
    result = checks.ppc(tree)
    return json.dumps(
        {
            name: result[name].to_dataframe().reset_index().to_dict(orient="records")
            for name in ("decile", "statistic")
        },
        indent=2,
    )
