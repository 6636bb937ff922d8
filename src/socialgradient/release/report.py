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

from socialgradient.release import disclosure, perturbation
from socialgradient.release import ledger as ledgers
from socialgradient.results import checks, gradients
from socialgradient.results.summaries import (  # noqa: F401 (report's names, as before)
    NATIONAL_KEYS,
    NO_SPREAD,
    _number,
    finite,
    headline,
    la_gradients,
    summary,
    to_json,
    units,
)
from socialgradient.sampling import fit
from socialgradient.util import outputs
from socialgradient.util.progress import step

log = logging.getLogger(__name__)

TABLE = "fit totals (la_gradients.csv, ppc.json)"


def gate(
    tree: xr.DataTree, rule: disclosure.Rule, led: ledgers.Ledger | None = None, earlier=()
) -> tuple[disclosure.Partitioned, np.ndarray]:
    """The fit's observed LA, decile and national totals, protected together (against the
    ``earlier`` publications of the ledger ``led``, whose secret keys the perturbation;
    default the default ledger's); and each row's deprivation decile."""
    y = tree["observed_data"][tree.attrs["outcome"]].values
    const = tree["constant_data"]
    decile = checks.deprivation_decile(const["income"].values)
    keys = (led or ledgers.Ledger()).keys() if rule.perturb else None
    parts = disclosure.protect_partitions(
        y,
        {"la": const["lsoa_la"].values.astype(str), "decile": decile},
        rule,
        units=units(tree),
        earlier=earlier,
        keys=keys,
        name=TABLE,
        measure=tree.attrs["outcome"],
    )
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


#: the scale of the (Laplace) noise of ``children`` and the exposure per group, in units of
#: its largest LSOA's: for two releases one LSOA apart, the likelihood of "LSOA j was
#: dropped" over "LSOA k was dropped" is at most exp(|c_j - c_k| / scale) <= exp(1 / SPREAD)
#: (the log-density of a difference of two Laplace draws is 1/scale-Lipschitz), so no
#: difference rules an LSOA out or singles one out.
SPREAD = 2


def perturbed_sums(ids, lsoa, values, groups, n_groups, keys, measure) -> np.ndarray:
    """Per group, the sum of ``values`` plus Laplace noise of scale :data:`SPREAD` times the
    group's largest LSOA total, read from the cell key of the rows (``ids``)."""
    ck = perturbation.cell_keys(keys.magnitude_keys(ids, values, measure), groups, n_groups)
    return perturbation.perturb_laplace(
        np.bincount(groups, weights=values, minlength=n_groups),
        ck,
        SPREAD * _largest(values, groups, n_groups, lsoa),
    )


def _largest(values, groups, n_groups, lsoa) -> np.ndarray:
    """Per group, the largest one LSOA's total of ``values``: the noise bound of a sum."""
    per = (
        pd.DataFrame({"g": groups, "u": lsoa, "v": values})
        .groupby(["g", "u"], sort=False)["v"]
        .sum()
        .reset_index()
    )
    out = np.zeros(n_groups)
    np.maximum.at(out, per["g"].to_numpy(dtype=int), per["v"].to_numpy())
    return out


