"""Benchmark the national social-gradient model: speed, memory, gradient cost, peers, scaling.

Usage (from the repository root)::

    .venv/bin/python bench/run.py [--quick] [--only SECTIONS] [--peers] [--scaling]

Sections (``--only main,variants,grad,peers,scaling``; default: main, variants, grad, plus
peers/scaling when their flags are given):

* ``main``      family x sampler fits of the default data, each in a fresh subprocess;
* ``variants``  nutpie NB with ``adaptation="low_rank"`` and with fewer tune/draws;
* ``grad``      cost of one log density + gradient evaluation (PyTensor C / Numba / JAX,
                the textbook per-LSOA likelihood, and a NumPy lower bound);
* ``peers``     lme4 / glmmTMB / brms via ``bench/peers/peers.R`` and agreement checks;
* ``scaling``   wall time and ESS/s as LSOA rows and LAs grow (generated tables).

Every fit runs in its own ``python bench/run.py _fit ...`` subprocess; its peak memory is the
largest resident set size of the subprocess *tree* (polled from ``/proc`` every 0.1 s, so
PyMC's per-chain worker processes count too), alongside ``ru_maxrss`` of the process itself.
Results are merged into ``bench/results.json`` section by section (a later run of one section
replaces only that section) and ``bench/results.md`` is regenerated from it every time.

This file is the entry point; the work is in ``harness.py`` (paths, a fit in a subprocess),
``workers.py`` (what the subprocesses run), ``sections.py`` (the sections) and ``report.py``
(environment, ``results.json``, ``results.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from harness import WORK, uptime
from report import environment, load_results, save_results
from sections import section_grad, section_main, section_peers, section_scaling, section_variants
from workers import worker_fit, worker_grad


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_fit":
        p = argparse.ArgumentParser()
        for k, t, d in (
            ("--data", str, None),
            ("--outcome", str, "referrals"),
            ("--family", str, "negbin"),
            ("--sampler", str, "nutpie"),
            ("--chains", int, 4),
            ("--tune", int, 1000),
            ("--draws", int, 1000),
            ("--adaptation", str, "diag"),
            ("--seed", int, 2021),
            ("--max-predictive-draws", int, 1000),
            ("--out", str, None),
        ):
            p.add_argument(k, type=t, default=d)
        worker_fit(p.parse_args(argv[1:]))
        return 0
    if argv and argv[0] == "_grad":
        p = argparse.ArgumentParser()
        p.add_argument("--data")
        p.add_argument("--outcome", default="referrals")
        p.add_argument("--min-seconds", type=float, default=3.0)
        p.add_argument("--out")
        worker_grad(p.parse_args(argv[1:]))
        return 0

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small smoke run (2 chains, few draws)")
    p.add_argument(
        "--only", default=None, help="comma-separated sections: main,variants,grad,peers,scaling"
    )
    p.add_argument("--peers", action="store_true", help="also run the R peers")
    p.add_argument("--scaling", action="store_true", help="also run the scaling grid")
    p.add_argument("--samplers", default="nutpie,pymc,numpyro")
    p.add_argument(
        "--all-families",
        action="store_true",
        help="also fit Poisson with pymc/numpyro (default: NB only for those)",
    )
    p.add_argument("--brms-timeout", type=int, default=900, help="seconds per brms fit")
    p.add_argument(
        "--brms-national-timeout",
        type=int,
        default=900,
        help="seconds for brms_nb on the national data",
    )
    p.add_argument("--subset-las", type=int, default=20)
    p.add_argument("--fresh", action="store_true", help="discard the previous results.json")
    p.add_argument(
        "--regen",
        action="store_true",
        help="only rewrite results.md from results.json (and bench/findings.md)",
    )
    a = p.parse_args(argv)
    if a.regen:
        save_results(load_results())
        return 0
    sections = (
        a.only.split(",")
        if a.only
        else ["main", "variants", "grad"] + ["peers"] * a.peers + ["scaling"] * a.scaling
    )
    WORK.mkdir(parents=True, exist_ok=True)
    res = {} if a.fresh else load_results()
    cmd = "python bench/run.py " + " ".join(argv)
    res.setdefault("commands", [])
    res["commands"] = [c for c in res["commands"] if c != cmd] + [cmd]
    res["environment"] = environment()
    res.setdefault("load", {})[f"before `{cmd}`"] = uptime()
    res["quick"] = a.quick
    save_results(res)
    for s in sections:
        t0 = time.perf_counter()
        if s == "main":
            res["main"] = section_main(a.quick, a.samplers.split(","), a.all_families)
        elif s == "variants":
            res["variants"] = section_variants(a.quick)
        elif s == "grad":
            res["grad"] = section_grad(a.quick)
        elif s == "peers":
            res["peers"] = section_peers(
                a.quick, res.get("main", []), a.brms_timeout, a.subset_las, a.brms_national_timeout
            )
        elif s == "scaling":
            res["scaling"] = section_scaling(a.quick)
        else:
            raise SystemExit(f"unknown section {s!r}")
        res.setdefault("section_seconds", {})[s] = time.perf_counter() - t0
        save_results(res)
    res["load"][f"after `{cmd}`"] = uptime()
    save_results(res)
    print(json.dumps(res.get("headline"), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
