"""The summary and the output set of a joint threshold fit.

``summary.json`` and the output set of a joint fit (:mod:`socialgradient.model.joint`), as
:mod:`socialgradient.release.report` writes a single fit's.
"""

from __future__ import annotations

import json
import logging

import xarray as xr

from socialgradient.results.summaries import steepening, threshold_summary
from socialgradient.sampling import fit as fit_module
from socialgradient.sampling.joint import outcomes, view
from socialgradient.util.progress import step

log = logging.getLogger(__name__)


def summary(tree: xr.DataTree, diagnostics: dict | None = None) -> dict:
    """Return the ``summary.json`` of a joint fit.

    ``summary.json`` of a joint fit: every threshold's headline (``thresholds``), the
    steepening probabilities, diagnostics over the whole joint posterior (with a reason for
    a prior-data conflict of :func:`socialgradient.results.sensitivity.power_scaling`, whose
    result is ``sensitivity``), and the
    single-outcome summary of the first threshold's view (``first``) for its other keys.
    """
    from socialgradient.release import report
    from socialgradient.results import checks, sensitivity

    diagnostics = diagnostics if diagnostics is not None else checks.diagnose(tree)
    first = report.summary(view(tree, outcomes(tree)[0]), diagnostics)
    sens = sensitivity.power_scaling(tree)
    return {
        "thresholds": threshold_summary(tree),
        **steepening(tree),
        "diagnostics": sensitivity.flag(diagnostics, sens),
        "sensitivity": sens,
        "family": first["family"],
        "scale": first["scale"],
        "model": {
            **first["model"],
            "outcome": "+".join(outcomes(tree)),
            "outcomes": outcomes(tree),
            "la_effects": _centring(tree),
        },
        "units": first["units"] + "; p_steepens: posterior probability that the gradient "
        "at an averagely deprived LA is steeper at the later threshold",
    }


def _centring(tree: xr.DataTree) -> dict:
    """Per threshold, how many LAs had its effects sampled centred and non-centred."""
    from socialgradient.release.masking import group

    centred = group(tree, "constant_data")["centred"].values
    return {
        name: {"centred": int((centred > j).sum()), "noncentred": int((centred <= j).sum())}
        for j, name in enumerate(outcomes(tree))
    }


def write(
    tree: xr.DataTree,
    out_dir,
    extra: dict | None = None,
    rule=None,
    posterior=None,
    command: str = "write",
    ledger=None,
) -> dict:
    """Write the output set of a joint fit.

    The output set of a joint fit, as :func:`socialgradient.release.report.write` writes one
    fit's: ``release/summary.json`` (this module's :func:`summary`), ``la_gradients.csv``
    (with P(steeper than England) of each threshold's LA against that threshold's England)
    and ``la_bands.csv`` with a ``threshold`` column, ``ppc.json`` by threshold, every
    observed count through the disclosure gate per threshold; figures of each threshold in
    ``release/<threshold>/``; ``internal/`` the joint posterior. ``ledger``: the release
    ledger, as for
    :func:`socialgradient.release.report.write` (each threshold's totals are checked against the
    earlier releases and recorded).
    """
    from socialgradient.release import disclosure, report
    from socialgradient.release import ledger as ledgers
    from socialgradient.results import plots
    from socialgradient.util import outputs

    rule = rule or disclosure.Rule()
    rule.check()
    led = ledger if isinstance(ledger, ledgers.Ledger) else ledgers.Ledger(ledger)
    s = summary(tree)
    s.update(extra or {})
    out = outputs.check_destination(out_dir)  # a refused destination records nothing
    with led.locked():  # every threshold's check and the record, not the files (report.record)
        keys = led.keys() if rule.perturb else None
        views = {name: view(tree, name) for name in outcomes(tree)}  # each built once
        s = report.release_summary(s, next(iter(views.values())), led, keys)
        earlier = led.publications(measures=outcomes(tree))
        gated = {name: report.gate(one, rule, led, earlier) for name, one in views.items()}
        publications = [parts.publication for parts, _ in gated.values()]
        report.record(led, publications, command, out, s, rule)
    return _write(tree, views, out, s, rule, posterior, command, led, keys, gated, plots)


