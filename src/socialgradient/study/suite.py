"""Every analysis in ``models/``, resumable, with the study's findings: ``socialgradient suite``.

Each ``models/*.toml`` that names an ``outcome`` (or a list of ``outcomes``: the joint
threshold model) is fitted, and its outputs are written to ``OUT/<spec name>/`` as by
``socialgradient fit`` (an output set: ``release/``, ``internal/``, ``MANIFEST.json``). A spec
name is a plain folder name (:func:`spec_folder`: checked by the spec, and again here, resolved,
to lie directly in ``OUT``), and each spec's folder must be absent, empty or an output set of
ours (:func:`socialgradient.util.outputs.check_destination`), all checked before anything is built
or fitted. A spec is fitted to the neighbourhood table given to the suite, or, when it has a
``[records]`` table, to that aggregate of the synthetic child records, which the suite builds
itself and caches under ``OUT/_tables/<hash>/`` (:mod:`socialgradient.study.aggregates`).

A spec whose output set is complete (its manifest checks: every file present with its hash,
no write pending) and records the same spec hash and data hash is not fitted again, so a
suite that was stopped resumes where it stopped, a spec killed while writing is refitted, and
a changed spec (or table) is refitted. LA panel specs (they name a ``measure``;
``socialgradient panel`` runs them) are listed as skipped.

``OUT/suite.csv`` gathers every spec's headline gradients with their 95% intervals and
verdict; ``OUT/findings.csv`` and ``OUT/findings.md`` hold one row per finding of the study
(:mod:`socialgradient.study.findings`), the study's claims as probabilities among them (read
from each spec's ``internal/posterior.nc``: :mod:`socialgradient.study.claims`), with the
truth of the synthetic data where it is known: the
``truth.json`` beside the neighbourhood table (as ``socialgradient simulate`` writes it, and
as the embedded default has), and the records' own truth.

The fits run as tasks on a Dask distributed cluster: by default a ``LocalCluster`` the suite
starts (``workers`` processes of one thread each; nutpie samples the chains of a fit on its own
threads; on 127.0.0.1 only, no dashboard unless asked), or a running cluster given by its
scheduler address (``tls://``, or ``tcp://`` on this machine; :mod:`socialgradient.study.clusters`:
the tables leave this process). Every table is built, checked
and encoded here, in the main process, before anything is submitted. A task fits one spec and
writes its output set itself, returning only the small summary, so ``OUT`` must be one folder
that every worker sees at the same path (a shared filesystem for a remote cluster). The
longest fits (rows x draws, a joint fit counting each threshold's rows) get the highest
priority, so they do not start last. A worker that dies mid-fit loses nothing complete: its
write never committed, and the scheduler runs the task again on another worker (up to
``distributed.scheduler.allowed-failures`` times); a task whose output set is already complete
and current (its worker died after the commit) returns that set's summary without refitting.
"""

from __future__ import annotations

import json
import logging
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from dask.distributed import Client

from socialgradient.model.encode import encode
from socialgradient.release import joint as joint_release
from socialgradient.release import report
from socialgradient.sampling import fit, tuning
from socialgradient.sampling import joint as joint_fit
from socialgradient.spec import NAME, Spec, load_spec, plain_name
from socialgradient.study import aggregates, claims, clusters, findings
from socialgradient.util import outputs
from socialgradient.util.files import atomic_write

log = logging.getLogger(__name__)
HEADLINE = tuple(k for k in report.NATIONAL_KEYS if k != "interaction")


@dataclass(frozen=True)
class Item:
    """One spec file of the suite and what was done with it."""

    path: Path
    name: str
    status: str  # "fitted", "up to date" or "skipped: <why>"
    summary: dict | None = None
    #: seconds of this invocation's fit: the task's wall, compilation and sampling
    seconds: dict | None = None


def national_specs(models_dir: Path) -> list[tuple[Path, Spec | None, str]]:
    """``(path, spec, why_skipped)`` for every ``*.toml`` in ``models_dir``, sorted by name."""
    out: list[tuple[Path, Spec | None, str]] = []
    for path in sorted(Path(models_dir).glob("*.toml")):
        with open(path, "rb") as f:
            raw = tomllib.load(f)
        if "measure" in raw and "outcome" not in raw:
            out.append((path, None, "an LA panel spec: run it with `socialgradient panel`"))
            continue
        out.append((path, load_spec(path), ""))
    return out


#: what the suite itself writes in OUT: no spec's folder may take these names
RESERVED = frozenset({"_tables", "figures", "suite.csv", "findings.csv", "findings.md"})


def spec_folder(out_dir: Path, name: str) -> Path:
    """Return the folder of spec ``name``'s output set, ``out_dir/name``.

    ``out_dir/name``, where the spec ``name``'s output set goes, checked again here
    (the spec checks its name too): a plain name (:data:`socialgradient.spec.NAME`, no
    ``..``), not one the suite writes itself, and, resolved, a folder directly in
    ``out_dir`` (a ValueError otherwise: nothing is written outside ``--out``).
    """
    if not plain_name(name) or name.lower() in RESERVED:
        raise ValueError(
            f"spec name {name!r}: not a plain folder name under --out (it must "
            f"match {NAME.pattern}, with no '..', and not be one of "
            f"{sorted(RESERVED)})"
        )
    folder = Path(out_dir) / name
    base = Path(out_dir).resolve()
    if folder.resolve().parent != base:
        raise ValueError(
            f"spec name {name!r}: {folder} resolves to {folder.resolve()}, outside --out {base}"
        )
    return folder


