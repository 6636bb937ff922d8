"""Cell-key perturbation of released counts (the ONS Census 2021 method, on LSOA rows).

In the ONS method every *record* carries a random key in [0, 1); a cell's key is the sum of
its records' keys modulo 1, and the noise added to the cell is read from a fixed
perturbation table (:func:`ptable`) at the cell's value and key. The same records always
give the same cell key, hence the same noise, whichever table or release shows the cell;
a cell that gains or loses one record gets a new key and a fresh draw, so the difference of
two releases is the true difference plus noise, never the true difference alone.

Our rows are LSOA counts (LSOA x stratum rows of an aggregate), not records. The keys are
derived from a secret kept with the release ledger (:mod:`socialgradient.release.ledger`): each
(LSOA, measure) has a stream of record keys, ``SplitMix64(seed + i * golden)`` for
i = 0, 1, 2, ..., seeded by HMAC-SHA256(secret, LSOA code) mixed with the measure's name.
A row counting ``n`` takes the next ``n`` keys of its LSOA's stream (the rows of one LSOA,
e.g. its age bands, are dealt consecutive slices in the order of their labels), so a cell
holding all of an LSOA's records has the same key whether it was made from LSOA rows or
from LSOA x stratum rows, and adding one child to an LSOA adds one key. Without the secret
the keys cannot be computed, so the noise cannot be removed.

Counts (:func:`perturb_counts`): noise in [-D, D] (``D`` = :data:`MAX_NOISE` = 3) from a
discrete normal of variance :data:`VARIANCE` (2) truncated to [-D, D] and to published
values not below a ``floor`` (the threshold, for visible cells: no perturbed value is
below it; so the noise is biased upwards within D of the floor). Zeros stay zero (true
zeros are not disclosive here; the threshold hides 1 to 9).

Denominators (children, exposure; :func:`perturb_laplace`): Laplace noise from the cell key,
so that a difference of two releases rules no explanation out.

Magnitudes (person-days, means; :func:`perturb_magnitudes`): uniform noise of up
to +-``amplitude`` from the cell key, where the caller's amplitude is at least the largest
single unit's contribution (an LSOA's children, an LSOA row's days, one LSOA's pull on a
mean): no single unit's contribution can be read off a difference of two releases.

The parameters (D, V, the amplitude rules) are public and logged; the secret is not.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

import numpy as np

MAX_NOISE = 3  # D: the largest perturbation of a count
VARIANCE = 2.0  # V: variance of the discrete normal before truncation
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def describe() -> dict:
    """Return the public description of the method and its parameters (for the log)."""
    return {
        "method": "cell key (ONS Census 2021 style), keys from a secret kept with the ledger",
        "max_noise": MAX_NOISE,
        "variance": VARIANCE,
        "zeros": "not perturbed",
        "magnitudes": "uniform noise up to the largest unit's contribution",
    }


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = z.astype(np.uint64, copy=True)
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def _uniform(z: np.ndarray) -> np.ndarray:
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _h64(text: str) -> np.uint64:
    """Return a public 64-bit hash of a name (measures, labels)."""
    return np.uint64(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little"))


def split_units(ids) -> tuple[np.ndarray, np.ndarray]:
    """Split unit ids ``CODE`` or ``CODE|label`` into (code, label) arrays."""
    ids = np.asarray(ids, dtype=str)
    parts = np.char.partition(ids, "|")
    return parts[:, 0], parts[:, 2]


class CellKeys:
    """Record and cell keys derived from ``secret`` (bytes)."""

    def __init__(self, secret: bytes):
        if not isinstance(secret, bytes | bytearray) or len(secret) < 16:
            raise ValueError("the perturbation secret must be at least 16 bytes")
        self._secret = bytes(secret)
        self._seeds: dict[str, int] = {}

    def _unit_seeds(self, codes: np.ndarray) -> np.ndarray:
        out = np.empty(len(codes), dtype=np.uint64)
        uniq, inverse = np.unique(codes, return_inverse=True)
        seeds = np.empty(len(uniq), dtype=np.uint64)
        for i, code in enumerate(uniq.tolist()):
            s = self._seeds.get(code)
            if s is None:
                digest = hmac.new(self._secret, code.encode(), hashlib.sha256).digest()
                s = self._seeds[code] = int.from_bytes(digest[:8], "little")
            seeds[i] = s
        out[:] = seeds[inverse]
        return out

    def _stream_seeds(self, codes: np.ndarray, measure: str) -> np.ndarray:
        return _mix(self._unit_seeds(codes) ^ _h64("measure:" + measure))

    def count_keys(self, units, counts, measure: str) -> np.ndarray:
        """Return each row's key: the sum of its records' keys for ``measure``.

        Per row (unit id ``CODE`` or ``CODE|label``, a count): the sum (mod 1) of the record
        keys its count takes from its code's stream for ``measure``.
        """
        codes, labels = split_units(units)
        n = np.rint(np.asarray(counts, dtype=float)).astype(np.int64)
        if (n < 0).any():
            raise ValueError("counts must be non-negative")
        order = np.lexsort((labels, codes))  # rows of one code in the order of their labels
        offset = np.zeros(len(n), dtype=np.int64)
        sorted_codes, sorted_n = codes[order], n[order]
        csum = np.cumsum(sorted_n) - sorted_n
        first = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]] if len(n) else np.zeros(0, bool)
        start = np.maximum.accumulate(np.where(first, np.arange(len(n)), 0)) if len(n) else first
        offset[order] = csum - csum[start]
        seeds = self._stream_seeds(codes, measure)
        rows = np.repeat(np.arange(len(n)), n)
        index = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(offset, n)
        with np.errstate(over="ignore"):
            state = seeds[rows] + (index.astype(np.uint64) + np.uint64(1)) * _GOLDEN
        keys = _uniform(_mix(state))
        return np.bincount(rows, weights=keys, minlength=len(n)) % 1.0

    def magnitude_keys(self, units, values, measure: str) -> np.ndarray:
        """Return each row's key from its unit, its label and its value.

        Per row: a key in [0, 1) from its unit, its label and its value (so a changed value
        is a new key).
        """
        codes, labels = split_units(units)
        v = np.round(np.asarray(values, dtype=float), 6)
        bits = v.view(np.uint64) if v.dtype == np.float64 else v.astype(np.float64).view(np.uint64)
        names, inverse = np.unique(labels, return_inverse=True)  # a hash per distinct label
        lab = np.array([_h64("label:" + s) for s in names.tolist()], dtype=np.uint64)
        lab = lab[inverse.ravel()]
        return _uniform(_mix(self._stream_seeds(codes, measure) ^ lab ^ _mix(bits)))


def cell_keys(row_keys: np.ndarray, cell_of_row: np.ndarray, n_cells: int) -> np.ndarray:
    """Cell keys: the sum (mod 1) of the row keys of each cell."""
    return np.bincount(cell_of_row, weights=row_keys, minlength=n_cells) % 1.0


@functools.cache
def _table(lowest: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise values and cumulative probabilities for noise >= ``lowest`` (in [-D, 0])."""
    j = np.arange(max(lowest, -MAX_NOISE), MAX_NOISE + 1)
    p = np.exp(-(j.astype(float) ** 2) / (2 * VARIANCE))
    c = np.cumsum(p / p.sum())
    c[-1] = 1.0
    return j, c


