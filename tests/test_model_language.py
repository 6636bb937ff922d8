"""The model language: families, moderators, LA-effect geometry, priors, prediction.

Recovery tables are drawn from the model itself (:mod:`socialgradient.model.forward`) at stated
truths on real-shaped geography (LSOAs of the default England, its ``rural`` flag and the
LA table's ``spend_per_child``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pymc as pm
import pytest

import socialgradient.api as sg
from socialgradient.cli import main
from socialgradient.data.schema import InputError, validate
from socialgradient.model import forward
from socialgradient.model.moderators import validate_la_table
from socialgradient.model.terms import LAEffects, LAModerators, NeighbourhoodModerators
from socialgradient.release import report
from socialgradient.spec import Priors, Spec, load_spec

LA_DATA = "data/las.parquet"


def geography(n_la: int, per_la: int, step: int = 3) -> pd.DataFrame:
    t = sg.default_data()
    las = t["la"].unique()[::step][:n_la]
    return t[t["la"].isin(las)].groupby("la").head(per_la).reset_index(drop=True)


def covered(summary: dict, truth: dict, keys=report.NATIONAL_KEYS) -> dict[str, bool]:
    return {k: summary[k]["ci95"][0] <= truth[k] <= summary[k]["ci95"][1] for k in keys}


# -- contract ------------------------------------------------------------------------------
def test_trials_contract():
    t = geography(4, 10).assign(trials=5)
    t["y"] = np.minimum(t["referrals"], 5)
    assert validate(t, ["y"], trials="trials")["trials"].dtype == np.int64
    bad = t.copy()
    bad.loc[[2, 5], "y"] = 6
    with pytest.raises(InputError) as err:
        validate(bad, ["y"], trials="trials")
    assert err.value.rule == "count_exceeds_trials"
    assert err.value.rows == [2, 5]
    bad = t.copy()
    bad.loc[[1], ["trials", "y"]] = 0
    with pytest.raises(InputError) as err:
        validate(bad, ["y"], trials="trials")
    assert err.value.rule == "trials_not_positive"
    assert "drop cells with no trials explicitly" in str(err.value)


def test_moderator_contract():
    t = geography(4, 10)
    with pytest.raises(InputError) as err:
        validate(t, ["referrals"], moderators=["rurality"])
    assert err.value.rule == "missing_column"
    with pytest.raises(InputError) as err:
        validate(t.assign(rural=1), ["referrals"], moderators=["rural"])
    assert err.value.rule == "constant_moderator"
    bad = t.astype({"density": float})
    bad.loc[3, "density"] = np.inf
    with pytest.raises(InputError) as err:
        validate(bad, ["referrals"], moderators=["density"])
    assert (err.value.rule, err.value.rows) == ("non_finite", [3])


def test_la_table_contract():
    las = pd.read_parquet(LA_DATA)
    codes = las["la"].iloc[:5].tolist()
    ok = validate_la_table(las, ["spend_per_child"], codes)
    assert ok["la"].tolist() == codes
    cases = {
        "missing_column": (las, ["spend"]),
        "duplicate_la": (pd.concat([las, las.iloc[[2]]]), ["spend_per_child"]),
        "missing_la": (las[las["la"] != codes[3]], ["spend_per_child"]),
        "non_finite": (
            las.assign(turnover=las["turnover"].where(las["la"] != codes[1], np.inf)),
            ["turnover"],
        ),
        "missing_value": (
            las.assign(turnover=las["turnover"].where(las["la"] != codes[1])),
            ["turnover"],
        ),
        "constant_moderator": (las.assign(turnover=0.1), ["turnover"]),
    }
    for rule, (table, columns) in cases.items():
        with pytest.raises(InputError) as err:
            validate_la_table(table, columns, codes)
        assert err.value.rule == rule, rule
    with pytest.raises(InputError, match=codes[3]):
        validate_la_table(las[las["la"] != codes[3]], ["spend_per_child"], codes)


# -- spec ------------------------------------------------------------------------------------
def test_spec_terms_round_trip_and_old_hashes(tmp_path, first_national_spec):
    # The hash the spec had before the model language (saved fits and suites stay valid).
    assert first_national_spec.hash == "45cc431df78139ab"
    path = tmp_path / "rural.toml"
    path.write_text(
        'outcome = "referrals"\nneighbourhood_moderators = ["rural"]\n'
        'la_data = "las.parquet"\nla_moderators = ["spend_per_child"]\n'
        'la_effects = "noncentred"\ntarget_accept = 0.9\n[priors]\nb_w = 0.5\n'
    )
    spec = load_spec(path)
    assert spec.la_data == str(tmp_path / "las.parquet")
    assert spec.neighbourhood_moderators == ("rural",)
    assert spec.priors == Priors(b_w=0.5)
    assert Spec.from_json(spec.to_json()) == spec
    assert spec.hash != Spec("referrals").hash
    with pytest.raises(ValueError, match="unknown key"):
        Spec.from_dict({"outcome": "y", "priors": {"b_q": 1.0}})
    with pytest.raises(ValueError, match="must be > 0"):
        Priors(b_w=0.0)
    with pytest.raises(ValueError, match="needs `trials`"):
        Spec("y", family="binomial")
    with pytest.raises(ValueError, match="la_data"):
        Spec("y", la_moderators=("spend_per_child",))
    with pytest.raises(ValueError, match="la_effects"):
        Spec("y", la_effects="sometimes")


def test_priors_change_the_model():
    data = sg.encode(geography(5, 20), "referrals")
    narrow = sg.build(geography(5, 20), Spec("referrals", priors=Priors(b_w=0.01)))
    wide = sg.build(geography(5, 20), Spec("referrals"))
    draws = [pm.draw(m["b_w"], 2000, random_seed=1).std() for m in (narrow, wide)]
    assert draws[0] < 0.02 < 0.8 < draws[1]
    assert len(data.la) == 5


def test_prior_predictive_check():
    out = sg.prior_predictive(geography(6, 20), "referrals", draws=300)
    lo, _mid, hi = out["rate_per_10k"]
    assert lo < 50 < 1000 < hi  # weakly informative: rates from ~tens to thousands
    assert out["gradient_mean_la"][0] < 1 < out["gradient_mean_la"][2]
    assert out["observed_total"] > 0
    binomial = sg.prior_predictive(
        geography(6, 20).assign(tr=lambda t: t["referrals"] + 1),
        Spec("referrals", family="binomial", trials="tr"),
        draws=300,
    )
    assert 0 < binomial["rate_per_10k"][0] < 5000 < binomial["rate_per_10k"][2] <= 1e4


# -- fits ---------------------------------------------------------------------------------
def test_sparse_table_passes_with_the_default_spec():
    """< 0.5 events per LSOA and a small LA slope spread: the default spec (auto geometry)
    PASSes with every national truth inside its 95% interval."""
    truth = forward.Truth(a=-6.8, sigma_a=0.2, sigma_b=0.03)
    table, true = forward.draw(geography(40, 60), truth, outcome="events", seed=11)
    assert table["events"].mean() < 0.5
    tree = sg.fit(table, "events", progressbar=False)
    s = sg.summarise(tree)
    assert s["diagnostics"]["verdict"] == "PASS", s["diagnostics"]
    assert s["model"]["la_effects"]["centred"] <= 10  # most LAs' slopes non-centred
    assert all(covered(s, true).values()), covered(s, true)


@pytest.fixture(scope="module")
def moderated():
    """A fit with a neighbourhood (rural) and an LA (spend per child) moderator."""
    las = pd.read_parquet(LA_DATA)
    truth = forward.Truth(
        moderators={"rural": (0.3, 0.2)}, la_moderators={"spend_per_child": (0.0006, -0.0004)}
    )
    table, _ = forward.draw(geography(30, 40), truth, outcome="events", la_table=las, seed=2)
    spec = Spec(
        "events",
        neighbourhood_moderators=("rural",),
        la_data=LA_DATA,
        la_moderators=("spend_per_child",),
    )
    return table, sg.fit(
        table, spec, draws=150, tune=150, chains=2, sampler="pymc", progressbar=False
    )


def test_moderators_fit_and_report(moderated):
    """Summary ``moderators`` on the log scale per unit, with the level of each."""
    _table, tree = moderated
    s = sg.summarise(tree)
    assert s["family"] == "negbin"
    assert s["scale"] == "rate ratio"
    assert set(s["moderators"]) == {"rural", "spend_per_child"}
    assert s["moderators"]["rural"]["level"] == "neighbourhood"
    assert s["moderators"]["spend_per_child"]["level"] == "la"
    for m in s["moderators"].values():
        assert m["intercept"]["ci95"][0] <= m["intercept"]["median"] <= m["intercept"]["ci95"][1]
        assert 0 <= m["slope"]["p_positive"] <= 1
    post = tree["posterior"]
    assert post["moderator_effect"].dims == ("chain", "draw", "moderator", "effect")
    assert post["la_moderator_effect"].dims == ("chain", "draw", "la_moderator", "effect")
    assert np.isfinite(tree["log_likelihood"]["events"].values).all()
    # The saved fit re-encodes to the same data (LOO, replicates, report from the file).
    from socialgradient.sampling.fit import data_hash
    from socialgradient.sampling.predict import encoded_data

    assert data_hash(encoded_data(tree)) == tree.attrs["data_hash"]


def test_predict_known_and_new_las(moderated):
    """For the fit's own rows, predict reproduces the model's mean (moderators included);
    a new LA's rows carry the between-LA spread."""
    from socialgradient.sampling import predict
    from socialgradient.sampling.predict import encoded_data

    table, tree = moderated
    pred = sg.predict(tree, table)
    data = encoded_data(tree)
    log_mean = predict.log_mean(tree["posterior"].to_dataset(), data)
    expected = 1e4 * np.exp(log_mean.values - np.log(data.exposure))
    np.testing.assert_allclose(pred["rate_per_10k"].values, expected, rtol=1e-10)
    effect = tree["posterior"]["moderator_effect"].sel(moderator="rural", effect="slope")
    rural = table["rural"].to_numpy(float)
    rural = rural - np.average(rural, weights=table["children"])
    slope = tree["posterior"]["la_effect"].sel(effect="slope").values[..., data.la_index]
    np.testing.assert_allclose(
        pred["gradient"].values, np.exp(slope + effect.values[..., None] * rural)
    )
    assert not pred["new_la"].any()
    fitted = tree["posterior"]["la_effect"]["la"].values
    plain = table.drop(columns="rural")
    with pytest.raises(ValueError, match="lacks columns"):
        sg.predict(tree, plain)
    with pytest.raises(ValueError, match="new LAs need LA moderators"):
        sg.predict(tree, table.iloc[:5].assign(la="E06999999"))
    assert len(fitted) == 30