def _up_to_date(out: Path, spec: Spec, data_digest: str) -> dict | None:
    """Return the summary of ``out``'s output set if it is complete and of this spec and data."""
    try:
        manifest = outputs.read(out)  # finishes an interrupted commit, clears leftovers
    except outputs.OutputSetError:
        return None
    if manifest.get("spec_hash") != spec.hash or manifest.get("data_hash") != data_digest:
        return None
    return json.loads((out / "release" / "summary.json").read_text(encoding="utf-8"))


def fit_task(data, spec: Spec, out: Path, data_digest: str, progressbar: bool = False) -> dict:
    """Fit one spec and write its output set: one task of the suite, run on a worker.

    One task of the suite, run on a worker: fit ``spec`` to ``data`` and write its output
    set to ``out``. Returns ``{"status", "summary", "seconds"}``, never the posterior;
    ``seconds`` holds the task's wall time (fit and writing), compilation and sampling.

    A set already complete and current (a rerun of a task whose worker died after the commit)
    is kept: its summary is returned as ``"up to date"``.
    """
    start = time.perf_counter()
    summary = _up_to_date(out, spec, data_digest)
    if summary is not None:
        return {"status": "up to date", "summary": summary, "seconds": None}
    fitter = joint_fit.fit if spec.outcomes else fit.fit
    tree = fitter(data, spec, progressbar=progressbar)
    writer = joint_release.write if joint_fit.outcomes(tree) else report.write
    paths = writer(tree, out, command="suite")
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    seconds = {
        "task": time.perf_counter() - start,
        "compile": float(tree.attrs.get("compile_seconds", float("nan"))),
        "sampling": float(tree.attrs.get("sampling_seconds", float("nan"))),
    }
    return {"status": "fitted", "summary": summary, "seconds": seconds}


def cost(data, spec: Spec) -> int:
    """Return a fit's rough cost, for the order of submission: rows x draws."""
    rows = sum(len(d.y) for d in data) if isinstance(data, list) else len(data.y)
    s = spec.sampling
    return rows * s.chains * (s.draws + tuning.tune_of(s))


def client(scheduler: str | Client | None = None, workers: int = 2, **options):
    """Return a Dask client (:func:`socialgradient.study.clusters.client`).

    A Dask client (:func:`socialgradient.study.clusters.client`): ``scheduler`` itself if it is
    a :class:`~dask.distributed.Client` (left open), else of the running cluster at
    ``scheduler`` (``tls://HOST:PORT``, or ``tcp://`` to this machine or with
    ``insecure=True``), or of a ``LocalCluster`` of ``workers`` single-threaded processes on
    127.0.0.1 (no dashboard unless ``dashboard=True``), closed on exit.
    """
    return clusters.client(scheduler, workers, **options)


