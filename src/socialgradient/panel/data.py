"""The real LA x year panel: DfE counts, ONS child populations and LA deprivation.

:func:`build_panel` reads the shared data folder and returns a tidy table with one row per
(LA, year) of the fixed geography (:func:`socialgradient.data.sources.geo.harmonised_la`),
for one measure of :data:`MEASURES`, with a report that accounts for every cell:

``la``, ``la_name``  unit code and name (a unit joins the codes of a reorganised area)
``year``             DfE reporting year ending 31 March
``count``            the measure summed over the unit's codes; missing when not usable
``exposure``         children aged 0-17, ONS mid-year estimate of the *previous* calendar
                     year (mid-2018 for the year to 31 March 2019), as DfE computes rates
``income``           child-weighted mean IoD2019 income score (share 0-1) of the unit's LSOAs
``m``                ``income`` minus the national child-weighted mean, in 10-point units
``observed``         True when the cell enters the likelihood
``reason``           why it does not: ``suppressed`` (a member cell holds a DfE/ONS marker
                     such as c, x, u: the sum is unknown), ``not_reported`` (no figure for
                     any member code that year, e.g. ``z`` = not applicable),
                     ``no_exposure`` (population missing, e.g. Bournemouth/Poole/Dorset
                     before mid-2019); empty when observed

Markers ``z`` (not applicable: the code was not in force, or its figure is published under
another code) are not suppression: a member code marked ``z`` adds nothing to its unit.
Nothing is dropped silently: excluded cells stay in the table, counted in the report.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from socialgradient.data.schema import fail
from socialgradient.data.sources.geo import REORGANISATIONS, harmonised_la

#: measure key -> (DfE table, published measure, description)
MEASURES = {
    "referrals": ("referrals", "referral_count", "referrals to children's social care"),
    "cin": ("cin", "At31_episodes", "children in need at 31 March"),
    "cpp_starts": ("cpp_starts", "CPP_start", "child protection plans starting"),
    "cla": ("cla", "cla_at_31_march_children_count", "children looked after at 31 March"),
}
NOT_APPLICABLE = frozenset({"z", "[z]"})
FIRST_YEAR = 2013
COLUMNS = ["la", "la_name", "year", "count", "exposure", "income", "m", "observed", "reason"]


def harmonise(long: pd.DataFrame, merges=()) -> pd.DataFrame:
    """Sum a long table (``la, year, value, suppressed, marker``) onto the fixed geography.

    Returns one row per (unit, year) with ``value``, ``status`` (``ok``, ``suppressed`` or
    ``not_reported``), ``members`` (codes that contributed) and ``markers``. A unit-year is
    ``suppressed`` when any member cell holds a marker other than ``z``; ``not_reported``
    when every member cell is ``z``. Raises ``overlapping_codes`` if a predecessor and its
    successor both report a figure for the same year (summing them would double count).
    """
    t = long.copy()
    t["unit"] = harmonised_la(t["la"], merges=merges)[0].to_numpy(object)
    marker = t["marker"].astype(str).str.strip().str.lower()
    t["na"] = t["suppressed"].astype(bool) & marker.isin(NOT_APPLICABLE)
    t["hidden"] = t["suppressed"].astype(bool) & ~t["na"]
    present = t[~t["na"]]
    pairs = {(c.old, c.new) for c in REORGANISATIONS}
    both = present.groupby(["unit", "year"])["la"].agg(set)
    for (unit, year), codes in both.items():
        clash = [p for p in pairs if p[0] in codes and p[1] in codes]
        if clash:
            raise fail(
                "overlapping_codes",
                f"{unit} {year}: both {clash[0][0]} and its "
                f"successor {clash[0][1]} report a figure; summing would double count",
            )
    g = t.groupby(["unit", "year"], sort=True)
    out = pd.DataFrame(
        {
            "value": g["value"].sum(min_count=1),
            "hidden": g["hidden"].any(),
            "any_value": g.apply(lambda d: bool((~d["na"]).any()), include_groups=False),
            "members": g.apply(
                lambda d: "+".join(sorted(d.loc[~d["na"], "la"])), include_groups=False
            ),
            "markers": g.apply(
                lambda d: ",".join(
                    sorted(d.loc[d["suppressed"], "la"] + ":" + d.loc[d["suppressed"], "marker"])
                ),
                include_groups=False,
            ),
        }
    ).reset_index()
    out["status"] = np.where(
        out["hidden"], "suppressed", np.where(out["any_value"], "ok", "not_reported")
    )
    out.loc[out["status"] != "ok", "value"] = np.nan
    return out.drop(columns=["hidden", "any_value"]).rename(columns={"unit": "la"})


def la_deprivation(neighbourhoods: pd.DataFrame, merges=()) -> tuple[pd.DataFrame, float]:
    """Child-weighted mean income score per unit, and ``m`` centred on the national mean.

    ``neighbourhoods``: one row per LSOA with ``children``, ``income`` and ``utla19``
    (upper-tier LA 2019, before DfE merges; else ``la``). Returns (table ``la, children,
    income, m``, national child-weighted mean income ``x_bar``).
    """
    code = "utla19" if "utla19" in neighbourhoods else "la"
    unit = harmonised_la(neighbourhoods[code], merges=merges)[0].to_numpy(object)
    n = neighbourhoods["children"].to_numpy(float)
    x = neighbourhoods["income"].to_numpy(float)
    x_bar = float(np.sum(n * x) / np.sum(n))
    t = pd.DataFrame({"la": unit, "children": n, "nx": n * x}).groupby("la").sum()
    t["income"] = t["nx"] / t["children"]
    t["m"] = (t["income"] - x_bar) * 10.0
    return t.drop(columns="nx").reset_index(), x_bar


def assemble_panel(
    counts: pd.DataFrame,
    population: pd.DataFrame,
    deprivation: pd.DataFrame,
    measure: str = "referrals",
    first_year: int = FIRST_YEAR,
    last_year: int | None = None,
    merges=(),
    x_bar: float | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Assemble the panel of one measure from the long DfE tables (see the module docstring).

    ``counts`` and ``population`` are long tables as read by
    :func:`socialgradient.data.sources.read_dfe_csc` / ``read_population``; ``deprivation``
    as :func:`la_deprivation` returns. Returns ``(panel, report)``.
    """
    if measure not in MEASURES:
        raise fail("unknown_outcome", f"measure {measure!r}: choose from {sorted(MEASURES)}")
    table, column, description = MEASURES[measure]
    c = counts[(counts["table"] == table) & (counts["measure"] == column)]
    if len(c) == 0:
        raise fail("file_not_found", f"no {table}/{column} cells in the DfE tables given")
    last = int(c["year"].max()) if last_year is None else int(last_year)
    c = c[(c["year"] >= first_year) & (c["year"] <= last)]
    y = harmonise(c, merges)
    p = population[population["measure"] == "population_estimate"].copy()
    p["year"] = p["year"] + 1  # mid-(t-1) estimate for the year to 31 March t
    pop = harmonise(p, merges)
    dep = deprivation.set_index("la")
    names = (
        c.sort_values("year")
        .drop_duplicates("la", keep="last")
        .assign(unit=lambda d: harmonised_la(d["la"], merges=merges)[0].to_numpy(object))
    )
    _, info = harmonised_la(names["la"], merges=merges)
    la_name = {u: v["name"] for u, v in info.items()}
    for unit, name in zip(names["unit"], names["la_name"], strict=True):
        la_name.setdefault(unit, name)
    units = sorted(set(y["la"]))
    no_dep = [u for u in units if u not in dep.index]
    units = [u for u in units if u in dep.index]
    years = list(range(int(c["year"].min()), last + 1))
    grid = pd.MultiIndex.from_product([units, years], names=["la", "year"]).to_frame(index=False)
    panel = grid.merge(
        y[["la", "year", "value", "status", "members", "markers"]], on=["la", "year"], how="left"
    )
    panel["status"] = panel["status"].fillna("not_reported")
    ex = pop.set_index(["la", "year"])
    key = pd.MultiIndex.from_frame(panel[["la", "year"]])
    panel["exposure"] = ex["value"].reindex(key).to_numpy()
    panel["exposure_status"] = ex["status"].reindex(key).fillna("not_reported").to_numpy()
    panel["count"] = panel["value"]
    panel["la_name"] = panel["la"].map(la_name)
    panel["income"] = panel["la"].map(dep["income"])
    panel["m"] = panel["la"].map(dep["m"])
    reason = np.where(
        panel["status"] == "suppressed",
        "suppressed",
        np.where(
            panel["status"] == "not_reported",
            "not_reported",
            np.where(~(panel["exposure"] > 0), "no_exposure", ""),
        ),
    )
    panel["reason"] = reason
    panel["observed"] = panel["reason"] == ""
    bad = panel["observed"] & ((panel["count"] < 0) | (panel["count"] % 1 != 0))
    if bad.any():
        raise fail(
            "fractional_count",
            f"{measure}: {int(bad.sum())} counts are not whole "
            f"non-negative numbers: {panel.loc[bad, ['la', 'year', 'count']].head()}",
        )
    excluded = panel[~panel["observed"]]
    report: dict[str, Any] = {
        "measure": measure,
        "table": table,
        "column": column,
        "description": description,
        "years": [years[0], years[-1]],
        "las": len(units),
        "cells": len(panel),
        "observed": int(panel["observed"].sum()),
        "excluded": {k: int(v) for k, v in excluded["reason"].value_counts().items()},
        "excluded_cells": [
            {
                "la": r.la,
                "la_name": r.la_name,
                "year": int(r.year),
                "reason": r.reason,
                "markers": r.markers if isinstance(r.markers, str) else "",
            }
            for r in excluded.itertuples()
        ],
        "units_joined": {u: v for u, v in info.items() if u in units},
        "dfe_merges": [f"{m.old}->{m.new}" for m in merges],
        "las_without_deprivation": no_dep,
        "x_bar": x_bar,
    }
    assert report["observed"] + sum(report["excluded"].values()) == report["cells"]
    return panel[[*COLUMNS, "members"]], report