def _write(tree, views, out_dir, s, rule, posterior, command, led, keys, gated, plots) -> dict:
    from pathlib import Path

    import pandas as pd

    from socialgradient.release import disclosure, la_bands, report
    from socialgradient.util import outputs

    tables, band_tables, ppcs, entries = [], [], {}, []
    figures: dict[str, Path] = {}
    meta = {
        "command": command,
        "spec_hash": tree.attrs["spec_hash"],
        "data_hash": tree.attrs["data_hash"],
        "outcome": s["model"]["outcome"],
    }
    with outputs.Writer(out_dir, **meta) as w:
        rel, internal = w.release, w.internal
        for name, one in views.items():
            parts, decile = gated[name]
            las = report.release_la_gradients(one, parts, keys)
            tables.append(las.assign(threshold=name))
            band_tables.append(
                la_bands.release_la_bands(one, parts, decile, keys).assign(threshold=name)
            )
            checked = report.release_ppc(one, parts, decile)
            ppcs[name] = report._records(checked)
            (rel / name).mkdir()
            with step(log, "%s: figures", name):
                saved = plots.save_all(
                    one,
                    rel / name,
                    observed=report._gated_decile_rates(one, parts, decile, keys),
                    checks=checked,
                )
            figures |= {f"{name}/{k}": p for k, p in saved.items()}
            entries.append(
                (
                    name,
                    int(parts.hidden["la"].sum() + parts.hidden[la_bands.PARTITION].sum()),
                    disclosure.public_actions(parts.actions),
                    report._log_check(parts, rule, led),
                )
            )
        (rel / "summary.json").write_text(report.to_json(s) + "\n", encoding="utf-8", newline="\n")
        table = pd.concat(tables, ignore_index=True)
        table.insert(0, "threshold", table.pop("threshold"))
        table.to_csv(rel / "la_gradients.csv", index=False, lineterminator="\n")
        bands = pd.concat(band_tables, ignore_index=True)
        bands.insert(0, "threshold", bands.pop("threshold"))
        bands.to_csv(rel / la_bands.FILE, index=False, lineterminator="\n")
        (rel / "ppc.json").write_text(report.to_json(ppcs) + "\n", encoding="utf-8", newline="\n")
        log_entries = [
            report._log_entry(
                f"la_gradients.csv + la_bands.csv + ppc.json [{name}]",
                rel / "la_gradients.csv",
                "la",
                rule,
                f"{name}: LA, LA x deprivation-quintile, decile and national totals protected "
                "together; figures in "
                f"{name}/ drawn from these gated totals and model outputs only",
                suppressed=hidden,
                **check,
                actions=actions,
            )
            for name, hidden, actions, check in entries
        ]
        with open(rel / disclosure.LOG_NAME, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(json.dumps(e, default=str) + "\n" for e in log_entries)
        if posterior is not None:
            report._copy(Path(posterior), internal / "posterior.nc")
        else:
            fit_module.save(tree, internal / "posterior.nc")
        w.commit()
    paths = {
        "summary": w.path("release/summary.json"),
        "la_gradients": w.path("release/la_gradients.csv"),
        "la_bands": w.path(f"release/{la_bands.FILE}"),
        "ppc_json": w.path("release/ppc.json"),
        "disclosure_log": w.path(f"release/{disclosure.LOG_NAME}"),
        "posterior": w.path("internal/posterior.nc"),
    }
    paths.update({k: w.path(f"release/{k.split('/')[0]}/{p.name}") for k, p in figures.items()})
    return paths


def headline(s: dict) -> str:
    """Return a plain-text table of a joint summary.

    A plain-text table of a joint summary: each threshold's gradients, the steepening
    probabilities and the verdict.
    """
    lines = [
        f"{'threshold':<16}{'gradient, average LA [95% ETI]':>34}{'less / more deprived LA':>28}"
    ]
    for name, t in s["thresholds"].items():
        g, lo, hi = (
            t["gradient_mean_la"],
            t["gradient_less_deprived_la"],
            t["gradient_more_deprived_la"],
        )
        lines.append(
            f"{name:<16}{g['median']:>12.3f} [{g['ci95'][0]:.3f}, {g['ci95'][1]:.3f}]"
            f"{lo['median']:>16.3f} / {hi['median']:.3f}"
        )
    for pair, p in s["p_steepens"].items():
        lines.append(f"P(gradient {pair.replace('<', ' < ')}) = {p:.3f}")
    lines.append(f"P(steepens at every step) = {s['p_steepens_every_step']:.3f}")
    d = s["diagnostics"]
    lines.append(f"Diagnostics: {d['verdict']}")
    lines.extend(f"  - {reason}" for reason in d["reasons"])
    return "\n".join(lines)
