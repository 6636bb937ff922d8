"""nutpie's chains sample with one BLAS thread (socialgradient.util.threads)."""

from __future__ import annotations

import pymc as pm
import pytest
import xarray as xr
from threadpoolctl import threadpool_info

from socialgradient.sampling import fit as fit_module
from socialgradient.spec import Sampling
from socialgradient.util.threads import one_blas_thread


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_one_blas_thread_limits_and_restores():
    before = _blas_threads()
    if not before:
        pytest.skip("no BLAS library that threadpoolctl can see")
    with one_blas_thread():
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before


def test_nutpie_samples_inside_the_limit(monkeypatch):
    if not _blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    seen = []

    def fake_sample(compiled, model, s, progressbar, **nuts):
        seen.append(_blas_threads())
        return xr.DataTree(), s.draws

    monkeypatch.setattr(fit_module.compiled_module, "compile_nutpie", lambda m: (None, False))
    monkeypatch.setattr(fit_module, "_sample_nutpie", fake_sample)
    with pm.Model() as model:
        pm.Normal("x")
    tree, _, _ = fit_module.sample(model, Sampling(draws=5, tune=5), progressbar=False)
    assert tree.attrs == {"tune": 5}
    assert seen
    assert set(seen[0]) == {1}
