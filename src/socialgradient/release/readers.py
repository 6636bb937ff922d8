"""The LA table as a reader gets it: each LA's name beside its code, estimates to 3 digits.

``la_gradients.csv`` is read by people (a director of children's services, a statistician
preparing a report), not only by programs: it names every LA (:func:`la_names`) and gives
every estimate -- rates, mean incomes, gradients, ranks and their intervals -- to
:data:`DIGITS` significant digits (:func:`significant`), the precision the intervals
support. Counts (``n_lsoa``, ``children``, ``cases``) are as the disclosure gate publishes
them. ``summary.json`` and the other JSON files keep full precision.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import xarray as xr

from socialgradient import resources
from socialgradient.release.masking import group

#: significant digits of every estimate in the readers' LA table
DIGITS = 3
#: the estimate columns of ``la_gradients.csv`` (rounded by :func:`for_readers`)
ESTIMATES = (
    "rate_per_10k",
    "la_income",
    "gradient_median",
    "gradient_lo95",
    "gradient_hi95",
    "gradient_lo80",
    "gradient_hi80",
    "rank_median",
    "rank_lo95",
    "rank_hi95",
    "p_steeper_than_england",
)


def significant(values: object, digits: int = DIGITS) -> np.ndarray:
    """Round ``values`` to ``digits`` significant digits.

    Parameters
    ----------
    values : array_like of float
        The numbers; NaN, infinities and zeros are returned unchanged.
    digits : int, default :data:`DIGITS`
        Significant digits to keep (at least 1).

    Returns
    -------
    ndarray of float
        Each value as the float nearest its decimal rounding, so that it is written back
        with no more than ``digits`` significant digits (``0.0123456`` -> ``0.0123``,
        ``123456.0`` -> ``123000.0``, ``2.5549`` -> ``2.55``).
    """
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be a positive integer, not {digits!r}")
    x = np.asarray(values, dtype=float)
    flat = [float(f"{v:.{digits}g}") if np.isfinite(v) else float(v) for v in x.ravel()]
    return np.array(flat, dtype=float).reshape(x.shape)


@functools.lru_cache(maxsize=1)
def _package_names() -> dict[str, str]:
    """LA code -> name from the package's LA table (``data/las.parquet``; empty if absent)."""
    path = resources.path("data", "las.parquet")
    if not path.is_file():
        return {}
    table = pd.read_parquet(path, columns=["la", "la_name"])
    return dict(zip(table["la"].astype(str), table["la_name"].astype(str), strict=True))


def la_names(tree: xr.DataTree, codes: object) -> np.ndarray:
    """Return each LA's name, one per code of ``codes``.

    Parameters
    ----------
    tree : xarray.DataTree
        The fit; its ``la_name`` coordinate (the fitted table's ``la_name`` column) is used
        first.
    codes : array_like of str
        LA codes.

    Returns
    -------
    ndarray of str
        The fit's name of each LA, else the package's LA table's (``data/las.parquet``:
        every LA of the synthetic England, by its ONS code), else the code itself, so that
        no row is left without a name.
    """
    codes = np.asarray(codes, dtype=str)
    const = group(tree, "constant_data")
    fitted: dict[str, str] = {}
    if "la_name" in const.coords:
        fitted = dict(
            zip(
                const["la"].values.astype(str),
                const["la_name"].values.astype(str),
                strict=True,
            )
        )
    package = _package_names()
    return np.array([fitted.get(c) or package.get(c) or c for c in codes.tolist()], dtype=str)


def for_readers(frame: pd.DataFrame, tree: xr.DataTree) -> pd.DataFrame:
    """Return the LA table with ``la_name`` beside ``la`` and its estimates rounded.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per LA with an ``la`` column (as :func:`~socialgradient.release.fit_tables.
        release_la_gradients` builds it).
    tree : xarray.DataTree
        The fit the names are read from (:func:`la_names`).

    Returns
    -------
    pandas.DataFrame
        A copy: ``la_name`` inserted after ``la`` and the columns of :data:`ESTIMATES` it
        holds rounded to :data:`DIGITS` significant digits (:func:`significant`).
    """
    out = frame.copy()
    if "la_name" in out:
        out = out.drop(columns="la_name")
    out.insert(int(out.columns.get_loc("la")) + 1, "la_name", la_names(tree, out["la"]))
    for column in ESTIMATES:
        if column in out:
            out[column] = significant(out[column].to_numpy(dtype=float))
    return out
