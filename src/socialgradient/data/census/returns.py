"""CIN Census XML returns: write child-level records as LA returns, read returns back.
Over 400 lines because the codes, the writer and the reader still share one module; issue 14
splits it (read, write, codes) on lxml.

:func:`write_returns` writes :class:`~socialgradient.data.synthetic.records_model.Records` as
one CIN Census XML return per LA per collection year, in the layout LAs submit to DfE, plus the
child -> LSOA table the return lacks; :func:`read_returns` parses returns back into the same
child-level tables (``children``, ``episodes``, ``factors``), so they go through
:func:`socialgradient.data.census.linkage.link` /
:func:`~socialgradient.data.census.linkage.aggregate` unchanged. The layout follows the DfE
"Children in need census" specification as best known (no XSD is shipped or checked)::

    Message
      Header
        CollectionDetails: Collection (CIN), Year, ReferenceDate (31 March)
        Source: SourceLevel (L), LEA, SoftwareCode, Release, SerialNo, DateTime
      Children
        Child (one per child)
          ChildIdentifiers: LAchildID, UPN, FormerUPN, UPNunknown, PersonBirthDate,
                            ExpectedPersonBirthDate, GenderCurrent, PersonDeathDate
          ChildCharacteristics: Ethnicity (4-letter code), Disabilities/Disability
          CINdetails (one per CIN episode)
            CINreferralDate, ReferralSource, PrimaryNeedCode, CINclosureDate,
            ReasonForClosure, DateOfInitialCPC, ReferralNFA
            Assessments: AssessmentActualStartDate, AssessmentInternalReviewDate,
                         AssessmentAuthorisationDate,
                         FactorsIdentifiedAtAssessment/AssessmentFactors (codes)
            CINPlanDates: CINPlanStartDate, CINPlanEndDate
            Section47: S47ActualStartDate, InitialCPCtarget, DateOfInitialCPC, ICPCnotRequired
            ChildProtectionPlans: CPPstartDate, CPPendDate, InitialCategoryOfAbuse,
                                  LatestCategoryOfAbuse, NumberOfPreviousCPP,
                                  Reviews/CPPreviewDate

Codes are the census's own: GenderCurrent 1 male, 2 female, 0 not known, 9 not specified;
Ethnicity :data:`ETHNIC_CODES` (4-letter, mapped to the broad groups White, Mixed, Asian,
Black, Other; REFU/NOBT -> ``Unknown``; CHNE -> Other as in DfE's CIN tables); ReferralSource
1A-10; PrimaryNeedCode N0-N9; ReasonForClosure RC1-RC9; category of abuse NEG, EMO, PHY, SAB,
MUL; assessment factors 1A-24A (:data:`FACTOR_CODE`). Dates are ``YYYY-MM-DD``; ReferralNFA
and ICPCnotRequired ``0/1/true/false``. Tags may carry a namespace prefix (ignored).

Simplifications (the synthetic records lack some census items; documented, not hidden):

* ``LEA`` holds the LA's 9-character ONS code unless ``lea_codes`` maps it to the DfE 3-digit
  number; the reader maps 3-digit numbers back with ``lea_codes`` (:func:`lea_codes_from_dfe`
  builds the map from a DfE table's ``old_la_code``/``new_la_code``).
* No UPN, disabilities, death dates or CP reviews are written; PrimaryNeedCode is ``N1``
  (abuse or neglect) for episodes with a CP plan and ``N0`` (not stated) otherwise;
  AssessmentAuthorisationDate is the CIN plan start, else the closure date, else the
  assessment start; Section47 is written for CP episodes only, starting on the assessment
  date, with InitialCPCtarget 15 working days later and DateOfInitialCPC = CP plan start;
  LatestCategoryOfAbuse = InitialCategoryOfAbuse; NumberOfPreviousCPP is 1 for a repeat plan,
  else 0.
* Starting to be looked after is not in the CIN census (it is in the SSDA903 return):
  :func:`write_returns` writes it to a companion ``looked_after.csv`` (la, child_id, year,
  looked_after_start), which :func:`read_returns` joins back when given.
* Re-referral within 12 months is derived by the reader from the same child's earlier
  CINreferralDate in the returns read (as DfE derives it), so ``rereferral_within_12m``
  round-trips except for re-referrals whose earlier referral is not in the returns read
  (counted in the simulated truth's ``history``).

Reading: each episode (``CINdetails``) is a *record*. File problems (``malformed_xml`` with
file and line, ``not_a_cin_return``, ``missing_header``, ``unknown_lea``) always raise
:class:`~socialgradient.data.schema.InputError`. Record problems (``missing_element``,
``bad_date``, ``unknown_code``, named with file, line and LAchildID) raise by default
(``errors="raise"``) or, with ``errors="report"``, exclude the child's episodes with that
reason. Children who cannot be placed in an age band 0-17 at the census date (``unborn``:
only an ExpectedPersonBirthDate; ``age_out_of_range``) are always excluded and reported.
Every episode read is either passed on or listed in :class:`ReadReport` -- never dropped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd

from socialgradient.data.schema import CODE_PATTERNS, fail
from socialgradient.data.synthetic import records_model as rec
from socialgradient.files import atomic_write

#: 4-letter census ethnicity codes -> broad group (None: refused / not obtained).
ETHNIC_CODES = {
    "WBRI": "White", "WIRI": "White", "WIRT": "White", "WOTH": "White", "WROM": "White",
    "MWBC": "Mixed", "MWBA": "Mixed", "MWAS": "Mixed", "MOTH": "Mixed",
    "AIND": "Asian", "APKN": "Asian", "ABAN": "Asian", "AOTH": "Asian",
    "BCRB": "Black", "BAFR": "Black", "BOTH": "Black",
    "CHNE": "Other", "OOTH": "Other", "REFU": None, "NOBT": None,
}
UNKNOWN = "Unknown"
#: Sub-codes the writer draws for each broad group (code: share within the group).
WRITE_ETHNIC = {
    "White": {"WBRI": 0.86, "WOTH": 0.10, "WIRI": 0.01, "WIRT": 0.01, "WROM": 0.02},
    "Mixed": {"MWBC": 0.35, "MWBA": 0.15, "MWAS": 0.20, "MOTH": 0.30},
    "Asian": {"AIND": 0.30, "APKN": 0.35, "ABAN": 0.15, "AOTH": 0.20},
    "Black": {"BAFR": 0.65, "BCRB": 0.20, "BOTH": 0.15},
    "Other": {"OOTH": 0.85, "CHNE": 0.15},
}
GENDER_CODES = {"1": "M", "2": "F", "0": UNKNOWN, "9": UNKNOWN}
GENDER_WRITE = {"M": "1", "F": "2"}
FACTOR_CODE = re.compile(r"[1-6][ABC]|7A|8[B-F]|(9|1[0-7]|2[2-4])A|1[89][ABC]|20|21")
CP_CODES = frozenset(rec.CP_CATEGORIES)
SOURCE_CODES = frozenset(rec.REFERRAL_SOURCES)
CLOSURE_CODES = frozenset(f"RC{k}" for k in range(1, 10))
NEED_CODES = frozenset(f"N{k}" for k in range(10))
BOOL_CODES = {"0": False, "1": True, "false": False, "true": True}
READ_RULES = ("missing_element", "bad_date", "unknown_code")
EXCLUDED = ("unborn", "age_out_of_range")
CHILD_LSOA_COLUMNS = ("la", "child_id", "lsoa")  # optional: year
LOOKED_AFTER_COLUMNS = ("la", "child_id", "looked_after_start")  # optional: year


# ---------------------------------------------------------------------------------------------
# Writing


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
    for group, codes in WRITE_ETHNIC.items():
        idx = np.flatnonzero(eth == group)
        p = np.array(list(codes.values()))
        out[idx] = np.array(list(codes), object)[rng.choice(len(codes), len(idx), p=p / p.sum())]
    return out


def _episode_xml(e: pd.DataFrame, factors: pd.DataFrame) -> np.ndarray:
    """One ``CINdetails`` block (text) per episode row of ``e``."""
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
    fac = factors.groupby("episode_id", sort=False)["factor"].agg(list).to_dict()
    eids = e["episode_id"].astype(object).to_numpy()
    out = np.empty(len(e), dtype=object)
    for i in range(len(e)):
        cp = cp_s[i] != ""
        parts = [f"{p3}<CINdetails>\n", _el("CINreferralDate", ref[i], p4),
                 _el("ReferralSource", src[i], p4),
                 _el("PrimaryNeedCode", "N1" if cp else "N0", p4),
                 _el("CINclosureDate", clo[i], p4), _el("ReasonForClosure", reason[i], p4),
                 _el("DateOfInitialCPC", cp_s[i], p4),
                 _el("ReferralNFA", "1" if nfa[i] else "0", p4)]
        if ass[i]:
            parts += [f"{p4}<Assessments>\n", _el("AssessmentActualStartDate", ass[i], p5),
                      _el("AssessmentAuthorisationDate", auth[i], p5)]
            codes = fac.get(eids[i], ())
            if codes:
                parts.append(f"{p5}<FactorsIdentifiedAtAssessment>\n")
                parts += [_el("AssessmentFactors", c, p5 + "    ") for c in codes]
                parts.append(f"{p5}</FactorsIdentifiedAtAssessment>\n")
            parts.append(f"{p4}</Assessments>\n")
        if cin_s[i]:
            parts += [f"{p4}<CINPlanDates>\n", _el("CINPlanStartDate", cin_s[i], p5),
                      _el("CINPlanEndDate", cin_e[i], p5), f"{p4}</CINPlanDates>\n"]
        if cp:
            parts += [f"{p4}<Section47>\n", _el("S47ActualStartDate", ass[i], p5),
                      _el("InitialCPCtarget", target[i], p5),
                      _el("DateOfInitialCPC", cp_s[i], p5),
                      _el("ICPCnotRequired", "false", p5), f"{p4}</Section47>\n",
                      f"{p4}<ChildProtectionPlans>\n", _el("CPPstartDate", cp_s[i], p5),
                      _el("CPPendDate", cp_e[i], p5), _el("InitialCategoryOfAbuse", cat[i], p5),
                      _el("LatestCategoryOfAbuse", cat[i], p5),
                      _el("NumberOfPreviousCPP", "1" if repeat[i] else "0", p5),
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
    gender = children["gender"].astype(object).map(GENDER_WRITE).fillna("0").to_numpy(object)
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

    Files (each written atomically): ``<la>_<year>.xml`` (e.g. ``E06000001_2019.xml``),
    ``child_lsoa.csv`` (``la, year, child_id, lsoa``: LAchildID -> LSOA of residence) and
    ``looked_after.csv`` (``la, year, child_id, looked_after_start``: the SSDA903 item the
    CIN return lacks). ``lea_codes`` maps ONS LA code -> the DfE number written in ``LEA``
    (default: the ONS code). ``seed`` drives the 4-letter ethnicity sub-codes. Returns the
    XML paths, sorted.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ch, ep, fa = records.children, records.episodes, records.factors
    ep = ep.merge(ch[["child_id", "year", "la"]].drop_duplicates(["child_id", "year"]),
                  on=["child_id", "year"], how="left", validate="many_to_one")
    fa = fa.assign(episode_id=list(zip(fa["episode_id"], fa["year"], strict=True)))
    ep_keyed = ep.assign(episode_id=list(zip(ep["episode_id"], ep["year"], strict=True)))
    xml_child = _child_xml(ch, ep_keyed, fa, seed)
    paths = []
    groups = ch.groupby(["la", "year"], sort=True).indices
    for (la, year), idx in groups.items():
        lea = str((lea_codes or {}).get(la, la))
        text = (_header_text(lea, int(year)) + "".join(xml_child[np.sort(idx)])
                + "    </Children>\n</Message>\n")
        path = out / f"{la}_{int(year)}.xml"
        atomic_write(path, lambda tmp, t=text: Path(tmp).write_text(t, encoding="utf-8"))
        paths.append(path)
    lsoa = ch[["la", "year", "child_id", "lsoa"]]
    atomic_write(out / "child_lsoa.csv", lambda tmp: lsoa.to_csv(tmp, index=False))
    la = ep.loc[ep["looked_after_start"].notna(), ["la", "year", "child_id",
                                                    "looked_after_start"]].copy()
    la["looked_after_start"] = _dates(la["looked_after_start"])
    atomic_write(out / "looked_after.csv", lambda tmp: la.to_csv(tmp, index=False))
    return paths


def lea_codes_from_dfe(path) -> dict:
    """``{DfE 3-digit LA number: ONS code}`` from a DfE table with old/new LA code columns."""
    t = pd.read_csv(path, usecols=["old_la_code", "new_la_code"], dtype=str).dropna()
    return dict(zip(t["old_la_code"], t["new_la_code"], strict=True))


# ---------------------------------------------------------------------------------------------
# Reading

#: Episode-level leaf elements read (path below CINdetails -> flat column).
_EPISODE_LEAVES = {
    "CINreferralDate": "referral_date", "ReferralSource": "referral_source",
    "PrimaryNeedCode": "primary_need", "CINclosureDate": "closure_date",
    "ReasonForClosure": "closure_reason", "ReferralNFA": "referral_nfa",
}


@dataclass(frozen=True)
class ReadReport:
    """What the reader did with every episode (``CINdetails``) in the returns.

    ``episodes == passed + sum(excluded.values())``. ``excluded_records``: one row per
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

    def to_dict(self) -> dict:
        return {"files": [str(f) for f in self.files], "children": self.children,
                "episodes": self.episodes, "passed": self.passed,
                "excluded": dict(self.excluded), "children_excluded": self.children_excluded,
                "looked_after_unmatched": self.looked_after_unmatched}


