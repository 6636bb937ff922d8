"""Outputs of a fit, as one output set (:mod:`socialgradient.outputs`), whole or not at all.

``DIR/release/`` (safe to publish): ``summary.json`` (model outputs), ``la_gradients.csv``,
``ppc.json``, the figures and ``disclosure_log.jsonl``. Every observed count in it -- LA
totals, deprivation-decile totals, the national total -- is protected together by
:func:`socialgradient.disclosure.protect_partitions` (threshold, complementary suppression
such that the published totals cannot pin a hidden one to one value, rounding); rates and
PPC p-values derived from a hidden count are blank, and from a rounded count are computed
from the rounded value. Observed single-LSOA statistics (the largest count) and the
observed dispersion and share of zeros are not released (their replicated distributions and
p-values are). ``DIR/internal/`` (not for release): ``posterior.nc`` (the full tree) and
``ppc_full.json`` (unprotected checks), with a README.

Intervals are equal-tailed (ETI), 95% and 80%. Non-finite numbers are ``null`` in JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from socialgradient import (
    checks,
    disclosure,
    families,
    fit,
    gradients,
    la_outcome,
    outputs,
    parameterisation,
)
from socialgradient.progress import step
from socialgradient.summaries import (
    interval,
    moderator_summary,
    strata_summary,
    stratum_contrasts,
    trend_summary,
)

log = logging.getLogger(__name__)

NO_SPREAD = ("no within-LA spread of deprivation: the gradient is the model's prior "
             "pooling, not this LA's data; not ranked")
NATIONAL_KEYS = (
    "gradient_mean_la",
    "gradient_less_deprived_la",
    "gradient_more_deprived_la",
    "interaction",
    "between_la_gradient",
    "contextual_effect",
)


def summary(tree: xr.DataTree, diagnostics: dict | None = None) -> dict:
    """The headline quantities with medians and 95%/80% ETIs, and the diagnostics.

    Gradient keys are on the gradient-score scale (rate ratio per 10 percentage points);
    ``contextual_effect`` is on the log scale with ``p_negative`` = P(b_b - b_w < 0).
    """
    post = tree["posterior"].to_dataset()
    nat = gradients.national(post)
    out = {key: interval(nat[key]) for key in NATIONAL_KEYS}
    out["contextual_effect"]["p_negative"] = float((nat["contextual_effect"] < 0).mean())
    corr = gradients.gradient_deprivation_corr(post, tree["constant_data"]["m_c"])
    out["gradient_deprivation_corr"] = interval(corr)
    out["family"] = tree.attrs["family"]
    out["scale"] = families.get(tree.attrs["family"]).scale
    if "moderator_effect" in post or "la_moderator_effect" in post:
        out["moderators"] = moderator_summary(post)
    if "la_outcome_effect" in post:
        out["la_outcome"] = la_outcome.summary(
            post, tree["constant_data"].to_dataset(),
            json.loads(tree.attrs["spec"])["la_outcome"], interval)
    columns = json.loads(tree.attrs.get("stratum_columns", "{}"))
    if "stratum_effect" in post and columns:
        out["strata"] = strata_summary(gradients.stratum_gradient(post), columns)
    elif "stratum_effect" in post:
        strata = gradients.stratum_gradient(post)
        out["stratum_gradient"] = {
            str(level): interval(strata.sel(stratum=level)) for level in strata["stratum"].values
        }
        out["stratum_contrast"] = stratum_contrasts(strata)
    if "trend_effect" in post:
        out["stratum_trend"] = trend_summary(post, tree.attrs.get("stratum_trend", ""))
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
        **({"strata": list(columns)} if columns else {}),
        **({"stratum_trend": tree.attrs["stratum_trend"]}
           if tree.attrs.get("stratum_trend") else {}),
        "n_la": int(tree["constant_data"].sizes["la"]),
        "national_mean_income": float(tree.attrs["x_bar"]) / 10,
        "compile_seconds": _number(tree.attrs.get("compile_seconds")),
        "sampling_seconds": _number(tree.attrs.get("sampling_seconds")),
    }
    const = tree["constant_data"].to_dataset()
    if "centred" in const:
        counts = parameterisation.as_counts(const["centred"].values)
        out["model"]["la_effects"] = {"centred": int((counts == 2).sum()),
                                      "intercept_centred": int((counts == 1).sum()),
                                      "noncentred": int((counts == 0).sum())}
    scale = out["scale"]
    log_scale = "log odds ratio" if scale == "odds ratio" else "log rate ratio"
    out["units"] = (
        f"gradient scores: {scale} per 10-percentage-point rise in the share of "
        f"income-deprived families; contextual_effect: {log_scale}; moderators: {log_scale} "
        "per unit of the moderator (intercept) and change in the log gradient per unit (slope); "
        + ("stratum_trend: the same per unit of its column (e.g. per year of age); "
           if "trend_effect" in post else "") +
        "intervals: equal-tailed 95% (ci95) and 80% (ci80)"
    )
    return out


def _number(value) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def finite(obj):
    """``obj`` with every non-finite float (NaN, inf) replaced by None: valid JSON."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def to_json(obj) -> str:
    """Strict JSON (no NaN): non-finite numbers become null."""
    return json.dumps(finite(obj), indent=2, allow_nan=False)


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
            "note": np.where(t["ranked"].values, "", NO_SPREAD),
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

    def num(v, fmt):
        return "n/a" if v is None or not math.isfinite(v) else format(v, fmt)

    lines.append(
        f"Diagnostics: {d['verdict']}  (R-hat max {num(d['rhat_max'], '.4f')}, bulk ESS min "
        f"{num(d['ess_bulk_min'], '.0f')}, tail ESS min {num(d['ess_tail_min'], '.0f')}, "
        f"divergences {d['divergences']}, E-BFMI min {num(d['ebfmi_min'], '.2f')})"
    )
    lines.extend(f"  - {reason}" for reason in d["reasons"])
    return "\n".join(lines)


