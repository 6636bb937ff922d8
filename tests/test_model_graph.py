"""The model's PyMC graph is the same as before the model became terms (issue 28).

For each variant of :mod:`graph_variants` (every family, strata, a trend, moderators, an LA
outcome, centred and non-centred LA effects), the free variables (in order, with shapes),
deterministics, potentials, data, coords and the log density at the initial point and at a
fixed point beside it equal the values recorded at commit 2d10315, before the refactor; so
do the data hashes. Same graph, same order of variables: a fit at a fixed seed gives the
same draws.
"""

import numpy as np
import pytest

import socialgradient.api as sg
from graph_variants import build, fingerprint, variants
from socialgradient.model.build import build_model
from socialgradient.sampling.fit import data_hash

#: Recorded at 2d10315 (``fingerprint`` of each variant; ``/pointwise``: the per-row
#: likelihood form).
REFERENCE = {
    "negbin": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c1", (1, 1)),
            ("la_effect_c1", (1, 1)),
            ("la_effect_c2", (5, 2)),
            ("inv_sqrt_phi", ()),
        ),
        "deterministics": (
            ("la_corr", ()),
            ("la_cov_corr", ()),
            ("la_cov_stds", ()),
            ("la_effect", ("la", "effect")),
            ("la_sd", ("effect",)),
            ("phi", ()),
        ),
        "potentials": ("loglik",),
        "data": (
            "la_y_sum",
            "la_yw_sum",
            "m_c",
            "rows_exceedances",
            "rows_log_exposure",
            "rows_per_la",
            "rows_w",
            "rows_y",
        ),
        "coords": {
            "effect": 2,
            "la": 6,
            "la_c1": 1,
            "la_c2": 5,
            "la_coef_c1": 1,
            "la_coef_n1": 1,
            "lsoa": 150,
        },
        "logp_initial": -4454.251436016478,
        "logp_moved": -4460.243935771016,
        "data_hash": "3b65306f52550901",
    },
    "negbin/pointwise": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c1", (1, 1)),
            ("la_effect_c1", (1, 1)),
            ("la_effect_c2", (5, 2)),
            ("inv_sqrt_phi", ()),
        ),
        "logp_initial": -414.8419604129506,
        "logp_moved": -420.8344601674906,
    },
    "poisson": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c1", (1, 1)),
            ("la_effect_c1", (1, 1)),
            ("la_effect_c2", (5, 2)),
        ),
        "deterministics": (
            ("la_corr", ()),
            ("la_cov_corr", ()),
            ("la_cov_stds", ()),
            ("la_effect", ("la", "effect")),
            ("la_sd", ("effect",)),
        ),
        "potentials": ("loglik",),
        "data": (
            "la_y_sum",
            "la_yw_sum",
            "m_c",
            "rows_exceedances",
            "rows_log_exposure",
            "rows_per_la",
            "rows_w",
            "rows_y",
        ),
        "coords": {
            "effect": 2,
            "la": 6,
            "la_c1": 1,
            "la_c2": 5,
            "la_coef_c1": 1,
            "la_coef_n1": 1,
            "lsoa": 150,
        },
        "logp_initial": -4418.851789326392,
        "logp_moved": -4423.270116418889,
        "data_hash": "3b65306f52550901",
    },
    "poisson/pointwise": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c1", (1, 1)),
            ("la_effect_c1", (1, 1)),
            ("la_effect_c2", (5, 2)),
        ),
        "logp_initial": -379.44231372286555,
        "logp_moved": -383.8606408153632,
    },
    "binomial": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c0", (6, 2)),
        ),
        "deterministics": (
            ("la_corr", ()),
            ("la_cov_corr", ()),
            ("la_cov_stds", ()),
            ("la_effect", ("la", "effect")),
            ("la_sd", ("effect",)),
        ),
        "potentials": ("loglik",),
        "data": (
            "la_y_sum",
            "la_yw_sum",
            "m_c",
            "rows_exceedances",
            "rows_log_exposure",
            "rows_per_la",
            "rows_trials",
            "rows_w",
            "rows_y",
        ),
        "coords": {"effect": 2, "la": 6, "la_c0": 6, "la_coef_n0": 2, "lsoa": 150},
        "logp_initial": -1364.0998346289034,
        "logp_moved": -1362.9382812201027,
        "data_hash": "4c00db4e1c86978d",
    },
    "binomial/pointwise": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c0", (6, 2)),
        ),
        "logp_initial": -353.9401018039209,
        "logp_moved": -352.7785483951187,
    },
    "noncentred": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c0", (6, 2)),
            ("inv_sqrt_phi", ()),
        ),
        "deterministics": (
            ("la_corr", ()),
            ("la_cov_corr", ()),
            ("la_cov_stds", ()),
            ("la_effect", ("la", "effect")),
            ("la_sd", ("effect",)),
            ("phi", ()),
        ),
        "potentials": ("loglik",),
        "data": (
            "la_y_sum",
            "la_yw_sum",
            "m_c",
            "rows_exceedances",
            "rows_log_exposure",
            "rows_per_la",
            "rows_w",
            "rows_y",
        ),
        "coords": {"effect": 2, "la": 6, "la_c0": 6, "la_coef_n0": 2, "lsoa": 150},
        "logp_initial": -4475.4209889560525,
        "logp_moved": -4478.811204454462,
        "data_hash": "3b65306f52550901",
    },
    "noncentred/pointwise": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c0", (6, 2)),
            ("inv_sqrt_phi", ()),
        ),
        "logp_initial": -436.0115133525254,
        "logp_moved": -439.4017288509359,
    },
    "stratum": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c0", (2, 2)),
            ("la_z_c1", (3, 1)),
            ("la_effect_c1", (3, 1)),
            ("la_effect_c2", (1, 2)),
            ("stratum_offset", (2, 2)),
            ("inv_sqrt_phi", ()),
        ),
        "deterministics": (
            ("la_corr", ()),
            ("la_cov_corr", ()),
            ("la_cov_stds", ()),
            ("la_effect", ("la", "effect")),
            ("la_sd", ("effect",)),
            ("phi", ()),
            ("stratum_effect", ("stratum", "effect")),
        ),
        "potentials": ("loglik",),
        "data": (
            "la_y_sum",
            "la_yw_sum",
            "m_c",
            "rows_exceedances",
            "rows_log_exposure",
            "rows_per_la",
            "rows_w",
            "rows_y",
        ),
        "coords": {
            "cell": 450,
            "effect": 2,
            "la": 6,
            "la_c0": 2,
            "la_c1": 3,
            "la_c2": 1,
            "la_coef_c1": 1,
            "la_coef_n0": 2,
            "la_coef_n1": 1,
            "stratum": 3,
            "stratum_contrast": 2,
        },
        "logp_initial": -2697.691155829602,
        "logp_moved": -2703.840785336586,
        "data_hash": "e2e054a543933e54",
    },
    "stratum/pointwise": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c0", (2, 2)),
            ("la_z_c1", (3, 1)),
            ("la_effect_c1", (3, 1)),
            ("la_effect_c2", (1, 2)),
            ("stratum_offset", (2, 2)),
            ("inv_sqrt_phi", ()),
        ),
        "logp_initial": -639.9281912454903,
        "logp_moved": -646.0778207524746,
    },
    "strata_trend": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c1", (1, 1)),
            ("la_effect_c1", (1, 1)),
            ("la_effect_c2", (5, 2)),
            ("stratum_offset", (3, 2)),
            ("trend_coef", (2,)),
            ("inv_sqrt_phi", ()),
        ),
        "deterministics": (
            ("la_corr", ()),
            ("la_cov_corr", ()),
            ("la_cov_stds", ()),
            ("la_effect", ("la", "effect")),
            ("la_sd", ("effect",)),
            ("phi", ()),
            ("stratum_effect", ("stratum", "effect")),
            ("trend_effect", ("effect",)),
        ),
        "potentials": ("loglik",),
        "data": (
            "la_y_sum",
            "la_yw_sum",
            "m_c",
            "rows_exceedances",
            "rows_log_exposure",
            "rows_per_la",
            "rows_w",
            "rows_y",
        ),
        "coords": {
            "cell": 900,
            "effect": 2,
            "la": 6,
            "la_c1": 1,
            "la_c2": 5,
            "la_coef_c1": 1,
            "la_coef_n1": 1,
            "stratum": 5,
            "stratum_contrast": 3,
        },
        "logp_initial": -4803.486221670197,
        "logp_moved": -4822.477176308119,
        "data_hash": "5ca5cb6510064f82",
    },
    "strata_trend/pointwise": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c1", (1, 1)),
            ("la_effect_c1", (1, 1)),
            ("la_effect_c2", (5, 2)),
            ("stratum_offset", (3, 2)),
            ("trend_coef", (2,)),
            ("inv_sqrt_phi", ()),
        ),
        "logp_initial": -1183.535597663134,
        "logp_moved": -1202.526552301053,
    },
    "trend": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c0", (2, 2)),
            ("la_z_c1", (3, 1)),
            ("la_effect_c1", (3, 1)),
            ("la_effect_c2", (1, 2)),
            ("trend_coef", (2,)),
            ("inv_sqrt_phi", ()),
        ),
        "deterministics": (
            ("la_corr", ()),
            ("la_cov_corr", ()),
            ("la_cov_stds", ()),
            ("la_effect", ("la", "effect")),
            ("la_sd", ("effect",)),
            ("phi", ()),
            ("trend_effect", ("effect",)),
        ),
        "potentials": ("loglik",),
        "data": (
            "la_y_sum",
            "la_yw_sum",
            "m_c",
            "rows_exceedances",
            "rows_log_exposure",
            "rows_per_la",
            "rows_w",
            "rows_y",
        ),
        "coords": {
            "cell": 450,
            "effect": 2,
            "la": 6,
            "la_c0": 2,
            "la_c1": 3,
            "la_c2": 1,
            "la_coef_c1": 1,
            "la_coef_n0": 2,
            "la_coef_n1": 1,
        },
        "logp_initial": -2696.546425943752,
        "logp_moved": -2703.52164012053,
        "data_hash": "70beb05390c09dfd",
    },
    "trend/pointwise": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c0", (2, 2)),
            ("la_z_c1", (3, 1)),
            ("la_effect_c1", (3, 1)),
            ("la_effect_c2", (1, 2)),
            ("trend_coef", (2,)),
            ("inv_sqrt_phi", ()),
        ),
        "logp_initial": -638.7834613596409,
        "logp_moved": -645.7586755364191,
    },
    "moderators": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_moderator_coef", (2, 2)),
            ("la_z_c1", (1, 1)),
            ("la_effect_c1", (1, 1)),
            ("la_effect_c2", (5, 2)),
            ("moderator_coef", (2, 2)),
            ("inv_sqrt_phi", ()),
        ),
        "deterministics": (
            ("la_corr", ()),
            ("la_cov_corr", ()),
            ("la_cov_stds", ()),
            ("la_effect", ("la", "effect")),
            ("la_moderator_effect", ("la_moderator", "effect")),
            ("la_sd", ("effect",)),
            ("moderator_effect", ("moderator", "effect")),
            ("phi", ()),
        ),
        "potentials": ("loglik",),
        "data": (
            "la_y_sum",
            "la_yw_sum",
            "m_c",
            "rows_exceedances",
            "rows_log_exposure",
            "rows_per_la",
            "rows_w",
            "rows_y",
        ),
        "coords": {
            "effect": 2,
            "la": 6,
            "la_c1": 1,
            "la_c2": 5,
            "la_coef_c1": 1,
            "la_coef_n1": 1,
            "la_moderator": 2,
            "lsoa": 150,
            "moderator": 2,
        },
        "logp_initial": -4458.830355559875,
        "logp_moved": -4466.590337605975,
        "data_hash": "7c50c662824c1b89",
    },
    "moderators/pointwise": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_moderator_coef", (2, 2)),
            ("la_z_c1", (1, 1)),
            ("la_effect_c1", (1, 1)),
            ("la_effect_c2", (5, 2)),
            ("moderator_coef", (2, 2)),
            ("inv_sqrt_phi", ()),
        ),
        "logp_initial": -419.4208799563482,
        "logp_moved": -427.18086200244716,
    },
    "la_outcome": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c1", (1, 1)),
            ("la_effect_c1", (1, 1)),
            ("la_effect_c2", (5, 2)),
            ("la_outcome_intercept", ()),
            ("la_outcome_gradient", ()),
            ("la_outcome_coef", (2,)),
            ("la_outcome_sd", ()),
            ("la_outcome_z", (6,)),
            ("inv_sqrt_phi", ()),
        ),
        "deterministics": (
            ("la_corr", ()),
            ("la_cov_corr", ()),
            ("la_cov_stds", ()),
            ("la_effect", ("la", "effect")),
            ("la_outcome_effect", ("la_outcome_term",)),
            ("la_sd", ("effect",)),
            ("phi", ()),
        ),
        "potentials": ("la_outcome_loglik", "loglik"),
        "data": (
            "la_y_sum",
            "la_yw_sum",
            "m_c",
            "rows_exceedances",
            "rows_log_exposure",
            "rows_per_la",
            "rows_w",
            "rows_y",
        ),
        "coords": {
            "effect": 2,
            "la": 6,
            "la_c1": 1,
            "la_c2": 5,
            "la_coef_c1": 1,
            "la_coef_n1": 1,
            "la_outcome_covariate": 2,
            "la_outcome_term": 3,
            "lsoa": 150,
        },
        "logp_initial": -4565.422273085698,
        "logp_moved": -4580.470406631315,
        "data_hash": "5cda84f69838e770",
    },
    "la_outcome/pointwise": {
        "free": (
            ("a", ()),
            ("b_w", ()),
            ("b_b", ()),
            ("b_x", ()),
            ("la_cov", (3,)),
            ("la_z_c1", (1, 1)),
            ("la_effect_c1", (1, 1)),
            ("la_effect_c2", (5, 2)),
            ("la_outcome_intercept", ()),
            ("la_outcome_gradient", ()),
            ("la_outcome_coef", (2,)),
            ("la_outcome_sd", ()),
            ("la_outcome_z", (6,)),
            ("inv_sqrt_phi", ()),
        ),
        "logp_initial": -526.0127974821717,
        "logp_moved": -541.0609310277895,
    },
}


