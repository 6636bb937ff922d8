"""nutpie's compiled model with cacheable C callbacks (socialgradient.callbacks)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import nutpie
import pytest

from socialgradient import callbacks

DRAWS = dict(draws=80, tune=80, chains=2, seed=3, progress_bar=False)

#: Builds the small model and compiles it; shared by the tests and the subprocess.
BUILD = textwrap.dedent("""
    from socialgradient.data.synthetic.england import simulate
    from socialgradient.model import NeighbourhoodData, build_model
    from socialgradient.spec import Spec

    def small_model(seed=5):
        t = simulate(seed=seed, scale=0.2).table
        t = t[t["la"].isin(t["la"].unique()[:6])].reset_index(drop=True)
        data = NeighbourhoodData.from_table(t, "referrals")
        return build_model(data, Spec("referrals", la_effects="centred"))
""")
namespace: dict = {}
exec(BUILD, namespace)
small_model = namespace["small_model"]


def key(model):
    from socialgradient.compiled import structure_key

    return structure_key(model)


def b_w(compiled) -> np.ndarray:
    return nutpie.sample(compiled, **DRAWS)["posterior"]["b_w"].values


def test_the_same_draws_as_nutpies_own_compilation():
    ours = callbacks.compile_model(small_model(), key(small_model()))
    theirs = nutpie.compile_pymc_model(small_model())
    np.testing.assert_array_equal(b_w(ours), b_w(theirs))


def test_a_new_process_loads_the_callbacks_from_disk_and_samples_the_same_draws():
    model = small_model()
    here = b_w(callbacks.compile_model(model, key(model)))  # compiles (or loads) and caches
    script = BUILD + textwrap.dedent(f"""
        import json, nutpie
        from socialgradient import callbacks
        from socialgradient.compiled import structure_key
        model = small_model()
        c = callbacks.compile_model(model, structure_key(model))
        draws = nutpie.sample(c, **{DRAWS!r})["posterior"]["b_w"].values
        print(json.dumps({{"built": c.logp_func is not None,
                          "hits": [c.compiled_logp_func.cache_hits,
                                    c.compiled_expand_func.cache_hits],
                          "draws": draws.tolist()}}))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    there = json.loads(run.stdout.strip().splitlines()[-1])
    assert there["hits"] == [1, 1]  # both callbacks loaded, not compiled
    assert not there["built"]  # nor PyTensor's functions built: the layout file sufficed
    np.testing.assert_array_equal(np.asarray(there["draws"]), here)


def test_with_data_samples_what_a_compilation_for_that_data_does():
    first, other = small_model(), small_model(seed=6)
    assert key(first) == key(other)  # the same geography, other counts: same structure
    compiled = callbacks.compile_model(first, key(first))
    reused = callbacks.with_data(compiled, other)
    assert not np.array_equal(reused.shared_data["rows_y"], compiled.shared_data["rows_y"])
    # LA effects start at their means, which depend on the data (m_c)
    assert not np.array_equal(reused.initial_point_func(1), compiled.initial_point_func(1))
    np.testing.assert_array_equal(b_w(reused), b_w(callbacks.compile_model(other, key(other))))


def test_with_data_and_user_data_refuse_missing_data_and_wrong_ranks():
    model = small_model()
    compiled = callbacks.compile_model(model, key(model))
    needs_more = dataclasses.replace(
        compiled, shared_data={**compiled.shared_data, "gone": np.zeros(2)})
    with pytest.raises(KeyError, match="model lacks the shared variables \\['gone'\\]"):
        callbacks.with_data(needs_more, model)
    values = {var: compiled.shared_data[name] for var, name in compiled.shared_var_keys.items()}
    rows_y = next(v for v in values if v.name == "rows_y")
    values[rows_y] = np.zeros((2, 2), dtype=np.int32)
    with pytest.raises(ValueError, match="'rows_y': expected 1-d int32, got 2-d int32"):
        callbacks.user_data(list(values), values)


def test_the_file_is_named_by_structure_and_versions(tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "folder", lambda: tmp_path)
    a = callbacks._module("N = 1\n", "key-a")
    b = callbacks._module("N = 1\n", "key-b")
    again = callbacks._module("N = 1\n", "key-a")
    assert a.__file__ == again.__file__ != b.__file__
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [a.__name__.removeprefix("socialgradient_") + ".py",
         b.__name__.removeprefix("socialgradient_") + ".py"])


def test_without_numbas_cache_the_layout_alone_is_not_trusted(tmp_path, monkeypatch):
    """The layout file without numba's cached callbacks (cleared, another machine): the
    callbacks are built and compiled again, not loaded half-way."""
    import shutil

    monkeypatch.setattr(callbacks, "folder", lambda: tmp_path)
    k = key(small_model())
    first = callbacks.compile_model(small_model(), k)
    assert first.logp_func is not None
    assert list(tmp_path.glob("*.json"))
    loaded = callbacks.compile_model(small_model(), k)
    assert loaded.logp_func is None  # from the cache
    shutil.rmtree(tmp_path / "__pycache__")
    rebuilt = callbacks.compile_model(small_model(), k)
    assert rebuilt.logp_func is not None
    np.testing.assert_array_equal(b_w(rebuilt), b_w(loaded))
