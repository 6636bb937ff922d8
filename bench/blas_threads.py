"""One log density + gradient evaluation with BLAS's default threads and with one thread.

    PYTHONPATH=src .venv/bin/python bench/blas_threads.py [CALLS]

Builds the joint threshold model (``models/joint_thresholds.toml``) and the referrals model
(``models/national_referrals.toml``) of the default England as ``bench/joint_profile.py``
does, compiles each for nutpie (numba) and times CALLS calls of the compiled log density and
gradient at PyMC's initial point, alternating BLAS's default thread count and one thread
(:func:`socialgradient.util.threads.one_blas_thread`, what ``socialgradient.sampling.fit``
puts around nutpie's sampling), three rounds each. Prints one JSON line per model and setting:
the median wall and CPU ms per evaluation, the log density (the same in both settings), the
load average. Results: ``bench/blas_threads.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from joint_profile import joint_model, referrals_model


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(calls: int) -> None:
    import nutpie
    from threadpoolctl import threadpool_info

    from socialgradient.util.threads import one_blas_thread

    default = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
    for name, build in (("joint", joint_model), ("referrals", referrals_model)):
        model = build()[0]
        fn = nutpie.compile_pymc_model(model).logp_func
        fn.trust_input = True
        point = model.initial_point()
        x0 = np.concatenate([np.ravel(point[model.rvs_to_values[v].name]) for v in model.free_RVs])
        times: dict[str, list[tuple[float, float]]] = {"default": [], "one": []}
        logp = {}
        for _ in range(3):
            for setting in ("default", "one"):
                with one_blas_thread() if setting == "one" else contextlib.nullcontext():
                    logp[setting] = float(fn(x0)[0])
                    wall, cpu = time.perf_counter(), time.process_time()
                    for _ in range(calls):
                        fn(x0)
                    times[setting].append(
                        ((time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls)
                    )
        for setting, rounds in times.items():
            print(
                json.dumps(
                    {
                        "model": name,
                        "blas_threads": 1 if setting == "one" else default,
                        "wall_ms": 1e3 * statistics.median(w for w, _ in rounds),
                        "cpu_ms": 1e3 * statistics.median(c for _, c in rounds),
                        "logp": logp[setting],
                        "load": _load(),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
