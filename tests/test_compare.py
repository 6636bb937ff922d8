"""``sg.compare`` / ``socialgradient compare``: fits of the same rows by PSIS-LOO."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from fakes import fake_table, fake_tree
from socialgradient.model.data import NeighbourhoodData
from socialgradient.results import checks, compare
from socialgradient.sampling.fit import assemble, save, with_log_likelihood
from socialgradient.spec import Spec

pytestmark = pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto:UserWarning")


def moderated(tree: xr.DataTree) -> xr.DataTree:
    """The same rows fitted with a neighbourhood moderator (another data hash)."""
    table = fake_table()
    table["rural"] = (np.arange(len(table)) % 3 == 0).astype(float)
    data = NeighbourhoodData.from_table(table, "referrals", moderators=["rural"])
    post = tree["posterior"].to_dataset()
    effect = np.random.default_rng(4).normal(0, 0.05, (*post["a"].shape, 1, 2))
    post["moderator_effect"] = xr.DataArray(
        effect, dims=("chain", "draw", "moderator", "effect"), coords={"moderator": ["rural"]}
    )
    raw = xr.DataTree.from_dict(
        {"posterior": post, "sample_stats": tree["sample_stats"].to_dataset()}
    )
    return assemble(raw, data, Spec("referrals", neighbourhood_moderators=("rural",)))


def test_a_moderator_or_family_does_not_change_the_rows():
    plain = fake_tree()
    mod = moderated(plain)
    assert mod.attrs["data_hash"] != plain.attrs["data_hash"]  # what loo_compare refused on
    assert compare.row_identity(mod) == compare.row_identity(plain)
    assert compare.row_identity(fake_tree(family="poisson")) == compare.row_identity(plain)
    table = checks.loo_compare({"plain": plain, "rural": mod})  # no longer refused
    assert set(table.index) == {"plain", "rural"}


def test_other_counts_labels_or_order_are_other_rows():
    tree = fake_tree()
    base = compare.row_identity(tree)
    y = tree["observed_data"]["referrals"].values.copy()
    y[0] += 1
    changed = tree.copy()
    changed["observed_data"] = tree["observed_data"].to_dataset().assign(referrals=("lsoa", y))
    assert compare.row_identity(changed) != base
    relabelled = tree.copy()
    relabelled["observed_data"] = (
        tree["observed_data"].to_dataset().assign_coords(lsoa=[f"X{i}" for i in range(len(y))])
    )
    assert compare.row_identity(relabelled) != base
    reordered = tree.copy()
    reordered["observed_data"] = tree["observed_data"].to_dataset().isel(lsoa=slice(None, None, -1))
    assert compare.row_identity(reordered) != base


def test_different_rows_are_refused_saying_how_rows_are_identified():
    with pytest.raises(ValueError, match=r"same rows.*identified by the observed data"):
        compare.compare(fake_tree(seed=0), fake_tree(seed=1))
    with pytest.raises(ValueError, match="same rows"):
        checks.loo_compare({"one": fake_tree(seed=0), "two": fake_tree(seed=1)})


def test_elpd_diff_se_and_pareto_counts():
    nb, po = fake_tree(family="negbin"), fake_tree(family="poisson")
    out = compare.compare(nb, po, names=("negbin", "poisson"))
    pointwise = {}
    for name, tree in (("negbin", nb), ("poisson", po)):
        ll = with_log_likelihood(tree)["log_likelihood"]["referrals"].values.reshape(100, -1)
        # PSIS-LOO's pointwise elpd lies at or below the in-sample log predictive density
        lppd = np.log(np.exp(ll).mean(axis=0))
        pointwise[name] = lppd
        assert out["fits"][name]["elpd"] <= lppd.sum() + 1e-9
        k = out["fits"][name]["pareto_k"]
        assert k["good_k"] == pytest.approx(0.5)  # 2 x 50 draws: min(1 - 1/log10(100), 0.7)
        assert 0 <= k["above_1"] <= k["above_0_7"] <= k["above_good_k"] <= 120
        assert out["fits"][name]["draws"] == 100
    elpd = {n: out["fits"][n]["elpd"] for n in out["fits"]}
    assert out["elpd_diff"] == pytest.approx(elpd["negbin"] - elpd["poisson"])
    assert out["se"] > 0
    assert out["z"] == pytest.approx(out["elpd_diff"] / out["se"])
    assert out["rows"]["n"] == 120
    # the preference follows the sign and the 2-se margin, both ways round
    want = "negbin" if out["elpd_diff"] > 2 * out["se"] else None
    want = "poisson" if out["elpd_diff"] < -2 * out["se"] else want
    assert out["preferred"] == want
    swapped = compare.compare(po, nb, names=("poisson", "negbin"))
    assert swapped["elpd_diff"] == pytest.approx(-out["elpd_diff"])
    assert swapped["se"] == pytest.approx(out["se"])
    assert swapped["preferred"] == out["preferred"]
    assert "elpd_diff" in compare.text(out)
    assert "Pareto k" in compare.text(out)
    json.dumps(out)  # plain JSON


def test_a_clear_misfit_is_preferred_against_by_more_than_two_se():
    """A fit whose slope is far from the data's (b_w shifted by 0.4) loses decisively."""
    good = fake_tree(seed=3)
    post = good["posterior"].to_dataset()
    bad_post = post.assign(
        b_w=post["b_w"] + 0.4, la_effect=post["la_effect"] + xr.DataArray([0.0, 0.4], dims="effect")
    )
    groups = {k: good[k].to_dataset() for k in good.children if k != "log_likelihood"}
    bad = xr.DataTree.from_dict(groups | {"posterior": bad_post})  # log-likelihood recomputed
    bad.attrs = dict(good.attrs)
    out = compare.compare(good, bad, names=("good", "bad"))
    assert out["preferred"] == "good"
    assert out["elpd_diff"] > 2 * out["se"]


def test_compare_reads_saved_fits_and_the_command(tmp_path, capsys):
    from socialgradient.cli import main

    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    save(fake_tree(family="negbin"), a)
    save(fake_tree(family="poisson"), b)
    out = tmp_path / "compare.json"
    assert main(["compare", str(a), str(b), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "elpd_diff (A - B)" in printed
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["fits"]["A"]["family"] == "negbin"
    assert written["elpd_diff"] == pytest.approx(compare.compare(a, b)["elpd_diff"])
    save(fake_tree(seed=1), b)
    assert main(["compare", str(a), str(b)]) == 2
    assert "same rows" in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2


def test_compare_reads_output_sets_and_refuses_an_altered_one(tmp_path):
    from socialgradient.util import outputs

    sets = {}
    for family in ("negbin", "poisson"):
        tree = fake_tree(family=family)
        sets[family] = tmp_path / family
        with outputs.Writer(sets[family], spec_hash="s", data_hash=tree.attrs["data_hash"]) as w:
            (w.release / "summary.json").write_text("{}\n", encoding="utf-8", newline="\n")
            save(tree, w.internal / "posterior.nc")
            w.commit()
    out = compare.compare(sets["negbin"], sets["poisson"], names=("negbin", "poisson"))
    trees = fake_tree(family="negbin"), fake_tree(family="poisson")
    assert out["elpd_diff"] == pytest.approx(compare.compare(*trees)["elpd_diff"])
    (sets["poisson"] / "release" / "summary.json").write_text("{}\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="poisson"):
        compare.compare(sets["negbin"], sets["poisson"])
