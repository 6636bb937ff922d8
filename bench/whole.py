"""Whole processes side by side: `socialgradient fit` against glmmTMB nbinom2.

Each run is one process started from the shell, timed from start to exit, as a user meets
it: ours reads the CSV, validates, compiles (loading the C callbacks a previous run of the
same model structure cached, ``socialgradient.sampling._nutpie``), samples 4 x 1,000 draws after
500 tuning, checks convergence and writes its whole output set (posterior, release,
figures); glmmTMB is one ``Rscript`` reading the same CSV and
fitting ``y ~ w * m_c + offset(log(children)) + (1 + w | la)`` by Laplace ML
(``bench/peers/peers.R --worker glmmtmb_nb``, the worker alone, with no driver around it).
Runs alternate ours / glmmTMB so that load drifts hit both. Peak memory is the summed
resident set of the process tree, polled every 0.1 s (``harness.run_sub``).

*First run after a fresh install*: every compilation cache (PyTensor's base_compiledir, which
holds its numba cache, numba's cache dir and the callbacks' cache,
``SOCIALGRADIENT_NUTPIE_CACHE_DIR``) pointed at new, empty folders, as on a new machine; then
the install step's ``socialgradient warm`` (which ``make`` runs after pip: untimed in the
ratio, its wall shown), then ours once, timed, into those caches. ``--no-warm`` leaves the
install step out (the caches empty at the first fit). *Warm-up*: one untimed run per table into the usual caches before the
timed runs, so that they meet a structure fitted before on this machine (as a user refitting
a table of the same LAs does); its wall and compile seconds are shown (a structure no run
has compiled: ~10 s more compilation).

    .venv/bin/python bench/whole.py                 # three tables, 3 runs each (~25 min)
    .venv/bin/python bench/whole.py --runs 1 --tables england

*Release ledger*: every fit checks its release against the earlier releases of its ledger
(``socialgradient.release.ledger``) and records itself; the bench gives each table a ledger of
its own (``bench/_work/whole/ledger/TABLE``, emptied when the bench starts), as a project with
one table has, so its times do not depend on how many fits this machine's default ledger has
recorded before, nor on the other tables' releases: the three tables are unrelated data with the
same LSOA codes, which the check must treat as overlapping releases (`england_c`'s first release
against England's and england_b's took 90.9 s of gate in one shared ledger, 2026-12-07).

Writes ``bench/whole.json`` (every run) and ``bench/whole.md`` (medians and ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import BENCH, ROOT, WORK, now, run_sub, uptime

OURS = ROOT / ".venv" / "bin" / "socialgradient"
PEERS_R = BENCH / "peers" / "peers.R"
COLUMNS = ["lsoa", "la", "children", "income", "referrals"]
LEDGER = WORK / "whole" / "ledger"


#: ``england_c``'s true referral parameters: steeper, more varied between LAs and more
#: over-dispersed than the default England's (``england.PARAMETERS``), none of them tuned on.
PARAMETERS_C = {
    "referrals": dict(a=-4.6, gradient=1.9, b_b=0.1, sigma_a=0.4, sigma_b=0.3, rho=0.2, phi=6.0)
}


def _uneven(t, seed: int):
    """Keep a share of each LA's LSOAs drawn uniformly from 5% to 100% (at least 3): LA
    sizes unlike the calibrated ones, from a handful of LSOAs to whole LAs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    keep = []
    for rows in t.groupby("la", sort=True).groups.values():
        rows = np.asarray(rows)
        n = max(3, round(len(rows) * rng.uniform(0.05, 1.0)))
        keep.append(rng.choice(rows, size=min(n, len(rows)), replace=False))
    return t.loc[np.sort(np.concatenate(keep))]


def tables(names: list[str]) -> dict[str, Path]:
    """The CSVs: ``england`` is the embedded default England; ``england_b`` an England-like
    table ours has never seen (another seed of the synthetic England, its first 120 LAs);
    ``england_c`` one simulated with other parameters (:data:`PARAMETERS_C`) and uneven LA
    sizes (:func:`_uneven`), never used to tune the sampler."""
    import socialgradient.api as sg
    from socialgradient.data.synthetic.england import simulate

    folder = WORK / "whole"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names:
        path = folder / f"{name}.csv"
        if not path.exists():
            if name == "england":
                t = sg.default_data()
            elif name == "england_b":
                t = simulate(seed=11).table
                t = t[t["la"].isin(t["la"].unique()[:120])]
            elif name == "england_c":
                t = _uneven(simulate(seed=29, parameters=PARAMETERS_C).table, seed=29)
            else:
                raise SystemExit(f"unknown table {name!r}: england, england_b or england_c")
            t[COLUMNS].to_csv(path, index=False)
        paths[name] = path
    return paths