def _value(el, tag):
    if el is None:
        return None
    v = el.findtext(tag)
    return v.strip() or None if v is not None else None


def _lines(data: bytes, tag: str) -> np.ndarray:
    """Line of each ``<tag`` start tag, in document order."""
    starts = [m.start() for m in re.finditer(rb"<(?:[\w.-]+:)?" + tag.encode() + rb"[\s/>]",
                                             data)]
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    return np.searchsorted(newlines, np.asarray(starts, np.int64)) + 1


def _parse(path: Path):
    """(root element, its bytes); malformed XML -> InputError with the line."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise fail("file_not_found", f"cannot read {path}: {err}") from err
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        line, col = err.position
        raise fail("malformed_xml", f"{path}: line {line}, column "
                   f"{col + 1}: {err.msg if hasattr(err, 'msg') else err}") from err
    if root.tag.startswith("{"):  # strip a default namespace
        for el in root.iter():
            if isinstance(el.tag, str) and el.tag.startswith("{"):
                el.tag = el.tag.split("}", 1)[1]
    return root, data


def _header(path: Path, root, lea_codes: dict | None) -> tuple[str, int]:
    if root.tag != "Message" or root.find("Children") is None:
        raise fail("not_a_cin_return", f"{path}: expected a <Message> "
                   "root with <Children>")
    year = _value(root.find("Header/CollectionDetails"), "Year")
    lea = _value(root.find("Header/Source"), "LEA")
    missing = [n for n, v in (("Header/CollectionDetails/Year", year),
                              ("Header/Source/LEA", lea)) if v is None]
    if missing:
        raise fail("missing_header", f"{path}: no {', '.join(missing)}")
    if not re.fullmatch(r"\d{4}", year):
        raise fail("missing_header", f"{path}: Year {year!r} is not a "
                   "year")
    if re.fullmatch(CODE_PATTERNS["la"], lea):
        return lea, int(year)
    if lea_codes and lea in lea_codes:
        return str(lea_codes[lea]), int(year)
    raise fail("unknown_lea", f"{path}: LEA {lea!r} is neither an ONS LA code "
               "nor in the LEA -> LA code map (pass lea_codes / --lea-codes)")


def _first(nodes, tag):
    vals = [_value(n, tag) for n in nodes]
    vals = [v for v in vals if v is not None]
    return vals[0] if vals else None


def _flat(path: Path, lea_codes) -> tuple[list[dict], list[tuple]]:
    """Rows (one per CINdetails, or one per child without any) and factor codes."""
    root, data = _parse(path)
    la, year = _header(path, root, lea_codes)
    kids = root.find("Children").findall("Child")
    lines = _lines(data, "Child")
    ep_lines = iter(_lines(data, "CINdetails").tolist())
    if len(lines) != len(kids):  # e.g. a tag inside a comment: fall back to positions
        lines = np.zeros(len(kids), np.int64)
    rows, factors = [], []
    for child, line in zip(kids, lines.tolist(), strict=True):
        ids = child.find("ChildIdentifiers")
        base = {"file": str(path), "line": line, "la": la, "year": year,
                "la_child_id": _value(ids, "LAchildID"), "dob": _value(ids, "PersonBirthDate"),
                "expected_dob": _value(ids, "ExpectedPersonBirthDate"),
                "gender_code": _value(ids, "GenderCurrent"),
                "ethnic_code": _value(child.find("ChildCharacteristics"), "Ethnicity"),
                "has_episode": False}
        details = child.findall("CINdetails")
        if not details:
            rows.append(base)
        for k, d in enumerate(details):
            row = dict(base, has_episode=True, episode_line=next(ep_lines, 0), episode_no=k)
            for tag, col in _EPISODE_LEAVES.items():
                row[col] = _value(d, tag)
            ass = d.findall("Assessments")
            starts = [_value(a, "AssessmentActualStartDate") for a in ass]
            row["assessment_date"] = min((v for v in starts if v), default=None)
            row["assessment_missing_start"] = None in starts
            plans = d.findall("CINPlanDates")
            row["cin_plan_start"] = _first(plans, "CINPlanStartDate")
            row["cin_plan_missing_start"] = bool(plans) and row["cin_plan_start"] is None
            ends = [_value(p, "CINPlanEndDate") for p in plans]
            row["cin_plan_end"] = None if (not ends or None in ends) else max(ends)
            cpp = d.findall("ChildProtectionPlans")
            row["cp_plan_start"] = _first(cpp, "CPPstartDate")
            row["cp_missing_start"] = bool(cpp) and row["cp_plan_start"] is None
            ends = [_value(p, "CPPendDate") for p in cpp]
            row["cp_plan_end"] = None if (not ends or None in ends) else max(ends)
            row["cp_category"] = _first(cpp, "InitialCategoryOfAbuse")
            row["cp_missing_category"] = bool(cpp) and row["cp_category"] is None
            row["previous_cpp"] = _first(cpp, "NumberOfPreviousCPP")
            rows.append(row)
            for a in ass:
                for f in a.iterfind("FactorsIdentifiedAtAssessment/AssessmentFactors"):
                    code = (f.text or "").strip()
                    if code:
                        factors.append((len(rows) - 1, code))
    return rows, factors


_DATE_COLUMNS = {"dob": "PersonBirthDate", "expected_dob": "ExpectedPersonBirthDate",
                 "referral_date": "CINreferralDate", "closure_date": "CINclosureDate",
                 "assessment_date": "AssessmentActualStartDate",
                 "cin_plan_start": "CINPlanStartDate", "cin_plan_end": "CINPlanEndDate",
                 "cp_plan_start": "CPPstartDate", "cp_plan_end": "CPPendDate"}


def _problems(flat: pd.DataFrame, fac: pd.DataFrame) -> pd.DataFrame:
    """Rows ``(row, rule, element, value)`` for every record problem, in READ_RULES order."""
    out = []

    def add(mask, rule, element, values):
        idx = np.flatnonzero(np.asarray(mask, bool))
        vals = pd.Series(values).to_numpy(object)[idx] if values is not None else [None] * len(idx)
        out.extend(zip(idx, [rule] * len(idx), [element] * len(idx), vals, strict=True))

    ep = flat["has_episode"].to_numpy(bool)
    add(flat["la_child_id"].isna(), "missing_element", "LAchildID", None)
    add(flat["dob"].isna() & flat["expected_dob"].isna(), "missing_element", "PersonBirthDate",
        None)
    add(flat["gender_code"].isna(), "missing_element", "GenderCurrent", None)
    add(flat["ethnic_code"].isna(), "missing_element", "Ethnicity", None)
    add(ep & flat["referral_date"].isna(), "missing_element", "CINreferralDate", None)
    for col, element in (("assessment_missing_start", "AssessmentActualStartDate"),
                         ("cin_plan_missing_start", "CINPlanStartDate"),
                         ("cp_missing_start", "CPPstartDate"),
                         ("cp_missing_category", "InitialCategoryOfAbuse")):
        add(ep & flat[col].fillna(False).astype(bool), "missing_element", element, None)
    for col, element in _DATE_COLUMNS.items():
        raw = flat[col]
        parsed = pd.to_datetime(raw, format="%Y-%m-%d", errors="coerce")
        add(raw.notna() & parsed.isna(), "bad_date", element, raw)
    codes = (("gender_code", "GenderCurrent", set(GENDER_CODES)),
             ("ethnic_code", "Ethnicity", set(ETHNIC_CODES)),
             ("referral_source", "ReferralSource", SOURCE_CODES),
             ("primary_need", "PrimaryNeedCode", NEED_CODES),
             ("closure_reason", "ReasonForClosure", CLOSURE_CODES),
             ("referral_nfa", "ReferralNFA", set(BOOL_CODES)),
             ("cp_category", "InitialCategoryOfAbuse", CP_CODES))
    for col, element, allowed in codes:
        raw = flat[col]
        add(raw.notna() & ~raw.isin(list(allowed)), "unknown_code", element, raw)
    prev = flat["previous_cpp"]
    add(prev.notna() & ~prev.astype(str).str.fullmatch(r"\d+"), "unknown_code",
        "NumberOfPreviousCPP", prev)
    if len(fac):
        bad = ~fac["factor"].map(lambda c: bool(FACTOR_CODE.fullmatch(c)))
        for r, v in zip(fac.loc[bad, "row"], fac.loc[bad, "factor"], strict=True):
            out.append((r, "unknown_code", "AssessmentFactors", v))
    p = pd.DataFrame(out, columns=["row", "rule", "element", "value"])
    p["row"] = p["row"].astype(np.int64)
    p["order"] = p["rule"].map({r: k for k, r in enumerate(READ_RULES)})
    return p.sort_values(["order", "row"], kind="stable").drop(columns="order")


def _describe(flat: pd.DataFrame, p: pd.DataFrame, shown: int = 10) -> str:
    lines = []
    for r in p.head(shown).itertuples():
        f = flat.iloc[r.row]
        val = "" if r.value is None else f" value {r.value!r}"
        lines.append(f"{f['file']}:{f['episode_line'] if f['has_episode'] else f['line']} "
                     f"LAchildID {f['la_child_id']!r}: {r.element}{val}")
    more = f" (and {len(p) - shown} more)" if len(p) > shown else ""
    return "; ".join(lines) + more


def _age(dob: pd.Series, year: pd.Series) -> np.ndarray:
    """Whole years of age on 31 March ``year``."""
    d = pd.to_datetime(dob)
    age = year.to_numpy() - d.dt.year.to_numpy(float)
    before = (d.dt.month > 3).to_numpy()  # birthday (after 31 March) not yet reached
    return age - before


def _band(age: np.ndarray) -> np.ndarray:
    out = np.full(len(age), None, dtype=object)
    for band, (lo, hi) in rec.AGE_RANGE.items():
        out[(age >= lo) & (age <= hi)] = band
    return out


def read_child_lsoa(path_or_frame) -> pd.DataFrame:
    """The child -> LSOA table (``la, child_id, lsoa[, year]``; ``LAchildID`` = ``child_id``)."""
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
        raise fail("missing_column", f"{what} lacks columns {missing}",
                   columns=missing)


def default_population(geography: pd.DataFrame, years: Iterable[int]) -> pd.DataFrame:
    """Population table from a geography's ``children``: strata ``all`` (use ``by=()``)."""
    g = geography[["lsoa", "la", "children"]]
    return pd.concat([g.assign(year=int(y), age_band="all", gender="all", ethnicity="all")
                      for y in years], ignore_index=True)[list(rec.TABLE_COLUMNS["population"])]