def _masked(tree: xr.DataTree, keys, groups: np.ndarray, n_groups: int) -> dict:
    """Perturbed per-group structure and denominators (cell-key noise, see
    :mod:`socialgradient.release.perturbation`): ``n_lsoa`` (count noise), ``children`` and the
    exposure (Laplace noise, :func:`perturbed_sums`), the child-weighted mean
    ``income`` (noise up to the largest pull one LSOA has on it)."""
    const = tree["constant_data"]
    ids, lsoa = units(tree), const["lsoa"].values.astype(str)
    children, income = const["children"].values, const["income"].values
    at_risk = gradients.exposure(const).values
    uniq, first = np.unique(lsoa, return_index=True)
    out = {}
    ck = perturbation.cell_keys(
        keys.count_keys(uniq, np.ones(len(uniq)), "n_lsoa"), groups[first], n_groups
    )
    out["n_lsoa"] = perturbation.perturb_counts(
        np.bincount(groups[first], minlength=n_groups), ck, 1
    )
    for name, v in (("children", children), ("exposure", at_risk)):
        measure = name if name == "children" else "exposure:" + tree.attrs.get("exposure", "")
        out[name] = perturbed_sums(ids, lsoa, v, groups, n_groups, keys, measure)
    if tree.attrs.get("exposure", "children") == "children":
        out["exposure"] = out["children"]
    ck = perturbation.cell_keys(keys.magnitude_keys(ids, income, "income"), groups, n_groups)
    mean = np.bincount(groups, weights=children * income, minlength=n_groups) / np.bincount(
        groups, weights=children, minlength=n_groups
    )
    z = 2.0 * ck - 1.0
    out["income"] = mean + z * _loo_shift(income, children, groups, n_groups, lsoa)
    return out


def _aligned(parts: disclosure.Partitioned, name: str, labels) -> np.ndarray:
    where = {str(g): i for i, g in enumerate(parts.groups[name])}
    return np.array([parts.shown[name][where[str(v)]] for v in labels])


def release_la_gradients(
    tree: xr.DataTree, parts: disclosure.Partitioned, keys=None
) -> pd.DataFrame:
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
    frame["rate_per_10k"] = np.round(
        gradients.PER * shown / np.where(exposure > 0, exposure, np.nan), 2
    )
    frame["la_income"] = np.round(masked["income"], 4)
    return frame


