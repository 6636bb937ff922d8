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
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
WORK = BENCH / "_work"  # git-ignored scratch: data copies, per-fit JSON, logs
RESULTS_JSON = BENCH / "results.json"
RESULTS_MD = BENCH / "results.md"
PY = sys.executable
PARAMS = ("a", "b_w", "b_b", "b_x")
TARGETS = {"poisson_wall_s": 30.0, "negbin_wall_s": 60.0, "peak_rss_mb": 2048.0}


# ----------------------------------------------------------------------------------------
# Worker: one fit in this (fresh) process
# ----------------------------------------------------------------------------------------


def _worker_fit(args) -> None:
    t_start = time.perf_counter()
    import pandas as pd

    from socialgradient import api, checks
    from socialgradient import fit as sgfit
    from socialgradient.model import build_model
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
            sampler=args.sampler, draws=args.draws, tune=args.tune, chains=args.chains,
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
            compiled, draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed,
            progress_bar=False, save_warmup=False, adaptation=args.adaptation,
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
            est[p] = {"median": float(np.median(v)), "mean": float(v.mean()),
                      "sd": float(v.std(ddof=1))}
    for k, name in ((0, "sd_a"), (1, "sd_b")):
        v = post["la_sd"].values[..., k].ravel()
        est[name] = {"median": float(np.median(v)), "mean": float(v.mean()),
                     "sd": float(v.std(ddof=1))}
    v = post["la_corr"].values.ravel()
    est["cor_ab"] = {"median": float(np.median(v)), "mean": float(v.mean()),
                     "sd": float(v.std(ddof=1))}
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
        ll = (np.sum(counts * (gammaln(values + phi) - gammaln(phi))) + len(y) * phi * log_phi
              + np.sum(theta[:, 0] * y_sum + theta[:, 1] * yw_sum) - np.sum((yf + phi) * lse))
        p = np.exp(log_mu - lse)  # mu / (mu + phi)
        r = (yf + phi) * p
        g_theta = np.empty_like(theta)
        g_theta[:, 0] = y_sum - np.bincount(idx, weights=r, minlength=n_la)
        g_theta[:, 1] = yw_sum - np.bincount(idx, weights=r * w, minlength=n_la)
        g_phi = (np.sum(counts * (digamma(values + phi) - digamma(phi))) + len(y) * (log_phi + 1)
                 - np.sum(lse) - np.sum((yf + phi) * (1 - p)) / phi)
        return ll, g_theta, g_phi

    return f


def _textbook_model(data):
    """The same priors (model.la_effects) with the per-LSOA pm.NegativeBinomial(observed=y)."""
    import pymc as pm
    import pytensor.tensor as pt

    from socialgradient.model import dispersion, la_effects

    with pm.Model(coords=data.coords) as model:
        theta = la_effects(data)
        idx = data.la_index
        mu = data.children * pt.exp(theta[idx, 0] + theta[idx, 1] * data.w)
        pm.NegativeBinomial("y", mu=mu, alpha=dispersion(), observed=data.y, dims="lsoa")
    return model


def _worker_grad(args) -> None:
    import warnings

    import pandas as pd
    from pymc.blocking import DictToArrayBijection

    from socialgradient import api
    from socialgradient.model import build_model
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
                rows.append({"impl": f"{label} PyTensor {mode}", "compile_s": comp, **r,
                             "logp": float(fn(x)[0])})
            except Exception as e:
                rows.append({"impl": f"{label} PyTensor {mode}", "error": repr(e)[:300]})
        try:
            import jax
            from pymc.sampling.jax import get_jaxified_graph

            t0 = time.perf_counter()
            jfn = get_jaxified_graph(inputs=model.value_vars, outputs=[model.logp()])
            vals = [np.asarray(ip[v.name], dtype=float) for v in model.value_vars]
            vg = jax.jit(jax.value_and_grad(lambda *xs: jfn(*xs)[0],
                                            argnums=tuple(range(len(vals)))))
            jax.block_until_ready(vg(*vals))
            comp = time.perf_counter() - t0
            r = _time_calls(lambda: jax.block_until_ready(vg(*vals)), secs)
            rows.append({"impl": f"{label} JAX (jit value_and_grad)", "compile_s": comp, **r,
                         "logp": float(vg(*vals)[0])})
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
        rows.append({**row, "note": "compile only; nutpie's logp is a C callback, timed via "
                     "the equivalent PyTensor NUMBA function below"
                     if logp_fn is None else "compile only"})
    except Exception as e:
        rows.append({"impl": "nutpie compile", "error": repr(e)[:300]})
    pytensor_rows(model, "sufficient-stat")
    pytensor_rows(_textbook_model(data), "textbook per-LSOA")

    ip = point(model)
    theta = np.asarray(ip["la_effect"], dtype=float)
    f = _numpy_nb(data, theta, 20.0)
    r = _time_calls(f, secs)
    rows.append({"impl": "NumPy lower bound (NB likelihood + gradient only)", "compile_s": 0.0,
                 **r})
    for row in rows:
        row["n_lsoa"] = len(data.y)
    Path(args.out).write_text(json.dumps(rows, indent=1))


