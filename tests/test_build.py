"""Building the neighbourhood table from the public files, and ``socialgradient data build``."""

from __future__ import annotations

import gzip
import json
import shutil

import pandas as pd
import pytest

from socialgradient import cli
from socialgradient.data import schema
from socialgradient.data.schema import InputError
from socialgradient.data.sources import build
from socialgradient.util import outputs
from test_sources import AREAS, SHARED, _write, make_shared, needs_shared


def test_build_synthetic_shared(tmp_path):
    shared = make_shared(tmp_path)
    table, report = build.build_neighbourhoods(shared)
    assert len(table) == len(AREAS)
    assert table["lsoa"].is_unique
    la = table.set_index("lsoa")["la"]
    assert la["E01000003"] == "E06000052"  # Isles of Scilly with Cornwall
    assert la["E01000006"] == "E09000012"  # City of London with Hackney
    assert la["E01000007"] == "E06000061"
    assert la["E01000009"] == "E06000062"
    names = table.drop_duplicates("la").set_index("la")["la_name"]
    assert names["E06000061"] == "North Northamptonshire"
    assert names["E09000012"] == "Hackney"
    assert report["rows"] == {"read": 13, "linked": 13, "unmatched": 0, "in_table": 13}
    assert report["las"] == 5
    assert report["unmatched"] == {}
    moved = {(c["old"], c["new"]): c["rows"] for c in report["changes"]}
    assert moved == {
        ("E10000021", "E06000061"): 2,
        ("E10000021", "E06000062"): 2,
        ("E06000053", "E06000052"): 1,
        ("E09000001", "E09000012"): 1,
    }
    # the input contract, with no outcome columns: a geography
    assert not set(table.columns) & {"referrals", "cp_plans"}
    assert table["children"].dtype == "int64"
    assert table["rural"].dtype == bool
    assert table.set_index("lsoa")["rural"]["E01000002"]
    schema.validate(table.assign(y=0), ["y"])
    json.dumps(report)  # serialisable


def test_build_joins_outcomes_and_refuses_unknown_lsoas(tmp_path):
    shared = make_shared(tmp_path)
    outcome = pd.DataFrame({"lsoa": [a[0] for a in AREAS], "referrals": range(len(AREAS))})
    table, report = build.build_neighbourhoods(shared, outcome)
    assert table["referrals"].tolist() == list(range(len(AREAS)))
    assert report["outcome"]["joined"] == len(AREAS)
    bad = pd.concat([outcome, pd.DataFrame({"lsoa": ["E01999999"], "referrals": [1]})])
    with pytest.raises(InputError) as err:
        build.build_neighbourhoods(shared, bad)
    assert err.value.rule == "outcome_lsoa_unknown"
    assert "E01999999" in err.value.message
    neg = outcome.assign(referrals=-outcome["referrals"] - 1)
    with pytest.raises(InputError) as err:
        build.build_neighbourhoods(shared, neg)
    assert err.value.rule == "negative_count"


def test_unmatched_rows_are_reported_by_reason(tmp_path):
    shared = make_shared(tmp_path)
    ruc_path = shared / "ruc2011" / "ons_RUC11_LSOA11_EW.csv.gz"
    ruc = pd.read_csv(ruc_path, dtype=str)
    _write(ruc_path, ruc[ruc["LSOA11CD"] != "E01000013"])
    table, report = build.build_neighbourhoods(shared)
    assert report["rows"] == {"read": 13, "linked": 12, "unmatched": 1, "in_table": 12}
    assert report["unmatched"] == {"no_rural_urban_class": {"count": 1, "lsoas": ["E01000013"]}}
    assert "E01000013" not in set(table["lsoa"])


