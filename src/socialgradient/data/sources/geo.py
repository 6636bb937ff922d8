"""Geography: ONS lookups, children's-services LAs, and the 2011 Rural-Urban Classification.

Chain: LSOA 2011 -> local authority district 2019 (``LAD19``, ONS IMD 2019 lookup) ->
upper-tier LA 2019 (``UTLA19``, ONS LTLA19->UTLA19) -> the **children's-services LA** of a
DfE reporting year (year ending 31 March), by the explicit tables below:

* :data:`REORGANISATIONS` - structural changes after April 2019, applied when the target
  year is at or after the first DfE year reported under the new authority; a county split
  between two unitaries is assigned by its 2019 districts;
* :data:`DFE_MERGES` - authorities DfE reports with a neighbour (Isles of Scilly with
  Cornwall, City of London with Hackney).

Every change applied is recorded (see :func:`children_services_la`). Contains public sector
information licensed under the Open Government Licence v3.0 (ONS).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from socialgradient.data.schema import fail
from socialgradient.data.sources.base import read_layout


class LAChange(NamedTuple):
    """One code change: LAD19s (None: every one) of ``old`` now belong to ``new``."""

    dfe_year: int  # first DfE reporting year (to 31 March) under the new code
    old: str
    old_name: str
    new: str
    new_name: str
    lads: tuple[str, ...] | None = None
    note: str = ""


#: Reorganisations since the ONS April 2019 UTLA lookup (and the April 2019 one it already
#: has, for data still carrying the pre-2019 codes). Effective 1 April of dfe_year - 1.
REORGANISATIONS: tuple[LAChange, ...] = (
    LAChange(
        2020,
        "E06000028",
        "Bournemouth",
        "E06000058",
        "Bournemouth, Christchurch and Poole",
        None,
        "with Christchurch from Dorset",
    ),
    LAChange(2020, "E06000029", "Poole", "E06000058", "Bournemouth, Christchurch and Poole"),
    LAChange(
        2020,
        "E10000009",
        "Dorset (county)",
        "E06000059",
        "Dorset",
        None,
        "less Christchurch, which went to BCP",
    ),
    LAChange(2021, "E10000002", "Buckinghamshire (county)", "E06000060", "Buckinghamshire"),
    LAChange(
        2022,
        "E10000021",
        "Northamptonshire",
        "E06000061",
        "North Northamptonshire",
        ("E07000150", "E07000152", "E07000153", "E07000156"),
        "Corby, East Northamptonshire, Kettering, Wellingborough",
    ),
    LAChange(
        2022,
        "E10000021",
        "Northamptonshire",
        "E06000062",
        "West Northamptonshire",
        ("E07000151", "E07000154", "E07000155"),
        "Daventry, Northampton, South Northamptonshire",
    ),
    LAChange(
        2024,
        "E10000006",
        "Cumbria",
        "E06000063",
        "Cumberland",
        ("E07000026", "E07000028", "E07000029"),
        "Allerdale, Carlisle, Copeland",
    ),
    LAChange(
        2024,
        "E10000006",
        "Cumbria",
        "E06000064",
        "Westmorland and Furness",
        ("E07000027", "E07000030", "E07000031"),
        "Barrow-in-Furness, Eden, South Lakeland",
    ),
    LAChange(2024, "E10000023", "North Yorkshire", "E06000065", "North Yorkshire"),
    LAChange(2024, "E10000027", "Somerset", "E06000066", "Somerset"),
)

#: Authorities DfE reports together with a neighbour for children's social care.
DFE_MERGES: tuple[LAChange, ...] = (
    LAChange(
        0,
        "E06000053",
        "Isles of Scilly",
        "E06000052",
        "Cornwall",
        None,
        "DfE reports the Isles of Scilly with Cornwall",
    ),
    LAChange(
        0,
        "E09000001",
        "City of London",
        "E09000012",
        "Hackney",
        None,
        "City of London's children's services are provided with Hackney",
    ),
)

#: Latest DfE reporting year whose geography the tables above describe.
LATEST_YEAR = 2025
FIRST_YEAR = 2020  # UTLA19 already has BCP and Dorset (unitary), first reported for 2020

RUC_CLASSES = {
    "A1": "Urban major conurbation",
    "B1": "Urban minor conurbation",
    "C1": "Urban city and town",
    "C2": "Urban city and town in a sparse setting",
    "D1": "Rural town and fringe",
    "D2": "Rural town and fringe in a sparse setting",
    "E1": "Rural village and dispersed",
    "E2": "Rural village and dispersed in a sparse setting",
}


def read_lsoa_lad(path) -> pd.DataFrame:
    """ONS *IMD (December 2019) Lookup in England*: ``lsoa, lsoa_name, lad, lad_name``."""
    layout = {
        "LSOA11CD": ("lsoa", "lsoa"),
        "LSOA11NM": ("lsoa_name", "str"),
        "LAD19CD": ("lad", "la"),
        "LAD19NM": ("lad_name", "str"),
    }
    return read_layout(path, layout, "ONS LSOA11->LAD19 lookup")


def read_lsoa_utla(path) -> pd.DataFrame:
    """Read the ONS *LSOA (2011) to UTLA (2019)* best-fit lookup (E+W).

    Columns ``lsoa, lsoa_name, utla, utla_name``.
    """
    layout = {
        "LSOA11CD": ("lsoa", "lsoa"),
        "LSOA11NM": ("lsoa_name", "str"),
        "UTLA19CD": ("utla", "la"),
        "UTLA19NM": ("utla_name", "str"),
    }
    return read_layout(path, layout, "ONS LSOA11->UTLA19 lookup")


def read_ltla_utla(path) -> pd.DataFrame:
    """Read the ONS *LTLA to UTLA* lookup of any year (``LTLA19CD``/``UTLA19CD``, ...).

    Columns ``lad, lad_name, utla, utla_name`` (one row per lower-tier LA); ``attrs['year']``.
    """
    from socialgradient.data.sources.base import read_csv_text

    header = list(read_csv_text(path, "ONS LTLA->UTLA lookup").columns)
    years = sorted(
        {
            c[4:6]
            for c in header
            if c.startswith("LTLA") and c.endswith("CD") and len(c) == 8 and c[4:6].isdigit()
        }
    )
    yy = years[-1] if years else "19"
    layout = {
        f"LTLA{yy}CD": ("lad", "la"),
        f"LTLA{yy}NM": ("lad_name", "str"),
        f"UTLA{yy}CD": ("utla", "la"),
        f"UTLA{yy}NM": ("utla_name", "str"),
    }
    table = read_layout(path, layout, "ONS LTLA->UTLA lookup", key="lad")
    table.attrs["year"] = 2000 + int(yy)
    return table


def read_ruc(path) -> pd.DataFrame:
    """ONS 2011 Rural-Urban Classification of LSOAs (E+W).

    Returns ``lsoa``, ``ruc11cd`` (A1 ... E2), ``ruc11`` (label) and ``rural`` (bool: class
    D or E, "rural town and fringe" or "rural village and dispersed", sparse or not).
    Codes outside the eight classes are refused (``unknown_category``).
    """
    layout = {
        "LSOA11CD": ("lsoa", "lsoa"),
        "RUC11CD": ("ruc11cd", "str"),
        "RUC11": ("ruc11", "str"),
    }
    table = read_layout(path, layout, "ONS RUC2011")
    bad = ~table["ruc11cd"].isin(list(RUC_CLASSES)).to_numpy()
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(f"row {r} ({table['ruc11cd'].iloc[r]!r})" for r in rows[:8])
        raise fail(
            "unknown_category",
            f"ONS RUC2011: column 'RUC11CD': {len(rows)} values "
            f"not among {sorted(RUC_CLASSES)}: {shown}",
            rows,
            ["RUC11CD"],
        )
    table["rural"] = table["ruc11cd"].str[0].isin(["D", "E"])
    return table


def _check_year(la_year: int) -> None:
    if not FIRST_YEAR <= la_year <= LATEST_YEAR:
        raise fail(
            "unsupported_year",
            f"LA geography for DfE year {la_year}: supported "
            f"{FIRST_YEAR}-{LATEST_YEAR} (LSOAs are assigned through 2019 districts)",
        )


def children_services_la(
    lad: pd.Series, utla: pd.Series, la_year: int = LATEST_YEAR, merges=DFE_MERGES
) -> tuple[pd.Series, list[dict]]:
    """Children's-services LA of the DfE reporting year ``la_year`` for each row.

    Parameters
    ----------
    lad, utla : Series of str
        LAD19 and UTLA19 codes, aligned.
    la_year : int
        DfE reporting year (year ending 31 March) whose LA geography to use, 2020-2025.
    merges : sequence of LAChange
        DfE merges to apply (default: both of :data:`DFE_MERGES`; ``()`` for none).

    Returns
    -------
    (Series of LA codes, list of changes applied: dict with ``kind`` ('reorganisation' or
    'dfe_merge'), ``old``, ``old_name``, ``new``, ``new_name``, ``dfe_year``, ``rows``,
    ``note``)
    """
    _check_year(la_year)
    la = utla.astype(str).to_numpy(object).copy()
    lad = lad.astype(str).to_numpy(object)
    applied = []
    steps = [("reorganisation", c) for c in REORGANISATIONS if c.dfe_year <= la_year]
    steps += [("dfe_merge", c) for c in merges]
    for kind, c in steps:
        hit = la == c.old
        if c.lads is not None:
            hit &= np.isin(lad, c.lads)
        if hit.any():
            la[hit] = c.new
            applied.append(
                {"kind": kind, **c._asdict(), "lads": list(c.lads or []), "rows": int(hit.sum())}
            )
    return pd.Series(la, index=utla.index, name="la"), applied


def la_names(la_year: int = LATEST_YEAR) -> dict[str, str]:
    """Names of the LAs created by the changes in force in ``la_year`` (and merge targets)."""
    names = {c.new: c.new_name for c in REORGANISATIONS if c.dfe_year <= la_year}
    names.update({c.new: c.new_name for c in DFE_MERGES})
    return names


#: Boundary transfers between authorities that :data:`REORGANISATIONS` records only in a
#: note: an area moved from ``old`` to an authority that also absorbed others. A time
#: series harmonised across them must join both sides (see :func:`harmonised_la`).
BOUNDARY_TRANSFERS: tuple[LAChange, ...] = (
    LAChange(
        2020,
        "E10000009",
        "Dorset (county)",
        "E06000058",
        "Bournemouth, Christchurch and Poole",
        ("E07000048",),
        "Christchurch moved from Dorset county to BCP, April 2019",
    ),
)


def harmonised_la(
    codes, changes=REORGANISATIONS, transfers=BOUNDARY_TRANSFERS, merges=()
) -> tuple[pd.Series, dict[str, dict]]:
    """One fixed geography for time series across the reorganisations: each code's unit.

    Codes joined by a change (old -> new), a boundary transfer, or a merge in ``merges``
    (e.g. :data:`DFE_MERGES`; none by default) form one unit, the coarsest geography on
    which every year's figures can be summed without double counting or gaps: a county
    split in two (Northamptonshire, Cumbria) is one unit, its successors summed back; a
    pure renaming (Buckinghamshire, North Yorkshire, Somerset) keeps one authority;
    Bournemouth, Poole and Dorset county (before April 2019/2020) and BCP and Dorset
    (after) are one unit, since Christchurch moved between them.

    The unit's code is its one latest code (a code no change replaces) if there is one,
    else its one earliest code (a code no change creates), else the latest codes joined by
    ``+`` in sorted order; its name follows the code. Codes in no change are their own unit.

    Returns
    -------
    (Series of unit codes aligned with ``codes``, dict unit -> ``{"name", "members"}``
    for the units with more than one member code)
    """
    links = [*changes, *transfers, *merges]
    parent: dict[str, str] = {}

    def root(c):
        while parent.setdefault(c, c) != c:
            c = parent[c]
        return c

    names: dict[str, str] = {}
    for c in links:
        names.setdefault(c.old, c.old_name)
        names[c.new] = c.new_name
        parent[root(c.old)] = root(c.new)
    olds = {c.old for c in links}
    news = {c.new for c in links}
    groups: dict[str, list[str]] = {}
    for code in parent:
        groups.setdefault(root(code), []).append(code)
    units = {}
    for members in groups.values():
        latest = sorted(m for m in members if m not in olds)
        earliest = sorted(m for m in members if m not in news)
        if len(latest) == 1:
            unit, name = latest[0], names[latest[0]]
        elif len(earliest) == 1:
            unit, name = earliest[0], names[earliest[0]]
        else:
            unit, name = "+".join(latest), " + ".join(names[m] for m in latest)
        for m in members:
            units[m] = (unit, name)
    series = pd.Series(codes).astype(str)
    out = series.map(lambda c: units.get(c, (c, ""))[0]).rename("unit")
    info: dict[str, dict[str, Any]] = {}
    for m, (unit, name) in sorted(units.items()):
        info.setdefault(unit, {"name": name, "members": []})["members"].append(m)
    return out, info