def build_records(flat: pd.DataFrame, factors: pd.DataFrame, child_lsoa: pd.DataFrame,
                  geography: pd.DataFrame, population: pd.DataFrame | None,
                  looked_after: pd.DataFrame | None = None, source: str = "") -> tuple:
    """Canonical flat episodes -> :class:`Records` (shared by the XML and flat-table readers).

    ``flat``: one row per episode with ``la, year, child_id, la_child_id, date_of_birth,
    gender, ethnicity, age, age_band, episode_id, referral_date, referral_source,
    referral_nfa, assessment_date, cin_plan_start, cin_plan_end, cp_plan_start, cp_plan_end,
    cp_category, closure_date, closure_reason, repeat_cp_plan`` (dates parsed),
    ``has_episode`` (False: a child row without an episode). ``child_lsoa`` (``la,
    la_child_id, lsoa[, year]``) gives each child's LSOA (a child it lacks gets none: linkage
    reports ``missing_lsoa``). Returns ``(records, looked_after_unmatched)``.
    """
    child_cols = list(rec.TABLE_COLUMNS["children"])
    ch = flat[["child_id", "la_child_id", "year", "la", "date_of_birth", "age", "age_band",
               "gender", "ethnicity"]].drop_duplicates(["child_id", "year", "date_of_birth",
                                                        "gender", "ethnicity"])
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
        ["looked_after", "cp_plan", "cin_plan"], "nfa")
    e["censored"] = e["closure_date"].isna()
    e = e.sort_values(["la", "la_child_id", "referral_date"], kind="stable")
    prev = e.groupby(["la", "la_child_id"], sort=False)["referral_date"].shift()
    e["rereferral_within_12m"] = (e["referral_date"] - prev).dt.days.le(365).to_numpy()
    e = e.sort_index()
    episodes = e[list(rec.TABLE_COLUMNS["episodes"])].reset_index(drop=True)
    fac = factors.merge(flat[["child_id", "episode_id", "year"]], left_on="row",
                        right_index=True)
    fac = fac[fac["row"].isin(e.index)]
    fac = fac[list(rec.TABLE_COLUMNS["factors"])].reset_index(drop=True)
    geo = rec.geography_table(geography, 0, 1.0)
    years = sorted(flat["year"].unique().tolist())
    las = set(flat["la"])
    pop = population if population is not None else default_population(geo, years)
    pop = pop[pop["year"].isin(years) & pop["la"].astype(str).isin(las)].reset_index(drop=True)
    truth = {"source": source, "years": [int(y) for y in years], "las": sorted(las)}
    records = rec.Records(children=ch, episodes=episodes, factors=fac, population=pop,
                          geography=geo, truth=truth)
    return records, unmatched


