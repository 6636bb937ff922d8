"""Write child-level records as CIN Census XML returns that validate against the year's XSD.

:func:`write_returns` writes :class:`~socialgradient.data.records.Records` as
one return per LA per collection year in the DfE layout (element order, optional blocks and
code lists of that year's schema, :mod:`socialgradient.data.census.codes`), plus the tables the
return lacks. The layout (``?``: optional, ``*``: repeated)::

    Message
      Header
        CollectionDetails: Collection (CIN), Year, ReferenceDate (31 March)
        Source: SourceLevel (L), LEA (DfE 3-digit LA number), SoftwareCode, Release,
                SerialNo, DateTime
      Children
        Child*
          ChildIdentifiers: LAchildID, PersonBirthDate, GenderCurrent
          ChildCharacteristics: Ethnicity
          CINdetails* (one per CIN episode, in the XSD's order)
            CINreferralDate, ReferralSource, PrimaryNeedCode, CINclosureDate?,
            ReasonForClosure?, DateOfInitialCPC?,
            Assessments?: AssessmentActualStartDate, AssessmentAuthorisationDate,
                          FactorsIdentifiedAtAssessment?/AssessmentFactors*
            CINPlanDates? (2022 on): CINPlanStartDate, CINPlanEndDate?
            Section47?: S47ActualStartDate, InitialCPCtarget, DateOfInitialCPC,
                        ICPCnotRequired
            ReferralNFA
            ChildProtectionPlans?: CPPstartDate, CPPendDate?, InitialCategoryOfAbuse,
                                   LatestCategoryOfAbuse, NumberOfPreviousCPP

Simplifications (the synthetic records lack some census items; documented, not hidden): no
UPN, disabilities, death dates or CP reviews; PrimaryNeedCode ``N1`` for episodes with a CP
plan, else ``N0``; AssessmentAuthorisationDate is the CIN plan start, else the closure date,
else the assessment start; Section47 only for CP episodes, starting on the assessment date,
InitialCPCtarget 15 working days later, DateOfInitialCPC = CP plan start;
LatestCategoryOfAbuse = InitialCategoryOfAbuse; NumberOfPreviousCPP 1 (first plan) or 2
(repeat plan; see :data:`~socialgradient.data.census.codes.FIRST_PLAN_CPP`). A code the
year's list lacks is written as :data:`~socialgradient.data.census.codes.WRITE_FALLBACK` says
(e.g. factor 18C as 18A before 2021).

Companion tables: ``child_lsoa.csv`` (``la, year, child_id, lsoa``), ``looked_after.csv``
(``la, year, child_id, looked_after_start``; the SSDA903 item the CIN return lacks) and
``cin_plans.csv`` (``la, year, child_id, referral_date, cin_plan_start, cin_plan_end``: CIN
plans of years whose schema has no ``CINPlanDates``).
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd

from socialgradient.data import records as rec
from socialgradient.data.census import codes as cc
from socialgradient.data.schema import fail
from socialgradient.util.files import atomic_write


def _dates(s: pd.Series) -> np.ndarray:
    d = pd.to_datetime(s).to_numpy("datetime64[D]")
    out = np.datetime_as_string(d).astype(object)
    out[np.isnat(d)] = ""
    return out


def _el(tag: str, value: str, pad: str) -> str:
    """A leaf element; values are codes and dates (escaped only if they need it)."""
    if not value:
        return ""
    if "&" in value or "<" in value or ">" in value:
        value = escape(value)
    return f"{pad}<{tag}>{value}</{tag}>\n"


def _ethnic_codes(children: pd.DataFrame, seed: int) -> np.ndarray:
    """A 4-letter code per child drawn within its broad group (deterministic for ``seed``)."""
    rng = np.random.default_rng([seed, 47])
    out = np.full(len(children), "NOBT", dtype=object)
    eth = children["ethnicity"].astype(object).to_numpy()
    for group, codes in cc.WRITE_ETHNIC.items():
        idx = np.flatnonzero(eth == group)
        p = np.array(list(codes.values()))
        out[idx] = np.array(list(codes), object)[rng.choice(len(codes), len(idx), p=p / p.sum())]
    return out


def _code(value: str, allowed: frozenset) -> str:
    """``value`` if the year's list has it, else its fallback (empty stays empty)."""
    if not value or value in allowed:
        return value
    alt = cc.WRITE_FALLBACK.get(value, "")
    if alt not in allowed:
        raise ValueError(f"code {value!r} has no equivalent in the year's list")
    return alt


