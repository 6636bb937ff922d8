"""Write child-level records as CIN Census XML returns that the DfE would accept.

Each return validates against its year's XSD (2019-2024; the 2024-25 and 2025-26
collections, 2025 and 2026, have none at hand: returns of
:data:`~socialgradient.data.census.codes.RULES_ONLY_YEARS` are checked against the
validation rules only) and obeys the census validation rules of its year (issue 31;
:mod:`socialgradient.data.census.rules`: every error rule, query rules at stated rates).
Built with :mod:`lxml.etree` (issue 28), never by string concatenation.

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
          ChildIdentifiers: LAchildID, UPN?, PersonBirthDate, GenderCurrent (to 2024) or
                            Sex (2025 on: M, F, U)
          ChildCharacteristics: Ethnicity
          CINdetails* (one per CIN episode, in the XSD's order)
            CINreferralDate, ReferralSource, PrimaryNeedCode, CINclosureDate?,
            ReasonForClosure?,
            Assessments?: AssessmentActualStartDate, AssessmentAuthorisationDate,
                          FactorsIdentifiedAtAssessment?/AssessmentFactors*
            CINPlanDates? (2022 on): CINPlanStartDate, CINPlanEndDate?
            Section47?: S47ActualStartDate, InitialCPCtarget, DateOfInitialCPC,
                        ICPCnotRequired
            ReferralNFA
            ChildProtectionPlans?: CPPstartDate, CPPendDate?, InitialCategoryOfAbuse,
                                   LatestCategoryOfAbuse, NumberOfPreviousCPP

Simplifications (the synthetic records lack some census items; documented, not hidden): no
disabilities, death dates, UPN-unknown reasons or CP reviews; PrimaryNeedCode ``N1`` for
episodes with a CP plan, else ``N0``; AssessmentAuthorisationDate is the CIN plan start, else
the closure date, else the assessment start; a completed assessment with none of the
simulated factors, in an episode closed RC8, lists factor ``21`` (no factors identified),
otherwise none; Section47 only for CP episodes, starting on the assessment date,
InitialCPCtarget 15 working days later, DateOfInitialCPC = CP plan start (a weekday, see
:mod:`socialgradient.data.synthetic.timeline`), recorded only there (rule 2884: not also at
CINdetails level); LatestCategoryOfAbuse = InitialCategoryOfAbuse; NumberOfPreviousCPP 1
(first plan) or 2 (repeat plan; see :data:`~socialgradient.data.census.codes.FIRST_PLAN_CPP`);
UPN for children of school age (:func:`_upns`, :data:`UPN_MISSING_SHARE` without). A code
the year's list lacks is written as :data:`~socialgradient.data.census.codes.WRITE_FALLBACK`
says (e.g. factor 18C as 18A before 2021).

Companion tables: ``child_lsoa.csv`` (``la, year, child_id, lsoa``), ``looked_after.csv``
(``la, year, child_id, looked_after_start``; the SSDA903 item the CIN return lacks) and
``cin_plans.csv`` (``la, year, child_id, referral_date, cin_plan_start, cin_plan_end``: CIN
plans of years whose schema has no ``CINPlanDates``).
"""

from __future__ import annotations

import re
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from lxml import etree

from socialgradient.data import records as rec
from socialgradient.data.census import codes as cc
from socialgradient.data.schema import fail
from socialgradient.util.files import atomic_write

#: Share of children of school age (5 or over on 31 March) written without a UPN and without a
#: reason (rule 8770Q, a query): those on no school roll. An assumption (issue 31): no
#: published per-return rate exists; DfE queries the gap, so real returns keep it small.
UPN_MISSING_SHARE = 0.02
#: Children written with a UPN from this age (years on 31 March): school age.
UPN_FROM_AGE = 5
_UPN_CHECK = "ABCDEFGHJKLMNPQRTUVWXYZ"


def _dates(s: pd.Series) -> np.ndarray:
    d = pd.to_datetime(s).to_numpy("datetime64[D]")
    out = np.datetime_as_string(d).astype(object)
    out[np.isnat(d)] = ""
    return out


def _leaf(parent, tag: str, value: str) -> None:
    """Add a leaf element (nothing for an empty value); lxml escapes the text."""
    if value:
        etree.SubElement(parent, tag).text = value


