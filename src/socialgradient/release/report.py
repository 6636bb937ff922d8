"""Outputs of a fit, as one output set (:mod:`socialgradient.util.outputs`), whole or not at all.
(over 400 lines because it builds every file of release/ through the disclosure gate (to be
split by concern, issue 28).)

``DIR/release/`` (safe to publish): ``summary.json`` (model outputs), ``la_gradients.csv``,
``ppc.json``, the figures and ``disclosure_log.jsonl``. Every observed count in it -- LA
totals, deprivation-decile totals, the national total -- is protected together by
:func:`socialgradient.release.disclosure.protect_partitions` (threshold, complementary suppression
such that neither these totals nor those of the earlier releases in the release ledger
(:mod:`socialgradient.release.ledger`) narrow a hidden total, a single LSOA's count or a small group
of LSOAs below the protection level, cell-key perturbation, rounding); rates and PPC
p-values derived from a hidden count are blank, and otherwise computed from the published
value. ``n_lsoa``, ``children``, the rates' denominators and mean incomes per LA are
perturbed (their sums over exactly the fitted LSOAs are not public), and ``summary.json``
identifies the data by a keyed id (``model.data_id``), not its hash. The release is
recorded in the ledger before the set is committed (``docs/disclosure.md``).
Observed single-LSOA statistics (the largest count) and the
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

from socialgradient.model import families, la_outcome, parameterisation
from socialgradient.release import disclosure, perturbation
from socialgradient.release import ledger as ledgers
from socialgradient.results import checks, gradients
from socialgradient.results.summaries import (
    interval,
    moderator_summary,
    strata_summary,
    stratum_contrasts,
    trend_summary,
)
from socialgradient.sampling import fit
from socialgradient.util import outputs
from socialgradient.util.progress import step

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


def units(tree: xr.DataTree) -> np.ndarray:
    """Each row's unit id for the ledger and the perturbation keys: its LSOA code, with
    ``|`` and its stratum where rows are LSOA x stratum cells."""
    const = tree["constant_data"]
    lsoa = const["lsoa"].values.astype(str)
    names = sorted(c for c in const.coords if c == "stratum" or c.startswith("stratum_"))
    if not names and "trend_value" in const:
        names = ["trend_value"]
    if not names:
        ids = lsoa
    else:
        labels = pd.DataFrame({n: np.asarray(const[n].values).astype(str) for n in names})
        ids = np.char.add(np.char.add(lsoa, "|"), labels.agg(",".join, axis=1).to_numpy()
                          .astype(str))
    seen = pd.Series(ids).groupby(ids).cumcount().to_numpy()
    return np.where(seen > 0, np.char.add(ids, np.char.add("#", seen.astype(str))), ids)


TABLE = "fit totals (la_gradients.csv, ppc.json)"


def gate(tree: xr.DataTree, rule: disclosure.Rule, led: ledgers.Ledger | None = None,
         earlier=()) -> tuple[disclosure.Partitioned, np.ndarray]:
    """The fit's observed LA, decile and national totals, protected together (against the
    ``earlier`` publications of the ledger ``led``, whose secret keys the perturbation;
    default the default ledger's); and each row's deprivation decile."""
    y = tree["observed_data"][tree.attrs["outcome"]].values
    const = tree["constant_data"]
    decile = checks.deprivation_decile(const["income"].values)
    keys = (led or ledgers.Ledger()).keys() if rule.perturb else None
    parts = disclosure.protect_partitions(
        y, {"la": const["lsoa_la"].values.astype(str), "decile": decile}, rule,
        units=units(tree), earlier=earlier, keys=keys, name=TABLE,
        measure=tree.attrs["outcome"])
    return parts, decile


def _loo_shift(values, weights, groups, n_groups, lsoa) -> np.ndarray:
    """Per group, the largest change of the weighted mean of ``values`` that leaving out one
    LSOA (all its rows) makes: the noise a mean needs so that no one LSOA can be read off a
    difference of two releases."""
    frame = pd.DataFrame({"g": groups, "u": lsoa, "w": weights, "wv": weights * values})
    per = frame.groupby(["g", "u"], sort=False)[["w", "wv"]].sum().reset_index()
    tot = per.groupby("g")[["w", "wv"]].transform("sum")
    mean = tot["wv"] / tot["w"]
    rest = (tot["w"] - per["w"]).where(lambda x: x > 0)
    shift = ((tot["wv"] - per["wv"]) / rest - mean).abs().fillna(0.0)
    out = np.zeros(n_groups)
    np.maximum.at(out, per["g"].to_numpy(dtype=int), shift.to_numpy())
    return out


def _largest(values, groups, n_groups, lsoa) -> np.ndarray:
    """Per group, the largest one LSOA's total of ``values``: the noise bound of a sum."""
    per = pd.DataFrame({"g": groups, "u": lsoa, "v": values}).groupby(
        ["g", "u"], sort=False)["v"].sum().reset_index()
    out = np.zeros(n_groups)
    np.maximum.at(out, per["g"].to_numpy(dtype=int), per["v"].to_numpy())
    return out