def _episode_xml(e: pd.DataFrame, factors: pd.DataFrame) -> np.ndarray:
    """One ``CINdetails`` block (text) per episode row of ``e`` (in its year's layout)."""
    p3, p4, p5 = " " * 12, " " * 16, " " * 20
    ref, clo, ass = _dates(e["referral_date"]), _dates(e["closure_date"]), _dates(
        e["assessment_date"])
    cin_s, cin_e = _dates(e["cin_plan_start"]), _dates(e["cin_plan_end"])
    cp_s, cp_e = _dates(e["cp_plan_start"]), _dates(e["cp_plan_end"])
    a_dt = pd.to_datetime(e["assessment_date"]).to_numpy("datetime64[D]")
    target = np.full(len(e), "", dtype=object)
    has_a = ~np.isnat(a_dt)
    target[has_a] = np.datetime_as_string(np.busday_offset(a_dt[has_a], 15, roll="forward"))
    auth = np.where(cin_s != "", cin_s, np.where(clo != "", clo, ass))
    src = e["referral_source"].astype(object).fillna("").to_numpy()
    reason = e["closure_reason"].astype(object).fillna("").to_numpy()
    cat = e["cp_category"].astype(object).fillna("").to_numpy()
    nfa = e["referral_nfa"].astype(bool).to_numpy()
    repeat = e["repeat_cp_plan"].fillna(False).astype(bool).to_numpy()
    years = e["year"].to_numpy()
    fac = factors.groupby("episode_id", sort=False)["factor"].agg(list).to_dict()
    eids = e["episode_id"].astype(object).to_numpy()
    out = np.empty(len(e), dtype=object)
    for i in range(len(e)):
        y = int(years[i])
        cp = cp_s[i] != ""
        parts = [f"{p3}<CINdetails>\n", _el("CINreferralDate", ref[i], p4),
                 _el("ReferralSource", _code(src[i], cc.SOURCES_BY_YEAR[y]), p4),
                 _el("PrimaryNeedCode", "N1" if cp else "N0", p4),
                 _el("CINclosureDate", clo[i], p4),
                 _el("ReasonForClosure", _code(reason[i], cc.CLOSURE_BY_YEAR[y]), p4),
                 _el("DateOfInitialCPC", cp_s[i], p4)]
        if ass[i]:
            parts += [f"{p4}<Assessments>\n", _el("AssessmentActualStartDate", ass[i], p5),
                      _el("AssessmentAuthorisationDate", auth[i], p5)]
            codes = [_code(c, cc.FACTORS_BY_YEAR[y]) for c in fac.get(eids[i], ())]
            if codes:
                parts.append(f"{p5}<FactorsIdentifiedAtAssessment>\n")
                parts += [_el("AssessmentFactors", c, p5 + "    ") for c in codes]
                parts.append(f"{p5}</FactorsIdentifiedAtAssessment>\n")
            parts.append(f"{p4}</Assessments>\n")
        if cin_s[i] and cc.HAS_CIN_PLAN_DATES[y]:
            parts += [f"{p4}<CINPlanDates>\n", _el("CINPlanStartDate", cin_s[i], p5),
                      _el("CINPlanEndDate", cin_e[i], p5), f"{p4}</CINPlanDates>\n"]
        if cp:
            parts += [f"{p4}<Section47>\n", _el("S47ActualStartDate", ass[i], p5),
                      _el("InitialCPCtarget", target[i], p5),
                      _el("DateOfInitialCPC", cp_s[i], p5),
                      _el("ICPCnotRequired", "false", p5), f"{p4}</Section47>\n"]
        parts.append(_el("ReferralNFA", "1" if nfa[i] else "0", p4))
        if cp:
            parts += [f"{p4}<ChildProtectionPlans>\n", _el("CPPstartDate", cp_s[i], p5),
                      _el("CPPendDate", cp_e[i], p5), _el("InitialCategoryOfAbuse", cat[i], p5),
                      _el("LatestCategoryOfAbuse", cat[i], p5),
                      _el("NumberOfPreviousCPP", str(cc.FIRST_PLAN_CPP + int(repeat[i])), p5),
                      f"{p4}</ChildProtectionPlans>\n"]
        parts.append(f"{p3}</CINdetails>\n")
        out[i] = "".join(parts)
    return out


def _header_text(lea: str, year: int) -> str:
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Message>\n    <Header>\n"
            "        <CollectionDetails>\n            <Collection>CIN</Collection>\n"
            f"            <Year>{year}</Year>\n"
            f"            <ReferenceDate>{year}-03-31</ReferenceDate>\n"
            "        </CollectionDetails>\n        <Source>\n"
            "            <SourceLevel>L</SourceLevel>\n"
            f"            <LEA>{escape(lea)}</LEA>\n"
            "            <SoftwareCode>socialgradient</SoftwareCode>\n"
            "            <Release>synthetic</Release>\n            <SerialNo>001</SerialNo>\n"
            f"            <DateTime>{year}-05-01T00:00:00</DateTime>\n"
            "        </Source>\n    </Header>\n    <Children>\n")