def model_inputs(panel: pd.DataFrame) -> dict:
    """Arrays for the model: LAs and years of the panel, the observed cells' indices."""
    la = np.array(sorted(panel["la"].unique()), dtype=str)
    years = np.array(sorted(panel["year"].unique()), dtype=int)
    obs = panel[panel["observed"]]
    m = panel.drop_duplicates("la").set_index("la")["m"].reindex(la).to_numpy(float)
    return {
        "la": la,
        "year": years,
        "m": m,
        "la_index": np.searchsorted(la, obs["la"].to_numpy(str)),
        "year_index": np.searchsorted(years, obs["year"].to_numpy(int)),
        "y": obs["count"].to_numpy().astype(np.int64),
        "exposure": obs["exposure"].to_numpy(float),
    }


def panel_hash(panel: pd.DataFrame) -> str:
    """Return the hash of the panel's cells (LA, year, count, exposure, m, observed)."""
    cols = ["la", "year", "count", "exposure", "m", "observed"]
    text = panel[cols].to_csv(index=False, lineterminator="\n").encode()
    return hashlib.sha256(text).hexdigest()[:16]


def shared_paths(shared_dir) -> dict[str, Path]:
    """Return the files the panel needs under the shared data folder."""
    from socialgradient.data.sources import SHARED_FILES

    shared = Path(shared_dir)
    return {
        "dfe_csc": shared / SHARED_FILES["dfe_csc"],
        "population": shared / SHARED_FILES["population"],
    }


