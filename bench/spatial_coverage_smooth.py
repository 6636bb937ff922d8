"""Second coverage design: smooth deprivation, a smooth field, LSOA information dominating b_w.

The first design (``bench/spatial_coverage.py``) showed no loss of coverage without BYM2:
with 4 LAs and the default ``la_sd_slope`` prior (HalfNormal 0.5), b_w's interval is mostly
the between-LA slope uncertainty. Here the LA slopes' SD prior is ``--la-sd-slope`` (default
0.02: the truth has one slope for every LA), the lattice is larger (``--size`` square, in
``--las`` strips), deprivation within an LA is mostly smooth (``--clustered-income`` SD of
an ICAR part, ``--income-noise`` width of the iid part), and the field is smooth (``--sd``,
``--rho``), independent of deprivation. Each replicate ``r`` is fitted with and without
``spatial = "bym2"``, 2 chains x ``--draws`` + ``--draws``, seed ``r``. One JSON line per
replicate and model: b_w's median and 95% interval, whether it covers the truth (0.3), its
width, divergences, the Moran check's p, and for BYM2 ``spatial_sd`` and ``spatial_rho``::

    PYTHONPATH=src python bench/spatial_coverage_smooth.py --replicates 40 --out smooth.jsonl
"""

from __future__ import annotations

import argparse


def main() -> int:
    import numpy as np
    from spatial_coverage import fit_both, record

    from socialgradient.data.synthetic.spatial import lattice_table

    p = argparse.ArgumentParser()
    p.add_argument("--replicates", type=int, default=40)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--out", default="")
    p.add_argument("--family", default="poisson", choices=["negbin", "poisson"])
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--las", type=int, default=4)
    p.add_argument("--sd", type=float, default=0.4)
    p.add_argument("--rho", type=float, default=0.95)
    p.add_argument("--clustered-income", type=float, default=0.1)
    p.add_argument("--income-noise", type=float, default=0.05)
    p.add_argument("--la-sd-slope", type=float, default=0.02)
    p.add_argument("--draws", type=int, default=300)
    a = p.parse_args()
    truth = 0.3
    design = {
        "size": a.size,
        "las": a.las,
        "sd": a.sd,
        "rho": a.rho,
        "clustered_income": a.clustered_income,
        "income_noise": a.income_noise,
        "la_sd_slope": a.la_sd_slope,
        "draws": a.draws,
    }
    for r in range(a.start, a.start + a.replicates):
        table, pairs, _ = lattice_table(
            a.size,
            a.size,
            las=a.las,
            sd=a.sd,
            rho=a.rho,
            b_w=truth,
            clustered_income=a.clustered_income,
            income_noise=a.income_noise,
            seed=r,
        )
        fits = fit_both(
            table,
            pairs,
            family=a.family,
            draws=a.draws,
            seed=r,
            truth=truth,
            priors={"la_sd_slope": a.la_sd_slope},
        )
        for _, tree, line in fits:
            line["design"] = design
            post = tree["posterior"]
            for name in ("spatial_sd", "spatial_rho"):
                if name in post:
                    q = np.quantile(post[name].values, [0.5, 0.025, 0.975])
                    line[name] = [round(float(v), 4) for v in q]
            record(line, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
