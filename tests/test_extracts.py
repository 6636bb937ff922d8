"""Flat child-level extracts with a column mapping: round trip, corrupted rows, errors, CLI."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest

from sets import assert_release_clean
from socialgradient import cli
from socialgradient.data import schema
from socialgradient.data.census import extracts, linkage
from socialgradient.data.schema import InputError
from socialgradient.data.synthetic import england
from socialgradient.data.synthetic.records import simulate_records
from socialgradient.util import outputs

MAPPING = Path(__file__).resolve().parents[1] / "models" / "mappings" / "example_extract.toml"


@pytest.fixture(scope="module")
def recs():
    # 40 of the synthetic England's LAs (every path of the 150, in a third of the time)
    geo = england.simulate(seed=4, scale=0.05).table
    geo = geo[geo["la"].isin(geo["la"].unique()[:40])]
    return simulate_records(seed=4, years=(2019,), geography=geo)


@pytest.fixture(scope="module")
def mapping():
    return tomllib.loads(MAPPING.read_text())


def local_extract(recs, m) -> pd.DataFrame:
    """The records as an LA's flat extract: local column names, codes and date format."""
    cols = m["columns"]
    f = extracts.flat_table(recs).rename(columns=cols)
    for c in extracts.DATES:
        f[cols[c]] = pd.to_datetime(f[cols[c]]).dt.strftime("%d/%m/%Y")
    for field, values in m["values"].items():
        back = {v: k for k, v in values.items()}
        s = f[cols[field]]
        s = s.map({True: "true", False: "false"}) if s.dtype == bool else s
        f[cols[field]] = s.map(lambda v, b=back: b.get(v, v))
    f[cols["factors"]] = f[cols["factors"]].str.replace(",", ";")
    return f


@pytest.fixture(scope="module")
def extract_csv(recs, mapping, tmp_path_factory):
    path = tmp_path_factory.mktemp("extract") / "extract.csv"
    local_extract(recs, mapping).to_csv(path, index=False)
    return path


def test_mapped_extract_aggregates_like_the_records(recs, extract_csv):
    back, read = extracts.read_extract(extract_csv, MAPPING, recs.geography, recs.population)
    assert read.episodes == read.passed == len(recs.episodes)
    a, ra = linkage.aggregate(recs)
    b, rb = linkage.aggregate(back)
    assert rb.to_dict() == ra.to_dict()
    cols = [c for c in a.columns if c != "rereferrals"]  # derived from history: none here
    pd.testing.assert_frame_equal(a[cols], b[cols], check_dtype=False)


def test_corrupted_rows_reach_the_linkage_report(recs, mapping, tmp_path):
    cols = mapping["columns"]
    f = local_extract(recs, mapping)
    # rows of children with one episode in the extract (a child can have several)
    k = f.index[~f[cols["child_id"]].duplicated(keep=False)]
    la0 = f.loc[k[2], cols["la"]]
    other = recs.geography.loc[recs.geography["la"] != la0, "lsoa"].iloc[0]
    f.loc[k[0], cols["lsoa"]] = ""  # blank LSOA
    f.loc[k[2], cols["lsoa"]] = other  # LSOA in another LA
    f = pd.concat([f, f.loc[[k[5]]]], ignore_index=True)  # the same episode twice
    path = tmp_path / "bad.csv"
    f.to_csv(path, index=False)
    back, read = extracts.read_extract(path, MAPPING, recs.geography, recs.population)
    assert read.passed == read.episodes == len(f)
    _, report = linkage.link(back)
    assert report.read == len(f)
    assert report.unlinked["missing_lsoa"] == 1
    assert report.unlinked["la_mismatch"] == 1
    assert report.unlinked["duplicate_episode"] == 1
    assert report.linked == len(f) - 3
    bad = report.unlinked_records.set_index("reason")["child_id"]
    ids = f[cols["child_id"]]
    assert bad["missing_lsoa"].endswith(ids[k[0]])
    assert bad["la_mismatch"].endswith(ids[k[2]])
    assert bad["duplicate_episode"].endswith(ids[k[5]])