def release_ppc(
    tree: xr.DataTree,
    parts: disclosure.Partitioned,
    decile: np.ndarray,
    full: dict[str, xr.Dataset] | None = None,
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
    obs_dec = xr.DataArray(
        _aligned(parts, "decile", rep_dec["decile"].values),
        dims="decile",
        coords={"decile": rep_dec["decile"].values},
    )
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
            values[names.index("total")] = (
                float(with_total[var]) if math.isfinite(total) else np.nan
            )
            values[names.index("max")] = np.nan
        stat[var] = ("statistic", values)
    return {"decile": dec, "statistic": stat}


def _records(result: dict[str, xr.Dataset], names=("decile", "statistic")) -> dict:
    return {
        name: finite(result[name].to_dataframe().reset_index().to_dict(orient="records"))
        for name in names
    }


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
    return {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "file": name,
        "level": level,
        "rule": dataclasses.asdict(rule),
        "override": rule.reason,
        **counts,
        "note": note,
        "decision": "written",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


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
        ck = perturbation.cell_keys(
            keys.count_keys(ids, np.ones(len(ids)), "n_rows"), np.zeros(len(ids), int), 1
        )
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
        with step(
            log,
            "disclosure gate (with the ledger's earlier releases), LA table and "
            "posterior predictive checks",
        ):
            earlier = led.publications(measures=[tree.attrs["outcome"]])
            parts, decile = gate(tree, rule, led, earlier)
            keys = led.keys() if rule.perturb else None
            las = release_la_gradients(tree, parts, keys)
            ppc_rel = release_ppc(tree, parts, decile, ppc_full)
            s = release_summary(s, tree, led, keys)
        paths, _ = _write_set(
            tree,
            out_dir,
            s,
            las,
            parts,
            decile,
            ppc_rel,
            ppc_full,
            rule,
            posterior,
            command,
            led,
            keys,
            plots,
        )
    return paths


def _log_check(parts: disclosure.Partitioned, rule: disclosure.Rule, led: ledgers.Ledger) -> dict:
    """The log's account of the protection: the check that ran (always, with its size),
    the perturbation's public parameters, the ledger's id."""
    return {
        "check": parts.check or {"method": "none: no secondary suppression (weaker rule)"},
        "perturbation": perturbation.describe() if rule.perturb else None,
        "ledger": led.id,
    }


def _write_set(
    tree,
    out_dir,
    s,
    las,
    parts,
    decile,
    ppc_rel,
    ppc_full,
    rule,
    posterior,
    command,
    led,
    keys,
    plots,
):
    meta = {
        "command": command,
        "spec_hash": tree.attrs["spec_hash"],
        "data_hash": tree.attrs["data_hash"],
        "outcome": tree.attrs["outcome"],
    }
    with outputs.Writer(out_dir, **meta) as w:
        rel, internal = w.release, w.internal
        (rel / "summary.json").write_text(to_json(s) + "\n", encoding="utf-8", newline="\n")
        las.to_csv(rel / "la_gradients.csv", index=False, lineterminator="\n")
        ppc_out = _records(ppc_rel) | {
            "note": (
                "observed totals protected by the disclosure gate (null: hidden); observed "
                "dispersion, zero share and maximum are not released"
            )
        }
        (rel / "ppc.json").write_text(to_json(ppc_out) + "\n", encoding="utf-8", newline="\n")
        with step(log, "figures"):
            figures = plots.save_all(
                tree, rel, observed=_gated_decile_rates(tree, parts, decile, keys), checks=ppc_rel
            )
        public = disclosure.public_actions(parts.actions)
        rounded = {
            k: int((~parts.hidden[k]).sum()) if rule.round_to else 0
            for k in ("la", "decile", "total")
        }
        joint = (
            "LA totals (la_gradients.csv), deprivation-decile totals and the national "
            "total (ppc.json) protected together and with the earlier releases in the "
            "ledger: no hidden total, no single LSOA's count and no group of LSOAs "
            "counting fewer than the threshold is narrowed to a range of less than "
            f"{rule.protection} by those published"
        )
        entries = [
            _log_entry(
                "la_gradients.csv",
                rel / "la_gradients.csv",
                "la",
                rule,
                joint,
                rows=len(las),
                suppressed=int(parts.hidden["la"].sum()),
                rounded=rounded["la"],
                **_log_check(parts, rule, led),
                actions=[a for a in public if "[la=" in a],
            ),
            _log_entry(
                "ppc.json",
                rel / "ppc.json",
                "la",
                rule,
                joint,
                suppressed=int(parts.hidden["decile"].sum() + parts.hidden["total"].sum()),
                rounded=rounded["decile"] + rounded["total"],
                **_log_check(parts, rule, led),
                actions=[a for a in public if "[la=" not in a],
            ),
            *(
                _log_entry(
                    p.name,
                    p,
                    "model",
                    rule,
                    "drawn from model outputs and the gated totals above only",
                )
                for p in figures.values()
            ),
        ]
        with open(rel / disclosure.LOG_NAME, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(json.dumps(e, default=str) + "\n" for e in entries)
        if posterior is not None:
            _copy(Path(posterior), internal / "posterior.nc")
        else:
            fit.save(tree, internal / "posterior.nc")
        with step(log, "full posterior predictive checks (internal)"):
            (internal / "ppc_full.json").write_text(
                ppc_json(tree, ppc_full) + "\n", encoding="utf-8", newline="\n"
            )
        detail = {
            "rule": dataclasses.asdict(rule),
            "actions": parts.actions,
            "ledger": str(led.path),
        }
        (internal / "disclosure_detail.json").write_text(
            to_json(detail) + "\n", encoding="utf-8", newline="\n"
        )
        # recorded before the commit: a release that dies after it errs on the safe side
        led.record(
            [parts.publication],
            command=command,
            out=str(w.out.resolve()),
            data_id=s["model"].get("data_id"),
            rule=dataclasses.asdict(rule),
        )
        w.commit()
    log.info("wrote the output set %s", w.out)
    paths = {
        "summary": w.path("release/summary.json"),
        "la_gradients": w.path("release/la_gradients.csv"),
        "ppc_json": w.path("release/ppc.json"),
        "disclosure_log": w.path(f"release/{disclosure.LOG_NAME}"),
    }
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
