"""The BYM2 term wired into the package (issue 29 items 2 and 5): spec, graph checks, model,
fit, summary.json and the residual Moran's I check of the PPCs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

import socialgradient.api as sg
from socialgradient.cli.parsing import parser as build_parser
from socialgradient.data.neighbours import (
    NeighbourError,
    pairs_from_frame,
    read_neighbours,
    resolve,
)
from socialgradient.data.synthetic.spatial import lattice_table, with_field
from socialgradient.model.build import build_model
from socialgradient.model.data import NeighbourhoodData
from socialgradient.model.terms import TERMS, NeighbourhoodModerators, SpatialEffect
from socialgradient.model.terms.spatial import graph_for_table
from socialgradient.results import checks
from socialgradient.sampling.fit import data_hash
from socialgradient.spec import Spec, SpecError, load_spec
from test_model import assert_same_density, random_points


@pytest.fixture(scope="module")
def lattice(tmp_path_factory):
    table, pairs, truth = lattice_table(6, 6, las=3, sd=0.6, rho=0.8, seed=3)
    path = tmp_path_factory.mktemp("graph") / "pairs.csv"
    pairs.to_csv(path, index=False)
    return table, path, truth


def test_spatial_is_a_term_after_the_older_ones_and_off_by_default():
    # after the terms that existed before it: the graphs of earlier models keep their order
    assert TERMS.index(SpatialEffect) > TERMS.index(NeighbourhoodModerators)
    spec = Spec("referrals")
    assert (spec.spatial, spec.neighbours) == ("", "")
    assert "spatial" not in spec.to_json()
    assert "neighbours" not in spec.to_json()


def test_spec_hashes_the_graph_by_file_name_and_resolves_it(tmp_path):
    a = Spec("referrals", spatial="bym2", neighbours="/x/graph.csv")
    b = Spec("referrals", spatial="bym2", neighbours="/y/graph.csv")
    assert a.hash == b.hash != Spec("referrals").hash
    (tmp_path / "s.toml").write_text(
        'outcome = "referrals"\nspatial = "bym2"\nneighbours = "g.csv"\n', encoding="utf-8"
    )
    assert load_spec(tmp_path / "s.toml").neighbours == str((tmp_path / "g.csv").resolve())
    (tmp_path / "t.toml").write_text('outcome = "referrals"\nneighbours = "synthetic"\n')
    assert load_spec(tmp_path / "t.toml").neighbours == "synthetic"  # a shipped graph
    with pytest.raises(SpecError, match="spatial"):
        Spec("referrals", spatial="car")
    with pytest.raises(SpecError, match="joint"):
        Spec("referrals", outcomes=("referrals", "cin"), spatial="bym2")


def test_graph_checked_against_the_table(lattice, caplog):
    table, path, _ = lattice
    pairs = read_neighbours(path)
    codes = np.unique(table["lsoa"])
    other = pairs_from_frame(pd.DataFrame({"lsoa": ["E01999998"], "neighbour": ["E01999999"]}))
    with pytest.raises(NeighbourError, match="names none of the table's 36 LSOAs"):
        graph_for_table(other, codes)
    keep = ~pd.Series(pairs.pairs[:, 0]).isin(codes[:4]) & ~pd.Series(pairs.pairs[:, 1]).isin(
        codes[:4]
    )
    few = pairs_from_frame(
        pd.DataFrame(pairs.pairs[keep.to_numpy()], columns=["lsoa", "neighbour"])
    )
    with pytest.raises(NeighbourError, match="misses 4 of the table's 36 LSOAs"):
        graph_for_table(few, codes)
    one = pairs.pairs[~np.isin(pairs.pairs, codes[:1]).any(axis=1)]
    extra = np.array([["E01999998", "E01999999"]])  # outside the table: dropped
    frame = pd.DataFrame(np.r_[one, extra], columns=["lsoa", "neighbour"])
    with caplog.at_level(logging.WARNING):
        adjacency = graph_for_table(pairs_from_frame(frame), codes)
    assert list(adjacency.islands) == [0]
    assert adjacency.dropped == 1
    assert "1 of the table's LSOAs have no neighbour pair" in caplog.text


def test_stratified_cells_share_their_lsoa_effect(lattice):
    table, path, _ = lattice
    cells = pd.concat([table.assign(band="0-4"), table.assign(band="5-9")], ignore_index=True)
    cells["children"] /= 2
    cells["referrals"] //= 2
    data = sg.encode(
        cells,
        Spec("referrals", family="poisson", stratum="band", spatial="bym2", neighbours=str(path)),
    )
    term = data.term(SpatialEffect)
    assert term is not None
    assert term.bym2
    assert len(term.codes) == 36
    np.testing.assert_array_equal(term.codes[term.index], cells["lsoa"].to_numpy())
    plain = sg.encode(table, Spec("referrals", neighbours=str(path)))
    assert not plain.term(SpatialEffect).bym2  # a graph for the check only
    assert data_hash(plain) != data_hash(sg.encode(table, Spec("referrals")))


def test_sufficient_likelihood_with_bym2_equals_pointwise(lattice):
    """The term's additions to the rows (eta) and to sum y eta agree with PyMC's own
    per-row likelihood, so the BYM2 effect enters the fast likelihood right."""
    table, path, _ = lattice
    spec = Spec("referrals", family="poisson", spatial="bym2", neighbours=str(path))
    data = sg.encode(table, spec)
    assert isinstance(data, NeighbourhoodData)
    fast = build_model(data, spec)
    ref = build_model(data, spec, likelihood="pointwise")
    free = {rv.name for rv in fast.free_RVs}
    assert {"spatial_sd", "spatial_rho", "spatial_z", "spatial_theta"} <= free
    assert fast.named_vars_to_dims["spatial_effect"] == ("spatial_lsoa",)
    assert_same_density(fast, ref, random_points(fast, 3, seed=5))


def test_cli_fit_and_simulate_take_the_spatial_options(tmp_path):
    args = build_parser().parse_args(
        [
            "fit",
            "t.csv",
            "--outcome",
            "referrals",
            "--out",
            str(tmp_path / "o"),
            "--spatial",
            "bym2",
            "--neighbours",
            "synthetic",
        ]
    )
    assert (args.spatial, args.neighbours) == ("bym2", "synthetic")
    sim = build_parser().parse_args(["simulate", "--out", "x", "--spatial-sd", "0.3"])
    assert (sim.spatial_sd, sim.spatial_rho) == (0.3, 0.8)


@pytest.mark.slow
def test_synthetic_england_field_leaves_the_default_alone():
    """with_field redraws the counts on the shipped graph; the default data is unchanged."""
    table, truth = sg.default_data(), sg.default_truth()
    before = table.copy()
    pairs = read_neighbours(resolve("synthetic"))
    out, spatial_truth = with_field(table, truth, pairs, 0.3, 0.8, seed=1)
    pd.testing.assert_frame_equal(table, before)
    assert "spatial" not in truth
    assert spatial_truth["spatial"]["sd"] == 0.3
    assert 0.2 < spatial_truth["spatial"]["realised_sd"] < 0.4
    assert spatial_truth["spatial"]["morans_i"] > 0.3  # a spatial field, not noise
    assert (out["referrals"] != table["referrals"]).mean() > 0.5
    assert (
        (
            out.drop(columns=list(truth["thresholds"]))
            == table.drop(columns=list(truth["thresholds"]))
        )
        .all()
        .all()
    )


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    table, pairs, _truth = lattice_table(10, 10, las=4, sd=0.5, rho=0.8, seed=1)
    path = tmp_path_factory.mktemp("fits") / "pairs.csv"
    pairs.to_csv(path, index=False)
    common = dict(family="poisson", neighbours=str(path), draws=200, tune=300, chains=2)
    return {
        kind or "none": sg.fit(table, "referrals", spatial=kind, progressbar=False, **common)
        for kind in ("bym2", "")
    }


@pytest.mark.slow
def test_moran_check_flags_a_missed_field_and_not_the_bym2_fit(fits):
    missed = checks.ppc(fits["none"])["spatial"]
    fitted = checks.ppc(fits["bym2"])["spatial"]
    assert float(missed["observed"][0]) > 0.15
    assert float(missed["p_value"][0]) < 0.01
    assert float(fitted["p_value"][0]) > 0.05


@pytest.mark.slow
def test_summary_json_and_ppc_json_carry_the_spatial_entries(fits, tmp_path):
    s = sg.summarise(fits["bym2"])
    assert set(s["spatial"]) >= {"sd", "rho", "graph"}
    assert s["spatial"]["sd"]["lo95"] < s["spatial"]["sd"]["median"] < s["spatial"]["sd"]["hi95"]
    assert s["spatial"]["graph"] == {
        "neighbours": "pairs.csv",
        "lsoas": 100,
        "pairs": 180,
        "islands": 0,
    }
    assert "spatial" not in sg.summarise(fits["none"])
    sg.write(fits["bym2"], tmp_path / "out")
    ppc = json.loads((tmp_path / "out" / "release" / "ppc.json").read_text())
    assert ppc["spatial"][0]["statistic"] == "morans_i"
    assert json.loads((tmp_path / "out" / "release" / "summary.json").read_text())["spatial"]


@pytest.mark.slow
def test_a_saved_bym2_fit_reloads_and_predicts(fits, tmp_path):
    tree = fits["bym2"]
    assert tree["posterior"]["spatial_effect"].dtype == np.float32
    assert "spatial_z" not in tree["posterior"]
    assert "spatial_theta" not in tree["posterior"]
    sg.save_fit(tree, tmp_path / "fit.nc")
    back = sg.load_fit(tmp_path / "fit.nc")
    assert back.attrs["spatial"] == "bym2"
    assert back.attrs["data_hash"] == tree.attrs["data_hash"]
    np.testing.assert_allclose(
        back["log_likelihood"]["referrals"].values, tree["log_likelihood"]["referrals"].values
    )
    table = pd.DataFrame(
        {"la": back["constant_data"]["lsoa_la"].values[:2], "income": [0.2, 0.2]}
    ).assign(children=300.0)
    codes = back["constant_data"]["lsoa"].values[:2].astype(str)
    plain = sg.predict(back, table)["rate_per_10k"].values
    placed = sg.predict(back, table.assign(lsoa=codes))["rate_per_10k"].values
    effect = back["posterior"]["spatial_effect"].sel(spatial_lsoa=codes).values
    np.testing.assert_allclose(placed, plain * np.exp(effect), rtol=1e-5)
    assert float(checks.ppc(back)["spatial"]["p_value"][0]) == float(
        checks.ppc(tree)["spatial"]["p_value"][0]
    )


def _bym2_poisson_fit(table, pairs, tmp_path):
    """A Poisson BYM2 fit of a lattice table on its graph, 2 chains x (300 + 300) draws."""
    pairs.to_csv(tmp_path / "p.csv", index=False)
    return sg.fit(
        table,
        "referrals",
        family="poisson",
        spatial="bym2",
        neighbours=str(tmp_path / "p.csv"),
        draws=300,
        tune=300,
        chains=2,
        progressbar=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
def test_bym2_recovers_sd_and_rho(seed, tmp_path):
    """A 16 x 16 lattice, 4 LAs, field sd 0.4 and rho 0.7: both truths in the 95% intervals."""
    table, pairs, _truth = lattice_table(16, 16, las=4, sd=0.4, rho=0.7, seed=seed)
    tree = _bym2_poisson_fit(table, pairs, tmp_path)
    s = sg.summarise(tree)["spatial"]
    assert s["sd"]["lo95"] <= 0.4 <= s["sd"]["hi95"], s["sd"]
    assert s["rho"]["lo95"] <= 0.7 <= s["rho"]["hi95"], s["rho"]


@pytest.mark.slow
def test_bym2_claims_little_where_there_is_no_field(tmp_path):
    """Data without a spatial field (sd 1e-6): the BYM2 fit's spatial_sd stays small, b_w is
    covered and the Moran check does not fire."""
    table, pairs, _ = lattice_table(12, 12, las=4, sd=1e-6, rho=0.5, b_w=0.3, seed=21)
    tree = _bym2_poisson_fit(table, pairs, tmp_path)
    s = sg.summarise(tree)
    assert s["spatial"]["sd"]["hi95"] < 0.2, s["spatial"]["sd"]
    lo, hi = np.quantile(tree["posterior"]["b_w"].values, [0.025, 0.975])
    assert lo <= 0.3 <= hi
    assert float(checks.ppc(tree)["spatial"]["p_value"][0]) > 0.05
