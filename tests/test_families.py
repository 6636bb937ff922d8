"""Families are one class each; the registry is built from the classes and its names are the
spec's (``spec.FAMILIES``, which spec.py, a lower layer, cannot import from the model)."""

import ast
from pathlib import Path

import numpy as np
import pytest

from socialgradient import spec
from socialgradient.model import families
from socialgradient.model.families import Binomial, Family, NegativeBinomial, Poisson, Rows

SRC = Path(__file__).resolve().parents[1] / "src" / "socialgradient"


def test_registry_is_the_classes_and_the_specs_names():
    assert sorted(families.FAMILIES) == sorted(spec.FAMILIES)
    assert {type(f) for f in families.FAMILIES.values()} == {Poisson, NegativeBinomial, Binomial}
    for name, family in families.FAMILIES.items():
        assert isinstance(family, Family)
        assert family.name == name
        assert families.get(name) is family
    with pytest.raises(ValueError, match=r"unknown family 'gaussian'.*poisson"):
        families.get("gaussian")


def _name_comparisons(path: Path) -> list[str]:
    """``... == "negbin"``-style comparisons of a family's name in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and side.value in spec.FAMILIES:
                    found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_dispatch_on_family_names_in_model_and_sampling():
    paths = [*(SRC / "model").rglob("*.py"), *(SRC / "sampling").rglob("*.py")]
    assert [hit for p in paths for hit in _name_comparisons(p)] == []


def test_each_family_owns_its_parameters_and_scale():
    assert Poisson.parameters == ()
    assert Binomial.parameters == ()
    assert NegativeBinomial.parameters == ("phi",)
    assert NegativeBinomial.derived == ("inv_sqrt_phi",)
    assert (Binomial.link, Binomial.scale, Binomial.a_prior_mean) == ("logit", "odds ratio", 0.0)
    assert (Poisson.link, Poisson.scale, Poisson.a_prior_mean) == ("log", "rate ratio", -4.0)
    # only the NB's normaliser has a cheaper form (model.nb_stable chooses it by the data)
    assert [f.cheaper_normaliser for f in (Poisson, NegativeBinomial, Binomial)] == [0, 1, 0]


def test_replicates_and_pointwise_by_family():
    rng = np.random.default_rng(0)
    y = np.array([0, 3, 7, 12])
    rows = Rows(y, np.log(np.array([10.0, 20.0, 30.0, 40.0])), trials=np.array([5, 8, 9, 20]))
    eta = np.full((2, 4), -1.0)
    phi = {"phi": np.array([5.0, 1e12])}
    # the NB at a huge phi is the Poisson
    np.testing.assert_allclose(
        NegativeBinomial().pointwise(eta, rows, phi)[1], Poisson().pointwise(eta, rows, {})[1]
    )
    assert (Binomial().replicate(eta, rows, {}, rng) <= rows.trials).all()