def gate(tree: xr.DataTree, rule: disclosure.Rule) -> tuple[disclosure.Partitioned, np.ndarray]:
    """The fit's observed LA, decile and national totals, protected together; and each
    row's deprivation decile."""
    y = tree["observed_data"][tree.attrs["outcome"]].values
    const = tree["constant_data"]
    decile = checks.deprivation_decile(const["income"].values)
    parts = disclosure.protect_partitions(
        y, {"la": const["lsoa_la"].values.astype(str), "decile": decile}, rule)
    return parts, decile


def _aligned(parts: disclosure.Partitioned, name: str, labels) -> np.ndarray:
    where = {str(g): i for i, g in enumerate(parts.groups[name])}
    return np.array([parts.shown[name][where[str(v)]] for v in labels])


def release_la_gradients(tree: xr.DataTree, parts: disclosure.Partitioned) -> pd.DataFrame:
    """:func:`la_gradients` with gated counts: hidden ``cases`` and their rates blank, rates
    of rounded counts computed from the rounded count."""
    frame = la_gradients(tree)
    shown = _aligned(parts, "la", frame["la"])
    true = frame["cases"].to_numpy(dtype=float)
    ratio = np.divide(shown, true, out=np.where(np.isnan(shown), np.nan, 1.0), where=true > 0)
    frame["rate_per_10k"] = (frame["rate_per_10k"] * ratio).round(2)
    frame["cases"] = pd.array(np.where(np.isnan(shown), pd.NA, shown), dtype="Int64")
    return frame