def _ethnic_codes(children: pd.DataFrame, seed: int) -> np.ndarray:
    """Draw a 4-letter code per child within its broad group (deterministic for ``seed``)."""
    rng = np.random.default_rng([seed, 47])
    out = np.full(len(children), "NOBT", dtype=object)
    eth = children["ethnicity"].astype(object).to_numpy()
    for group, codes in cc.WRITE_ETHNIC.items():
        idx = np.flatnonzero(eth == group)
        p = np.array(list(codes.values()))
        out[idx] = np.array(list(codes), object)[rng.choice(len(codes), len(idx), p=p / p.sum())]
    return out


def _write_bytes(data: bytes, tmp: str) -> None:
    """Write ``data`` to the file ``tmp`` (for :func:`~socialgradient.util.files.atomic_write`)."""
    Path(tmp).write_bytes(data)


def upn_check_letter(digits: str) -> str:
    """Return the DfE check letter of a UPN's characters 2-13 (weights 2-13, sum mod 23)."""
    return _UPN_CHECK[sum(int(c) * w for c, w in zip(digits, range(2, 14), strict=True)) % 23]


def _upns(children: pd.DataFrame, lea: np.ndarray, seed: int) -> np.ndarray:
    """Return a UPN per child of school age, the same in every year ('' for none).

    Characters 2-4 are the LA's DfE number, 5 a ``2``, 6-13 the child identifier's last eight
    digits (a CRC of the identifier where it has none), so UPNs are unique within a return and
    a child keeps its UPN between years; the check letter is DfE's. A child aged
    :data:`UPN_FROM_AGE` or over has none with probability :data:`UPN_MISSING_SHARE` (a
    deterministic function of ``seed`` and the identifier, so also the same every year).
    """
    ids = children["child_id"].astype(str).to_numpy(object)
    age = children["age"].to_numpy()
    out = np.full(len(ids), "", dtype=object)
    for i, (k, a, la) in enumerate(zip(ids, age, lea, strict=True)):
        if a < UPN_FROM_AGE:
            continue
        if zlib.crc32(f"{seed}/upn/{k}".encode()) / 2**32 < UPN_MISSING_SHARE:
            continue
        m = re.search(r"(\d{8})$", k)
        tail = m.group(1) if m else f"{zlib.crc32(k.encode()) % 10**8:08d}"
        digits = f"{la}2{tail}"
        out[i] = upn_check_letter(digits) + digits
    return out


def _code(value: str, allowed: frozenset) -> str:
    """``value`` if the year's list has it, else its fallback (empty stays empty)."""
    if not value or value in allowed:
        return value
    alt = cc.WRITE_FALLBACK.get(value, "")
    if alt not in allowed:
        raise ValueError(f"code {value!r} has no equivalent in the year's list")
    return alt


#: Assessment factor written for a completed assessment that identified none of the factors
#: the records hold, where the episode closed after the assessment with no further action
#: (RC8): ``21`` "no factors identified" (rules 8897Q, 8873Q).
NO_FACTORS = "21"


