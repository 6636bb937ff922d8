"""The negative binomial's count statistics, without cancellation, and overdispersion.

Its normaliser's sums over counts, and whether counts rule out its Poisson limit.

Split from :mod:`socialgradient.model.families`, which uses (and re-exports) them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: :func:`overdispersed`'s threshold on the overdispersion z statistic.
OVERDISPERSED_Z = 10.0


def overdispersed(y: np.ndarray, mean: np.ndarray) -> bool:
    """Return whether counts ``y`` rule out the negative binomial's Poisson limit.

    Whether counts ``y`` rule out the negative binomial's Poisson limit (phi -> infinity),
    given Poisson means ``mean`` of the model's own mean structure (a fit of it, e.g.
    :func:`socialgradient.model.parameterisation.la_fit`).

    The excess variance ``sum((y - mean)^2 - mean)`` has standard deviation
    ``sqrt(sum(mean + 2 mean^2))`` under the Poisson; above ``OVERDISPERSED_Z`` of them the
    data pin 1/phi down to well within a tenth of its size, so the posterior cannot reach the
    phi > 1e6 where the cheaper normaliser loses precision. Referrals on the default England:
    z = 41, CP plans 6.5, looked after 1.5 (those two keep the stable form); Poisson counts
    about N(0, 1).
    """
    y = np.asarray(y, float)
    excess = np.sum((y - mean) ** 2 - mean)
    return bool(excess / np.sqrt(np.sum(mean + 2.0 * mean**2)) > OVERDISPERSED_Z)


#: Counts up to this enter the negative binomial's normaliser one j at a time (``K_j``,
#: :func:`_exceedances`); above it, runs of j in closed form (:func:`_tail`). Without the
#: bound, ``K_j`` ran to max(y): one count of 1,000,000 in a table made every gradient
#: evaluation compute a million log1p (a fit 17x slower), the pointwise log likelihood a
#: draws x 1,000,000 table, and 2**53 asked for 64 PiB.
EXACT_COUNTS = 1024


def statistics(y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Return what the NB's normaliser reads of the counts.

    Their ``K_j`` (:func:`_exceedances`) and runs above EXACT_COUNTS (:func:`_tail`).
    """
    return _exceedances(y), _tail(y)


def _exceedances(y: np.ndarray) -> np.ndarray:
    """Return ``K_j``, the number of rows with ``y > j``.

    ``K_j`` = number of rows with ``y > j``, for j = 0 .. min(max(y), EXACT_COUNTS) - 1
    (memory and time independent of max(y): a sort of the counts, no ``bincount``).
    """
    y = np.sort(np.asarray(y, np.int64))
    top = min(int(y[-1]) if y.size else 0, EXACT_COUNTS)
    return (len(y) - np.searchsorted(y, np.arange(top), side="right")).astype(float)


def _tail(y: np.ndarray) -> np.ndarray | None:
    """Return the runs of j above EXACT_COUNTS, or None when no count exceeds it.

    The runs of j above EXACT_COUNTS, or None when no count exceeds it: a (3, k) array of
    ``start``, ``stop`` (consecutive distinct counts, the first start EXACT_COUNTS) and
    ``rows`` = #{y >= stop}, the K_j shared by every j in [start, stop).
    """
    y = np.sort(np.asarray(y, np.int64))
    stops = np.unique(y[y > EXACT_COUNTS])
    if not stops.size:
        return None
    starts = np.concatenate([[EXACT_COUNTS], stops[:-1]])
    rows = len(y) - np.searchsorted(y, starts, side="right")
    return np.stack([starts, stops, rows]).astype(float)


def _log_rising(start: Any, stop: Any, phi: Any, xp: Any) -> Any:
    r"""Return ``sum_{j=start}^{stop-1} log1p(j / phi)`` for ``start >= EXACT_COUNTS``.

    ``sum_{j=start}^{stop-1} log1p(j / phi)`` for ``start >= EXACT_COUNTS`` (``xp``: numpy
    or pytensor.tensor), without the cancellation of lgamma(stop + phi) - lgamma(start + phi)
    - (stop - start) log(phi): Stirling's formula for both lgammas with log(x / phi) as
    log1p(.), so the terms that cancel are of the size of the counts, not of phi log(phi)
    (1e-10 nats at phi = 1e11, counts of 1e6). Stirling's remainder
    :math:`1/(12x) - 1/(360x^3) + 1/(1260x^5)` is exact to 1e-24 for x >= 1024.
    """

    def part(n):
        x = phi + n
        return (x - 0.5) * xp.log1p(n / phi) + (
            1 / 12 - (1 / 360 - 1 / (1260 * x * x)) / (x * x)
        ) / x

    return part(stop) - part(start) - (stop - start)