# ----------------------------------------------------------------------------------------
# Driver helpers
# ----------------------------------------------------------------------------------------


def _tree_rss_kb(pid: int) -> int:
    """Resident set size (kB) of ``pid`` and all its descendants, from /proc."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return total


def run_sub(cmd: list[str], log: Path, timeout: float | None = None) -> dict:
    """Run ``cmd``; return rc, wall and peak tree RSS (MB) polled every 0.1 s."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as lf:
        proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
        peak = [0]
        done = threading.Event()

        def poll():
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
                done.wait(0.1)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 15)
            time.sleep(5)
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
            rc = "timeout"
        done.set()
        th.join()
    return {"rc": rc, "process_wall_s": time.perf_counter() - t0, "tree_peak_rss_mb": peak[0] / 1024}


def fit_config(name: str, data: Path, *, family="negbin", sampler="nutpie", chains=4, tune=1000,
               draws=1000, adaptation="diag", outcome="referrals", seed=2021,
               max_predictive_draws=1000, timeout=1800) -> dict:
    out = WORK / "fits" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    cmd = [PY, str(BENCH / "run.py"), "_fit", "--data", str(data), "--outcome", outcome,
           "--family", family, "--sampler", sampler, "--chains", str(chains), "--tune",
           str(tune), "--draws", str(draws), "--adaptation", adaptation, "--seed", str(seed),
           "--max-predictive-draws", str(max_predictive_draws), "--out", str(out)]
    print(f"[{_now()}] fit {name}: {family}/{sampler}/{adaptation} {chains}x{tune}/{draws} "
          f"on {data.name}", flush=True)
    proc = run_sub(cmd, WORK / "logs" / f"{name}.log", timeout=timeout)
    res = {"name": name, "data": str(data.relative_to(ROOT)) if data.is_relative_to(ROOT)
           else str(data), **proc}
    if out.exists():
        res.update(json.loads(out.read_text()))
        res["peak_rss_mb"] = max(res["tree_peak_rss_mb"],
                                 res["self_maxrss_mb"] + res["children_maxrss_mb"]
                                 if sampler == "pymc" else res["self_maxrss_mb"])
        print(f"    wall {res['wall_s']:.1f}s (compile {res['compile_s'] or 0:.1f}, sampling "
              f"{res['sampling_s']:.1f}), ESS {res['ess_bulk_min']:.0f}, R-hat "
              f"{res['rhat_max']:.3f}, {res['verdict']}, peak {res['peak_rss_mb']:.0f} MB",
              flush=True)
    else:
        res["status"] = "timeout" if proc["rc"] == "timeout" else "error"
        res["log_tail"] = (WORK / "logs" / f"{name}.log").read_text()[-1500:]
        print(f"    {res['status']}: {res['log_tail'][-300:]}", flush=True)
    return res


def _now() -> str:
    return _dt.datetime.now().strftime("%H:%M:%S")


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def default_data_path() -> Path:
    return ROOT / "data" / "neighbourhoods.parquet"


# ----------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------


def section_main(quick: bool, samplers: list[str], all_families: bool) -> list[dict]:
    data = default_data_path()
    ct, cd = (2, 200) if quick else (4, 1000)
    configs = []
    for sampler in samplers:
        for family in ("negbin", "poisson"):
            if (quick or not all_families) and sampler != "nutpie" and family == "poisson":
                continue
            configs.append((family, sampler))
    out = []
    for family, sampler in configs:
        out.append(fit_config(f"main_{family}_{sampler}", data, family=family, sampler=sampler,
                              chains=ct, tune=cd, draws=cd,
                              timeout=1800 if sampler == "nutpie" else 900))
    return out


