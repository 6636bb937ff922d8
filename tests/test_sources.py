"""Readers of the public source files: synthetic fixtures in the published layouts, and the
real copies in ../shared/data when present."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from socialgradient.data import sources
from socialgradient.data.schema import InputError
from socialgradient.data.sources.iod import FILE_NAMES, LAYOUTS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="shared/data not present")

# (lsoa, lad19, lad19 name, utla19, utla19 name, children, income, ruc)
AREAS = [
    ("E01000001", "E06000052", "Cornwall", "E06000052", "Cornwall", 300, 0.12, "E1"),
    ("E01000002", "E06000052", "Cornwall", "E06000052", "Cornwall", 1250, 0.20, "D1"),
    ("E01000003", "E06000053", "Isles of Scilly", "E06000053", "Isles of Scilly", 150, 0.05, "E2"),
    ("E01000004", "E09000012", "Hackney", "E09000012", "Hackney", 400, 0.30, "A1"),
    ("E01000005", "E09000012", "Hackney", "E09000012", "Hackney", 420, 0.35, "A1"),
    ("E01000006", "E09000001", "City of London", "E09000001", "City of London", 175, 0.007, "A1"),
    ("E01000007", "E07000150", "Corby", "E10000021", "Northamptonshire", 310, 0.15, "C1"),
    ("E01000008", "E07000150", "Corby", "E10000021", "Northamptonshire", 280, 0.18, "C1"),
    ("E01000009", "E07000154", "Northampton", "E10000021", "Northamptonshire", 330, 0.22, "C1"),
    ("E01000010", "E07000154", "Northampton", "E10000021", "Northamptonshire", 290, 0.09, "C1"),
    ("E01000011", "E08000025", "Birmingham", "E08000025", "Birmingham", 500, 0.40, "A1"),
    ("E01000012", "E08000025", "Birmingham", "E08000025", "Birmingham", 450, 0.33, "A1"),
    ("E01000013", "E08000025", "Birmingham", "E08000025", "Birmingham", 380, 0.25, "A1"),
]
RUC_LABELS = sources.RUC_CLASSES


def _write(path: Path, table: pd.DataFrame, bom=False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = table.to_csv(index=False)
    data = (("\ufeff" if bom else "") + text).encode("utf-8")
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def _thousands(n) -> str:
    return f"{int(n):,}"


def _iod_frame(number: int, areas=AREAS) -> pd.DataFrame:
    """A File ``number`` in its published layout with plausible values."""
    n = len(areas)
    base = {
        "LSOA code (2011)": [a[0] for a in areas],
        "LSOA name (2011)": [f"{a[2]} {i:03d}A" for i, a in enumerate(areas)],
        "Local Authority District code (2019)": [a[1] for a in areas],
        "Local Authority District name (2019)": [a[2] for a in areas],
    }
    rank = [_thousands(1000 + 997 * i) for i in range(n)]
    decile = [1 + i % 10 for i in range(n)]
    values = {
        "imd_rank": rank,
        "imd_decile": decile,
        "income_rank": rank,
        "income_decile": decile,
        "idaci_rank": rank,
        "idaci_decile": decile,
        "income": [a[6] for a in areas],
        "idaci": [min(1, a[6] * 1.3) for a in areas],
        "imd_score": [30 * a[6] + 5 for a in areas],
        "children": [_thousands(a[5]) for a in areas],
        "pop_total": [_thousands(a[5] * 5) for a in areas],
        "pop_16_59": [a[5] * 3 for a in areas],
        "pop_60plus": [a[5] for a in areas],
        "pop_working_age": [a[5] * 3 for a in areas],
    }
    cols = dict(base)
    for published, (name, *_) in LAYOUTS[number].items():
        if published not in cols:
            cols[published] = values[name]
    return pd.DataFrame(cols)


def make_shared(root: Path, areas=AREAS) -> Path:
    """A miniature shared/data folder: every file the build reads, published layouts."""
    iod = root / "iod2019"
    for number in (1, 2, 3, 6):
        suffix = ".gz" if number != 3 else ""
        _write(iod / (FILE_NAMES[number] + suffix), _iod_frame(number, areas), bom=number != 3)
    mys = pd.DataFrame(
        {
            "nation": ["E"] * len(areas) + ["W"],
            "lsoa": [a[0] for a in areas] + ["W01000240"],
            "overall_local_score": [30 * a[6] + 5 for a in areas] + [86.6],
            "income_score": [a[6] * 100 for a in areas] + [61.0],
            "employment_score": [10.0] * (len(areas) + 1),
        }
    )
    _write(iod / "mysociety_GB_IMD_E.csv.gz", mys)
    lk = root / "la_lookups"
    _write(
        lk / "ons_LSOA11_to_LAD19_IMD19_lookup_Dec2019_EN.csv.gz",
        pd.DataFrame(
            {
                "LSOA11CD": [a[0] for a in areas],
                "LSOA11NM": ["x"] * len(areas),
                "LAD19CD": [a[1] for a in areas],
                "LAD19NM": [a[2] for a in areas],
                "IMD19": range(1, len(areas) + 1),
                "FID": range(1, len(areas) + 1),
            }
        ),
    )
    lads = sorted({(a[1], a[2], a[3], a[4]) for a in areas})
    _write(
        lk / "ons_LTLA19_to_UTLA19_Apr2019_EW.csv",
        pd.DataFrame(
            {
                "FID": range(1, len(lads) + 2),
                "LTLA19CD": [x[0] for x in lads] + ["W06000001"],
                "LTLA19NM": [x[1] for x in lads] + ["Isle of Anglesey"],
                "UTLA19CD": [x[2] for x in lads] + ["W06000001"],
                "UTLA19NM": [x[3] for x in lads] + ["Isle of Anglesey"],
            }
        ),
    )
    _write(
        lk / "ons_LSOA11_to_UTLA19_bestfit_EW.csv.gz",
        pd.DataFrame(
            {
                "FID": range(1, len(areas) + 1),
                "LSOA11CD": [a[0] for a in areas],
                "LSOA11NM": ["x"] * len(areas),
                "UTLA19CD": [a[3] for a in areas],
                "UTLA19NM": [a[4] for a in areas],
            }
        ),
    )
    _write(
        root / "ruc2011" / "ons_RUC11_LSOA11_EW.csv.gz",
        pd.DataFrame(
            {
                "LSOA11CD": [a[0] for a in areas] + ["W01000001"],
                "LSOA11NM": ["x"] * (len(areas) + 1),
                "RUC11CD": [a[7] for a in areas] + ["E1"],
                "RUC11": [RUC_LABELS[a[7]] for a in areas] + [RUC_LABELS["E1"]],
            }
        ),
    )
    return root


DFE_META = [
    "time_period",
    "time_identifier",
    "geographic_level",
    "country_code",
    "country_name",
    "region_code",
    "region_name",
    "old_la_code",
    "new_la_code",
    "la_name",
]


def dfe_referrals(rows=None) -> pd.DataFrame:
    """A C1 referrals table: National + 2 LAs x 2 years, with suppressed cells."""
    rows = rows or [
        ("2019", "National", "", "", "", "650930", "x"),
        ("2019", "Local authority", "201", "E09000001", "City of London", "c", "c"),
        ("2019", "Local authority", "204", "E09000012", "Hackney", "3,050", "610"),
        ("201920", "Local authority", "204", "E09000012", "Hackney", "2990", "low"),
    ]
    out = []
    for year, level, old, new, name, ref, reref in rows:
        out.append(
            [
                year,
                "Reporting year",
                level,
                "E92000001",
                "England",
                "E13000001" if level != "National" else "",
                "Inner London" if level != "National" else "",
                old,
                new,
                name,
                "Referrals and Re-referrals",
                ref,
                reref,
            ]
        )
    return pd.DataFrame(out, columns=[*DFE_META, "category", "referral_count", "rereferral_count"])


# --- IoD2019 -----------------------------------------------------------------------------


def test_iod_files_read_as_published(tmp_path):
    shared = make_shared(tmp_path)
    t = sources.read_iod(shared / "iod2019")
    assert len(t) == len(AREAS)
    assert t["lsoa"].is_unique
    assert t["children"].tolist() == [a[5] for a in AREAS]  # "1,250" (thousands) parsed
    np.testing.assert_allclose(t["income"], [a[6] for a in AREAS])  # mySociety x100 / 100
    assert t["income"].between(0, 1).all()
    assert t["idaci"].isna().all()
    assert {"lad", "imd_rank", "idaci_rank", "pop_total"} <= set(t.columns)
    f1 = sources.read_iod_file(shared / "iod2019" / (FILE_NAMES[1] + ".gz"), 1)
    assert f1["imd_rank"].iloc[1] == 1997  # "1,997"


def test_iod_file7_is_preferred_and_gives_idaci(tmp_path):
    folder = tmp_path / "iod"
    _write(folder / FILE_NAMES[7], _iod_frame(7))
    t = sources.read_iod(folder)
    assert t.attrs["sources"] == [str(folder / FILE_NAMES[7])]
    np.testing.assert_allclose(t["idaci"], [min(1, a[6] * 1.3) for a in AREAS])
    assert t["children"].iloc[1] == 1250


def test_iod_missing_column_names_expected_and_found(tmp_path):
    path = _write(
        tmp_path / "f6.csv",
        _iod_frame(6).drop(columns="Dependent Children aged 0-15: mid 2015 (excluding prisoners)"),
    )
    with pytest.raises(InputError) as err:
        sources.read_iod_file(path, 6)
    assert err.value.rule == "missing_column"
    assert "Dependent Children aged 0-15" in err.value.message
    assert "expected columns" in err.value.message
    assert "found columns" in err.value.message


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("E1000002", "excel_mangled_code"),
        ("1.00E+05", "excel_mangled_code"),
        ("E01000002.0", "excel_mangled_code"),
        (" E01000002", "malformed_lsoa"),
        ("S01000002", "malformed_lsoa"),
        ("", "missing_value"),
    ],
)
def test_iod_bad_codes(tmp_path, code, rule):
    frame = _iod_frame(1)
    frame.loc[1, "LSOA code (2011)"] = code
    path = _write(tmp_path / "f1.csv", frame)
    with pytest.raises(InputError) as err:
        sources.read_iod_file(path, 1)
    assert err.value.rule == rule
    assert err.value.rows == [1]
    assert "IoD2019 File 1" in err.value.message


@pytest.mark.parametrize(
    ("value", "rule"),
    [("", "missing_value"), ("abc", "non_numeric"), ("-3", "out_of_range"), ("inf", "non_numeric")],
)
def test_iod_bad_numbers(tmp_path, value, rule):
    frame = _iod_frame(6)
    frame.loc[2, "Dependent Children aged 0-15: mid 2015 (excluding prisoners)"] = value
    path = _write(tmp_path / "f6.csv", frame)
    with pytest.raises(InputError) as err:
        sources.read_iod_file(path, 6)
    assert err.value.rule == rule
    assert err.value.rows == [2]


def test_iod_income_rate_out_of_range(tmp_path):
    frame = _iod_frame(7)
    frame.loc[0, "Income Score (rate)"] = 12.0  # a percentage, not a rate
    with pytest.raises(InputError) as err:
        sources.read_iod_file(_write(tmp_path / "f7.csv", frame), 7)
    assert err.value.rule == "out_of_range"


def test_iod_duplicates_and_files(tmp_path):
    frame = _iod_frame(1)
    frame.loc[3, "LSOA code (2011)"] = frame.loc[2, "LSOA code (2011)"]
    with pytest.raises(InputError) as err:
        sources.read_iod_file(_write(tmp_path / "f1.csv", frame), 1)
    assert err.value.rule == "duplicate_lsoa"
    assert err.value.rows == [2, 3]
    with pytest.raises(InputError) as err:
        sources.read_iod_file(tmp_path / "nope.csv", 1)
    assert err.value.rule == "file_not_found"
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(InputError) as err:
        sources.read_iod_file(tmp_path / "empty.csv", 1)
    assert err.value.rule == "empty_file"
    (tmp_path / "latin.csv").write_bytes("LSOA code (2011)\n\xe9\n".encode("latin-1"))
    with pytest.raises(InputError) as err:
        sources.read_iod_file(tmp_path / "latin.csv", 1)
    assert err.value.rule == "undecodable"
    with pytest.raises(InputError) as err:
        sources.read_iod(tmp_path / "no_such_folder")
    assert err.value.rule == "file_not_found"


def test_iod_files_must_cover_the_same_lsoas(tmp_path):
    folder = make_shared(tmp_path) / "iod2019"
    _write(folder / (FILE_NAMES[6] + ".gz"), _iod_frame(6, AREAS[:-1]), bom=True)
    with pytest.raises(InputError) as err:
        sources.read_iod(folder)
    assert err.value.rule == "lsoa_mismatch"
    assert "E01000013" in err.value.message


# --- geography ---------------------------------------------------------------------------


def test_lookups_and_ruc(tmp_path):
    shared = make_shared(tmp_path)
    lk = sources.read_ltla_utla(shared / "la_lookups" / "ons_LTLA19_to_UTLA19_Apr2019_EW.csv")
    assert lk.attrs["year"] == 2019
    assert "W06000001" in set(lk["lad"])
    ruc = sources.read_ruc(shared / "ruc2011" / "ons_RUC11_LSOA11_EW.csv.gz")
    assert ruc.set_index("lsoa")["rural"].to_dict()["E01000002"]  # D1
    assert not ruc.set_index("lsoa")["rural"].to_dict()["E01000007"]  # C1
    bad = pd.read_csv(shared / "ruc2011" / "ons_RUC11_LSOA11_EW.csv.gz", dtype=str)
    bad.loc[4, "RUC11CD"] = "F9"
    with pytest.raises(InputError) as err:
        sources.read_ruc(_write(tmp_path / "ruc.csv", bad))
    assert err.value.rule == "unknown_category"
    assert err.value.rows == [4]


def test_children_services_la_merges_and_splits():
    lad = pd.Series(
        [
            "E06000053",
            "E09000001",
            "E07000150",
            "E07000154",
            "E07000026",
            "E07000030",
            "E10000002x"[:9],
            "E06000028",
        ]
    )
    utla = pd.Series(
        [
            "E06000053",
            "E09000001",
            "E10000021",
            "E10000021",
            "E10000006",
            "E10000006",
            "E10000002",
            "E06000028",
        ]
    )
    la, applied = sources.children_services_la(lad, utla, 2025)
    assert la.tolist() == [
        "E06000052",
        "E09000012",
        "E06000061",
        "E06000062",
        "E06000063",
        "E06000064",
        "E06000060",
        "E06000058",
    ]
    kinds = {(a["old"], a["new"]): (a["kind"], a["rows"]) for a in applied}
    assert kinds[("E06000053", "E06000052")] == ("dfe_merge", 1)
    assert kinds[("E10000021", "E06000061")] == ("reorganisation", 1)
    la21, _ = sources.children_services_la(lad, utla, 2021, merges=())
    assert la21.tolist()[:6] == [
        "E06000053",
        "E09000001",
        "E10000021",
        "E10000021",
        "E10000006",
        "E10000006",
    ]
    assert la21.iloc[6] == "E06000060"  # Buckinghamshire unitary from DfE year 2021
    with pytest.raises(InputError) as err:
        sources.children_services_la(lad, utla, 2015)
    assert err.value.rule == "unsupported_year"


# --- DfE ---------------------------------------------------------------------------------


def test_dfe_suppressed_cells_kept_and_flagged(tmp_path):
    path = _write(
        tmp_path / "c1_children_in_need_referrals_and_rereferrals_2013_to_2025.csv", dfe_referrals()
    )
    t = sources.read_dfe_table(path)  # table guessed from the file name
    assert len(t) == 3 * 2  # 3 LA rows x 2 measures; the national row is another level
    assert set(t["table"]) == {"referrals"}
    city = t[t["la"] == "E09000001"]
    assert city["suppressed"].all()
    assert city["value"].isna().all()
    assert city["marker"].tolist() == ["c", "c"]
    hack = t[(t["la"] == "E09000012")].set_index(["year", "measure"])
    assert hack.loc[(2019, "referral_count"), "value"] == 3050
    assert hack.loc[(2020, "rereferral_count"), "marker"] == "low"  # 201920 -> year 2020
    assert not t.loc[t["value"].notna(), "suppressed"].any()
    nat = sources.read_dfe_table(path, "referrals", level="National")
    assert nat["la"].tolist() == ["E92000001"] * 2
    assert nat["suppressed"].sum() == 1


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("referral_count", "", "missing_value"),
        ("referral_count", "n/a", "non_numeric"),
        ("old_la_code", "204.0", "excel_mangled_code"),
        ("new_la_code", "E9000012", "excel_mangled_code"),
        ("time_period", "2019-20", "malformed_year"),
    ],
)
def test_dfe_bad_cells(tmp_path, column, value, rule):
    frame = dfe_referrals()
    frame.loc[2, column] = value
    with pytest.raises(InputError) as err:
        sources.read_dfe_table(_write(tmp_path / "c1.csv", frame), "referrals")
    assert err.value.rule == rule
    assert "c1.csv" in err.value.message


def test_dfe_duplicates_missing_columns_population_and_cla(tmp_path):
    frame = dfe_referrals()
    frame.loc[3, "time_period"] = "2019"
    with pytest.raises(InputError) as err:
        sources.read_dfe_table(_write(tmp_path / "c1.csv", frame), "referrals")
    assert err.value.rule == "duplicate_key"
    with pytest.raises(InputError) as err:
        sources.read_dfe_table(
            _write(tmp_path / "c1.csv", dfe_referrals().drop(columns="new_la_code")), "referrals"
        )
    assert err.value.rule == "missing_column"
    assert "new_la_code" in err.value.message
    pop = (
        dfe_referrals()
        .drop(columns=["category", "rereferral_count"])
        .rename(columns={"referral_count": "population_estimate"})
    )
    pop.insert(10, "age_group", "Children aged 0 to 17 years")
    p = sources.read_population(_write(tmp_path / "pop.csv", pop))
    assert set(p["measure"]) == {"population_estimate"}
    assert p["suppressed"].sum() == 1
    cla = pop.rename(columns={"age_group": "population_type"})
    cla["population_type"] = "Children looked after on 31 March each year"
    cla["children_count"], cla["rate_per_10000"] = "12", "z"
    c = sources.read_dfe_table(_write(tmp_path / "cla.csv", cla), "cla")
    assert "cla_at_31_march_children_count" in set(c["measure"])
    assert c.loc[c["measure"] == "cla_at_31_march_rate_per_10000", "suppressed"].all()
    with pytest.raises(InputError) as err:
        sources.read_dfe_table(tmp_path / "cla.csv")
    assert err.value.rule == "unknown_table"


# --- the real files ----------------------------------------------------------------------


@needs_shared
def test_real_iod_and_geography():
    iod = sources.read_iod(SHARED / "iod2019")
    assert len(iod) == 32844
    assert iod["lad"].nunique() == 317
    assert iod["income"].between(0, 1).all()
    assert iod["children"].sum() == 10_405_050
    for n in (1, 2, 3, 6):
        path = sources.find_file(SHARED / "iod2019", FILE_NAMES[n])
        assert len(sources.read_iod_file(path, n)) == 32844
    ruc = sources.read_ruc(SHARED / "ruc2011" / "ons_RUC11_LSOA11_EW.csv.gz")
    eng = ruc[ruc["lsoa"].str.startswith("E")]
    assert len(eng) == 32844
    assert eng["ruc11cd"].value_counts()["A1"] == 11523
    lk = SHARED / "la_lookups"
    assert (
        len(sources.read_lsoa_lad(lk / "ons_LSOA11_to_LAD19_IMD19_lookup_Dec2019_EN.csv.gz"))
        == 32844
    )


@needs_shared
def test_reorganisation_table_agrees_with_ons_2023_lookup():
    """Every LAD19 that still exists in April 2023 sits in the UTLA our table gives it."""
    lk = SHARED / "la_lookups"
    u19 = sources.read_ltla_utla(lk / "ons_LTLA19_to_UTLA19_Apr2019_EW.csv")
    u23 = sources.read_ltla_utla(lk / "ons_LTLA23_to_UTLA23_Apr2023_EW.csv")
    u19 = u19[u19["lad"].str.startswith("E")]
    la, _ = sources.children_services_la(u19["lad"], u19["utla"], 2024, merges=())
    ours = dict(zip(u19["lad"], la, strict=False))
    ons = dict(zip(u23["lad"], u23["utla"], strict=False))
    common = sorted(set(ours) & set(ons))
    assert len(common) > 250
    assert {c: ours[c] for c in common if ours[c] != ons[c]} == {}
    # the LADs abolished since 2019 are exactly those our table moves by district or whole
    split = {lad for c in sources.REORGANISATIONS if c.lads for lad in c.lads}
    assert split <= set(ours) - set(ons)


@needs_shared
def test_real_dfe_tables_keep_every_cell():
    folder = SHARED / "dfe_csc"
    long = sources.read_dfe_csc(folder)
    assert set(long.attrs["tables"]) == set(sources.DFE_TABLES)
    assert long["suppressed"].sum() > 1000
    assert (long["value"].isna() == long["suppressed"]).all()
    ref = long[(long["measure"] == "referral_count")]
    assert len(ref) == 1976
    assert ref["year"].between(2013, 2025).all()
    raw = pd.read_csv(folder / sources.DFE_TABLES["referrals"][0], dtype=str)
    raw = raw[raw["geographic_level"] == "Local authority"]
    assert len(ref) == len(raw)  # no row lost
    pop = sources.read_population(SHARED / sources.SHARED_FILES["population"])
    assert len(pop) == 1976
    assert pop["suppressed"].sum() == 21


# --- download helper (no network: a file:// URL) -----------------------------------------


def test_download_verifies_checksum(tmp_path):
    from socialgradient.data.sources import download

    src = tmp_path / "src.csv"
    src.write_bytes(b"a,b\n1,2\n")
    url = src.as_uri()
    good = download.sha256_of(src)
    dest = tmp_path / "shared" / "x.csv"
    with pytest.raises(InputError) as err:
        download.fetch(url, dest, "0" * 64)
    assert err.value.rule == "checksum_mismatch"
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no partial file left
    with pytest.raises(InputError) as err:
        download.fetch(url, dest, None)
    assert err.value.rule == "unverified_download"
    assert download.fetch(url, dest, good) == dest
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(InputError) as err:
        download.fetch((tmp_path / "missing.csv").as_uri(), dest, good)
    assert err.value.rule == "download_failed"
    assert all(len(e.sha256 or "0" * 64) == 64 for e in download.REGISTRY.values())


@needs_shared
def test_download_registry_matches_shared_copies():
    from socialgradient.data.sources import download

    for name, e in download.REGISTRY.items():
        if e.sha256 and (SHARED / e.dest).is_file():
            assert download.sha256_of(SHARED / e.dest) == e.sha256, name
