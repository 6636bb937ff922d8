"""Benchmark sections: main, variants, grad, peers (R), scaling; each returns its rows."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
from harness import BENCH, PARAMS, PY, WORK, default_data_path, fit_config, now, run_sub


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
        out.append(
            fit_config(
                f"main_{family}_{sampler}",
                data,
                family=family,
                sampler=sampler,
                chains=ct,
                tune=cd,
                draws=cd,
                timeout=1800 if sampler == "nutpie" else 900,
            )
        )
    return out


def section_variants(quick: bool) -> list[dict]:
    data = default_data_path()
    c, n = (2, 200) if quick else (4, 1000)
    short = 100 if quick else 500
    return [
        fit_config(
            "variant_negbin_lowrank", data, adaptation="low_rank", chains=c, tune=n, draws=n
        ),
        fit_config("variant_negbin_tune500", data, chains=c, tune=short, draws=short),
        fit_config(
            "variant_poisson_tune500", data, family="poisson", chains=c, tune=short, draws=short
        ),
    ]


def section_grad(quick: bool) -> list[dict]:
    out = WORK / "grad.json"
    out.unlink(missing_ok=True)
    cmd = [
        PY,
        str(BENCH / "run.py"),
        "_grad",
        "--data",
        str(default_data_path()),
        "--min-seconds",
        "0.5" if quick else "3",
        "--out",
        str(out),
    ]
    print(f"[{now()}] gradient cost", flush=True)
    proc = run_sub(cmd, WORK / "logs" / "grad.log", timeout=1200)
    if not out.exists():
        return [
            {
                "impl": "grad worker",
                "error": (WORK / "logs" / "grad.log").read_text()[-1500:],
                **proc,
            }
        ]
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
    cmd = [
        "Rscript",
        str(BENCH / "peers" / "peers.R"),
        str(csv),
        "referrals",
        str(out),
        "--which",
        which,
        "--timeout",
        str(timeout),
        "--cores",
        "2",
    ]
    print(f"[{now()}] peers {which} on {csv.name} (timeout {timeout}s each)", flush=True)
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
        rows[p] = {
            "ours_median": e["median"],
            "ours_sd": e["sd"],
            "peer": fx["estimate"],
            "peer_se": fx.get("se"),
            "diff_in_sd": diff / e["sd"],
            "verdict": "PASS" if abs(diff) < 0.5 * e["sd"] else "FAIL",
        }
    return rows


def section_peers(
    quick: bool, main_rows: list[dict], brms_timeout: int, n_sub_la: int, brms_national_timeout: int
) -> dict:
    csv = _write_csv(default_data_path(), WORK / "peers" / "national.csv")
    res = {
        "national": run_peers(
            csv,
            WORK / "peers" / "national.json",
            "lme4,glmmtmb_pois,glmmtmb_nb",
            1800,
            WORK / "logs" / "peers_national.log",
        )
    }
    if not quick:
        res["national_brms"] = run_peers(
            csv,
            WORK / "peers" / "national_brms.json",
            "brms_nb",
            brms_national_timeout,
            WORK / "logs" / "peers_national_brms.log",
        )
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
        sub_csv,
        WORK / "peers" / "subset.json",
        "glmmtmb_nb,brms_nb" if not quick else "glmmtmb_nb",
        brms_timeout,
        WORK / "logs" / "peers_subset.log",
    )
    # agreement checks
    ours_nat = next(
        (r for r in main_rows if r.get("name") == "main_negbin_nutpie" and "estimates" in r), None
    )
    checks = {}
    nat_peers = (res["national"].get("result") or {}).get("peers", {})
    if ours_nat is not None:
        for k in ("glmmtmb_nb",):
            if nat_peers.get(k, {}).get("status") == "ok":
                checks[f"national: ours NB vs {k}"] = agreement(ours_nat, nat_peers[k])
        nb = ((res.get("national_brms") or {}).get("result") or {}).get("peers", {})
        if nb.get("brms_nb", {}).get("status") == "ok":
            checks["national: ours NB vs brms_nb"] = agreement(ours_nat, nb["brms_nb"])
    ours_pois = next(
        (r for r in main_rows if r.get("name") == "main_poisson_nutpie" and "estimates" in r), None
    )
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

    from socialgradient.data.deprivation import decompose
    from socialgradient.data.synthetic.england import B_X

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
    return pd.DataFrame(
        {
            "lsoa": [f"E01{i:06d}" for i in range(1, n + 1)],
            "la": la_codes[idx],
            "children": children,
            "income": income,
            "referrals": y,
        }
    )


def section_scaling(quick: bool) -> list[dict]:
    # (label, n_la, mean LSOAs per LA); ~3.3k / 33k / 330k rows at 150 LAs, then 25 / 600 LAs
    grid = [
        ("rows", 150, 22),
        ("rows", 150, 219),
        ("rows", 150, 2190),
        ("las", 25, 1314),
        ("las", 600, 55),
    ]
    if quick:
        grid = [("rows", 150, 22), ("las", 25, 130)]
    chains, n = (2, 100) if quick else (2, 500)
    out = []
    for label, n_la, n_per in grid:
        table = make_table(n_la, n_per, seed=7)
        path = WORK / "scaling" / f"{label}_{n_la}la_{len(table)}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(path, index=False)
        r = fit_config(
            f"scaling_{label}_{n_la}la_{len(table)}",
            path,
            chains=chains,
            tune=n,
            draws=n,
            max_predictive_draws=200,
            timeout=1500,
        )
        r["axis"] = label
        out.append(r)
    return out
