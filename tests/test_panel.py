"""The real LA x year panel: assembly on synthetic DfE-layout tables, the model, a tiny
recovery fit, and (when shared/data is present) the real panel and its full fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from socialgradient.cli import parser
from socialgradient.data.schema import InputError
from socialgradient.data.sources.geo import DFE_MERGES, harmonised_la
from socialgradient.panel.data import assemble_panel, harmonise, la_deprivation
from socialgradient.panel.model import (
    PanelSpec,
    build_panel_model,
    diagnose_panel,
    fit_panel,
    gradient_by_year,
    load_panel_spec,
    write_panel,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODELS = Path(__file__).resolve().parents[1] / "models"
needs_shared = pytest.mark.skipif(
    not (SHARED / "dfe_csc").is_dir(), reason="shared/data not available"
)


def long(rows, table="referrals", measure="referral_count"):
    """DfE long layout from (la, year, value or marker) triples."""
    out = []
    for la, year, v in rows:
        marker = v if isinstance(v, str) else ""
        out.append(
            {
                "table": table,
                "level": "Local authority",
                "la": la,
                "old_la_code": "999",
                "la_name": f"LA {la}",
                "year": year,
                "measure": measure,
                "value": np.nan if marker else float(v),
                "suppressed": bool(marker),
                "marker": marker,
            }
        )
    return pd.DataFrame(out)


def test_harmonised_la_joins_reorganised_areas():
    codes = [
        "E06000028",
        "E06000029",
        "E10000009",
        "E06000058",
        "E06000059",
        "E10000021",
        "E06000061",
        "E06000062",
        "E10000002",
        "E06000060",
        "E08000001",
    ]
    unit, info = harmonised_la(codes)
    assert set(unit[:5]) == {"E06000058+E06000059"}  # Christchurch moved: one unit
    assert set(unit[5:8]) == {"E10000021"}  # split: summed back into Northamptonshire
    assert set(unit[8:10]) == {"E06000060"}  # renaming: the new code
    assert unit.iloc[10] == "E08000001"
    assert info["E10000021"]["members"] == ["E06000061", "E06000062", "E10000021"]
    assert harmonised_la(["E09000001"], merges=DFE_MERGES)[0].iloc[0] == "E09000012"


def test_harmonise_sums_predecessors_and_flags_suppression():
    cells = long(
        [
            ("E10000021", 2021, 100),
            ("E06000061", 2022, 60),
            ("E06000062", 2022, 50),
            ("E06000028", 2019, 10),
            ("E06000029", 2019, 20),
            ("E10000009", 2019, 30),
            ("E06000058", 2020, 40),
            ("E06000059", 2020, "c"),
            ("E10000021", 2022, "z"),
            ("E06000053", 2021, "z"),
        ]
    )
    h = harmonise(cells).set_index(["la", "year"])
    assert h.loc[("E10000021", 2021), "value"] == 100
    assert h.loc[("E10000021", 2022), "value"] == 110  # z adds nothing
    assert h.loc[("E10000021", 2022), "members"] == "E06000061+E06000062"
    assert h.loc[("E06000058+E06000059", 2019), "value"] == 60
    assert h.loc[("E06000058+E06000059", 2020), "status"] == "suppressed"  # one member c
    assert np.isnan(h.loc[("E06000058+E06000059", 2020), "value"])
    assert h.loc[("E06000053", 2021), "status"] == "not_reported"


def test_harmonise_refuses_double_counting():
    with pytest.raises(InputError, match="double count"):
        harmonise(long([("E10000021", 2022, 100), ("E06000061", 2022, 60)]))


def _fixture():
    las = ["E08000001", "E08000002", "E10000021", "E06000061", "E06000062"]
    counts = long(
        [
            ("E08000001", 2020, 50),
            ("E08000001", 2021, "c"),
            ("E08000002", 2020, 70),
            ("E08000002", 2021, 80),
            ("E10000021", 2020, 300),
            ("E06000061", 2021, 150),
            ("E06000062", 2021, 160),
        ]
    )
    pop = long(
        [
            (la, y, 1000 + i)
            for i, la in enumerate(las)
            for y in (2019, 2020)
            if not (la.startswith("E06") and y == 2019) and not (la == "E10000021" and y == 2020)
        ],
        "population",
        "population_estimate",
    )
    pop = pd.concat(
        [pop, long([("E08000002", 2019, "x")], "population", "population_estimate")]
    ).drop_duplicates(["la", "year"], keep="last")
    lsoas = pd.DataFrame(
        {
            "utla19": ["E08000001", "E08000001", "E08000002", "E10000021"],
            "children": [100.0, 300.0, 200.0, 400.0],
            "income": [0.1, 0.3, 0.2, 0.1],
        }
    )
    return counts, pop, lsoas


def test_deprivation_is_child_weighted_and_centred():
    _, _, lsoas = _fixture()
    dep, x_bar = la_deprivation(lsoas)
    assert x_bar == pytest.approx((10 + 90 + 40 + 40) / 1000)
    d = dep.set_index("la")
    assert d.loc["E08000001", "income"] == pytest.approx(0.25)
    assert d.loc["E08000001", "m"] == pytest.approx((0.25 - 0.18) * 10)


def test_assemble_panel_excludes_and_counts():
    counts, pop, lsoas = _fixture()
    dep, x_bar = la_deprivation(lsoas)
    panel, report = assemble_panel(counts, pop, dep, "referrals", 2020, None, (), x_bar)
    p = panel.set_index(["la", "year"])
    assert report["cells"] == len(panel) == 6
    assert report["las"] == 3
    assert p.loc[("E08000001", 2021), "reason"] == "suppressed"
    assert p.loc[("E08000002", 2020), "reason"] == "no_exposure"  # mid-2019 is x
    assert p.loc[("E10000021", 2021), "count"] == 310
    # exposure: the mid-(t-1) estimate, successors summed
    assert p.loc[("E10000021", 2021), "exposure"] == 1003 + 1004
    assert p.loc[("E10000021", 2020), "exposure"] == 1002
    assert report["excluded"] == {"suppressed": 1, "no_exposure": 1}
    assert report["observed"] == 4 == int(panel["observed"].sum())
    assert {c["reason"] for c in report["excluded_cells"]} == {"suppressed", "no_exposure"}


def synthetic_panel(n_la=40, years=range(2016, 2021), b=0.3, seed=3):
    rng = np.random.default_rng(seed)
    m = rng.normal(0, 0.6, n_la)
    m -= m.mean()
    u = rng.normal(0, 0.2, n_la)
    rows = []
    for i in range(n_la):
        for k, y in enumerate(years):
            exposure = float(rng.integers(20_000, 80_000))
            mu = exposure * np.exp(-3.0 + 0.05 * k + b * m[i] + u[i])
            rows.append(
                {
                    "la": f"E08{i:06d}",
                    "la_name": f"LA {i}",
                    "year": y,
                    "count": float(rng.negative_binomial(30, 30 / (30 + mu))),
                    "exposure": exposure,
                    "income": 0.15 + m[i] / 10,
                    "m": m[i],
                    "observed": True,
                    "reason": "",
                }
            )
    panel = pd.DataFrame(rows)
    panel.loc[3, ["observed", "reason"]] = False, "suppressed"
    panel.loc[3, "count"] = np.nan
    return panel


@pytest.mark.parametrize(
    ("change", "effects", "family"),
    [
        ("walk", "centred", "negbin"),
        ("linear", "noncentred", "poisson"),
        ("none", "centred", "negbin"),
    ],
)
def test_model_structure(change, effects, family):
    panel = synthetic_panel(n_la=5, years=range(2019, 2022))
    spec = PanelSpec(gradient_change=change, la_effects=effects, family=family)
    model = build_panel_model(panel, spec)
    names = {v.name for v in model.free_RVs}
    assert {"a", "b", "la_sd", "year_effect"} <= names
    assert ("alpha" if effects == "centred" else "la_z") in names
    assert ("inv_sqrt_phi" in names) == (family == "negbin")
    assert {"walk": "d_sd", "linear": "b_trend", "none": "b"}[change] in names
    assert model.named_vars_to_dims["gradient"] == ("year",)
    assert model.named_vars_to_dims["la_effect"] == ("la",)
    assert len(model.coords["obs"]) == int(panel["observed"].sum())  # excluded cell left out
    assert np.isfinite(model.compile_logp()(model.initial_point()))


def test_spec_files_and_refusals():
    for path in sorted(MODELS.glob("la_panel_*.toml")):
        spec = load_panel_spec(path)
        assert path.stem == spec.name
        assert spec.measure in path.stem
    with pytest.raises(ValueError, match="measure"):
        PanelSpec(measure="adoptions")
    with pytest.raises(ValueError, match="unknown key"):
        PanelSpec.from_dict({"measure": "cin", "gradient": "walk"})
    args = parser().parse_args(["panel", "shared", "--measure", "cin", "--out", "o"])
    assert args.command == "panel"
    assert args.measure == "cin"


def test_tiny_fit_recovers_between_la_gradient(tmp_path):
    panel = synthetic_panel()
    spec = PanelSpec().replace(draws=300, tune=300, chains=2, seed=5)
    tree = fit_panel(panel, spec, {"x_bar": 0.15})
    diag = diagnose_panel(tree)
    assert diag["verdict"] != "FAIL", diag["reasons"]
    g = gradient_by_year(tree)
    assert ((g["lo95"] < np.exp(0.3)) & (np.exp(0.3) < g["hi95"])).all(), g
    assert tree["observed_data"]["y"].size == len(panel) - 1
    assert tree.attrs["spec_hash"] == spec.hash
    written = write_panel(tree, panel, tmp_path)
    assert {"summary.json", "gradient_by_year.png", "la_scatter.png"} <= set(written["paths"])


@needs_shared
def test_real_panel_builds():
    from socialgradient.panel.data import build_panel

    panel, report = build_panel(SHARED, "referrals")
    assert report["years"] == [2013, 2025]
    assert report["las"] == 150
    assert report["lsoas"] == 32844
    assert {"E10000021", "E10000006", "E06000058+E06000059"} <= set(panel["la"])
    assert report["observed"] + sum(report["excluded"].values()) == len(panel) == 150 * 13
    assert report["excluded"]["no_exposure"] == 7  # BCP + Dorset before mid-2019
    assert panel["m"].notna().all()
    assert panel.loc[panel["observed"], "exposure"].gt(0).all()


@needs_shared
@pytest.mark.slow
def test_real_panel_fit_passes():
    from socialgradient.panel.data import build_panel

    panel, report = build_panel(SHARED, "referrals")
    tree = fit_panel(panel, load_panel_spec(MODELS / "la_panel_referrals.toml"), report)
    diag = diagnose_panel(tree)
    assert diag["verdict"] == "PASS", diag
    g = gradient_by_year(tree)
    assert (g["lo95"] > 1).all()  # a positive between-LA gradient every year


# -- the panel's output set (a fake fit: prior draws stand in for the sampler) -----------------


def fake_panel_fit(monkeypatch, panel, seed=1):
    """:func:`fit_panel` with the sampler replaced by prior draws (2 chains x 40)."""
    import pymc as pm
    import xarray as xr

    from socialgradient.panel import model as panel_module

    def prior_sample(model, s, progressbar=False, **nuts):
        with model:
            prior = pm.sample_prior_predictive(draws=80, random_seed=s.seed)
        ds = prior["prior"]
        ds = (ds.to_dataset() if hasattr(ds, "to_dataset") else ds).isel(chain=0, drop=True)
        halves = [
            ds.isel(draw=slice(0, 40)),
            ds.isel(draw=slice(40, 80)).assign_coords(draw=ds["draw"].values[:40]),
        ]
        post = xr.concat(halves, dim="chain").assign_coords(chain=[0, 1])
        rng = np.random.default_rng(s.seed)
        stats = xr.Dataset(
            {
                "diverging": (("chain", "draw"), np.zeros((2, 40), bool)),
                "energy": (("chain", "draw"), rng.normal(size=(2, 40))),
            },
            coords={"chain": [0, 1], "draw": post["draw"].values},
        )
        return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats}), 0.0, 0.0

    monkeypatch.setattr(panel_module, "sample", prior_sample)
    return fit_panel(panel, PanelSpec().replace(seed=seed), {"x_bar": 0.15})


def test_write_panel_is_a_verified_set(tmp_path, monkeypatch):
    import json

    from sets import assert_release_clean
    from socialgradient.util import outputs

    panel = synthetic_panel(n_la=12, years=range(2018, 2021))
    tree = fake_panel_fit(monkeypatch, panel)
    out = tmp_path / "out"
    written = write_panel(tree, panel, out)
    manifest = outputs.verify(out)
    assert manifest["command"] == "panel"
    assert manifest["spec_hash"] == tree.attrs["spec_hash"]
    release = {f.removeprefix("release/") for f in manifest["files"] if f.startswith("release/")}
    assert release == {
        "panel.csv",
        "la_effects.csv",
        "gradient_by_year.csv",
        "summary.json",
        "panel_report.json",
        "gradient_by_year.png",
        "la_scatter.png",
        "disclosure_log.jsonl",
    }
    assert {p.name for p in written["paths"].values()} == release | {"posterior.nc"}
    assert all(p.exists() for p in written["paths"].values())
    assert "NOT FOR RELEASE" in (out / "internal" / "README.txt").read_text()
    assert (out / "internal" / "posterior.nc").is_file()
    assert_release_clean(out)  # LA-level only: no LSOA code
    log = [
        json.loads(x) for x in (out / "release" / "disclosure_log.jsonl").read_text().splitlines()
    ]
    assert {e["file"] for e in log} == {
        "panel.csv",
        "la_effects.csv",
        "gradient_by_year.png",
        "la_scatter.png",
    }
    assert all(e["decision"] == "written" and e["sha256"] for e in log)
    assert not [e for e in log if ".tmp-" in e.get("path", "")]


def test_killing_write_panel_keeps_a_whole_set(tmp_path, monkeypatch):
    import random

    import xarray as xr

    from sets import kill_while_writing
    from socialgradient.sampling.fit import save

    panel = synthetic_panel(n_la=12, years=range(2018, 2021))
    panel.to_parquet(tmp_path / "panel.parquet")
    for seed in (1, 2):  # two fits: a mixed set of them would not verify
        save(fake_panel_fit(monkeypatch, panel, seed), tmp_path / f"fit{seed}.nc")
    script = (
        "import sys, pandas as pd, xarray as xr; from socialgradient.panel import "
        "write_panel; write_panel(xr.open_datatree(sys.argv[1], engine='h5netcdf')"
        ".load(), pd.read_parquet(sys.argv[2]), sys.argv[3])"
    )
    out = tmp_path / "out"
    write_panel(xr.open_datatree(tmp_path / "fit1.nc", engine="h5netcdf").load(), panel, out)
    rng = random.Random(4)
    for i in range(4):
        kill_while_writing(
            [
                "-c",
                script,
                str(tmp_path / f"fit{2 - i % 2}.nc"),
                str(tmp_path / "panel.parquet"),
                str(out),
            ],
            out,
            rng,
            window=1.5,
        )
