"""A synthetic BYM2 spatial field with known ``sd`` and ``rho``, for recovery tests.

:func:`draw_bym2` draws ``b = sd * (sqrt(rho / s_c) * phi + sqrt(1 - rho) * theta)`` on a
given neighbour graph, exactly as :func:`socialgradient.model.spatial.add_bym2` models it:
``phi`` an exact draw from each component's constrained ICAR (sum zero per component),
``theta`` iid ``N(0, 1)``, ``s_c`` the component's Riebler scaling factor, islands iid only.
:func:`lattice_pairs` builds the ``lsoa,neighbour`` table of a rectangular lattice (a
stand-in graph for small tests; England's real graph is ``data/lsoa11_neighbours.csv.gz``).
:func:`place_on_real` puts the synthetic England's LSOAs on real ones (same LA, same income
rank within it) and :func:`relabel_pairs` carries the real graph over to the synthetic codes:
the synthetic England then has real adjacency and realistically clustered deprivation, but
its LSOAs are *not* the real ones (``data/synthetic_neighbours.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from socialgradient.data.icar import ScalingFactors, icar_draws, scaling_factors
from socialgradient.data.neighbours import Adjacency, NeighbourError, NeighbourPairs

__all__ = ["SpatialTruth", "draw_bym2", "lattice_pairs", "place_on_real", "relabel_pairs"]


@dataclass(frozen=True)
class SpatialTruth:
    """A drawn field and what made it.

    Attributes
    ----------
    effect : numpy.ndarray
        ``b``, one value per node (log-rate units).
    phi, theta : numpy.ndarray
        The unscaled ICAR and iid parts.
    sd, rho : float
        The truth the field was drawn with.
    """

    effect: np.ndarray
    phi: np.ndarray
    theta: np.ndarray
    sd: float
    rho: float


def draw_bym2(
    adjacency: Adjacency,
    sd: float,
    rho: float,
    seed: int | np.random.Generator = 0,
    scaling: ScalingFactors | None = None,
) -> SpatialTruth:
    """Draw one BYM2 field on ``adjacency`` with marginal scale ``sd`` and spatial share ``rho``.

    Parameters
    ----------
    adjacency : Adjacency
        The graph.
    sd : float
        Standard deviation of the effect (> 0).
    rho : float
        Spatial share of its variance, in [0, 1].
    seed : int or numpy.random.Generator
        Random source.
    scaling : ScalingFactors, optional
        Precomputed scaling factors of ``adjacency``.

    Returns
    -------
    SpatialTruth
        The field and its parts.
    """
    if not sd > 0:
        raise ValueError(f"sd must be positive, not {sd}")
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], not {rho}")
    rng = np.random.default_rng(seed)
    scaling = scaling or scaling_factors(adjacency)
    phi = icar_draws(adjacency, 1, rng)[0]
    theta = rng.standard_normal(adjacency.n)
    s = scaling.per_node(adjacency)
    island = adjacency.degree == 0
    spatial = np.where(island, 0.0, np.sqrt(rho / np.where(island, 1.0, s)) * phi)
    iid = np.where(island, 1.0, np.sqrt(1.0 - rho)) * theta
    return SpatialTruth(effect=sd * (spatial + iid), phi=phi, theta=theta, sd=sd, rho=rho)


def lattice_pairs(rows: int, cols: int, prefix: str = "L") -> tuple[list[str], pd.DataFrame]:
    """Return the codes and ``lsoa,neighbour`` rook pairs of a ``rows x cols`` lattice.

    Parameters
    ----------
    rows, cols : int
        Lattice size.
    prefix : str
        Code prefix (codes are ``prefix`` + a zero-padded index, row by row).

    Returns
    -------
    tuple of (list of str, pandas.DataFrame)
        The codes in order and one row per pair (each once).
    """
    idx = np.arange(rows * cols).reshape(rows, cols)
    width = len(str(rows * cols))
    codes = np.array([f"{prefix}{i:0{width}d}" for i in range(rows * cols)])
    a = np.r_[idx[:, :-1].ravel(), idx[:-1, :].ravel()]
    b = np.r_[idx[:, 1:].ravel(), idx[1:, :].ravel()]
    return list(codes), pd.DataFrame({"lsoa": codes[a], "neighbour": codes[b]})


def place_on_real(synthetic: pd.DataFrame, real: pd.DataFrame) -> pd.Series:
    """Map each synthetic LSOA to the real LSOA of its LA with the same income rank.

    Parameters
    ----------
    synthetic, real : pandas.DataFrame
        Columns ``lsoa``, ``la`` and ``income``; the same number of LSOAs in every LA (merge
        LAs beforehand where the synthetic England merges them, e.g. the Isles of Scilly
        into Cornwall).

    Returns
    -------
    pandas.Series
        Real code indexed by synthetic code. Ties in income are broken by code, so the
        placement is reproducible.

    Raises
    ------
    NeighbourError
        An LA has a different number of LSOAs in the two tables (named, with both counts).
    """
    counts = pd.concat(
        [synthetic.groupby("la").size().rename("synthetic"), real.groupby("la").size()],
        axis=1,
    ).fillna(0)
    bad = counts[counts.iloc[:, 0] != counts.iloc[:, 1]]
    if len(bad):
        shown = ", ".join(
            f"{la} ({int(r.iloc[0])} synthetic, {int(r.iloc[1])} real)"
            for la, r in bad.head(5).iterrows()
        )
        raise NeighbourError(f"{len(bad)} LAs have different numbers of LSOAs: {shown}")

    def ranked(t: pd.DataFrame) -> pd.DataFrame:
        return t.sort_values(["la", "income", "lsoa"], kind="stable").reset_index(drop=True)

    a, b = ranked(synthetic), ranked(real)
    return pd.Series(b["lsoa"].to_numpy(), index=pd.Index(a["lsoa"].to_numpy(), name="synthetic"))


def relabel_pairs(pairs: NeighbourPairs, placement: pd.Series) -> NeighbourPairs:
    """Carry a real graph over to synthetic codes (``placement``: real code by synthetic code).

    Parameters
    ----------
    pairs : NeighbourPairs
        The real pairs.
    placement : pandas.Series
        From :func:`place_on_real`.

    Returns
    -------
    NeighbourPairs
        The same graph over the synthetic codes, each pair once (smaller code first).
    """
    real = pd.Index(placement.to_numpy(dtype=str))
    synthetic = placement.index.to_numpy(dtype=str)
    where = real.get_indexer(pairs.pairs.ravel()).reshape(-1, 2)
    missing = where < 0
    if missing.any():
        raise NeighbourError(
            f"{int(missing.any(axis=1).sum())} pairs name real LSOAs that no synthetic LSOA "
            f"is placed on (first: {pairs.pairs[missing][0]})"
        )
    mapped = synthetic[where]
    swap = mapped[:, 0] > mapped[:, 1]
    mapped[swap] = mapped[swap][:, ::-1]
    mapped = mapped[np.lexsort((mapped[:, 1], mapped[:, 0]))]
    return NeighbourPairs(
        pairs=mapped,
        rows=pairs.rows,
        symmetric=pairs.symmetric,
        one_way=pairs.one_way,
        source=f"{pairs.source} (placed on synthetic LSOAs)",
    )
