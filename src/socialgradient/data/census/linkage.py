"""Link child-level records to neighbourhoods and aggregate them to LSOA x stratum counts.

:func:`link` joins every episode (a *record*) to its child and the child's LSOA to the
geography lookup; :func:`aggregate` counts children reaching each threshold and outcome per
LSOA x stratum, with the child population of that stratum as denominator. Nothing is dropped
silently: every record is linked or listed in ``LinkageReport.unlinked_records`` with one
reason, checked in this order:

``duplicate_episode``     the (year, child_id, episode_id) key repeats an earlier record
``unknown_child``         no child row with the episode's (child_id, year)
``ambiguous_child``       several differing child rows share the (child_id, year)
``missing_lsoa``          the child's LSOA is blank
``invalid_lsoa``          the LSOA is not a code like ``E01000001`` (schema.CODE_PATTERNS)
``lsoa_not_in_geography`` the LSOA is not in the geography lookup
``la_mismatch``           the child's LA (the returning LA) differs from the lookup's LA

The aggregated table, with ``by=()``, is one row per LSOA valid for
:func:`socialgradient.data.schema.validate` (its ``children`` are the records' population aged
0-17 summed over the years aggregated). Columns are documented in ``data/README.md``
("Child-level records").
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from socialgradient.data import records as rec
from socialgradient.data.schema import CODE_PATTERNS

REASONS = (
    "duplicate_episode",
    "unknown_child",
    "ambiguous_child",
    "missing_lsoa",
    "invalid_lsoa",
    "lsoa_not_in_geography",
    "la_mismatch",
)
STRATA = ("year", "age_band", "gender", "ethnicity", "age")
GROUPS = ("thresholds", "factors", "cp_categories", "repeats", "durations")
THRESHOLD_COLUMNS = {
    "referrals": None,
    "assessments": "assessment",
    "cin_plans": "cin_plan_start",
    "cp_plans": "cp_plan_start",
    "looked_after": "looked_after_start",
}
CHILD_COLUMNS = ("la", "lsoa", "age_band", "gender", "ethnicity")


@dataclass(frozen=True)
class LinkageReport:
    """What happened to every record (episode row).

    ``read == linked + sum(unlinked.values())`` always; ``unlinked_records`` holds the
    unlinked episode rows with their child's columns (``child_la``, ``child_lsoa``, ...) and
    ``reason``. ``orphan_factors``: factor rows whose episode is not among the episodes read;
    ``children_without_episode``: child rows no episode refers to (neither is a record).
    """

    read: int
    linked: int
    unlinked: dict
    unlinked_records: pd.DataFrame = field(repr=False)
    orphan_factors: int = 0
    children_without_episode: int = 0
    #: DfE validation rules broken in the returns read that change counts (issue 31), one
    #: dict per file and rule: ``file, code, kind, description, records, children, counted``
    #: (how those records were counted); from ``records.truth["rule_breaks"]`` (the CIN
    #: return reader), empty for records without returns.
    rule_breaks: tuple = ()

    def to_dict(self) -> dict:
        """Return the report as JSON-serialisable data."""
        return {
            "read": self.read,
            "linked": self.linked,
            "unlinked": dict(self.unlinked),
            "orphan_factors": self.orphan_factors,
            "children_without_episode": self.children_without_episode,
            "rule_breaks": [dict(r) for r in self.rule_breaks],
        }


def link(records: rec.Records) -> tuple[pd.DataFrame, LinkageReport]:
    """Linked episodes (with the child's strata and the LSOA's ``la_lookup``), and the report."""
    e = records.episodes.reset_index(drop=True)
    key = ["child_id", "year"]
    ch = records.children[[*key, *CHILD_COLUMNS]].drop_duplicates()
    ambiguous = ch.duplicated(key, keep=False)
    amb_keys = ch.loc[ambiguous, key].drop_duplicates()
    ch = ch[~ambiguous].rename(columns={c: f"child_{c}" for c in CHILD_COLUMNS})
    m = e.merge(ch, on=key, how="left", validate="many_to_one")
    amb = e[key].merge(amb_keys.assign(_amb=True), on=key, how="left")["_amb"].fillna(False)
    geo = records.geography[["lsoa", "la", "income", "rural"]].rename(
        columns={"lsoa": "child_lsoa", "la": "la_lookup"}
    )
    known_child = m["child_lsoa"].notna() | m["child_la"].notna() | m["child_age_band"].notna()
    m = m.merge(geo, on="child_lsoa", how="left")
    lsoa = m["child_lsoa"].astype(object)
    blank = lsoa.isna() | lsoa.map(lambda v: not isinstance(v, str) or not v.strip())
    valid = lsoa.where(~blank, "").astype(str).str.fullmatch(CODE_PATTERNS["lsoa"])
    checks = {
        "duplicate_episode": e.duplicated(["year", "child_id", "episode_id"], keep="first"),
        "unknown_child": ~known_child & ~amb.to_numpy(bool),
        "ambiguous_child": amb.to_numpy(bool),
        "missing_lsoa": blank,
        "invalid_lsoa": ~valid,
        "lsoa_not_in_geography": m["la_lookup"].isna(),
        "la_mismatch": m["child_la"].astype(object) != m["la_lookup"].astype(object),
    }
    reason = pd.Series(None, index=m.index, dtype=object)
    for name in REASONS:
        reason = reason.where(reason.notna() | ~np.asarray(checks[name], bool), name)
    bad = reason.notna().to_numpy()
    unlinked = m[bad].assign(reason=reason[bad]).reset_index(drop=True)
    counts = {r: int((reason == r).sum()) for r in REASONS}
    eids = set(zip(e["year"], e["episode_id"], strict=True))
    f = records.factors
    orphan = (
        int(
            (
                ~pd.Series(list(zip(f["year"], f["episode_id"], strict=True)), dtype=object).isin(
                    eids
                )
            ).sum()
        )
        if len(f)
        else 0
    )
    without = int((~records.children.set_index(key).index.isin(e.set_index(key).index)).sum())
    report = LinkageReport(
        read=len(e),
        linked=int((~bad).sum()),
        unlinked=counts,
        unlinked_records=unlinked,
        orphan_factors=orphan,
        children_without_episode=without,
        rule_breaks=tuple(records.truth.get("rule_breaks", ())),
    )
    linked = m[~bad].rename(columns={f"child_{c}": c for c in CHILD_COLUMNS})
    return linked.reset_index(drop=True), report


def _piece_names() -> list[tuple[str, float, float]]:
    bounds = [*rec.PIECES, np.inf]
    return [
        (f"{int(lo)}_{'plus' if np.isinf(hi) else int(hi)}", lo, hi)
        for lo, hi in itertools.pairwise(bounds)
    ]


#: Names of the duration pieces in the ``days_<level>_<piece>`` / ``ends_...`` columns.
PIECE_NAMES = tuple(name for name, _, _ in _piece_names())


def _durations(linked: pd.DataFrame) -> pd.DataFrame:
    """Per episode: days at risk and episode endings in each piece, by outcome level.

    :func:`aggregate` passes each child's latest episode in a year only: an earlier episode
    of the same year is known to have closed before the child's next referral, so its
    duration is selected short (in the simulated records such episodes are drawn given the
    later one, and would attenuate the gradients by ~8%).
    """
    census = pd.to_datetime(linked["year"].astype(str) + "-03-31")
    closed = linked["closure_date"].notna().to_numpy()
    end = linked["closure_date"].where(closed, census)
    t = (end - linked["referral_date"]).dt.days.to_numpy(float) + np.where(closed, 0.5, 1.0)
    out = {}
    for level in rec.OUTCOME_LEVELS:
        is_level = (linked["outcome"] == level).to_numpy()
        for name, lo, hi in _piece_names():
            out[f"days_{level}_{name}"] = np.where(is_level, np.clip(t - lo, 0, hi - lo), 0.0)
            out[f"ends_{level}_{name}"] = (is_level & closed & (t >= lo) & (t < hi)).astype(
                np.int64
            )
    return pd.DataFrame(out, index=linked.index)


def _child_outcomes(linked: pd.DataFrame, factors: pd.DataFrame, groups) -> pd.DataFrame:
    """One row per (year, child_id) with 0/1 per outcome (children, not episodes)."""
    cols = {}
    if "thresholds" in groups:
        for name, col in THRESHOLD_COLUMNS.items():
            s = linked[col] if col else pd.Series(True, index=linked.index)
            cols[name] = s.astype(bool) if s.dtype == bool else s.notna()
    if "factors" in groups:
        f = factors.merge(
            linked[["year", "episode_id"]].assign(_row=linked.index), on=["year", "episode_id"]
        )
        for code, (name, *_) in rec.FACTORS.items():
            hit = np.zeros(len(linked), bool)
            hit[f.loc[f["factor"] == code, "_row"].to_numpy()] = True
            cols[f"factor_{name}"] = hit
    if "cp_categories" in groups:  # the category of the child's latest plan in the year
        plans = linked.loc[linked["cp_plan_start"].notna(), ["year", "child_id", "cp_plan_start"]]
        latest = (
            plans.sort_values("cp_plan_start", kind="stable")
            .groupby(["year", "child_id"])
            .tail(1)
            .index
        )
        is_latest = linked.index.isin(latest)
        for code, (name, *_) in rec.CP_CATEGORIES.items():
            cols[f"cp_{name}"] = ((linked["cp_category"] == code) & is_latest).to_numpy()
    if "repeats" in groups:
        cols["rereferrals"] = linked["rereferral_within_12m"].fillna(False).astype(bool)
        cols["repeat_cp_plans"] = linked["repeat_cp_plan"].fillna(False).astype(bool)
    flags = pd.DataFrame({k: np.asarray(v, bool) for k, v in cols.items()}, index=linked.index)
    keys = linked[["year", "child_id", "lsoa", *[c for c in STRATA if c != "year" and c in linked]]]
    per = pd.concat([keys, flags], axis=1).groupby(["year", "child_id"], sort=False)
    first = per[list(keys.columns.drop(["year", "child_id"]))].first()
    return pd.concat([first, per[list(flags.columns)].max().astype(np.int64)], axis=1)


def aggregate(
    records: rec.Records,
    by: Sequence[str] = ("age_band",),
    outcomes: Sequence[str] = GROUPS,
    years: Sequence[int] | None = None,
) -> tuple[pd.DataFrame, LinkageReport]:
    """Child-level records -> LSOA x stratum counts with denominators.

    Parameters
    ----------
    records : Records
        As from :func:`socialgradient.data.synthetic.records.simulate_records` (or a census reader).
    by : sequence of str
        Strata among ``year, age_band, gender, ethnicity, age``; ``()`` gives one row per
        LSOA. ``age`` (single years, the child's age at 31 March) takes its denominators
        from :func:`~socialgradient.data.records.single_year_population`
        (``children`` is then a float: a band's children split evenly over its years).
    outcomes : sequence of str
        Column groups among :data:`GROUPS` (thresholds, factors, cp_categories, repeats,
        durations).
    years : sequence of int, optional
        Collection years to keep (default all); counts and denominators sum over them.

    Returns
    -------
    (table, report)
        ``table``: one row per LSOA x stratum cell of the population (and any cell with
        records but no population, with ``children`` 0), columns ``lsoa, la, income, rural``,
        the strata, ``children`` and the counts; ``report``: :class:`LinkageReport` of all
        records read (before the ``years`` filter).
    """
    by = [by] if isinstance(by, str) else list(by)
    unknown = [c for c in by if c not in STRATA] + [g for g in outcomes if g not in GROUPS]
    if unknown:
        raise ValueError(
            f"unknown strata or outcome groups {unknown}; strata: {STRATA}, groups: {GROUPS}"
        )
    linked, report = link(records)
    pop = records.population
    if "age" in by:  # the child's single year of age, and denominators by single year
        ages = records.children[["year", "child_id", "age"]].drop_duplicates(["year", "child_id"])
        linked = linked.merge(ages, on=["year", "child_id"], how="left", validate="many_to_one")
        pop = rec.single_year_population(pop)
    if years is not None:
        linked = linked[linked["year"].isin(list(years))]
        pop = pop[pop["year"].isin(list(years))]
    keys = ["lsoa", *by]
    table = pop.groupby(keys, observed=True, sort=False)["children"].sum().reset_index()
    table["lsoa"] = table["lsoa"].astype(str)
    for c in by:
        if c not in ("year", "age"):  # (year and age stay whole numbers)
            table[c] = table[c].astype(str)
    child = _child_outcomes(linked, records.factors, outcomes).reset_index()
    counts = child.drop(columns=["child_id"] + [c for c in STRATA if c not in by and c in child])
    counts = counts.groupby(keys, sort=False).sum().reset_index()
    if "durations" in outcomes:  # each child's latest episode in the year (see _durations)
        latest = (
            linked.sort_values("referral_date", kind="stable")
            .groupby(["year", "child_id"])
            .tail(1)
            .sort_index()
        )
        d = pd.concat([latest[keys], _durations(latest)], axis=1)
        counts = counts.merge(d.groupby(keys, sort=False).sum().reset_index(), on=keys, how="outer")
    table = table.merge(counts, on=keys, how="outer")
    value_cols = [c for c in table.columns if c not in keys]
    table[value_cols] = table[value_cols].fillna(0)
    for c in value_cols:
        if not c.startswith("days_") and not (c == "children" and "age" in by):
            table[c] = table[c].astype(np.int64)
    geo = records.geography[["lsoa", "la", "income", "rural"]]
    table = geo.merge(table, on="lsoa", how="right")
    table = table.sort_values(keys, kind="stable").reset_index(drop=True)
    return table[["lsoa", "la", "income", "rural", *by, *value_cols]], report


def _write_parquet(df: pd.DataFrame, tmp: str) -> None:
    """Write ``df`` to the Parquet file ``tmp`` (zstd; for ``atomic_write``)."""
    df.to_parquet(tmp, index=False, compression="zstd")


def _write_text(text: str, tmp: str) -> None:
    """Write ``text`` to the file ``tmp`` (UTF-8, newlines as is; for ``atomic_write``)."""
    Path(tmp).write_text(text, encoding="utf-8", newline="\n")


def write(records: rec.Records, out_dir, by: Sequence[str] = ("age_band",)) -> dict:
    """Write the child-level tables, their truth, the aggregate and the linkage report.

    Files (atomically): ``children.parquet``, ``episodes.parquet``, ``factors.parquet``,
    ``population.parquet``, ``records_truth.json``, ``lsoa_<by>.parquet`` (e.g.
    ``lsoa_age_band.parquet``; ``lsoa.parquet`` for ``by=()``) and ``linkage_report.json``.
    Returns ``{name: path}``.
    """
    import json

    from socialgradient.util.files import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table, report = aggregate(records, by=by)
    frames = {n: getattr(records, n) for n in ("children", "episodes", "factors", "population")}
    frames["_".join(["lsoa", *by])] = table
    paths = {}
    for name, df in frames.items():
        paths[name] = out / f"{name}.parquet"
        atomic_write(paths[name], partial(_write_parquet, df))
    for name, obj in (("records_truth", records.truth), ("linkage_report", report.to_dict())):
        paths[name] = out / f"{name}.json"
        text = json.dumps(obj, indent=1) + "\n"
        atomic_write(paths[name], partial(_write_text, text))
    return paths
