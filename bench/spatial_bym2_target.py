"""The default stop-at-target fit of a table (Poisson; BYM2 or none) and its verdict, as JSON.

    PYTHONPATH=src python bench/spatial_bym2_target.py TABLE.csv bym2   # or "" for none

The spec of ``sg.fit(table, "referrals", ...)``: 4 chains, 500 tuning, up to 4,000 draws
per chain to R-hat <= 1.01 and bulk and tail ESS >= 400; the neighbours ``synthetic``.
Set ``SOCIALGRADIENT_LEDGER`` to a scratch folder if anything downstream writes a release.
"""

import json
import resource
import sys
import time

import numpy as np
import pandas as pd

import socialgradient.api as sg
from socialgradient.results import checks

src, kind = sys.argv[1], sys.argv[2]
table = pd.read_csv(src)
t = time.perf_counter()
tree = sg.fit(
    table,
    "referrals",
    family="poisson",
    spatial=kind,
    neighbours="synthetic",
    progressbar=False,
    pointwise=False,
)
fit_s = time.perf_counter() - t
post = tree["posterior"]
names = checks.PARAMETERS + (("spatial_sd", "spatial_rho") if kind else ())
diag = checks.diagnose(tree, names)


def q(n):
    return [round(float(v), 4) for v in np.quantile(post[n].values, [0.5, 0.025, 0.975])]


out = {
    "table": src,
    "spatial": kind or "none",
    "family": "poisson",
    "fit_s": round(fit_s, 1),
    "sampling_s": round(float(tree.attrs["sampling_seconds"]), 1),
    "compile_s": round(float(tree.attrs["compile_seconds"]), 1),
    "draws_per_chain": int(post.sizes["draw"]),
    "chains": int(post.sizes["chain"]),
    "target": json.loads(tree.attrs.get("sampling_target", "{}")),
    "verdict": diag["verdict"],
    "rhat_max": round(diag["rhat_max"], 4),
    "ess_bulk_min": round(diag["ess_bulk_min"]),
    "ess_tail_min": round(diag["ess_tail_min"]),
    "worst_rhat": diag["worst_rhat"],
    "worst_ess": diag["worst_ess"],
    "reasons": diag["reasons"],
    "divergences": int(tree["sample_stats"]["diverging"].values.sum()),
    "b_w": q("b_w"),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
}
if kind:
    import arviz_stats as az

    ds = post.to_dataset()[["spatial_sd", "spatial_rho"]]
    rh, es = az.rhat(ds), az.ess(ds, method="bulk")
    out |= {
        "spatial_sd": q("spatial_sd"),
        "spatial_rho": q("spatial_rho"),
        "spatial_rhat_ess": {
            n: [round(float(rh[n]), 4), round(float(es[n]))] for n in ("spatial_sd", "spatial_rho")
        },
    }
print(json.dumps(out, default=str), flush=True)
