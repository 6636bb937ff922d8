"""LA names, regions and DfE statistical neighbours for the published site and EES data.

The statistical neighbours are DfE's *Children's services statistical neighbour benchmarking
tool, statistical neighbour groupings, April 2021* (Open Government Licence v3.0), shipped
unmodified as ``static/dfe_statistical_neighbours_Apr2021.csv`` (from
``dfe-analytical-services/CSC_outcomes_and_enablers`` @ 2f5d11a4 :
``data-raw/New_Statistical_Neighbour_Groupings_April_2021.csv``; sha256 ``ee9328d1...``):
each LA's 3-digit DfE number, its government office region and its 10 closest neighbours.
ONS codes are joined through :data:`socialgradient.data.census.codes.LA_NUMBERS`; an LA
without a DfE number or without a row there (e.g. created after April 2021) has no
neighbours, which the site says.

DfE's list of LAs as its screener checks them, ``static/dfe_las.csv``, is shipped unmodified
from ``dfe-analytical-services/dfe-published-data-qa`` @ bcc7ca54 : ``data/las.csv`` (MIT
License, Copyright (c) 2020 cjrace: ``static/dfe_las.LICENSE``; sha256 ``8440ae06...``):
each LA's ``new_la_code``, ``old_la_code``, ``la_name`` and region, read by :func:`dfe_las`.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
NEIGHBOURS_FILE = STATIC / "dfe_statistical_neighbours_Apr2021.csv"
DFE_LAS_FILE = STATIC / "dfe_las.csv"
NEIGHBOURS_SOURCE = (
    "DfE, Children's services statistical neighbour benchmarking tool: statistical neighbour "
    "groupings, April 2021 (Open Government Licence v3.0)"
)
#: DfE government office region (as in the neighbour file) -> ONS region code and EES name
REGIONS = {
    "North East": ("E12000001", "North East"),
    "North West": ("E12000002", "North West"),
    "Yorkshire and the Humber": ("E12000003", "Yorkshire and The Humber"),
    "East Midlands": ("E12000004", "East Midlands"),
    "West Midlands": ("E12000005", "West Midlands"),
    "East of England": ("E12000006", "East of England"),
    "London (Inner)": ("E12000007", "London"),
    "London (Outer)": ("E12000007", "London"),
    "South East": ("E12000008", "South East"),
    "South West": ("E12000009", "South West"),
}
REGION_NAMES = dict(REGIONS.values())


@dataclass(frozen=True)
class LAInfo:
    """What the site says of one LA besides its results.

    Attributes
    ----------
    code : str
        ONS code (``new_la_code`` in EES files).
    name : str
        Its name (the code itself where no lookup knows it).
    number : str
        DfE 3-digit LA number (``old_la_code``), ``""`` if unknown.
    region_code, region_name : str
        ONS region, ``""`` if unknown.
    neighbours : tuple of str
        ONS codes of its DfE statistical neighbours, closest first (may be empty).
    dfe_name : str
        Its name in DfE's list of LAs (:func:`dfe_las`; the EES ``la_name``), ``""`` if absent.
    """

    code: str
    name: str
    number: str
    region_code: str
    region_name: str
    neighbours: tuple[str, ...]
    dfe_name: str = ""


@functools.cache
def dfe_las() -> dict[str, tuple[str, str, str]]:
    """DfE's LAs as its screener knows them: ``new_la_code`` -> (old code, name, region)."""
    with open(DFE_LAS_FILE, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        r["new_la_code"]: (r["old_la_code"], r["la_name"], r["parent_geography_code"])
        for r in rows
        if " / " not in r["new_la_code"]  # merged reporting units are listed as "A / B"
    }


@functools.cache
def _neighbour_rows() -> dict[str, list[str]]:
    with open(NEIGHBOURS_FILE, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    if header[:5] != ["LA num", "LA Name", "LA number", "GOInd", "GOReg"]:
        raise ValueError(f"{NEIGHBOURS_FILE.name}: unexpected header {header[:5]}")
    return {r[0].strip(): r for r in rows[1:] if r and r[0].strip()}


@functools.cache
def _names() -> dict[str, str]:
    """ONS code -> name from the package's LA table and the reorganisation tables."""
    import pandas as pd

    from socialgradient.data.sources.geo import la_names
    from socialgradient.resources import path

    names: dict[str, str] = {}
    las = path("data", "las.parquet")
    if las.is_file():
        t = pd.read_parquet(las, columns=["la", "la_name"])
        names.update(zip(t["la"].astype(str), t["la_name"].astype(str), strict=True))
    names.update(la_names())
    return names


def la_info(codes, names: dict[str, str] | None = None) -> dict[str, LAInfo]:
    """:class:`LAInfo` of each ONS code in ``codes``.

    Parameters
    ----------
    codes : iterable of str
        ONS LA codes (those of ``la_gradients.csv``).
    names : dict, optional
        Names that take precedence (e.g. the ``la_name`` column of ``la_gradients.csv``).

    Returns
    -------
    dict
        Code -> :class:`LAInfo`; neighbours are ONS codes, kept whether or not they were
        fitted (the site marks those without results).
    """
    from socialgradient.data.census.codes import LA_NUMBERS

    rows = _neighbour_rows()
    number_to_code = {v: k for k, v in LA_NUMBERS.items()}
    known = _names()
    out = {}
    for code in map(str, codes):
        number = LA_NUMBERS.get(code, "")
        row = rows.get(number)
        dfe = dfe_las().get(code, ("", "", ""))
        region = REGIONS.get(row[4].strip(), ("", "")) if row else ("", "")
        if not region[0] and dfe[2] in REGION_NAMES:  # e.g. an LA created after April 2021
            region = (dfe[2], REGION_NAMES[dfe[2]])
        sns: tuple[str, ...] = ()
        if row:
            picks = [row[i].strip() for i in range(5, min(len(row), 25), 2)]
            sns = tuple(number_to_code[n] for n in picks if n in number_to_code)
        name = (names or {}).get(code) or known.get(code) or (row[1].strip() if row else code)
        out[code] = LAInfo(code, name, number, region[0], region[1], sns, dfe[1])
    return out


def name_of(code: str) -> str:
    """Name an ONS LA code (the code itself if no lookup knows it)."""
    return _names().get(code, code)
