"""The flexible deprivation curve (``curve = "spline"``) and the synthetic curved truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
import xarray as xr

import socialgradient.api as sg
from fakes import fake_table, fake_tree
from socialgradient.cli import main
from socialgradient.data.deprivation import income_deciles
from socialgradient.data.synthetic import england
from socialgradient.data.synthetic.england import load_calibration
from socialgradient.model.build import build_model
from socialgradient.model.data import NeighbourhoodData
from socialgradient.model.terms import Curve
from socialgradient.results import compare, curve, plots
from socialgradient.results.summaries import summary
from socialgradient.sampling import predict
from socialgradient.sampling.fit import assemble, save
from socialgradient.spec import Priors, Spec, SpecError
from textbook import assert_same_density

pytestmark = pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto:UserWarning")


def spline_data(table: pd.DataFrame | None = None) -> NeighbourhoodData:
    table = fake_table() if table is None else table
    return NeighbourhoodData.from_spec(table, "referrals", Spec("referrals", curve="spline"))


def test_basis_is_orthogonal_to_the_line_and_scaled_under_child_weights():
    data = spline_data()
    basis = data.term(Curve)
    assert basis is not None
    assert data.row_terms
    z = basis.basis(data.w)
    x = np.column_stack([np.ones_like(data.w), data.w])
    cross = x.T @ (data.children[:, None] * z)
    assert np.abs(cross).max() < 1e-8 * np.abs(z).max() * data.children.sum()
    # the prior's child-weighted mean square of f / curve_sd is 1
    assert np.sum(data.children[:, None] * z**2) / data.children.sum() == pytest.approx(1.0)
    assert np.linalg.matrix_rank(z) == z.shape[1] == 11  # 13 B-splines less the line
    # slopes are the basis's derivative, and beyond the data it goes on as a straight line
    w = np.linspace(data.w.min(), data.w.max(), 7)
    h = 1e-6
    numeric = (basis.basis(w + h) - basis.basis(w - h)) / (2 * h)
    np.testing.assert_allclose(basis.slopes(w), numeric, atol=1e-5 * np.abs(numeric).max())
    far = data.w.max() + np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(np.diff(basis.basis(far), 2, axis=0), 0, atol=1e-9)


def test_no_within_la_spread_is_a_clear_error():
    table = fake_table()
    table["income"] = table.groupby("la")["income"].transform("mean")
    with pytest.raises(ValueError, match="within-LA spread"):
        spline_data(table)


def test_spec_field_leaves_existing_hashes_alone():
    plain = Spec("referrals")
    assert plain.curve == "log-linear"
    assert plain.priors.curve_sd == 0.5
    assert "curve" not in json.loads(plain.to_json())
    other = Spec("referrals", priors=Priors(b_w=2.0))  # other priors: curve_sd left out
    assert json.loads(other.to_json())["priors"]["b_w"] == 2.0
    assert "curve_sd" not in json.loads(other.to_json())["priors"]
    spline = Spec("referrals", curve="spline")
    assert json.loads(spline.to_json())["curve"] == "spline"
    assert spline.hash != plain.hash
    assert Spec.from_json(spline.to_json()) == spline
    with pytest.raises(SpecError, match="curve"):
        Spec.from_dict({"outcome": "referrals", "curve": "cubic"})
    with pytest.raises(SpecError, match="single-outcome"):
        Spec("referrals", outcomes=("referrals", "assessments"), curve="spline")


def test_sufficient_and_pointwise_graphs_are_the_same_density():
    data = spline_data()
    spec = Spec("referrals", curve="spline")
    model = build_model(data, spec)
    free = {v.name for v in model.free_RVs}
    assert "curve_sd" in free
    assert "curve_coef" in model.named_vars
    assert model.named_vars_to_dims["curve_coef"] == ("curve_basis",)
    assert_same_density(model, build_model(data, spec, likelihood="pointwise"))


def test_curve_sd_prior_is_a_gamma_whose_mean_is_the_spec_scale():
    """Gamma(2, 2 / curve_sd): density 0 at a straight line's scale of 0 (no funnel neck)."""
    from scipy import stats

    data = spline_data()
    values = np.array([1e-4, 0.01, 0.1, 0.5, 2.0])
    for scale in (0.5, 0.2):
        model = build_model(data, Spec("referrals", curve="spline", priors=Priors(curve_sd=scale)))
        rv = model["curve_sd"]
        free = {v.name for v in model.free_RVs}
        assert {"curve_sd", "curve_coef"} <= free  # one geometry: centred
        value = pt.dvector("value")
        logp = pytensor.function([value], pm.logp(rv, value))
        got = logp(values)
        prior = stats.gamma(a=2.0, scale=scale / 2.0)
        np.testing.assert_allclose(got, prior.logpdf(values), rtol=1e-6)
        assert prior.mean() == pytest.approx(scale, rel=1e-12)
        # boundary-avoiding: no density at a scale of 0 (a half-normal's is its highest)
        assert logp(np.array([0.0]))[0] == -np.inf