def section_variants(quick: bool) -> list[dict]:
    data = default_data_path()
    c, n = (2, 200) if quick else (4, 1000)
    short = 100 if quick else 500
    return [
        fit_config("variant_negbin_lowrank", data, adaptation="low_rank", chains=c, tune=n,
                   draws=n),
        fit_config("variant_negbin_tune500", data, chains=c, tune=short, draws=short),
        fit_config("variant_poisson_tune500", data, family="poisson", chains=c, tune=short,
                   draws=short),
    ]


def section_grad(quick: bool) -> list[dict]:
    out = WORK / "grad.json"
    out.unlink(missing_ok=True)
    cmd = [PY, str(BENCH / "run.py"), "_grad", "--data", str(default_data_path()),
           "--min-seconds", "0.5" if quick else "3", "--out", str(out)]
    print(f"[{_now()}] gradient cost", flush=True)
    proc = run_sub(cmd, WORK / "logs" / "grad.log", timeout=1200)
    if not out.exists():
        return [{"impl": "grad worker", "error": (WORK / "logs" / "grad.log").read_text()[-1500:],
                 **proc}]
    rows = json.loads(out.read_text())
    for r in rows:
        if "us_per_call" in r:
            print(f"    {r['impl']}: {r['us_per_call']:.0f} us/call", flush=True)
    return rows


def _write_csv(parquet: Path, csv: Path, las=None) -> Path:
    import pandas as pd

    t = pd.read_parquet(parquet)
    if las is not None:
        t = t[t["la"].isin(las)]
    csv.parent.mkdir(parents=True, exist_ok=True)
    t[["lsoa", "la", "children", "income", "referrals"]].to_csv(csv, index=False)
    return csv


def run_peers(csv: Path, out: Path, which: str, timeout: int, log: Path) -> dict:
    out.unlink(missing_ok=True)
    cmd = ["Rscript", str(BENCH / "peers" / "peers.R"), str(csv), "referrals", str(out),
           "--which", which, "--timeout", str(timeout), "--cores", "2"]
    print(f"[{_now()}] peers {which} on {csv.name} (timeout {timeout}s each)", flush=True)
    n_brms = sum(p.startswith("brms") for p in which.split(","))
    proc = run_sub(cmd, log, timeout=timeout * max(1, n_brms) + 900)
    res = {"cmd": shlex.join(cmd), **proc}
    if out.exists():
        res["result"] = json.loads(out.read_text())
        for k, p in res["result"].get("peers", {}).items():
            print(f"    {k}: {p.get('status')} wall {p.get('wall_s')}", flush=True)
    else:
        res["log_tail"] = log.read_text()[-1500:]
    return res


def agreement(ours: dict, peer: dict) -> dict:
    """|our median - peer estimate| < 0.5 posterior sd -> PASS, per fixed effect."""
    rows = {}
    for p in PARAMS:
        e = ours["estimates"][p]
        fx = (peer.get("fixed") or {}).get(p)
        if not fx:
            continue
        diff = e["median"] - fx["estimate"]
        rows[p] = {"ours_median": e["median"], "ours_sd": e["sd"], "peer": fx["estimate"],
                   "peer_se": fx.get("se"), "diff_in_sd": diff / e["sd"],
                   "verdict": "PASS" if abs(diff) < 0.5 * e["sd"] else "FAIL"}
    return rows


