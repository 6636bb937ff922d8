"""``sg.predict`` asks each term for its part of new rows (``Term.predict_eta``), and a
neighbour graph kept for the residual check only is not a term on the rows.

No sampler: the "fits" here are random points of a model (or :mod:`fakes`' draws)
assembled as a fit is, so predict is checked against the model's own mean on the fit's rows
with every term at once.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import socialgradient.api as sg
from fakes import fake_tree
from socialgradient.data.synthetic.spatial import lattice_table
from socialgradient.model import build as model_module
from socialgradient.model.build import build_model
from socialgradient.model.terms import TERMS, SpatialEffect, Term
from socialgradient.sampling import predict
from socialgradient.sampling.fit import assemble
from socialgradient.spec import Spec
from textbook import MODE

PREDICT = Path(__file__).resolve().parents[1] / "src" / "socialgradient" / "sampling" / "predict.py"


@pytest.fixture(scope="module")
def lattice(tmp_path_factory):
    """A 6 x 6 lattice of LSOAs in 3 LAs with a spatial field, and its graph's file."""
    table, pairs, _ = lattice_table(6, 6, las=3, sd=0.6, rho=0.8, seed=3)
    path = tmp_path_factory.mktemp("graph") / "pairs.csv"
    pairs.to_csv(path, index=False)
    return table, path


def _draws_fit(table, spec, la_table=None, chains=2, draws=20):
    """A fit-shaped tree whose posterior is random points of ``spec``'s model (no sampler).

    The points scatter around the model's initial point on the unconstrained scale; each
    variable's draws (free and deterministic) are computed from them as a sampler's trace is.
    """
    data = sg.encode(table, spec, la_table=la_table)
    model = build_model(data, spec)
    variables = [*model.free_RVs, *model.deterministics]
    values = model.compile_fn(
        model.replace_rvs_by_values(variables), inputs=model.value_vars, point_fn=False
    )
    rng = np.random.default_rng(4)
    start = model.initial_point()
    rows = [
        values(**{k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in start.items()})
        for _ in range(chains * draws)
    ]
    posterior = {}
    for k, var in enumerate(variables):
        value = np.stack([row[k] for row in rows]).reshape(chains, draws, *np.shape(rows[0][k]))
        dims = model.named_vars_to_dims.get(var.name) or tuple(
            f"{var.name}_dim_{i}" for i in range(value.ndim - 2)
        )
        posterior[var.name] = (("chain", "draw", *dims), value)
    coords = {k: list(v) for k, v in model.coords.items() if v is not None}
    sample = {"chain": np.arange(chains), "draw": np.arange(draws)}
    stats = xr.Dataset(
        {"diverging": (("chain", "draw"), np.zeros((chains, draws), bool))}, coords=sample
    )
    raw = xr.DataTree.from_dict(
        {"posterior": xr.Dataset(posterior, coords={**coords, **sample}), "sample_stats": stats}
    )
    return assemble(raw, data, spec), data


@pytest.fixture(scope="module")
def every_term(lattice):
    """Random points of a model with every term on the rows (two stratum columns, a trend,
    a moderator, a curve, the BYM2 effect) and an LA moderator, assembled as a fit."""
    table, path = lattice
    rng = np.random.default_rng(5)
    table = table.assign(rural=rng.uniform(0, 1, len(table)))
    cells = []
    for band, age in (("0-4", 2.0), ("5-9", 7.0)):
        for gender in ("F", "M"):
            cells.append(table.assign(band=band, age=age, gender=gender, children=75.0))
    table = pd.concat(cells, ignore_index=True)
    table["referrals"] //= 4
    las = pd.DataFrame({"la": sorted(table["la"].unique())}).assign(spend=[1.0, 2.5, 4.0])
    spec = Spec(
        "referrals",
        family="poisson",
        strata=["band", "gender"],
        stratum_trend="age",
        neighbourhood_moderators=("rural",),
        la_moderators=("spend",),
        la_data="las.parquet",
        curve="spline",
        spatial="bym2",
        neighbours=str(path),
    )
    tree, data = _draws_fit(table, spec, la_table=las)
    return table, tree, data


def test_every_term_predicts_the_fits_own_rows_as_the_model(every_term):
    """On the fit's own cells predict's rate is the model's mean (each term's predict_eta
    adds what its row_effect / row_eta adds), and its gradient is d eta / d w."""
    table, tree, data = every_term
    assert {t.name for t in data.terms if t.on_rows} == {
        "strata",
        "trend",
        "moderators",
        "spatial",
        "curve",
    }
    pred = sg.predict(tree, table)
    log_mean = predict.log_mean(tree["posterior"].to_dataset(), data)
    expected = 1e4 * np.exp(log_mean.values - np.log(data.exposure))
    np.testing.assert_allclose(pred["rate_per_10k"].values, expected, rtol=1e-10)
    # the gradient is the slope in w of the log rate: a central difference in income
    # (w in 10-point units: 0.01 of income share is 0.1 of w)
    h = 1e-5
    up = sg.predict(tree, table.assign(income=table["income"] + h))["rate_per_10k"].values
    down = sg.predict(tree, table.assign(income=table["income"] - h))["rate_per_10k"].values
    numeric = (np.log(up) - np.log(down)) / (2 * h * 10)
    # not at the ends of the fit's w, where the curve turns into its straight continuation
    inside = (data.w > data.w.min() + 1e-3) & (data.w < data.w.max() - 1e-3)
    assert inside.sum() == len(table) - 8  # the LSOAs at the two ends, 4 cells each
    np.testing.assert_allclose(
        np.log(pred["gradient"].values)[..., inside], numeric[..., inside], rtol=0, atol=1e-6
    )
    assert not pred["new_la"].any()


