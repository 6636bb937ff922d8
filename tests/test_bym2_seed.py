"""A BYM2 fit is reproducible for a seed, whatever the state of PyTensor's numba cache.

The cause of the irreproducible BYM2 fits: PyTensor's numba backend compiles with fast-math
(LLVM may reassociate and contract floating-point arithmetic), and a model's function
inlines the per-op functions it compiles fresh but only links those it loads from
PyTensor's disk cache, so the same graph gave different last bits (the BYM2 gradient with
respect to ``spatial_phi``: the ICAR's component sums and the LA centring, scatter-adds) in a
process whose PyTensor cache was cold and in one where it was warm; the sampler amplified the
difference into other draws, and the callbacks' disk cache kept whichever came first.
:func:`socialgradient.sampling._nutpie.compile_model` compiles under ``NUMERICS`` (fast-math
off): IEEE arithmetic, the same inlined or not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytensor
import pytest
from pytensor.configdefaults import config

import socialgradient
from socialgradient.sampling import _nutpie as callbacks

SRC = Path(socialgradient.__file__).parents[1]

#: The first LAs of the default England, BYM2 on the shipped synthetic graph (about 1,000
#: LSOAs): the model of the irreproducible fits, small.
BUILD = textwrap.dedent("""
    import socialgradient.api as sg
    from socialgradient.sampling.fit import model_of
    from socialgradient.spec import Spec

    def bym2_model(n_la=10):
        table = sg.default_data()
        table = table[table["la"].isin(table["la"].unique()[:n_la])].reset_index(drop=True)
        spec = Spec("referrals", family="poisson", spatial="bym2", neighbours="synthetic")
        return model_of(sg.encode(table, spec), spec)[0]
""")
namespace: dict = {}
exec(BUILD, namespace)
bym2_model = namespace["bym2_model"]


def logp_and_gradient(model):
    """Compile the log density and its gradient as nutpie does (numba) under the flags set."""
    values = model.value_vars
    logp = model.logp(jacobian=True)
    return values, pytensor.function(values, [logp, *pytensor.grad(logp, values)], mode="NUMBA")


def test_compile_model_compiles_without_fast_math(monkeypatch):
    monkeypatch.setenv(callbacks.ENV_SWITCH, "0")  # the public path: one function to watch
    seen = []
    monkeypatch.setattr(callbacks, "_public", lambda model: seen.append(config.numba__fastmath))
    before = config.numba__fastmath
    callbacks.compile_model(object(), "key")
    assert seen == [False]
    assert config.numba__fastmath == before  # the flag is set for the compilation only


def bym2_term_model(n_la=10):
    """The BYM2 term alone (LA-centred, the shipped graph over the first LAs) with Poisson
    counts: a small graph with the scatter-adds whose last bits differed."""
    import pymc as pm

    import socialgradient.api as sg
    from socialgradient.model.spatial import add_bym2
    from socialgradient.model.terms import SpatialEffect
    from socialgradient.spec import Spec

    table = sg.default_data()
    table = table[table["la"].isin(table["la"].unique()[:n_la])].reset_index(drop=True)
    spec = Spec("referrals", family="poisson", spatial="bym2", neighbours="synthetic")
    data = sg.encode(table, spec)
    term = data.term(SpatialEffect)
    y = np.bincount(term.index, weights=data.y, minlength=len(term.codes))
    with pm.Model() as model:
        effect = add_bym2(term.adjacency(), groups=term.la_of_codes(data.la_index))
        pm.Poisson("y", pm.math.exp(np.log(np.maximum(y, 1.0)) + effect), observed=y)
    return model


@pytest.mark.parametrize(
    "build", [bym2_term_model, pytest.param(bym2_model, marks=pytest.mark.slow)]
)
def test_the_bym2_gradient_is_the_same_from_pytensors_cache_and_compiled_fresh(build, monkeypatch):
    """What compile_model compiles: bit for bit the same with PyTensor's cache on and off.

    Under PyTensor's default fast-math the function built from cached per-op functions and
    the one compiled fresh differed in ``spatial_phi``'s gradient (a few to hundreds of its
    ~1,000 values, by ~1e-15): this test failed before ``NUMERICS`` (once PyTensor's cache
    holds the model's per-op functions: the first compilation here writes them).
    """
    model = build()
    rng = np.random.default_rng(0)
    start = model.initial_point()
    results: dict = {}

    def compile_twice(model):
        values, _ = logp_and_gradient(model)  # writes PyTensor's cache (a cold one)
        point = [
            (start[v.name] + 0.3 * rng.standard_normal(np.shape(start[v.name]))).astype(
                start[v.name].dtype
            )
            for v in values
        ]
        for cache in (True, False):
            with config.change_flags(numba__cache=cache):
                _, f = logp_and_gradient(model)
                results[cache] = [np.asarray(out) for out in f(*point)]
        results["names"] = ["logp", *(v.name for v in values)]

    monkeypatch.setenv(callbacks.ENV_SWITCH, "0")
    monkeypatch.setattr(callbacks, "_public", compile_twice)
    callbacks.compile_model(model, "key")
    assert "spatial_z" in results["names"]
    for name, cached, fresh in zip(results["names"], results[True], results[False], strict=True):
        assert np.array_equal(cached, fresh), (
            f"{name}: {int((cached != fresh).sum())} of {cached.size} values differ"
        )


#: One fit in a fresh process: its own callback cache, PyTensor's numba cache on or off.
FIT = BUILD + textwrap.dedent("""
    import json, sys
    import nutpie
    from socialgradient.sampling import compiled

    model = bym2_model(n_la=int(sys.argv[1]))
    c, _ = compiled.compile_nutpie(model)
    post = nutpie.sample(c, draws=30, tune=30, chains=1, seed=11, progress_bar=False)
    post = post["posterior"]
    print(json.dumps({k: post[k].values.ravel().tolist() for k in ("spatial_rho", "b_w")}))
""")


@pytest.mark.slow
def test_bym2_draws_for_a_seed_do_not_depend_on_pytensors_cache_or_the_hash_seed(tmp_path):
    """Two fits in fresh processes, PYTHONHASHSEED 1 and 2, one with PyTensor's numba cache
    off (every function compiled fresh: a cold cache's numerics), each building its own
    callbacks: the same draws."""
    draws = []
    for run, (hash_seed, cache) in enumerate([("1", "True"), ("2", "False")]):
        env = os.environ | {
            "PYTHONHASHSEED": hash_seed,
            callbacks.ENV_DIR: str(tmp_path / f"callbacks{run}"),
            "PYTENSOR_FLAGS": ",".join(
                f for f in (os.environ.get("PYTENSOR_FLAGS", ""), f"numba__cache={cache}") if f
            ),
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        }
        done = subprocess.run(
            [sys.executable, "-c", FIT, "6"], env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        draws.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for name in ("spatial_rho", "b_w"):
        np.testing.assert_array_equal(draws[0][name], draws[1][name], err_msg=name)
