"""The command line end to end on a small table: every output of `socialgradient fit`."""

import argparse
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr

from socialgradient.cli import main, parser
from socialgradient.data.synthetic.england import load_calibration, simulate

SUMMARY_KEYS = (
    "gradient_mean_la",
    "gradient_less_deprived_la",
    "gradient_more_deprived_la",
    "between_la_gradient",
    "contextual_effect",
)
LA_COLUMNS = [
    "la",
    "n_lsoa",
    "children",
    "rate_per_10k",
    "gradient_median",
    "gradient_lo95",
    "gradient_hi95",
    "rank_median",
    "rank_lo95",
    "rank_hi95",
]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    cal = load_calibration().head(12)
    table = simulate(seed=4, scale=0.3, calibration=cal).table
    data = root / "table.csv"
    table.to_csv(data, index=False)
    out = root / "out"
    code = main(
        [
            "fit",
            str(data),
            "--outcome",
            "cp_plans",
            "--out",
            str(out),
            "--draws",
            "150",
            "--tune",
            "150",
            "--chains",
            "2",
            "--seed",
            "3",
            "--sampler",
            "pymc",
            "--no-progress",
            "--allow-fail",
        ]
    )  # PyMC's NUTS starts from PyTensor's C cache: these tests are about the command
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
    names = table.drop_duplicates("la").set_index("la")["la_name"]  # each LA named
    assert las["la_name"].tolist() == names.loc[las["la"]].tolist()
    visible = las["cases"].dropna()
    assert ((visible == 0) | (visible >= 10)).all()
    assert las["rate_per_10k"].isna().tolist() == las["cases"].isna().tolist()
    log = [
        json.loads(line)
        for line in (out / "release" / "disclosure_log.jsonl").read_text().splitlines()
    ]
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
    pd.DataFrame(
        {
            "lsoa": ["E01000001"],
            "la": ["E06000001"],
            "children": [0],
            "income": [0.1],
            "referrals": [1],
        }
    ).to_csv(bad, index=False)
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
    pd.testing.assert_frame_equal(
        pd.read_csv(again / "release" / "la_gradients.csv"),
        pd.read_csv(out / "release" / "la_gradients.csv"),
    )
    # a stricter disclosure rule: every LA count below 10,000 is suppressed
    strict = tmp_path / "strict"
    assert (
        main(
            [
                "report",
                str(out / "internal" / "posterior.nc"),
                "--out",
                str(strict),
                "--threshold",
                "10000",
            ]
        )
        == 0
    )
    assert pd.read_csv(strict / "release" / "la_gradients.csv")["cases"].isna().all()
    assert main(["report", str(tmp_path / "missing.nc"), "--out", str(strict)]) == 2
    assert "no saved fit" in capsys.readouterr().err


# -- the parser: conventions users know ------------------------------------------------------


def _parsers(p=None, path=()):
    """(command path, parser) of the top parser, every command and every sub-command."""
    p = p or parser()
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def _leaves():
    return [
        (path, p)
        for path, p in _parsers()
        if path and not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)
    ]


def _has_default(action) -> bool:
    d = action.default
    return not (d is None or d is False or d is argparse.SUPPRESS or d == [])


def _sample(action) -> list[str]:
    """A value the option takes (nothing for a flag)."""
    if action.nargs == 0:
        return []
    if action.choices:
        return [str(next(iter(action.choices)))]
    if action.type is int or getattr(action, "item", None) is int:
        return ["2019"]
    if action.type is float:
        return ["0.9"]
    return ["b_w=0.5" if action.dest == "prior" else "x"]


def _required(p) -> list[str]:
    """The least a command needs to parse: its positionals and required options."""
    argv = []
    for action in p._actions:
        if not action.option_strings:
            argv += _sample(action)
        elif action.required:
            argv += [action.option_strings[0], *_sample(action)]
    return argv


def test_every_option_has_help_and_shows_its_default():
    for path, p in _parsers():
        formatter = p._get_formatter()
        flat = "".join(p.format_help().split())
        for action in p._actions:
            assert action.help, (path, action.dest)
            if isinstance(action, argparse._SubParsersAction) or not _has_default(action):
                continue
            d = action.default
            shown = f"(default: {','.join(map(str, d)) if isinstance(d, list) else d})"
            assert shown in formatter._expand_help(action), (path, action.dest)
            assert "".join(shown.split()) in flat, (path, action.dest)