def install_step(tag: str, env: dict) -> dict:
    """Run ``socialgradient warm`` (``make``'s install step) with ``env``'s caches."""
    run = run_sub([str(OURS), "warm"], WORK / "whole" / f"{tag}.log", timeout=1800, env=env)
    return run | {"who": "socialgradient warm"}


def ours(csv: Path, tag: str, env: dict | None = None) -> dict:
    out = WORK / "whole" / f"out_{tag}"
    cmd = [str(OURS), "fit", str(csv), "--outcome", "referrals", "--out", str(out), "--no-progress"]
    log = WORK / "whole" / f"{tag}.log"
    ledger = LEDGER / csv.stem  # one ledger per table: a project of its own
    env = (env or dict(os.environ)) | {"SOCIALGRADIENT_LEDGER": str(ledger)}
    run = run_sub(cmd, log, timeout=1800, env=env)
    summary = json.loads((out / "release" / "summary.json").read_text())
    d = summary["diagnostics"]
    timed = re.search(r"compile ([\d.]+) s, sampling ([\d.]+) s", log.read_text())
    return run | {
        "who": "socialgradient",
        "verdict": d["verdict"],
        "rhat_max": d["rhat_max"],
        "compile_s": float(timed[1]),
        "sampling_s": float(timed[2]),
        "ess_bulk_min": d["ess_bulk_min"],
        "divergences": d["divergences"],
        "gradient": summary["gradient_mean_la"]["median"],
    }


