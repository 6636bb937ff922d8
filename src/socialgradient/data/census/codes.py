"""CIN Census codes by collection year, DfE LA numbers and the DfE XSDs (find, validate).

Collection years are labelled by the 31 March that ends them (``Header/CollectionDetails/
Year``, the ``ReferenceDate``): our 2024 is the 2023-24 collection (1 April 2023 to 31 March
2024), 2025 the 2024-25 one. Code lists follow the DfE CIN Census XSDs of collections 2019-2024
(see ``docs/census_returns.md``). 2025 and 2026 (the 2024-25 and 2025-26 collections,
:data:`RULES_ONLY_YEARS`) have **no XSD** at hand: returns of those years follow the DfE
validation rules as ``csc-validator-be-cin`` 0.1.13 implements them (rulesets ``cin2024_25``,
``cin2025_26``; the same rules) and our own (:mod:`socialgradient.data.census.rules`), not a
schema. Their layout is 2024's with ``Sex`` (``M``, ``F``, ``U``; rules 4180, 8750, 2886Q)
in place of ``GenderCurrent`` (:data:`GENDER_ELEMENT`), and 2024's code lists.
What changed between years is in :data:`FACTORS_BY_YEAR`,
:data:`SOURCES_BY_YEAR`, :data:`CLOSURE_BY_YEAR` and :data:`HAS_CIN_PLAN_DATES`. The writer
uses the year's list (and :data:`WRITE_FALLBACK` for a code the year lacks); the reader accepts
the union over all years (codes from neighbouring years are tolerated, see
:data:`READ_ALIASES`).

Schemas: :data:`SCHEMAS` says where each year's XSD is published, with its sha256;
:func:`find_schema` uses a local copy (an explicit folder, ``$SOCIALGRADIENT_SHARED/cin_census``
or the download cache) and :func:`fetch_schema` downloads and verifies one into the cache.
Validation (:func:`validate`) needs ``lxml``; the XSD files are never part of the project.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from socialgradient.data import records as rec
from socialgradient.data.sources.download import REGISTRY, fetch, sha256_of

#: Collection years the writer and reader support (the year of the 31 March ending each).
YEARS = tuple(range(2019, 2027))
#: Years with a published DfE XSD (:data:`SCHEMAS`): validated against the schema.
SCHEMA_YEARS = tuple(range(2019, 2025))
#: Years without an XSD at hand (2024-25, 2025-26): checked against the DfE validation rules
#: only (csc-validator-be-cin's ``cin2024_25`` / ``cin2025_26`` and our
#: :mod:`~socialgradient.data.census.rules`), never against a schema.
RULES_ONLY_YEARS = tuple(y for y in YEARS if y not in SCHEMA_YEARS)

#: 4-letter census ethnicity codes -> broad group (None: refused / not obtained).
ETHNIC_CODES = {
    "WBRI": "White",
    "WIRI": "White",
    "WIRT": "White",
    "WOTH": "White",
    "WROM": "White",
    "MWBC": "Mixed",
    "MWBA": "Mixed",
    "MWAS": "Mixed",
    "MOTH": "Mixed",
    "AIND": "Asian",
    "APKN": "Asian",
    "ABAN": "Asian",
    "AOTH": "Asian",
    "BCRB": "Black",
    "BAFR": "Black",
    "BOTH": "Black",
    "CHNE": "Other",
    "OOTH": "Other",
    "REFU": None,
    "NOBT": None,
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
#: ``GenderCurrent`` codes (to 2024) and ``Sex`` codes (from 2025) -> the records' gender.
GENDER_CODES = {"1": "M", "2": "F", "0": UNKNOWN, "9": UNKNOWN, "M": "M", "F": "F", "U": UNKNOWN}
#: First collection year whose child item is ``Sex`` (``M``, ``F``, ``U``; the 2024-25
#: rules 4180, 8750 and 2886Q) rather than ``GenderCurrent`` (``1``, ``2``, ``0``, ``9``).
SEX_FROM = 2025


def gender_element(year: int) -> str:
    """Return the child's gender item of a collection year.

    ``GenderCurrent`` to 2024, then ``Sex``.
    """
    return "Sex" if int(year) >= SEX_FROM else "GenderCurrent"


GENDER_ELEMENT = {y: gender_element(y) for y in YEARS}
#: ``GenderCurrent`` written for the records' gender (unknown: ``0``); :data:`SEX_WRITE`
#: the ``Sex`` code (unknown: ``U``).
GENDER_WRITE = {"M": "1", "F": "2"}
SEX_WRITE = {"M": "M", "F": "F"}
#: Per element: (code of each gender, code of an unknown gender).
WRITE_GENDER = {"GenderCurrent": (GENDER_WRITE, "0"), "Sex": (SEX_WRITE, "U")}
#: Codes each element accepts (rule 4180).
GENDER_VALID = {"GenderCurrent": frozenset({"0", "1", "2", "9"}), "Sex": frozenset({"M", "F", "U"})}
CP_CODES = frozenset(rec.CP_CATEGORIES)
NEED_CODES = frozenset(f"N{k}" for k in range(10))
BOOL_CODES = {"0": False, "1": True, "false": False, "true": True, "FALSE": False, "TRUE": True}

_FACTORS_BASE = [f"{k}{s}" for k in range(1, 7) for s in "ABC"] + [
    "7A",
    "8B",
    "8C",
    "8D",
    "8E",
    "8F",
    *(f"{k}A" for k in range(9, 18)),
    "20",
    "21",
    "22A",
    "23A",
]
#: Assessment factor codes each year's XSD accepts: 18A/19A (physical, sexual abuse) until
#: 2020, split into 18B/18C and 19B/19C (child on child, adult on child) from 2021; 24A
#: (child criminal exploitation) from 2022.
FACTORS_BY_YEAR = {
    y: frozenset(
        _FACTORS_BASE
        + (["18A", "19A"] if y <= 2020 else ["18B", "18C", "19B", "19C"])
        + (["24A"] if y >= 2022 else [])
    )
    for y in YEARS
}
_SOURCES_BASE = [
    "1A",
    "1B",
    "1C",
    "1D",
    "2A",
    "2B",
    "3A",
    "3B",
    "3C",
    "3D",
    "3E",
    "3F",
    "4",
    "5A",
    "5B",
    "5C",
    "6",
    "7",
    "8",
    "9",
    "10",
]
#: Referral sources: 5D (LA services, early help) from 2023.
SOURCES_BY_YEAR = {y: frozenset(_SOURCES_BASE + (["5D"] if y >= 2023 else [])) for y in YEARS}
#: Reasons for closure: RC9 (closed after assessment, referred to early help) from 2023.
CLOSURE_BY_YEAR = {y: frozenset(f"RC{k}" for k in range(1, 10 if y >= 2023 else 9)) for y in YEARS}
#: Years whose XSD has CINPlanDates in CINdetails (2022 on); before, CIN plans go to the
#: companion ``cin_plans.csv``.
HAS_CIN_PLAN_DATES = {y: y >= 2022 for y in YEARS}
#: Code the writer uses where the year's list lacks the simulated one.
WRITE_FALLBACK = {
    "18C": "18A",
    "19C": "19A",
    "18B": "18A",
    "19B": "19A",
    "24A": "21",
    "5D": "5C",
    "RC9": "RC8",
}
#: Codes the reader accepts from any year, and the code it passes on (18A/19A, the pre-2021
#: physical and sexual abuse factors, become the adult-on-child codes the model uses).
READ_ALIASES = {"18A": "18C", "19A": "19C"}
FACTOR_CODES = frozenset().union(*FACTORS_BY_YEAR.values())
SOURCE_CODES = frozenset().union(*SOURCES_BY_YEAR.values()) | frozenset(rec.REFERRAL_SOURCES)
CLOSURE_CODES = frozenset().union(*CLOSURE_BY_YEAR.values())
FACTOR_CODE = re.compile("|".join(sorted(FACTOR_CODES, key=len, reverse=True)))
#: NumberOfPreviousCPP is ``xs:positiveInteger`` in every XSD (0 is refused), so the writer
#: counts the plans including this one (1: first plan, 2: a repeat plan) and the reader reads
#: a value >= 2 as a repeat plan (0, from older files, reads as a first plan).
FIRST_PLAN_CPP = 1

_LA_NUMBERS = """
E06000001:805 E06000002:806 E06000003:807 E06000004:808 E06000005:841 E06000006:876
E06000007:877 E06000008:889 E06000009:890 E06000010:810 E06000011:811 E06000012:812
E06000013:813 E06000014:816 E06000015:831 E06000016:856 E06000017:857 E06000018:892
E06000019:884 E06000020:894 E06000021:861 E06000022:800 E06000023:801 E06000024:802
E06000025:803 E06000026:879 E06000027:880 E06000028:837 E06000029:836 E06000030:866
E06000031:874 E06000032:821 E06000033:882 E06000034:883 E06000035:887 E06000036:867
E06000037:869 E06000038:870 E06000039:871 E06000040:868 E06000041:872 E06000042:826
E06000043:846 E06000044:851 E06000045:852 E06000046:921 E06000047:840 E06000049:895
E06000050:896 E06000051:893 E06000052:908 E06000053:420 E06000054:865 E06000055:822
E06000056:823 E06000057:929 E06000058:839 E06000059:838 E06000060:825 E06000061:940
E06000062:941 E06000063:942 E06000064:943 E06000065:815 E06000066:933 E08000001:350
E08000002:351 E08000003:352 E08000004:353 E08000005:354 E08000006:355 E08000007:356
E08000008:357 E08000009:358 E08000010:359 E08000011:340 E08000012:341 E08000013:342
E08000014:343 E08000015:344 E08000016:370 E08000017:371 E08000018:372 E08000019:373
E08000021:391 E08000022:392 E08000023:393 E08000024:394 E08000025:330 E08000026:331
E08000027:332 E08000028:333 E08000029:334 E08000030:335 E08000031:336 E08000032:380
E08000033:381 E08000034:382 E08000035:383 E08000036:384 E08000037:390 E09000001:201
E09000002:301 E09000003:302 E09000004:303 E09000005:304 E09000006:305 E09000007:202
E09000008:306 E09000009:307 E09000010:308 E09000011:203 E09000012:204 E09000013:205
E09000014:309 E09000015:310 E09000016:311 E09000017:312 E09000018:313 E09000019:206
E09000020:207 E09000021:314 E09000022:208 E09000023:209 E09000024:315 E09000025:316
E09000026:317 E09000027:318 E09000028:210 E09000029:319 E09000030:211 E09000031:320
E09000032:212 E09000033:213 E10000002:825 E10000003:873 E10000006:909 E10000007:830
E10000008:878 E10000009:835 E10000011:845 E10000012:881 E10000013:916 E10000014:850
E10000015:919 E10000016:886 E10000017:888 E10000018:855 E10000019:925 E10000020:926
E10000021:928 E10000023:815 E10000024:891 E10000025:931 E10000027:933 E10000028:860
E10000029:935 E10000030:936 E10000031:937 E10000032:938 E10000034:885
"""
#: ONS LA code -> DfE 3-digit LA number (``old_la_code``/``new_la_code`` of the DfE CIN tables,
#: file B1, 2013-2025).
LA_NUMBERS = dict(p.split(":") for p in _LA_NUMBERS.split())


def dfe_numbers(lea_codes: dict | None = None) -> dict:
    """ONS code -> DfE number: :data:`LA_NUMBERS` updated with ``lea_codes`` (either way round)."""
    out = dict(LA_NUMBERS)
    for k, v in (lea_codes or {}).items():
        k, v = str(k), str(v)
        out.update({v: k} if re.fullmatch(r"\d{3}", k) else {k: v})
    return out


class Schema(NamedTuple):
    """Where a collection year's XSD is published, the sha256 of its bytes and its file name."""

    url: str
    sha256: str
    filename: str


