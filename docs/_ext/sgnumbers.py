"""The numbers of the socialgradient docs, read from committed result files.

``value("FILE PATH [FORMAT]")`` is what the ``{sgnum}`` role of ``sgdocs`` shows: ``FILE``
relative to the repository root; ``PATH`` dotted keys and ``[i]`` indexes into a JSON file,
or for a CSV ``column=value.column`` (the one row where ``column`` equals ``value``),
``count:column=value`` or ``rows``; ``FORMAT`` a Python format spec (``,`` ``.3f`` ``.1%``
``,.0f``). A missing file, key or row raises :class:`NumberError`. No Sphinx import here, so
``tests/test_docs.py`` resolves every role of the pages with the project's own environment.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROLE = re.compile(r"\{sgnum\}`([^`]+)`")


class NumberError(ValueError):
    """A role names a file, key or row that is not there."""


def _walk_json(obj, path: str, where: str):
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        try:
            obj = obj[int(part[1:-1])] if part.startswith("[") else obj[part]
        except (KeyError, IndexError, TypeError) as exc:
            raise NumberError(f"sgnum: {where}: no {part!r} in {path!r}") from exc
    return obj


def _csv_value(rows: list[dict], path: str, where: str):
    if path == "rows":
        return len(rows)
    if path.startswith("count:"):
        col, _, value = path[6:].partition("=")
        return sum(r[col] == value for r in rows)
    key, _, rest = path.partition("=")
    value, _, column = rest.rpartition(".")
    found = [r for r in rows if r.get(key) == value]
    if len(found) != 1 or column not in found[0]:
        raise NumberError(f"sgnum: {where}: {len(found)} rows with {key}={value!r} "
                          f"or no column {column!r}")
    return found[0][column]


def value(spec: str):
    """The value named by a role's text (``FILE PATH [FORMAT]``), formatted."""
    parts = spec.split()
    if len(parts) not in (2, 3):
        raise NumberError(f"sgnum: want 'FILE PATH [FORMAT]', got {spec!r}")
    rel, path = parts[:2]
    fmt = parts[2] if len(parts) == 3 else ""
    file = ROOT / rel
    if not file.is_file():
        raise NumberError(f"sgnum: no file {rel}")
    if file.suffix == ".csv":
        with file.open(newline="", encoding="utf-8") as fh:
            raw = _csv_value(list(csv.DictReader(fh)), path, rel)
    else:
        raw = _walk_json(json.loads(file.read_text(encoding="utf-8")), path, rel)
    if isinstance(raw, dict | list) or raw is None or raw == "":
        raise NumberError(f"sgnum: {rel}: {path!r} is {raw!r}, not a value")
    if fmt:
        number = float(raw) if isinstance(raw, str) else raw
        if fmt.endswith("d") or fmt in (",",):
            number = int(number)
        return format(number, fmt)
    return str(raw)
