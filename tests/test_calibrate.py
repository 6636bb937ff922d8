"""`socialgradient calibrate`: replicates on Dask, resumable, and the aggregation's statistics."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from socialgradient import cli
from socialgradient.data.synthetic import england
from socialgradient.study import calibrate

TINY = [
    "--scale",
    "0.05",
    "--replicates",
    "1",
    "--draws",
    "100",
    "--tune",
    "100",
    "--chains",
    "2",
    "--workers",
    "1",
]


# -- simulation with given parameters ------------------------------------------------------


def test_simulate_with_parameters_keeps_the_default_and_uses_the_given():
    base = england.simulate(seed=4, scale=0.05)
    same = england.simulate(seed=4, scale=0.05, parameters={})
    assert base.table.equals(same.table)
    assert json.dumps(base.truth) == json.dumps(same.truth)
    p = dict(england.PARAMETERS["referrals"], gradient=2.0, b_x=-0.1, phi=30.0)
    other = england.simulate(seed=4, scale=0.05, parameters={"referrals": p})
    t = other.truth["thresholds"]["referrals"]
    assert t["b_w"] == math.log(2.0)
    assert t["b_x"] == -0.1
    assert t["gradient_less_deprived_la"] == pytest.approx(math.exp(math.log(2.0) + 0.1))
    # the neighbourhoods are the default's; the counts (drawn after the changed referrals,
    # from the same stream) are not
    changed = [c for c in base.table if not base.table[c].equals(other.table[c])]
    assert set(changed) <= set(england.OUTCOMES)
    assert "referrals" in changed
    cp = dict(other.truth["thresholds"]["cp_plans"], la=None)
    assert cp == dict(base.truth["thresholds"]["cp_plans"], la=None)
    with pytest.raises(ValueError, match="unknown outcomes"):
        england.simulate(seed=4, scale=0.05, parameters={"referral": p})


def test_truths_are_drawn_within_the_stated_ranges():
    for model in calibrate.MODELS:
        draws = [calibrate.draw_truth(model, seed) for seed in range(50)]
        assert calibrate.draw_truth(model, 3) == draws[3]  # reproducible
        for name, (lo, hi, _) in calibrate.RANGES[model].items():
            values = [d[name] for d in draws]
            assert lo <= min(values)
            assert max(values) <= hi
            assert max(values) - min(values) > 0.5 * (hi - lo)  # spread over the range


def test_binomial_replicate_table_is_the_models():
    table, spec, truth = calibrate.simulate("binomial", seed=5, scale=0.05)
    assert spec.family == "binomial"
    assert spec.trials == "referrals"
    assert (table["referrals"] > 0).all()
    assert (table["rereferrals"] <= table["referrals"]).all()
    assert table.groupby("la").size().min() >= 2
    assert set(truth["la"]) == set(table["la"])
    assert "E09000001" in truth["dropped"]["la"]  # City of London: 1 LSOA left (seed 5)
    share = table["rereferrals"].sum() / table["referrals"].sum()
    assert 0.12 < share < 0.35  # around the study's 22%


# -- ranks, uniformity and aggregation (pure) ---------------------------------------------


def test_sbc_rank_counts_thinned_draws_below_the_truth():
    draws = np.arange(1000.0).reshape(4, 250)  # chains x draws
    assert calibrate.sbc_rank(draws, -1.0) == 0
    assert calibrate.sbc_rank(draws, 1e9) == calibrate.SBC_DRAWS
    # 99 draws evenly over 0..999 (0, 10, 20, ..., 489, 500, ...): 49 below 500
    assert calibrate.sbc_rank(draws, 500.0) == 49
    with pytest.raises(ValueError, match="at least 99"):
        calibrate.sbc_rank(np.zeros(50), 0.0)


def test_rank_histogram_and_uniformity():
    ranks = np.arange(100)  # every rank once: exactly uniform
    counts, expected = calibrate.rank_histogram(ranks, 99, 10)
    assert counts.tolist() == [10] * 10
    assert expected.tolist() == [10.0] * 10
    u = calibrate.uniformity(ranks, 99, 10)
    assert u["chi2"] == 0.0
    assert u["p_value"] == 1.0
    assert u["df"] == 9
    # unequal bins when L + 1 does not divide: ranks 0..9 in 3 bins of 4, 3, 3 (or so)
    counts, expected = calibrate.rank_histogram(np.arange(10), 9, 3)
    assert counts.sum() == 10
    assert expected.sum() == pytest.approx(10)
    assert counts.tolist() == expected.tolist()
    with pytest.raises(ValueError, match=r"0\.\.99"):
        calibrate.rank_histogram([100], 99, 10)


def test_uniformity_rejects_clearly_non_uniform_ranks():
    rng = np.random.default_rng(1)
    uniform = rng.integers(0, 100, size=200)
    assert calibrate.uniformity(uniform)["p_value"] > 0.01
    # an overconfident posterior: the truth falls in the tails of the draws
    tails = np.concatenate([rng.integers(0, 10, 100), rng.integers(90, 100, 100)])
    assert calibrate.uniformity(tails)["p_value"] < 1e-6
    # a biased one: the truth mostly above the draws
    assert calibrate.uniformity(rng.integers(60, 100, 200))["p_value"] < 1e-6


def fake_result(
    seed: int, covered: dict, la_covered: list[bool], ranks: dict, verdict: str = "PASS"
) -> dict:
    national = {
        k: {
            "truth": 1.0,
            "median": 1.0,
            "ci95": [0.9, 1.1],
            "ci80": [0.95, 1.05],
            "covered95": covered[k][0],
            "covered80": covered[k][1],
        }
        for k in calibrate.NATIONAL
    }
    return {
        "complete": True,
        "model": "national",
        "seed": seed,
        "config": {},
        "national": national,
        "la": {
            "la": [f"L{i}" for i in range(len(la_covered))],
            "covered95": la_covered,
            "covered80": [False] * len(la_covered),
        },
        "sbc": {"draws": 99, "ranks": ranks},
        "diagnostics": {
            "verdict": verdict,
            "rhat_max": 1.004,
            "ess_bulk_min": 800.0,
            "national_rhat_max": 1.001,
            "national_ess_bulk_min": 1500.0,
            "divergences": 2 if verdict == "FAIL" else 0,
            "reasons": ["R-hat 1.2 > 1.05 (la_effect)"] if verdict == "FAIL" else [],
        },
        "seconds": {"total": 10.0 * (seed + 1)},
    }


def test_aggregate_counts_coverage_ranks_and_fails():
    keys = calibrate.NATIONAL
    results = [
        fake_result(
            0,
            {k: (True, True) for k in keys},
            [True, True, False],
            {"a": 0, "b_w": 99, "b_b": 50, "b_x": 10},
        ),
        fake_result(
            1,
            {k: (k != "contextual_effect", False) for k in keys},
            [True, True, True],
            {"a": 5, "b_w": 95, "b_b": 55, "b_x": 12},
            verdict="FAIL",
        ),
        fake_result(
            2,
            {k: (True, False) for k in keys},
            [False, True, True],
            {"a": 9, "b_w": 90, "b_b": 45, "b_x": 19},
            verdict="WARN",
        ),
    ]
    agg = calibrate.aggregate(results)
    assert agg["replicates"] == 3
    c = agg["national"]["contextual_effect"]["coverage95"]
    assert (c["k"], c["n"]) == (2, 3)
    assert c["p"] == pytest.approx(2 / 3)
    assert c["se"] == pytest.approx(math.sqrt(2 / 3 * 1 / 3 / 3))
    assert agg["national"]["gradient_mean_la"]["coverage95"]["p"] == 1.0
    assert agg["national"]["gradient_mean_la"]["coverage80"]["k"] == 1
    pooled = agg["national_pooled"]["coverage95"]
    assert (pooled["k"], pooled["n"]) == (14, 15)
    la = agg["per_la"]["coverage95"]
    assert (la["k"], la["n"]) == (7, 9)
    assert la["replicate_min"] == pytest.approx(2 / 3)
    assert la["replicate_max"] == 1.0
    assert agg["per_la"]["coverage80"]["k"] == 0
    sbc = agg["sbc"]["parameters"]
    assert sbc["a"]["counts"] == [3] + [0] * 9  # ranks 0, 5, 9: the first bin
    assert sbc["b_w"]["counts"] == [0] * 9 + [3]
    assert sbc["b_b"]["counts"][4:6] == [1, 2]
    assert sbc["a"]["ranks"] == [0, 5, 9]
    # nothing dropped: the FAIL replicate is counted, listed, and in every share above
    d = agg["diagnostics"]
    assert d["verdicts"] == {"PASS": 1, "WARN": 1, "FAIL": 1}
    assert d["fail"] == [{"seed": 1, "reasons": ["R-hat 1.2 > 1.05 (la_effect)"]}]
    assert [w["seed"] for w in d["warn"]] == [2]
    assert d["divergences"] == 2
    assert d["replicates_with_divergences"] == 1
    assert agg["seconds"]["median"] == 20.0
    md = calibrate.markdown(
        {
            "models": {
                "national": agg
                | {
                    "config": {
                        "seeds": [0, 2],
                        "scale": 1.0,
                        "chains": 4,
                        "draws": 500,
                        "tune": 500,
                        "sbc_draws": 99,
                    }
                }
            },
            "ranges": {"national": calibrate.RANGES["national"]},
            "study_values": calibrate.STUDY,
        }
    )
    assert "seed 1: R-hat 1.2 > 1.05 (la_effect)" in md
    assert "1 PASS, 1 WARN, 1 FAIL" in md
    assert "66.7% ± 27.2 (2/3)" in md


# -- the command, on a local cluster ------------------------------------------------------


def test_calibrate_writes_and_resumes(tmp_path, capsys):
    """A tiny replicate on a LocalCluster of one worker; the rerun fits nothing."""
    out = tmp_path / "cal"
    code = cli.main(["calibrate", "--out", str(out), *TINY, "--seed", "5"])
    assert code == 0
    files = sorted((out / "replicates" / "national").iterdir())
    assert [f.name for f in files] == ["5.json"]
    stamps = [f.stat().st_mtime_ns for f in files]
    one = json.loads(files[0].read_text())
    assert one["complete"]
    assert one["seed"] == 5
    assert one["n_la"] == 150
    assert set(one["national"]) == set(calibrate.NATIONAL)
    assert len(one["la"]["covered95"]) == 150
    assert set(one["sbc"]["ranks"]) == set(calibrate.SBC_PARAMETERS)
    assert all(0 <= r <= 99 for r in one["sbc"]["ranks"].values())
    assert one["truth"] == pytest.approx(
        calibrate.draw_truth("national", 5) | calibrate.national_quantities(one["truth"])
    )
    assert one["diagnostics"]["verdict"] in ("PASS", "WARN", "FAIL")
    assert not list(out.rglob("*.nc"))  # no posterior written
    whole = json.loads((out / "calibration.json").read_text())
    agg = whole["models"]["national"]
    assert agg["replicates"] == 1
    assert agg["national_pooled"]["coverage95"]["n"] == 5
    assert agg["per_la"]["coverage95"]["n"] == 150
    assert whole["ranges"]["national"]["b_w"][:2] == list(calibrate.RANGES["national"]["b_w"][:2])
    assert (out / "calibration_sbc.png").stat().st_size > 0
    assert "## Model `national`" in (out / "calibration.md").read_text()
    assert "calibrate national: 1 replicate;" in capsys.readouterr().out

    # resumable: nothing refitted (no cluster even needed), the aggregate rewritten
    done = calibrate.run(
        out,
        1,
        "national",
        scale=0.05,
        draws=100,
        tune=100,
        chains=2,
        seed=5,
        scheduler="tcp://127.0.0.1:1",
    )
    assert done["fitted"] == []
    assert done["up_to_date"] == [5]
    assert [f.stat().st_mtime_ns for f in files] == stamps
    # a damaged or partial file, or another configuration, is refitted
    assert calibrate.read_result(files[0], calibrate.config("national", 0.05, 200, 100, 2)) is None
    files[0].write_text('{"complete": tr')
    assert calibrate.read_result(files[0], calibrate.config("national", 0.05, 100, 100, 2)) is None


def test_calibrate_rejects_bad_arguments(tmp_path, capsys):
    assert cli.main(["calibrate", "--out", str(tmp_path), "--replicates", "0"]) == 2
    assert cli.main(["calibrate", "--out", str(tmp_path), "--draws", "20", "--chains", "2"]) == 2
    assert cli.main(["calibrate", "--out", str(tmp_path), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "--replicates must be at least 1" in err
    assert "at least 99" in err


@pytest.mark.slow  # ~1-2 min: two tiny replicates, one worker killed mid-fit
def test_calibrate_survives_a_worker_killed_mid_replicate(tmp_path):
    """SIGKILL the local cluster's worker while it fits a replicate (its result not yet
    written): the nanny restarts it, the scheduler reruns the task, every result is whole and
    none is written twice."""
    import psutil
    from dask.distributed import Client

    from socialgradient.study import suite

    out = tmp_path / "cal"
    killed, commits, started = {}, {}, {}
    stop = threading.Event()

    def cpu(pid):
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system

    def watch(client: Client):
        while not stop.is_set() and not killed:
            busy = {w: keys for w, keys in client.processing().items() if keys}
            if busy:
                worker, keys = next(iter(busy.items()))
                seed = str(keys[0]).split("-")[2]
                pid = client.run(os.getpid, workers=[worker])[worker]
                path = out / "replicates" / "national" / f"{seed}.json"
                if cpu(pid) - started.setdefault(pid, cpu(pid)) > 3 and not path.exists():
                    os.kill(pid, signal.SIGKILL)
                    killed[seed] = pid
            time.sleep(0.5)
        while not stop.is_set():
            for path in (out / "replicates" / "national").glob("*.json"):
                commits.setdefault(path.name, set()).add(path.stat().st_mtime_ns)
            time.sleep(0.2)

    with suite.client(None, workers=1) as client:
        killer = threading.Thread(target=watch, args=(client,))
        killer.start()
        try:
            done = calibrate.run(
                out,
                2,
                "national",
                scale=0.05,
                draws=100,
                tune=100,
                chains=2,
                seed=5,
                scheduler=client,
            )
        finally:
            stop.set()
            killer.join()
    assert killed, "no worker was killed mid-replicate"
    assert done["failed"] == {}
    assert sorted(done["fitted"]) == [5, 6]
    for path in (out / "replicates" / "national").glob("*.json"):
        assert json.loads(path.read_text())["complete"]
        assert commits.get(path.name, {path.stat().st_mtime_ns}) == {path.stat().st_mtime_ns}


@pytest.mark.slow  # ~1 min: two tiny replicates on the two workers of conftest's cluster
def test_calibrate_on_a_running_cluster(tmp_path, scheduler, monkeypatch):
    """calibrate.run(scheduler=ADDRESS) fits on a scheduler and two workers it did not start
    (separate processes, as on a cluster); the workers write the results into the shared
    folder, a relative one made absolute for them; the two replicates run on both workers."""
    from dask.distributed import Client

    monkeypatch.chdir(tmp_path)
    done = calibrate.run(
        Path("cal"),
        2,
        "national",
        scale=0.05,
        draws=100,
        tune=100,
        chains=2,
        seed=5,
        scheduler=scheduler,
    )
    assert done["failed"] == {}
    assert sorted(done["fitted"]) == [5, 6]
    with Client(scheduler, timeout=60) as client:
        workers = set(client.run(os.getpid).values())
    fitted_by = set()
    for seed in (5, 6):
        result = json.loads(
            (tmp_path / "cal" / "replicates" / "national" / f"{seed}.json").read_text()
        )
        assert result["complete"]
        assert result["seed"] == seed
        fitted_by.add(result["fitted_by"]["pid"])
    assert len(workers) == 2
    assert fitted_by == workers  # one each, neither by this process
    assert (tmp_path / "cal" / "calibration.json").exists()