def test_predict_new_la_from_the_hierarchy():
    table, _ = forward.draw(geography(10, 30), forward.Truth(), outcome="events", seed=4)
    tree = sg.fit(table, "events", draws=100, tune=150, chains=2, sampler="pymc", progressbar=False)
    new = table.iloc[:30].assign(la="E06999999")
    pred = sg.predict(tree, pd.concat([table.iloc[:30], new]), seed=3)
    assert pred["new_la"].values.tolist() == [False] * 30 + [True] * 30
    spread = pred["gradient"].std(("chain", "draw")).values
    assert spread[30:].mean() > spread[:30].mean()  # a new LA carries the between-LA spread


def test_binomial_family_fits_and_says_odds_ratio():
    g = geography(15, 30)
    rng = np.random.default_rng(1)
    g = g.assign(referred=rng.poisson(g["children"] * 0.05) + 1)
    truth = forward.Truth(a=-1.5, b_w=0.1, b_b=0.05, b_x=-0.05, sigma_a=0.2, sigma_b=0.05)
    table, _ = forward.draw(g, truth, "binomial", outcome="re_referred", trials="referred", seed=5)
    spec = Spec("re_referred", family="binomial", trials="referred")
    tree = sg.fit(table, spec, draws=150, tune=150, chains=2, sampler="pymc", progressbar=False)
    s = sg.summarise(tree)
    assert s["scale"] == "odds ratio"
    assert "odds ratio per 10-percentage-point" in s["units"]
    rep = tree["posterior_predictive"]["re_referred"].values
    assert (rep <= table["referred"].to_numpy()).all()
    table_la = sg.la_gradients(tree)
    assert len(table_la) == 15


