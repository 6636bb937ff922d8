"""Why ``spatial_rho`` mixes badly on data without a spatial field: BYM2 on a subset of LAs.

Fits the first ``N`` LAs of the default synthetic England (no spatial field) with Poisson +
BYM2 on the shipped ``synthetic`` graph, 2 chains x (D + D) with nutpie (compiled as
``socialgradient`` compiles, fast-math off), and prints one JSON line per seed: sampling time,
step size, mean tree depth, divergences; ``spatial_rho``'s and ``spatial_sd``'s R-hat and
bulk ESS (per 1,000 draws and per second of sampling); the posterior correlations across draws
of ``logit(rho)`` with ``log(sd)``, with the scale of the ICAR and iid fields (``log`` of the
root mean square of ``phi`` and ``theta``) and with the iid SD ``sd * sqrt(1 - rho)`` and the
spatial SD ``sd * sqrt(rho)``; and the lag-1 autocorrelation of each of those::

    PYTHONPATH=src python bench/bym2_rho.py 30 300 2021 2022
    PYTHONPATH=src python bench/bym2_rho.py 30 300 2021 2022 --adaptation=low_rank
    PYTHONPATH=src python bench/bym2_rho.py 30 300 2021 2022 --phi=eigen
    PYTHONPATH=src python bench/bym2_rho.py 30 300 2021 2022 --phi=sparse
    PYTHONPATH=src python bench/bym2_rho.py 30 300 2021 2022 --phi=sparse --field=0.5,0.9
    PYTHONPATH=src python bench/bym2_rho.py 30 300 2021 2022 --phi=sparse --field=0.3,0.8,poisson
    PYTHONPATH=src python bench/bym2_rho.py 30 --spectrum
    PYTHONPATH=src python bench/bym2_rho.py 30 --cost          # logp+grad, both forms
    PYTHONPATH=src python bench/bym2_rho.py 0 --cost           # the same, all of England
    PYTHONPATH=src python bench/bym2_rho.py 30 --compile       # compile_nutpie, both forms

``--phi=sparse`` samples ``phi`` prior-whitened through the grounded Laplacian's sparse
Cholesky factor (``add_bym2(phi_form="sparse")``). ``--field=SD,RHO`` first redraws the
default England's counts around a BYM2 field (``synthetic.spatial.with_field``, field seed
2021) on the shipped ``synthetic`` graph. ``--cost`` times one log density + gradient
evaluation of each form (nutpie's compiled ``logp_func``, fast-math off, one BLAS thread, CPU
time, median of 5 rounds) at the initial point, and the factor's build time and size.

Results and their reading: bench/bym2_rho.md.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import sys
import time

import arviz_stats as az
import numpy as np
import nutpie
import xarray as xr

import socialgradient.api as sg
from socialgradient.sampling.compiled import compile_nutpie
from socialgradient.sampling.fit import model_of
from socialgradient.spec import Spec


def lag1(x: np.ndarray) -> float:
    """Mean over chains of the lag-1 autocorrelation of ``x`` (chain, draw)."""
    out = []
    for c in x:
        c = c - c.mean()
        out.append(float(np.dot(c[:-1], c[1:]) / np.dot(c, c)))
    return round(float(np.mean(out)), 3)


def eigen_bym2(adjacency, *, dim="lsoa", groups=None, **_):
    """The same BYM2 prior with ``phi`` in the ICAR's eigenbasis (``--phi=eigen``).

    Per component ``phi_c = U_c diag(lambda_c^-1/2) z_c`` with ``z ~ N(0, 1)`` and ``lambda_c``
    the eigenvalues of its Laplacian, the zero one replaced by 1: exactly the loose ICAR
    (precision ``Q_c + 11'/n_c``), its modes whitened (a dense ``n_c x n_c`` basis per component: subsets
    only, not England's 32,708-LSOA mainland).
    """
    import pymc as pm
    import pytensor.tensor as pt

    from socialgradient.data.icar import laplacian, scaling_factors
    from socialgradient.model.spatial import _check_coord, group_centred

    model = pm.modelcontext(None)
    _check_coord(model, dim, adjacency)
    scaling = scaling_factors(adjacency)
    inv_s = 1.0 / scaling.per_node(adjacency)
    inv_sqrt_s = np.where(np.isfinite(inv_s), np.sqrt(np.nan_to_num(inv_s)), 0.0)
    island = (adjacency.degree == 0).astype(float)
    parts = []  # per component: its nodes and its whitened basis (block-diagonal)
    for c, size in enumerate(adjacency.sizes):
        nodes = np.flatnonzero(adjacency.component == c)
        if size < 2:
            parts.append((nodes, np.ones((1, 1))))
            continue
        q, _ = laplacian(adjacency, nodes)
        values, vectors = np.linalg.eigh(q.toarray())
        values[0] = 1.0  # the constant mode: sum(phi_c) ~ N(0, n_c)
        parts.append((nodes, vectors / np.sqrt(values)))
    sd = pm.HalfNormal("spatial_sd", sigma=1.0)
    rho = pm.Beta("spatial_rho", alpha=1.0, beta=1.0)
    z = pm.Normal("spatial_z", 0.0, 1.0, dims=dim)
    phi = pt.zeros(adjacency.n)
    for nodes, block in parts:
        phi = pt.set_subtensor(phi[nodes], pt.dot(pt.as_tensor(block), z[nodes]))
    phi = pm.Deterministic("spatial_phi", phi, dims=dim)
    theta = pm.Normal("spatial_theta", 0.0, 1.0, dims=dim)
    iid_weight = island + (1.0 - island) * pt.sqrt(1.0 - rho)
    effect = sd * (pt.sqrt(rho) * inv_sqrt_s * phi + iid_weight * theta)
    return group_centred(effect, groups) if groups is not None else effect


def spectrum(n_la: int, components: int = 3) -> list[dict]:
    """The Laplacian spectrum of the largest components of the subset's graph (``--spectrum``).

    Per component: its size, smallest non-zero and largest eigenvalue, their ratio (the ICAR
    prior's condition number) and the prior SDs of its roughest and smoothest modes.
    """
    from socialgradient.data.icar import laplacian
    from socialgradient.model.terms import SpatialEffect

    table = sg.default_data()
    sub = table[table["la"].isin(table["la"].unique()[:n_la])].reset_index(drop=True)
    spec = Spec("referrals", family="poisson", spatial="bym2", neighbours="synthetic")
    adjacency = sg.encode(sub, spec).term(SpatialEffect).adjacency()
    out = []
    for c in range(min(components, len(adjacency.sizes))):
        q, _ = laplacian(adjacency, np.flatnonzero(adjacency.component == c))
        values = np.linalg.eigvalsh(q.toarray())[1:]
        out.append(
            {
                "component": c,
                "size": q.shape[0],
                "mean_degree": round(float(adjacency.degree.mean()), 2),
                "smallest_nonzero": round(float(values[0]), 4),
                "largest": round(float(values[-1]), 2),
                "condition": round(float(values[-1] / values[0])),
                "mode_sd": [
                    round(float(values[-1] ** -0.5), 3),
                    round(float(values[0] ** -0.5), 2),
                ],
            }
        )
    return out


def subset(n_la: int, field: tuple | None = None):
    """The first ``n_la`` LAs of the default England (all with 0), with a field if asked.

    ``field``: ``(sd, rho)`` redraws the counts with ``with_field`` (negative binomial around
    the field, seed 2021); ``(sd, rho, "poisson")`` the same field and means, Poisson counts
    (the field then the only extra-Poisson variation).
    """
    table = sg.default_data()
    if field is not None:
        from socialgradient.data import neighbours as nb
        from socialgradient.data.deprivation import decompose
        from socialgradient.data.synthetic.spatial import draw_bym2, with_field

        pairs = nb.read_neighbours(nb.resolve("synthetic"))
        truth = sg.default_truth()
        if len(field) > 2 and field[2] == "poisson":
            codes = table["lsoa"].astype(str).to_numpy()
            adjacency = nb.build_adjacency(pairs, codes, unknown="drop")
            rng = np.random.default_rng([2021, 29])
            b = draw_bym2(adjacency, float(field[0]), float(field[1]), rng).effect
            d = decompose(table["income"], table["children"], table["la"])
            t = truth["thresholds"]["referrals"]["la"]
            a_la = np.array([t[str(code)]["a_la"] for code in d.la])
            b_la = np.array([t[str(code)]["b_la"] for code in d.la])
            eta = a_la[d.la_index] + b_la[d.la_index] * d.w + b
            mu = table["children"].to_numpy(dtype=float) * np.exp(eta)
            table = table.assign(referrals=rng.poisson(mu).astype(np.int64))
        else:
            table, _ = with_field(table, truth, pairs, *map(float, field[:2]), seed=2021)
    if n_la <= 0:
        return table
    return table[table["la"].isin(table["la"].unique()[:n_la])].reset_index(drop=True)


def realised_sd(sub, field: tuple | None) -> float | None:
    """The SD over ``sub``'s LSOAs of the Poisson field's draw (``None`` otherwise)."""
    if field is None or len(field) < 3:
        return None
    from socialgradient.data import neighbours as nb
    from socialgradient.data.synthetic.spatial import draw_bym2

    table = sg.default_data()
    codes = table["lsoa"].astype(str).to_numpy()
    adjacency = nb.build_adjacency(nb.read_neighbours(nb.resolve("synthetic")), codes, "drop")
    b = draw_bym2(adjacency, float(field[0]), float(field[1]), np.random.default_rng([2021, 29]))
    keep = np.isin(codes, sub["lsoa"].astype(str).to_numpy())
    return round(float(b.effect[keep].std()), 4)


def build(sub, phi: str):
    """The Poisson + BYM2 model of ``sub`` with ``phi`` sampled as asked."""
    from socialgradient.model.terms import spatial as term

    spec = Spec("referrals", family="poisson", spatial="bym2", neighbours="synthetic")
    original = term.add_bym2
    if phi == "eigen":
        term.add_bym2 = eigen_bym2  # type: ignore[assignment]  (a bench variant)
    elif phi == "sparse":
        term.add_bym2 = functools.partial(original, phi_form="sparse")  # type: ignore[assignment]
    try:
        return model_of(sg.encode(sub, spec), spec)[0]
    finally:
        term.add_bym2 = original  # type: ignore[assignment]


def phi_of_z(sub, z: np.ndarray) -> np.ndarray:
    """``phi`` of each draw of the sparse form's ``spatial_z`` (chain, draw, lsoa)."""
    import pytensor
    import pytensor.tensor as pt

    from socialgradient.model.spatial import icar_from_white
    from socialgradient.model.terms import SpatialEffect

    spec = Spec("referrals", family="poisson", spatial="bym2", neighbours="synthetic")
    adjacency = sg.encode(sub, spec).term(SpatialEffect).adjacency()
    v = pt.vector("z")
    f = pytensor.function([v], icar_from_white(v, adjacency, loose=True))
    return np.stack([np.stack([f(d) for d in chain]) for chain in z])


def cost(n_la: int, calls: int = 50, rounds: int = 5) -> list[dict]:
    """One logp + gradient evaluation of each form (``--cost``), and the factor's build."""
    import pytensor

    from socialgradient.model.sparse_chol import grounded_factor
    from socialgradient.model.terms import SpatialEffect
    from socialgradient.util.threads import one_blas_thread

    sub = subset(n_la)
    spec = Spec("referrals", family="poisson", spatial="bym2", neighbours="synthetic")
    adjacency = sg.encode(sub, spec).term(SpatialEffect).adjacency()
    start = time.perf_counter()
    g = grounded_factor(adjacency)
    built = time.perf_counter() - start
    c = g.factor
    out = [
        {
            "lsoas": adjacency.n,
            "edges": len(adjacency.edges),
            "factor_rows": c.shape[0],
            "factor_nnz": int(c.nnz),
            "factor_mb": round((c.data.nbytes + c.indices.nbytes + c.indptr.nbytes) / 1e6, 2),
            "factor_build_s": round(built, 3),
            "load": os.getloadavg()[0],
        }
    ]
    fns, points = {}, {}
    for phi in ("icar", "sparse"):
        model = build(sub, phi)
        with pytensor.config.change_flags(numba__fastmath=False):
            fns[phi] = nutpie.compile_pymc_model(model).logp_func
        point = model.initial_point()
        points[phi] = np.concatenate(
            [np.ravel(point[model.rvs_to_values[v].name]) for v in model.free_RVs]
        )
    times: dict[str, list[float]] = {k: [] for k in fns}
    with one_blas_thread():
        for _ in range(rounds):
            for phi, f in fns.items():
                f(points[phi])
                start = time.process_time()
                for _ in range(calls):
                    f(points[phi])
                times[phi].append((time.process_time() - start) / calls)
    for phi in fns:
        out.append(
            {
                "phi": phi,
                "parameters": len(points[phi]),
                "cpu_ms_rounds": [round(1e3 * t, 3) for t in times[phi]],
                "cpu_ms": round(1e3 * statistics.median(times[phi]), 3),
                "load": os.getloadavg()[0],
            }
        )
    return out


def main(
    n_la: int,
    draws: int,
    seed: int,
    adaptation: str = "diag",
    phi: str = "icar",
    field: tuple | None = None,
) -> dict:
    sub = subset(n_la, field)
    model = build(sub, phi)
    compiled, _ = compile_nutpie(model)
    start = time.perf_counter()
    tree = nutpie.sample(
        compiled,
        draws=draws,
        tune=draws,
        chains=2,
        seed=seed,
        progress_bar=False,
        adaptation=adaptation,
    )
    seconds = time.perf_counter() - start
    post, stats = tree["posterior"].to_dataset(), tree["sample_stats"].to_dataset()
    rho = post["spatial_rho"].transpose("chain", "draw").values
    sd = post["spatial_sd"].transpose("chain", "draw").values
    if "spatial_phi" in post:
        phi_draws = post["spatial_phi"].transpose("chain", "draw", ...).values
    else:  # the sparse form samples z: phi = icar_from_white(z)
        phi_draws = phi_of_z(sub, post["spatial_z"].transpose("chain", "draw", ...).values)
    theta = post["spatial_theta"].transpose("chain", "draw", ...).values
    series = {
        "logit_rho": np.log(rho / (1 - rho)),
        "log_sd": np.log(sd),
        "log_rms_phi": 0.5 * np.log(np.mean(phi_draws**2, axis=-1)),
        "log_rms_theta": 0.5 * np.log(np.mean(theta**2, axis=-1)),
        "log_iid_sd": np.log(sd * np.sqrt(1 - rho)),
        "log_spatial_sd": np.log(sd * np.sqrt(rho)),
    }
    ds = xr.Dataset({k: (("chain", "draw"), v) for k, v in series.items()})
    rhat, ess = az.rhat(ds), az.ess(ds, method="bulk")
    # the reported effect (LA-centred, per LSOA): its worst and median bulk ESS, worst R-hat
    effect = post["spatial_effect"].astype("float64")
    effect_ess = az.ess(effect, method="bulk").values
    effect_rhat = az.rhat(effect).values
    total = 2 * draws
    flat = {k: v.ravel() for k, v in series.items()}
    corr = {
        k: round(float(np.corrcoef(flat["logit_rho"], v)[0, 1]), 3)
        for k, v in flat.items()
        if k != "logit_rho"
    }
    return {
        "n_la": n_la,
        "lsoas": len(sub),
        "seed": seed,
        "adaptation": adaptation,
        "phi": phi,
        "field": list(field) if field else None,
        "field_realised_sd_subset": realised_sd(sub, field),
        "load": os.getloadavg()[0],
        "draws": f"2 x ({draws} + {draws})",
        "sampling_s": round(seconds, 1),
        "step_size": round(float(stats["step_size"].values.mean()), 4),
        "mean_depth": round(float(stats["depth"].values.mean()), 2),
        "mean_steps": round(float(stats["n_steps"].values.mean()), 1),
        "divergences": int(stats["diverging"].values.sum()),
        "rho_quantiles": [round(float(q), 3) for q in np.quantile(rho, [0.025, 0.5, 0.975])],
        "sd_quantiles": [round(float(q), 3) for q in np.quantile(sd, [0.025, 0.5, 0.975])],
        "rhat": {k: round(float(rhat[k]), 3) for k in series},
        "ess_bulk": {k: int(ess[k]) for k in series},
        "ess_bulk_per_1000": {k: round(1000 * float(ess[k]) / total, 1) for k in series},
        "ess_bulk_per_s": {k: round(float(ess[k]) / seconds, 2) for k in series},
        "corr_with_logit_rho": corr,
        "lag1": {k: lag1(v) for k, v in series.items()},
        "effect_ess_bulk_min_median": [int(effect_ess.min()), int(np.median(effect_ess))],
        "effect_rhat_max": round(float(effect_rhat.max()), 3),
    }


if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    how = next((f.split("=", 1)[1] for f in flags if f.startswith("--adaptation=")), "diag")
    phi = next((f.split("=", 1)[1] for f in flags if f.startswith("--phi=")), "icar")
    given = next((f.split("=", 1)[1] for f in flags if f.startswith("--field=")), "")
    field = tuple(given.split(",")) if given else None
    if "--compile" in flags:  # compile_nutpie's time per form in this process (disk cache)
        from socialgradient.sampling.compiled import compile_nutpie as compile_

        sub = subset(int(args[0]))
        for form in ("sparse", "icar"):
            model = build(sub, form)
            start = time.perf_counter()
            _, reused = compile_(model)
            line = {"phi": form, "compile_s": round(time.perf_counter() - start, 2)}
            print(json.dumps({**line, "reused": reused, "load": os.getloadavg()[0]}), flush=True)
        raise SystemExit(0)
    if "--cost" in flags:
        for line in cost(int(args[0])):
            print(json.dumps(line), flush=True)
        raise SystemExit(0)
    if "--spectrum" in flags:
        for line in spectrum(int(args[0])):
            print(json.dumps(line), flush=True)
        raise SystemExit(0)
    n_la, draws = int(args[0]), int(args[1])
    for s in args[2:] or ["2021"]:
        print(json.dumps(main(n_la, draws, int(s), how, phi, field)), flush=True)  # type: ignore[arg-type]