def run(
    models_dir: Path,
    table: pd.DataFrame,
    out_dir: Path,
    progressbar: bool = False,
    truth: dict | None = None,
    *,
    scheduler: str | Client | None = None,
    workers: int = 2,
    dashboard: bool = False,
    security=None,
    insecure: bool = False,
    **sampling,
) -> list[Item]:
    """Fit every spec in ``models_dir`` and write the suite's outputs.

    Fit every spec in ``models_dir`` (``sampling`` overrides, e.g. ``draws=``, apply to
    all), write ``out_dir/<name>/``, ``suite.csv``, ``findings.csv`` and ``findings.md``.

    ``table`` is the neighbourhood table of specs without ``[records]``, ``truth`` its
    synthetic truth (``truth.json``; None for real data). Every table is built, checked
    against its specs and encoded before anything is fitted, so a table that lacks a spec's
    outcome fails at once, with no fit run. The fits run on the Dask cluster at ``scheduler``
    (an address or a client; its workers must see ``out_dir`` at the same path), or on a
    ``LocalCluster`` of ``workers`` processes (:mod:`socialgradient.study.clusters`: ``dashboard``,
    and ``security``/``insecure`` for a running one, checked before anything is built). A
    fit that fails does not stop the others;
    its error is raised once they are done (their output sets are kept, so a rerun resumes),
    and ``suite.csv`` is then not written.
    """
    out_dir = Path(out_dir).resolve()  # the workers' working folders may differ from ours
    cluster = clusters.target(
        scheduler, workers, dashboard=dashboard, security=security, insecure=insecure
    )
    specs = [
        (path, spec.replace(**sampling) if spec else None, why)
        for path, spec, why in national_specs(models_dir)
    ]
    if not any(spec for _, spec, _ in specs):
        raise ValueError(f"no national spec (*.toml with an outcome) in {models_dir}")
    folders: dict[str, Path] = {}
    for path, spec, _ in specs:  # every spec's folder checked before anything is built:
        if spec is None:  # a plain name, and absent, empty or an output set of ours
            continue
        outputs.check_destination(spec_folder(out_dir, spec.name))
        if spec.name.lower() in folders:
            raise ValueError(
                f"{path.name} and {folders[spec.name.lower()].name} share the "
                f"spec name {spec.name!r} (one folder under --out)"
            )
        folders[spec.name.lower()] = path
    data: dict[Path, Any] = {}
    truths: dict[str, dict | None] = {}
    for path, spec, _ in specs:
        if spec is None:
            continue
        if spec.records is not None:
            log.info("table of %s: records aggregate %s", spec.name, aggregates.key(spec.records))
            agg = aggregates.cached(spec.records, out_dir / "_tables")
            data[path], truths[spec.name] = encode(agg.table, spec), agg.truth
        else:
            data[path], truths[spec.name] = encode(table, spec), truth
    done: dict[Path, Item] = {}
    todo = []
    for path, spec, why in specs:
        if spec is None:
            done[path] = Item(path, path.stem, f"skipped: {why}")
            continue
        digest = fit.data_hash(data[path])
        summary = _up_to_date(spec_folder(out_dir, spec.name), spec, digest)
        if summary is not None:
            done[path] = Item(path, spec.name, "up to date", summary)
        else:
            todo.append((cost(data[path], spec), path, spec, digest))
    if todo:
        todo.sort(key=lambda t: t[0], reverse=True)
        errors = _run_tasks(todo, data, out_dir, progressbar, done, cluster, workers)
        if errors:
            raise errors[0]
    items = [done[path] for path, _, _ in specs]
    table_out = summary_table(items)
    atomic_write(
        out_dir / "suite.csv", lambda tmp: table_out.to_csv(tmp, index=False, lineterminator="\n")
    )
    names = {spec.name for _, spec, _ in specs if spec is not None}
    tabled = [f for f in findings.FINDINGS if f.spec in names]
    summaries = {i.name: i.summary for i in items if i.summary}
    # the claims (rankings, the LA range, equivalence) from each spec's posterior draws
    claims.attach(summaries, {n: spec_folder(out_dir, n) for n in summaries}, tabled)
    found = findings.table(summaries, truths, tabled)
    findings.write(found, out_dir)
    return items


def _run_tasks(
    todo,
    data,
    out_dir: Path,
    progressbar: bool,
    done: dict,
    scheduler: clusters.Target,
    workers: int,
) -> list[BaseException]:
    """Fit ``todo`` on the cluster, longest first.

    Fit ``todo`` (longest first, highest priority first) on the cluster
    (:func:`socialgradient.study.clusters.run_tasks`), fill ``done`` as the fits finish, and
    return the errors of those that failed.
    """
    errors = []

    def finished(n, tag, result, error):
        path, spec = tag
        if error is not None:
            log.error("%s failed (%d of %d): %r", spec.name, n, len(todo), error)
            errors.append(error)
            return
        summary, seconds = result["summary"], result["seconds"]
        log.info(
            "%s: %s in %.0f s (%d of %d)",
            spec.name,
            summary["diagnostics"]["verdict"],
            seconds["task"] if seconds else 0.0,
            n,
            len(todo),
        )
        done[path] = Item(path, spec.name, result["status"], summary, seconds)

    tasks = [
        (
            f"suite-{spec.name}",
            fit_task,
            (data[path], spec, spec_folder(out_dir, spec.name), digest, progressbar),
            (path, spec),
        )
        for _, path, spec, digest in todo
    ]
    clusters.run_tasks(tasks, scheduler, workers, finished, what="fits")
    return errors


def summary_table(items: list[Item]) -> pd.DataFrame:
    """Return the suite's table: one row per spec.

    One row per spec: status, outcome, family, headline medians with 95% ETIs, verdict,
    and, for a spec fitted in this invocation, its seconds (``task_s``: fit and writing on
    its worker, beside whatever else ran there; ``compile_s``; ``sampling_s``).
    """
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
            one = row | {
                "outcome": outcome,
                "family": s["model"]["family"],
                "n_lsoa": s["model"]["n_lsoa"],
            }
            for key in HEADLINE:
                if key in headline:
                    lo, hi = headline[key]["ci95"]
                    one |= {key: headline[key]["median"], f"{key}_lo95": lo, f"{key}_hi95": hi}
            one["verdict"] = s["diagnostics"]["verdict"]
            if item.seconds:
                one |= {f"{k}_s": v for k, v in item.seconds.items()}
            rows.append(one)
    return pd.DataFrame(rows)


def headline(items: list[Item]) -> str:
    """Return a few lines for the terminal: spec, status, gradient with its 95% ETI, verdict."""
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
        lines.append(
            f"{item.name:<28} {item.status:<11} gradient {g['median']:.3f} "
            f"[{lo:.3f}, {hi:.3f}]  {s['diagnostics']['verdict']}{extra}"
        )
    return "\n".join(lines)
