"""Several stratum columns and a numeric stratum trend (issue 9, item 5): spec, contract,
model density, fits; the records by single year of age and the age trend's truth."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import pytest

import socialgradient.api as sg
from socialgradient.data.census import linkage
from socialgradient.data.deprivation import decompose
from socialgradient.data.records import AGES, single_year_population
from socialgradient.data.schema import InputError, validate
from socialgradient.data.synthetic import england
from socialgradient.data.synthetic.records import simulate_records
from socialgradient.model.build import build_model, la_effects
from socialgradient.model.terms import Strata, Trend
from socialgradient.sampling import predict
from socialgradient.spec import Spec, load_spec
from socialgradient.study import findings
from textbook import assert_same_density, observe

BANDS = {"0-4": 5, "5-9": 5, "10-15": 6}  # band -> years
# true offsets (log rate, slope) by column; the reference levels (most children) are zero
OFFSET = {
    "age_band": {"10-15": (0.0, 0.0), "0-4": (0.3, 0.2), "5-9": (0.1, 0.05)},
    "gender": {"M": (0.0, 0.0), "F": (-0.05, -0.1)},
}
A, B_W, B_B, B_X, PHI = -4.0, 0.48, 0.25, -0.26, 30.0
KAPPA, TAU = -0.02, -0.03  # per year of age: log rate and log gradient


def cells(n_la: int, seed: int, trend: bool = False) -> pd.DataFrame:
    """LSOA x age band x gender cells (or LSOA x single year, ``trend``) drawn from the
    model with additive column offsets (or the linear age trend), LA effects at the means
    plus small noise."""
    rng = np.random.default_rng(seed)
    t = sg.default_data()
    t = t[t["la"].isin(t["la"].unique()[:n_la])]
    d = decompose(t["income"], t["children"], t["la"])
    m_c = d.m_c[d.la_index]
    a_la = A + B_B * m_c + rng.normal(0, 0.2, len(d.la))[d.la_index]
    b_la = B_W + B_X * m_c + rng.normal(0, 0.1, len(d.la))[d.la_index]
    base = t[["lsoa", "la", "income"]]
    out = []
    if trend:
        for age in range(16):
            n = (t["children"].to_numpy() / 16).round() + 1
            x = age - 7.5
            mu = n * np.exp(a_la + KAPPA * x + (b_la + TAU * x) * d.w)
            out.append(
                base.assign(children=n, age=age, referrals=rng.poisson(rng.gamma(PHI, mu / PHI)))
            )
        return pd.concat(out, ignore_index=True)
    for band, years in BANDS.items():
        for gender, share in (("M", 0.52), ("F", 0.48)):
            n = (t["children"].to_numpy() * years / 16 * share).round() + 1
            (ga, da), (gg, dg) = OFFSET["age_band"][band], OFFSET["gender"][gender]
            mu = n * np.exp(a_la + ga + gg + (b_la + da + dg) * d.w)
            out.append(
                base.assign(
                    children=n,
                    age_band=band,
                    gender=gender,
                    referrals=rng.poisson(rng.gamma(PHI, mu / PHI)),
                )
            )
    return pd.concat(out, ignore_index=True)


@pytest.fixture(scope="module")
def two():
    return cells(n_la=10, seed=3)


@pytest.fixture(scope="module")
def by_age():
    return cells(n_la=10, seed=4, trend=True)


# -- spec ---------------------------------------------------------------------------------


#: The repository's first strata specs, as they were when several stratum columns arrived.
FIRST_STRATA_SPECS = {"age_band": "31837473f5a85c0e", "gender": "0ecf1805b8b53ca1"}


def test_one_stratum_column_is_the_same_spec_whichever_spelling(tmp_path):
    one = Spec("referrals", strata=["age_band"])
    assert one == Spec("referrals", stratum="age_band")
    assert one.hash == Spec("referrals", stratum="age_band").hash
    assert one.to_json() == Spec("referrals", stratum="age_band").to_json()
    # specs written with `stratum = ...` keep their hashes (and so their saved fits)
    for column, digest in FIRST_STRATA_SPECS.items():
        path = tmp_path / f"strata_{column}.toml"
        path.write_text(
            f'name = "strata_{column}"\noutcome = "referrals"\nfamily = "negbin"\n'
            f'stratum = "{column}"\n\n[records]\nby = ["{column}"]\nscale = 0.2\n\n'
            "[sampling]\ndraws = 1000\ntune = 1000\nchains = 4\nseed = 2021\n"
        )
        assert load_spec(path).hash == digest
    # a spec with other priors set keeps its hash too: new prior scales left out at defaults
    assert "trend_slope" not in Spec("referrals", priors={"b_w": 2.0}).to_json()


def test_several_columns_and_a_trend_parse_and_round_trip(tmp_path):
    spec = Spec("referrals", strata=["age_band", "gender"], stratum_trend="age")
    assert spec.stratum == ""
    assert spec.stratum_columns == ("age_band", "gender")
    assert Spec.from_json(spec.to_json()) == spec
    assert spec.hash != Spec("referrals", strata=["gender", "age_band"]).hash
    path = tmp_path / "s.toml"
    path.write_text(
        'outcome = "referrals"\nstrata = ["age_band", "gender"]\n'
        'stratum_trend = "age"\n[priors]\ntrend_slope = 0.2\n'
    )
    loaded = load_spec(path)
    assert loaded.strata == ("age_band", "gender")
    assert loaded.priors.trend_slope == 0.2
    trend = load_spec(sg.MODELS / "strata_age_trend.toml")
    assert (trend.stratum_trend, trend.records.by) == ("age", ("age",))
    for bad, match in (
        ({"stratum": "gender", "strata": ["age_band", "gender"]}, "once"),
        ({"strata": ["age", "gender"], "stratum_trend": "age"}, "either"),
        ({"strata": ["gender", "gender"]}, "repeats"),
    ):
        with pytest.raises(ValueError, match=match):
            Spec("referrals", **bad)
    with pytest.raises(ValueError, match="strat"):
        sg.encode(
            pd.DataFrame(),
            Spec("referrals", outcomes=["referrals", "assessments"], stratum_trend="age"),
        )


# -- the input contract -------------------------------------------------------------------


def rule(table, **kw) -> InputError:
    with pytest.raises(InputError) as err:
        validate(table, ["referrals"], **kw)
    return err.value


def test_contract_of_several_columns_and_a_trend(two, by_age):
    out = validate(two, ["referrals"], ["age_band", "gender"])
    assert len(out) == len(two)
    assert rule(two, stratum="age_band").rule == "duplicate_cell"  # gender splits the cells
    assert rule(two, stratum=["age_band", "sex"]).rule == "missing_column"
    dup = pd.concat([two, two.iloc[[5]]], ignore_index=True)
    err = rule(dup, stratum=["age_band", "gender"])
    assert (err.rule, err.rows) == ("duplicate_cell", [5, len(two)])
    one = two[two["gender"] == "M"]
    err = rule(one, stratum=["age_band", "gender"])
    assert (err.rule, err.columns) == ("constant_stratum", ("gender",))
    # the trend column is part of the cell: one row per LSOA x year of age
    out = validate(by_age, ["referrals"], trend="age")
    assert out["age"].dtype == float
    assert len(out) == len(by_age)
    assert rule(by_age).rule == "duplicate_lsoa"
    err = rule(by_age, trend="years")
    assert (err.rule, err.columns) == ("missing_column", ("years",))
    err = rule(by_age.assign(age=by_age["age"].map(lambda a: f"age {a}")), trend="age")
    assert (err.rule, err.columns) == ("non_numeric", ("age",))
    err = rule(two.assign(age=7), stratum=["age_band", "gender"], trend="age")
    assert (err.rule, err.columns) == ("constant_trend", ("age",))
    with pytest.raises(InputError) as err:
        sg.encode(by_age, Spec("referrals", stratum_trend="age_in_years"))
    assert err.value.rule == "missing_column"


# -- the model ----------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["poisson", "negbin"])
def test_logp_equals_textbook_model_with_two_columns_and_a_trend(two, family):
    table = two.assign(
        age=two["age_band"].map({"0-4": 2, "5-9": 7, "10-15": 12.5})
        + np.where(two["gender"] == "M", 0.0, 0.5)
    )
    spec = Spec(
        "referrals",
        family=family,
        strata=["age_band", "gender"],
        stratum_trend="age",
        la_effects="centred",
    )
    data = sg.encode(table, spec)
    strata = data.term(Strata)
    assert strata.levels == (
        "age_band=10-15",
        "age_band=0-4",
        "age_band=5-9",
        "gender=M",
        "gender=F",
    )
    assert data.row_dim == "cell"
    assert strata.index.shape == (len(table), 2)
    model = build_model(data, spec)
    assert list(model.coords["stratum_contrast"]) == ["age_band=0-4", "age_band=5-9", "gender=F"]
    trend = data.term(Trend)
    mean, sd = trend.scaling(data)
    with pm.Model(coords=model.coords) as ref:
        theta = la_effects(data)
        raw = pm.Normal(
            "stratum_offset", 0, np.array([1.0, 0.5]), dims=("stratum_contrast", "effect")
        )
        off = pt.concatenate([pt.zeros((1, 2)), raw[:2], pt.zeros((1, 2)), raw[2:]], axis=0)
        coef = pm.Normal("trend_coef", 0, np.array([1.0, 0.5]), dims="effect")
        i, s = data.la_index, strata.index
        z = (trend.values - mean) / sd
        eta = (
            theta[i, 0]
            + off[s[:, 0], 0]
            + off[s[:, 1], 0]
            + coef[0] * z
            + (theta[i, 1] + off[s[:, 0], 1] + off[s[:, 1], 1] + coef[1] * z) * data.w
        )
        observe(family, data.children * pt.exp(eta), data.y)
    assert_same_density(model, ref)


@pytest.mark.slow  # a fit: 100-200 s measured on the shared 2-core machine
def test_two_column_fit_gives_per_column_contrasts(two):
    tree = sg.fit(
        two,
        Spec("referrals", strata=["age_band", "gender"]),
        draws=200,
        tune=200,
        chains=2,
        progressbar=False,
    )
    assert tree["log_likelihood"]["referrals"].dims == ("chain", "draw", "cell")
    assert json.loads(tree.attrs["stratum_columns"]) == {
        "age_band": ["10-15", "0-4", "5-9"],
        "gender": ["M", "F"],
    }
    s = sg.summarise(tree)
    assert "stratum_contrast" not in s
    assert s["model"]["strata"] == ["age_band", "gender"]
    assert set(s["strata"]) == {"age_band", "gender"}
    assert s["strata"]["gender"]["reference"] == "M"
    assert set(s["strata"]["age_band"]["contrast"]) == {"10-15/0-4", "10-15/5-9", "0-4/5-9"}
    assert s["strata"]["age_band"]["gradient"]["10-15"] == s["gradient_mean_la"]
    for column, levels in OFFSET.items():
        for pair, value in s["strata"][column]["contrast"].items():
            a, b = pair.split("/")
            truth = math.exp(levels[a][1] - levels[b][1])
            lo, hi = value["ci95"]
            assert lo <= truth <= hi, (column, pair, truth, value)
            assert 0 <= value["p_steeper"] <= 1
    # the encoded data is rebuilt from the tree (cells, columns and levels)
    again = predict.encoded_data(tree)
    data = sg.encode(two, Spec("referrals", strata=["age_band", "gender"]))
    assert again.term(Strata) is not None
    assert again.term(Strata).levels == data.term(Strata).levels
    np.testing.assert_array_equal(again.term(Strata).index, data.term(Strata).index)


@pytest.mark.slow  # a fit: 100-200 s measured on the shared 2-core machine
def test_trend_recovered_on_a_table_drawn_from_the_model(by_age):
    tree = sg.fit(
        by_age,
        Spec("referrals", stratum_trend="age"),
        draws=200,
        tune=200,
        chains=2,
        progressbar=False,
    )
    s = sg.summarise(tree)["stratum_trend"]
    assert s["column"] == "age"
    for key, truth in (("intercept", KAPPA), ("slope", TAU)):
        lo, hi = s[key]["ci95"]
        assert lo <= truth <= hi, (key, truth, s[key])
    assert s["slope"]["p_negative"] > 0.9
    assert tree["constant_data"]["trend_value"].dims == ("cell",)
    again = predict.encoded_data(tree)
    np.testing.assert_array_equal(again.term(Trend).values, by_age["age"].to_numpy(float))
    # predict reproduces the model's mean on the fit's own cells (the trend included)
    pred = sg.predict(tree, by_age)
    log_mean = predict.log_mean(tree["posterior"].to_dataset(), again)
    rate = 1e4 * np.exp(log_mean.values - np.log(again.exposure))
    np.testing.assert_allclose(pred["rate_per_10k"].values, rate, rtol=1e-10)
    with pytest.raises(ValueError, match=r"lacks columns \['age'\]"):
        sg.predict(tree, by_age.drop(columns="age"))


# -- records by single year of age --------------------------------------------------------


@pytest.fixture(scope="module")
def recs():
    """A small records simulation of 30 LAs (the synthetic England at scale 0.1)."""
    geo = england.simulate(seed=5, scale=0.1).table
    geo = geo[geo["la"].isin(sorted(geo["la"].unique())[:30])]
    return simulate_records(seed=5, scale=0.1, geography=geo)


def test_single_year_denominators_sum_to_the_band(recs):
    pop = single_year_population(recs.population)
    assert sorted(pop["age"].unique()) == list(AGES)
    keys = ["year", "lsoa", "age_band", "gender", "ethnicity"]
    band = pop.groupby(keys, observed=True)["children"].sum()
    np.testing.assert_allclose(
        band.to_numpy(),
        recs.population.set_index(keys)["children"].reindex(band.index).to_numpy(),
        rtol=1e-12,
    )
    by_age, report = linkage.aggregate(recs, by=("age",))
    by_band, _ = linkage.aggregate(recs, by=("age_band",))
    assert report.linked == report.read
    assert by_age["age"].dtype == np.int64
    assert by_age["children"].dtype == float
    assert by_age["referrals"].sum() == by_band["referrals"].sum()
    assert by_age["children"].sum() == pytest.approx(by_band["children"].sum(), rel=1e-12)
    # each child counted at the age of its child row
    ages = recs.children.groupby("age").size()
    np.testing.assert_array_equal(
        by_age.groupby("age")["referrals"].sum().reindex(ages.index).to_numpy(), ages.to_numpy()
    )


def test_age_trend_truth_is_the_line_through_the_band_staircase(recs):
    t = recs.truth["age_trend"]
    assert t["ages"] == list(AGES)
    assert len(t["d_by_age"]) == 18
    d = recs.truth["strata"]["age_band"]
    assert [t["d_by_age"][a] for a in (0, 7, 12, 17)] == [
        d[b]["d"] for b in ("0-4", "5-9", "10-15", "16-17")
    ]
    assert t["slope"] == pytest.approx(-0.0134, abs=5e-5)
    assert sum(t["weight_by_age"]) == pytest.approx(1.0)
    assert t["gradient_ratio_0_to_17"] == pytest.approx(math.exp(17 * t["slope"]))
    assert all(k in recs.truth["definitions"] for k in t)


@pytest.mark.slow  # a fit: 100-200 s measured on the shared 2-core machine
def test_age_trend_recovered_on_records_by_single_year(recs):
    """The spec's fit, small: the trend's 95% interval covers the records' stated truth."""
    table, _ = linkage.aggregate(recs, by=("age",), outcomes=("thresholds",))
    spec = load_spec(sg.MODELS / "strata_age_trend.toml")
    start = time.perf_counter()
    tree = sg.fit(table, spec, draws=250, tune=250, chains=2, progressbar=False)
    seconds = time.perf_counter() - start
    s = sg.summarise(tree)
    row = findings.table(
        {spec.name: s},
        {spec.name: recs.truth},
        [f for f in findings.FINDINGS if f.spec == spec.name],
    ).iloc[0]
    assert bool(row["covered"]), (row.to_dict(), s["stratum_trend"])
    assert row["probability"] == s["stratum_trend"]["slope"]["p_negative"] > 0.9
    assert s["diagnostics"]["divergences"] == 0
    print(f"age trend on {len(table)} cells: {s['stratum_trend']['slope']} in {seconds:.0f} s")
