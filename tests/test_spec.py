"""The frozen analysis spec: validation, canonical JSON, hash, replace, TOML loading."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from socialgradient.spec import Sampling, Spec, load_spec

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_and_name():
    spec = Spec("referrals")
    assert spec.family == "negbin"
    assert spec.name == "referrals_negbin"
    assert spec.sampling == Sampling()
    assert Spec("cp_plans", family="poisson", name="x").name == "x"


def test_unknown_family_raises():
    with pytest.raises(ValueError, match="unknown family"):
        Spec("referrals", family="gamma")


def test_unknown_sampler_raises():
    with pytest.raises(ValueError, match="unknown sampler"):
        Sampling(sampler="stan")


@pytest.mark.parametrize("field", ["draws", "tune", "chains"])
@pytest.mark.parametrize("value", [0, -5, 2.5, "100"])
def test_non_positive_or_non_integer_counts_raise(field, value):
    with pytest.raises(ValueError, match=rf"sampling\.{field}"):
        Sampling(**{field: value})


def test_unknown_keys_raise():
    with pytest.raises(ValueError, match=r"unknown key.*'familly'"):
        Spec.from_dict({"outcome": "referrals", "familly": "negbin"})
    with pytest.raises(ValueError, match=r"unknown key.*'thin'.*\[sampling\]"):
        Spec.from_dict({"outcome": "referrals", "sampling": {"thin": 2}})


def test_unknown_key_in_toml_raises(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('outcome = "referrals"\n[sampling]\ndraw = 10\n')
    with pytest.raises(ValueError, match="unknown key"):
        load_spec(path)


def test_frozen():
    spec = Spec("referrals")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.family = "poisson"


def test_json_round_trip():
    spec = Spec(
        "cin_plans",
        family="poisson",
        name="n",
        sampling=Sampling(sampler="pymc", draws=7, tune=9, chains=3, seed=5),
    )
    again = Spec.from_json(spec.to_json())
    assert again == spec
    assert again.to_json() == spec.to_json()


def test_hash_stable_and_sensitive():
    spec = Spec("referrals")
    assert spec.hash == Spec("referrals").hash
    assert len(spec.hash) == 16
    int(spec.hash, 16)
    assert spec.hash == Spec.from_json(spec.to_json()).hash
    changed = [
        Spec("assessments"),
        Spec("referrals", family="poisson"),
        Spec("referrals", name="other"),
        spec.replace(draws=999),
        spec.replace(seed=1),
        spec.replace(sampler="numpyro"),
    ]
    hashes = {spec.hash, *(s.hash for s in changed)}
    assert len(hashes) == len(changed) + 1


def test_replace_edits_sampling_and_top_level():
    spec = Spec("referrals")
    fewer = spec.replace(draws=50, tune=60)
    assert fewer.sampling.draws == 50
    assert fewer.sampling.tune == 60
    assert fewer.sampling.chains == spec.sampling.chains
    assert fewer.family == spec.family
    assert spec.sampling.draws == 1000  # the original is untouched
    assert spec.replace(family="poisson").family == "poisson"
    assert spec.replace(draws=None) == spec  # None means "leave as is" (CLI defaults)
    with pytest.raises(ValueError, match=r"sampling\.draws"):
        spec.replace(draws=0)


def test_load_committed_spec():
    spec = load_spec(ROOT / "models" / "national_referrals.toml")
    assert spec.name == "national_referrals"
    assert spec.outcome == "referrals"
    assert spec.family == "negbin"
    assert spec.sampling == Sampling(sampler="nutpie", draws=800, tune=500, chains=4, seed=2021)