def _child_xml(children: pd.DataFrame, episodes: pd.DataFrame, factors: pd.DataFrame,
               seed: int) -> np.ndarray:
    """One ``Child`` block (text) per row of ``children``, with its episodes."""
    p2, p3, p4 = " " * 8, " " * 12, " " * 16
    ep_xml = _episode_xml(episodes, factors)
    by_child: dict = {}
    for k, y, x in zip(episodes["child_id"].to_numpy(object), episodes["year"].to_numpy(),
                       ep_xml, strict=True):
        by_child.setdefault((k, y), []).append(x)
    dob = _dates(children["date_of_birth"])
    eth = _ethnic_codes(children, seed)
    ids = children["child_id"].astype(str).to_numpy(object)
    years = children["year"].to_numpy()
    gender = children["gender"].astype(object).map(cc.GENDER_WRITE).fillna("0").to_numpy(object)
    out = np.empty(len(children), dtype=object)
    for i in range(len(children)):
        out[i] = (f"{p2}<Child>\n{p3}<ChildIdentifiers>\n" + _el("LAchildID", ids[i], p4)
                  + _el("PersonBirthDate", dob[i], p4) + _el("GenderCurrent", gender[i], p4)
                  + f"{p3}</ChildIdentifiers>\n{p3}<ChildCharacteristics>\n"
                  + _el("Ethnicity", eth[i], p4) + f"{p3}</ChildCharacteristics>\n"
                  + "".join(by_child.get((ids[i], years[i]), ())) + f"{p2}</Child>\n")
    return out


def write_returns(records: rec.Records, out_dir, lea_codes: dict | None = None,
                  seed: int = 0) -> list[Path]:
    """Write one CIN Census XML return per LA per collection year, plus the companion tables.

    Files (each written atomically): ``<la>_<year>.xml`` (e.g. ``E06000001_2019.xml``), each in
    the layout of its year's DfE XSD, and the companion tables of the module docstring.
    ``LEA`` holds the DfE 3-digit LA number (:data:`~socialgradient.data.census.codes.
    LA_NUMBERS`, updated with ``lea_codes``: ONS code -> number, or number -> ONS code as
    :func:`lea_codes_from_dfe` gives). ``seed`` drives the 4-letter ethnicity sub-codes.
    Returns the XML paths, sorted.

    Raises
    ------
    InputError
        ``unknown_lea``: an LA without a DfE number; ``unsupported_year``: a collection year
        without a known schema (:data:`~socialgradient.data.census.codes.YEARS`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ch, ep, fa = records.children, records.episodes, records.factors
    numbers = cc.dfe_numbers(lea_codes)
    missing = sorted(set(ch["la"].astype(str)) - set(numbers))
    if missing:
        raise fail("unknown_lea", f"no DfE LA number for {missing[:5]} (LEA must be the "
                   "3-digit number; pass lea_codes / --lea-codes)")
    bad_years = sorted(set(int(y) for y in ch["year"]) - set(cc.YEARS))
    if bad_years:
        raise fail("unsupported_year", f"collection years {bad_years}: the writer knows the "
                   f"schemas of {cc.YEARS[0]}-{cc.YEARS[-1]}")
    ep = ep.merge(ch[["child_id", "year", "la"]].drop_duplicates(["child_id", "year"]),
                  on=["child_id", "year"], how="left", validate="many_to_one")
    fa = fa.assign(episode_id=list(zip(fa["episode_id"], fa["year"], strict=True)))
    ep_keyed = ep.assign(episode_id=list(zip(ep["episode_id"], ep["year"], strict=True)))
    xml_child = _child_xml(ch, ep_keyed, fa, seed)
    paths = []
    groups = ch.groupby(["la", "year"], sort=True).indices
    for (la, year), idx in groups.items():
        text = (_header_text(numbers[str(la)], int(year)) + "".join(xml_child[np.sort(idx)])
                + "    </Children>\n</Message>\n")
        path = out / f"{la}_{int(year)}.xml"
        atomic_write(path, lambda tmp, t=text: Path(tmp).write_text(t, encoding="utf-8",
                                                                     newline="\n"))
        paths.append(path)
    lsoa = ch[["la", "year", "child_id", "lsoa"]]
    atomic_write(out / "child_lsoa.csv",
                 lambda tmp: lsoa.to_csv(tmp, index=False, lineterminator="\n"))
    la = ep.loc[ep["looked_after_start"].notna(), ["la", "year", "child_id",
                                                    "looked_after_start"]].copy()
    la["looked_after_start"] = _dates(la["looked_after_start"])
    atomic_write(out / "looked_after.csv",
                 lambda tmp: la.to_csv(tmp, index=False, lineterminator="\n"))
    no_dates = ep["year"].map(lambda y: not cc.HAS_CIN_PLAN_DATES[int(y)]).astype(bool)
    plans = ep.loc[ep["cin_plan_start"].notna() & no_dates,
                   ["la", "year", "child_id", "referral_date", "cin_plan_start",
                    "cin_plan_end"]].copy()
    for c in ("referral_date", "cin_plan_start", "cin_plan_end"):
        plans[c] = _dates(plans[c])
    atomic_write(out / "cin_plans.csv",
                 lambda tmp: plans.to_csv(tmp, index=False, lineterminator="\n"))
    return paths


def lea_codes_from_dfe(path) -> dict:
    """``{DfE 3-digit LA number: ONS code}`` from a DfE table with old/new LA code columns."""
    t = pd.read_csv(path, usecols=["old_la_code", "new_la_code"], dtype=str).dropna()
    return dict(zip(t["old_la_code"], t["new_la_code"], strict=True))
