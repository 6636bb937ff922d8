"""Safe to publish: what ``release/`` holds on tiny LAs, weaker rules, rounding, honest
verdicts and clear errors. Fake fits (no sampler), except where a command is run."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.optimize import linprog

from fakes import fake_table, fake_tree
from sets import assert_release_clean, kill_while_writing
from socialgradient import cli
from socialgradient.data import schema
from socialgradient.model.data import NeighbourhoodData
from socialgradient.release import report
from socialgradient.results import checks
from socialgradient.results.checks import deprivation_decile
from socialgradient.sampling import fit
from socialgradient.sampling.fit import assemble
from socialgradient.spec import Spec
from socialgradient.util import outputs


def fit_like(
    table: pd.DataFrame, chains: int = 2, draws: int = 40, seed: int = 0, outcome: str = "referrals"
) -> xr.DataTree:
    """A fitted-looking tree for ``table`` (posterior from :func:`fake_tree`'s recipe)."""
    data = NeighbourhoodData.from_table(table, outcome)
    n_la = len(data.la)
    base = fake_tree(n_la=n_la, n_lsoa_per_la=3, chains=chains, draws=draws, seed=seed)
    post = base["posterior"].to_dataset().assign_coords(la=data.la)
    raw = xr.DataTree.from_dict(
        {"posterior": post, "sample_stats": base["sample_stats"].to_dataset()}
    )
    return assemble(raw, data, Spec(outcome))


def tiny_table(seed: int = 0, n_la: int = 5, per_la: int = 6) -> pd.DataFrame:
    """LAs of a few LSOAs with counts 0-9."""
    t = fake_table(n_la, per_la, seed)
    rng = np.random.default_rng(seed)
    t["referrals"] = rng.integers(0, 10, len(t))
    t.loc[rng.choice(len(t), 3, replace=False), "referrals"] = [1, 2, 0]
    return t


def published_constraints(out: Path, table: pd.DataFrame, exact: bool = False):
    """What a reader of release/ knows, as linear constraints on the LSOA counts: each
    visible total within the perturbation's bound (``MAX_NOISE``, in the log) and its
    rounding interval; with ``exact``, as if the totals were published unperturbed (the
    true values), the model the gate's check uses. Rows, lower and upper bounds, and the
    hidden totals (name, row, true value)."""
    las = pd.read_csv(out / "release" / "la_gradients.csv")
    ppc = json.loads((out / "release" / "ppc.json").read_text())
    log = [
        json.loads(x) for x in (out / "release" / "disclosure_log.jsonl").read_text().splitlines()
    ]
    rule = log[0]["rule"]
    noise = 0 if exact or not rule["perturb"] else log[0]["perturbation"]["max_noise"]
    half = (rule["round_to"] or 0) / 2
    decile = deprivation_decile(table["income"].to_numpy())
    y = table["referrals"].to_numpy()
    n = len(table)
    rows, lo, hi, hidden = [], [], [], []

    def add(name, row, shown):
        true = y[row > 0].sum()
        if shown is None or pd.isna(shown):
            hidden.append((name, row, true))
            return
        v = (
            np.floor(true / rule["round_to"] + 0.5) * rule["round_to"]
            if exact and half
            else (true if exact else shown)
        )
        rows.append(row)
        lo.append(max(v - half - noise, 0))
        hi.append(v + half + noise)

    for la, cases in zip(las["la"], las["cases"], strict=True):
        add(f"la {la}", (table["la"] == la).to_numpy(float), cases)
    for rec in ppc["decile"]:
        add(f"decile {rec['decile']}", (decile == rec["decile"]).astype(float), rec["observed"])
    bands = out / "release" / "la_bands.csv"
    if bands.is_file():  # LA x deprivation quintile (pairs of deciles), from issue 30 on
        band = (decile + 1) // 2
        for r in pd.read_csv(bands).itertuples():
            row = ((table["la"] == r.la).to_numpy() & (band == r.band)).astype(float)
            add(f"la {r.la} band {r.band}", row, r.cases)
    total = next(r for r in ppc["statistic"] if r["statistic"] == "total")
    add("total", np.ones(n), total["observed"])
    return np.array(rows), np.array(lo, float), np.array(hi, float), hidden


def pinned(rows, lo, hi, target) -> tuple[float, float]:
    """Smallest and largest value of ``target . y`` over y >= 0 within the bounds."""
    a_ub, b_ub = np.vstack([rows, -rows]), np.concatenate([hi, -lo])
    low = linprog(target, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
    high = linprog(-target, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
    assert low.status == 0
    assert high.status in (0, 3)  # 3: unbounded above
    return low.fun, (np.inf if high.status == 3 else -high.fun)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_release_on_tiny_las_is_safe(tmp_path, seed):
    table = tiny_table(seed)
    tree = fit_like(table, seed=seed)
    out = tmp_path / "out"
    report.write(tree, out)
    files = [p for p in (out / "release").iterdir()]
    assert {p.name for p in files} >= {
        "summary.json",
        "la_gradients.csv",
        "la_bands.csv",
        "ppc.json",
        "disclosure_log.jsonl",
        "ppc.png",
        "gradient_curve.png",
    }
    # no LSOA code anywhere in release/ (text or figure bytes)
    assert_release_clean(out, table["lsoa"], ["cases"])
    # every published count is 0 or at least the threshold; no maximum; rates only of those
    las = pd.read_csv(out / "release" / "la_gradients.csv")
    visible = las["cases"].dropna()
    assert ((visible == 0) | (visible >= 10)).all()
    assert las["rate_per_10k"].isna().tolist() == las["cases"].isna().tolist()
    ppc = json.loads((out / "release" / "ppc.json").read_text())
    shown = [r["observed"] for r in ppc["decile"]]
    shown += [r["observed"] for r in ppc["statistic"] if r["statistic"] == "total"]
    assert all(v is None or v == 0 or v >= 10 for v in shown)
    assert any(v is None for v in shown)  # counts 0-9: something had to be hidden
    stats = {r["statistic"]: r for r in ppc["statistic"]}
    for name in ("max", "dispersion", "zero_share"):
        assert stats[name]["observed"] is None
    assert stats["max"]["p_value"] is None
    for r in ppc["decile"]:
        if r["observed"] is None:
            assert r["p_value"] is None
            assert r["p_two_sided"] is None
    # the published totals (with non-negativity) leave every hidden total a range at least
    # the protection level (5) wide, even read as exact (as if unperturbed)
    for exact in (False, True):
        rows, lo_b, hi_b, hidden = published_constraints(out, table, exact)
        assert hidden
        for name, target, true in hidden:
            lo, hi = pinned(rows, lo_b, hi_b, target)
            assert lo - 1e-6 <= true <= hi + 1e-6
            assert hi - lo >= 5 - 1e-6, f"{name} narrowed to [{lo}, {hi}]"
    # the log says what was hidden, not which hidden cell is the small one
    log = (out / "release" / "disclosure_log.jsonl").read_text()
    entries = [json.loads(x) for x in log.splitlines()]
    said = json.dumps([[e.get("actions"), e.get("note")] for e in entries])
    assert not re.search(r"primary|secondary|below|was pinned", said)
    assert not {"primary", "secondary"} & {k for e in entries for k in e}
    assert sum(e.get("suppressed", 0) for e in entries) == len(hidden)
    # figures drawn from gated numbers only: the gradient curve's points are gated rates
    from socialgradient.results import plots

    parts, decile = report.gate(tree, report.disclosure.Rule())
    x, rate = report._gated_decile_rates(tree, parts, decile)
    ax = plots.gradient_curve(tree, observed=(x, rate)).axes[0]
    points = ax.lines[1].get_ydata()
    assert len(points) == int((np.isfinite(rate) & (rate > 0)).sum())
    # internal/ holds the LSOA-level data and says so
    assert "NOT FOR RELEASE" in (out / "internal" / "README.txt").read_text()
    back = fit.load(out / "internal" / "posterior.nc")
    assert back["observed_data"]["referrals"].values.tolist() == table["referrals"].tolist()


def test_summary_of_one_chain_is_never_pass_and_strict_json(tmp_path):
    tree = fit_like(fake_table(4, 8), chains=1, draws=200)
    d = checks.diagnose(tree)
    assert d["verdict"] != "PASS"
    assert any("cannot be computed" in r for r in d["reasons"])
    report.write(tree, tmp_path / "o")
    text = (tmp_path / "o" / "release" / "summary.json").read_text()

    def refuse(name):
        raise AssertionError(f"{name} in JSON")

    s = json.loads(text, parse_constant=refuse)
    assert s["diagnostics"]["rhat_max"] is None
    assert "n/a" in report.headline(s)


def test_implausible_inputs_are_warned(tmp_path):
    t = fake_table(4, 8)
    t["children"] = 0.5
    t["referrals"] = np.random.default_rng(1).integers(0, 20, len(t))
    d = checks.diagnose(fit_like(t, chains=4, draws=300))
    assert d["verdict"] != "PASS"
    assert any("more referrals than children" in r for r in d["reasons"])
    assert any("children below 1" in r for r in d["reasons"])


def test_la_without_spread_is_flagged_and_not_ranked():
    t = fake_table(5, 6)
    flat = t["la"] == t["la"].iloc[0]
    t.loc[flat, "income"] = 0.2
    las = report.la_gradients(fit_like(t))
    row = las.set_index("la").loc[t["la"].iloc[0]]
    assert "no within-LA spread" in row["note"]
    assert np.isnan(row["rank_median"])
    assert np.isnan(row["rank_hi95"])
    others = las[las["la"] != t["la"].iloc[0]]
    assert others["rank_median"].notna().all()
    assert others["rank_hi95"].max() <= 4  # ranked among the four others


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    table = tiny_table(5)
    tree = fit_like(table)
    report.write(tree, root / "fit")
    return root / "fit", table


def test_low_threshold_needs_a_logged_override(saved, tmp_path, capsys):
    src, _ = saved
    assert cli.main(["report", str(src), "--out", str(tmp_path / "a"), "--threshold", "1"]) == 2
    assert "--override" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    reason = "methods paper, counts approved by the data owner"
    assert (
        cli.main(
            [
                "report",
                str(src),
                "--out",
                str(tmp_path / "a"),
                "--threshold",
                "1",
                "--override",
                reason,
            ]
        )
        == 0
    )
    log = [
        json.loads(x)
        for x in (tmp_path / "a" / "release" / "disclosure_log.jsonl").read_text().splitlines()
    ]
    assert log[0]["override"] == reason
    assert log[0]["rule"]["threshold"] == 1


def test_report_round_to_works(saved, tmp_path):
    src, _ = saved
    assert cli.main(["report", str(src), "--out", str(tmp_path / "r"), "--round-to", "5"]) == 0
    las = pd.read_csv(tmp_path / "r" / "release" / "la_gradients.csv")
    visible = las["cases"].notna()
    assert (las.loc[visible, "cases"] % 5 == 0).all()
    ratio = (
        las.loc[visible & (las["cases"] > 0), "rate_per_10k"]
        / las.loc[visible & (las["cases"] > 0), "cases"]
    )
    # rates to 3 significant digits: within half a unit of the third digit (5e-3)
    np.testing.assert_allclose(ratio, 1e4 / las.loc[ratio.index, "children"], rtol=6e-3)
    ppc = json.loads((tmp_path / "r" / "release" / "ppc.json").read_text())
    assert all(r["observed"] is None or r["observed"] % 5 == 0 for r in ppc["decile"])
    outputs.verify(tmp_path / "r")


def test_report_errors_are_messages(saved, tmp_path, capsys):
    src, _ = saved
    damaged = tmp_path / "damaged.nc"
    damaged.write_bytes((src / "internal" / "posterior.nc").read_bytes()[:5000])
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"x": ("t", [1.0, 2.0])}).to_netcdf(foreign, engine="h5netcdf")
    for path, words in ((damaged, "not a readable"), (foreign, "not a socialgradient fit")):
        assert cli.main(["report", str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert str(path) in err
        assert words in err
        assert "Traceback" not in err
    # a set whose posterior was altered: refused, naming the folder and the file
    altered = tmp_path / "altered"
    cli.main(["report", str(src), "--out", str(altered)])
    with open(altered / "internal" / "posterior.nc", "r+b") as f:
        f.seek(3000)
        f.write(b"\0\0\0\0")
    assert cli.main(["report", str(altered), "--out", str(tmp_path / "o")]) == 2
    assert "internal/posterior.nc" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert cli.main(["report", str(src), "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_fit_checks_out_before_sampling_and_exits_1_on_fail(tmp_path, monkeypatch, capsys):
    from socialgradient import api

    table = tiny_table(2)
    data = tmp_path / "t.csv"
    table.to_csv(data, index=False)
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setattr(api, "fit", lambda *a, **k: pytest.fail("sampled before --out check"))
    assert cli.main(["fit", str(data), "--outcome", "referrals", "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err

    def failing(table, spec, progressbar=True, pointwise=True):
        tree = fit_like(table)
        post = tree["posterior"].to_dataset()
        post["a"] = post["a"] + xr.DataArray([0.0, 1.0], dims="chain")  # chains disagree
        tree["posterior"] = post
        return tree

    monkeypatch.setattr(api, "fit", failing)
    args = ["fit", str(data), "--outcome", "referrals", "--out", str(tmp_path / "o")]
    assert cli.main(args) == 1
    assert "FAIL" in capsys.readouterr().err
    outputs.verify(tmp_path / "o")  # the outputs are still written, whole
    assert cli.main([*args, "--allow-fail"]) == 0


def test_data_build_outcomes_go_through_the_gate(tmp_path, capsys):
    from test_sources import AREAS, make_shared

    shared = make_shared(tmp_path / "shared")
    outcome = pd.DataFrame(
        {"lsoa": [a[0] for a in AREAS], "referrals": [(3 * i) % 10 for i in range(len(AREAS))]}
    )
    outcome.to_csv(tmp_path / "y.csv", index=False)
    out = tmp_path / "o"
    args = ["data", "build", str(shared), "--out", str(out), "--outcomes", str(tmp_path / "y.csv")]
    assert cli.main(args) == 0
    manifest = outputs.verify(out)
    assert manifest["table"] == "internal/neighbourhoods.parquet"
    # internal/: the unprotected LSOA table, the model input (fit reads the folder)
    assert schema.read_table(out)["referrals"].tolist() == outcome["referrals"].tolist()
    assert "NOT FOR RELEASE" in (out / "internal" / "README.txt").read_text()
    # release/: counts per LA through the gate, no LSOA code
    assert_release_clean(out, outcome["lsoa"], ["referrals"])
    las = pd.read_csv(out / "release" / "counts_by_la.csv")
    assert las["referrals"].isna().any()
    assert las["referrals"].sum() < outcome["referrals"].sum()
    log = [
        json.loads(x) for x in (out / "release" / "disclosure_log.jsonl").read_text().splitlines()
    ]
    assert [e["level"] for e in log] == ["la"]
    assert log[0]["suppressed"] > 0
    assert log[0]["path"] == "release/counts_by_la.csv"  # relative: no absolute path in a set
    reason = "model input, stays in the secure environment"
    assert cli.main([*args, "--override", reason]) == 0
    log = [
        json.loads(x) for x in (out / "internal" / "disclosure_log.jsonl").read_text().splitlines()
    ]
    assert log[-1]["override"] == reason
    assert not json.loads((out / "release" / "disclosure_log.jsonl").read_text())["override"]
    # the old form, --out FILE.csv, is refused with what to write instead
    assert cli.main([*args[:3], "--out", str(tmp_path / "n.csv")]) == 2
    assert "--format csv" in capsys.readouterr().err
    assert not (tmp_path / "n.csv").exists()


def test_killing_data_build_keeps_a_whole_set(tmp_path):
    from test_sources import AREAS, make_shared

    shared = make_shared(tmp_path / "shared")
    outcome = pd.DataFrame(
        {"lsoa": [a[0] for a in AREAS], "referrals": [(7 * i) % 30 for i in range(len(AREAS))]}
    )
    outcome.to_csv(tmp_path / "y.csv", index=False)
    out = tmp_path / "o"
    assert cli.main(["data", "build", str(shared), "--out", str(out)]) == 0
    rng = random.Random(1)
    for i in range(4):  # with and without outcomes: a mixed set would not verify
        extra = ["--outcomes", str(tmp_path / "y.csv")] if i % 2 else []
        kill_while_writing(
            ["-m", "socialgradient.cli", "data", "build", str(shared), "--out", str(out), *extra],
            out,
            rng,
            window=0.3,
        )
        if (out / "MANIFEST.json").exists():
            assert_release_clean(out, outcome["lsoa"], ["referrals"])


def test_suite_refits_a_spec_whose_set_is_incomplete(tmp_path, monkeypatch):
    from dask.distributed import Client

    from socialgradient.study import suite

    table = fake_table(4, 8)
    models = tmp_path / "models"
    models.mkdir()
    (models / "national_referrals.toml").write_text(
        'name = "national_referrals"\noutcome = "referrals"\nfamily = "poisson"\n'
    )
    calls = []

    def fake_fit(data, spec, progressbar=False):
        calls.append(spec.name)
        tree = fit_like(table)
        tree.attrs.update(spec=spec.to_json(), spec_hash=spec.hash, data_hash=fit.data_hash(data))
        return tree

    monkeypatch.setattr(fit, "fit", fake_fit)
    out = tmp_path / "out"
    # a cluster of threads in this process, so its tasks see the fake fit
    with Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"
    ) as client:
        _refits_incomplete_sets(suite, models, table, out, client)
    assert len(calls) == 3  # the refusals came before any fit


def _refits_incomplete_sets(suite, models, table, out, client):
    def run():
        return suite.run(models, table, out, scheduler=client)

    assert [i.status for i in run()] == ["fitted"]
    assert [i.status for i in run()] == ["up to date"]
    spec_out = out / "national_referrals"
    # no manifest: release/ and internal/ may be anyone's; refused before any fit, kept
    (spec_out / "MANIFEST.json").unlink()
    with pytest.raises(outputs.OutputSetError, match="release/, internal/ with no MANIFEST"):
        run()
    assert (spec_out / "release" / "summary.json").exists()
    for part in ("release", "internal"):  # the user clears them: refitted
        shutil.rmtree(spec_out / part)
    assert [i.status for i in run()] == ["fitted"]
    # a file of ours altered: still our set (every file listed), refitted
    (spec_out / "release" / "la_gradients.csv").write_text("la\n")
    assert [i.status for i in run()] == ["fitted"]
    outputs.verify(spec_out)
    # a writer killed before its commit: its .tmp-X (with its token) is deleted, the set kept
    with outputs.Writer(spec_out) as w:
        (w.release / "x.txt").write_text("x")
        shutil.copytree(w.release.parent, spec_out / "tmp-copy")
        key = w.release.parent.name.removeprefix(".tmp-")
        shutil.copy(spec_out / f"{outputs.PENDING}{key}", spec_out / "pending-copy")
    (spec_out / "tmp-copy").rename(spec_out / f".tmp-{key}")
    (spec_out / "pending-copy").rename(spec_out / f"{outputs.PENDING}{key}")
    assert [i.status for i in run()] == ["up to date"]
    assert not list(spec_out.glob(".tmp-*"))
    assert not list(spec_out.glob(outputs.PENDING + "*"))
    # a .tmp-* folder our writer did not leave: never deleted; the suite refuses the folder
    (spec_out / ".tmp-dead").mkdir()
    (spec_out / ".tmp-dead" / "mine.txt").write_text("mine")
    with pytest.raises(outputs.OutputSetError, match=r"\.tmp-dead"):
        run()
    assert (spec_out / ".tmp-dead" / "mine.txt").read_text() == "mine"
    outputs.verify(spec_out)


# -- killing the real `report` command ------------------------------------------------------


def kill_report(src: Path, dst: Path, rng: random.Random, window: float) -> None:
    """Start `socialgradient report SRC --out DST`, SIGKILL it at a random moment of its
    writing (or just after), then check what a reader and suite would see."""
    kill_while_writing(
        ["-m", "socialgradient.cli", "report", str(src), "--out", str(dst)], dst, rng, window
    )
    json.loads((dst / "release" / "summary.json").read_text())
    fit.load(dst / "internal" / "posterior.nc")


def test_killing_report_keeps_a_whole_set(saved, tmp_path):
    src, _ = saved
    dst = tmp_path / "dst"
    assert cli.main(["report", str(src), "--out", str(dst)]) == 0
    rng = random.Random(3)
    for _ in range(2):
        kill_report(src, dst, rng, window=4.0)


@pytest.mark.slow
def test_killing_report_fifty_times(saved, tmp_path):
    src, _ = saved
    dst = tmp_path / "dst"
    assert cli.main(["report", str(src), "--out", str(dst)]) == 0
    rng = random.Random(5)
    for _ in range(50):
        kill_report(src, dst, rng, window=4.0)


def test_the_ledger_is_held_for_the_check_and_the_record_only(tmp_path, monkeypatch):
    """report.write records the release under the ledger's lock, then gives the lock back
    before writing figures and the posterior, so that other releases (a suite's other fits)
    do not wait on them; a destination refused before the check records nothing."""
    from filelock import FileLock

    from socialgradient.release import ledger as ledgers
    from socialgradient.results import plots

    led = ledgers.Ledger(tmp_path / "ledger")
    tree = fit_like(tiny_table(3), seed=3)
    seen = {}
    real = plots.save_all

    def save_all(*args, **kwargs):
        lock = FileLock(led._folder() / ".lock")
        lock.acquire(timeout=0)  # free: no Timeout
        lock.release()
        seen["recorded"] = len(led.files())
        return real(*args, **kwargs)

    monkeypatch.setattr(plots, "save_all", save_all)
    (tmp_path / "a file").write_text("not a folder")
    with pytest.raises(outputs.OutputSetError):
        report.write(tree, tmp_path / "a file" / "out", ledger=led)
    assert led.files() == []
    report.write(tree, tmp_path / "out", ledger=led)
    assert seen == {"recorded": 1}
    assert len(led.files()) == 1
    assert outputs.verify(tmp_path / "out")["command"] == "write"