class _Episodes:
    """The text of every ``CINdetails`` item, per episode row, computed column-wise."""

    def __init__(self, e: pd.DataFrame, factors: pd.DataFrame):
        self.ref, self.clo = _dates(e["referral_date"]), _dates(e["closure_date"])
        self.ass = _dates(e["assessment_date"])
        self.cin_s, self.cin_e = _dates(e["cin_plan_start"]), _dates(e["cin_plan_end"])
        self.cp_s, self.cp_e = _dates(e["cp_plan_start"]), _dates(e["cp_plan_end"])
        a_dt = pd.to_datetime(e["assessment_date"]).to_numpy("datetime64[D]")
        self.target = np.full(len(e), "", dtype=object)
        has_a = ~np.isnat(a_dt)
        self.target[has_a] = np.datetime_as_string(
            np.busday_offset(a_dt[has_a], 15, roll="forward")
        )
        self.auth = np.where(
            self.cin_s != "", self.cin_s, np.where(self.clo != "", self.clo, self.ass)
        )
        self.src = e["referral_source"].astype(object).fillna("").to_numpy()
        self.reason = e["closure_reason"].astype(object).fillna("").to_numpy()
        self.cat = e["cp_category"].astype(object).fillna("").to_numpy()
        self.nfa = e["referral_nfa"].astype(bool).to_numpy()
        self.repeat = e["repeat_cp_plan"].fillna(False).astype(bool).to_numpy()
        self.years = e["year"].to_numpy()
        self.fac = factors.groupby("episode_id", sort=False)["factor"].agg(list).to_dict()
        self.eids = e["episode_id"].astype(object).to_numpy()

    def add(self, child, i: int) -> None:
        """Append episode row ``i`` to ``child`` as a ``CINdetails`` in its year's layout."""
        y = int(self.years[i])
        cp = self.cp_s[i] != ""
        d = etree.SubElement(child, "CINdetails")
        _leaf(d, "CINreferralDate", self.ref[i])
        _leaf(d, "ReferralSource", _code(self.src[i], cc.SOURCES_BY_YEAR[y]))
        _leaf(d, "PrimaryNeedCode", "N1" if cp else "N0")
        _leaf(d, "CINclosureDate", self.clo[i])
        _leaf(d, "ReasonForClosure", _code(self.reason[i], cc.CLOSURE_BY_YEAR[y]))
        # the ICPC is recorded once, in Section47 (rule 2884), not at CINdetails level
        if self.ass[i]:
            a = etree.SubElement(d, "Assessments")
            _leaf(a, "AssessmentActualStartDate", self.ass[i])
            _leaf(a, "AssessmentAuthorisationDate", self.auth[i])
            codes = [_code(c, cc.FACTORS_BY_YEAR[y]) for c in self.fac.get(self.eids[i], ())]
            if not codes and self.reason[i] == "RC8":
                codes = [NO_FACTORS]
            if codes:
                f = etree.SubElement(a, "FactorsIdentifiedAtAssessment")
                for c in codes:
                    _leaf(f, "AssessmentFactors", c)
        if self.cin_s[i] and cc.HAS_CIN_PLAN_DATES[y]:
            p = etree.SubElement(d, "CINPlanDates")
            _leaf(p, "CINPlanStartDate", self.cin_s[i])
            _leaf(p, "CINPlanEndDate", self.cin_e[i])
        if cp:
            s47 = etree.SubElement(d, "Section47")
            _leaf(s47, "S47ActualStartDate", self.ass[i])
            _leaf(s47, "InitialCPCtarget", self.target[i])
            _leaf(s47, "DateOfInitialCPC", self.cp_s[i])
            _leaf(s47, "ICPCnotRequired", "false")
        _leaf(d, "ReferralNFA", "1" if self.nfa[i] else "0")
        if cp:
            c = etree.SubElement(d, "ChildProtectionPlans")
            _leaf(c, "CPPstartDate", self.cp_s[i])
            _leaf(c, "CPPendDate", self.cp_e[i])
            _leaf(c, "InitialCategoryOfAbuse", self.cat[i])
            _leaf(c, "LatestCategoryOfAbuse", self.cat[i])
            _leaf(c, "NumberOfPreviousCPP", str(cc.FIRST_PLAN_CPP + int(self.repeat[i])))


def _header(root, lea: str, year: int) -> None:
    h = etree.SubElement(root, "Header")
    c = etree.SubElement(h, "CollectionDetails")
    for tag, v in (("Collection", "CIN"), ("Year", str(year)), ("ReferenceDate", f"{year}-03-31")):
        _leaf(c, tag, v)
    s = etree.SubElement(h, "Source")
    for tag, v in (
        ("SourceLevel", "L"),
        ("LEA", lea),
        ("SoftwareCode", "socialgradient"),
        ("Release", "synthetic"),
        ("SerialNo", "001"),
        ("DateTime", f"{year}-05-01T00:00:00"),
    ):
        _leaf(s, tag, v)