def ptable(n: int, floor: int = 1) -> dict[int, float]:
    """Return the perturbation table's row for value ``n``: {noise: probability}."""
    j, c = _table(_lowest(n, floor))
    return dict(zip(j.tolist(), np.diff(np.r_[0.0, c]).tolist(), strict=True))


def _lowest(n: int, floor: int) -> int:
    # zeros stay zero; nothing else is published as zero (a published 0 is a true zero)
    return 0 if n <= 0 else max(-MAX_NOISE, (floor - n) if n >= floor else 1 - n)


def noise(values: np.ndarray, keys: np.ndarray, floor: int = 1) -> np.ndarray:
    """Return the noise of each count cell (``values``, true) at its cell key."""
    values = np.asarray(values, dtype=float)
    out = np.zeros(values.shape)
    n = np.rint(values).astype(np.int64)
    lowest = np.array([_lowest(int(v), floor) for v in n.ravel()]).reshape(n.shape)
    for lo in np.unique(lowest):
        where = (lowest == lo) & (n > 0)
        if where.any():
            j, c = _table(int(lo))
            out[where] = j[np.minimum(np.searchsorted(c, keys[where], side="right"), len(j) - 1)]
    return out


def perturb_counts(values, keys, floor: int = 1) -> np.ndarray:
    """Return true counts plus their cell-key noise.

    True counts plus their cell-key noise (zeros stay zero; nothing below ``floor``
    except zeros).
    """
    values = np.asarray(values, dtype=float)
    return values + noise(values, np.asarray(keys, dtype=float), floor)


def perturb_magnitudes(values, keys, amplitude, floor: float = 0.0) -> np.ndarray:
    """Return ``values`` plus uniform noise read from the cell keys.

    ``values`` plus uniform noise in [-amplitude, amplitude) read from the cell keys;
    zeros stay zero, and nothing else is published below ``floor`` (the threshold, as for
    counts).
    """
    values = np.asarray(values, dtype=float)
    z = 2.0 * np.asarray(keys, dtype=float) - 1.0
    out = np.maximum(values + z * np.asarray(amplitude, dtype=float), float(floor))
    return np.where(values == 0, 0.0, out)


def perturb_laplace(values, keys, scale, floor: float = 1.0) -> np.ndarray:
    """Return ``values`` plus Laplace noise read from the cell keys.

    ``values`` plus Laplace noise of ``scale`` read from the cell keys (the key's quantile;
    at most about 37 scales from a 53-bit key); zeros stay zero, nothing else is published
    below ``floor`` (a denominator stays positive; a value at the floor says only that the
    noise was at most ``floor - value``, which every explanation allows). Unbounded in
    principle, so a difference of two releases excludes no explanation of it.
    """
    values = np.asarray(values, dtype=float)
    u = np.clip(np.asarray(keys, dtype=float), 2.0**-53, 1.0 - 2.0**-53) - 0.5
    noise = -np.sign(u) * np.log1p(-2.0 * np.abs(u)) * np.asarray(scale, dtype=float)
    return np.where(values == 0, 0.0, np.maximum(values + noise, float(floor)))