def _schema(year: int) -> Schema:
    """Return the ``cin_schema_<year>`` entry of the download registry (its sha256 pinned)."""
    entry = REGISTRY[f"cin_schema_{year}"]
    if entry.sha256 is None:
        raise RuntimeError(f"cin_schema_{year}: the download registry pins no sha256")
    return Schema(entry.url, entry.sha256, f"CIN_schema_{year}.xsd")


#: Where each collection year's XSD is published and the sha256 of its bytes: the
#: ``cin_schema_<year>`` entries of :data:`socialgradient.data.sources.download.REGISTRY`.
SCHEMAS = {y: _schema(y) for y in SCHEMA_YEARS}


def cache_dir() -> Path:
    """Download cache: ``$SOCIALGRADIENT_CACHE`` or ``~/.cache/socialgradient``, + cin_census."""
    base = os.environ.get("SOCIALGRADIENT_CACHE") or Path.home() / ".cache" / "socialgradient"
    return Path(base) / "cin_census"


def schema_dirs(schema_dir=None) -> list[Path]:
    """Folders searched for ``CIN_schema_<year>.xsd``, in order."""
    dirs = [Path(schema_dir)] if schema_dir else []
    if os.environ.get("SOCIALGRADIENT_SHARED"):
        dirs.append(Path(os.environ["SOCIALGRADIENT_SHARED"]) / "cin_census")
    return [*dirs, cache_dir()]


