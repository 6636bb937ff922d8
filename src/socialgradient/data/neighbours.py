"""Neighbour lists of LSOAs: read ``lsoa,neighbour`` pairs, check them, build a sparse graph.

A neighbours file is a CSV with the columns ``lsoa`` and ``neighbour``, one row per pair of
neighbouring LSOAs (``data/lsoa11_neighbours.csv.gz`` is England's, from ONS boundaries).
Each pair may be listed once or in both directions; :func:`read_neighbours` makes the list
symmetric and says whether it had to. Rows that cannot be right are refused with the CSV line
numbers: an empty code, an LSOA paired with itself, the same row twice.

:func:`build_adjacency` orders the graph by the LSOA codes a model uses (its ``lsoa`` coord),
refuses (or, asked to, drops) pairs naming LSOAs outside that list, and reports the connected
components and the islands (LSOAs without neighbours), which the BYM2 term treats as
Freni-Sterrantino, Ventrucci and Rue (2018) do: one ICAR sum-to-zero constraint and scaling
factor per component of two or more LSOAs, the iid part only for an island.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from socialgradient import resources

__all__ = [
    "SHIPPED",
    "Adjacency",
    "NeighbourError",
    "NeighbourPairs",
    "adjacency_from_file",
    "build_adjacency",
    "read_neighbours",
    "resolve",
]

COLUMNS = ("lsoa", "neighbour")
_SHOW = 5  # bad rows named in an error message


class NeighbourError(ValueError):
    """A neighbours file or list that cannot be used, with the offending rows named."""


def _lines(rows: np.ndarray) -> str:
    """Name CSV lines (the header is line 1) of the first few bad rows."""
    shown = ", ".join(str(int(r) + 2) for r in rows[:_SHOW])
    more = f" and {len(rows) - _SHOW} more" if len(rows) > _SHOW else ""
    return f"line{'s' if len(rows) > 1 else ''} {shown}{more}"


@dataclass(frozen=True)
class NeighbourPairs:
    """Undirected neighbour pairs, each once as ``(a, b)`` with ``a < b``.

    Attributes
    ----------
    pairs : numpy.ndarray
        String array of shape ``(n_pairs, 2)``, sorted, each undirected pair once.
    rows : int
        Data rows in the source.
    symmetric : bool
        Whether the source listed every pair in both directions.
    one_way : int
        Pairs the source listed in one direction only: the graph is undirected, so each
        counts both ways (the list is made symmetric).
    source : str
        Where the pairs came from (a path or ``"<pairs>"``).
    """

    pairs: np.ndarray
    rows: int
    symmetric: bool
    one_way: int
    source: str = "<pairs>"

    def describe(self) -> str:
        """Say in one sentence what was read and what was made symmetric."""
        how = (
            "listed in both directions"
            if self.one_way == 0
            else f"{self.one_way} listed one way only, made symmetric"
        )
        return f"{self.source}: {self.rows} rows, {len(self.pairs)} neighbour pairs ({how})"


def pairs_from_frame(frame: pd.DataFrame, source: str = "<pairs>") -> NeighbourPairs:
    """Check a table of ``lsoa``/``neighbour`` rows and return its undirected pairs.

    Parameters
    ----------
    frame : pandas.DataFrame
        Columns ``lsoa`` and ``neighbour`` (strings); other columns are ignored.
    source : str
        Named in messages.

    Returns
    -------
    NeighbourPairs
        The symmetric pair list.

    Raises
    ------
    NeighbourError
        A column is missing, a code is empty, an LSOA is paired with itself or a row repeats.
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise NeighbourError(
            f"{source}: no column {', '.join(missing)} (a neighbours file has the columns "
            f"lsoa,neighbour; found {', '.join(map(str, frame.columns)) or 'none'})"
        )
    a = frame["lsoa"].astype("string").str.strip().to_numpy(dtype=object)
    b = frame["neighbour"].astype("string").str.strip().to_numpy(dtype=object)
    empty = np.flatnonzero([not isinstance(x, str) or not x for x in np.r_[a, b]]) % len(a)
    if len(empty):
        raise NeighbourError(f"{source}: empty LSOA code at {_lines(np.unique(empty))}")
    a, b = a.astype(str), b.astype(str)
    self_pairs = np.flatnonzero(a == b)
    if len(self_pairs):
        raise NeighbourError(
            f"{source}: an LSOA is its own neighbour at {_lines(self_pairs)} "
            f"(first: {a[self_pairs[0]]})"
        )
    keys = pd.Series(a) + "\0" + pd.Series(b)
    dup = np.flatnonzero(keys.duplicated().to_numpy())
    if len(dup):
        raise NeighbourError(
            f"{source}: the same pair appears twice at {_lines(dup)} "
            f"(first: {a[dup[0]]},{b[dup[0]]})"
        )
    swap = a > b
    lo, hi = np.where(swap, b, a), np.where(swap, a, b)
    undirected = pd.DataFrame({"a": lo, "b": hi})
    counts = undirected.value_counts(sort=False)
    one_way = int((counts == 1).sum())
    pairs = np.asarray(sorted(counts.index), dtype=str).reshape(-1, 2)
    return NeighbourPairs(
        pairs=pairs,
        rows=len(a),
        symmetric=one_way == 0,
        one_way=one_way,
        source=source,
    )