def test_row_eta_matches_the_model_pointwise_log_likelihood():
    """The numpy prediction (LOO, PPC) adds f(w) as the graph does (up to its constant)."""
    data = spline_data()
    spec = Spec("referrals", family="poisson", curve="spline")
    model = build_model(data, spec, likelihood="pointwise")
    rng = np.random.default_rng(1)
    start = model.initial_point()
    names = ["la_effect", "curve_coef"]
    inputs = {"inputs": model.value_vars, "on_unused_input": "ignore"}
    outs = model.replace_rvs_by_values([model[n] for n in names])  # values, not random draws
    values = model.compile_fn(outs, **inputs)
    logp = model.compile_fn(model.logp(vars=[model["referrals"]], sum=True), **inputs)
    dims = {"la_effect": ("la", "effect"), "curve_coef": ("curve_basis",)}
    ours, theirs = [], []
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in start.items()}
        post = xr.Dataset(
            {
                n: (("chain", "draw", *dims[n]), np.asarray(v)[None, None])
                for n, v in zip(names, values(point), strict=True)
            },
            coords={"la": data.la, "effect": ["intercept", "slope"]},
        )
        ours.append(predict.log_likelihood(post, data, "poisson").values.sum())
        theirs.append(float(logp(point)))
    assert abs(ours[1] - ours[0]) > 1  # the points differ in what the curve predicts
    np.testing.assert_allclose(np.diff(ours), np.diff(theirs), rtol=1e-9)


def curved_tree(seed: int = 0) -> xr.DataTree:
    """A fake spline fit of fake_table (posterior drawn from numpy), for the plumbing."""
    plain = fake_tree(seed=seed)
    data = spline_data()
    post = plain["posterior"].to_dataset()
    rng = np.random.default_rng(seed)
    k = data.term(Curve).transform.shape[1]
    shape = (post.sizes["chain"], post.sizes["draw"])
    post["curve_sd"] = (("chain", "draw"), np.abs(rng.normal(0.2, 0.02, shape)))
    post["curve_coef"] = (("chain", "draw", "curve_basis"), rng.normal(0, 0.1, (*shape, k)))
    raw = xr.DataTree.from_dict({"posterior": post, "sample_stats": plain["sample_stats"]})
    return assemble(raw, data, Spec("referrals", curve="spline"))