def find_schema(year: int, schema_dir=None) -> Path | None:
    """Return a local copy of the year's XSD whose sha256 matches :data:`SCHEMAS`, else None."""
    entry = SCHEMAS.get(int(year))
    if entry is None:
        return None
    for d in schema_dirs(schema_dir):
        p = d / entry.filename
        if p.is_file() and sha256_of(p) == entry.sha256:
            return p
    return None


def fetch_schema(year: int) -> Path:
    """Download the year's XSD into :func:`cache_dir` (sha256 checked); the cached path."""
    entry = SCHEMAS[int(year)]
    found = find_schema(year)
    return found or fetch(entry.url, cache_dir() / entry.filename, entry.sha256)


def have_lxml() -> bool:
    """Return whether ``lxml`` can be imported (schema validation needs it)."""
    try:
        import lxml.etree  # noqa: F401
    except ImportError:
        return False
    return True


_CATEGORIES = (
    ("element_order", ("not expected", "Missing child element")),
    ("unknown_code", ("not an element of the set",)),
    ("bad_pattern", ("not accepted by the pattern",)),
    ("bad_value", ("not a valid value of the atomic type",)),
)


def error_category(message: str) -> str:
    """Return a short category for an XSD validation message (``other`` when none fits)."""
    for cat, keys in _CATEGORIES:
        if any(k in message for k in keys):
            return cat
    return "other"