def glmmtmb(csv: Path, tag: str) -> dict:
    result = WORK / "whole" / f"{tag}.json"
    cmd = [
        "Rscript",
        str(PEERS_R),
        str(csv),
        "referrals",
        str(result),
        "--worker",
        "glmmtmb_nb",
        "--cores",
        "2",
    ]
    run = run_sub(cmd, WORK / "whole" / f"{tag}.log", timeout=1800)
    r = json.loads(result.read_text())
    return run | {
        "who": "glmmTMB",
        "status": r.get("status"),
        "converged": r.get("converged"),
        "fit_s": r.get("wall_s"),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--tables", nargs="+", default=["england", "england_b", "england_c"])
    p.add_argument("--no-first-run", action="store_true")
    p.add_argument("--no-warm", action="store_true", help="first run without the install step")
    args = p.parse_args(argv)
    shutil.rmtree(LEDGER, ignore_errors=True)
    record = {"date": now(), "uptime_before": uptime(), "runs": args.runs, "fits": []}
    for name, csv in tables(args.tables).items():
        if not args.no_first_run:
            with tempfile.TemporaryDirectory() as cold:
                # PyTensor keeps its numba cache in base_compiledir/numba, not compiledir
                env = os.environ | {
                    "NUMBA_CACHE_DIR": f"{cold}/numba",
                    "PYTENSOR_FLAGS": f"base_compiledir={cold}/pytensor",
                    "SOCIALGRADIENT_NUTPIE_CACHE_DIR": f"{cold}/callbacks",
                }
                warmed = None if args.no_warm else install_step(f"{name}_install", env)
                fit = ours(csv, f"{name}_first", env=env)
            if warmed is not None:
                fit["install_step_s"] = warmed["process_wall_s"]
            record["fits"].append(fit | {"table": name, "run": "first"})
            print(name, "first", f"{fit['process_wall_s']:.1f}s", flush=True)
        # one untimed run into the usual caches: the timed runs below meet a table whose
        # structure was fitted before on this machine (the compiled callbacks cached)
        fit = ours(csv, f"{name}_warmup")
        record["fits"].append(fit | {"table": name, "run": "warm-up"})
        print(name, "warm-up", f"{fit['process_wall_s']:.1f}s", flush=True)
        for i in range(args.runs):
            pair = [lambda: ours(csv, f"{name}_ours_{i}"), lambda: glmmtmb(csv, f"{name}_tmb_{i}")]
            for run in pair if i % 2 == 0 else pair[::-1]:
                fit = run() | {"table": name, "run": i}
                record["fits"].append(fit)
                print(name, i, fit["who"], f"{fit['process_wall_s']:.1f}s", flush=True)
    record["uptime_after"] = uptime()
    (BENCH / "whole.json").write_text(json.dumps(record, indent=1, default=str))
    (BENCH / "whole.md").write_text(markdown(record))
    print((BENCH / "whole.md").read_text())


def markdown(record: dict) -> str:
    lines = [
        "# Whole processes: `socialgradient fit` vs glmmTMB nbinom2",
        "",
        f"Generated by `bench/whole.py` ({record['date']}; load before: "
        f"{record['uptime_before'].split('load average:')[-1].strip()}, after: "
        f"{record['uptime_after'].split('load average:')[-1].strip()}). "
        "Median of the runs; wall = process start to exit.",
        "",
        "| table | who | runs | wall s (median) | walls s | compile s | sampling s | "
        "peak MB | R-hat max | bulk ESS min | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    tables_ = dict.fromkeys(f["table"] for f in record["fits"])
    ratios = []
    for table in tables_:
        medians = {}
        for who in ("socialgradient", "glmmTMB"):
            fits = [
                f
                for f in record["fits"]
                if f["table"] == table and f["who"] == who and f["run"] not in ("first", "warm-up")
            ]
            if not fits:
                continue
            walls = [f["process_wall_s"] for f in fits]
            medians[who] = statistics.median(walls)
            ours_ = who == "socialgradient"
            lines.append(
                f"| {table} | {who} | {len(fits)} | {medians[who]:.1f} | "
                f"{', '.join(f'{w:.1f}' for w in walls)} | "
                + (
                    f"{', '.join(f'{f["compile_s"]:.1f}' for f in fits)} | "
                    f"{', '.join(f'{f["sampling_s"]:.1f}' for f in fits)} | "
                    if ours_
                    else "– | – | "
                )
                + f"{max(f['tree_peak_rss_mb'] for f in fits):.0f} | "
                + (
                    f"{max(f['rhat_max'] for f in fits):.3f} | "
                    f"{min(f['ess_bulk_min'] for f in fits):,.0f} | "
                    f"{', '.join(sorted({f['verdict'] for f in fits}))} |"
                    if ours_
                    else f"– | – | {'converged' if all(f['converged'] for f in fits) else 'NOT'} |"
                )
            )
        labels = {
            "first": "first run after a fresh install (its install step's `warm`: "
            + ", ".join(
                f"{f['install_step_s']:.1f} s"
                for f in record["fits"]
                if f["table"] == table and f["run"] == "first" and "install_step_s" in f
            )
            + ")"
            if any("install_step_s" in f for f in record["fits"] if f["table"] == table)
            else "first run after a fresh install (empty caches, no install step)",
            "warm-up": "warm-up (untimed above; its table's first fit unless an "
            "earlier bench cached it)",
        }
        for f in record["fits"]:
            if f["table"] == table and f["run"] in labels:
                lines.append(
                    f"| {table} | socialgradient, {labels[f['run']]} | 1 | "
                    f"{f['process_wall_s']:.1f} | | {f.get('compile_s', '')} | "
                    f"{f.get('sampling_s', '')} | "
                    f"{f['tree_peak_rss_mb']:.0f} | {f['rhat_max']:.3f} | "
                    f"{f['ess_bulk_min']:,.0f} | {f['verdict']} |"
                )
        if len(medians) == 2:
            ratios.append(
                f"* {table}: ours / glmmTMB = {medians['socialgradient'] / medians['glmmTMB']:.2f}"
            )
        first = [f for f in record["fits"] if f["table"] == table and f["run"] == "first"]
        if first and "glmmTMB" in medians:
            ratios.append(
                f"* {table}: first run after a fresh install / glmmTMB = "
                f"{first[0]['process_wall_s'] / medians['glmmTMB']:.2f}"
            )
    note = (
        [f"First runs: {record['first_runs_remeasured']}.", ""]
        if "first_runs_remeasured" in record
        else []
    )
    return "\n".join(lines + ["", *ratios, "", *note])


if __name__ == "__main__":
    main()
