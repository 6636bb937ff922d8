"""Child-level frames shared by the census readers.

The read report, ages, companion tables and :func:`build_records` (canonical flat episodes ->
:class:`~socialgradient.data.records.Records`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from socialgradient.data import records as rec
from socialgradient.data.schema import fail

CHILD_LSOA_COLUMNS = ("la", "child_id", "lsoa")  # optional: year
LOOKED_AFTER_COLUMNS = ("la", "child_id", "looked_after_start")  # optional: year
SCHEMA_ERROR_COLUMNS = ("file", "line", "element", "category", "message")
CIN_PLAN_COLUMNS = ("la", "child_id", "referral_date", "cin_plan_start")  # opt.: year, end


@dataclass(frozen=True)
class ReadReport:
    """What the reader did with every episode (``CINdetails``) in the returns.

    ``episodes == passed + sum(excluded.values())`` (episodes of files that could not be parsed
    are not counted: those files are in ``file_errors``). ``excluded_records``: one row per
    excluded episode (``file, line, la, la_child_id, referral_date, reason, element, value``);
    a child excluded without any episode has one row with ``referral_date`` blank and is
    counted in ``children_excluded``.
    """

    files: tuple
    children: int
    episodes: int
    passed: int
    excluded: dict
    excluded_records: pd.DataFrame = field(repr=False)
    children_excluded: int = 0
    looked_after_unmatched: int = 0
    #: XSD errors: ``file, line, element, category, message`` (see ``codes.error_category``).
    schema_errors: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(SCHEMA_ERROR_COLUMNS)), repr=False
    )
    #: Per file: the schema it was validated against, or why it was not validated.
    validation: dict = field(default_factory=dict)
    #: Files that could not be read at all (``errors="report"``): ``file, line, rule, message``.
    file_errors: tuple = ()
    #: Breaks of the DfE rules that change counts, per file and rule (issue 31): ``file, code,
    #: kind, description, records, children, counted`` (how the reader counted them).
    rule_breaks: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            columns=["file", "code", "kind", "description", "records", "children", "counted"]
        ),
        repr=False,
    )

    def to_dict(self, shown: int = 1000) -> dict:
        """Return the report as JSON-serialisable data (up to ``shown`` rows of each table)."""
        s = self.schema_errors
        by_cat = {str(k): int(v) for k, v in s["category"].value_counts().items()}
        by_file = {str(k): int(v) for k, v in s["file"].value_counts().items()}
        rows = s.head(shown).astype(object).to_dict("records")
        return {
            "files": [str(f) for f in self.files],
            "children": self.children,
            "episodes": self.episodes,
            "passed": self.passed,
            "excluded": dict(self.excluded),
            "children_excluded": self.children_excluded,
            "looked_after_unmatched": self.looked_after_unmatched,
            "validation": {str(k): v for k, v in self.validation.items()},
            "schema_errors": {
                "total": len(s),
                "by_category": by_cat,
                "by_file": by_file,
                "shown": rows,
            },
            "file_errors": [dict(e) for e in self.file_errors],
            "rule_breaks": self.rule_breaks.astype(object).to_dict("records"),
            "excluded_records": self.excluded_records.head(shown)
            .astype(object)
            .where(self.excluded_records.head(shown).notna(), None)
            .to_dict("records"),
        }


def _age(dob: pd.Series, year: pd.Series) -> np.ndarray:
    """Whole years of age on 31 March ``year``."""
    d = pd.to_datetime(dob)
    age = year.to_numpy() - d.dt.year.to_numpy(float)
    before = (d.dt.month > 3).to_numpy()  # birthday (after 31 March) not yet reached
    return age - before


def _period(year: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Return the collection period of each ``year``: 1 April of the year before to 31 March."""
    y = pd.to_numeric(year).astype("Int64")
    start = pd.to_datetime(pd.DataFrame({"year": y - 1, "month": 4, "day": 1}))
    end = pd.to_datetime(pd.DataFrame({"year": y, "month": 3, "day": 31}))
    return start.set_axis(year.index), end.set_axis(year.index)


def _band(age: np.ndarray) -> np.ndarray:
    out = np.full(len(age), None, dtype=object)
    for band, (lo, hi) in rec.AGE_RANGE.items():
        out[(age >= lo) & (age <= hi)] = band
    return out