def _masked(tree: xr.DataTree, keys, groups: np.ndarray, n_groups: int) -> dict:
    """Perturbed per-group structure and denominators (cell-key noise, see
    :mod:`socialgradient.release.perturbation`): ``n_lsoa`` (count noise), ``children`` and the
    exposure (noise up to the largest LSOA's), the child-weighted mean ``income`` (noise up
    to the largest pull one LSOA has on it)."""
    const = tree["constant_data"]
    ids, lsoa = units(tree), const["lsoa"].values.astype(str)
    children, income = const["children"].values, const["income"].values
    at_risk = gradients.exposure(const).values
    uniq, first = np.unique(lsoa, return_index=True)
    out = {}
    ck = perturbation.cell_keys(keys.count_keys(uniq, np.ones(len(uniq)), "n_lsoa"),
                                groups[first], n_groups)
    out["n_lsoa"] = perturbation.perturb_counts(np.bincount(groups[first], minlength=n_groups),
                                                ck, 1)
    for name, v in (("children", children), ("exposure", at_risk)):
        measure = name if name == "children" else "exposure:" + tree.attrs.get("exposure", "")
        ck = perturbation.cell_keys(keys.magnitude_keys(ids, v, measure), groups, n_groups)
        out[name] = perturbation.perturb_magnitudes(
            np.bincount(groups, weights=v, minlength=n_groups), ck,
            _largest(v, groups, n_groups, lsoa))
    if tree.attrs.get("exposure", "children") == "children":
        out["exposure"] = out["children"]
    ck = perturbation.cell_keys(keys.magnitude_keys(ids, income, "income"), groups, n_groups)
    mean = (np.bincount(groups, weights=children * income, minlength=n_groups)
            / np.bincount(groups, weights=children, minlength=n_groups))
    z = 2.0 * ck - 1.0
    out["income"] = mean + z * _loo_shift(income, children, groups, n_groups, lsoa)
    return out


def _aligned(parts: disclosure.Partitioned, name: str, labels) -> np.ndarray:
    where = {str(g): i for i, g in enumerate(parts.groups[name])}
    return np.array([parts.shown[name][where[str(v)]] for v in labels])


def release_la_gradients(tree: xr.DataTree, parts: disclosure.Partitioned,
                         keys=None) -> pd.DataFrame:
    """:func:`la_gradients` with gated counts: hidden ``cases`` and their rates blank, rates
    computed from the published count. With ``keys`` (the perturbation's
    :class:`~socialgradient.release.perturbation.CellKeys`) the LA's structure and denominators are
    perturbed too (``n_lsoa``, ``children``, ``la_income``; the rate's denominator): their
    sums over exactly the fitted LSOAs are not public, and differences between two fits
    would say which LSOA one of them left out."""
    frame = la_gradients(tree)
    shown = _aligned(parts, "la", frame["la"])
    true = frame["cases"].to_numpy(dtype=float)
    ratio = np.divide(shown, true, out=np.where(np.isnan(shown), np.nan, 1.0), where=true > 0)
    frame["rate_per_10k"] = (frame["rate_per_10k"] * ratio).round(2)
    frame["cases"] = pd.array(np.where(np.isnan(shown), pd.NA, shown), dtype="Int64")
    if keys is None:
        return frame
    const = tree["constant_data"]
    order = {str(la): i for i, la in enumerate(frame["la"])}
    groups = np.array([order[str(la)] for la in const["lsoa_la"].values])
    masked = _masked(tree, keys, groups, len(frame))
    frame["n_lsoa"] = masked["n_lsoa"].astype(int)
    frame["children"] = np.round(masked["children"]).astype(int)
    exposure = np.round(masked["exposure"])
    frame["rate_per_10k"] = np.round(gradients.PER * shown / np.where(exposure > 0, exposure,
                                                                        np.nan), 2)
    frame["la_income"] = np.round(masked["income"], 4)
    return frame


