"""How often a table walked through ``api.fit`` enters each source file (issue 28).

Method: the model-building path of :func:`socialgradient.api.fit` (validate, encode, choose
the LA geometry, build the PyMC model) runs on a small table under :func:`sys.setprofile`,
and stops where sampling would start (``socialgradient.sampling.fit.sample`` is replaced by
a function that raises). Every Python ``call`` event whose function lives in a file of
``src/socialgradient`` and whose caller's frame lives in *another* file of
``src/socialgradient`` counts one entry into the callee's file; calls within a file, and
calls from outside the package (numpy, PyMC, pandas calling back) do not count. The second
table follows the table *as data* (:class:`_Taint`): only the calls whose arguments hold the
table or a value computed from it (a call's return value is, when its arguments were)
count. Each table is printed per file, most entries first, with the largest count, for three
specs: the default (``referrals``, negative binomial), one with two stratum columns, a
stratum trend and a neighbourhood moderator (a table of cells), and one with an LA moderator
and an LA outcome. Target (issue 28): every file at most 2 in the data tables;
``tests/test_walk.py`` asserts it, ``bench/walk.md`` records the tables.

Run: ``PYTHONPATH=src python bench/walk.py`` (from the repository root; under a minute);
``--verbose`` lists each entry under its file as ``caller file:function -> callee
file:function``.
"""

from __future__ import annotations

import collections
import functools
import sys
from collections.abc import Iterable
from pathlib import Path
from types import CodeType

import pandas as pd
import pytensor

import socialgradient
import socialgradient.api as sg
from socialgradient.sampling import fit as fit_module

ROOT = Path(socialgradient.__file__).resolve().parent


class _Stop(Exception):
    """Raised where sampling would start."""


def _stop(*args: object, **kwargs: object) -> None:
    raise _Stop


def _source(frame) -> str | None:
    """The package-relative path of a frame's file, or None outside the package."""
    return _relative(frame.f_code.co_filename)


@functools.cache
def _relative(filename: str) -> str | None:
    """The package-relative path of a file, or None outside the package (once per file)."""
    try:
        return str(Path(filename).resolve().relative_to(ROOT))
    except ValueError:
        return None


class _Taint:
    """The table and everything computed from it, by object identity.

    A call any of whose arguments is tainted (or holds a tainted value one level down: the
    items of a tuple, list or dict, the fields of an object) carries the data; what it
    returns is tainted in turn, with its items and fields. Calls into numpy, pandas and PyMC
    count for the propagation (a column selected by pandas is the table's data) but not as
    entries: only package files are counted.
    """

    def __init__(self, table: object) -> None:
        self.ids: set[int] = set()
        self.seen: set[int] = set()  # ids looked at: the tainted and the scalars
        self.keep: list[object] = []  # strong references: no id is reused while walking
        self.add(table)

    def add(self, value: object) -> None:
        """Taint ``value`` and its items or fields (not str, numbers or None)."""
        values = [value, *self._inside(value)]
        fresh = set(map(id, values)).difference(self.seen)  # C speed: containers come back
        for v in values if fresh else ():
            if id(v) in fresh:
                fresh.discard(id(v))
                self.seen.add(id(v))
                self.keep.append(v)
                if not isinstance(v, (str, int, float, bool, type(None))):
                    self.ids.add(id(v))

    @staticmethod
    def _inside(value: object) -> list[object]:
        if isinstance(value, (tuple, list)):
            return list(value)
        if isinstance(value, dict):
            return list(value.values())
        fields = getattr(value, "__dict__", None)
        return list(fields.values()) if isinstance(fields, dict) else []

    def carries(self, frame) -> bool:
        """Whether a call's arguments (or their items or fields) hold a tainted value."""
        names = _arguments(frame.f_code)
        if not names:
            return False
        local, ids = frame.f_locals, self.ids
        for name in names:
            value = local.get(name)
            if id(value) in ids:
                return True
            if isinstance(value, (tuple, list)):
                inner: Iterable[object] = value
            elif isinstance(value, dict):
                inner = value.values()
            else:
                fields = getattr(value, "__dict__", None)
                if not isinstance(fields, dict):
                    continue
                inner = fields.values()
            if not ids.isdisjoint(map(id, inner)):
                return True
        return False


@functools.cache
def _arguments(code: CodeType) -> tuple[str, ...]:
    """The names of a function's arguments (``*args`` and ``**kwargs`` too), once per code."""
    n = code.co_argcount + code.co_kwonlyargcount
    n += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)  # *args, **kwargs
    return code.co_varnames[:n]


