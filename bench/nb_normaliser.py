"""Microseconds per log density + gradient evaluation of the national NB model on the
default England, compiled by PyTensor's numba backend (as nutpie runs it), one process per
variant:

    .venv/bin/python bench/nb_normaliser.py stable|overdispersed|constants
    PYTHONPATH=/tmp/old_sg/src .venv/bin/python bench/nb_normaliser.py old

``overdispersed``: what the package builds for referrals (``model.nb_stable`` is False: the
cheaper normaliser, one ``log`` per row); ``stable``: the same model forced to the stable
``log1p`` form; ``constants``: the package's model with the rows as constants instead of
``pm.Data``; ``old``: the code before the model language (0808199, ``git archive 0808199
src | tar -x -C /tmp/old_sg``). 5 repeats of 1,000 calls at the initial point; the minimum
is the least disturbed by other load. Results: bench/language.md.
"""

import sys
import time

import numpy as np
import pytensor
import pytensor.tensor as pt

import socialgradient.api as sg

if __name__ == "__main__":
    variant = sys.argv[1]
    if variant != "old":
        import pymc as pm

        from socialgradient.model import build as model_module
        from socialgradient.model import families

        if variant == "stable":
            model_module.nb_stable = lambda data, family: True
        if variant == "constants":
            data = pm.Data

            def constant_rows(name, value, **kw):
                if name.startswith("rows_"):
                    return pt.as_tensor(np.asarray(value))
                return data(name, value, **kw)

            model_module.pm.Data = families.pm.Data = constant_rows
    model = sg.build(sg.default_data(), "referrals")
    inputs = model.value_vars
    logp = model.logp()
    f = pytensor.function(inputs, [logp, *pt.grad(logp, inputs)], mode="NUMBA")
    point = model.initial_point()
    args = [point[v.name] for v in inputs]
    f(*args)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(1000):
            f(*args)
        times.append((time.perf_counter() - start) / 1000 * 1e6)
    print(variant, "us per evaluation", [round(t) for t in times], "min", round(min(times)))