def release_ppc(tree: xr.DataTree, parts: disclosure.Partitioned,
                decile: np.ndarray, full: dict[str, xr.Dataset] | None = None
                ) -> dict[str, xr.Dataset]:
    """Posterior predictive checks for release: replicated quantities as computed, observed
    decile and national totals gated (p-values against the published value, blank where it
    is hidden); observed dispersion, zero share and maximum withheld (p-values kept for the
    first two, which pool every row). ``full``: :func:`socialgradient.results.checks.ppc` of the
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
    unprotected (for ``internal/``). ``full``: :func:`socialgradient.results.checks.ppc` of the
    tree, if already computed."""
    return to_json(_records(checks.ppc(tree) if full is None else full))


def _gated_decile_rates(tree, parts, decile, keys=None) -> tuple[np.ndarray, np.ndarray]:
    """Child-weighted mean income (%) and gated observed rate per 10,000 of each decile
    (with ``keys``: over perturbed denominators and means, as :func:`release_la_gradients`)."""
    const = tree["constant_data"]
    income, children = const["income"].values, const["children"].values
    at_risk = gradients.exposure(const).values
    d = decile - 1
    kids = np.bincount(d, weights=children, minlength=10)
    mean_income = np.bincount(d, weights=children * income, minlength=10) / kids
    exposure = np.bincount(d, weights=at_risk, minlength=10)
    if keys is not None:
        masked = _masked(tree, keys, d, 10)
        mean_income, exposure = masked["income"], masked["exposure"]
    shown = _aligned(parts, "decile", np.arange(1, 11))
    return 100 * mean_income, gradients.PER * shown / exposure


