"""Cost per gradient evaluation of three forms of the NB2 normaliser on the default England.

    .venv/bin/python bench/nb_normaliser.py old|log1p|switch

``old``: log(mu + phi) with lgamma differences (fast, loses precision as phi -> infinity);
``log1p``: the stable form the package uses (families.Family.normaliser); ``switch``: a
series below r = 1e-4 and log(1 + r) above. One chain, 300 + 300 draws, nutpie, centred LA
effects: the same trajectories (same number of gradient evaluations), so seconds per
evaluation compare the forms. Results: bench/language.md.
"""
import sys
import time

import numpy as np
import nutpie
import pytensor.tensor as pt

import socialgradient.api as sg
from socialgradient import families
from socialgradient.model import NeighbourhoodData, build_model
from socialgradient.spec import Spec

if __name__ == "__main__":
    t = sg.default_data()
    d = NeighbourhoodData.from_table(t, "referrals")
    variant = sys.argv[1]
    def normaliser(self, eta, rows, params):
        phi = params["phi"]
        y = rows.y.get_value() if hasattr(rows.y, "get_value") else rows.y
        if variant == "old":
            values, counts = np.unique(y, return_counts=True)
            lg = pt.sum(counts * (pt.gammaln(values + phi) - pt.gammaln(phi)))
            return lg + len(y) * phi * pt.log(phi) - pt.sum((rows.y + phi) * pt.log(pt.exp(rows.log_exposure + eta) + phi))
        k_j = families._exceedances(y)
        j = np.arange(len(k_j))
        r = pt.exp(rows.log_exposure + eta) / phi
        if variant == "log1p":
            log1p_r = pt.log1p(r)
        elif variant == "mul":  # multiply by 1/phi (one scalar division) instead of dividing rows
            log1p_r = pt.log1p(pt.exp(rows.log_exposure + eta) * pt.reciprocal(phi))
        elif variant == "expsub":
            log1p_r = pt.log1p(pt.exp(rows.log_exposure + eta - pt.log(phi)))
        else:  # a series below 1e-4, log(1 + r) above
            log1p_r = pt.switch(r < 1e-4, r * (1 - r * (0.5 - r / 3)), pt.log(1 + r))
        return pt.sum(k_j * pt.log1p(j / phi)) - pt.sum((rows.y + phi) * log1p_r)
    families.Family.normaliser = normaliser
    model = build_model(d, Spec("referrals", la_effects="centred"))
    c = nutpie.compile_pymc_model(model)
    start = time.perf_counter()
    tr = nutpie.sample(c, draws=300, tune=300, chains=1, seed=1, progress_bar=False)
    el = time.perf_counter() - start
    steps = int(tr["sample_stats"]["n_steps"].sum())
    print(variant, "seconds", round(el, 1), "grad evals", steps, "us per eval", round(1e6 * el / steps, 1))
