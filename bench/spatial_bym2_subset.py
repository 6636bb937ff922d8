"""BYM2 mixing on a subset of LAs: which parameters mix badly, and the correlations behind it.

Fits the first ``N`` LAs of a table (the default synthetic England, or a CSV) with
``spatial = "bym2"`` on the shipped ``synthetic`` graph (restricted to their LSOAs), fixed
draws (2 chains x (D + D), nutpie), and prints one JSON line: time, divergences, mean tree
depth, the largest R-hat and smallest bulk ESS of each reported parameter, the quantiles of
``b_w``, ``spatial_sd``, ``spatial_rho`` (and the NB ``phi``), and the diagnostics of issue
29: the median over LAs of the correlation between an LA's intercept and the mean of its
LSOAs' spatial effect (and of ``theta``, ``phi``), the largest |LA mean| of the effect, and
for the negative binomial the correlation of ``1/sqrt(phi)`` with the iid SD
``spatial_sd * sqrt(1 - spatial_rho)``::

    PYTHONPATH=src python bench/spatial_bym2_subset.py poisson default 30 600
    PYTHONPATH=src python bench/spatial_bym2_subset.py poisson field.csv 30 600

The negative binomial needs ``--allow-negbin`` (the term refuses it; for the record, this
bypasses the refusal by encoding with the Poisson family and building the NB model).
"""

from __future__ import annotations

import json
import sys
import time

import arviz_stats as az
import numpy as np
import nutpie
import pandas as pd

import socialgradient.api as sg
from socialgradient.model.terms import SpatialEffect
from socialgradient.sampling.fit import model_of
from socialgradient.spec import Sampling, Spec


def main(family: str, source: str, n_la: int, draws: int, seed: int = 2021) -> dict:
    table = sg.default_data() if source == "default" else pd.read_csv(source)
    sub = table[table["la"].isin(table["la"].unique()[:n_la])].reset_index(drop=True)
    sampling = Sampling(draws=draws, tune=draws, chains=2, seed=seed)
    spec = Spec(
        "referrals", family=family, spatial="bym2", neighbours="synthetic", sampling=sampling
    )
    # encoded as Poisson: the term refuses the negative binomial (--allow-negbin bypasses it)
    data = sg.encode(
        sub, Spec("referrals", family="poisson", spatial="bym2", neighbours="synthetic")
    )
    model = model_of(data, spec)[0]
    start = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    tree = nutpie.sample(compiled, draws=draws, tune=draws, chains=2, seed=seed, progress_bar=False)
    sampling_s = time.perf_counter() - start
    post, stats = tree["posterior"].to_dataset(), tree["sample_stats"].to_dataset()
    names = ["a", "b_w", "b_b", "b_x", "la_sd", "la_corr", "la_effect", "phi"]
    names = [n for n in [*names, "spatial_sd", "spatial_rho"] if n in post]
    rhat, ess = az.rhat(post[names]), az.ess(post[names], method="bulk")

    def flat(name: str) -> np.ndarray:
        x = post[name].transpose("chain", "draw", ...)
        return x.values.reshape(-1, *x.shape[2:])

    def q(name: str) -> list[float]:
        return [round(float(v), 4) for v in np.quantile(flat(name), [0.5, 0.025, 0.975])]

    codes = data.term(SpatialEffect).codes
    la_of = sub.assign(lsoa=sub["lsoa"].astype(str)).groupby("lsoa")["la"].first()
    la = pd.Index(np.asarray(data.la)).get_indexer(la_of.loc[codes].to_numpy())
    n = np.bincount(la)

    def la_mean(x: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(la, weights=row) for row in x]) / n

    intercept = flat("la_effect")[:, :, 0]

    def median_corr(x: np.ndarray) -> float:
        c = [np.corrcoef(intercept[:, j], x[:, j])[0, 1] for j in range(len(n))]
        return round(float(np.nanmedian(c)), 3)

    effect = flat("spatial_effect").astype(float)
    out = {
        "family": family,
        "table": source,
        "n_la": n_la,
        "lsoas": len(sub),
        "draws": f"2 x ({draws} + {draws})",
        "compile_s": round(compile_s, 1),
        "sampling_s": round(sampling_s, 1),
        "divergences": int(stats["diverging"].values.sum()),
        "mean_depth": round(float(stats["depth"].values.mean()), 2),
        "step_size": round(float(stats["step_size"].values.mean()), 4),
        "rhat_max": {k: round(float(rhat[k].max()), 3) for k in names},
        "ess_bulk_min": {k: int(ess[k].min()) for k in names},
        "b_w": q("b_w"),
        "spatial_sd": q("spatial_sd"),
        "spatial_rho": q("spatial_rho"),
        "corr_intercept_la_mean_effect": median_corr(la_mean(effect)),
        "corr_intercept_la_mean_theta": median_corr(la_mean(flat("spatial_theta"))),
        "corr_intercept_la_mean_phi": median_corr(la_mean(flat("spatial_phi"))),
        "max_abs_la_mean_effect": float(np.abs(la_mean(effect)).max()),
    }
    if "phi" in post:
        iid_sd = flat("spatial_sd") * np.sqrt(1 - flat("spatial_rho"))
        out["phi"] = q("phi")
        out["corr_inv_sqrt_phi_iid_sd"] = round(
            float(np.corrcoef(1 / np.sqrt(flat("phi")), iid_sd)[0, 1]), 3
        )
    return out


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if args[0] == "negbin" and "--allow-negbin" not in sys.argv:
        raise SystemExit("the BYM2 term refuses the negative binomial: add --allow-negbin")
    print(json.dumps(main(args[0], args[1], int(args[2]), int(args[3]))), flush=True)