def release_ppc(tree: xr.DataTree, parts: disclosure.Partitioned,
                decile: np.ndarray, full: dict[str, xr.Dataset] | None = None
                ) -> dict[str, xr.Dataset]:
    """Posterior predictive checks for release: replicated quantities as computed, observed
    decile and national totals gated (p-values against the published value, blank where it
    is hidden); observed dispersion, zero share and maximum withheld (p-values kept for the
    first two, which pool every row). ``full``: :func:`socialgradient.checks.ppc` of the
    tree, if already computed."""
    full = checks.ppc(tree) if full is None else full
    outcome = tree.attrs["outcome"]
    rep = tree["posterior_predictive"][outcome]
    rep_dec = checks.group_totals(rep, decile - 1, np.arange(1, 11), "decile")
    obs_dec = xr.DataArray(_aligned(parts, "decile", rep_dec["decile"].values), dims="decile",
                           coords={"decile": rep_dec["decile"].values})
    dec = checks._compare(obs_dec, rep_dec)
    for p in ("p_value", "p_two_sided"):
        dec[p] = dec[p].where(np.isfinite(obs_dec))
    stat = full["statistic"].copy(deep=True)
    total = float(parts.shown["total"][0])
    with_total = checks._compare(xr.DataArray(total), rep_dec.sum("decile"))
    names = list(stat["statistic"].values)
    for var in stat.data_vars:
        values = stat[var].values.astype(float).copy()
        if var == "observed":
            values[names.index("total")] = total
            for name in ("dispersion", "zero_share", "max"):
                values[names.index(name)] = np.nan
        elif var.startswith("p_"):
            values[names.index("total")] = float(with_total[var]) if math.isfinite(total) \
                else np.nan
            values[names.index("max")] = np.nan
        stat[var] = ("statistic", values)
    return {"decile": dec, "statistic": stat}


def _records(result: dict[str, xr.Dataset], names=("decile", "statistic")) -> dict:
    return {name: finite(result[name].to_dataframe().reset_index().to_dict(orient="records"))
            for name in names}


def ppc_json(tree: xr.DataTree, full: dict[str, xr.Dataset] | None = None) -> str:
    """The posterior predictive checks by decile and statistic (LA level omitted) as JSON,
    unprotected (for ``internal/``). ``full``: :func:`socialgradient.checks.ppc` of the
    tree, if already computed."""
    return to_json(_records(checks.ppc(tree) if full is None else full))


def _gated_decile_rates(tree, parts, decile) -> tuple[np.ndarray, np.ndarray]:
    """Child-weighted mean income (%) and gated observed rate per 10,000 of each decile."""
    const = tree["constant_data"]
    income, children = const["income"].values, const["children"].values
    at_risk = gradients.exposure(const).values
    d = decile - 1
    kids = np.bincount(d, weights=children, minlength=10)
    mean_income = np.bincount(d, weights=children * income, minlength=10) / kids
    shown = _aligned(parts, "decile", np.arange(1, 11))
    return 100 * mean_income, gradients.PER * shown / np.bincount(d, weights=at_risk, minlength=10)