def test_every_term_refuses_what_it_cannot_predict(every_term):
    table, tree, _ = every_term
    with pytest.raises(ValueError, match=r"lacks columns \['gender', 'age', 'rural'\]"):
        sg.predict(tree, table.drop(columns=["rural", "age", "gender"]))
    with pytest.raises(ValueError, match=r"'band' has levels the fit does not know: \['10-15'\]"):
        sg.predict(tree, table.assign(band="10-15"))
    with pytest.raises(ValueError, match=r"new LAs need LA moderators.*\['E06999999'\]"):
        sg.predict(tree, table.assign(la="E06999999"))
    # no lsoa column: the rates at a zero LSOA effect
    plain = sg.predict(tree, table.drop(columns="lsoa"))["rate_per_10k"].values
    placed = sg.predict(tree, table)["rate_per_10k"].values
    effect = tree["posterior"]["spatial_effect"].sel(spatial_lsoa=table["lsoa"].to_numpy())
    np.testing.assert_allclose(placed, plain * np.exp(effect.values), rtol=1e-5)


class _Shift(Term):
    """A term predict has never heard of: adds ``k * column`` to the rows."""

    name = "shift"
    on_rows = True

    def predict_columns(self) -> list[str]:
        return ["column"]

    def predict_eta(self, posterior, new, eta, slope):
        return eta + 0.5 * new.table["column"].to_numpy(float), slope


class _Mute(Term):
    """A term on the rows that has no predict_eta."""

    name = "mute"
    on_rows = True


def _with_terms(monkeypatch, tree, *extra):
    data = predict.encoded_data(tree)
    data = dataclasses.replace(data, terms=(*data.terms, *extra))
    monkeypatch.setattr(predict, "encoded_data", lambda _: data)


def test_a_new_term_type_needs_no_edit_in_predict(monkeypatch):
    tree = fake_tree(n_la=4, n_lsoa_per_la=10, draws=30)
    table = pd.DataFrame(
        {"la": tree["posterior"]["la"].values[:2], "income": [0.1, 0.3], "children": 200.0}
    )
    before = sg.predict(tree, table)
    _with_terms(monkeypatch, tree, _Shift())
    with pytest.raises(ValueError, match=r"lacks columns \['column'\]"):
        sg.predict(tree, table)
    after = sg.predict(tree, table.assign(column=[0.0, 2.0]))
    ratio = after["rate_per_10k"].values / before["rate_per_10k"].values
    np.testing.assert_allclose(ratio, np.broadcast_to([1.0, np.e], ratio.shape), rtol=1e-12)
    np.testing.assert_array_equal(after["gradient"].values, before["gradient"].values)


def test_a_term_on_the_rows_without_predict_eta_is_named(monkeypatch):
    tree = fake_tree(n_la=4, n_lsoa_per_la=10, draws=30)
    table = pd.DataFrame({"la": tree["posterior"]["la"].values[:1], "income": [0.2]})
    _with_terms(monkeypatch, tree, _Mute())
    with pytest.raises(ValueError, match=r"term 'mute' cannot predict new rows \(_Mute has no"):
        sg.predict(tree, table.assign(children=100.0))


def test_predict_names_no_term_class():
    """predict.py adds each term's part through the hook, never by the term's type."""
    classes = {kind.__name__ for kind in TERMS}
    named = set()
    for node in ast.walk(ast.parse(PREDICT.read_text())):
        if isinstance(node, ast.Name):
            named.add(node.id)
        elif isinstance(node, ast.Attribute):
            named.add(node.attr)
        elif isinstance(node, ast.alias):
            named.add(node.name)
    assert "LAEffects" in classes
    assert sorted(named & classes) == []


def test_a_check_only_graph_is_not_on_the_rows(lattice):
    """``neighbours`` without ``spatial``: the graph is for the Moran check, the model is
    the plain one, with the NB's cheaper normaliser where the data allow it."""
    table, path = lattice
    plain_spec = Spec("referrals")
    check_spec = Spec("referrals", neighbours=str(path))
    plain, check = sg.encode(table, plain_spec), sg.encode(table, check_spec)
    bym2_spec = Spec("referrals", family="poisson", spatial="bym2", neighbours=str(path))
    bym2 = sg.encode(table, bym2_spec)  # (the negative binomial with BYM2 is refused)
    assert not check.term(SpatialEffect).on_rows
    assert bym2.term(SpatialEffect).on_rows
    assert (plain.row_terms, check.row_terms, bym2.row_terms) == (False, False, True)
    # the field the plain model misses makes the counts overdispersed: the cheaper form
    assert not model_module.nb_stable(plain, "negbin")
    assert not model_module.nb_stable(check, "negbin")
    assert model_module.nb_stable(bym2, "negbin")
    ours, theirs = build_model(check, check_spec), build_model(plain, plain_spec)
    assert [v.name for v in ours.free_RVs] == [v.name for v in theirs.free_RVs]
    logp, logp_ref = ours.compile_logp(mode=MODE), theirs.compile_logp(mode=MODE)
    rng = np.random.default_rng(2)
    start = theirs.initial_point()
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in start.items()}
        assert float(logp(point)) == pytest.approx(float(logp_ref(point)), rel=1e-12)