def read_returns(paths, child_lsoa, geography: pd.DataFrame,
                 population: pd.DataFrame | None = None, looked_after=None,
                 lea_codes: dict | None = None, errors: str = "raise"):
    """Parse CIN Census XML returns into :class:`~.records_model.Records`.

    Parameters
    ----------
    paths : path or iterable of paths
        XML returns; a folder means every ``*.xml`` in it.
    child_lsoa : path or DataFrame
        ``la, child_id`` (LAchildID; or a column named ``LAchildID``), ``lsoa`` and optionally
        ``year``. Children it lacks reach linkage with no LSOA (``missing_lsoa``).
    geography : DataFrame
        LSOA lookup ``lsoa, la, income, children, rural`` (as ``neighbourhoods.parquet``).
    population : DataFrame, optional
        Denominators ``year, lsoa, la, age_band, gender, ethnicity, children`` (as
        ``population.parquet``); default :func:`default_population` (strata ``all``).
        Restricted to the LAs and years of the returns.
    looked_after : path or DataFrame, optional
        ``la, child_id, looked_after_start[, year]`` (from SSDA903); without it nobody is
        looked after.
    lea_codes : dict, optional
        DfE LA number -> ONS LA code, for returns whose ``LEA`` is the 3-digit number.
    errors : ``"raise"`` or ``"report"``
        What a record problem does (see the module docstring).

    Returns
    -------
    (records, report)
        ``records`` feeds :func:`socialgradient.data.census.linkage.aggregate`; ``report`` is a
        :class:`ReadReport`.
    """
    if errors not in ("raise", "report"):
        raise ValueError(f"errors must be 'raise' or 'report', got {errors!r}")
    if isinstance(paths, str | Path):
        paths = [paths]
    files = []
    for p in paths:
        p = Path(p)
        files += sorted(p.glob("*.xml")) if p.is_dir() else [p]
    if not files:
        raise fail("file_not_found", "no CIN returns (*.xml) given")
    rows, fac_rows = [], []
    for path in files:
        r, f = _flat(path, lea_codes)
        fac_rows += [(k + len(rows), c) for k, c in f]
        rows += r
    flat = pd.DataFrame(rows)
    for c in ("episode_line", "episode_no", "previous_cpp", "assessment_missing_start",
              "cin_plan_missing_start", "cp_missing_start", "cp_missing_category",
              *_EPISODE_LEAVES.values(), *_DATE_COLUMNS):
        if c not in flat.columns:
            flat[c] = None
    flat = flat.astype({c: object for c in flat.columns if c not in ("line", "year")})
    fac = pd.DataFrame(fac_rows, columns=["row", "factor"])
    problems = _problems(flat, fac)
    if len(problems) and errors == "raise":
        rule = problems["rule"].iloc[0]
        sub = problems[problems["rule"] == rule]
        counts = problems["rule"].value_counts().to_dict()
        raise fail(rule, f"{len(sub)} in the CIN returns ({counts}): "
                   f"{_describe(flat, sub)}", rows=sub["row"].tolist())
    # Child-level problems exclude all the child's rows (same file, same <Child> line).
    reason = pd.Series(None, index=flat.index, dtype=object)
    detail = pd.DataFrame({"element": None, "value": None}, index=flat.index, dtype=object)
    first = problems.drop_duplicates("row")
    reason.iloc[first["row"].to_numpy()] = first["rule"].to_numpy()
    detail.iloc[first["row"].to_numpy()] = first[["element", "value"]].to_numpy(object)
    child_key = flat["file"] + ":" + flat["line"].astype(str)
    child_rules = problems[problems["element"].isin(
        ["LAchildID", "PersonBirthDate", "ExpectedPersonBirthDate", "GenderCurrent",
         "Ethnicity"])].drop_duplicates("row")
    bad_children = dict(zip(child_key.iloc[child_rules["row"]], child_rules["rule"], strict=False))
    spread = child_key.map(bad_children)
    reason = reason.where(reason.notna(), spread)
    # Usable rows: parse, age, codes.
    flat["date_of_birth"] = pd.to_datetime(flat["dob"], format="%Y-%m-%d", errors="coerce")
    age = _age(flat["date_of_birth"], flat["year"])
    flat["age"] = age
    flat["age_band"] = _band(np.nan_to_num(age, nan=-1))
    unborn = flat["dob"].isna() & flat["expected_dob"].notna()
    reason = reason.where(reason.notna() | ~unborn, "unborn")
    reason = reason.where(reason.notna() | flat["age_band"].notna(), "age_out_of_range")
    bad = reason.notna().to_numpy()
    ok = flat[~bad].copy()
    ok["age"] = ok["age"].astype(np.int64)
    ok["child_id"] = ok["la"] + "/" + ok["la_child_id"]
    ok["gender"] = ok["gender_code"].map(GENDER_CODES)
    ok["ethnicity"] = ok["ethnic_code"].map(ETHNIC_CODES).fillna(UNKNOWN)
    for col in _DATE_COLUMNS:
        if col not in ("dob", "expected_dob"):
            ok[col] = pd.to_datetime(ok[col], format="%Y-%m-%d")
    ok["episode_id"] = ok["child_id"] + "/" + ok["referral_date"].dt.strftime("%Y-%m-%d")
    ok["referral_nfa"] = ok["referral_nfa"].map(BOOL_CODES).fillna(False).astype(bool)
    ok["repeat_cp_plan"] = pd.to_numeric(ok["previous_cpp"]).fillna(0).gt(0).to_numpy()
    ok["has_episode"] = ok["has_episode"].astype(bool)
    cl = read_child_lsoa(child_lsoa)
    lat = None if looked_after is None else _table(looked_after)
    if lat is not None:
        _require(lat, LOOKED_AFTER_COLUMNS, "looked-after table")
        lat["la"], lat["child_id"] = lat["la"].astype(str), lat["child_id"].astype(str)
    records, unmatched = build_records(ok, fac, cl, geography, population, lat,
                                       source="CIN census XML")
    ex = flat[bad]
    ex_rec = pd.DataFrame({
        "file": ex["file"], "line": np.where(ex["has_episode"].astype(bool), ex["episode_line"],
                                             ex["line"]),
        "la": ex["la"], "la_child_id": ex["la_child_id"], "referral_date": ex["referral_date"],
        "reason": reason[bad], "element": detail.loc[bad, "element"],
        "value": detail.loc[bad, "value"]}).reset_index(drop=True)
    has_ep = flat["has_episode"].astype(bool)
    excluded = {r: int(((reason == r) & has_ep).sum()) for r in (*READ_RULES, *EXCLUDED)}
    report = ReadReport(
        files=tuple(files), children=int(child_key.nunique()), episodes=int(has_ep.sum()),
        passed=int((has_ep & ~bad).sum()), excluded=excluded, excluded_records=ex_rec,
        children_excluded=int(child_key[bad].nunique()), looked_after_unmatched=unmatched)
    return records, report