def test_assemble_a_model_the_user_built_and_sampled():
    table, _ = forward.draw(geography(8, 25), forward.Truth(), outcome="events", seed=6)
    spec = Spec("events", la_effects="centred")
    model = sg.build(table, spec)
    with model:
        pm.Deterministic("twice_b_w", 2 * model["b_w"])  # the user's own extension
        # the user samples it with PyMC's own NUTS (nutpie works the same way: sg.assemble
        # takes either's result)
        raw = pm.sample(
            draws=100,
            tune=150,
            chains=2,
            random_seed=2,
            progressbar=False,
            compute_convergence_checks=False,
            nuts_sampler="pymc",
        )
    tree = sg.assemble(raw, table, spec)
    s = sg.summarise(tree)
    assert s["gradient_mean_la"]["median"] > 1
    assert len(sg.la_gradients(tree)) == 8
    assert "twice_b_w" in tree["posterior"]


def test_pointwise_likelihood_gives_pymc_posterior_predictive():
    table, _ = forward.draw(geography(6, 20), forward.Truth(), outcome="events", seed=7)
    model = sg.build(
        table, Spec("events", family="poisson", la_effects="centred"), likelihood="pointwise"
    )
    with model:
        idata = pm.sample_prior_predictive(draws=5, random_seed=1)
    assert idata["prior_predictive"]["events"].shape == (1, 5, len(table))


