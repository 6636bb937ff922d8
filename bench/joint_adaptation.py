"""The joint threshold model under nutpie's mass-matrix adaptations: ESS per second.

    .venv/bin/python bench/joint_adaptation.py diag 300 300
    .venv/bin/python bench/joint_adaptation.py low_rank 300 300

Builds ``models/joint_thresholds.toml`` on the default England exactly as
``socialgradient.sampling.joint.fit`` does, samples 4 chains of DRAWS after TUNE with ``adaptation=ADAPT`` and prints one JSON
line: compile and sampling seconds, mean leapfrog steps per draw, divergences, the smallest
bulk ESS over every posterior variable (and which), max R-hat and ESS per second of
sampling. Results are recorded in ``bench/README.md``.
"""

import json
import sys
import time
from pathlib import Path

import nutpie
from arviz_stats import ess, rhat

from socialgradient import api
from socialgradient.model import joint
from socialgradient.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def main(adapt: str, draws: int, tune: int) -> dict:
    spec = load_spec(ROOT / "models" / "joint_thresholds.toml")
    datas = api.encode(api.default_data(), spec)
    model = joint.build(datas, spec, joint.choose(datas, spec))
    start = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    tree = nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=4,
        seed=2021,
        progress_bar=False,
        save_warmup=False,
        adaptation=adapt,
        target_accept=spec.target_accept,
    )
    sampling_s = time.perf_counter() - start
    post, stats = tree["posterior"].to_dataset(), tree["sample_stats"].to_dataset()
    bulk, r = ess(post, method="bulk"), rhat(post)
    mins = {v: float(bulk[v].min()) for v in bulk.data_vars}
    worst = min(mins, key=mins.get)
    return {
        "adapt": adapt,
        "draws": draws,
        "tune": tune,
        "compile": compile_s,
        "sampling": sampling_s,
        "n_steps": float(stats["n_steps"].mean()),
        "divergences": int(stats["diverging"].sum()),
        "ess_min": mins[worst],
        "ess_var": worst,
        "rhat_max": max(float(r[v].max()) for v in r.data_vars),
        "ess_per_s": mins[worst] / sampling_s,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