def read_child_lsoa(path_or_frame) -> pd.DataFrame:
    """Read the child -> LSOA table (``la, child_id, lsoa[, year]``).

    A column ``LAchildID`` is read as ``child_id``.
    """
    t = _table(path_or_frame, {"LAchildID": "child_id"})
    _require(t, CHILD_LSOA_COLUMNS, "child -> LSOA table")
    cols = [c for c in ("la", "year", "child_id", "lsoa") if c in t.columns]
    t = t[cols].copy()
    for c in ("la", "child_id"):
        t[c] = t[c].astype(str)
    t["lsoa"] = t["lsoa"].astype(object).where(t["lsoa"].notna(), None)
    return t


def _table(path_or_frame, rename=None) -> pd.DataFrame:
    if isinstance(path_or_frame, pd.DataFrame):
        t = path_or_frame.copy()
    else:
        from socialgradient.data.schema import read_table

        path = Path(path_or_frame)
        if path.suffix.lower() == ".csv" or path.name.lower().endswith(".csv.gz"):
            t = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
            if "year" in t.columns:
                t["year"] = pd.to_numeric(t["year"], errors="coerce")
        else:
            t = read_table(path)
    return t.rename(columns=rename or {})


def _require(t: pd.DataFrame, cols, what: str) -> None:
    missing = [c for c in cols if c not in t.columns]
    if missing:
        raise fail("missing_column", f"{what} lacks columns {missing}", columns=missing)


def default_population(geography: pd.DataFrame, years: Iterable[int]) -> pd.DataFrame:
    """Return a population table from a geography's ``children``: strata ``all`` (``by=()``)."""
    g = geography[["lsoa", "la", "children"]]
    if not list(years):
        return pd.DataFrame(columns=list(rec.TABLE_COLUMNS["population"]))
    return pd.concat(
        [g.assign(year=int(y), age_band="all", gender="all", ethnicity="all") for y in years],
        ignore_index=True,
    )[list(rec.TABLE_COLUMNS["population"])]


