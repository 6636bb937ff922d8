"""One log density + gradient evaluation compiled with numba's fast-math on and off.

    PYTHONPATH=src .venv/bin/python bench/fastmath.py [CALLS] [ROUNDS] [MODELS...]

Builds the referrals model (``models/national_referrals.toml``) and the joint threshold model
of the default England as ``bench/joint_profile.py`` does, compiles each for nutpie under
PyTensor's ``numba__fastmath`` True and False (the package compiles with it off since
``sampling._nutpie_codegen.NUMERICS``: a seed's draws must not depend on PyTensor's cache), and
times CALLS calls of each at PyMC's initial point with one BLAS thread, alternating the two
settings for ROUNDS rounds. Prints one JSON line per model and setting (CPU ms per evaluation
of every round and their median, the log density) and the largest gradient difference between
the settings. Results: ``bench/blas_threads.md``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from joint_profile import joint_model, referrals_model


def main(calls: int, rounds: int, names: list[str]) -> None:
    import nutpie
    import pytensor

    from socialgradient.util.threads import one_blas_thread

    builders = {"referrals": referrals_model, "joint": joint_model}
    for name in names:
        model = builders[name]()[0]
        fns = {}
        for fastmath in (True, False):
            with pytensor.config.change_flags(numba__fastmath=fastmath):
                fns[fastmath] = nutpie.compile_pymc_model(model).logp_func
            fns[fastmath].trust_input = True
        point = model.initial_point()
        x0 = np.concatenate([np.ravel(point[model.rvs_to_values[v].name]) for v in model.free_RVs])
        times: dict[bool, list[float]] = {True: [], False: []}
        out = {}
        with one_blas_thread():
            for _ in range(rounds):
                for fastmath in (True, False):
                    out[fastmath] = fns[fastmath](x0)
                    start = time.process_time()
                    for _ in range(calls):
                        fns[fastmath](x0)
                    times[fastmath].append((time.process_time() - start) / calls)
        for fastmath in (True, False):
            line = {
                "model": name,
                "fastmath": fastmath,
                "cpu_ms_rounds": [round(1e3 * t, 3) for t in times[fastmath]],
                "cpu_ms": 1e3 * statistics.median(times[fastmath]),
                "logp": float(out[fastmath][0]),
                "load": os.getloadavg()[0],
            }
            print(json.dumps(line), flush=True)
        print(
            json.dumps(
                {
                    "model": name,
                    "max_grad_diff": float(np.max(np.abs(out[True][1] - out[False][1]))),
                }
            )
        )


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        int(args[0]) if args else 300,
        int(args[1]) if len(args) > 1 else 9,
        args[2:] or ["referrals", "joint"],
    )