def section_peers(quick: bool, main_rows: list[dict], brms_timeout: int, n_sub_la: int,
                  brms_national_timeout: int) -> dict:
    csv = _write_csv(default_data_path(), WORK / "peers" / "national.csv")
    res = {"national": run_peers(csv, WORK / "peers" / "national.json",
                                 "lme4,glmmtmb_pois,glmmtmb_nb", 1800,
                                 WORK / "logs" / "peers_national.log")}
    if not quick:
        res["national_brms"] = run_peers(csv, WORK / "peers" / "national_brms.json",
                                         "brms_nb", brms_national_timeout,
                                         WORK / "logs" / "peers_national_brms.log")
    # subset: the n_sub_la LAs with the fewest LSOAs, for a brms vs ours ESS/s comparison
    import pandas as pd

    t = pd.read_parquet(default_data_path())
    sizes = t.groupby("la").size().sort_values(kind="stable")
    las = list(sizes.index[:n_sub_la])
    sub = WORK / "peers" / "subset.parquet"
    t[t["la"].isin(las)].reset_index(drop=True).to_parquet(sub, index=False)
    sub_csv = _write_csv(sub, WORK / "peers" / "subset.csv")
    res["subset"] = {"las": las, "n_lsoa": int(sizes.iloc[:n_sub_la].sum())}
    ct, cd = (2, 200) if quick else (4, 1000)
    res["subset"]["ours"] = fit_config("subset_negbin_nutpie", sub, chains=ct, tune=cd, draws=cd)
    res["subset"]["peers"] = run_peers(
        sub_csv, WORK / "peers" / "subset.json",
        "glmmtmb_nb,brms_nb" if not quick else "glmmtmb_nb", brms_timeout,
        WORK / "logs" / "peers_subset.log")
    # agreement checks
    ours_nat = next((r for r in main_rows if r.get("name") == "main_negbin_nutpie"
                     and "estimates" in r), None)
    checks = {}
    nat_peers = (res["national"].get("result") or {}).get("peers", {})
    if ours_nat is not None:
        for k in ("glmmtmb_nb",):
            if nat_peers.get(k, {}).get("status") == "ok":
                checks[f"national: ours NB vs {k}"] = agreement(ours_nat, nat_peers[k])
        nb = ((res.get("national_brms") or {}).get("result") or {}).get("peers", {})
        if nb.get("brms_nb", {}).get("status") == "ok":
            checks["national: ours NB vs brms_nb"] = agreement(ours_nat, nb["brms_nb"])
    ours_pois = next((r for r in main_rows if r.get("name") == "main_poisson_nutpie"
                      and "estimates" in r), None)
    if ours_pois is not None:
        for k in ("glmmtmb_pois", "lme4"):
            if nat_peers.get(k, {}).get("status") == "ok":
                checks[f"national: ours Poisson vs {k}"] = agreement(ours_pois, nat_peers[k])
    sub_ours = res["subset"]["ours"]
    sub_peers = (res["subset"]["peers"].get("result") or {}).get("peers", {})
    if "estimates" in sub_ours:
        for k in ("glmmtmb_nb", "brms_nb"):
            if sub_peers.get(k, {}).get("status") == "ok":
                checks[f"subset: ours NB vs {k}"] = agreement(sub_ours, sub_peers[k])
    res["agreement"] = checks
    return res


def make_table(n_la: int, n_per: float, seed: int) -> pd.DataFrame:  # noqa: F821
    """A table in the input-contract format from the model's generative process.

    Referral parameters of ``socialgradient.data.synthetic.england`` (a=-4.17, gradient 1.62,
    b_b=0.25, b_x=-0.2583, sigma_a=0.25, sigma_b=0.19, rho=-0.3, phi=20). LA sizes vary
    (Poisson around ``n_per``, at least 2); LA mean logit income ~ N(-1.9, 0.55), within-LA
    SD 0.7; children log-normal (median 170, sd-log 0.35), rounded, 20-2000.
    """
    import pandas as pd

    from socialgradient.data.synthetic.england import B_X
    from socialgradient.deprivation import decompose

    rng = np.random.default_rng(seed)
    sizes = np.maximum(2, rng.poisson(n_per, size=n_la))
    n = int(sizes.sum())
    idx = np.repeat(np.arange(n_la), sizes)
    la_mean = rng.normal(-1.9, 0.55, size=n_la)
    z = rng.standard_normal(n)
    income = np.round(1 / (1 + np.exp(-(la_mean[idx] + 0.7 * z))), 3)
    income = np.clip(income, 0.001, 0.999)
    e = 0.33 * z + np.sqrt(1 - 0.33**2) * rng.standard_normal(n)
    children = np.clip(np.rint(170 * np.exp(0.35 * e)), 20, 2000).astype(np.int64)
    la_codes = np.array([f"E06{i:06d}" for i in range(1, n_la + 1)])
    dec = decompose(income, children, la_codes[idx])
    a, b_w, b_b, sa, sb, rho, phi = -4.17, np.log(1.62), 0.25, 0.25, 0.19, -0.3, 20.0
    u = rng.standard_normal((n_la, 2))
    a_la = a + b_b * dec.m_c + sa * u[:, 0]
    b_la = b_w + B_X * dec.m_c + sb * (rho * u[:, 0] + np.sqrt(1 - rho**2) * u[:, 1])
    li = dec.la_index
    mu = children * np.exp(a_la[li] + b_la[li] * dec.w)
    y = rng.poisson(rng.gamma(phi, mu / phi)).astype(np.int64)
    return pd.DataFrame({"lsoa": [f"E01{i:06d}" for i in range(1, n + 1)],
                         "la": la_codes[idx], "children": children, "income": income,
                         "referrals": y})


