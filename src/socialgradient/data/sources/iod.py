"""Readers for the English Indices of Deprivation 2019 (MHCLG), LSOA 2011 level.

Each reader takes one file exactly as published (CSV, optionally gzipped, column names as in
the release) and returns one row per LSOA with these columns where the file has them:

``lsoa``, ``lsoa_name``
    LSOA 2011 code and name.
``lad``, ``lad_name``
    local authority district (2019) code and name (lower tier, 317 in England).
``imd_rank``, ``imd_decile``, ``income_rank``, ``idaci_rank``, ``idaci_decile``
    ranks (1 = most deprived of 32,844) and deciles (1 = most deprived 10%).
``income``
    Income Deprivation Domain score (rate): the **share 0-1** of the population
    income-deprived (File 5/7 ``Income Score (rate)``).
``idaci``
    IDACI score (rate): share 0-1 of children aged 0-15 living in income-deprived families.
``pop_total``, ``children``, ``pop_16_59``, ``pop_60plus``, ``pop_working_age``
    mid-2015 population denominators, persons, excluding prisoners (File 6/7);
    ``children`` = dependent children aged 0-15.

Files 1, 2, 3 and 6 are what ``shared/data/iod2019`` holds; Files 5 and 7 (scores) are read
by their published column names. Where neither is available, :func:`read_mysociety_scores`
reads the income score from mySociety's ``GB_IMD_E`` file (England rows, stored x 100).
Contains public sector information licensed under the Open Government Licence v3.0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from socialgradient.data.schema import fail
from socialgradient.data.sources.base import read_layout

_CODES = {
    "LSOA code (2011)": ("lsoa", "lsoa"),
    "LSOA name (2011)": ("lsoa_name", "str"),
    "Local Authority District code (2019)": ("lad", "la"),
    "Local Authority District name (2019)": ("lad_name", "str"),
}
_RANK = {"low": 1, "high": 32844}
_DECILE = {"low": 1, "high": 10}
_RATE = {"low": 0.0, "high": 1.0}
_COUNT = {"low": 0}
_MOST = " (where 1 is most deprived)"
_TENTH = " (where 1 is most deprived 10% of LSOAs)"
_POP = {
    "Total population: mid 2015 (excluding prisoners)": ("pop_total", "number", _COUNT),
    "Dependent Children aged 0-15: mid 2015 (excluding prisoners)": ("children", "number", _COUNT),
    "Population aged 16-59: mid 2015 (excluding prisoners)": ("pop_16_59", "number", _COUNT),
    "Older population aged 60 and over: mid 2015 (excluding prisoners)": (
        "pop_60plus",
        "number",
        _COUNT,
    ),
    "Working age population 18-59/64: for use with Employment Deprivation Domain "
    "(excluding prisoners)": ("pop_working_age", "number", _COUNT),
}
_IDACI = "Income Deprivation Affecting Children Index (IDACI)"

#: Published layouts: {published column: (our column, kind, options)}.
LAYOUTS: dict[int, dict[str, tuple[Any, ...]]] = {
    1: {
        **_CODES,
        "Index of Multiple Deprivation (IMD) Rank": ("imd_rank", "number", _RANK),
        "Index of Multiple Deprivation (IMD) Decile": ("imd_decile", "number", _DECILE),
    },
    2: {
        **_CODES,
        "Index of Multiple Deprivation (IMD) Rank" + _MOST: ("imd_rank", "number", _RANK),
        "Index of Multiple Deprivation (IMD) Decile" + _TENTH: ("imd_decile", "number", _DECILE),
        "Income Rank" + _MOST: ("income_rank", "number", _RANK),
        "Income Decile" + _TENTH: ("income_decile", "number", _DECILE),
    },
    3: {
        **_CODES,
        f"{_IDACI} Rank" + _MOST: ("idaci_rank", "number", _RANK),
        f"{_IDACI} Decile" + _TENTH: ("idaci_decile", "number", _DECILE),
    },
    5: {
        **_CODES,
        "Index of Multiple Deprivation (IMD) Score": ("imd_score", "number", {"low": 0}),
        "Income Score (rate)": ("income", "number", _RATE),
        f"{_IDACI} Score (rate)": ("idaci", "number", _RATE),
    },
    6: {**_CODES, **_POP},
    7: {
        **_CODES,
        "Index of Multiple Deprivation (IMD) Score": ("imd_score", "number", {"low": 0}),
        "Index of Multiple Deprivation (IMD) Rank" + _MOST: ("imd_rank", "number", _RANK),
        "Income Score (rate)": ("income", "number", _RATE),
        "Income Rank" + _MOST: ("income_rank", "number", _RANK),
        f"{_IDACI} Score (rate)": ("idaci", "number", _RATE),
        f"{_IDACI} Rank" + _MOST: ("idaci_rank", "number", _RANK),
        f"{_IDACI} Decile" + _TENTH: ("idaci_decile", "number", _DECILE),
        **_POP,
    },
}

#: File names as published (File 3 as converted from the official xlsx).
FILE_NAMES = {
    1: "File_1_-_IMD2019_Index_of_Multiple_Deprivation.csv",
    2: "File_2_-_IoD2019_Domains_of_Deprivation.csv",
    3: "File_3_-_IoD2019_Supplementary_Indices_-_IDACI_and_IDAOPI.csv",
    5: "File_5_-_IoD2019_Scores.csv",
    6: "File_6_-_IoD2019_Population_Denominators.csv",
    7: "File_7_-_All_IoD2019_Scores__Ranks__Deciles_and_Population_Denominators_3.csv",
}
MYSOCIETY_NAME = "mysociety_GB_IMD_E.csv"


#: Published columns a file may lack (read as missing): the score files' ranks and names.
OPTIONAL = {
    n: [
        c
        for c, (name, *_) in LAYOUTS[n].items()
        if name.endswith(("_rank", "_decile", "_name", "imd_score"))
    ]
    for n in (5, 7)
}


def read_iod_file(path, number: int) -> pd.DataFrame:
    """Read IoD2019 File ``number`` (1, 2, 3, 5, 6 or 7) as published; one row per LSOA."""
    if number not in LAYOUTS:
        raise ValueError(f"IoD2019 File {number} has no reader; choose from {sorted(LAYOUTS)}")
    return read_layout(
        path, LAYOUTS[number], f"IoD2019 File {number}", optional=OPTIONAL.get(number, ())
    )


def read_mysociety_scores(path) -> pd.DataFrame:
    """IoD2019 IMD and income scores from mySociety's ``GB_IMD_E`` (England rows).

    Returns ``lsoa``, ``imd_score`` and ``income`` (the IoD2019 Income Score (rate), a share
    0-1: the file stores it x 100, divided here).
    """
    layout = {
        "nation": ("nation", "str"),
        "lsoa": ("lsoa", "lsoa"),
        "overall_local_score": ("imd_score", "number", {"low": 0}),
        "income_score": ("income", "number", {"low": 0, "high": 100}),
    }
    t = read_layout(path, layout, "mySociety GB_IMD_E", rows=lambda raw: raw["nation"] == "E")
    t["income"] = t["income"] / 100.0
    return t.drop(columns="nation")


def find_file(folder, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists (None if neither)."""
    for candidate in (Path(folder) / name, Path(folder) / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def read_iod(folder) -> pd.DataFrame:
    """Join the IoD2019 files found in ``folder`` into one row per LSOA.

    Uses File 7 when present; otherwise File 1 (codes), File 6 (denominators), File 3
    (IDACI rank), File 2 (income rank) and the income score from File 5 or, failing that,
    mySociety's file. ``attrs['sources']`` lists the files used. ``idaci`` (the IDACI score)
    is missing unless File 5 or 7 is present.

    Raises
    ------
    InputError
        ``file_not_found`` naming the files looked for; ``lsoa_mismatch`` when files do not
        cover the same LSOAs or disagree on an LSOA's district; or any reader's error.
    """
    folder = Path(folder)
    f7 = find_file(folder, FILE_NAMES[7])
    if f7 is not None:
        table = read_iod_file(f7, 7)
        table.attrs["sources"] = [str(f7)]
        return table
    paths = {n: find_file(folder, FILE_NAMES[n]) for n in (1, 6)}
    lost = [FILE_NAMES[n] for n, p in paths.items() if p is None]
    if lost:
        raise fail(
            "file_not_found",
            f"IoD2019: {lost} (or .gz) not found in {str(folder)!r}; "
            f"need File 7, or Files 1 and 6 plus an income score",
        )
    table = read_iod_file(paths[1], 1)
    used = [str(paths[1])]
    score = find_file(folder, FILE_NAMES[5])
    extra: list[tuple[int | str, Path | None]] = [
        (6, paths[6]),
        (3, find_file(folder, FILE_NAMES[3])),
        (2, find_file(folder, FILE_NAMES[2])),
    ]
    if score is not None:
        extra.append((5, score))
    else:
        mys = find_file(folder, MYSOCIETY_NAME)
        if mys is None:
            raise fail(
                "file_not_found",
                f"IoD2019: no income score in {str(folder)!r}: need "
                f"{FILE_NAMES[5]}, {FILE_NAMES[7]} or {MYSOCIETY_NAME} (or .gz)",
            )
        extra.append(("mySociety", mys))
    for number, path in extra:
        if path is None:
            continue
        other = (
            read_iod_file(path, number) if isinstance(number, int) else read_mysociety_scores(path)
        )
        table = _join(table, other, str(path))
        used.append(str(path))
    if "idaci" not in table.columns:
        table["idaci"] = float("nan")  # the IDACI score is only in Files 5 and 7
    table.attrs["sources"] = used
    return table


def _join(left: pd.DataFrame, right: pd.DataFrame, where: str) -> pd.DataFrame:
    a, b = set(left["lsoa"]), set(right["lsoa"])
    if a != b:
        only_l, only_r = sorted(a - b), sorted(b - a)
        raise fail(
            "lsoa_mismatch",
            f"IoD2019: {where} covers different LSOAs: "
            f"{len(only_l)} missing from it (e.g. {only_l[:5]}), {len(only_r)} extra "
            f"(e.g. {only_r[:5]})",
        )
    new = [c for c in right.columns if c not in left.columns or c == "lsoa"]
    merged = left.merge(right[new], on="lsoa", how="left", validate="one_to_one")
    if "lad" in right.columns and right["lad"].notna().all():
        lad = right.set_index("lsoa")["lad"].reindex(merged["lsoa"]).to_numpy(object)
        diff = merged["lad"].to_numpy(object) != lad
        if diff.any():
            rows = diff.nonzero()[0]
            raise fail(
                "lsoa_mismatch",
                f"IoD2019: {where} puts {len(rows)} LSOAs in another "
                f"district, e.g. {list(merged['lsoa'].iloc[rows[:5]])}",
                rows,
                ["lad"],
            )
    return merged