def read_neighbours(path: str | Path) -> NeighbourPairs:
    """Read a neighbours CSV (``lsoa,neighbour``; ``.gz`` read as gzip) and check it.

    Parameters
    ----------
    path : str or pathlib.Path
        The CSV file.

    Returns
    -------
    NeighbourPairs
        Each undirected pair once; ``describe()`` says whether it was made symmetric.

    Raises
    ------
    NeighbourError
        The file is missing or unreadable, or has bad rows (named by line).
    """
    path = Path(path)
    if not path.is_file():
        raise NeighbourError(f"neighbours file {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise NeighbourError(f"neighbours file {path} cannot be read as CSV: {exc}") from exc
    return pairs_from_frame(frame, source=str(path))


@dataclass(frozen=True)
class Adjacency:
    """A symmetric, unweighted neighbour graph over an ordered list of LSOAs.

    Attributes
    ----------
    codes : tuple of str
        The LSOAs, in the model's order (node ``i`` is ``codes[i]``).
    edges : numpy.ndarray
        Integer array ``(n_edges, 2)``, each undirected edge once with ``i < j``.
    component : numpy.ndarray
        Component label of each node, ``0 .. n_components - 1``, largest component first.
    dropped : int
        Pairs dropped because they named an LSOA outside ``codes`` (``unknown="drop"``).
    """

    codes: tuple[str, ...]
    edges: np.ndarray
    component: np.ndarray
    dropped: int = 0
    _degree: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Cache each node's number of neighbours."""
        degree = np.bincount(self.edges.ravel(), minlength=len(self.codes))
        object.__setattr__(self, "_degree", degree)

    @property
    def n(self) -> int:
        """Number of LSOAs (nodes)."""
        return len(self.codes)

    @property
    def degree(self) -> np.ndarray:
        """Number of neighbours of each LSOA."""
        return self._degree

    @property
    def sizes(self) -> np.ndarray:
        """Number of LSOAs in each component (largest first)."""
        return np.bincount(self.component)

    @property
    def islands(self) -> np.ndarray:
        """Indices of the LSOAs without a neighbour."""
        return np.flatnonzero(self._degree == 0)

    def matrix(self) -> sp.csr_matrix:
        """Return the symmetric 0/1 adjacency matrix (sparse CSR)."""
        i, j = self.edges[:, 0], self.edges[:, 1]
        data = np.ones(2 * len(i))
        return sp.csr_matrix((data, (np.r_[i, j], np.r_[j, i])), shape=(self.n, self.n))

    def summary(self) -> dict[str, object]:
        """Describe the graph: sizes, components, islands (with their codes)."""
        sizes = self.sizes
        return {
            "lsoas": self.n,
            "pairs": len(self.edges),
            "mean_neighbours": float(self._degree.mean()) if self.n else 0.0,
            "components": len(sizes),
            "component_sizes": [int(s) for s in sizes],
            "islands": [self.codes[i] for i in self.islands],
            "dropped_pairs": self.dropped,
        }


def build_adjacency(
    pairs: NeighbourPairs, codes: Sequence[str] | np.ndarray, unknown: str = "error"
) -> Adjacency:
    """Build the graph of ``pairs`` over ``codes`` (the model's LSOA order).

    Parameters
    ----------
    pairs : NeighbourPairs
        From :func:`read_neighbours` or :func:`pairs_from_frame`.
    codes : sequence of str
        The LSOAs of the model, in order; each once.
    unknown : {"error", "drop"}
        What to do with a pair naming an LSOA not in ``codes``: refuse (the default: a fit of
        England with England's file must match exactly) or drop it (a fit of a subset of
        LSOAs; the count is kept in ``Adjacency.dropped``).

    Returns
    -------
    Adjacency
        The graph; LSOAs of ``codes`` that no pair names are islands.

    Raises
    ------
    NeighbourError
        ``codes`` repeats a code, or a pair names an unknown LSOA and ``unknown="error"``.
    """
    if unknown not in ("error", "drop"):
        raise NeighbourError(f"unknown must be 'error' or 'drop', not {unknown!r}")
    order = pd.Index([str(c) for c in codes])
    if order.has_duplicates:
        repeated = order[order.duplicated()].unique().tolist()
        raise NeighbourError(f"LSOA codes repeat: {', '.join(repeated[:_SHOW])}")
    i = order.get_indexer(pairs.pairs[:, 0]) if len(pairs.pairs) else np.zeros(0, int)
    j = order.get_indexer(pairs.pairs[:, 1]) if len(pairs.pairs) else np.zeros(0, int)
    bad = np.flatnonzero((i < 0) | (j < 0))
    if len(bad) and unknown == "error":
        names = np.unique(np.r_[pairs.pairs[bad, 0][i[bad] < 0], pairs.pairs[bad, 1][j[bad] < 0]])
        raise NeighbourError(
            f"{pairs.source}: {len(bad)} pairs name {len(names)} LSOAs that are not in the "
            f"data (first: {', '.join(names[:_SHOW])}); pass unknown='drop' to fit a subset"
        )
    keep = (i >= 0) & (j >= 0)
    edges = np.sort(np.stack([i[keep], j[keep]], axis=1), axis=1).astype(np.int64)
    n = len(order)
    graph = sp.csr_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    # relabel: largest component first (ties by first node), so labels are stable
    first = np.full(len(sizes), n)
    np.minimum.at(first, labels, np.arange(n))
    rank = np.lexsort((first, -sizes))
    relabel = np.empty_like(rank)
    relabel[rank] = np.arange(len(rank))
    return Adjacency(codes=tuple(order), edges=edges, component=relabel[labels], dropped=len(bad))


def adjacency_from_file(
    path: str | Path, codes: Sequence[str], unknown: str = "error"
) -> Adjacency:
    """Read a neighbours CSV and build its graph over ``codes`` (see :func:`build_adjacency`).

    Parameters
    ----------
    path : str or pathlib.Path
        The ``lsoa,neighbour`` CSV.
    codes : sequence of str
        The model's LSOAs, in order.
    unknown : {"error", "drop"}
        Pairs naming LSOAs outside ``codes``: refuse or drop.

    Returns
    -------
    Adjacency
        The graph.
    """
    return build_adjacency(read_neighbours(path), codes, unknown=unknown)


#: Graphs shipped with the package (``data/``), by the name a spec's ``neighbours`` may give:
#: England's LSOA 2011 queen contiguity, and the same graph on the synthetic England's codes.
SHIPPED = {"lsoa11": "lsoa11_neighbours.csv.gz", "synthetic": "synthetic_neighbours.csv.gz"}


def resolve(name: str, codes: Sequence[str] | np.ndarray = ()) -> Path:
    """Return the file of a spec's ``neighbours``: a path, a shipped graph's name, or empty.

    Parameters
    ----------
    name : str
        A CSV path, ``"lsoa11"`` / ``"synthetic"`` (:data:`SHIPPED`), or ``""``: the shipped
        graph of the table's codes (``synthetic`` when they are the synthetic England's,
        ``E019...``, else ``lsoa11``).
    codes : sequence of str
        The table's LSOA codes (for ``""``).

    Returns
    -------
    pathlib.Path
        The file (not checked here; :func:`read_neighbours` says if it is missing).
    """
    if not name:
        synthetic = len(codes) > 0 and all(str(c).startswith("E019") for c in codes)
        name = "synthetic" if synthetic else "lsoa11"
    if name in SHIPPED:
        return resources.path("data", SHIPPED[name])
    return Path(name)
