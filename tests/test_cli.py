"""The command line end to end on a small table: every output of `socialgradient fit`."""

import json

import pandas as pd
import pytest

from socialgradient.cli import main
from socialgradient.data.synthetic.england import load_calibration, simulate

SUMMARY_KEYS = (
    "gradient_mean_la",
    "gradient_less_deprived_la",
    "gradient_more_deprived_la",
    "between_la_gradient",
    "contextual_effect",
)
LA_COLUMNS = [
    "la", "n_lsoa", "children", "rate_per_10k", "gradient_median", "gradient_lo95",
    "gradient_hi95", "rank_median", "rank_lo95", "rank_hi95",
]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    cal = load_calibration().head(12)
    table = simulate(seed=4, scale=0.3, calibration=cal).table
    data = root / "table.csv"
    table.to_csv(data, index=False)
    out = root / "out"
    code = main([
        "fit", str(data), "--outcome", "cp_plans", "--out", str(out), "--draws", "150",
        "--tune", "150", "--chains", "2", "--seed", "3", "--sampler", "pymc", "--no-progress",
        "--allow-fail",
    ])  # PyMC's NUTS starts from PyTensor's C cache: these tests are about the command
    assert code == 0
    return out, table


def test_summary_json(fitted):
    out, _ = fitted
    s = json.loads((out / "release" / "summary.json").read_text())
    for key in SUMMARY_KEYS:
        assert s[key]["median"] > (-10 if key == "contextual_effect" else 0)
        lo, hi = s[key]["ci95"]
        lo80, hi80 = s[key]["ci80"]
        assert lo <= lo80 <= s[key]["median"] <= hi80 <= hi
    assert 0 <= s["contextual_effect"]["p_negative"] <= 1
    assert {"rhat_max", "ess_bulk_min", "divergences", "verdict"} <= set(s["diagnostics"])
    assert s["model"]["outcome"] == "cp_plans"


def test_la_gradients_csv_is_protected(fitted):
    out, table = fitted
    las = pd.read_csv(out / "release" / "la_gradients.csv")
    assert set(LA_COLUMNS) <= set(las.columns)
    assert len(las) == table["la"].nunique()
    visible = las["cases"].dropna()
    assert ((visible == 0) | (visible >= 10)).all()
    assert las["rate_per_10k"].isna().tolist() == las["cases"].isna().tolist()
    log = [json.loads(line)
           for line in (out / "release" / "disclosure_log.jsonl").read_text().splitlines()]
    assert log[0]["file"] == "la_gradients.csv"
    assert log[0]["level"] == "la"


def test_figures_and_posterior_written(fitted):
    out, _ = fitted
    for name in ("gradient_curve", "la_caterpillar", "inverse_intervention", "ppc"):
        assert (out / "release" / f"{name}.png").stat().st_size > 1000
    assert (out / "internal" / "posterior.nc").stat().st_size > 0
    assert "NOT FOR RELEASE" in (out / "internal" / "README.txt").read_text()
    assert not list(out.rglob(".*.tmp"))
    assert not list(out.glob(".tmp-*"))


def test_bad_input_exits_with_a_named_rule(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"lsoa": ["E01000001"], "la": ["E06000001"], "children": [0], "income": [0.1],
                  "referrals": [1]}).to_csv(bad, index=False)
    assert main(["fit", str(bad), "--outcome", "referrals", "--out", str(tmp_path)]) == 2
    assert "children_not_positive" in capsys.readouterr().err


def test_simulate_is_deterministic(tmp_path):
    for run in ("a", "b"):
        assert main(["simulate", "--out", str(tmp_path / run), "--scale", "0.05"]) == 0
    a = pd.read_parquet(tmp_path / "a" / "neighbourhoods.parquet")
    b = pd.read_parquet(tmp_path / "b" / "neighbourhoods.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_progress_goes_to_stderr_and_quiet_hides_it(tmp_path, capsys):
    """Results on stdout, progress (log lines with elapsed seconds) on stderr; --quiet keeps
    stderr for warnings and errors."""
    assert main(["simulate", "--out", str(tmp_path / "a"), "--scale", "0.05"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"wrote {tmp_path / 'a'}: ")
    assert "simulated the synthetic England (scale 0.05): " in err
    assert err.endswith(" s\n")
    assert main(["--quiet", "simulate", "--out", str(tmp_path / "b"), "--scale", "0.05"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("wrote ")
    assert err == ""


def test_report_rewrites_a_saved_fit_without_refitting(fitted, tmp_path, capsys):
    out, _ = fitted
    again = tmp_path / "again"
    assert main(["report", str(out), "--out", str(again)]) == 0
    old = json.loads((out / "release" / "summary.json").read_text())
    new = json.loads((again / "release" / "summary.json").read_text())
    assert new == old  # same fit, same summary
    pd.testing.assert_frame_equal(pd.read_csv(again / "release" / "la_gradients.csv"),
                                  pd.read_csv(out / "release" / "la_gradients.csv"))
    # a stricter disclosure rule: every LA count below 10,000 is suppressed
    strict = tmp_path / "strict"
    assert main(["report", str(out / "internal" / "posterior.nc"), "--out", str(strict),
                 "--threshold", "10000"]) == 0
    assert pd.read_csv(strict / "release" / "la_gradients.csv")["cases"].isna().all()
    assert main(["report", str(tmp_path / "missing.nc"), "--out", str(strict)]) == 2
    assert "no saved fit" in capsys.readouterr().err
