"""`socialgradient suite`: every national spec fitted, resumable, one summary table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from socialgradient import cli, suite
from socialgradient.data.synthetic.england import simulate

MODELS = Path(__file__).resolve().parents[1] / "models"
TINY = "\n[sampling]\ndraws = 40\ntune = 40\nchains = 1\nseed = 3\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    t = simulate(seed=6, scale=0.05).table
    t = t[t["la"].isin(t["la"].unique()[:10])].reset_index(drop=True)
    path = tmp_path_factory.mktemp("suite") / "table.parquet"
    t.to_parquet(path)
    return path


def write_models(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for outcome in ("referrals", "cp_plans"):
        (folder / f"national_{outcome}.toml").write_text(
            f'name = "national_{outcome}"\noutcome = "{outcome}"\nfamily = "poisson"\n' + TINY)
    shutil.copy(MODELS / "la_panel_referrals.toml", folder)
    return folder


def test_repository_specs_are_read():
    specs = suite.national_specs(MODELS)
    fitted = [(path.stem, s.outcome) for path, s, _ in specs if s is not None]
    # by file name; a joint spec's outcome is its first threshold, a stacked one's "count"
    assert fitted == [
        ("cp_categories", "count"), ("durations_cin_plan", "ends"),
        ("durations_cp_plan", "ends"), ("joint_thresholds", "referrals"),
        ("national_assessments", "assessments"), ("national_cin_plans", "cin_plans"),
        ("national_cp_plans", "cp_plans"), ("national_looked_after", "looked_after"),
        ("national_referrals", "referrals"), ("national_referrals_places", "referrals"),
        ("needs_factors", "count"), ("repeat_cp_plans", "repeat_cp_plans"),
        ("rereferrals", "rereferrals"), ("rurality", "referrals"),
        ("strata_age_band", "referrals"), ("strata_ethnicity_cp_plans", "cp_plans"),
        ("strata_gender", "referrals")]
    assert all(why.startswith("an LA panel spec") for _, s, why in specs if s is None)
    # every spec's file name is its name, so OUT/<name>/ is found from the file
    assert all(path.stem == s.name for path, s, _ in specs if s is not None)


def test_suite_fits_skips_panels_and_resumes(data, tmp_path):
    models = write_models(tmp_path / "models")
    out = tmp_path / "out"
    args = ["suite", "--models", str(models), "--data", str(data), "--out", str(out),
            "--no-progress"]
    assert cli.main(args) in (0, 1)  # 40 draws may not converge; the suite still completes
    table = pd.read_csv(out / "suite.csv")
    assert list(table["spec"]) == ["la_panel_referrals", "national_cp_plans",
                                   "national_referrals"]
    assert table["status"].tolist()[0].startswith("skipped: an LA panel spec")
    assert table["status"].tolist()[1:] == ["fitted", "fitted"]
    assert table.loc[1:, "gradient_mean_la"].gt(1).all()
    assert (table["gradient_mean_la_lo95"] <= table["gradient_mean_la"]).iloc[1:].all()
    first = (out / "national_referrals" / "release" / "summary.json").stat().st_mtime_ns

    # a second run fits nothing; a changed spec is refitted
    cli.main(args)
    assert pd.read_csv(out / "suite.csv")["status"].tolist()[1:] == ["up to date"] * 2
    assert (out / "national_referrals" / "release" / "summary.json").stat().st_mtime_ns == first
    spec = models / "national_cp_plans.toml"
    spec.write_text(spec.read_text().replace("seed = 3", "seed = 4"))
    cli.main(args)
    assert pd.read_csv(out / "suite.csv")["status"].tolist()[1:] == ["fitted", "up to date"]
    summary = json.loads((out / "national_cp_plans" / "release" / "summary.json").read_text())
    assert summary["model"]["spec"]["sampling"]["seed"] == 4


def test_suite_refuses_a_table_without_an_outcome(data, tmp_path, capsys):
    models = write_models(tmp_path / "models")
    (models / "national_bad.toml").write_text('outcome = "no_such_column"\n')
    args = ["suite", "--models", str(models), "--data", str(data), "--out", str(tmp_path / "o")]
    assert cli.main(args) == 2
    assert "no_such_column" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_suite_builds_record_tables_once_and_writes_findings(data, tmp_path):
    """A spec with [records] is fitted to the records aggregate the suite builds (cached
    under _tables/), and findings.csv/md hold its findings with the records' truth."""
    models = tmp_path / "models"
    models.mkdir()
    text = (MODELS / "strata_gender.toml").read_text()
    text = text.replace("scale = 0.2", "scale = 0.05").split("[sampling]")[0]
    (models / "strata_gender.toml").write_text(text + TINY)
    out = tmp_path / "out"
    args = ["suite", "--models", str(models), "--data", str(data), "--out", str(out),
            "--no-progress"]
    assert cli.main(args) in (0, 1)
    (cache,) = (out / "_tables").iterdir()
    report = json.loads((cache / "report.json").read_text())
    assert report["records"]["scale"] == 0.05
    assert report["rows"] > 0
    found = pd.read_csv(out / "findings.csv")
    assert found["spec"].tolist() == ["strata_gender"]
    row = found.iloc[0]
    assert row["quantity"] == "stratum_contrast.M/F"
    assert row["truth"] == 1.0
    assert row["lo95"] <= row["median"] <= row["hi95"]
    assert "No gender difference" in (out / "findings.md").read_text()
    assert (out / "figures" / "findings_children.png").stat().st_size > 0
    # resumed: the table is read from the cache and nothing is refitted
    mtime = (cache / "table.parquet").stat().st_mtime_ns
    cli.main(args)
    assert (cache / "table.parquet").stat().st_mtime_ns == mtime
    assert pd.read_csv(out / "suite.csv")["status"].tolist() == ["up to date"]


def test_suite_killed_midway_resumes_without_refitting(data, tmp_path):
    """SIGKILL the suite once its first spec's output set is committed (the second is being
    fitted): the rerun keeps the first and fits only the second."""
    import os
    import signal
    import subprocess
    import sys
    import time

    models = write_models(tmp_path / "models")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "socialgradient.cli", "suite", "--models", str(models),
           "--data", str(data), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    first = out / "national_cp_plans" / "MANIFEST.json"
    deadline = time.monotonic() + 600
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.exists(), "the first spec never finished"
    assert proc.poll() is None, "the suite finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "suite.csv").exists()
    done = first.stat().st_mtime_ns
    assert cli.main(["suite", "--models", str(models), "--data", str(data), "--out",
                     str(out), "--no-progress"]) in (0, 1)
    status = pd.read_csv(out / "suite.csv").set_index("spec")["status"]
    assert status["national_cp_plans"] == "up to date"
    assert status["national_referrals"] == "fitted"
    assert first.stat().st_mtime_ns == done
