"""The data dictionary (data/README.md) names every column and every true parameter."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from socialgradient.data.census import linkage
from socialgradient.data.records import TABLE_COLUMNS
from socialgradient.data.synthetic import sample

DATA = Path(__file__).resolve().parents[1] / "data"
README = (DATA / "README.md").read_text(encoding="utf-8")
DOCUMENTED = (
    set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", README))
    | set(re.findall(r'\["([A-Za-z_][A-Za-z0-9_]*)"\]', README))
    | set(  # `truth["key"]`
        re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)\[", README)
    )
)  # `strata[dim][level]`


#: maps whose keys are data (outcomes, codes, levels, years), not parameters
DATA_MAPS = {
    "thresholds",
    "strata",
    "age_band",
    "gender",
    "ethnicity",
    "area",
    "factors",
    "cp_categories",
    "gradients",
    "realised",
    "history",
    "clipped_share",
    "la",
    "level_log_hr",
    "split",
    "age_bands",
}


def keys(d, parent=None, out=None):
    """Every parameter key of a nested truth dict (keys of DATA_MAPS are data, skipped)."""
    out = set() if out is None else out
    for k, v in d.items():
        if (
            parent not in DATA_MAPS
            and not str(parent).isdigit()
            and not re.fullmatch(r"\d{4}|E\d{8}", str(k))
        ):
            out.add(str(k))
        if isinstance(v, dict) and k != "definitions":
            keys(v, k, out)
    return out


@pytest.mark.parametrize("name", ["neighbourhoods.parquet", "las.parquet"])
def test_default_table_columns_documented(name):
    cols = pd.read_parquet(DATA / name).columns
    missing = [c for c in cols if c not in DOCUMENTED]
    assert not missing, f"{name}: undocumented columns {missing}"


def test_record_table_columns_documented():
    missing = [c for cols in TABLE_COLUMNS.values() for c in cols if c not in DOCUMENTED]
    assert not missing, missing
    agg = pd.read_parquet(DATA / "records_sample" / "lsoa_age_band.parquet").columns
    # per-factor, per-category and per-piece columns are documented by their pattern
    pattern = re.compile(r"(factor|cp|days|ends)_\w+")
    missing = [c for c in agg if c not in DOCUMENTED and not pattern.fullmatch(c)]
    assert not missing, missing
    assert set(linkage.GROUPS) <= DOCUMENTED


def test_truth_keys_documented():
    truth = json.loads((DATA / "truth.json").read_text(encoding="utf-8"))
    records_truth = json.loads((DATA / "records_sample" / "records_truth.json").read_text())
    assert records_truth["sample_las"] == sample.sample_las()
    for name, t in (("truth.json", truth), ("records_truth.json", records_truth)):
        undefined = keys(t) - set(t["definitions"])
        assert not undefined, f"{name}: keys without a definition {sorted(undefined)}"
        undocumented = sorted(k for k in keys(t) if k not in DOCUMENTED)
        assert not undocumented, f"{name}: keys not in data/README.md {undocumented}"
