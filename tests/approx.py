"""Comparing floats computed at run time with stored ones: stated tolerances, never bytes.

The last bits of a float computed with numpy's SIMD kernels (``exp``, ``log``, ``sin``) or
OpenBLAS's dot kernels depend on the CPU: measured on one machine, the synthetic England's
truth differs from its committed copy in the last ulp (numpy without AVX2/AVX-512:
``NPY_DISABLE_CPU_FEATURES``), and the calibration table's LA areas by up to 2e-10
relative (``OPENBLAS_CORETYPE``: the shoelace sum cancels, so the dot kernel's summation
order shows far above the ulp). Rounding to N digits is no cure: a value near a rounding
boundary rounds the other way (the calibration CSV's 6 decimals did, in 3 of 150 rows).
So every comparison of a run-time float with a committed value goes through a stated
tolerance; strings, integers, booleans, codes and the structure are compared exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd


def _plain(x):
    """numpy scalars as their Python value (np.float64 already is a float)."""
    return x.item() if isinstance(x, np.generic) else x


def _close(a: float, e: float, rtol: float, atol: float) -> bool:
    if math.isnan(a) or math.isnan(e):
        return math.isnan(a) and math.isnan(e)
    if math.isinf(a) or math.isinf(e):
        return a == e
    return abs(a - e) <= atol + rtol * abs(e)


def assert_close(actual, expected, rtol: float = 1e-9, atol: float = 0.0, path: str = "$"):
    """``actual`` equals ``expected`` (JSON-like: dicts, lists, tuples, scalars), floats within
    ``|a - e| <= atol + rtol * |e|`` (NaN equals NaN), everything else exactly: the same keys
    (in any order), lengths, strings, ints, bools and None. The error names the path of the
    first difference, e.g. ``$.thresholds.referrals.la.E06000001.gradient``."""
    actual, expected = _plain(actual), _plain(expected)
    if isinstance(expected, Mapping):
        assert isinstance(actual, Mapping), f"{path}: {type(actual).__name__}, expected a dict"
        missing = [k for k in expected if k not in actual]
        extra = [k for k in actual if k not in expected]
        if missing or extra:
            raise AssertionError(f"{path}: keys missing {missing}, unexpected {extra}")
        for k in expected:
            assert_close(actual[k], expected[k], rtol, atol, f"{path}.{k}")
    elif isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple), f"{path}: {actual!r}, expected a list"
        assert len(actual) == len(expected), (
            f"{path}: length {len(actual)}, expected {len(expected)}"
        )
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, rtol, atol, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(actual, float), f"{path}: {actual!r}, expected the float {expected!r}"
        assert _close(actual, expected, rtol, atol), (
            f"{path}: {actual!r} != {expected!r} (rtol {rtol:g}, atol {atol:g})"
        )
    else:
        if type(actual) is not type(expected) or actual != expected:
            raise AssertionError(f"{path}: {actual!r}, expected {expected!r}")


def assert_frame_close(
    actual: pd.DataFrame,
    expected: pd.DataFrame,
    rtol: float = 1e-9,
    atol: float | Mapping[str, float] = 0.0,
    **kwargs,
) -> None:
    """Two tables with the same columns (in order) and index: float columns within ``rtol``
    and ``atol`` (numpy's ``assert_allclose``, NaN equals NaN), every other column exactly
    (``pd.testing.assert_frame_equal(check_exact=True, **kwargs)``). ``atol`` may map a column
    to its own absolute tolerance: for a column the writer rounds to d decimals, one unit in
    the last decimal (10**-d) -- a last-ulp difference at a rounding boundary moves it by that."""
    assert list(actual.columns) == list(expected.columns), (
        f"columns {list(actual.columns)}, expected {list(expected.columns)}"
    )
    pd.testing.assert_index_equal(actual.index, expected.index)
    floats = [
        c
        for c in expected.columns
        if pd.api.types.is_float_dtype(expected[c]) or pd.api.types.is_float_dtype(actual[c])
    ]
    others = [c for c in expected.columns if c not in floats]
    pd.testing.assert_frame_equal(actual[others], expected[others], check_exact=True, **kwargs)
    unknown = set(atol) - set(floats) if isinstance(atol, Mapping) else set()
    assert not unknown, f"atol given for columns that are not float columns: {sorted(unknown)}"
    for c in floats:
        if kwargs.get("check_dtype", True):
            assert actual[c].dtype == expected[c].dtype, (
                f"column {c!r}: dtype {actual[c].dtype}, expected {expected[c].dtype}"
            )
        tol = atol.get(c, 0.0) if isinstance(atol, Mapping) else atol
        np.testing.assert_allclose(
            actual[c].to_numpy(dtype=float),
            expected[c].to_numpy(dtype=float),
            rtol=rtol,
            atol=tol,
            equal_nan=True,
            err_msg=f"column {c!r}",
        )


def fingerprint(obj) -> dict:
    """A short summary of a JSON-like object to pin in a test, compared with
    :func:`assert_close`: ``skeleton``, the SHA-256 of everything but the floats (keys, list
    lengths, strings, ints, bools, None; each float a placeholder) -- the same on any CPU;
    ``floats``, their number; ``abs_sum`` and ``weighted_abs_sum``, exact sums (``math.fsum``)
    of ``|x_i|`` and of ``(1 + i % 97) |x_i|`` over the floats in sorted-key order -- to
    compare with a relative tolerance. All terms are positive, so a last-ulp change of every
    float moves a sum by a few 1e-16 relative, while a changed draw moves it at the 1e-6 level
    or more (one value changed by d moves ``weighted_abs_sum`` by d to 97 d)."""
    floats: list[float] = []

    def strip(o):
        o = _plain(o)
        if isinstance(o, Mapping):
            return {str(k): strip(o[k]) for k in sorted(o, key=str)}
        if isinstance(o, list | tuple):
            return [strip(v) for v in o]
        if isinstance(o, float):
            floats.append(o)
            return "<float>"
        return o

    skeleton = json.dumps(strip(obj))
    return {
        "skeleton": hashlib.sha256(skeleton.encode()).hexdigest(),
        "floats": len(floats),
        "abs_sum": math.fsum(abs(x) for x in floats),
        "weighted_abs_sum": math.fsum((1 + i % 97) * abs(x) for i, x in enumerate(floats)),
    }
