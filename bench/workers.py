"""Workers: what ``python bench/run.py _fit|_grad ...`` runs in a fresh subprocess.

:func:`worker_fit` is one fit (timed, diagnosed, with its estimates); :func:`worker_grad` the
cost of one log density + gradient evaluation per implementation.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np
from harness import PARAMS


def worker_fit(args) -> None:
    t_start = time.perf_counter()
    import pandas as pd

    from socialgradient import api
    from socialgradient.model.build import build_model
    from socialgradient.results import checks
    from socialgradient.sampling import fit as sgfit
    from socialgradient.spec import Sampling, Spec

    t_import = time.perf_counter() - t_start
    table = pd.read_parquet(args.data)
    t0 = time.perf_counter()
    data = api.encode(table, args.outcome)
    encode_s = time.perf_counter() - t0
    spec = Spec(
        outcome=args.outcome,
        family=args.family,
        sampling=Sampling(
            sampler=args.sampler,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            seed=args.seed,
        ),
    )
    t0 = time.perf_counter()
    if args.adaptation == "diag" and args.sampler in ("nutpie", "pymc", "numpyro"):
        # The package's own code path, exactly as `socialgradient fit` runs it.
        tree = sgfit.fit(
            data, spec, progressbar=False, max_predictive_draws=args.max_predictive_draws
        )
    else:  # nutpie with another mass-matrix adaptation: same steps as fit.fit
        import nutpie

        model = build_model(data, spec)
        c0 = time.perf_counter()
        compiled = nutpie.compile_pymc_model(model)
        compile_s = time.perf_counter() - c0
        c0 = time.perf_counter()
        raw = nutpie.sample(
            compiled,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            seed=args.seed,
            progress_bar=False,
            save_warmup=False,
            adaptation=args.adaptation,
        )
        sampling_s = time.perf_counter() - c0
        tree = sgfit._assemble(raw, data, spec, compile_s, sampling_s, args.max_predictive_draws)
    wall = time.perf_counter() - t0
    diag = checks.diagnose(tree)
    post = tree["posterior"].to_dataset()
    est = {}
    for p in (*PARAMS, "phi"):
        if p in post:
            v = post[p].values.ravel()
            est[p] = {
                "median": float(np.median(v)),
                "mean": float(v.mean()),
                "sd": float(v.std(ddof=1)),
            }
    for k, name in ((0, "sd_a"), (1, "sd_b")):
        v = post["la_sd"].values[..., k].ravel()
        est[name] = {
            "median": float(np.median(v)),
            "mean": float(v.mean()),
            "sd": float(v.std(ddof=1)),
        }
    v = post["la_corr"].values.ravel()
    est["cor_ab"] = {
        "median": float(np.median(v)),
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)),
    }
    stats = tree["sample_stats"].to_dataset()
    steps = None
    for key in ("n_steps", "tree_size"):
        if key in stats:
            steps = float(stats[key].values.mean())
            break
    compile_s = float(tree.attrs["compile_seconds"])
    sampling_s = float(tree.attrs["sampling_seconds"])
    out = {
        "n_lsoa": len(data.y),
        "n_la": len(data.la),
        "family": args.family,
        "sampler": args.sampler,
        "adaptation": args.adaptation,
        "chains": args.chains,
        "tune": args.tune,
        "draws": args.draws,
        "max_predictive_draws": args.max_predictive_draws,
        "import_s": t_import,
        "encode_s": encode_s,
        "compile_s": None if compile_s != compile_s else compile_s,  # NaN -> None
        "sampling_s": sampling_s,
        "assemble_s": wall - sampling_s - (0.0 if compile_s != compile_s else compile_s),
        "wall_s": wall,
        "rhat_max": diag["rhat_max"],
        "ess_bulk_min": diag["ess_bulk_min"],
        "ess_tail_min": diag["ess_tail_min"],
        "divergences": diag["divergences"],
        "ebfmi_min": diag["ebfmi_min"],
        "verdict": diag["verdict"],
        "reasons": diag["reasons"],
        "ess_per_s": diag["ess_bulk_min"] / wall,
        "ess_per_s_sampling": diag["ess_bulk_min"] / sampling_s,
        "mean_leapfrog_steps": steps,
        "estimates": est,
        "self_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    Path(args.out).write_text(json.dumps(out, indent=1))


# ----------------------------------------------------------------------------------------
# Worker: cost of one log density + gradient evaluation
# ----------------------------------------------------------------------------------------


def _time_calls(fn, min_seconds: float, min_calls: int = 20) -> dict:
    fn()  # warm
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if el >= min_seconds and n >= min_calls:
            break
    return {"us_per_call": el / n * 1e6, "calls": n}


def _numpy_nb(data, theta, phi):
    """Vectorised NB2 log density (sufficient-statistic form) and gradient; NumPy only."""
    from scipy.special import digamma, gammaln

    idx, w, y = data.la_index, data.w, data.y
    log_n = np.log(data.children)
    values, counts = np.unique(y, return_counts=True)
    y_sum = np.bincount(idx, weights=y, minlength=len(theta))
    yw_sum = np.bincount(idx, weights=y * w, minlength=len(theta))
    yf = y.astype(float)
    n_la = len(theta)

    def f(theta=theta, phi=phi):
        log_mu = log_n + theta[idx, 0] + theta[idx, 1] * w
        log_phi = np.log(phi)
        lse = np.logaddexp(log_mu, log_phi)
        ll = (
            np.sum(counts * (gammaln(values + phi) - gammaln(phi)))
            + len(y) * phi * log_phi
            + np.sum(theta[:, 0] * y_sum + theta[:, 1] * yw_sum)
            - np.sum((yf + phi) * lse)
        )
        p = np.exp(log_mu - lse)  # mu / (mu + phi)
        r = (yf + phi) * p
        g_theta = np.empty_like(theta)
        g_theta[:, 0] = y_sum - np.bincount(idx, weights=r, minlength=n_la)
        g_theta[:, 1] = yw_sum - np.bincount(idx, weights=r * w, minlength=n_la)
        g_phi = (
            np.sum(counts * (digamma(values + phi) - digamma(phi)))
            + len(y) * (log_phi + 1)
            - np.sum(lse)
            - np.sum((yf + phi) * (1 - p)) / phi
        )
        return ll, g_theta, g_phi

    return f


def _textbook_model(data):
    """The same priors (model.la_effects) with the per-LSOA pm.NegativeBinomial(observed=y)."""
    import pymc as pm
    import pytensor.tensor as pt

    from socialgradient.model.build import dispersion, la_effects

    with pm.Model(coords=data.coords) as model:
        theta = la_effects(data)
        idx = data.la_index
        mu = data.children * pt.exp(theta[idx, 0] + theta[idx, 1] * data.w)
        pm.NegativeBinomial("y", mu=mu, alpha=dispersion(), observed=data.y, dims="lsoa")
    return model


def worker_grad(args) -> None:
    import warnings

    import pandas as pd
    from pymc.blocking import DictToArrayBijection

    from socialgradient import api
    from socialgradient.model.build import build_model
    from socialgradient.spec import Spec

    warnings.filterwarnings("ignore")
    data = api.encode(pd.read_parquet(args.data), args.outcome)
    secs = args.min_seconds
    rows = []

    def point(model):
        ip = model.initial_point()
        # a plausible point: near the synthetic truth rather than at the prior's zeros
        ip["a"] = np.array(-4.17)
        ip["b_w"] = np.array(0.48)
        if "la_effect" in ip:
            eff = np.zeros((len(data.la), 2))
            eff[:, 0] = -4.17 + 0.25 * data.m_c
            eff[:, 1] = 0.48 - 0.26 * data.m_c
            ip["la_effect"] = eff
        if "inv_sqrt_phi_log__" in ip:
            ip["inv_sqrt_phi_log__"] = np.array(np.log(1 / np.sqrt(20.0)))
        return ip

    def pytensor_rows(model, label):
        ip = point(model)
        for mode in ("FAST_RUN", "NUMBA"):
            try:
                t0 = time.perf_counter()
                f = model.logp_dlogp_function(ravel_inputs=True, mode=mode)
                f.set_extra_values({})
                x = DictToArrayBijection.map({v.name: ip[v.name] for v in f._grad_vars}).data
                fn = f._pytensor_function
                fn(x)
                comp = time.perf_counter() - t0
                r = _time_calls(lambda: fn(x), secs)
                rows.append(
                    {
                        "impl": f"{label} PyTensor {mode}",
                        "compile_s": comp,
                        **r,
                        "logp": float(fn(x)[0]),
                    }
                )
            except Exception as e:
                rows.append({"impl": f"{label} PyTensor {mode}", "error": repr(e)[:300]})
        try:
            import jax
            from pymc.sampling.jax import get_jaxified_graph

            t0 = time.perf_counter()
            jfn = get_jaxified_graph(inputs=model.value_vars, outputs=[model.logp()])
            vals = [np.asarray(ip[v.name], dtype=float) for v in model.value_vars]
            vg = jax.jit(
                jax.value_and_grad(lambda *xs: jfn(*xs)[0], argnums=tuple(range(len(vals))))
            )
            jax.block_until_ready(vg(*vals))
            comp = time.perf_counter() - t0
            r = _time_calls(lambda: jax.block_until_ready(vg(*vals)), secs)
            rows.append(
                {
                    "impl": f"{label} JAX (jit value_and_grad)",
                    "compile_s": comp,
                    **r,
                    "logp": float(vg(*vals)[0]),
                }
            )
        except Exception as e:
            rows.append({"impl": f"{label} JAX", "error": repr(e)[:300]})

    # nutpie's own compiled numba function (what nutpie.sample calls), if reachable
    model = build_model(data, Spec(outcome=args.outcome, family="negbin"))
    try:
        import nutpie

        t0 = time.perf_counter()
        compiled = nutpie.compile_pymc_model(model)
        comp = time.perf_counter() - t0
        row = {"impl": "sufficient-stat nutpie.compile_pymc_model (numba)", "compile_s": comp}
        logp_fn = getattr(compiled, "compiled_logp_func", None)
        rows.append(
            {
                **row,
                "note": "compile only; nutpie's logp is a C callback, timed via "
                "the equivalent PyTensor NUMBA function below"
                if logp_fn is None
                else "compile only",
            }
        )
    except Exception as e:
        rows.append({"impl": "nutpie compile", "error": repr(e)[:300]})
    pytensor_rows(model, "sufficient-stat")
    pytensor_rows(_textbook_model(data), "textbook per-LSOA")

    ip = point(model)
    theta = np.asarray(ip["la_effect"], dtype=float)
    f = _numpy_nb(data, theta, 20.0)
    r = _time_calls(f, secs)
    rows.append(
        {"impl": "NumPy lower bound (NB likelihood + gradient only)", "compile_s": 0.0, **r}
    )
    for row in rows:
        row["n_lsoa"] = len(data.y)
    Path(args.out).write_text(json.dumps(rows, indent=1))
