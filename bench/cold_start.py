"""Cold start: the first `socialgradient fit` after a fresh install, with and without `warm`.

Every cache a fit compiles into (PyTensor's base_compiledir, which holds its numba cache;
numba's cache dir; the callbacks' cache, ``SOCIALGRADIENT_NUTPIE_CACHE_DIR``) is pointed at
new, empty folders, as on a new machine (``bench/whole.py`` does the same); the user's own
caches are never touched. Then, as processes started from the shell:

1. ``baseline``: the first ``fit`` of the default England with those caches empty (no warm);
2. ``warm``: the install step (``socialgradient warm``) into a second set of empty caches;
3. ``warm again``: the same command once more (already warm: nothing to compile);
4. ``fit england``: the first ``fit`` of the default England after the warm step;
5. ``fit england_c``: the first ``fit`` of a table the warm step never saw
   (``bench/whole.py``'s england_c: other parameters, uneven LA sizes, but England's 150 LAs,
   so the same model code: the callbacks the warm step compiled);
6. ``fit england_b``: a table of another model code (``bench/whole.py``'s england_b: 120
   LAs), whose callbacks no run compiled: it pays its own structure, with PyTensor's op
   functions compiled by the warm step;
7. ``run`` (``--run``): ``make run``'s command after the warm step.

Each row: wall (process start to exit), CPU seconds of the process tree (user + system,
from ``getrusage``: comparable when other work loads the machine), and for fits the log
line's compile and sampling seconds.

    /work/main/.venv/bin/python bench/cold_start.py [--run] [--no-baseline] [--tables ...]

Writes ``bench/cold_start.json`` (``--append``: adds this invocation to its ``runs``);
``bench/cold_start.md`` is written by hand from it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import whole
from harness import BENCH, ROOT, WORK, now, run_sub, uptime

CLI = [sys.executable, "-m", "socialgradient.cli"]


def cold_env(folder: str) -> dict:
    """This environment with every compilation cache in ``folder`` (empty) and src/ first.

    The release ledger too is ``folder``'s own (``SOCIALGRADIENT_LEDGER``; ``fit`` below gives
    each fit a ledger of its own), so no fit is checked against this machine's earlier
    releases, as ``bench/whole.py`` does: its tables are unrelated data with the same LSOA codes.
    """
    return os.environ | {
        "SOCIALGRADIENT_LEDGER": f"{folder}/ledger",
        "NUMBA_CACHE_DIR": f"{folder}/numba",
        "PYTENSOR_FLAGS": f"base_compiledir={folder}/pytensor",
        "SOCIALGRADIENT_NUTPIE_CACHE_DIR": f"{folder}/callbacks",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }


#: this invocation's logs (by its process id)
LOGS = WORK / "cold_start" / f"logs_{os.getpid()}"


def timed(name: str, args: list[str], env: dict) -> dict:
    """Run ``socialgradient ARGS``; its wall, CPU seconds, and compile/sampling seconds."""
    log = LOGS / f"{name.replace(' ', '_')}.log"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = uptime().split("load average:")[-1].strip()
    run = run_sub(CLI + args, log, timeout=3600, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = log.read_text()
    seen = re.search(r"compile ([\d.]+) s, sampling ([\d.]+) s", text)
    row = run | {
        "case": name,
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "load_before": load,
        "compile_s": float(seen[1]) if seen else None,
        "sampling_s": float(seen[2]) if seen else None,
        "output": [ln for ln in text.splitlines() if ": " in ln and " s)" in ln][-4:],
    }
    print(
        f"{now()} {name}: rc {row['rc']}, wall {row['process_wall_s']:.1f} s, "
        f"cpu {row['cpu_s']} s, compile {row['compile_s']} s (load {load})",
        flush=True,
    )
    return row


def fit_args(csv: Path, tag: str) -> list[str]:
    out = WORK / "cold_start" / f"out_{tag}"
    return ["fit", str(csv), "--outcome", "referrals", "--out", str(out), "--no-progress"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", action="store_true", help="also time `socialgradient run`")
    p.add_argument("--no-baseline", action="store_true", help="skip the unwarmed first fit")
    p.add_argument(
        "--tables", nargs="+", default=["england", "england_c", "england_b"], help="fits after warm"
    )
    p.add_argument("--append", action="store_true", help="add to bench/cold_start.json's runs")
    args = p.parse_args(argv)
    tables = whole.tables(sorted({"england", *args.tables}))
    import shutil

    for old in (WORK / "cold_start").glob("out_*"):  # earlier runs' outputs
        shutil.rmtree(old)
    (WORK / "cold_start").mkdir(parents=True, exist_ok=True)
    record: dict = {"date": now(), "uptime_before": uptime(), "rows": []}
    rows = record["rows"]
    with tempfile.TemporaryDirectory(prefix="sg-cold-") as cold:
        if not args.no_baseline:
            env = cold_env(f"{cold}/baseline")
            rows.append(timed("baseline fit england", fit_args(tables["england"], "base"), env))
        env = cold_env(f"{cold}/warmed")
        rows.append(timed("warm", ["warm"], env))
        rows.append(timed("warm again", ["warm"], env))
        for name in args.tables:  # each table a project of its own: its own ledger
            own = env | {"SOCIALGRADIENT_LEDGER": f"{cold}/warmed/ledger_{name}"}
            rows.append(timed(f"fit {name}", fit_args(tables[name], name), own))
        if args.run:
            out = WORK / "cold_start"
            run = ["run", "--out", str(out / "out_run"), "--figures", str(out / "figures")]
            rows.append(timed("run", [*run, "--no-progress"], env))
    record["uptime_after"] = uptime()
    path = BENCH / "cold_start.json"
    runs = []
    if args.append and path.exists():
        kept = json.loads(path.read_text())
        runs = kept.get("runs", [kept])
    path.write_text(json.dumps({"runs": [*runs, record]}, indent=1, default=str))
    print(json.dumps(record, indent=1, default=str))


if __name__ == "__main__":
    main()