_SCHEMA_CACHE: dict = {}


def validate(doc, schema_path) -> list[tuple[int, str, str, str]]:
    """XSD errors of a parsed lxml document: ``(line, element, category, message)`` each."""
    from lxml import etree

    key = str(schema_path)
    if key not in _SCHEMA_CACHE:
        _SCHEMA_CACHE[key] = etree.XMLSchema(etree.parse(key))
    schema = _SCHEMA_CACHE[key]
    schema.validate(doc)
    out = []
    for e in schema.error_log:
        m = re.match(r"Element '([^']+)'", e.message)
        out.append((int(e.line), m.group(1) if m else "", error_category(e.message), e.message))
    return out


def validate_return(path, doc, year: int, schema_dir, mode) -> tuple[list, str]:
    """Validate one parsed return: its schema errors and what was done.

    Returns the errors as ``SCHEMA_ERROR_COLUMNS`` rows, and a line saying what was done.

    ``doc``: the lxml document (None: parsed without lxml); ``mode``: False skips validation.
    """
    if mode is False:
        return [], "not validated: validation switched off"
    if doc is None:
        return [], "not validated: lxml is not installed"
    if year in RULES_ONLY_YEARS:
        return [], (
            f"not validated: no DfE XSD for the {year - 1}-{str(year)[2:]} collection; "
            "returns of this year are checked against the DfE validation rules "
            "(socialgradient.data.census.rules), not a schema"
        )
    schema = find_schema(year, schema_dir)
    if schema is None:
        where = ", ".join(str(d) for d in schema_dirs(schema_dir))
        known = "" if year in SCHEMAS else " (no known schema for this year)"
        return [], (
            f"not validated: no verified CIN_schema_{year}.xsd in {where}{known}; "
            "fetch it with socialgradient.data.census.codes.fetch_schema"
        )
    rows = [(str(path), line, el, cat, msg) for line, el, cat, msg in validate(doc, schema)]
    return rows, f"validated against {schema}"
