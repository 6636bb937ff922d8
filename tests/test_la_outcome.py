"""The LA-level question (issue 10): its synthetic truth, spec, joint model and findings."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import socialgradient.api as sg
from socialgradient.data.schema import InputError
from socialgradient.data.synthetic import records
from socialgradient.model import la_outcome
from socialgradient.model.terms import LAOutcomeTerm
from socialgradient.spec import LAOutcome, RecordsTable, Spec, load_spec
from socialgradient.study import aggregates, findings

SMALL = RecordsTable(groups=("thresholds", "repeats"), scale=0.05, seed=3)
COLUMNS = ("spend_per_child", "agency_share", "turnover")


@pytest.fixture(scope="module")
def agg():
    return aggregates.build(SMALL)


@pytest.fixture(scope="module")
def las():
    return pd.read_parquet(sg.MODELS.parent / "data" / "las.parquet")


def _la_rates(table):
    g = table.groupby("la")[["rereferrals", "referrals"]].sum()
    return g["rereferrals"] / g["referrals"]


def test_c_g_enters_the_flags_and_nothing_else(agg, monkeypatch):
    """With c_g = 0 every other column of the aggregate is the same (no random number is
    drawn for the term), and only with c_g = 1 do LA re-referral shares follow the LAs'
    true gradient departures."""
    dev = pd.Series(
        {c: v["departure"] for c, v in agg.truth["la_outcomes"]["rereferral"]["la"].items()}
    )
    corr = _la_rates(agg.table).corr(dev)
    for par in (records.REREFERRAL, records.REPEAT_CP):
        monkeypatch.setitem(par, "c_g", 0.0)
    flat = aggregates.build(SMALL)
    flags = ["rereferrals", "repeat_cp_plans"]
    pd.testing.assert_frame_equal(agg.table.drop(columns=flags), flat.table.drop(columns=flags))
    assert not agg.table["rereferrals"].equals(flat.table["rereferrals"])
    assert corr > 0.5 > abs(_la_rates(flat.table).corr(dev)) + 0.2
    t = agg.truth["la_outcomes"]
    assert t["rereferral"]["c_g"] == t["repeat_cp"]["c_g"] == 1.0
    # the realised coefficient: c_g plus a little composition (c_w > 0 in steeper LAs)
    assert 0.95 < t["rereferral"]["realised_k_g"] < 1.15
    assert flat.truth["la_outcomes"]["rereferral"]["realised_k_g"] == pytest.approx(0.0, abs=0.15)


def test_spec_la_outcome_parses_validates_and_keeps_old_hashes(tmp_path, agg, first_national_spec):
    spec = load_spec(sg.MODELS / "la_rereferrals.toml")
    assert spec.la_outcome == LAOutcome("rereferrals", "referrals", ("m_c", *COLUMNS))
    assert spec.la_outcome.covariates == COLUMNS
    assert Spec.from_json(spec.to_json()) == spec
    assert first_national_spec.hash == "45cc431df78139ab"
    # specs without [la_outcome] keep the hashes they had before the field existed (the
    # re-referral spec as it was then: 3,000 draws per chain)
    before = tmp_path / "rereferrals.toml"
    before.write_text(
        'name = "rereferrals"\noutcome = "rereferrals"\nfamily = "binomial"\n'
        'trials = "referrals"\ntarget_accept = 0.9\n\n[records]\n'
        'groups = ["thresholds", "repeats"]\npositive = "referrals"\nscale = 0.2\n\n'
        "[sampling]\ndraws = 3000\ntune = 1000\nchains = 4\nseed = 2021\n"
    )
    assert load_spec(before).hash == "65d50feef98563dc"
    path = tmp_path / "s.toml"
    path.write_text('outcome = "referrals"\n[la_outcome]\ncount = "x"\ntrials = "y"\nbogus = 1\n')
    with pytest.raises(ValueError, match="bogus"):
        load_spec(path)
    with pytest.raises(ValueError, match="needs la_data"):
        Spec("referrals", la_outcome={"count": "a", "trials": "b", "adjust": ["turnover"]})
    with pytest.raises(ValueError, match="joint"):
        Spec(
            "referrals",
            outcomes=("referrals", "assessments"),
            la_outcome={"count": "a", "trials": "b"},
        )
    bad = Spec("referrals", la_outcome={"count": "re_referrals", "trials": "referrals"})
    with pytest.raises(InputError, match=r"la_outcome\.count names 're_referrals'"):
        sg.encode(agg.table, bad)


def test_la_outcome_totals_are_the_tables_la_sums(agg, las):
    spec = load_spec(sg.MODELS / "la_rereferrals.toml")
    data = sg.encode(agg.table, spec, la_table=las)
    lo = data.term(LAOutcomeTerm).outcome
    sums = agg.table.groupby("la")[["rereferrals", "referrals"]].sum().loc[data.la]
    np.testing.assert_array_equal(lo.count, sums["rereferrals"])
    np.testing.assert_array_equal(lo.trials, sums["referrals"])
    assert lo.terms == ("m_c", *COLUMNS)
    np.testing.assert_allclose(lo.covariates[:, 0], data.m_c)
    model = sg.build_model(data, spec)
    assert {"la_outcome_loglik"} <= {p.name for p in model.potentials}
    assert model.named_vars_to_dims["la_outcome_effect"] == ("la_outcome_term",)


@pytest.mark.slow  # a recovery fit (20-33 s)
def test_joint_fit_recovers_the_la_level_association(agg, las):
    """A small fit: k_g > 0 with high probability, and the realised truth (adjusted as the
    spec) inside the 95% interval; summary.json has ``la_outcome``."""
    spec = load_spec(sg.MODELS / "la_rereferrals.toml")
    tree = sg.fit(agg.table, spec, la_table=las, draws=150, tune=300, chains=2, progressbar=False)
    post = tree["posterior"]
    assert "la_outcome_z" not in post
    assert "la_outcome_effect" in post
    s = sg.summarise(tree)["la_outcome"]
    truth = findings._la_outcome("rereferral")(agg.truth)
    lo, hi = s["odds_ratio_per_tenth"]["ci95"]
    assert lo <= truth <= hi, (truth, lo, hi)
    assert s["p_positive"] > 0.95
    assert s["gradient"]["median"] == pytest.approx(
        math.log(s["odds_ratio_per_tenth"]["median"]) / la_outcome.STEP, rel=1e-6
    )
    assert set(s["adjust"]) == {"m_c", *COLUMNS}
    assert s["n_la"] == agg.table["la"].nunique()


def test_findings_rows_resolve(agg):
    rows = [f for f in findings.FINDINGS if f.quantity.startswith("la_outcome.")]
    assert {f.spec for f in rows} == {"la_rereferrals", "la_repeat_cp_plans"}
    summary = {
        "la_outcome": {
            "odds_ratio_per_tenth": {
                "median": 1.1,
                "ci95": [1.05, 1.16],
                "ci80": [1.07, 1.14],
                "p_positive": 0.999,
            }
        },
        "diagnostics": {"verdict": "PASS"},
    }
    out = findings.table({f.spec: summary for f in rows}, {f.spec: agg.truth for f in rows}, rows)
    assert out["truth"].between(1.05, 1.15).all(), out["truth"]
    assert (out["probability"] == 0.999).all()