def _log_entry(name: str, path: Path, level: str, rule, note: str, **counts) -> dict:
    return {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "file": name,
            "level": level, "rule": dataclasses.asdict(rule), "override": rule.reason,
            **counts, "note": note, "decision": "written",
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def write(
    tree: xr.DataTree,
    out_dir: str | Path,
    extra: dict | None = None,
    rule: disclosure.Rule | None = None,
    posterior: str | Path | None = None,
    command: str = "write",
) -> dict[str, Path]:
    """Write the fit's output set to ``out_dir``: ``release/`` and ``internal/`` (see the
    module docstring) and ``MANIFEST.json``, all or nothing.

    ``extra``: keys added to ``summary.json`` (e.g. the LOO comparison). ``rule``: the
    disclosure rule for every observed count in ``release/`` (default ``Rule()``; a weaker
    one needs ``rule.reason``). ``posterior``: an existing ``posterior.nc`` of this fit to
    reuse for ``internal/`` (copied) instead of writing the tree again.
    Returns a mapping of output name to final path.
    """
    from socialgradient import plots  # matplotlib only when writing figures

    rule = rule or disclosure.Rule()
    rule.check()
    with step(log, "summary and diagnostics"):
        s = summary(tree)
    s.update(extra or {})
    with step(log, "disclosure gate, LA table and posterior predictive checks"):
        parts, decile = gate(tree, rule)
        las = release_la_gradients(tree, parts)
        ppc_full = checks.ppc(tree)
        ppc_rel = release_ppc(tree, parts, decile, ppc_full)
    meta = {"command": command, "spec_hash": tree.attrs["spec_hash"],
            "data_hash": tree.attrs["data_hash"], "outcome": tree.attrs["outcome"]}
    with outputs.Writer(out_dir, **meta) as w:
        rel, internal = w.release, w.internal
        (rel / "summary.json").write_text(to_json(s) + "\n", encoding="utf-8", newline="\n")
        las.to_csv(rel / "la_gradients.csv", index=False, lineterminator="\n")
        ppc_out = _records(ppc_rel) | {"note": (
            "observed totals protected by the disclosure gate (null: hidden); observed "
            "dispersion, zero share and maximum are not released")}
        (rel / "ppc.json").write_text(to_json(ppc_out) + "\n", encoding="utf-8", newline="\n")
        with step(log, "figures"):
            figures = plots.save_all(tree, rel,
                                     observed=_gated_decile_rates(tree, parts, decile),
                                     checks=ppc_rel)
        public = disclosure.public_actions(parts.actions)
        rounded = {k: int((~parts.hidden[k]).sum()) if rule.round_to else 0
                   for k in ("la", "decile", "total")}
        joint = ("LA totals (la_gradients.csv), deprivation-decile totals and the national "
                 "total (ppc.json) protected together: none hidden is pinned to one value by "
                 "those published")
        entries = [
            _log_entry("la_gradients.csv", rel / "la_gradients.csv", "la", rule, joint,
                       rows=len(las), suppressed=int(parts.hidden["la"].sum()),
                       rounded=rounded["la"],
                       actions=[a for a in public if "[la=" in a]),
            _log_entry("ppc.json", rel / "ppc.json", "la", rule, joint,
                       suppressed=int(parts.hidden["decile"].sum() + parts.hidden["total"].sum()),
                       rounded=rounded["decile"] + rounded["total"],
                       actions=[a for a in public if "[la=" not in a]),
            *(_log_entry(p.name, p, "model", rule, "drawn from model outputs and the gated "
                         "totals above only") for p in figures.values()),
        ]
        with open(rel / disclosure.LOG_NAME, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(json.dumps(e, default=str) + "\n" for e in entries)
        if posterior is not None:
            _copy(Path(posterior), internal / "posterior.nc")
        else:
            fit.save(tree, internal / "posterior.nc")
        with step(log, "full posterior predictive checks (internal)"):
            (internal / "ppc_full.json").write_text(ppc_json(tree, ppc_full) + "\n",
                                                    encoding="utf-8", newline="\n")
        detail = {"rule": dataclasses.asdict(rule), "actions": parts.actions}
        (internal / "disclosure_detail.json").write_text(to_json(detail) + "\n",
                                                          encoding="utf-8", newline="\n")
        w.commit()
    log.info("wrote the output set %s", w.out)
    paths = {"summary": w.path("release/summary.json"),
             "la_gradients": w.path("release/la_gradients.csv"),
             "ppc_json": w.path("release/ppc.json"),
             "disclosure_log": w.path(f"release/{disclosure.LOG_NAME}")}
    paths.update({name: w.path(f"release/{p.name}") for name, p in figures.items()})
    paths["posterior"] = w.path("internal/posterior.nc")
    return paths


def _copy(src: Path, dst: Path) -> None:
    """A copy, not a hard link: a set's files must not change when another set's do."""
    shutil.copyfile(src, dst)


def locate_fit(path: str | Path) -> tuple[Path, dict | None]:
    """The ``posterior.nc`` that ``path`` names (an output folder, or the file itself) and,
    where it belongs to an output set, that set's verified manifest.

    :class:`~socialgradient.outputs.OutputSetError` (naming the folder or file) when the set
    is incomplete or altered, or no fit is there.
    """
    path = Path(path)
    if path.is_dir():
        manifest = outputs.read(path)
        nc = path / "internal" / "posterior.nc"
        if "internal/posterior.nc" not in manifest["files"]:
            raise outputs.OutputSetError(f"{path}: its output set holds no internal/posterior.nc")
        return nc, manifest
    if not path.exists():
        raise FileNotFoundError(f"no saved fit at {path}")
    root = path.parent.parent
    if path.parent.name == "internal" and (root / outputs.MANIFEST).exists():
        return path, outputs.read(root)
    return path, None