def test_summary_figure_and_saved_definition_of_a_spline_fit(tmp_path):
    tree = curved_tree()
    assert tree.attrs["curve"] == "spline"
    rebuilt = predict.encoded_data(tree).term(Curve)
    assert rebuilt is not None
    np.testing.assert_array_equal(rebuilt.transform, spline_data().term(Curve).transform)
    s = summary(tree)
    rows = s["curve"]["local_gradients"]
    assert [r["decile"] for r in rows] == list(range(1, 11))
    assert all(r["lo95"] <= r["median"] <= r["hi95"] for r in rows)
    const = tree["constant_data"].to_dataset()
    _, point = income_deciles(const["income"].values, const["children"].values)
    np.testing.assert_allclose([r["income"] for r in rows], point)
    # a local gradient is exp(b_w + f'(w0)), w0 = 10 income - x_bar, per draw
    post = tree["posterior"].to_dataset()
    w0 = 10 * point[4] - float(tree.attrs["x_bar"])
    slope = post["b_w"].values + post["curve_coef"].values @ rebuilt.slopes(np.array([w0]))[0]
    assert rows[4]["median"] == pytest.approx(float(np.median(np.exp(slope))))
    # a log-linear fit: no curve in its summary, flat local gradients on request
    plain = fake_tree()
    assert "curve" not in summary(plain)
    flat = curve.summary(plain)["local_gradients"]
    assert len({round(r["median"], 12) for r in flat}) == 1
    assert flat[0]["median"] == pytest.approx(summary(plain)["gradient_mean_la"]["median"])
    # figures: written for the spline fit, not for the log-linear one
    spline_paths = plots.save_all(tree, tmp_path / "s", boundaries=tmp_path / "none")
    plain_paths = plots.save_all(plain, tmp_path / "p", boundaries=tmp_path / "none")
    assert "deprivation_curve" in spline_paths
    assert "deprivation_curve" not in plain_paths
    assert sg.plot(plain, "deprivation_curve").axes  # both forms can be drawn


def test_compare_and_predict_between_forms(tmp_path):
    tree, plain = curved_tree(), fake_tree()
    out = compare.compare(tree, plain, names=("spline", "log-linear"))
    assert out["rows"]["n"] == len(fake_table())
    assert np.isfinite(out["se"])
    # saved and reloaded (the basis from constant_data): the same comparison
    save(tree, tmp_path / "spline.nc")
    save(plain, tmp_path / "plain.nc")
    again = compare.compare(tmp_path / "spline.nc", tmp_path / "plain.nc")
    assert again["elpd_diff"] == pytest.approx(out["elpd_diff"])
    table = fake_table().head(5)
    got = predict.predict(tree, table)
    basis = predict.encoded_data(tree).term(Curve)
    post = tree["posterior"].to_dataset()
    fitted = predict.encoded_data(tree)
    w = 10 * table["income"].to_numpy() - fitted.m_la[fitted.la_index[:5]]
    coef = post["curve_coef"].transpose("chain", "draw", "curve_basis").values
    slope = post["la_effect"].sel(effect="slope").values[..., fitted.la_index[:5]]
    expected = np.exp(slope + coef @ basis.slopes(w).T)
    np.testing.assert_allclose(got["gradient"].values, expected)


def test_synthetic_curvature_is_off_by_default_and_recorded_with_its_truth():
    cal = load_calibration().head(12)
    base = england.simulate(seed=4, scale=0.3, calibration=cal)
    zero = england.simulate(seed=4, scale=0.3, calibration=cal, curvature=0.0)
    assert base.table.equals(zero.table)
    assert base.truth == zero.truth
    assert "curve" not in base.truth["thresholds"]["referrals"]
    bent = england.simulate(seed=4, scale=0.3, calibration=cal, curvature=-0.3)
    cols = [c for c in base.table.columns if c not in england.OUTCOMES]
    assert bent.table[cols].equals(base.table[cols])
    t = bent.truth["thresholds"]["referrals"]
    rows = t["curve"]["local_gradients"]
    _, point = income_deciles(bent.table["income"], bent.table["children"])
    np.testing.assert_allclose([r["income"] for r in rows], point)
    w0 = np.array([r["w"] for r in rows])
    np.testing.assert_allclose(w0, 10 * point - bent.truth["x_bar"])
    np.testing.assert_allclose([r["gradient"] for r in rows], np.exp(t["b_w"] - 0.3 * w0))
    assert rows[0]["gradient"] > rows[-1]["gradient"]  # concave: flattening with deprivation
    assert "curvature" in bent.truth["definitions"]
    with pytest.raises(ValueError, match="finite"):
        england.simulate(seed=4, scale=0.3, calibration=cal, curvature=float("nan"))


def test_cli_simulate_curvature_and_fit_curve_option(tmp_path):
    from socialgradient.cli import parser

    args = parser().parse_args(
        ["fit", "t.csv", "--outcome", "y", "--out", "o", "--curve", "spline"]
    )
    assert args.curve == "spline"
    with pytest.raises(SystemExit):
        parser().parse_args(["fit", "t.csv", "--outcome", "y", "--out", "o", "--curve", "cubic"])
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--scale", "0.05", "--curvature", "0.2"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["thresholds"]["referrals"]["curve"]["curvature"] == 0.2


