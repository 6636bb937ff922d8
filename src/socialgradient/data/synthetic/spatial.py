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

__all__ = [
    "SpatialTruth",
    "draw_bym2",
    "lattice_pairs",
    "lattice_table",
    "place_on_real",
    "relabel_pairs",
    "with_field",
]


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


def lattice_table(
    rows: int = 12,
    cols: int = 12,
    las: int = 4,
    sd: float = 0.5,
    rho: float = 0.8,
    b_w: float = 0.3,
    seed: int = 0,
    clustered_income: float = 0.0,
    income_noise: float = 0.2,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Return a small neighbourhood table on a lattice with a BYM2 field of known truth.

    The ``rows x cols`` lattice is cut into ``las`` vertical strips (the LAs); each LSOA has
    300 children and income deprivation ``0.1 + 0.1 * la_position / las + U(0, income_noise)``; the
    ``referrals`` are Poisson with log rate ``-3 + b_w * w + 0.2 * m + b`` (``w``, ``m`` the
    within/between deprivation in 10-point units, :mod:`socialgradient.data.deprivation`;
    ``b`` the BYM2 field, :func:`draw_bym2`).

    Parameters
    ----------
    rows, cols, las : int
        Lattice size and number of LAs (``cols`` is divided among them).
    sd, rho : float
        The field's truth (log-rate units; spatial share).
    b_w : float
        The true within-LA log gradient per 10 points.
    seed : int
        Random seed.
    clustered_income : float
        SD of a spatially smooth part added to income (an ICAR draw, ``rho = 1``,
        independent of the field ``b``), so that deprivation clusters in space as in
        England; 0 (the default) for none. Income is clipped to [0.01, 0.99].
    income_noise : float
        Width of income's iid uniform part (default 0.2); small with a large
        ``clustered_income`` makes deprivation smooth in space within an LA.

    Returns
    -------
    tuple of (DataFrame, DataFrame, dict)
        The table (``lsoa``, ``la``, ``children``, ``income``, ``referrals``), its
        ``lsoa,neighbour`` pairs, and the truth (``sd``, ``rho``, ``b_w``, ``effect``).
    """
    from socialgradient.data.deprivation import decompose
    from socialgradient.data.neighbours import build_adjacency, pairs_from_frame

    rng = np.random.default_rng(seed)
    raw, frame = lattice_pairs(rows, cols)
    codes = np.array([f"E01{i:06d}" for i in range(rows * cols)])
    rename = dict(zip(raw, codes, strict=True))
    frame = frame.replace({"lsoa": rename, "neighbour": rename})
    strip = np.tile(np.arange(cols) * las // cols, rows)
    table = pd.DataFrame(
        {
            "lsoa": codes,
            "la": [f"E06{900000 + k:06d}" for k in strip],
            "children": 300.0,
            "income": 0.1 + 0.1 * strip / las + rng.uniform(0, income_noise, len(codes)),
        }
    )
    adjacency = build_adjacency(pairs_from_frame(frame), codes)
    field = draw_bym2(adjacency, sd, rho, rng)
    if clustered_income > 0:
        smooth = draw_bym2(adjacency, clustered_income, 1.0, rng).effect
        table["income"] = np.clip(table["income"] + smooth, 0.01, 0.99)
    d = decompose(table["income"], table["children"], table["la"])
    log_rate = -3.0 + b_w * d.w + 0.2 * d.m_c[d.la_index] + field.effect
    table["referrals"] = rng.poisson(table["children"] * np.exp(log_rate))
    truth = {"sd": sd, "rho": rho, "b_w": b_w, "effect": field.effect}
    return table, frame, truth


def with_field(
    table: pd.DataFrame,
    truth: dict,
    pairs: NeighbourPairs,
    sd: float,
    rho: float,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Redraw a synthetic England's counts with a BYM2 field on its neighbour graph.

    Every outcome's counts are drawn again, as :func:`socialgradient.data.synthetic.england.
    simulate` draws them (negative binomial around ``children * exp(a_l + b_l w)``, the
    truth's LA effects and ``phi``) with ``b``, one BYM2 field shared by the outcomes
    (:func:`draw_bym2`), added to the log rate; the other columns are unchanged.

    Parameters
    ----------
    table, truth : DataFrame, dict
        ``simulate``'s table and truth.
    pairs : NeighbourPairs
        The graph (``data/synthetic_neighbours.csv.gz`` for the full-size England).
    sd, rho : float
        The field's truth (log-rate units; spatial share).
    seed : int
        Seed of the field and the counts (their own stream).

    Returns
    -------
    tuple of (DataFrame, dict)
        The table and the truth with ``spatial``: ``sd``, ``rho``, ``seed``, the field's
        realised SD and Moran's I.
    """
    from socialgradient.data.deprivation import decompose
    from socialgradient.data.neighbours import build_adjacency

    adjacency = build_adjacency(pairs, table["lsoa"].astype(str).to_numpy(), unknown="drop")
    rng = np.random.default_rng([int(seed), 29])
    field = draw_bym2(adjacency, sd, rho, rng)
    d = decompose(table["income"], table["children"], table["la"])
    out = table.copy()
    exposure = table["children"].to_numpy(dtype=float)
    for outcome, t in truth["thresholds"].items():
        a_la = np.array([t["la"][str(code)]["a_la"] for code in d.la])
        b_la = np.array([t["la"][str(code)]["b_la"] for code in d.la])
        mu = exposure * np.exp(a_la[d.la_index] + b_la[d.la_index] * d.w + field.effect)
        out[outcome] = rng.poisson(rng.gamma(t["phi"], mu / t["phi"])).astype(np.int64)
    z = field.effect - field.effect.mean()
    i, j = adjacency.edges[:, 0], adjacency.edges[:, 1]
    moran = len(z) / len(i) * float(np.sum(z[i] * z[j])) / float(np.sum(z * z))
    spatial = {
        "sd": sd,
        "rho": rho,
        "seed": int(seed),
        "realised_sd": float(field.effect.std()),
        "morans_i": moran,
        "graph": pairs.source.replace("\\", "/").rsplit("/", 1)[-1],
        "definition": "log rate + b_lsoa, b ~ BYM2(sd, rho) on the graph, shared by outcomes",
    }
    return out, {**truth, "spatial": spatial}