def _lists(x):
    if isinstance(x, (list, tuple)):
        return [_lists(i) for i in x]
    if isinstance(x, dict):
        return {k: _lists(v) for k, v in x.items()}
    return x


@pytest.mark.parametrize("name", list(variants()))
def test_graph_and_logp_as_recorded(name):
    got = fingerprint(build(name))
    want = REFERENCE[name]
    for key in ("free", "deterministics", "potentials", "data", "coords"):
        assert _lists(got[key]) == _lists(want[key]), key
    np.testing.assert_allclose(got["logp_initial"], want["logp_initial"], rtol=1e-9)
    np.testing.assert_allclose(got["logp_moved"], want["logp_moved"], rtol=1e-9)
    table, spec, kw = variants()[name]
    assert data_hash(sg.encode(table, spec, **kw)) == want["data_hash"]


@pytest.mark.parametrize("name", ["negbin", "binomial", "strata_trend", "moderators"])
def test_pointwise_graph_and_logp_as_recorded(name):
    got = fingerprint(build(name, "pointwise"))
    want = REFERENCE[f"{name}/pointwise"]
    assert _lists(got["free"]) == _lists(want["free"])
    np.testing.assert_allclose(got["logp_initial"], want["logp_initial"], rtol=1e-9)
    np.testing.assert_allclose(got["logp_moved"], want["logp_moved"], rtol=1e-9)


def test_terms_are_listed_once_and_say_their_spec_keys():
    """Every term class of ``model/terms`` is in TERMS (adding one is a module and a line),
    and its spec keys are fields of a Spec."""
    import dataclasses
    import importlib
    import pkgutil

    from socialgradient.model import terms
    from socialgradient.spec import Spec

    found = set()
    for info in pkgutil.iter_modules(terms.__path__):
        module = importlib.import_module(f"socialgradient.model.terms.{info.name}")
        found |= {
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, terms.Term) and v is not terms.Term
        }
    assert found == set(terms.TERMS)
    assert len({t.name for t in terms.TERMS}) == len(terms.TERMS)
    fields = {f.name for f in dataclasses.fields(Spec)}
    for term in terms.TERMS:
        assert set(term.spec_keys) <= fields, term


@pytest.mark.parametrize("name", ["strata_trend", "moderators", "la_outcome", "negbin"])
def test_each_terms_reported_and_derived_variables_are_in_the_model(name):
    table, spec, kw = variants()[name]
    data = sg.encode(table, spec, **kw)
    model = build_model(data, spec)
    for term in data.terms:
        assert set(term.reported) | set(term.derived) <= set(model.named_vars), term.name