# -- recovery: small England-shaped tables (1,644 LSOAs in 150 LAs), 2 chains x 300 draws --
# (a 300-draw chain is enough for the curve; its LA effects WARN on R-hat, as a log-linear fit's)

RECOVERY = {"seed": 3, "scale": 0.05}


def fit_both(curvature: float) -> tuple[dict, dict, dict]:
    syn = england.simulate(curvature=curvature, **RECOVERY)
    fits = {
        form: sg.fit(
            syn.table,
            Spec("referrals", curve=form),
            draws=300,
            tune=300,
            chains=2,
            progressbar=False,
        )
        for form in ("spline", "log-linear")
    }
    result = compare.compare(fits["spline"], fits["log-linear"], names=("spline", "log-linear"))
    return fits, result, syn.truth["thresholds"]["referrals"]


@pytest.mark.slow
@pytest.mark.parametrize("curvature", [-0.3, 0.2])
def test_curved_truth_prefers_the_spline_and_its_local_gradients_cover_the_truth(curvature):
    fits, result, truth = fit_both(curvature)
    # measured (seed 3, bench/curve.json): elpd_diff 41.7 se 8.9 (-0.3), 19.0 se 7.0 (+0.2)
    assert result["preferred"] == "spline"
    assert result["z"] > 2
    rows = summary(fits["spline"])["curve"]["local_gradients"]
    true = truth["curve"]["local_gradients"]
    covered = [r["lo95"] <= t["gradient"] <= r["hi95"] for r, t in zip(rows, true, strict=True)]
    assert covered[0]  # low
    assert covered[4]  # middle
    assert covered[9]  # high
    assert sum(covered) >= 9
    # the log-linear fit's one slope misses the low and high ends
    flat = curve.summary(fits["log-linear"])["local_gradients"]
    missed = [
        not (r["lo95"] <= t["gradient"] <= r["hi95"]) for r, t in zip(flat, true, strict=True)
    ]
    assert missed[1]
    assert missed[8]


@pytest.mark.slow
def test_log_linear_truth_does_not_prefer_the_spline_and_keeps_the_headline():
    fits, result, truth = fit_both(curvature=0.0)
    # measured (seed 3, bench/curve.json): elpd_diff 2.0, se 2.2, z 0.91; b_w 0.469 (spline), 0.470
    assert result["preferred"] != "spline"
    assert result["z"] <= 2
    b_w = {k: float(v["posterior"]["b_w"].median()) for k, v in fits.items()}
    assert abs(b_w["spline"] - b_w["log-linear"]) < 0.05
    rows = summary(fits["spline"])["curve"]["local_gradients"]
    assert sum(r["lo95"] <= np.exp(truth["b_w"]) <= r["hi95"] for r in rows) >= 9


@pytest.mark.slow
def test_cli_fit_with_a_spline_writes_its_curve_through_the_release(tmp_path):
    cal = load_calibration().head(12)
    table = england.simulate(seed=4, scale=0.3, calibration=cal, curvature=-0.3).table
    data = tmp_path / "table.csv"
    table.to_csv(data, index=False)
    out = tmp_path / "out"
    argv = ["fit", str(data), "--outcome", "referrals", "--out", str(out), "--curve", "spline"]
    argv += ["--draws", "150", "--tune", "150", "--chains", "2", "--no-progress", "--allow-fail"]
    assert main(argv) == 0
    s = json.loads((out / "release" / "summary.json").read_text())
    assert s["model"]["spec"]["curve"] == "spline"
    rows = s["curve"]["local_gradients"]
    assert [r["decile"] for r in rows] == list(range(1, 11))
    exact = income_deciles(table["income"], table["children"])[1]
    # released incomes: 3 decimals, perturbed as the decile tables' mean incomes are
    assert all(round(r["income"], 3) == r["income"] for r in rows)
    np.testing.assert_allclose([r["income"] for r in rows], exact, atol=0.02)
    assert (out / "release" / "deprivation_curve.png").stat().st_size > 0