def _return_bytes(
    lea: str, year: int, rows: np.ndarray, episodes: _Episodes, by_child: dict, child_info: dict
) -> bytes:
    """Return the XML document of one return: header, then the children at positions ``rows``."""
    root = etree.Element("Message")
    _header(root, lea, year)
    kids = etree.SubElement(root, "Children")
    for i in rows:
        child = etree.SubElement(kids, "Child")
        ids = etree.SubElement(child, "ChildIdentifiers")
        _leaf(ids, "LAchildID", child_info["id"][i])
        _leaf(ids, "UPN", child_info["upn"][i])
        _leaf(ids, "PersonBirthDate", child_info["dob"][i])
        tag = cc.GENDER_ELEMENT[year]
        codes, unknown = cc.WRITE_GENDER[tag]
        _leaf(ids, tag, codes.get(child_info["gender"][i], unknown))
        chars = etree.SubElement(child, "ChildCharacteristics")
        _leaf(chars, "Ethnicity", child_info["eth"][i])
        for k in by_child.get((child_info["id"][i], child_info["year"][i]), ()):
            episodes.add(child, k)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def write_returns(
    records: rec.Records, out_dir, lea_codes: dict | None = None, seed: int = 0
) -> list[Path]:
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
        the writer does not know (:data:`~socialgradient.data.census.codes.YEARS`);
        ``bad_child_id``: a child ID of 2025 on longer than 20 characters or not
        alphanumeric (rules 1570, 1580).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ch, ep, fa = records.children, records.episodes, records.factors
    numbers = cc.dfe_numbers(lea_codes)
    missing = sorted(set(ch["la"].astype(str)) - set(numbers))
    if missing:
        raise fail(
            "unknown_lea",
            f"no DfE LA number for {missing[:5]} (LEA must be the "
            "3-digit number; pass lea_codes / --lea-codes)",
        )
    bad_years = sorted(set(int(y) for y in ch["year"]) - set(cc.YEARS))
    if bad_years:
        raise fail(
            "unsupported_year",
            f"collection years {bad_years}: the writer knows the "
            f"layouts and rules of {cc.YEARS[0]}-{cc.YEARS[-1]}",
        )
    new = ch.loc[ch["year"].astype(int) >= cc.SEX_FROM, "child_id"].astype(str)
    bad_ids = sorted(set(new[(new.str.len() > 20) | ~new.str.isalnum()]))
    if bad_ids:
        raise fail(
            "bad_child_id",
            f"child IDs {bad_ids[:5]}: from the 2024-25 collection "
            "(2025) LAchildID has at most 20 characters, all alphanumeric (rules 1570, "
            "1580)",
        )
    ep = ep.merge(
        ch[["child_id", "year", "la"]].drop_duplicates(["child_id", "year"]),
        on=["child_id", "year"],
        how="left",
        validate="many_to_one",
    )
    fa = fa.assign(episode_id=list(zip(fa["episode_id"], fa["year"], strict=True)))
    ep_keyed = ep.assign(episode_id=list(zip(ep["episode_id"], ep["year"], strict=True)))
    episodes = _Episodes(ep_keyed, fa)
    by_child: dict = {}
    for k, (c, y) in enumerate(
        zip(ep["child_id"].to_numpy(object), ep["year"].to_numpy(), strict=True)
    ):
        by_child.setdefault((c, y), []).append(k)
    lea = ch["la"].astype(str).map(numbers).to_numpy(object)
    child_info = {
        "id": ch["child_id"].astype(str).to_numpy(object),
        "year": ch["year"].to_numpy(),
        "dob": _dates(ch["date_of_birth"]),
        "eth": _ethnic_codes(ch, seed),
        "upn": _upns(ch, lea, seed),
        "gender": ch["gender"].astype(object).to_numpy(object),
    }
    paths = []
    groups = ch.groupby(["la", "year"], sort=True).indices
    for (la, year), idx in groups.items():
        data = _return_bytes(
            numbers[str(la)], int(year), np.sort(idx), episodes, by_child, child_info
        )
        path = out / f"{la}_{int(year)}.xml"
        atomic_write(path, partial(_write_bytes, data))
        paths.append(path)
    lsoa = ch[["la", "year", "child_id", "lsoa"]]
    atomic_write(
        out / "child_lsoa.csv", lambda tmp: lsoa.to_csv(tmp, index=False, lineterminator="\n")
    )
    la = ep.loc[
        ep["looked_after_start"].notna(), ["la", "year", "child_id", "looked_after_start"]
    ].copy()
    la["looked_after_start"] = _dates(la["looked_after_start"])
    atomic_write(
        out / "looked_after.csv", lambda tmp: la.to_csv(tmp, index=False, lineterminator="\n")
    )
    no_dates = ep["year"].map(lambda y: not cc.HAS_CIN_PLAN_DATES[int(y)]).astype(bool)
    plans = ep.loc[
        ep["cin_plan_start"].notna() & no_dates,
        ["la", "year", "child_id", "referral_date", "cin_plan_start", "cin_plan_end"],
    ].copy()
    for c in ("referral_date", "cin_plan_start", "cin_plan_end"):
        plans[c] = _dates(plans[c])
    atomic_write(
        out / "cin_plans.csv", lambda tmp: plans.to_csv(tmp, index=False, lineterminator="\n")
    )
    return paths


def lea_codes_from_dfe(path) -> dict:
    """``{DfE 3-digit LA number: ONS code}`` from a DfE table with old/new LA code columns."""
    t = pd.read_csv(path, usecols=["old_la_code", "new_la_code"], dtype=str).dropna()
    return dict(zip(t["old_la_code"], t["new_la_code"], strict=True))
