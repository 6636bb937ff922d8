"""Run the DfE CIN Census validation rules (csc-validator-be-cin) on XML returns; print JSON.

Runs inside ``.venv-cin`` (``make cin-validator``), never inside the project's own
environment: the validator pins pandas 1.x. Usage::

    .venv-cin/bin/python bench/cin_validator/run_rules.py RETURN.xml [...] > result.json

Each return is checked with the ruleset of its collection year (``Header/CollectionDetails/
Year``; the year ending 31 March ``Year``, so 2024 is the 2023-24 collection):
``cin<Year-1>_<YY>`` where the validator has it (2024: ``cin2023_24``; 2025: ``cin2024_25``;
2026: ``cin2025_26``, the same rules as 2024-25; the 2025 and 2026 returns have no XSD, so
these rules are all they are checked against), else the earliest ruleset it ships
(``cin2022_23``, for the 2019-2022 collections, whose published rules the validator does not
implement separately) or the latest. ``--ruleset`` forces one. Output: ``{"validator":
version, "files": [{"path", "year", "ruleset", "ruleset_rules": {"Error": n, "Query": n},
"children", "rules": {code: {"type", "message", "locations", "children"}}, "la_level":
[codes], "crashed": [codes]}]}`` where ``children`` counts the distinct ``LAchildID`` the
rule flags, ``locations`` its rows.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import importlib.metadata
import io
import json
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import cin_validator.rules as rules_pkg
from cin_validator import cin_validator
from cin_validator.rule_engine import RuleContext


def ruleset_for(year: int) -> str:
    have = sorted(p.name for p in Path(rules_pkg.__file__).parent.glob("cin20*_*"))
    want = f"cin{year - 1}_{str(year)[2:]}"
    if want in have:
        return want
    return have[0] if want < have[0] else have[-1]


def run_file(path: str, ruleset: str | None) -> dict:
    root = ET.parse(path).getroot()
    year = int(root.findtext("Header/CollectionDetails/Year"))
    name = ruleset or ruleset_for(year)
    registry = importlib.import_module(f"cin_validator.rules.{name}").registry
    raw = cin_validator.convert_data(root)
    data = cin_validator.process_data(raw)
    tables = cin_validator.enum_keys(data)
    kinds = [rule.rule_type.value for rule in registry.values()]
    out = {
        "path": path,
        "year": year,
        "ruleset": name,
        "ruleset_rules": {k: kinds.count(k) for k in sorted(set(kinds))},
        "children": int(raw["ChildIdentifiers"]["LAchildID"].nunique()),
        "rules": {},
        "la_level": [],
        "crashed": [],
    }
    for code, rule in registry.items():
        ctx = RuleContext(rule)
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                rule.func(copy.deepcopy(tables), ctx)
        except Exception as e:  # a rule that crashes is reported, not hidden
            out["crashed"].append(f"{code}: {type(e).__name__}: {e}")
            continue
        issues = [
            ctx.type_zero_issues,
            ctx.type_one_issues,
            ctx.type_two_issues,
            ctx.type_three_issues,
        ]
        if len(ctx.la_level_issues):
            out["la_level"].append(str(code))
        n = [len(x) for x in issues]
        if max(n) == 0:
            continue
        k = n.index(max(n))
        df = issues[k]
        ids = set()
        for table in df["tables_affected"].dropna().unique():
            rows = df.loc[df["tables_affected"] == table, "ROW_ID"].astype(int).unique()
            t = raw[str(table)]
            if "LAchildID" in t:
                ids |= set(t["LAchildID"].iloc[rows])
        out["rules"][str(code)] = {
            "type": rule.rule_type.value,
            "message": rule.message,
            "locations": int(max(n)),
            "children": len(ids),
        }
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+")
    p.add_argument("--ruleset", default=None)
    a = p.parse_args(argv)
    warnings.simplefilter("ignore")  # the validator's pandas FutureWarnings
    result = {
        "validator": importlib.metadata.version("csc-validator-be-cin"),
        "files": [run_file(x, a.ruleset) for x in a.paths],
    }
    json.dump(result, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
