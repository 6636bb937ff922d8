"""How often a table walked through ``api.fit`` enters each source file (issue 28).

Method: the model-building path of :func:`socialgradient.api.fit` (validate, encode, choose
the LA geometry, build the PyMC model) runs on a small table under :func:`sys.setprofile`,
and stops where sampling would start (``socialgradient.sampling.fit.sample`` is replaced by
a function that raises). Every Python ``call`` event whose function lives in a file of
``src/socialgradient`` and whose caller's frame lives in *another* file of
``src/socialgradient`` counts one entry into the callee's file; calls within a file, and
calls from outside the package (numpy, PyMC, pandas calling back) do not count. The table is
printed per file, most entries first, with the largest count, for three specs: the default
(``referrals``, negative binomial), one with two stratum columns, a stratum trend and a
neighbourhood moderator (a table of cells), and one with an LA moderator and an LA outcome. Target: every file at most 2.

Run: ``PYTHONPATH=src python bench/walk.py`` (from the repository root; a minute).
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pandas as pd

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
    try:
        return str(Path(frame.f_code.co_filename).resolve().relative_to(ROOT))
    except ValueError:
        return None


def walk(table: pd.DataFrame, spec: sg.Spec, **kwargs: object) -> collections.Counter[str]:
    """Entries into each package file from another package file on ``api.fit``'s way to
    sampling."""
    entries: collections.Counter[str] = collections.Counter()

    def profile(frame, event: str, arg: object) -> None:
        if event != "call" or frame.f_back is None:
            return
        callee = _source(frame)
        if callee is None:
            return
        caller = _source(frame.f_back)
        if caller is not None and caller != callee:
            entries[callee] += 1

    original = fit_module.sample
    fit_module.sample = _stop  # type: ignore[assignment]  # stop where sampling starts
    sys.setprofile(profile)
    try:
        sg.fit(table, spec, progressbar=False, **kwargs)
    except _Stop:
        pass
    finally:
        sys.setprofile(None)
        fit_module.sample = original
    return entries


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


def main() -> None:
    """Print each walk's table."""
    for name, (table, spec, kwargs) in tables().items():
        entries = walk(table, spec, **kwargs)
        print(
            f"\n{name}: {sum(entries.values())} entries into {len(entries)} files, "
            f"most {max(entries.values())}"
        )
        for path, n in entries.most_common():
            print(f"  {n:3d}  {path}")


if __name__ == "__main__":
    main()
