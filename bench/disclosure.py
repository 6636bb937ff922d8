"""Time the disclosure gate on the three cases docs/disclosure.md reports; write bench/disclosure.json.

Run: ``.venv/bin/python bench/disclosure.py`` (about a minute on 2 cores). Each case runs in
a temporary folder with its own ledger (nothing outside it is written but the JSON):

* ``national``: the fit's published totals (the partitions of
  :func:`socialgradient.release.fit_tables.gate`: LA, deprivation decile, LA x deprivation
  quintile and national totals of referrals per LSOA) of the
  embedded synthetic England, three releases in one ledger: the first, the same again, and
  one LSOA dropped (the differencing attack of docs/disclosure.md).
* ``bridge``: attack 5's table (30 x 30 counts, two blocks of small cells joined by one
  hidden 7: 451 linked hidden cells), written with the default rule.
* ``census``: ``census aggregate --by age_band`` on simulated returns
  (``simulate_records(seed=4, scale=0.05)``), the whole ``write_table_set``.

Times are wall-clock seconds of one run; the check's own counts (quantities checked, solves,
largest linked set) come from the public log the gate writes.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

import socialgradient
import socialgradient.api as sg
from socialgradient.data.census import linkage
from socialgradient.data.synthetic import records
from socialgradient.release import disclosure, la_bands, table_sets
from socialgradient.release import ledger as ledgers
from socialgradient.results import checks

OUT = Path(__file__).with_name("disclosure.json")


def national(folder: Path) -> dict:
    """Three releases of the default table's LA, decile and national referral totals."""
    table = sg.default_data()
    led = ledgers.Ledger(folder / "ledger")
    runs = {}
    keep = np.ones(len(table), bool)
    for name in ("first", "again", "dropped"):
        if name == "dropped":
            keep[int(np.argmax(table["referrals"].to_numpy()))] = False
        t = table[keep]
        start = time.perf_counter()
        la = t["la"].astype(str).to_numpy()
        decile = checks.deprivation_decile(t["income"].to_numpy())
        parts = disclosure.protect_partitions(
            t["referrals"].to_numpy(),
            {"la": la, "decile": decile, la_bands.PARTITION: la_bands.cells(la, decile)},
            units=t["lsoa"].astype(str).to_numpy(),
            earlier=led.publications(measures=["referrals"]),
            keys=led.keys(),
            name="fit totals",
            measure="referrals",
        )
        seconds = time.perf_counter() - start
        led.record([parts.publication], command=f"bench/disclosure.py {name}")
        runs[name] = {
            "seconds": round(seconds, 2),
            "lsoas": int(keep.sum()),
            "las": int(t["la"].nunique()),
            "hidden": {k: int(v.sum()) for k, v in parts.hidden.items()},
            "check": parts.check,
        }
    return runs


def bridge_table(n: int = 30) -> pd.DataFrame:
    """Attack 5's table (tests/test_attacks.py attacks this one).

    Two 15 x 15 blocks of small counts (hidden) joined by one hidden 7 at (14, 15): 451
    linked hidden cells; rows 0-14 minus columns 0-14 give the 7 exactly.
    """
    rng = np.random.default_rng(5)
    v = rng.integers(20, 61, (n, n))
    v[:15, :15] = rng.integers(1, 10, (15, 15))
    v[15:, 15:] = rng.integers(1, 10, (15, 15))
    v[14, 15] = 7
    frame = pd.DataFrame(v, columns=[f"c{j}" for j in range(n)])
    frame.insert(0, "r", [f"r{i:02d}" for i in range(n)])
    return frame


def _last_log(folder: Path) -> dict:
    lines = (folder / disclosure.LOG_NAME).read_text(encoding="utf-8").splitlines()
    return json.loads(lines[-1])


def bridge(folder: Path) -> dict:
    """Attack 5's table through ``write_table`` with the default rule."""
    frame = bridge_table()
    columns = [c for c in frame.columns if c != "r"]
    start = time.perf_counter()
    disclosure.write_table(
        frame,
        folder / "t.csv",
        level="la",
        count_columns=columns,
        group_columns="r",
        ledger=folder / "ledger",
    )
    seconds = time.perf_counter() - start
    shown = pd.read_csv(folder / "t.csv")[columns].to_numpy(dtype=float)
    primary = int(((frame[columns].to_numpy() > 0) & (frame[columns].to_numpy() < 10)).sum())
    return {
        "seconds": round(seconds, 2),
        "cells": int(shown.size),
        "primary": primary,
        "hidden": int(np.isnan(shown).sum()),
        "check": _last_log(folder)["check"],
    }


def census(folder: Path) -> dict:
    """``census aggregate --by age_band`` on simulated returns: the whole table set."""
    recs = records.simulate_records(seed=4, scale=0.05)
    table, _ = linkage.aggregate(recs, by=["age_band"])
    attributes = {"la", "income", "rural", "children", "lsoa", "age_band"}
    counts = [c for c in table.columns if c not in attributes]
    per_la = table.groupby(["la", "age_band"], observed=True)[counts].sum()
    start = time.perf_counter()
    table_sets.write_table_set(
        folder / "out",
        table,
        counts=counts,
        strata=["age_band"],
        report={},
        command="census aggregate",
        ledger=folder / "ledger",
    )
    seconds = time.perf_counter() - start
    log = next((folder / "out").rglob(disclosure.LOG_NAME)).read_text(encoding="utf-8")
    entry = next(e for e in map(json.loads, log.splitlines()) if "check" in e)
    return {
        "seconds": round(seconds, 2),
        "las": int(table["la"].nunique()),
        "bands": int(table["age_band"].nunique()),
        "counts": len(counts),
        "cells": int(per_la.size),
        "small_cells": int(((per_la > 0) & (per_la < 10)).to_numpy().sum()),
        "hidden": entry["suppressed"],
        "check": entry["check"],
    }


def main() -> None:
    """Run the three cases and write bench/disclosure.json."""
    result = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, Python "
        f"{sys.version.split()[0]}, socialgradient {socialgradient.__version__}",
    }
    for name, case in (("national", national), ("bridge", bridge), ("census", census)):
        with tempfile.TemporaryDirectory() as tmp:
            result[name] = case(Path(tmp))
        print(name, json.dumps(result[name])[:400], flush=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8", newline="\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
