"""Per-LA results as Explore Education Statistics (EES) tidy data, and DfE's screening rules.

:func:`ees_tables` turns ``release/la_gradients.csv`` (and England's gradient from
``summary.json``) into an EES data file and its ``.meta.csv``: one row per LA
(``geographic_level`` "Local authority") and one for England ("National"), the standard time
and geography columns first, then indicators only (no filters: every row is one LA's or
England's result). Numbers are as released; a count the disclosure gate hid is the GSS
symbol ``c``, a value that does not apply ``z`` (England's rank), one not available ``x``.

:func:`screen` applies the checks of DfE's own screener, **eesyscreener**
(``dfe-analytical-services/eesyscreener`` @ f0e47bac, May 2026, ``R/screen_dfs.R``: the
checks below are re-implemented from its rule files, named as there; its reference values
``req_meta_cols``, ``optional_meta_cols``, ``req_data_cols``, ``acceptable_time_ids``,
``four_digit_identifiers``, ``acceptable_indicator_units``, ``gss_symbols``,
``legacy_gss_symbols``, ``api_char_limits``, ``geography_df`` and
``potential_ob_units_regex`` are from its ``data-raw/``). Screener checks that need its
lookups are done against the same lists, shipped: ``geog_la_combos`` against DfE's
``las.csv`` of the screener app (:func:`socialgradient.release.neighbours.dfe_las`: each LA
row's new code, old code and name must be a row there, so ``la_name`` is DfE's name),
``geog_region_combos`` against its nine English regions. Checks that apply only to filters,
schools, wards and other geographies this file does not have are not run; the checks run
are listed by name in each result.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from socialgradient.release import neighbours

REQ_META = (
    "col_name",
    "col_type",
    "label",
    "indicator_grouping",
    "indicator_unit",
    "indicator_dp",
    "filter_hint",
    "filter_grouping_column",
)
OPTIONAL_META = ("filter_default", "parent_filter")
REQ_DATA = ("geographic_level", "time_period", "time_identifier", "country_code", "country_name")
GEOGRAPHY = {  # geographic_level -> (code field, name field) of the levels written here
    "National": ("country_code", "country_name"),
    "Regional": ("region_code", "region_name"),
    "Local authority": ("new_la_code", "la_name"),
}
#: observational-unit columns (eesyscreener's get_acceptable_ob_units, in part)
OB_UNITS = frozenset(
    re.split(
        r"\s+",
        "time_period time_identifier geographic_level country_code country_name region_code "
        "region_name old_la_code new_la_code la_name lad_code lad_name pcon_code pcon_name "
        "ward_code ward_name school_urn school_name provider_ukprn provider_name",
    )
)
OB_UNIT_RE = re.compile(
    r"(^(country|sch|prov|inst|estab|reg|la|local|rsc|pfa|pcon|lep|mca|oa|ward|mat)"
    r".*(name|code|urn|ukprn|number|upin|id)$)"
    r"|(^(laestab|estab|sch|school|schools|prov|provider|providers|inst|institution|"
    r"institutions|name|code|urn|ukprn|number|upin|id|region|la|lad|rsc|pcon|lep|mca|oa|"
    r"ward|mat)$)",
    re.IGNORECASE,
)
FOUR_DIGIT_IDS = {"Calendar year", "Reporting year"}
SIX_DIGIT_IDS = {"Academic year", "Financial year", "Tax year", "Autumn and spring term"}
INDICATOR_UNITS = {"", "%", "pp", "£", "£m", "numberstring"}
GSS_SYMBOLS = {"x", "z", "c", "low"}
LEGACY_SYMBOLS = {"~", ":"}
NULLS = {"NULL", "Null", "null", "NA", "na", "N/A", "n/a", ".", "..", "-"}
CHAR_LIMITS = {"col_name": 50, "label": 100, "location_code": 30, "location_name": 120}
ENGLAND = ("E92000001", "England")
REGIONS = dict(neighbours.REGIONS.values())  # ONS code -> EES name of the nine regions
#: indicator column -> (la_gradients.csv column, label, decimal places)
INDICATORS = {
    "gradient_score": ("gradient_median", "Social gradient score (posterior median)", 2),
    "gradient_score_lower_95": ("gradient_lo95", "Social gradient score, 95% interval lower", 2),
    "gradient_score_upper_95": ("gradient_hi95", "Social gradient score, 95% interval upper", 2),
    "gradient_score_lower_80": ("gradient_lo80", "Social gradient score, 80% interval lower", 2),
    "gradient_score_upper_80": ("gradient_hi80", "Social gradient score, 80% interval upper", 2),
    "prob_steeper_than_england": (
        "p_steeper_than_england",
        "Probability the gradient is steeper than England's",
        2,
    ),
    "gradient_rank": ("rank_median", "Rank of gradient score, 1 = steepest (median)", 0),
    "gradient_rank_lower_95": ("rank_lo95", "Rank of gradient score, 95% interval lower", 0),
    "gradient_rank_upper_95": ("rank_hi95", "Rank of gradient score, 95% interval upper", 0),
    "children": ("children", "Children (population aged 0-17)", 0),
    "cases": ("cases", "Cases (disclosure-protected count)", 0),
    "rate_per_10000": ("rate_per_10k", "Cases per 10,000 children", 1),
}
GROUPING = "Social gradient"


@dataclass(frozen=True)
class Check:
    """One screening result.

    ``check`` (eesyscreener's name), ``result`` (PASS, WARNING or FAIL) and ``message``.
    """

    check: str
    result: str
    message: str


def _cell(value, dp: int, hidden: bool = False) -> str:
    if hidden:
        return "c"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "x"
    return f"{float(value):.{dp}f}"


def ees_tables(
    las: pd.DataFrame,
    england: dict,
    info: dict,
    year: int,
    england_cases: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the EES data file and its metadata, as tables of strings.

    Parameters
    ----------
    las : DataFrame
        ``release/la_gradients.csv`` as read (optional columns are left out when absent).
    england : dict
        England's gradient: ``summary.json``'s ``gradient_mean_la`` (median, ci95, ci80).
    info : dict
        LA code -> :class:`socialgradient.release.neighbours.LAInfo` (names, numbers, regions).
    year : int
        The reporting year (year ending 31 March), EES ``time_identifier`` "Reporting year".
    england_cases : float, optional
        England's released total (``ppc.json``), if it was published.

    Returns
    -------
    data, meta : DataFrame
        The data file (time, geography, indicators) and its metadata, strings throughout.
    """
    cols = [c for c, (src, _, _) in INDICATORS.items() if src in las.columns]
    rows = []
    base = {"time_period": str(year), "time_identifier": "Reporting year"}
    national = base | {
        "geographic_level": "National",
        "country_code": ENGLAND[0],
        "country_name": ENGLAND[1],
        "region_code": "",
        "region_name": "",
        "old_la_code": "",
        "new_la_code": "",
        "la_name": "",
    }
    values = {
        "gradient_median": england["median"],
        "gradient_lo95": england["ci95"][0],
        "gradient_hi95": england["ci95"][1],
        "gradient_lo80": england["ci80"][0],
        "gradient_hi80": england["ci80"][1],
    }
    children = las["children"].sum() if "children" in las.columns else None
    for c in cols:
        src, _, dp = INDICATORS[c]
        if src in values:
            national[c] = _cell(values[src], dp)
        elif src == "children" and children is not None:
            national[c] = _cell(children, dp)
        elif src == "cases":
            national[c] = _cell(england_cases, dp, hidden=england_cases is None)
        elif src == "rate_per_10k":
            if england_cases is None or not children:
                national[c] = "c"
            else:
                national[c] = _cell(1e4 * england_cases / float(children), dp)
        else:
            national[c] = "z"  # a rank or probability against England: not applicable
    rows.append(national)
    for _, r in las.iterrows():
        la = info[str(r["la"])]
        row = base | {
            "geographic_level": "Local authority",
            "country_code": ENGLAND[0],
            "country_name": ENGLAND[1],
            "region_code": la.region_code,
            "region_name": la.region_name,
            "old_la_code": la.number,
            "new_la_code": la.code,
            "la_name": la.dfe_name or la.name,
        }
        for c in cols:
            src, _, dp = INDICATORS[c]
            hidden = src in ("cases", "rate_per_10k") and pd.isna(r["cases"])
            unranked = src.startswith("rank_") and pd.isna(r[src])  # no spread: not ranked
            row[c] = "z" if unranked else _cell(r[src], dp, hidden)
        rows.append(row)
    data = pd.DataFrame(rows)
    meta = pd.DataFrame(
        [
            {
                "col_name": c,
                "col_type": "Indicator",
                "label": INDICATORS[c][1],
                "indicator_grouping": GROUPING,
                "indicator_unit": "",
                "indicator_dp": str(INDICATORS[c][2]),
                "filter_hint": "",
                "filter_grouping_column": "",
            }
            for c in cols
        ],
        columns=list(REQ_META),
    )
    return data, meta


def _result(name: str, bad, message: str, warn: bool = False) -> Check:
    bad = list(bad)
    if not bad:
        return Check(name, "PASS", f"none: {message}")
    listed = ", ".join(map(str, sorted(set(bad))))
    return Check(name, "WARNING" if warn else "FAIL", f"{message}: {listed}")


def screen(data: pd.DataFrame, meta: pd.DataFrame) -> list[Check]:
    """Screen an EES data file and its metadata as DfE's screener does (module docstring).

    Parameters
    ----------
    data, meta : DataFrame
        Read as strings (``dtype=str, keep_default_na=False``), as the screener reads CSVs.

    Returns
    -------
    list of Check
        One per check run, in the screener's order; the files pass when none is FAIL.
    """
    out: list[Check] = []
    dcols, mcols = list(data.columns), list(meta.columns)
    out.append(_result("col_req_meta", set(REQ_META) - set(mcols), "metadata columns missing"))
    invalid = set(mcols) - set(REQ_META) - set(OPTIONAL_META)
    out.append(_result("col_invalid_meta", invalid, "unexpected metadata columns"))
    out.append(_result("col_req_data", set(REQ_DATA) - set(dcols), "data columns missing"))
    if any(c.result == "FAIL" for c in out):
        return out  # the screener stops after a failed precheck of columns
    many = ["metadata rows"] if len(meta) > len(dcols) - 5 else []
    out.append(_result("col_to_rows", many, "more metadata rows than non-mandatory columns"))
    out.append(_result("col_name_spaces", [c for c in dcols if " " in c], "spaces in names"))
    snake = [c for c in dcols if re.sub(r"[a-z0-9_]", "", c)]
    out.append(_result("col_snake_case", snake, "names not in snake_case", warn=True))
    start = [c for c in dcols if not re.match(r"[a-z]", c)]
    out.append(_result("col_var_start", start, "names not starting a-z", warn=True))
    names = set(meta["col_name"])
    out.append(_result("cross_meta_to_data", names - set(dcols), "metadata rows not in data"))
    extra = [c for c in dcols if c not in names and c not in OB_UNITS]
    out.append(_result("cross_data_to_meta", extra, "data columns not in the metadata"))
    types = set(meta["col_type"]) - {"Filter", "Indicator"}
    out.append(_result("meta_col_type", types, "col_type other than Filter/Indicator"))
    out.append(_result("meta_ob_unit", names & OB_UNITS, "observational units in metadata"))
    blank = [i for i, c in enumerate(meta["col_name"]) if not str(c).strip()]
    out.append(_result("meta_col_name", blank, "blank col_name at rows"))
    ind = meta[meta["col_type"] == "Indicator"]
    fil = meta[meta["col_type"] == "Filter"]
    labels = meta["label"].tolist()
    dupes = [x for x in labels if labels.count(x) > 1]
    out.append(_result("meta_duplicate_label", dupes, "duplicate labels"))
    out.append(_result("meta_label", [i for i, x in enumerate(labels) if not x.strip()], "blank"))
    out.append(_result("meta_filter_hint", ind.loc[ind["filter_hint"] != "", "col_name"], "hint"))
    for check, column in (
        ("meta_indicator_grouping", "indicator_grouping"),
        ("meta_indicator_dp", "indicator_dp"),
        ("meta_ind_unit", "indicator_unit"),
    ):
        out.append(_result(check, fil.loc[fil[column] != "", "col_name"], f"filters with {column}"))
    unset = ind.loc[ind["indicator_dp"].str.strip() == "", "col_name"]
    out.append(_result("meta_ind_dp_set", unset, "indicators without indicator_dp", warn=True))
    dp_bad = [x for x in meta["indicator_dp"] if x.strip() and not x.strip().isdigit()]
    out.append(_result("meta_ind_dp_values", dp_bad, "indicator_dp not a whole number >= 0"))
    units = set(ind["indicator_unit"]) - INDICATOR_UNITS
    out.append(_result("meta_ind_unit_validation", units, "invalid indicator_unit"))
    caught = [c for c in fil["col_name"] if OB_UNIT_RE.search(c)]
    out.append(_result("meta_geog_catch", caught, "filters that look like geography"))
    col_names = meta["col_name"].tolist()
    dup = [c for c in col_names if col_names.count(c) > 1]
    out.append(_result("meta_col_name_duplicate", dup, "duplicate col_name"))
    long = [c for c in dcols if len(c) > CHAR_LIMITS["col_name"]]
    long += [x for x in labels if len(x) > CHAR_LIMITS["label"]]
    out.append(_result("api_char_limits", long, "names or labels over the API's limits"))
    out += _screen_rows(data, ind["col_name"].tolist())
    return out


def _screen_rows(data: pd.DataFrame, indicators: list[str]) -> list[Check]:
    """Run the screener's time, geography and value checks."""
    out = []
    ids = set(data["time_identifier"])
    known = FOUR_DIGIT_IDS | SIX_DIGIT_IDS
    out.append(_result("time_id_valid", ids - known, "time_identifier values not allowed"))
    mixed = (
        ["four- and six-digit identifiers"] if ids & FOUR_DIGIT_IDS and ids & SIX_DIGIT_IDS else []
    )
    out.append(_result("time_id_mix", mixed, "time_identifier mixes"))
    periods = set(data["time_period"])
    bad = [p for p in periods if not p.isdigit()]
    if ids & FOUR_DIGIT_IDS:
        bad += [p for p in periods if len(p) != 4]
    if ids & SIX_DIGIT_IDS:
        bad += [p for p in periods if len(p) != 6 or int(p[4:]) != (int(p[2:4]) + 1) % 100]
    out.append(_result("time_period", bad, "time_period does not fit time_identifier"))
    levels = set(data["geographic_level"])
    out.append(_result("geog_level", levels - set(GEOGRAPHY), "geographic levels not expected"))
    empty = []
    for level, (code, name) in GEOGRAPHY.items():
        rows = data[data["geographic_level"] == level]
        if level == "Local authority":
            missing = rows[((rows["new_la_code"] == "") & (rows["old_la_code"] == ""))]
            missing = pd.concat([missing, rows[rows["la_name"] == ""]])
        else:
            missing = rows[(rows[code] == "") | (rows[name] == "")] if code in data else rows
        empty += [f"{level} row {i}" for i in missing.index]
    out.append(_result("geog_level_completed", empty, "rows without their level's codes"))
    las = data[data["geographic_level"] == "Local authority"]
    noregion = las.index[(las["region_code"] == "") | (las["region_name"] == "")].tolist()
    out.append(_result("geog_region_for_la", noregion, "LA rows without a region at rows"))
    country = data[
        (data["country_code"] != ENGLAND[0]) | (data["country_name"] != ENGLAND[1])
    ].index.tolist()
    out.append(_result("geog_country_combos", country, "country code/name not England's"))
    pairs = {(c, n) for c, n in zip(data["region_code"], data["region_name"], strict=True) if c}
    out.append(_result("geog_region_combos", pairs - set(REGIONS.items()), "unknown regions"))
    dfe = {(new, old, name) for new, (old, name, _) in neighbours.dfe_las().items()}
    triples = zip(las["new_la_code"], las["old_la_code"], las["la_name"], strict=True)
    bad_la = [" / ".join(t) for t in triples if t not in dfe]
    out.append(_result("geog_la_combos", bad_la, "LAs not in DfE's list (code, number, name)"))
    lvl_cols = ["region_code", "region_name", "old_la_code", "new_la_code", "la_name"]
    nat = data[data["geographic_level"] == "National"]
    over = [i for i in nat.index if any(nat.loc[i, c] for c in lvl_cols if c in data)]
    out.append(_result("geog_overcompleted_cols", over, "National rows with lower-level codes"))
    long = [x for x in data.get("new_la_code", []) if len(x) > CHAR_LIMITS["location_code"]]
    long += [x for x in data.get("la_name", []) if len(x) > CHAR_LIMITS["location_name"]]
    out.append(_result("api_char_loc", long, "location codes or names over the API's limits"))
    keys = [c for c in OB_UNITS if c in data]
    dupes = data[data.duplicated(keys, keep=False)].index.tolist()
    out.append(_result("general_dupes", dupes, "duplicate rows at"))
    nulls = sorted({c for c in data for x in data[c] if x in NULLS})
    out.append(_result("general_null", nulls, "null or legacy symbols in columns"))
    invalid = []
    for c in indicators:
        for x in data[c]:
            if x in LEGACY_SYMBOLS or x == "" or (x not in GSS_SYMBOLS and not _number(x)):
                invalid.append(c)
    out.append(_result("ind_invalid_entry", invalid, "blank, legacy or non-numeric indicators"))
    return out


def _number(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


def write_ees(data: pd.DataFrame, meta: pd.DataFrame, folder, name: str) -> list:
    """Write ``NAME.csv`` and ``NAME.meta.csv`` (UTF-8, LF) into ``folder``; their paths."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"EES file name {name!r}: lower case letters, digits and _ only")
    paths = [Path(folder) / f"{name}.csv", Path(folder) / f"{name}.meta.csv"]
    for table, path in zip((data, meta), paths, strict=True):
        with open(path, "w", encoding="utf-8", newline="") as f:
            table.to_csv(f, index=False, lineterminator="\n")
    return paths


def screen_files(data_csv, meta_csv) -> list[Check]:
    """Screen an EES data file and its metadata file on disk (read as the screener reads them).

    ``python -m socialgradient.release.ees DATA.csv DATA.meta.csv`` prints each check and
    exits 1 if any FAILs.
    """
    read = {"dtype": str, "keep_default_na": False, "encoding": "utf-8-sig"}
    return screen(pd.read_csv(data_csv, **read), pd.read_csv(meta_csv, **read))


if __name__ == "__main__":
    import sys

    results = screen_files(*sys.argv[1:3])
    print("\n".join(f"{c.result:8} {c.check}: {c.message}" for c in results))
    sys.exit(int(any(c.result == "FAIL" for c in results)))
