"""Record aggregates for specs (``[records]``) and the findings table of the suite."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

import socialgradient.api as sg
from socialgradient.spec import RecordsTable, Spec, load_spec
from socialgradient.study import aggregates, findings
from socialgradient.study.suite import national_specs

SMALL = dict(scale=0.05, seed=3)


@pytest.fixture(scope="module")
def base():
    return aggregates.build(
        RecordsTable(groups=("thresholds", "factors", "cp_categories", "repeats"), **SMALL)
    )


def test_spec_records_table_round_trips_and_keeps_old_hashes(tmp_path, first_national_spec):
    path = tmp_path / "s.toml"
    path.write_text(
        'outcome = "count"\nstratum = "category"\n[records]\n'
        'stack = ["cp_neglect", "cp_sexual"]\ngroups = ["cp_categories"]\n'
    )
    spec = load_spec(path)
    assert spec.records == RecordsTable(
        stack=("cp_neglect", "cp_sexual"), groups=("cp_categories",)
    )
    assert Spec.from_json(spec.to_json()) == spec
    assert spec.hash != spec.replace(records={"scale": 0.1, "stack": ["cp_neglect"]}).hash
    # a spec without [records] keeps the hash it had before the field existed
    assert first_national_spec.hash == "45cc431df78139ab"
    path.write_text('outcome = "x"\n[records]\nbogus = 1\n')
    with pytest.raises(ValueError, match="bogus"):
        load_spec(path)
    with pytest.raises(ValueError, match="scale"):
        RecordsTable(scale=2.0)
    with pytest.raises(ValueError, match="give one"):
        RecordsTable(durations="nfa", stack=("a",))


def test_stack_puts_columns_under_one_another(base):
    cols = ("cp_neglect", "cp_sexual")
    long = aggregates.stack(base.table, cols)
    assert len(long) == 2 * len(base.table)
    assert long.groupby("category")["count"].sum().to_dict() == {
        c: base.table[c].sum() for c in cols
    }
    assert set(long.columns) == {"lsoa", "la", "income", "rural", "children", "category", "count"}
    with pytest.raises(ValueError, match="no_such"):
        aggregates.stack(base.table, ("no_such",))


def test_durations_rows_without_time_at_risk_are_counted_not_hidden():
    agg = aggregates.build(RecordsTable(durations="cp_plan", **SMALL))
    t = agg.table
    assert set(t["piece"]) == set(aggregates.PIECE_NAMES)
    assert (t["days"] > 0).all()
    assert agg.dropped["piece rows without time at risk"] > 0
    every = sum(agg.dropped.values()) + len(t)
    raw = aggregates.build(RecordsTable(groups=("thresholds", "durations"), **SMALL)).table
    assert every == 4 * len(raw)  # every LSOA x piece is kept or counted
    with pytest.raises(ValueError, match="no columns"):
        aggregates.durations(raw, "no_level")


def test_positive_and_single_lsoa_las_are_dropped_with_a_count(base):
    agg = aggregates.build(
        RecordsTable(groups=("thresholds", "repeats"), positive="cp_plans", **SMALL)
    )
    assert (agg.table["cp_plans"] > 0).all()
    assert agg.dropped["rows with cp_plans = 0"] == (base.table["cp_plans"] == 0).sum()
    left = [k for k in agg.dropped if k.startswith("rows of LAs left with one LSOA")]
    assert len(agg.table) + sum(agg.dropped.values()) == len(base.table)
    assert agg.table.groupby("la")["lsoa"].nunique().min() >= 2
    if left:  # the LA codes are named
        assert "E" in left[0]


def test_cache_builds_once(tmp_path, monkeypatch):
    source = RecordsTable(**SMALL)
    first = aggregates.cached(source, tmp_path)
    calls = []
    monkeypatch.setattr(aggregates, "build", lambda s: calls.append(s))
    again = aggregates.cached(source, tmp_path)
    assert calls == []
    pd.testing.assert_frame_equal(first.table, again.table)
    assert again.truth["scale"] == 0.05
    assert aggregates.key(source) != aggregates.key(RecordsTable(scale=0.1, seed=3))
    report = json.loads((tmp_path / aggregates.key(source) / "report.json").read_text())
    assert report["rows"] == len(first.table)


def test_every_finding_names_a_spec_of_the_repository():
    names = {spec.name for _, spec, _ in national_specs(sg.MODELS) if spec is not None}
    assert {f.spec for f in findings.FINDINGS} <= names


def test_every_truth_resolves(base):
    """Each finding's truth is a finite number in the truth its spec is fitted to."""
    specs = {spec.name: spec for _, spec, _ in national_specs(sg.MODELS) if spec is not None}
    default = sg.default_truth()
    for f in findings.FINDINGS:
        if f.truth is None:
            continue
        truth = base.truth if specs[f.spec].records is not None else default
        assert math.isfinite(f.truth(truth)), f.finding


def interval(median, lo, hi, **extra):
    return {"median": median, "ci95": [lo, hi], "ci80": [lo, hi], **extra}


def test_table_marks_coverage_inverts_ratios_and_lists_unfitted():
    rows = (
        findings.Finding("t", "covered", "a", "g", lambda t: 1.6, 1.62),
        findings.Finding("t", "missed", "a", "g", lambda t: 2.0),
        findings.Finding("t", "inverted", "a", "c.Y/X", lambda t: 0.5),
        findings.Finding("t", "probability", "a", "p"),
        findings.Finding("u", "absent", "b", "g", lambda t: 1.0),
    )
    summaries = {
        "a": {
            "g": interval(1.5, 1.4, 1.7),
            "p": 0.97,
            "c": {"X/Y": interval(2.0, 1.6, 2.5, p_steeper=0.99)},
            "diagnostics": {"verdict": "PASS"},
        }
    }
    out = findings.table(summaries, {"a": {}}, rows).set_index("finding")
    assert out.loc["covered", "covered"] is True
    assert out.loc["missed", "covered"] is False
    assert out.loc["inverted", "median"] == 0.5
    assert out.loc["inverted", ["lo95", "hi95"]].tolist() == [1 / 2.5, 1 / 1.6]
    assert out.loc["inverted", "probability"] == pytest.approx(0.01)
    assert out.loc["probability", "median"] == 0.97
    assert pd.isna(out.loc["probability", "lo95"])
    assert out.loc["absent", "verdict"] == "not fitted"
    md = findings.markdown(out.reset_index())
    assert "| covered | 1.62 | 1.500 [1.400, 1.700] |" in md
    assert "missed (`a`): truth 2.000 outside [1.400, 1.700]" in md
    fig = findings.figure(out.reset_index(), "t")
    assert len(fig.axes) == 1


def test_readme_findings_table_is_the_committed_suite_run(tmp_path):
    """The README's table is generated from bench/suite/findings.csv (the measured run)."""
    root = sg.MODELS.parent
    committed = root / "bench" / "suite" / "findings.csv"
    text = (root / "README.md").read_text(encoding="utf-8")
    block = text.split(findings.BEGIN)[1].split(findings.END)[0].strip()
    assert block == findings.readme_table(pd.read_csv(committed))
    copy = tmp_path / "README.md"
    copy.write_text(text.replace(block, "stale"), encoding="utf-8")
    assert findings.update_readme(copy, committed)
    assert copy.read_text(encoding="utf-8") == text
