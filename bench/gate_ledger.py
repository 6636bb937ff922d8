"""Time the disclosure gate against release ledgers of 0, 10, 60 and 200 earlier releases.

Issue 32: every ``fit``/``run`` checks its release against all earlier releases in the
ledger, so the gate must not slow down as the ledger grows. This script makes ledgers of
``N`` earlier releases of the default synthetic England (``socialgradient.api.
default_data``) in ``bench/_work/gate_ledger/`` (git-ignored) and times the fit's gate on
each: reading the ledger (``Ledger.publications``) and the cross-release check of the fit's
published totals (LA, deprivation decile, LA x deprivation band and national referrals;
:func:`socialgradient.release.disclosure.protect_partitions`, as
:func:`socialgradient.release.fit_tables.gate` calls it). Two kinds of ledger:

* ``same``: ``N`` releases of the same table (the fit of the same data, run again);
* ``mixed``: ``N`` releases cycling over four different but overlapping tables of England's
  LSOAs: all of England, its first and second half of LAs (regional fits) and another year
  (every LSOA's referrals drawn again).

Each earlier release is recorded as the gate makes it against an empty ledger (so building
a ledger of 200 takes seconds, not 200 fits). Run from the repository root::

    PYTHONPATH=src .venv/bin/python bench/gate_ledger.py             # all sizes, both kinds
    PYTHONPATH=src .venv/bin/python bench/gate_ledger.py --sizes 0 60 --kinds same

It prints one JSON line per (kind, N) and writes them to ``--json`` (default
``bench/_work/gate_ledger/times.json``). The ledgers are kept and reused (``--fresh``
makes them again), so the same ledgers can be timed with another checkout's ``src`` on
``PYTHONPATH`` (the before/after of ``bench/gate_ledger.md``). Times are wall-clock seconds
of one run in a fresh process state (the ledger's in-process read cache cleared).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

import socialgradient.api as sg
from socialgradient.release import disclosure, la_bands
from socialgradient.release import ledger as ledgers
from socialgradient.results import checks

WORK = Path(__file__).resolve().parent / "_work" / "gate_ledger"
NAME = "fit totals (la_gradients.csv, ppc.json)"  # fit_tables.TABLE


def gate(table: pd.DataFrame, led: ledgers.Ledger, earlier) -> disclosure.Partitioned:
    """Protect ``table``'s fit totals against ``earlier`` (the fit's gate, without a fit)."""
    la = table["la"].astype(str).to_numpy()
    decile = checks.deprivation_decile(table["income"].to_numpy(dtype=float))
    return disclosure.protect_partitions(
        table["referrals"].to_numpy(dtype=float),
        {"la": la, "decile": decile, la_bands.PARTITION: la_bands.cells(la, decile)},
        disclosure.Rule(),
        units=table["lsoa"].astype(str).to_numpy(),
        earlier=earlier,
        keys=led.keys(),
        name=NAME,
        measure="referrals",
    )


def tables(england: pd.DataFrame) -> list[pd.DataFrame]:
    """Return the four tables the ``mixed`` ledgers cycle over (all of England first)."""
    las = np.sort(england["la"].astype(str).unique())
    north = england["la"].astype(str).isin(las[: len(las) // 2]).to_numpy()
    again = england.copy()
    again["referrals"] = np.random.default_rng(2026).poisson(england["referrals"].to_numpy())
    return [england, england[north], england[~north], again]


def make(folder: Path, kind: str, n: int, england: pd.DataFrame, fresh: bool) -> ledgers.Ledger:
    """Return a ledger of ``n`` earlier releases of ``kind`` in ``folder`` (made if absent)."""
    led = ledgers.Ledger(folder)
    if fresh and folder.exists():
        shutil.rmtree(folder)
    if folder.exists() and len(led.files()) == n:
        return led
    shutil.rmtree(folder, ignore_errors=True)
    led = ledgers.Ledger(folder)
    led.secret  # noqa: B018 (created now: every ledger of the bench has its own)
    kinds = tables(england) if kind == "mixed" else [england]
    pubs = [gate(t, led, []).publication for t in kinds]
    for i in range(n):
        led.record([pubs[i % len(pubs)]], command=f"bench/gate_ledger.py {kind} {i}")
    return led


def time_gate(led: ledgers.Ledger, england: pd.DataFrame) -> dict:
    """Time reading ``led`` and the gate of all of England against it."""
    ledgers._read.cache_clear()
    t0 = time.perf_counter()
    earlier = led.publications(measures=["referrals"])
    t1 = time.perf_counter()
    parts = gate(england, led, earlier)
    t2 = time.perf_counter()
    actions = json.dumps(parts.actions).encode()
    hidden = b"".join(h.tobytes() for h in parts.hidden.values())
    return {
        "read_s": round(t1 - t0, 2),
        "check_s": round(t2 - t1, 2),
        "gate_s": round(t2 - t0, 2),
        "hidden": parts.n_hidden,
        "actions": len(parts.actions),
        "actions_sha": hashlib.sha256(actions).hexdigest()[:12],
        "hidden_sha": hashlib.sha256(hidden).hexdigest()[:12],
        "check": parts.check,
    }


def main() -> None:
    """Make the ledgers, time the gate on each, print and write the results."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[0, 10, 60, 200])
    p.add_argument("--kinds", nargs="+", default=["same", "mixed"], choices=["same", "mixed"])
    p.add_argument("--work", type=Path, default=WORK)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--label", default="", help="a name for this run (e.g. before, after)")
    p.add_argument("--fresh", action="store_true", help="make the ledgers again")
    args = p.parse_args()
    england = sg.default_data()
    rows = []
    for kind in args.kinds:
        for n in args.sizes:
            led = make(args.work / f"{kind}_{n}", kind, n, england, args.fresh)
            row = {"label": args.label, "kind": kind, "earlier": n, **time_gate(led, england)}
            row["load_average"] = [round(x, 2) for x in os.getloadavg()]
            print(json.dumps(row), flush=True)
            rows.append(row)
    out = args.json or args.work / f"times{'_' + args.label if args.label else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
