"""`socialgradient suite`: every national spec fitted, resumable, one summary table."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from socialgradient import cli
from socialgradient.data.synthetic.england import simulate
from socialgradient.study import suite
from socialgradient.util import outputs

MODELS = Path(__file__).resolve().parents[1] / "models"
# Tiny fits with PyMC's own NUTS: these tests are about the suite (resume, kills, tables), and
# PyMC starts from pytensor's compiled-C cache in seconds where nutpie's numba compilation takes
# ~20 s per model (measured: 2 specs, 45 s of CPU against 97 s).
TINY = '\n[sampling]\ndraws = 40\ntune = 40\nchains = 1\nseed = 3\nsampler = "pymc"\n'


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
            f'name = "national_{outcome}"\noutcome = "{outcome}"\nfamily = "poisson"\n' + TINY
        )
    shutil.copy(MODELS / "la_panel_referrals.toml", folder)
    return folder


def test_repository_specs_are_read():
    specs = suite.national_specs(MODELS)
    fitted = [(path.stem, s.outcome) for path, s, _ in specs if s is not None]
    # by file name; a joint spec's outcome is its first threshold, a stacked one's "count"
    assert fitted == [
        ("cp_categories", "count"),
        ("durations_cin_plan", "ends"),
        ("durations_cp_plan", "ends"),
        ("joint_thresholds", "referrals"),
        ("la_repeat_cp_plans", "referrals"),
        ("la_rereferrals", "referrals"),
        ("national_referrals", "referrals"),
        ("national_referrals_places", "referrals"),
        ("needs_factors", "count"),
        ("repeat_cp_plans", "repeat_cp_plans"),
        ("rereferrals", "rereferrals"),
        ("rurality", "referrals"),
        ("strata_age_band", "referrals"),
        ("strata_age_trend", "referrals"),
        ("strata_ethnicity_cp_plans", "cp_plans"),
        ("strata_gender", "referrals"),
    ]
    assert all(why.startswith("an LA panel spec") for _, s, why in specs if s is None)
    # every spec's file name is its name, so OUT/<name>/ is found from the file
    assert all(path.stem == s.name for path, s, _ in specs if s is not None)


def test_suite_fits_skips_panels_and_resumes(data, tmp_path):
    models = write_models(tmp_path / "models")
    out = tmp_path / "out"
    args = [
        "suite",
        "--models",
        str(models),
        "--data",
        str(data),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert cli.main(args) in (0, 1)  # 40 draws may not converge; the suite still completes
    table = pd.read_csv(out / "suite.csv")
    assert list(table["spec"]) == ["la_panel_referrals", "national_cp_plans", "national_referrals"]
    assert table["status"].tolist()[0].startswith("skipped: an LA panel spec")
    assert table["status"].tolist()[1:] == ["fitted", "fitted"]
    assert table.loc[1:, "gradient_mean_la"].gt(1).all()
    assert (table["gradient_mean_la_lo95"] <= table["gradient_mean_la"]).iloc[1:].all()
    # each fit's seconds: the task's wall covers its compilation (NaN for the PyMC sampler
    # of these tiny specs, which compiles while sampling) and sampling
    fitted = table.iloc[1:]
    assert (fitted["sampling_s"] > 0).all()
    assert (fitted["task_s"] >= fitted["compile_s"].fillna(0) + fitted["sampling_s"]).all()
    for name in ("national_cp_plans", "national_referrals"):  # written by the workers
        manifest = outputs.verify(out / name)
        assert manifest["command"] == "suite"
        summary = json.loads((out / name / "release" / "summary.json").read_text())
        assert {"model", "diagnostics", *suite.HEADLINE} <= set(summary)
    first = (out / "national_referrals" / "release" / "summary.json").stat().st_mtime_ns

    # a second run fits nothing; a changed spec is refitted
    cli.main(args)
    again = pd.read_csv(out / "suite.csv")
    assert again["status"].tolist()[1:] == ["up to date"] * 2
    assert "task_s" not in again  # nothing was fitted in this invocation
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
    args = [
        "suite",
        "--models",
        str(models),
        "--data",
        str(data),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert cli.main(args) in (0, 1)
    (cache,) = (out / "_tables").iterdir()
    report = json.loads((cache / "report.json").read_text())
    assert report["records"]["scale"] == 0.05
    assert report["rows"] > 0
    found = pd.read_csv(out / "findings.csv")
    assert found["spec"].tolist() == ["strata_gender", "strata_gender"]
    row = found.iloc[0]
    assert row["quantity"] == "stratum_contrast.M/F"
    assert row["truth"] == 1.0
    assert row["lo95"] <= row["median"] <= row["hi95"]
    # the claim "no gender difference" as the posterior mass in the ROPE, from the draws of
    # the spec's internal/posterior.nc
    claim = found.iloc[1]
    assert claim["quantity"] == "claims.equivalent.M/F"
    assert 0 <= claim["median"] <= 1
    assert pd.isna(claim["lo95"])
    assert claim["truth"] == 1.0  # the records' M/F gradient ratio is 1: inside [0.952, 1.05]
    assert "No gender difference" in (out / "findings.md").read_text()
    assert (out / "figures" / "findings_children.png").stat().st_size > 0
    # resumed: the table is read from the cache and nothing is refitted
    mtime = (cache / "table.parquet").stat().st_mtime_ns
    cli.main(args)
    assert (cache / "table.parquet").stat().st_mtime_ns == mtime
    assert pd.read_csv(out / "suite.csv")["status"].tolist() == ["up to date"]


@pytest.mark.slow  # 35 s; the worker-kill test and test_release cover resuming in the default tier
def test_suite_killed_midway_resumes_without_refitting(data, tmp_path):
    """SIGKILL the suite (and its local cluster, in its process group) once its first spec's
    output set is committed (the second is being fitted): the rerun keeps the first and fits
    only the second. One worker, so the fits run one after the other (equal costs: by name)."""
    models = write_models(tmp_path / "models")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "socialgradient.cli",
        "suite",
        "--models",
        str(models),
        "--data",
        str(data),
        "--out",
        str(out),
        "--no-progress",
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
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
    assert cli.main(
        ["suite", "--models", str(models), "--data", str(data), "--out", str(out), "--no-progress"]
    ) in (0, 1)
    status = pd.read_csv(out / "suite.csv").set_index("spec")["status"]
    assert status["national_cp_plans"] == "up to date"
    assert status["national_referrals"] == "fitted"
    assert first.stat().st_mtime_ns == done


@pytest.mark.slow  # 31 s: a separately started scheduler; the worker-kill test below uses it too
def test_suite_on_a_running_cluster(data, tmp_path, scheduler, monkeypatch):
    """suite.run(scheduler=ADDRESS) fits on a cluster it did not start, whose workers write
    the output sets into the (shared) folder; a relative --out is made absolute for them."""
    models = write_models(tmp_path / "models")
    (models / "la_panel_referrals.toml").unlink()
    table = pd.read_parquet(data)
    monkeypatch.chdir(tmp_path)
    items = suite.run(models, table, Path("out"), scheduler=scheduler)
    assert [(i.name, i.status) for i in items] == [
        ("national_cp_plans", "fitted"),
        ("national_referrals", "fitted"),
    ]
    for item in items:
        assert outputs.verify(tmp_path / "out" / item.name)["command"] == "suite"
        assert item.summary["model"]["outcome"] == item.name.removeprefix("national_")
    assert (tmp_path / "out" / "suite.csv").exists()


def test_suite_survives_a_worker_killed_mid_fit(data, tmp_path, scheduler):
    """SIGKILL the worker process fitting a spec (its output set not yet written): the
    scheduler runs the task again (the nanny restarts the worker), the suite completes with
    every output set whole, and no set is written twice."""
    import psutil
    from dask.distributed import Client

    models = write_models(tmp_path / "models")
    out = tmp_path / "out"
    killed, commits, started = {}, {}, {}
    stop = threading.Event()

    def cpu(pid):
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system

    def kill_one_mid_fit():
        # not the default client: a default one sets Dask's global scheduler and restores,
        # when closed, what it found; closed after suite.run's own (another thread), it left
        # "dask.distributed" set for every later test (test_fit's loads then failed)
        with Client(scheduler, timeout=60, set_as_default=False) as client:
            while not stop.is_set() and not killed:
                busy = {w: keys for w, keys in client.processing().items() if keys}
                if busy:
                    worker, keys = next(iter(busy.items()))
                    name = str(keys[0]).split("-")[1]
                    pid = client.run(os.getpid, workers=[worker])[worker]
                    # 3 s of CPU into the task it is compiling or sampling
                    if (
                        cpu(pid) - started.setdefault(pid, cpu(pid)) > 3
                        and not (out / name / "MANIFEST.json").exists()
                    ):
                        os.kill(pid, signal.SIGKILL)
                        killed[name] = pid
                time.sleep(0.5)
        while not stop.is_set():  # record when each output set is committed
            for name in ("national_cp_plans", "national_referrals"):
                manifest = out / name / "MANIFEST.json"
                if manifest.exists():
                    commits.setdefault(name, set()).add(manifest.stat().st_mtime_ns)
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_mid_fit)
    killer.start()
    try:
        items = suite.run(models, pd.read_parquet(data), out, scheduler=scheduler)
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was killed mid-fit"
    status = {i.name: i.status for i in items}
    assert status == {
        "la_panel_referrals": status["la_panel_referrals"],
        "national_cp_plans": "fitted",
        "national_referrals": "fitted",
    }
    for name in ("national_cp_plans", "national_referrals"):
        assert outputs.verify(out / name)["command"] == "suite"
        final = (out / name / "MANIFEST.json").stat().st_mtime_ns
        assert commits.get(name, {final}) == {final}, f"{name}: written twice"
    # a rerun fits nothing (and starts no cluster)
    rerun = suite.run(models, pd.read_parquet(data), out, scheduler="tcp://127.0.0.1:1")
    assert [i.status for i in rerun][1:] == ["up to date", "up to date"]