def build_records(
    flat: pd.DataFrame,
    factors: pd.DataFrame,
    child_lsoa: pd.DataFrame,
    geography: pd.DataFrame,
    population: pd.DataFrame | None,
    looked_after: pd.DataFrame | None = None,
    source: str = "",
    years: Iterable[int] | None = None,
    las: Iterable[str] | None = None,
    derive_only=None,
) -> tuple:
    """Canonical flat episodes -> :class:`Records` (shared by the XML and flat-table readers).

    ``flat``: one row per episode with ``la, year, child_id, la_child_id, date_of_birth,
    gender, ethnicity, age, age_band, episode_id, referral_date, referral_source,
    referral_nfa, assessment_date, cin_plan_start, cin_plan_end, cp_plan_start, cp_plan_end,
    cp_category, closure_date, closure_reason, repeat_cp_plan`` (dates parsed),
    ``has_episode`` (False: a child row without an episode). ``child_lsoa`` (``la,
    la_child_id, lsoa[, year]``) gives each child's LSOA (a child it lacks gets none: linkage
    reports ``missing_lsoa``). ``years``/``las``: the collection years and LAs read (default:
    those of ``flat``; a reader passes those of every file, so that a file whose episodes are
    all excluded still has its denominators). ``derive_only``: a boolean per row of ``flat``,
    episodes (referred before the collection period) that re-referrals and looked-after
    starts are derived from but that are not records themselves. Re-referral: a referral
    within 365 days of the child's previous referral on an earlier date (the same episode
    read from two years' returns is not its own previous referral). Returns ``(records,
    looked_after_unmatched)``.
    """
    only = np.zeros(len(flat), bool) if derive_only is None else np.asarray(derive_only, bool)
    only = pd.Series(only, index=flat.index)
    child_cols = list(rec.TABLE_COLUMNS["children"])
    ch = flat.loc[
        ~only,
        [
            "child_id",
            "la_child_id",
            "year",
            "la",
            "date_of_birth",
            "age",
            "age_band",
            "gender",
            "ethnicity",
        ],
    ].drop_duplicates(["child_id", "year", "date_of_birth", "gender", "ethnicity"])
    key = ["la", "la_child_id"] + (["year"] if "year" in child_lsoa.columns else [])
    cl = child_lsoa.rename(columns={"child_id": "la_child_id"}).drop_duplicates()
    ch = ch.merge(cl[[*key, "lsoa"]], on=key, how="left")
    ch = ch[[*child_cols, "la_child_id"]].reset_index(drop=True)
    e = flat[flat["has_episode"]].copy()
    unmatched = 0
    if looked_after is not None and len(looked_after):
        la = looked_after.rename(columns={"child_id": "la_child_id"}).copy()
        la["looked_after_start"] = pd.to_datetime(la["looked_after_start"])
        by = ["la", "la_child_id"] + (["year"] if "year" in la.columns else [])
        la["_la"] = np.arange(len(la))
        cand = e[[*by, "episode_id", "referral_date"]].merge(la, on=by)
        cand = cand[cand["referral_date"] <= cand["looked_after_start"]]
        cand = cand.sort_values("referral_date").groupby("_la").tail(1)
        unmatched = len(la) - len(cand)
        first = cand.groupby("episode_id")["looked_after_start"].min()
        e["looked_after_start"] = e["episode_id"].map(first)
    else:
        e["looked_after_start"] = pd.NaT
    e["assessment"] = e["assessment_date"].notna()
    e["outcome"] = np.select(
        [e["looked_after_start"].notna(), e["cp_plan_start"].notna(), e["cin_plan_start"].notna()],
        ["looked_after", "cp_plan", "cin_plan"],
        "nfa",
    )
    e["censored"] = e["closure_date"].isna()
    key = ["la", "la_child_id", "referral_date"]
    dates = e[key].drop_duplicates().sort_values(key, kind="stable")
    dates["prev"] = dates.groupby(["la", "la_child_id"], sort=False)["referral_date"].shift()
    prev = e[key].merge(dates, on=key, how="left")["prev"].to_numpy()
    e["rereferral_within_12m"] = (e["referral_date"] - prev).dt.days.le(365).to_numpy()
    e = e[~only[e.index]]
    episodes = e[list(rec.TABLE_COLUMNS["episodes"])].reset_index(drop=True)
    fac = factors.merge(flat[["child_id", "episode_id", "year"]], left_on="row", right_index=True)
    fac = fac[fac["row"].isin(e.index)]
    fac = fac[list(rec.TABLE_COLUMNS["factors"])].reset_index(drop=True)
    geo = rec.geography_table(geography, 0, 1.0)
    years = sorted({int(y) for y in (flat["year"] if years is None else years)})
    las = set(flat["la"] if las is None else las)
    pop = population if population is not None else default_population(geo, years)
    pop = pop[pop["year"].isin(years) & pop["la"].astype(str).isin(las)].reset_index(drop=True)
    truth = {"source": source, "years": [int(y) for y in years], "las": sorted(las)}
    records = rec.Records(
        children=ch, episodes=episodes, factors=fac, population=pop, geography=geo, truth=truth
    )
    return records, unmatched


def join_cin_plans(ok: pd.DataFrame, cin_plans) -> pd.DataFrame:
    """Fill CIN plan dates from the companion table (years without ``CINPlanDates``)."""
    t = _table(cin_plans)
    _require(t, CIN_PLAN_COLUMNS, "CIN plan table")
    t = t.rename(columns={"child_id": "la_child_id"})
    t["la"], t["la_child_id"] = t["la"].astype(str), t["la_child_id"].astype(str)
    for c in ("referral_date", "cin_plan_start", "cin_plan_end"):
        t[c] = pd.to_datetime(t[c], format="%Y-%m-%d") if c in t else pd.NaT
    key = ["la", "la_child_id", "referral_date"] + (["year"] if "year" in t.columns else [])
    t = t.drop_duplicates(key)[[*key, "cin_plan_start", "cin_plan_end"]]
    m = ok.merge(t, on=key, how="left", suffixes=("", "_t"), validate="many_to_one")
    m.index = ok.index
    use = m["cin_plan_start"].isna() & m["cin_plan_start_t"].notna()
    for c in ("cin_plan_start", "cin_plan_end"):
        ok[c] = m[c].where(~use, m[f"{c}_t"])
    return ok
