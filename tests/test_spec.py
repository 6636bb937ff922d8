"""The frozen analysis spec: validation, canonical JSON, hash, replace, TOML loading."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from socialgradient.panel.model import PanelSpec, load_panel_spec
from socialgradient.spec import Priors, RecordsTable, Sampling, Spec, SpecError, load_spec

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
    with pytest.raises(SpecError, match=r"unknown sampler 'stan': sampling\.sampler must be"):
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
    assert spec.sampling == Sampling(
        sampler="nutpie", stop="target", max_draws=4000, tune=200, chains=4, seed=2021
    )


# -- hashes are a contract ---------------------------------------------------------------------

#: ``spec.hash`` of every spec in models/ (panel specs: ``la_panel_*``), computed with the code
#: before spec validation moved to msgspec. Saved fits carry these hashes: they must not move
#: unless the spec itself changes (2026-12-07: every suite spec but the panels' samples to the
#: target, ``stop = "target"``, instead of fixed draws; their hashes moved with it, the panels'
#: did not; later that day the six whose data pin the LA SDs down left ``tune`` out, to be
#: chosen from the data, ``sampling.tuning``).
MODEL_HASHES = {
    "cp_categories.toml": "361f35de162b90f0",
    "durations_cin_plan.toml": "2e5e5b39a2d6a5eb",
    "durations_cp_plan.toml": "e8d2237e9059ecd8",
    "joint_thresholds.toml": "0e12a82aa5561c8b",
    "la_panel_cin.toml": "5df8c2b44aff2939",
    "la_panel_cla.toml": "0623aaf33598aa0c",
    "la_panel_cpp_starts.toml": "543db787349ba136",
    "la_panel_referrals.toml": "e1bae49795122672",
    "la_repeat_cp_plans.toml": "5ecc521d65fd1ad0",
    "la_rereferrals.toml": "67738551beb20816",
    "national_referrals.toml": "df22088c6161aa00",
    "national_referrals_places.toml": "95943830c5d12878",
    "needs_factors.toml": "0c2674d0799584ba",
    "repeat_cp_plans.toml": "cb9e8124889afc42",
    "rereferrals.toml": "be65f1fd02ba75ca",
    "rurality.toml": "6a6f3c8f69267ae9",
    "strata_age_band.toml": "47b7ca95556231bf",
    "strata_age_trend.toml": "54a2d1129d1a8ee5",
    "strata_ethnicity_cp_plans.toml": "ac42ac862f38ee12",
    "strata_gender.toml": "ec5a87f0173aab7f",
}

R = {"outcome": "referrals"}
#: (mapping, hash): ints stay ints in float fields (``b_w = 2`` and ``b_w = 2.0`` hashed
#: differently before msgspec, and still do), one item for a list, defaults. These mappings
#: leave ``tune`` out: their hashes moved once (2026-12-07) when a left-out ``tune`` became
#: "chosen from the data" (``sampling.tuning``) instead of 500; the model specs set it.
DICT_HASHES = [
    ({**R, "priors": {"b_w": 1}}, "94b670be06a9b115"),
    ({**R, "priors": {"b_w": 1.0}}, "94b670be06a9b115"),
    ({**R, "priors": {"b_w": 2}}, "579026f5894ed30c"),
    ({**R, "priors": {"b_w": 2.0}}, "5393e97e50f16747"),
    ({**R, "priors": {"a_mean": -4}}, "d908da0ed929c6ce"),
    ({**R, "priors": {"trend_intercept": 1, "trend_slope": 0.5}}, "94b670be06a9b115"),
    ({**R, "records": {"scale": 1}}, "684564b6fedc1107"),
    ({**R, "records": {"scale": 1.0}}, "b8a1aaeca5fcc70d"),
    ({**R, "records": {"by": ["age_band"], "scale": 1}}, "9205d8f0032c05d0"),
    ({**R, "records": {"by": "age_band"}}, "92630c0c6ec7ae55"),
    ({**R, "records": {"by": ["age_band"]}}, "92630c0c6ec7ae55"),
    ({**R, "records": {"years": 2019}}, "5df2fee54d7d37ce"),
    ({**R, "strata": ["age_band"]}, "28d486af56de6e4a"),
    ({**R, "stratum": "age_band"}, "28d486af56de6e4a"),
    ({**R, "neighbourhood_moderators": "x"}, "d65a08e890a98a54"),
    (
        {
            **R,
            "la_data": "/a/b/las.parquet",
            "la_outcome": {"count": "a", "trials": "b", "adjust": "c"},
        },
        "9a0be8215abe0a62",
    ),
    ({"outcomes": ["referrals", "assessments"]}, "5add55e64f4ed9c3"),
]


def test_every_model_spec_keeps_its_hash():
    paths = sorted((ROOT / "models").glob("*.toml"))
    assert {p.name for p in paths} == set(MODEL_HASHES)  # a new spec: add its hash here
    for path in paths:
        spec = load_panel_spec(path) if path.name.startswith("la_panel_") else load_spec(path)
        assert spec.hash == MODEL_HASHES[path.name], path.name


@pytest.mark.parametrize(("raw", "digest"), DICT_HASHES)
def test_spec_mappings_keep_their_hashes(raw, digest):
    assert Spec.from_dict(raw).hash == digest
    assert Spec.from_json(Spec.from_dict(raw).to_json()).hash == digest


def test_panel_defaults_keep_their_hash():
    assert PanelSpec().hash == "657f7250d13d3603"
    assert PanelSpec.from_dict({"target_accept": 0.9}).hash == "071b655548e2c1cc"


# -- errors a user can read --------------------------------------------------------------------

INT_1_1M = "an integer from 1 to 1000000"
POSITIVE = "> 0 (a finite number)"
STRINGS = "a list of strings"
#: (mapping, key path, value as given, what is allowed), each a SpecError naming all three
BAD = [
    ({**R, "target_accept": "0.9"}, "target_accept", "'0.9'", "in [0.5, 1)"),
    ({**R, "target_accept": 1.0}, "target_accept", "1.0", "in [0.5, 1)"),
    ({**R, "target_accept": 0.2}, "target_accept", "0.2", "in [0.5, 1)"),
    ({**R, "target_accept": True}, "target_accept", "True", "in [0.5, 1)"),
    ({**R, "stratum": 3}, "stratum", "3", "a string"),
    ({**R, "la_data": 5}, "la_data", "5", "a string"),
    ({"outcome": 5}, "outcome", "5", "a string"),
    ({**R, "family": "gamma"}, "family", "'gamma'", "'negbin', 'poisson', 'binomial'"),
    ({**R, "family": 3}, "family", "3", "'negbin', 'poisson', 'binomial'"),
    ({**R, "la_effects": "centered"}, "la_effects", "'centered'", "'auto', 'centred'"),
    ({**R, "strata": ["age_band", 3]}, "strata", "['age_band', 3]", STRINGS),
    ({**R, "neighbourhood_moderators": 3}, "neighbourhood_moderators", "3", STRINGS),
    ({**R, "sampling": {"draws": "100"}}, "sampling.draws", "'100'", INT_1_1M),
    ({**R, "sampling": {"draws": 0}}, "sampling.draws", "0", INT_1_1M),
    ({**R, "sampling": {"draws": 10.0}}, "sampling.draws", "10.0", INT_1_1M),
    ({**R, "sampling": {"draws": 10**7}}, "sampling.draws", "10000000", INT_1_1M),
    ({**R, "sampling": {"tune": True}}, "sampling.tune", "True", INT_1_1M),
    ({**R, "sampling": {"tune": -5}}, "sampling.tune", "-5", INT_1_1M),
    ({**R, "sampling": {"chains": 65}}, "sampling.chains", "65", "an integer from 1 to 64"),
    ({**R, "sampling": {"chains": "4"}}, "sampling.chains", "'4'", "an integer from 1 to 64"),
    ({**R, "sampling": {"seed": -1}}, "sampling.seed", "-1", "from 0 to 4294967295"),
    ({**R, "sampling": {"seed": 2**32}}, "sampling.seed", "4294967296", "from 0 to 4294967295"),
    ({**R, "sampling": {"sampler": "stan"}}, "sampling.sampler", "'stan'", "'nutpie', 'pymc'"),
    ({**R, "sampling": 5}, "sampling", "5", "a table with keys chains, draws"),
    ({**R, "priors": {"b_w": "x"}}, "priors.b_w", "'x'", POSITIVE),
    ({**R, "priors": {"b_w": 0}}, "priors.b_w", "0", POSITIVE),
    ({**R, "priors": {"lkj_eta": -1.5}}, "priors.lkj_eta", "-1.5", POSITIVE),
    ({**R, "priors": {"b_w": float("inf")}}, "priors.b_w", "inf", POSITIVE),
    ({**R, "priors": {"b_w": float("nan")}}, "priors.b_w", "nan", POSITIVE),
    ({**R, "priors": {"a": False}}, "priors.a", "False", POSITIVE),
    ({**R, "priors": {"a_mean": "x"}}, "priors.a_mean", "'x'", "a finite number"),
    ({**R, "priors": {"a_mean": float("-inf")}}, "priors.a_mean", "-inf", "a finite number"),
    ({**R, "priors": 3}, "priors", "3", "a table with keys a, a_mean"),
    ({**R, "records": {"by": 5}}, "records.by", "5", STRINGS),
    ({**R, "records": {"by": ["age_band", 5]}}, "records.by", "['age_band', 5]", STRINGS),
    ({**R, "records": {"groups": [None]}}, "records.groups", "[None]", STRINGS),
    ({**R, "records": {"years": ["2019"]}}, "records.years", "['2019']", "a list of integers"),
    ({**R, "records": {"scale": 0}}, "records.scale", "0", "in (0, 1]"),
    ({**R, "records": {"scale": 1.5}}, "records.scale", "1.5", "in (0, 1]"),
    ({**R, "records": {"scale": "0.2"}}, "records.scale", "'0.2'", "in (0, 1]"),
    ({**R, "records": {"seed": -3}}, "records.seed", "-3", "from 0 to 4294967295"),
    ({**R, "records": {"durations": 1}}, "records.durations", "1", "a string"),
    ({**R, "records": 5}, "records", "5", "a table with keys by, durations"),
    ({**R, "la_outcome": {"count": "a", "trials": 3}}, "la_outcome.trials", "3", "a string"),
    (
        {**R, "la_outcome": {"count": "a", "trials": "b", "adjust": 1.5}},
        "la_outcome.adjust",
        "1.5",
        STRINGS,
    ),
]


def _says(err: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(err.value)
    for part in parts:
        assert part in message, (part, message)


@pytest.mark.parametrize(
    ("raw", "key", "given", "allowed"), BAD, ids=[f"{b[1]}={b[2]}" for b in BAD]
)
def test_a_bad_value_names_its_key_the_value_and_what_is_allowed(
    raw, key, given, allowed, tmp_path
):
    with pytest.raises(SpecError) as err:
        Spec.from_dict(raw)
    _says(err, key, given, allowed)
    assert re.search(rf"(^|unknown \w+ .*: ){re.escape(key)} ", str(err.value))
    assert isinstance(err.value, ValueError)  # callers that catch ValueError still do


@pytest.mark.parametrize(
    ("text", "key", "given", "allowed"),
    [
        ('target_accept = "0.9"', "target_accept", "'0.9'", "in [0.5, 1)"),
        ("stratum = 3", "stratum", "3", "a string"),
        ('[sampling]\ndraws = "100"', "sampling.draws", "'100'", INT_1_1M),
        ('[priors]\nb_w = "x"', "priors.b_w", "'x'", POSITIVE),
        ("[records]\nby = 5", "records.by", "5", STRINGS),
        ("[priors]\nb_w = nan", "priors.b_w", "nan", POSITIVE),
    ],
)
def test_a_bad_toml_file_raises_spec_error(text, key, given, allowed, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(f'outcome = "referrals"\n{text}\n')
    with pytest.raises(SpecError) as err:
        load_spec(path)
    _says(err, key, given, allowed)


def test_missing_keys_are_named():
    with pytest.raises(SpecError, match=r"^outcome is required: a string$"):
        Spec.from_dict({"family": "poisson"})
    with pytest.raises(SpecError, match=r"^la_outcome\.trials is required: a string$"):
        Spec.from_dict({**R, "la_outcome": {"count": "a"}})


def test_unknown_keys_list_the_allowed_ones():
    with pytest.raises(
        SpecError,
        match=r"unknown key.*'bogus'.*\[records\]; allowed: "
        r"\['by', 'durations'",
    ):
        Spec.from_dict({**R, "records": {"bogus": 1}})
    with pytest.raises(SpecError, match=r"unknown key.*'b_q'.*\[priors\]; allowed: \['a'"):
        Spec("referrals").replace(priors={"b_q": 1.0})
    with pytest.raises(SpecError, match=r"unknown key.*'gradient'.*spec; allowed: "):
        PanelSpec.from_dict({"measure": "cin", "gradient": "walk"})


def test_specs_built_in_python_meet_the_same_rules():
    with pytest.raises(SpecError, match=r"^target_accept must be in \[0\.5, 1\).*got '0\.9'"):
        Spec("referrals", target_accept="0.9")
    with pytest.raises(SpecError, match=r"^records\.scale must be in \(0, 1\].*got 3 \(int\)"):
        Spec("referrals", records={"scale": 3})
    with pytest.raises(SpecError, match=r"^priors\.b_w must be > 0.*got 0\.0"):
        Priors(b_w=0.0)
    with pytest.raises(SpecError, match=r"^sampling\.chains must be an integer from 1 to 64"):
        Spec("referrals").replace(chains=100)
    with pytest.raises(SpecError, match=r"^records\.by must be a list of strings"):
        RecordsTable(by=5)
    # one item for a list, a dict for a table, numpy's float64: taken as before
    spec = Spec(
        "referrals",
        records={"by": "age_band"},
        neighbourhood_moderators="x",
        priors={"b_w": np.float64(0.5)},
    )
    assert spec.records.by == ("age_band",)
    assert spec.neighbourhood_moderators == ("x",)
    assert type(spec.priors.b_w) is float
    assert spec.priors.b_w == 0.5


def test_ints_in_float_fields_stay_ints():
    """``b_w = 2`` is kept as 2 (its canonical JSON says 2, not 2.0): the hash of a spec file
    written that way is what it was before msgspec checked it."""
    spec = Spec.from_dict({**R, "priors": {"b_w": 2}, "records": {"scale": 1}})
    assert type(spec.priors.b_w) is int
    assert type(spec.records.scale) is int
    assert '"b_w": 2,' in spec.to_json()


def test_panel_spec_errors_are_spec_errors():
    with pytest.raises(SpecError, match=r"target_accept must be a number, got '0\.9'"):
        PanelSpec.from_dict({"target_accept": "0.9"})
    with pytest.raises(SpecError, match=r"sampling\.draws must be an integer from 1"):
        PanelSpec.from_dict({"sampling": {"draws": "10"}})
    with pytest.raises(SpecError, match="unknown measure 'x'"):
        PanelSpec.from_dict({"measure": "x"})