def test_cli_data_build(tmp_path, capsys):
    shared = make_shared(tmp_path / "shared")
    out, rep = tmp_path / "out", tmp_path / "report.json"
    assert cli.main(["data", "build", str(shared), "--out", str(out), "--report", str(rep)]) == 0
    manifest = outputs.verify(out)
    table = pd.read_parquet(out / manifest["table"])
    assert len(table) == len(AREAS)
    assert schema.read_table(out).equals(table)  # what fit DIR reads
    report = json.loads(rep.read_text())
    assert report == json.loads((out / "internal" / "linkage_report.json").read_text())
    assert report["rows"]["in_table"] == len(AREAS)
    assert "dfe_merge: E09000001 City of London -> E09000012 Hackney" in capsys.readouterr().out
    # no outcomes: nothing to publish, and release/ says so
    assert [p.name for p in (out / "release").iterdir()] == ["disclosure_log.jsonl"]
    csv = tmp_path / "csv"
    assert cli.main(["data", "build", str(shared), "--out", str(csv), "--format", "csv.gz"]) == 0
    assert outputs.verify(csv)["table"] == "internal/neighbourhoods.csv.gz"
    assert schema.read_table(csv).equals(table)
    assert (
        cli.main(
            [
                "data",
                "build",
                str(shared),
                "--out",
                str(out),
                "--la-year",
                "2021",
                "--no-city-merge",
            ]
        )
        == 2
    )  # City of London alone: an LA of 1 LSOA
    assert "small_la" in capsys.readouterr().err
    assert outputs.verify(out) == manifest  # the set is unchanged


def _corrupt_gz(path, old: str, new: str) -> None:
    text = gzip.decompress(path.read_bytes()).decode("utf-8-sig")
    assert old in text
    path.write_bytes(gzip.compress(text.replace(old, new, 1).encode("utf-8")))


def test_cli_names_each_problem_of_a_mangled_copy(tmp_path, capsys):
    shared = make_shared(tmp_path / "shared")
    f6 = next((shared / "iod2019").glob("File_6*"))
    _corrupt_gz(f6, "E01000005", "E1000005")  # a spreadsheet's lost zero
    ruc = shared / "ruc2011" / "ons_RUC11_LSOA11_EW.csv.gz"
    _corrupt_gz(ruc, "RUC11CD", "RUC_CODE")  # a renamed column
    out = tmp_path / "n"
    assert cli.main(["data", "build", str(shared), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "source_errors" in err
    assert "excel_mangled_code" in err
    assert "'E1000005'" in err
    assert "missing_column" in err
    assert "RUC11CD" in err
    assert "RUC_CODE" in err
    assert not out.exists()


@needs_shared
def test_real_build():
    table, report = build.build_neighbourhoods(SHARED)
    assert len(table) == 32844
    assert report["rows"]["unmatched"] == 0
    assert report["las"] == 151  # DfE 2024-25: 153 LAs, Scilly and City merged
    assert report["checks"] == {
        "lad_lookup_disagrees_with_iod": 0,
        "bestfit_utla_disagrees": 0,
        "bestfit_utla_missing": 0,
    }
    assert len(report["changes"]) == 9
    assert table["children"].sum() == 10_405_050
    merged = pd.read_csv(
        SHARED / "lsoa2011_merged" / "lsoa2011_iod2019_income_children_utla_ruc.csv.gz",
        usecols=["lsoa11cd", "income_score_rate", "urban_rural"],
    )
    j = table.merge(merged, left_on="lsoa", right_on="lsoa11cd")
    assert (j["income"] - j["income_score_rate"]).abs().max() < 1e-9
    assert (j["rural"] == (j["urban_rural"] == "Rural")).all()


@needs_shared
def test_real_mangled_copy_names_each_problem(tmp_path, capsys):
    copy = tmp_path / "shared"
    for rel in ("iod2019", "la_lookups", "ruc2011"):
        shutil.copytree(SHARED / rel, copy / rel, ignore=shutil.ignore_patterns("*.md"))
    f1 = next((copy / "iod2019").glob("File_1*"))
    _corrupt_gz(f1, "E01000002", "1.00E+05")
    lk = copy / "la_lookups" / "ons_LTLA19_to_UTLA19_Apr2019_EW.csv"
    lk.write_text(lk.read_text().replace("UTLA19NM", "UTLA_NAME"))
    assert cli.main(["data", "build", str(copy), "--out", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err
    assert "excel_mangled_code" in err
    assert "'1.00E+05'" in err
    assert "File 1" in err
    assert "missing_column" in err
    assert "UTLA19NM" in err