def test_mapping_problems_name_the_columns(recs, mapping, extract_csv):
    m = {k: dict(v) for k, v in mapping.items()}
    m["columns"]["lsoa"] = "LSOA Code"
    with pytest.raises(InputError) as err:
        extracts.read_extract(extract_csv, m, recs.geography)
    assert err.value.rule == "unknown_column"
    assert "LSOA Code" in str(err.value)
    del m["columns"]["lsoa"]
    with pytest.raises(InputError) as err:
        extracts.read_extract(extract_csv, m, recs.geography)
    assert err.value.rule == "missing_mapping"
    assert "lsoa" in str(err.value)
    m["columns"]["postcode"] = "PC"
    with pytest.raises(InputError) as err:
        extracts.read_extract(extract_csv, m, recs.geography)
    assert err.value.rule == "unknown_field"


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("Ref Date", "2019-02-30", "bad_date"),
        ("Abuse Category", "Bullying", "unknown_code"),
        ("CHILD_REF", "", "missing_value"),
    ],
)
def test_value_problems_raise_or_are_reported(recs, mapping, tmp_path, column, value, rule):
    f = local_extract(recs, mapping).head(200)
    f.loc[7, column] = value
    path = tmp_path / "x.csv"
    f.to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        extracts.read_extract(path, MAPPING, recs.geography)
    assert err.value.rule == rule
    assert err.value.rows == [7]
    assert column in str(err.value)
    back, read = extracts.read_extract(path, MAPPING, recs.geography, errors="report")
    assert read.excluded[rule] == 1
    assert read.passed == 199
    assert read.excluded_records["line"].tolist() == [7]
    assert len(back.episodes) == 199


def test_parquet_extract_and_cli(recs, mapping, tmp_path, capsys):
    path = tmp_path / "extract.parquet"
    local_extract(recs, mapping).to_parquet(path)
    geo = tmp_path / "geo.parquet"
    recs.geography.to_parquet(geo)
    pop = tmp_path / "pop.parquet"
    recs.population.to_parquet(pop)
    out = tmp_path / "t"
    args = [
        "census",
        "extract",
        str(path),
        "--mapping",
        str(MAPPING),
        "--geography",
        str(geo),
        "--population",
        str(pop),
        "--by",
        "age_band",
        "--out",
        str(out),
        "--report",
        str(tmp_path / "r.json"),
        "--override",
        "model input (test)",
    ]
    assert cli.main(args) == 0
    assert outputs.verify(out)["command"] == "census extract"
    t = schema.load(out, ["referrals"], "age_band")  # the set's internal/neighbourhoods.parquet
    assert t["referrals"].sum() == len(recs.children)  # children, not episodes
    assert_release_clean(out, t["lsoa"], ["referrals"])
    assert (out / "release" / "counts_by_la.csv").exists()
    args[4] = str(tmp_path / "nope.toml")
    assert cli.main(args) == 2
    assert "bad_mapping" in capsys.readouterr().err


def test_impossible_dates_closures_and_periods_in_an_extract(recs, mapping, tmp_path):
    """The XML reader's rules (issue 27) hold for extracts: a year-0001 date is bad_date, a
    closure before its referral closure_before_referral, a referral outside the collection
    period of the extract's year outside_period (always excluded, never counted)."""
    cols = mapping["columns"]
    f = local_extract(recs, mapping).head(200)
    f.loc[3, cols["date_of_birth"]] = "01/01/0001"
    path = tmp_path / "x.csv"
    f.to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        extracts.read_extract(path, MAPPING, recs.geography)
    assert (err.value.rule, err.value.rows) == ("bad_date", [3])
    f = local_extract(recs, mapping).head(200)
    ref = pd.to_datetime(f.loc[5, cols["referral_date"]], format="%d/%m/%Y")
    f.loc[5, cols["closure_date"]] = (ref - pd.Timedelta(days=3)).strftime("%d/%m/%Y")
    f.to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        extracts.read_extract(path, MAPPING, recs.geography)
    assert (err.value.rule, err.value.rows) == ("closure_before_referral", [5])
    assert "before referral_date" in str(err.value)
    _, read = extracts.read_extract(path, MAPPING, recs.geography, errors="report")
    assert (read.excluded["closure_before_referral"], read.passed) == (1, 199)
    m = {k: dict(v) for k, v in mapping.items()}
    m["extract"]["year"] = 2019
    f = local_extract(recs, mapping).head(200)
    f.loc[[8, 9], cols["referral_date"]] = ["01/06/2017", "01/06/2019"]  # before, after
    f.loc[[8, 9], cols["closure_date"]] = None
    f.to_csv(path, index=False)
    back, read = extracts.read_extract(path, m, recs.geography)
    assert (read.excluded["outside_period"], read.passed) == (2, 198)
    assert len(back.episodes) == 198
    assert read.episodes == read.passed + sum(read.excluded.values())