def calls(
    table: pd.DataFrame, spec: sg.Spec, *, data: bool = False, **kwargs: object
) -> list[tuple[str, str]]:
    """Every entry into a package file from another package file on ``api.fit``'s way to
    sampling, in order, as ``("caller file:function", "callee file:function")``; with
    ``data``, only the calls that carry the table or data computed from it
    (:class:`_Taint`): the table *followed as data*."""
    entries: list[tuple[str, str]] = []
    taint = _Taint(table) if data else None
    carrying: set[int] = set()

    def profile(frame, event: str, arg: object) -> None:
        if taint is not None:
            if event == "return" and id(frame) in carrying:
                carrying.discard(id(frame))
                taint.add(arg)
                return
            if event != "call" or not taint.carries(frame):
                return
            carrying.add(id(frame))
        if event != "call" or frame.f_back is None:
            return
        callee = _source(frame)
        if callee is None:
            return
        caller = _source(frame.f_back)
        if caller is not None and caller != callee:
            entries.append(
                (f"{caller}:{frame.f_back.f_code.co_name}", f"{callee}:{frame.f_code.co_name}")
            )

    original = fit_module.sample
    fit_module.sample = _stop  # type: ignore[assignment]  # stop where sampling starts
    # PyTensor's stack trace of each new graph variable reads source lines (linecache), not
    # data: off while walking, it made the walk several times slower and counts nothing.
    with pytensor.config.change_flags(traceback__limit=0):
        sys.setprofile(profile)
        try:
            sg.fit(table, spec, progressbar=False, **kwargs)
        except _Stop:
            pass
        finally:
            sys.setprofile(None)
            fit_module.sample = original
    return entries


def walk(
    table: pd.DataFrame, spec: sg.Spec, *, data: bool = False, **kwargs: object
) -> collections.Counter[str]:
    """Entries into each package file (:func:`calls`, counted by the callee's file)."""
    return collections.Counter(
        callee.split(":")[0] for _, callee in calls(table, spec, data=data, **kwargs)
    )


def tables() -> dict[str, tuple[pd.DataFrame, sg.Spec, dict]]:
    """The walks: name -> (table, spec, keyword arguments of ``api.fit``)."""
    t = sg.default_data()
    t = t[t["la"].isin(t["la"].unique()[::3][:6])].groupby("la").head(25)
    cells = []
    for band, age in (("0-4", 2.0), ("5-9", 7.0), ("10-15", 12.5)):
        for gender in ("M", "F"):
            cells.append(
                t.assign(
                    children=(t["children"] / 6).round() + 1,
                    referrals=t["referrals"] // 6,
                    age_band=band,
                    gender=gender,
                    age=age,
                )
            )
    c = pd.concat(cells, ignore_index=True)
    las = pd.read_parquet(sg.MODELS.parent / "data" / "las.parquet")
    cell_terms = sg.Spec(
        "referrals",
        strata=["age_band", "gender"],
        stratum_trend="age",
        neighbourhood_moderators=("rural",),
    )
    la_terms = sg.Spec(
        "referrals",
        la_data="data/las.parquet",
        la_moderators=("spend_per_child",),
        la_outcome={"count": "re", "trials": "tr", "adjust": ["turnover"]},
    )
    t = t.reset_index(drop=True)
    return {
        "default": (t, sg.Spec("referrals"), {}),
        "strata, trend, neighbourhood moderator": (c, cell_terms, {}),
        "LA moderator, LA outcome": (
            t.assign(re=t["referrals"] // 3, tr=t["referrals"]),
            la_terms,
            {"la_table": las},
        ),
    }


def main(argv: list[str] | None = None) -> None:
    """Print each walk's table: every call, then the table followed as data.

    ``--verbose``: under each file, every entry into it, caller -> callee (file:function).
    """
    verbose = "--verbose" in (sys.argv[1:] if argv is None else argv)
    for data in (False, True):
        print("\n## " + ("the table followed as data" if data else "every cross-file call"))
        for name, (table, spec, kwargs) in tables().items():
            entries = calls(table, spec, data=data, **kwargs)
            per_file = collections.Counter(callee.split(":")[0] for _, callee in entries)
            print(
                f"\n{name}: {len(entries)} entries into {len(per_file)} files, "
                f"most {max(per_file.values())}"
            )
            for path, n in per_file.most_common():
                print(f"  {n:3d}  {path}")
                if verbose:
                    for caller, callee in entries:
                        if callee.split(":")[0] == path:
                            print(f"         {caller} -> {callee}")


if __name__ == "__main__":
    main()
