"""CP categories: the realised counts' log-linear fit against the same fit to the true counts.

Per seed, the suite's ``cp_categories`` table (records scale 0.2, the first year, one row per
LSOA) and, per CP category, a Poisson fit with a fixed intercept per LA and slopes on w and
w x m_c (maximum likelihood, exact Newton) to (a) the realised counts and (b) the true
expected counts of the same rows (expected CP plans per LSOA x the category's softmax share).
(b) is the fit's pseudo-true value; the truth the findings use,
``gradient_pseudo_true`` (:func:`socialgradient.data.synthetic.pseudo_true.pseudo_true_gradient`), is its
multilevel form (per-LA slopes regressed on m_c) and is listed beside them. Over seeds,
log(a / b) shows how far one realisation of the data lies from the truth of its own fit.

Run: ``PYTHONPATH=src python bench/cp_categories_realised.py 2021 1 2 ... > out.md``.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from socialgradient.data import records as r
from socialgradient.data.census import linkage
from socialgradient.data.deprivation import decompose
from socialgradient.data.synthetic import records as sr
from socialgradient.data.synthetic import records_year

_store: dict = {}
_year = records_year._year


def _spy(*args, **kwargs):
    """Keep the year's draws (their true expected counts per LSOA) as they are made."""
    out = _year(*args, **kwargs)
    _store["part"] = out
    return out


sr._year = _spy  # simulate_records calls records._year (imported from records_year)


def poisson_fe(y, n, x, la, n_la) -> np.ndarray:
    """Return the slopes of a Poisson fit with a free intercept per LA (profiled out)."""
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        mu0 = n * np.exp(x @ beta)
        with np.errstate(divide="ignore"):
            c = np.log(np.bincount(la, y, n_la) / np.bincount(la, mu0, n_la))
        m = mu0 * np.exp(np.where(np.isfinite(c), c, -50.0)[la])
        sm = np.bincount(la, m, n_la)
        smx = np.stack([np.bincount(la, m * x[:, j], n_la) for j in range(x.shape[1])], 1)
        h = (x * m[:, None]).T @ x - (smx / np.where(sm > 0, sm, 1.0)[:, None]).T @ smx
        step = np.linalg.solve(h, x.T @ (y - m))
        beta += step
        if np.abs(step).max() < 1e-10:
            return beta
    raise RuntimeError("no convergence")


def main(seeds: list[int]) -> None:
    """Print one markdown row per seed x category."""
    print("| seed | category | fit to realised counts | fit to true counts | log ratio |", end="")
    print(" gradient_pseudo_true | local gradient at w = 0 (pooled) |")
    print("|---|---|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {}
    for seed in seeds:
        rec = sr.simulate_records(seed=seed, scale=0.2)
        tab = linkage.aggregate(rec, by=(), outcomes=("cp_categories",))[0]
        tab = tab[tab["children"] > 0]
        geo, t = rec.geography, rec.truth
        dec = decompose(geo["income"], geo["children"], geo["la"])
        idx = tab["lsoa"].map({k: i for i, k in enumerate(geo["lsoa"])}).to_numpy()
        w, la = dec.w[idx], dec.la_index[idx]
        n, x = tab["children"].to_numpy(float), np.column_stack([w, w * dec.m_c[la]])
        expected = _store["part"]["expected"]["cp_plans"][idx]
        shares = r.cp_category_shares(w)
        th = t["thresholds"]["cp_plans"]
        shift = math.exp(th["lsoa_level"]["b_w"] - th["b_w"])
        for k, (code, (name, *_)) in enumerate(r.CP_CATEGORIES.items()):
            got = math.exp(poisson_fe(tab[f"cp_{name}"].to_numpy(float), n, x, la, len(dec.la))[0])
            true = math.exp(poisson_fe(expected * shares[:, k], n, x, la, len(dec.la))[0])
            ratios.setdefault(name, []).append(math.log(got / true))
            cat = t["cp_categories"][code]
            print(
                f"| {seed} | {name} | {got:.3f} | {true:.3f} | {math.log(got / true):+.3f} "
                f"| {cat['gradient_pseudo_true']:.3f} | {cat['gradient'] * shift:.3f} |",
                flush=True,
            )
    if len(seeds) < 2:
        return
    print("\n| category | seeds | mean log ratio | SD log ratio |\n|---|---|---|---|")
    for name, v in ratios.items():
        print(f"| {name} | {len(v)} | {np.mean(v):+.4f} | {np.std(v, ddof=1):.4f} |")


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [2021])