def _log_entry(name: str, path: Path, level: str, rule, note: str, **counts) -> dict:
    return {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "file": name,
            "level": level, "rule": dataclasses.asdict(rule), "override": rule.reason,
            **counts, "note": note, "decision": "written",
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def release_summary(s: dict, tree: xr.DataTree, led: ledgers.Ledger, keys=None) -> dict:
    """``summary(tree)`` as ``release/summary.json`` holds it: the data hash replaced by a
    keyed id (an unkeyed hash of the LSOA table would confirm a guessed table), and with
    ``keys`` the national structure perturbed (``n_lsoa``, ``n_rows``: the fitted LSOAs are
    not a public count when a table leaves some out) and the national mean income given to
    3 decimals with noise up to one LSOA's pull on it."""
    s = json.loads(json.dumps(finite(s)))
    model = s.get("model", {})
    if "data_hash" in model:
        model["data_id"] = led.data_id(model.pop("data_hash"))
    if keys is not None and "n_lsoa" in model:
        const = tree["constant_data"]
        lsoa = const["lsoa"].values.astype(str)
        uniq = np.unique(lsoa)
        one = np.zeros(len(uniq), int)
        ck = perturbation.cell_keys(keys.count_keys(uniq, np.ones(len(uniq)), "n_lsoa"), one, 1)
        model["n_lsoa"] = int(perturbation.perturb_counts([len(uniq)], ck, 1)[0])
        ids = units(tree)
        ck = perturbation.cell_keys(keys.count_keys(ids, np.ones(len(ids)), "n_rows"),
                                    np.zeros(len(ids), int), 1)
        model["n_rows"] = int(perturbation.perturb_counts([len(ids)], ck, 1)[0])
        if model.get("national_mean_income") is not None:
            z = np.zeros(len(ids), int)
            masked = _masked(tree, keys, z, 1)
            model["national_mean_income"] = round(float(masked["income"][0]), 3)
    return s


def write(
    tree: xr.DataTree,
    out_dir: str | Path,
    extra: dict | None = None,
    rule: disclosure.Rule | None = None,
    posterior: str | Path | None = None,
    command: str = "write",
    ledger: str | Path | ledgers.Ledger | None = None,
) -> dict[str, Path]:
    """Write the fit's output set to ``out_dir``: ``release/`` and ``internal/`` (see the
    module docstring) and ``MANIFEST.json``, all or nothing.

    ``extra``: keys added to ``summary.json`` (e.g. the LOO comparison). ``rule``: the
    disclosure rule for every observed count in ``release/`` (default ``Rule()``; a weaker
    one needs ``rule.reason``). ``posterior``: an existing ``posterior.nc`` of this fit to
    reuse for ``internal/`` (copied) instead of writing the tree again. ``ledger``: the
    release ledger (:mod:`socialgradient.release.ledger`; default its default folder): the release
    is checked against the earlier ones recorded there, and recorded, under its lock.
    Returns a mapping of output name to final path.
    """
    from socialgradient.results import plots  # matplotlib only when writing figures

    rule = rule or disclosure.Rule()
    rule.check()
    led = ledger if isinstance(ledger, ledgers.Ledger) else ledgers.Ledger(ledger)
    with step(log, "summary and diagnostics"):
        s = summary(tree)
    s.update(extra or {})
    ppc_full = checks.ppc(tree)
    with led.locked():
        with step(log, "disclosure gate (with the ledger's earlier releases), LA table and "
                  "posterior predictive checks"):
            earlier = led.publications(measures=[tree.attrs["outcome"]])
            parts, decile = gate(tree, rule, led, earlier)
            keys = led.keys() if rule.perturb else None
            las = release_la_gradients(tree, parts, keys)
            ppc_rel = release_ppc(tree, parts, decile, ppc_full)
            s = release_summary(s, tree, led, keys)
        paths, _ = _write_set(tree, out_dir, s, las, parts, decile, ppc_rel, ppc_full,
                              rule, posterior, command, led, keys, plots)
    return paths


def _log_check(parts: disclosure.Partitioned, rule: disclosure.Rule,
               led: ledgers.Ledger) -> dict:
    """The log's account of the protection: the check that ran (always, with its size),
    the perturbation's public parameters, the ledger's id."""
    return {"check": parts.check or {"method": "none: no secondary suppression (weaker rule)"},
            "perturbation": perturbation.describe() if rule.perturb else None,
            "ledger": led.id}


def _write_set(tree, out_dir, s, las, parts, decile, ppc_rel, ppc_full, rule, posterior,
               command, led, keys, plots):
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
                                     observed=_gated_decile_rates(tree, parts, decile, keys),
                                     checks=ppc_rel)
        public = disclosure.public_actions(parts.actions)
        rounded = {k: int((~parts.hidden[k]).sum()) if rule.round_to else 0
                   for k in ("la", "decile", "total")}
        joint = ("LA totals (la_gradients.csv), deprivation-decile totals and the national "
                 "total (ppc.json) protected together and with the earlier releases in the "
                 "ledger: no hidden total, no single LSOA's count and no group of LSOAs "
                 "counting fewer than the threshold is narrowed to a range of less than "
                 f"{rule.protection} by those published")
        entries = [
            _log_entry("la_gradients.csv", rel / "la_gradients.csv", "la", rule, joint,
                       rows=len(las), suppressed=int(parts.hidden["la"].sum()),
                       rounded=rounded["la"], **_log_check(parts, rule, led),
                       actions=[a for a in public if "[la=" in a]),
            _log_entry("ppc.json", rel / "ppc.json", "la", rule, joint,
                       suppressed=int(parts.hidden["decile"].sum() + parts.hidden["total"].sum()),
                       rounded=rounded["decile"] + rounded["total"],
                       **_log_check(parts, rule, led),
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
        detail = {"rule": dataclasses.asdict(rule), "actions": parts.actions,
                  "ledger": str(led.path)}
        (internal / "disclosure_detail.json").write_text(to_json(detail) + "\n",
                                                          encoding="utf-8", newline="\n")
        # recorded before the commit: a release that dies after it errs on the safe side
        led.record([parts.publication], command=command, out=str(w.out.resolve()),
                   data_id=s["model"].get("data_id"), rule=dataclasses.asdict(rule))
        w.commit()
    log.info("wrote the output set %s", w.out)
    paths = {"summary": w.path("release/summary.json"),
             "la_gradients": w.path("release/la_gradients.csv"),
             "ppc_json": w.path("release/ppc.json"),
             "disclosure_log": w.path(f"release/{disclosure.LOG_NAME}")}
    paths.update({name: w.path(f"release/{p.name}") for name, p in figures.items()})
    paths["posterior"] = w.path("internal/posterior.nc")
    return paths, figures


def _copy(src: Path, dst: Path) -> None:
    """A copy, not a hard link: a set's files must not change when another set's do."""
    shutil.copyfile(src, dst)


def locate_fit(path: str | Path) -> tuple[Path, dict | None]:
    """The ``posterior.nc`` that ``path`` names (an output folder, or the file itself) and,
    where it belongs to an output set, that set's verified manifest.

    :class:`~socialgradient.util.outputs.OutputSetError` (naming the folder or file) when the set
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
