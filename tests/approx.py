"""Comparing stored truths across machines: floats to 12 significant digits.

The synthetic England's derived truth values (exp of a drawn slope, a correlation) differ in
the last binary digit between CPUs whose numpy uses different SIMD kernels for ``exp`` and
``log`` (e.g. with and without AVX-512); the draws, counts and tables are identical. Tests
that check a committed truth against a rebuild compare these rounded forms, which catch any
real change (a different draw moves the 3rd-6th digit) and ignore the last ulp.
"""

from __future__ import annotations

import math


def rounded(obj, digits: int = 12):
    """``obj`` (JSON-like) with every float rounded to ``digits`` significant digits."""
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, digits) for v in obj]
    if isinstance(obj, float) and math.isfinite(obj):
        return float(f"{obj:.{digits}g}")
    return obj
