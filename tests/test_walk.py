"""Issue 28: a table walked through ``api.fit`` enters each package file at most twice.

The measurement is ``bench/walk.py`` (its docstring says how; ``bench/walk.md`` records its
tables): the model-building path of ``api.fit`` under :func:`sys.setprofile`, counting the
calls from one package file into another that carry the table or data computed from it.
"""

from __future__ import annotations

import collections
import importlib.util
from pathlib import Path

import pytest

_BENCH = importlib.util.spec_from_file_location(
    "bench_walk", Path(__file__).resolve().parents[1] / "bench" / "walk.py"
)
bench_walk = importlib.util.module_from_spec(_BENCH)
_BENCH.loader.exec_module(bench_walk)

#: Each walk's name in ``bench_walk.tables()`` -> the term files its spec switches on.
WALKS = {
    "default": (),
    "strata, trend, neighbourhood moderator": (
        "model/terms/strata.py",
        "model/terms/trend.py",
        "model/terms/moderators.py",
    ),
    "LA moderator, LA outcome": ("model/terms/la_moderators.py", "model/terms/la_outcome.py"),
}


@pytest.fixture(scope="module")
def walked():
    """Each walk's name -> its table, spec and fit's keywords, and the entries it made."""
    walks = bench_walk.tables()
    assert set(walks) == set(WALKS)
    return {
        name: (table, spec, kwargs, bench_walk.calls(table, spec, data=True, **kwargs))
        for name, (table, spec, kwargs) in walks.items()
    }


@pytest.mark.parametrize("name", list(WALKS))
def test_the_table_enters_each_file_at_most_twice(walked, name):
    entries = collections.Counter(callee.split(":")[0] for _, callee in walked[name][3])
    # the walk followed the table from the facade to where sampling starts ...
    for path in ("sampling/fit.py", "model/encode.py", "model/build.py", *WALKS[name]):
        assert entries[path] >= 1, path
    # ... through the LA effects' model phases (centre; effects with the rows' start)
    assert entries["model/terms/la_effects.py"] == 2
    assert {path: n for path, n in entries.items() if n > 2} == {}


def test_the_walk_lists_each_entry_with_its_caller(walked):
    table, spec, kwargs, entries = walked["default"]
    assert ("api/__init__.py:fit", "sampling/fit.py:fit") in entries
    assert ("model/build.py:build_model", "model/terms/la_effects.py:effects") in entries
    # every cross-file call, data or not, counts more: the data's entries are among them
    every = bench_walk.walk(table, spec, **kwargs)
    assert sum(every.values()) > len(entries)
    assert all(every[callee.split(":")[0]] >= 1 for _, callee in entries)
