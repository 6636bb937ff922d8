"""Every analysis in ``models/``, resumable, with the study's findings: ``socialgradient suite``.

Each ``models/*.toml`` that names an ``outcome`` (or a list of ``outcomes``: the joint
threshold model) is fitted, and its outputs are written to ``OUT/<spec name>/`` as by
``socialgradient fit`` (an output set: ``release/``, ``internal/``, ``MANIFEST.json``). A spec
is fitted to the neighbourhood table given to the suite, or, when it has a ``[records]``
table, to that aggregate of the synthetic child records, which the suite builds itself and
caches under ``OUT/_tables/<hash>/`` (:mod:`socialgradient.aggregates`).

A spec whose output set is complete (its manifest checks: every file present with its hash,
no write pending) and records the same spec hash and data hash is not fitted again, so a
suite that was stopped resumes where it stopped, a spec killed while writing is refitted, and
a changed spec (or table) is refitted. LA panel specs (they name a ``measure``;
``socialgradient panel`` runs them) are listed as skipped.

``OUT/suite.csv`` gathers every spec's headline gradients with their 95% intervals and
verdict; ``OUT/findings.csv`` and ``OUT/findings.md`` hold one row per finding of the study
(:mod:`socialgradient.findings`) with the truth of the synthetic data where it is known: the
``truth.json`` beside the neighbourhood table (as ``socialgradient simulate`` writes it, and
as the embedded default has), and the records' own truth.
"""

from __future__ import annotations

import json
import logging
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from socialgradient import aggregates, api, findings, fit, joint, outputs, report
from socialgradient.files import atomic_write
from socialgradient.spec import Spec, load_spec

log = logging.getLogger(__name__)
HEADLINE = tuple(k for k in report.NATIONAL_KEYS if k != "interaction")


@dataclass(frozen=True)
class Item:
    """One spec file of the suite and what was done with it."""

    path: Path
    name: str
    status: str  # "fitted", "up to date" or "skipped: <why>"
    summary: dict | None = None


def national_specs(models_dir: Path) -> list[tuple[Path, Spec | None, str]]:
    """``(path, spec, why_skipped)`` for every ``*.toml`` in ``models_dir``, sorted by name."""
    out = []
    for path in sorted(Path(models_dir).glob("*.toml")):
        with open(path, "rb") as f:
            raw = tomllib.load(f)
        if "measure" in raw and "outcome" not in raw:
            out.append((path, None, "an LA panel spec: run it with `socialgradient panel`"))
            continue
        out.append((path, load_spec(path), ""))
    return out


def _up_to_date(out: Path, spec: Spec, data_digest: str) -> dict | None:
    """The summary of ``out``'s output set if it is complete and of this spec and data."""
    try:
        manifest = outputs.read(out)  # finishes an interrupted commit, clears leftovers
    except outputs.OutputSetError:
        return None
    if manifest.get("spec_hash") != spec.hash or manifest.get("data_hash") != data_digest:
        return None
    return json.loads((out / "release" / "summary.json").read_text(encoding="utf-8"))


def run(models_dir: Path, table: pd.DataFrame, out_dir: Path, progressbar: bool = False,
        truth: dict | None = None, **sampling) -> list[Item]:
    """Fit every spec in ``models_dir`` (``sampling`` overrides, e.g. ``draws=``, apply to
    all), write ``out_dir/<name>/``, ``suite.csv``, ``findings.csv`` and ``findings.md``.

    ``table`` is the neighbourhood table of specs without ``[records]``, ``truth`` its
    synthetic truth (``truth.json``; None for real data). Every table is built, checked
    against its specs and encoded before anything is fitted, so a table that lacks a spec's
    outcome fails at once, with no fit run.
    """
    out_dir = Path(out_dir)
    specs = [(path, spec.replace(**sampling) if spec else None, why)
             for path, spec, why in national_specs(models_dir)]
    if not any(spec for _, spec, _ in specs):
        raise ValueError(f"no national spec (*.toml with an outcome) in {models_dir}")
    data, truths = {}, {}
    for path, spec, _ in specs:
        if spec is None:
            continue
        if spec.records is not None:
            log.info("table of %s: records aggregate %s", spec.name,
                     aggregates.key(spec.records))
            agg = aggregates.cached(spec.records, out_dir / "_tables")
            data[path], truths[spec.name] = api.encode(agg.table, spec), agg.truth
        else:
            data[path], truths[spec.name] = api.encode(table, spec), truth
    items = []
    for path, spec, why in specs:
        if spec is None:
            items.append(Item(path, path.stem, f"skipped: {why}"))
            continue
        out = out_dir / spec.name
        summary = _up_to_date(out, spec, fit.data_hash(data[path]))
        if summary is not None:
            items.append(Item(path, spec.name, "up to date", summary))
            continue
        log.info("fitting %s (%d of %d)", spec.name, len(items) + 1, len(specs))
        start = time.perf_counter()
        if spec.outcomes:
            tree = joint.fit(data[path], spec, progressbar=progressbar)
        else:
            tree = fit.fit(data[path], spec, progressbar=progressbar)
        paths = api.write(tree, out, command="suite")
        summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
        log.info("%s: %s in %.0f s", spec.name, summary["diagnostics"]["verdict"],
                 time.perf_counter() - start)
        items.append(Item(path, spec.name, "fitted", summary))
    table_out = summary_table(items)
    atomic_write(out_dir / "suite.csv", lambda tmp: table_out.to_csv(tmp, index=False))
    names = {spec.name for _, spec, _ in specs if spec is not None}
    found = findings.table({i.name: i.summary for i in items if i.summary}, truths,
                           [f for f in findings.FINDINGS if f.spec in names])
    findings.write(found, out_dir)
    return items


def summary_table(items: list[Item]) -> pd.DataFrame:
    """One row per spec: status, outcome, family, headline medians with 95% ETIs, verdict."""
    rows = []
    for item in items:
        row = {"spec": item.name, "file": item.path.name, "status": item.status}
        s = item.summary
        if s is None:
            rows.append(row)
            continue
        # A joint fit gives one row per threshold (with that threshold's headline keys).
        parts = s["thresholds"].items() if "thresholds" in s else [(s["model"]["outcome"], s)]
        for outcome, headline in parts:
            one = row | {"outcome": outcome, "family": s["model"]["family"],
                         "n_lsoa": s["model"]["n_lsoa"]}
            for key in HEADLINE:
                if key in headline:
                    lo, hi = headline[key]["ci95"]
                    one |= {key: headline[key]["median"], f"{key}_lo95": lo,
                            f"{key}_hi95": hi}
            one["verdict"] = s["diagnostics"]["verdict"]
            rows.append(one)
    return pd.DataFrame(rows)


def headline(items: list[Item]) -> str:
    """A few lines for the terminal: spec, status, gradient with its 95% ETI, verdict."""
    lines = []
    for item in items:
        if item.summary is None:
            lines.append(f"{item.name:<28} {item.status}")
            continue
        s = item.summary
        if "thresholds" in s:
            first = next(iter(s["thresholds"].values()))
            g = first["gradient_mean_la"]
            extra = f"  P(steepens every step) {s['p_steepens_every_step']:.2f}"
        else:
            g, extra = s["gradient_mean_la"], ""
        lo, hi = g["ci95"]
        lines.append(f"{item.name:<28} {item.status:<11} gradient {g['median']:.3f} "
                     f"[{lo:.3f}, {hi:.3f}]  {s['diagnostics']['verdict']}{extra}")
    return "\n".join(lines)