def build_panel(
    shared_dir,
    measure: str = "referrals",
    first_year: int = FIRST_YEAR,
    last_year: int | None = None,
    merges=(),
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read the shared data folder and assemble the panel of ``measure``: (panel, report)."""
    from socialgradient.data.sources import read_dfe_csc, read_population
    from socialgradient.data.sources.build import build_neighbourhoods

    paths = shared_paths(shared_dir)
    counts = read_dfe_csc(
        paths["dfe_csc"], tables=[MEASURES[measure][0]] if measure in MEASURES else None
    )
    population = read_population(paths["population"])
    lsoas, _ = build_neighbourhoods(shared_dir)
    deprivation, x_bar = la_deprivation(lsoas, merges)
    panel, report = assemble_panel(
        counts, population, deprivation, measure, first_year, last_year, merges, x_bar
    )
    report["lsoas"] = len(lsoas)
    return panel, report


def map_units(polygons, units, merges=()) -> tuple[list[tuple[str, np.ndarray]], dict]:
    """Recode boundary polygons onto the panel's units (:func:`harmonised_la`).

    The report gives the boundary codes matching no unit and the units with no polygon.
    """
    codes = sorted({c for c, _ in polygons})
    unit_of = dict(zip(codes, harmonised_la(pd.Series(codes), merges=merges)[0], strict=True))
    units = set(map(str, units))
    out = [(unit_of[c], ring) for c, ring in polygons]
    report: dict[str, Any] = {
        "boundary_codes": len(codes),
        "matched_codes": sorted(c for c in codes if unit_of[c] in units),
        "unmatched_boundary_codes": sorted(c for c in codes if unit_of[c] not in units),
        "units_without_polygon": sorted(units - set(unit_of.values())),
        "recoded": {c: unit_of[c] for c in codes if unit_of[c] != c},
    }
    report["matched_codes"] = len(report["matched_codes"])
    return out, report