def test_cli_fit_with_terms(tmp_path):
    las = pd.read_parquet(LA_DATA)
    truth = forward.Truth(moderators={"rural": (0.2, 0.1)})
    table, _ = forward.draw(geography(10, 20), truth, outcome="events", la_table=las, seed=8)
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    out = tmp_path / "out"
    code = main(
        [
            "fit",
            str(path),
            "--outcome",
            "events",
            "--out",
            str(out),
            "--neighbourhood-moderator",
            "rural",
            "--la-data",
            LA_DATA,
            "--la-moderator",
            "turnover",
            "--prior",
            "b_w=0.8",
            "--la-effects",
            "auto",
            "--draws",
            "60",
            "--tune",
            "100",
            "--chains",
            "2",
            "--sampler",
            "pymc",
            "--no-progress",
            "--allow-fail",
        ]
    )
    assert code == 0
    import json

    s = json.loads((out / "release" / "summary.json").read_text())
    assert set(s["moderators"]) == {"rural", "turnover"}
    assert s["model"]["spec"]["priors"]["b_w"] == 0.8
    assert "gradient_mean_la" in s["sensitivity"]["quantities"]  # power-scaling, in summary.json
    assert (
        main(
            [
                "fit",
                str(path),
                "--outcome",
                "events",
                "--out",
                str(tmp_path / "o2"),
                "--prior",
                "b_w",
            ]
        )
        == 2
    )


def test_unchanged_dataclass_defaults():
    """Tables and specs without the new terms encode as before."""
    data = sg.encode(geography(3, 10), "referrals")
    assert data.trials is None
    assert data.term(NeighbourhoodModerators) is None
    assert data.term(LAModerators) is None
    assert [type(t) for t in dataclasses.replace(data).terms] == [LAEffects]