def section_scaling(quick: bool) -> list[dict]:
    # (label, n_la, mean LSOAs per LA); ~3.3k / 33k / 330k rows at 150 LAs, then 25 / 600 LAs
    grid = [("rows", 150, 22), ("rows", 150, 219), ("rows", 150, 2190),
            ("las", 25, 1314), ("las", 600, 55)]
    if quick:
        grid = [("rows", 150, 22), ("las", 25, 130)]
    chains, n = (2, 100) if quick else (2, 500)
    out = []
    for label, n_la, n_per in grid:
        table = make_table(n_la, n_per, seed=7)
        path = WORK / "scaling" / f"{label}_{n_la}la_{len(table)}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(path, index=False)
        r = fit_config(f"scaling_{label}_{n_la}la_{len(table)}", path, chains=chains, tune=n,
                       draws=n, max_predictive_draws=200, timeout=1500)
        r["axis"] = label
        out.append(r)
    return out


# ----------------------------------------------------------------------------------------
# Environment, results.json / results.md
# ----------------------------------------------------------------------------------------


def environment() -> dict:
    env = {"date": _dt.datetime.now().isoformat(timespec="seconds"), "nproc": os.cpu_count(),
           "python": platform.python_version(), "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                env["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                env["ram_gb"] = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    from importlib.metadata import version

    for pkg in ("pymc", "pytensor", "nutpie", "numpyro", "jax", "numba", "arviz", "numpy"):
        try:
            env[pkg] = version(pkg)
        except Exception:
            env[pkg] = None
    try:
        r = subprocess.run(
            ["Rscript", "-e", 'cat(R.version.string, as.character(packageVersion("lme4")), '
             'as.character(packageVersion("glmmTMB")), as.character(packageVersion("brms")), '
             'as.character(packageVersion("rstan")), sep="|")'],
            capture_output=True, text=True, timeout=120)
        rv = r.stdout.strip().split("|")
        env.update(R=rv[0], lme4=rv[1], glmmTMB=rv[2], brms=rv[3], rstan=rv[4])
    except Exception as e:
        env["R"] = f"unavailable: {e}"
    return env


def _f(x, nd=1):
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if x != x:
        return "–"
    return f"{x:,.{nd}f}"


def _fit_rows(rows: list[dict], extra_first=None) -> list[str]:
    head = ["config", "LSOAs / LAs", "chains x tune/draws", "compile s", "sampling s",
            "assemble s", "total wall s", "min bulk ESS", "min tail ESS", "max R-hat", "div",
            "ESS/s (wall)", "ESS/s (sampling)", "leapfrog/draw", "peak RSS MB", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "wall_s" not in r:
            lines.append(f"| {r['name']} | " + f"{r.get('status', 'error')} after "
                         f"{_f(r.get('process_wall_s'), 0)} s |" + " |" * (len(head) - 2))
            continue
        cfg = f"{r['family']} / {r['sampler']}" + (
            f" / {r['adaptation']}" if r["adaptation"] != "diag" else "")
        lines.append("| " + " | ".join([
            cfg, f"{r['n_lsoa']:,} / {r['n_la']}", f"{r['chains']}x{r['tune']}/{r['draws']}",
            _f(r["compile_s"]), _f(r["sampling_s"]), _f(r["assemble_s"]), _f(r["wall_s"]),
            _f(r["ess_bulk_min"], 0), _f(r["ess_tail_min"], 0), _f(r["rhat_max"], 3),
            str(r["divergences"]), _f(r["ess_per_s"]), _f(r["ess_per_s_sampling"]),
            _f(r["mean_leapfrog_steps"]), _f(r["peak_rss_mb"], 0),
            r["verdict"] + (f" ({'; '.join(r['reasons'])})" if r["reasons"] else ""),
        ]) + " |")
    return lines


def write_md(res: dict) -> None:
    env = res.get("environment", {})
    L = ["# socialgradient benchmark results", "",
         "Generated by `bench/run.py` from `bench/results.json` (raw numbers there).", "",
         "## Machine and versions", ""]
    L.append(f"* date: {env.get('date')}; command(s): " + "; ".join(
        f"`{c}`" for c in res.get("commands", [])))
    L.append(f"* CPU: {env.get('cpu')}, nproc = {env.get('nproc')}, RAM {env.get('ram_gb')} GB; "
             f"{env.get('platform')}, Python {env.get('python')}")
    L.append("* " + ", ".join(f"{k} {env.get(k)}" for k in
                              ("pymc", "pytensor", "nutpie", "numpyro", "jax", "numba", "arviz")))
    L.append(f"* {env.get('R')}; lme4 {env.get('lme4')}, glmmTMB {env.get('glmmTMB')}, brms "
             f"{env.get('brms')}, rstan {env.get('rstan')}")
    for k, v in res.get("load", {}).items():
        L.append(f"* load (`uptime`) {k}: {v}")
    L += ["", "Timings: *compile* = `nutpie.compile_pymc_model` (for PyMC/numpyro compilation "
          "happens inside sampling: –); *sampling* = the sampler call (tune + draws, all "
          "chains); *assemble* = building the DataTree incl. `log_likelihood` and "
          "`posterior_predictive` on 1,000 draws (and `build_model`); *total wall* = "
          "`socialgradient.fit.fit` end to end (excludes Python imports and reading/validating "
          "the table). ESS/s = min bulk ESS over all parameters (incl. every LA effect) / total "
          "wall. Peak RSS = largest resident set of the fit subprocess tree.", ""]

    if res.get("main"):
        L += ["## Samplers x families (default data)", ""] + _fit_rows(res["main"]) + [""]
    if res.get("variants"):
        L += ["## nutpie variants (negative binomial unless stated)", ""]
        L += _fit_rows(res["variants"]) + [""]
    if res.get("grad"):
        L += ["## Cost of one log density + gradient evaluation (default data, NB)", "",
              "| implementation | compile s | µs / call | x NumPy bound | calls timed |",
              "|---|---|---|---|---|"]
        bound = next((r["us_per_call"] for r in res["grad"] if r["impl"].startswith("NumPy")),
                     None)
        for r in res["grad"]:
            if "us_per_call" in r:
                ratio = r["us_per_call"] / bound if bound else None
                L.append(f"| {r['impl']} | {_f(r.get('compile_s'))} | {_f(r['us_per_call'], 0)} "
                         f"| {_f(ratio, 2)} | {r['calls']} |")
            else:
                L.append(f"| {r['impl']} | {_f(r.get('compile_s'))} | "
                         f"{r.get('error') or r.get('note', '')} | | |")
        L.append("")
    if res.get("peers"):
        L += _peers_md(res["peers"], res.get("main", []))
    if res.get("scaling"):
        L += ["## Scaling (generated tables, nutpie NB, 2 chains x 500/500, predictive groups "
              "on 200 draws)", ""] + _fit_rows(res["scaling"]) + [""]
    if res.get("rechecks"):
        L += ["## Re-checks at lower load (run by hand after the full run, same settings)", "",
              "`python bench/run.py _fit --data ... --out ...` (peak RSS = ru_maxrss of the fit "
              "process); load: " + "; ".join(res.get("recheck_load", [])), ""]
        L += _fit_rows(res["rechecks"]) + [""]
    L += _headline_md(res)
    findings = BENCH / "findings.md"  # hand-written reading of the numbers, if present
    if findings.exists():
        L += ["", findings.read_text().rstrip()]
    RESULTS_MD.write_text("\n".join(L) + "\n")


def _peer_table(result: dict) -> list[str]:
    L = ["| peer | status | method | wall s | process s | a | b_w | b_b | b_x | phi | converged "
         "| min bulk ESS | ESS/s (sampling) |", "|" + "---|" * 13]
    for k, p in (result or {}).get("peers", {}).items():
        fx = p.get("fixed") or {}
        conv = p.get("convergence") or {}

        def est(name, fx=fx):
            e = fx.get(name)
            return f"{e['estimate']:.4f} ± {e['se']:.4f}" if e and e.get("se") is not None else "–"

        L.append(f"| {k} | {p.get('status')} {p.get('message', '')} | {p.get('method', '')} | "
                 f"{_f(p.get('wall_s'))} | {_f(p.get('process_s'))} | {est('a')} | {est('b_w')} | "
                 f"{est('b_b')} | {est('b_x')} | {_f(p.get('phi'), 2)} | {p.get('converged')} | "
                 f"{_f(conv.get('min_ess_bulk_all', conv.get('min_ess_bulk')), 0)} | "
                 f"{_f(conv.get('ess_bulk_per_s_all'), 2)} |")
    return L


def _peers_md(pe: dict, main_rows: list[dict]) -> list[str]:
    L = ["## Peers (R)", ""]
    for key, title in (("national", "National data, ML peers"),
                       ("national_brms", "National data, brms")):
        if key in pe:
            L += [f"### {title}", "", f"`{pe[key]['cmd']}`", ""]
            L += _peer_table(pe[key].get("result")) + [""]
    if "subset" in pe:
        s = pe["subset"]
        L += [f"### Subset: the {len(s['las'])} LAs with fewest LSOAs ({s['n_lsoa']:,} LSOAs)", ""]
        L += _fit_rows([s["ours"]]) + [""]
        L += [f"`{s['peers']['cmd']}`", ""] + _peer_table(s["peers"].get("result")) + [""]
    if pe.get("agreement"):
        L += ["### Agreement of fixed effects (|our median - peer| < 0.5 posterior sd)", "",
              "| comparison | parameter | ours median (sd) | peer estimate (se) | diff / sd | "
              "verdict |", "|---|---|---|---|---|---|"]
        for comp, rows in pe["agreement"].items():
            for p, r in rows.items():
                L.append(f"| {comp} | {p} | {r['ours_median']:.4f} ({r['ours_sd']:.4f}) | "
                         f"{r['peer']:.4f} ({_f(r['peer_se'], 4)}) | {r['diff_in_sd']:+.2f} | "
                         f"{r['verdict']} |")
        L.append("")
    return L


def headline(res: dict) -> dict:
    h = {}
    main = {r["name"]: r for r in res.get("main", []) if "wall_s" in r}
    nb, po = main.get("main_negbin_nutpie"), main.get("main_poisson_nutpie")
    if nb:
        h["negbin_wall_s"] = nb["wall_s"]
        h["negbin_wall_vs_60s"] = nb["wall_s"] / TARGETS["negbin_wall_s"]
    if po:
        h["poisson_wall_s"] = po["wall_s"]
        h["poisson_wall_vs_30s"] = po["wall_s"] / TARGETS["poisson_wall_s"]
    rss = [r["peak_rss_mb"] for r in main.values() if r["sampler"] == "nutpie"]
    if rss:
        h["peak_rss_mb_nutpie_max"] = max(rss)
        h["peak_rss_vs_2GB"] = max(rss) / TARGETS["peak_rss_mb"]
    pe = res.get("peers") or {}
    nat = ((pe.get("national") or {}).get("result") or {}).get("peers", {})
    if nb and nat.get("glmmtmb_nb", {}).get("status") == "ok":
        g = nat["glmmtmb_nb"]["wall_s"]
        h["glmmtmb_nb_wall_s"] = g
        h["ours_nb_wall_over_glmmtmb_nb_wall"] = nb["wall_s"] / g
    sub = pe.get("subset") or {}
    sp = ((sub.get("peers") or {}).get("result") or {}).get("peers", {})
    so = sub.get("ours") or {}
    b = sp.get("brms_nb", {})
    if "ess_per_s" in so and b.get("status") == "ok":
        conv = b["convergence"]
        brms_ess = conv.get("min_ess_bulk_all", conv.get("min_ess_bulk"))
        brms_ess_s = brms_ess / b["wall_s"]
        h["subset_ours_ess_per_s"] = so["ess_per_s"]
        h["subset_brms_ess_per_s_wall"] = brms_ess_s
        h["subset_ess_per_s_ratio_ours_over_brms"] = so["ess_per_s"] / brms_ess_s
        h["subset_wall_ours_s"] = so["wall_s"]
        h["subset_wall_brms_s"] = b["wall_s"]
    nb_b = (((pe.get("national_brms") or {}).get("result") or {}).get("peers", {})
            .get("brms_nb", {}))
    if nb_b:
        h["national_brms_nb"] = nb_b.get("status") + (
            f" ({nb_b.get('message')})" if nb_b.get("message") else "")
    return h


def _headline_md(res: dict) -> list[str]:
    h = res.get("headline") or {}
    L = ["## Headline", ""]
    if "negbin_wall_s" in h:
        L.append(f"* NB (nutpie, 4x1000/1000) total wall **{h['negbin_wall_s']:.0f} s** vs 60 s "
                 f"target: x{h['negbin_wall_vs_60s']:.2f} "
                 f"({'met' if h['negbin_wall_vs_60s'] <= 1 else 'MISSED'})")
    if "poisson_wall_s" in h:
        L.append(f"* Poisson (nutpie, 4x1000/1000) total wall **{h['poisson_wall_s']:.0f} s** vs "
                 f"30 s target: x{h['poisson_wall_vs_30s']:.2f} "
                 f"({'met' if h['poisson_wall_vs_30s'] <= 1 else 'MISSED'})")
    if "peak_rss_mb_nutpie_max" in h:
        L.append(f"* Peak memory (largest nutpie fit) **{h['peak_rss_mb_nutpie_max']:.0f} MB** vs "
                 f"2 GB target: x{h['peak_rss_vs_2GB']:.2f} "
                 f"({'met' if h['peak_rss_vs_2GB'] <= 1 else 'MISSED'})")
    if "glmmtmb_nb_wall_s" in h:
        L.append(f"* Our NB wall / glmmTMB nbinom2 wall: {h['negbin_wall_s']:.0f} s / "
                 f"{h['glmmtmb_nb_wall_s']:.0f} s = **x{h['ours_nb_wall_over_glmmtmb_nb_wall']:.1f}**"
                 " (glmmTMB gives a Laplace point estimate, not a posterior)")
    if "subset_ess_per_s_ratio_ours_over_brms" in h:
        L.append(f"* Subset ESS/s, ours / brms NB (min bulk ESS over all parameters / total wall "
                 f"incl. compile): {h['subset_ours_ess_per_s']:.1f} / "
                 f"{h['subset_brms_ess_per_s_wall']:.2f} = "
                 f"**x{h['subset_ess_per_s_ratio_ours_over_brms']:.0f}** (wall "
                 f"{h['subset_wall_ours_s']:.0f} s vs {h['subset_wall_brms_s']:.0f} s)")
    if "national_brms_nb" in h:
        L.append(f"* brms NB on the national data: {h['national_brms_nb']}")
    return L


def load_results() -> dict:
    return json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}


def save_results(res: dict) -> None:
    res["headline"] = headline(res)
    RESULTS_JSON.write_text(json.dumps(res, indent=1, default=str) + "\n")
    write_md(res)


# ----------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_fit":
        p = argparse.ArgumentParser()
        for k, t, d in (("--data", str, None), ("--outcome", str, "referrals"),
                        ("--family", str, "negbin"), ("--sampler", str, "nutpie"),
                        ("--chains", int, 4), ("--tune", int, 1000), ("--draws", int, 1000),
                        ("--adaptation", str, "diag"), ("--seed", int, 2021),
                        ("--max-predictive-draws", int, 1000), ("--out", str, None)):
            p.add_argument(k, type=t, default=d)
        _worker_fit(p.parse_args(argv[1:]))
        return 0
    if argv and argv[0] == "_grad":
        p = argparse.ArgumentParser()
        p.add_argument("--data")
        p.add_argument("--outcome", default="referrals")
        p.add_argument("--min-seconds", type=float, default=3.0)
        p.add_argument("--out")
        _worker_grad(p.parse_args(argv[1:]))
        return 0

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small smoke run (2 chains, few draws)")
    p.add_argument("--only", default=None,
                   help="comma-separated sections: main,variants,grad,peers,scaling")
    p.add_argument("--peers", action="store_true", help="also run the R peers")
    p.add_argument("--scaling", action="store_true", help="also run the scaling grid")
    p.add_argument("--samplers", default="nutpie,pymc,numpyro")
    p.add_argument("--all-families", action="store_true",
                   help="also fit Poisson with pymc/numpyro (default: NB only for those)")
    p.add_argument("--brms-timeout", type=int, default=900, help="seconds per brms fit")
    p.add_argument("--brms-national-timeout", type=int, default=900,
                   help="seconds for brms_nb on the national data")
    p.add_argument("--subset-las", type=int, default=20)
    p.add_argument("--fresh", action="store_true", help="discard the previous results.json")
    p.add_argument("--regen", action="store_true",
                   help="only rewrite results.md from results.json (and bench/findings.md)")
    a = p.parse_args(argv)
    if a.regen:
        save_results(load_results())
        return 0
    sections = (a.only.split(",") if a.only else
                ["main", "variants", "grad"] + ["peers"] * a.peers + ["scaling"] * a.scaling)
    WORK.mkdir(parents=True, exist_ok=True)
    res = {} if a.fresh else load_results()
    cmd = "python bench/run.py " + " ".join(argv)
    res.setdefault("commands", [])
    res["commands"] = [c for c in res["commands"] if c != cmd] + [cmd]
    res["environment"] = environment()
    res.setdefault("load", {})[f"before `{cmd}`"] = _uptime()
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
            res["peers"] = section_peers(a.quick, res.get("main", []), a.brms_timeout,
                                         a.subset_las, a.brms_national_timeout)
        elif s == "scaling":
            res["scaling"] = section_scaling(a.quick)
        else:
            raise SystemExit(f"unknown section {s!r}")
        res.setdefault("section_seconds", {})[s] = time.perf_counter() - t0
        save_results(res)
    res["load"][f"after `{cmd}`"] = _uptime()
    save_results(res)
    print(json.dumps(res.get("headline"), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
