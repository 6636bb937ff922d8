"""One nutpie compilation per model structure in a process (socialgradient.sampling.compiled)."""

from __future__ import annotations

import numpy as np
import pytest

from socialgradient.data.synthetic.england import simulate
from socialgradient.model.build import build_model
from socialgradient.model.data import NeighbourhoodData
from socialgradient.sampling import compiled
from socialgradient.sampling.fit import fit
from socialgradient.spec import Sampling, Spec

SPEC = Spec(
    "referrals", la_effects="centred", sampling=Sampling(draws=60, tune=60, chains=1, seed=4)
)


def table(seed: int):
    t = simulate(seed=seed, scale=0.05).table
    return t[t["la"].isin(t["la"].unique()[:6])].reset_index(drop=True)


@pytest.fixture(scope="module")
def datas():
    # the same 6 LAs (same geography), other counts: the same structure, other data
    a, b = table(5), table(5)
    b["referrals"] = np.random.default_rng(1).poisson(b["referrals"].to_numpy() + 0.5)
    return [NeighbourhoodData.from_table(t, "referrals") for t in (a, b)]


def test_keys_tell_structure_from_data(datas):
    a, b = datas
    key = compiled.structure_key
    assert key(build_model(a, SPEC)) == key(build_model(a, SPEC))
    # other counts, same structure: the same compilation serves both
    assert key(build_model(a, SPEC)) == key(build_model(b, SPEC))
    # other priors, family or centring: not
    assert key(build_model(a, SPEC.replace(priors={"b_w": 0.5}))) != key(build_model(a, SPEC))
    assert key(build_model(a, SPEC.replace(family="poisson"))) != key(build_model(a, SPEC))
    centred = np.ones(len(a.la), dtype=bool)
    centred[0] = False
    assert key(build_model(a, SPEC, centred=centred)) != key(build_model(a, SPEC))
    # another draw of the same geography (other incomes, so other m_c): the same structure
    again = NeighbourhoodData.from_table(table(6), "referrals")
    assert key(build_model(again, SPEC)) == key(build_model(a, SPEC))
    # other LAs (coordinates): not
    t = simulate(seed=5, scale=0.05).table
    other = t[t["la"].isin(t["la"].unique()[6:12])].reset_index(drop=True)
    other = NeighbourhoodData.from_table(other, "referrals")
    assert key(build_model(other, SPEC)) != key(build_model(a, SPEC))


def test_a_reused_compilation_samples_what_a_fresh_one_does(datas, monkeypatch):
    a, b = datas
    seen = []  # compile_nutpie's "reused" flag per fit (not timings: they vary by machine)
    original = compiled.compile_nutpie

    def spy(model):
        result = original(model)
        seen.append(result[1])
        return result

    monkeypatch.setattr(compiled, "compile_nutpie", spy)
    compiled.clear()
    fit(a, SPEC, progressbar=False)
    reused = fit(b, SPEC, progressbar=False)  # compiled for a, sampled with b's data
    compiled.clear()
    fresh = fit(b, SPEC, progressbar=False)
    assert seen == [False, True, False]
    for name in ("a", "b_w", "la_effect", "phi"):
        np.testing.assert_array_equal(
            reused["posterior"][name].values, fresh["posterior"][name].values
        )


def test_the_disk_cache_key_ignores_which_las_only_how_many(datas):
    """Other LAs of the same count: other coordinates, so another in-process compilation
    (it labels the draws), but the same machine code, so one entry of the callbacks' disk
    cache (compiled.code_key); another count of LAs changes the code."""
    a, _ = datas
    t = simulate(seed=5, scale=0.05).table
    las = t["la"].unique()
    other, more = (
        NeighbourhoodData.from_table(t[t["la"].isin(las[s])].reset_index(drop=True), "referrals")
        for s in (slice(6, 12), slice(0, 7))
    )
    assert len(other.y) != len(a.y)  # other rows too: the data's shapes are not in the key
    ka, ko, km = (compiled.keys(build_model(d, SPEC)) for d in (a, other, more))
    assert ka[0] == compiled.structure_key(build_model(a, SPEC))
    assert ka[1] == compiled.code_key(build_model(a, SPEC))
    assert ko[0] != ka[0]
    assert ko[1] == ka[1]
    assert km[1] != ka[1]
    compiled.clear()
    first, reused = compiled.compile_nutpie(build_model(a, SPEC))
    assert not reused
    second, reused = compiled.compile_nutpie(build_model(other, SPEC))
    assert not reused  # in this process: its own compilation, with its own coordinates
    assert list(second.coords["la"]) == list(other.la) != list(first.coords["la"])