def test_quiet_goes_before_or_after_the_command(tmp_path, capsys):
    p = parser()
    fit = ["fit", "table.csv", "--outcome", "referrals", "--out", "out"]
    assert p.parse_args(fit).quiet is False
    assert p.parse_args(["-q", *fit]).quiet is True
    assert p.parse_args([*fit, "-q"]).quiet is True
    assert p.parse_args([*fit, "--quiet"]).quiet is True
    assert p.parse_args(["-q", "census", "write", "--out", "o"]).quiet is True
    assert p.parse_args(["census", "write", "--out", "o", "-q"]).quiet is True
    for path, leaf in _leaves():  # every command takes it
        assert leaf.parse_args([*_required(leaf), "-q"]).quiet is True, path
    assert main(["simulate", "--out", str(tmp_path / "a"), "--scale", "0.05", "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_list_options_repeat_or_take_commas_and_leave_positionals_alone():
    p = parser()
    args = p.parse_args(
        [
            "fit",
            "--strata",
            "age_band",
            "--strata",
            "gender",
            "DATA",
            "--outcome",
            "referrals",
            "--out",
            "o",
        ]
    )
    assert args.strata == ["age_band", "gender"]
    assert args.data == Path("DATA")
    args = p.parse_args(
        [
            "fit",
            "--strata",
            "age_band,gender",
            "DATA",
            "--outcome",
            "y",
            "--out",
            "o",
            "--la-moderator",
            "a,b",
            "--la-moderator",
            "c",
            "--neighbourhood-moderator",
            "rural",
        ]
    )
    assert (args.strata, args.data) == (["age_band", "gender"], Path("DATA"))
    assert (args.la_moderators, args.neighbourhood_moderators) == (["a", "b", "c"], ["rural"])
    args = p.parse_args(
        [
            "census",
            "aggregate",
            "--by",
            "age_band",
            "--by",
            "gender",
            "R1",
            "--child-lsoa",
            "c",
            "--geography",
            "g",
            "--out",
            "o",
        ]
    )
    assert (args.by, args.returns) == (["age_band", "gender"], [Path("R1")])
    assert p.parse_args(["census", "write", "--out", "o"]).years == [2019]
    assert p.parse_args(["census", "write", "--out", "o", "--years", "2020"]).years == [2020]
    assert p.parse_args(["simulate", "--out", "o", "--years", "2019,2020"]).years == [2019, 2020]
    assert p.parse_args(
        ["census", "write", "--out", "o", "--la", "E06000001", "--la", "E06000002,E06000003"]
    ).la == ["E06000001", "E06000002", "E06000003"]
    for bad in (["--years", "2019,twenty"], ["--years", "2019,"]):
        with pytest.raises(SystemExit):
            p.parse_args(["simulate", "--out", "o", *bad])
    for path, sub in _parsers():  # no option takes several words any more
        for action in sub._actions:
            assert not (action.option_strings and action.nargs in ("+", "*")), (path, action)


def test_each_command_offers_only_the_options_it_accepts(tmp_path, monkeypatch):
    for path, leaf in _leaves():  # every option in a command's help parses
        for action in leaf._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            argv = [*path, *_required(leaf), action.option_strings[0], *_sample(action)]
            parser().parse_args(argv)
    # suite offered --family and then refused it: each spec names its own family
    assert "--family" not in parser()._subparsers._group_actions[0].choices["suite"].format_help()
    with pytest.raises(SystemExit):
        parser().parse_args(["suite", "--family", "negbin"])
    # and every option suite does offer reaches suite.run, none refused
    from socialgradient.data import schema
    from socialgradient.study import suite

    calls = {}
    monkeypatch.setattr(schema, "read_table", lambda path: "table")
    monkeypatch.setattr(suite, "run", lambda *a, **kw: calls.update(kw) or [])
    monkeypatch.setattr(suite, "headline", lambda items: "headline")
    assert (
        main(
            [
                "suite",
                "--data",
                str(tmp_path / "t.csv"),
                "--out",
                str(tmp_path / "s"),
                "--draws",
                "5",
                "--tune",
                "6",
                "--chains",
                "1",
                "--seed",
                "7",
                "--sampler",
                "pymc",
                "--no-progress",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert (
        calls["draws"],
        calls["tune"],
        calls["chains"],
        calls["seed"],
        calls["sampler"],
        calls["progressbar"],
        calls["workers"],
    ) == (5, 6, 1, 7, "pymc", False, 1)


def test_calibrate_logs_each_line_once(tmp_path, monkeypatch, capsys):
    from socialgradient.study import calibrate

    def fake_run(out, replicates, model, **kwargs):
        logging.getLogger("socialgradient.study.calibrate").info("replicate 1/1 done (fake)")
        return {"aggregate": {}, "failed": []}

    monkeypatch.setattr(calibrate, "run", fake_run)
    monkeypatch.setattr(calibrate, "headline", lambda aggregate, model: "headline")
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()  # as outside pytest: no handler on the root logger
    try:
        assert main(["calibrate", "--out", str(tmp_path / "c"), "--replicates", "1"]) == 0
    finally:
        root.handlers[:] = saved
    err = capsys.readouterr().err
    assert err.count("replicate 1/1 done (fake)") == 1, err


def test_compiling_and_sampling_are_logged_when_they_start(monkeypatch, caplog):
    import nutpie
    import pymc as pm

    from socialgradient.sampling import fit
    from socialgradient.spec import Sampling

    caplog.set_level(logging.INFO, logger="socialgradient")
    seen = {}

    def lines():
        return [r.getMessage() for r in caplog.records if r.name == "socialgradient.sampling.fit"]

    def fake_compile(model):
        seen["compile"] = lines()
        return "compiled", False

    def fake_sample(compiled, **kwargs):
        seen["sample"] = lines()
        return xr.DataTree()

    monkeypatch.setattr(fit.compiled_module, "compile_nutpie", fake_compile)
    monkeypatch.setattr(nutpie, "sample", fake_sample)
    tree, _, _ = fit.sample(pm.Model(), Sampling(draws=10, tune=20, chains=2), False)
    assert tree.attrs == {"tune": 20}  # the tuning draws it ran, recorded
    assert seen["compile"] == ["compiling the model for nutpie ..."]
    assert seen["sample"][1].startswith("compiled the model for nutpie: ")
    assert seen["sample"][2] == "sampling 2 chains x 10 draws (20 tuning) with nutpie ..."
    assert len(seen["sample"]) == 3
    assert lines()[3].startswith("sampled 2 chains x 10 draws (nutpie): compile ")
    # PyMC compiles inside pm.sample: one line before it starts
    caplog.clear()

    def fake_pymc(**kwargs):
        seen.update(pymc=lines(), tune=kwargs["tune"])
        return xr.DataTree()

    monkeypatch.setattr(fit.pm, "sample", fake_pymc)
    fit.sample(pm.Model(), Sampling(sampler="pymc", draws=10, chains=2), False)
    assert seen["pymc"] == [  # a tune left out, with no data rule applied: the long tuning
        "sampling 2 chains x 10 draws (500 tuning) with pymc (compiling the model first) ..."
    ]
    assert seen["tune"] == 500
    assert lines()[1].startswith("sampled 2 chains x 10 draws (pymc)")
    # an environment that fixes glibc's malloc thresholds (a Dask worker's) is named first
    caplog.clear()
    monkeypatch.setattr(fit, "fixed_thresholds", lambda: "MALLOC_TRIM_THRESHOLD_=65536 ...")
    fit.sample(pm.Model(), Sampling(sampler="pymc", draws=10, chains=2), False)
    assert lines()[0] == "MALLOC_TRIM_THRESHOLD_=65536 ..."
    assert caplog.records[0].levelname == "WARNING"


def test_top_level_help_is_whole(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "(over 400 lines" not in out
    top = parser()
    assert top.description.rstrip().endswith(".")
    assert top.epilog.rstrip().endswith(".")
    for paragraph in top.description.split("\n\n"):
        assert paragraph.rstrip().endswith("."), paragraph
    for line in [*top.description.splitlines(), *top.epilog.splitlines()]:
        assert line.strip() in out  # shown as written, nothing cut
    assert "examples:" in out
    for path, sub in _parsers():  # every command is listed, with a whole description
        if len(path) == 1:
            assert f"    {path[0]} " in out
            assert sub.description.endswith("."), path


def test_a_bad_option_value_is_one_message_naming_the_key(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('outcome = "referrals"\n[sampling]\ndraws = "100"\n', encoding="utf-8")
    for extra, message in (
        (["--chains", "100"], "sampling.chains must be an integer from 1 to 64, got 100"),
        (
            ["--spec", str(spec)],
            "sampling.draws must be an integer from 1 to 1000000, got '100' (str)",
        ),
    ):
        assert (
            main(
                [
                    "fit",
                    str(tmp_path / "t.csv"),
                    "--outcome",
                    "referrals",
                    "--out",
                    str(tmp_path / "o"),
                    *extra,
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert f"socialgradient fit: error: {message}" in err
        assert "Traceback" not in err
