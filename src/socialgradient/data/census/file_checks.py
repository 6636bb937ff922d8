"""Reading a CIN Census XML return, step 1: the file checks (issue 31).

:func:`_parse` refuses a return with a DOCTYPE (``dtd_not_allowed``, before any parser that
could resolve entities sees it, and again after parsing) and malformed XML (file, line,
column); :func:`_header` checks the header: ``not_a_cin_return``, ``wrong_collection``,
``missing_header``, ``bad_year`` (a ``Year`` outside :data:`YEAR_RANGE`) and ``unknown_lea``.
The steps are described in :mod:`socialgradient.data.census.read`, which runs them.
"""

from __future__ import annotations

import contextlib
import re
import xml.parsers.expat as expat
from pathlib import Path
from typing import Any

from socialgradient.data.schema import CODE_PATTERNS, fail

#: Collection years a header may give (the CIN Census is a child-level return since 2009).
YEAR_RANGE = (2000, 2100)


def _value(el, tag):
    if el is None:
        return None
    v = el.findtext(tag)
    return v.strip() or None if v is not None else None


class _Prolog(Exception):
    """The prolog scan is over (a DOCTYPE read, or the first element reached)."""


def _doctype(path: Path, data: bytes, found: dict | None = None) -> None:
    """Refuse a return with a DOCTYPE (``dtd_not_allowed``).

    DfE returns have none; a DOCTYPE's internal subset can declare entities that read local
    files or URLs (XXE) or expand without bound. Without ``found``, the prolog is scanned with
    expat (no entity is expanded, no external DTD or parameter entity read), which stops at
    the DOCTYPE's end or the root element, before any parser that could resolve entities
    sees the file; ``found`` (``name, internal, entities, line``) is what a parse found.
    """
    if found is None:
        found = {}
        p = expat.ParserCreate()
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

        def start(name, system, public, internal):
            found.update(name=name, internal=bool(internal), entities=[], line=p.CurrentLineNumber)

        def entity(name, *_):
            found.setdefault("entities", []).append(name)

        def stop(*_):
            raise _Prolog

        p.StartDoctypeDeclHandler = start
        p.EntityDeclHandler = entity
        p.EndDoctypeDeclHandler = p.StartElementHandler = stop
        # malformed XML: the parse that follows says where
        with contextlib.suppress(_Prolog, expat.ExpatError):
            p.Parse(data, True)
    if not found:
        return
    what = f"a DOCTYPE ({found.get('name')!r})"
    if found.get("internal"):
        what += " with an internal subset"
    if found.get("entities"):
        what += f" declaring entities {found['entities'][:5]}"
    raise fail(
        "dtd_not_allowed",
        f"{path}: line {found.get('line', 1)}: {what}: a CIN "
        "return has no DOCTYPE, and entity declarations can read local files (XXE) "
        "or expand without bound; the file is refused unread",
    )


def _parse(path: Path) -> tuple[Any, Any, bytes]:
    """Parse a return into its root element, its lxml document and its bytes.

    Malformed XML raises :class:`~socialgradient.data.schema.InputError` with the line; a
    DOCTYPE raises ``dtd_not_allowed`` before any parse.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise fail("file_not_found", f"cannot read {path}: {err}") from err
    _doctype(path, data)
    from lxml import etree

    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as err:
        line, col = err.position
        raise fail("malformed_xml", f"{path}: line {line}, column {col}: {err.msg}") from err
    doc = root.getroottree()
    info = doc.docinfo  # e.g. an encoding the prolog scan could not read
    if info.doctype or info.internalDTD is not None:
        dtd = info.internalDTD
        _doctype(
            path,
            data,
            {
                "name": info.root_name,
                "internal": dtd is not None,
                "entities": [e.name for e in dtd.iterentities()] if dtd is not None else [],
            },
        )
    if isinstance(root.tag, str) and root.tag.startswith("{"):  # strip a default namespace
        for el in root.iter():
            if isinstance(el.tag, str) and el.tag.startswith("{"):
                el.tag = el.tag.split("}", 1)[1]
    return root, doc, data


def _header(path: Path, root, numbers: dict) -> tuple[str, int]:
    if root.tag != "Message" or root.find("Children") is None:
        raise fail("not_a_cin_return", f"{path}: expected a <Message> root with <Children>")
    details = root.find("Header/CollectionDetails")
    collection = _value(details, "Collection")
    if collection is not None and collection != "CIN":
        raise fail(
            "wrong_collection",
            f"{path}: Header/CollectionDetails/Collection is "
            f"{collection!r}, not 'CIN': not a CIN Census return (an SSDA903 "
            "looked-after return goes to --looked-after as a table)",
        )
    year = _value(details, "Year")
    lea = _value(root.find("Header/Source"), "LEA")
    missing = [
        n
        for n, v in (
            ("Header/CollectionDetails/Collection", collection),
            ("Header/CollectionDetails/Year", year),
            ("Header/Source/LEA", lea),
        )
        if v is None
    ]
    if missing:
        raise fail("missing_header", f"{path}: no {', '.join(missing)}")
    if not re.fullmatch(r"\d{4}", year):
        raise fail("missing_header", f"{path}: Year {year!r} is not a year")
    if not YEAR_RANGE[0] <= int(year) <= YEAR_RANGE[1]:
        raise fail(
            "bad_year",
            f"{path}: Header/CollectionDetails/Year {year!r} is not a "
            f"collection year ({YEAR_RANGE[0]}-{YEAR_RANGE[1]})",
        )
    if re.fullmatch(CODE_PATTERNS["la"], lea):
        return lea, int(year)
    if lea in numbers:
        return str(numbers[lea]), int(year)
    raise fail(
        "unknown_lea",
        f"{path}: LEA {lea!r} is neither an ONS LA code "
        "nor in the LEA -> LA code map (pass lea_codes / --lea-codes)",
    )
