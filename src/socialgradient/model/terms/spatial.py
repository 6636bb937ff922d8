r"""The BYM2 spatial LSOA effect (``spatial = "bym2"``), or a neighbour graph for the check only.

``spatial = "bym2"`` adds :math:`b_{k(i)}` to row :math:`i`'s linear predictor, :math:`k(i)`
its LSOA (a stratified table's cells share their LSOA's effect), with :math:`b` the BYM2
field of :func:`socialgradient.model.spatial.add_bym2` on the neighbour graph (Riebler et al.
2016), centred exactly within each LA (its LA mean is 0 in every draw: the LA intercepts
carry the LAs' levels): ``spatial_sd ~ HalfNormal(1)`` (log-rate units: the marginal SD of
the BYM2 field before centring), ``spatial_rho ~ Beta(1, 1)`` (its spatial share). The
family must be Poisson or binomial: with the negative binomial the term is refused
(:data:`NEGBIN_REFUSED`), its iid part and the NB overdispersion being the same thing.
``neighbours`` names the graph: a CSV of ``lsoa,neighbour`` pairs, or a shipped graph
(:data:`socialgradient.data.neighbours.SHIPPED`; empty: the shipped graph matching the
table's codes). ``neighbours`` without ``spatial``
keeps the graph in the fit for the residual Moran's I check only, adding nothing to the model.

The graph is checked against the table's LSOAs (:func:`graph_for_table`): pairs naming LSOAs
outside the table are dropped (a fit of a region with England's file), a table LSOA that no
pair names is an island (iid part only), with a warning; over 5% of them missing is refused
as the wrong graph.

The posterior keeps ``spatial_sd``, ``spatial_rho`` and the effect ``spatial_effect`` (dims
``spatial_lsoa``, float32 to halve its size: 32,844 LSOAs x 1,000 draws is 131 MB); the
sampler's ``spatial_z`` (the whitened ICAR field, :func:`socialgradient.model.spatial.add_bym2`'s
default form) and ``spatial_theta`` are dropped (``derived``), as is ``spatial_phi`` of the
``phi_form="icar"`` form.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from socialgradient.data import neighbours as nb
from socialgradient.model import families
from socialgradient.model.spatial import SpatialError, add_bym2
from socialgradient.model.terms.base import Context, NewRows, Term

log = logging.getLogger(__name__)

#: The LSOA dim of the spatial effect (the row dim ``lsoa`` may be cells' coordinate).
DIM = "spatial_lsoa"
#: Why ``spatial = "bym2"`` with the negative binomial is refused (docs/spatial.md).
NEGBIN_REFUSED = (
    'spatial = "bym2" needs family = "poisson" (or "binomial"), not "negbin": the negative '
    "binomial's overdispersion and the BYM2 term's unstructured (iid) part are the same "
    "LSOA-level extra-Poisson variation when each LSOA has one row, their draws trade off "
    "and the fit does not converge (issue 29); use --family poisson, whose BYM2 iid part "
    "then carries the overdispersion (INLA's usual BYM2 model)"
)
#: Share of the table's LSOAs that may be missing from the graph (islands) before refusing.
MAX_MISSING = 0.05


def graph_for_table(pairs: nb.NeighbourPairs, codes: np.ndarray) -> nb.Adjacency:
    """Build the graph over the table's LSOAs, dropping pairs outside them.

    Parameters
    ----------
    pairs : NeighbourPairs
        The neighbour pairs read from the spec's ``neighbours``.
    codes : numpy.ndarray
        The table's distinct LSOA codes, in order.

    Returns
    -------
    Adjacency
        The graph; table LSOAs no pair names are islands (logged as a warning).

    Raises
    ------
    NeighbourError
        The graph names none of the table's LSOAs, or misses over 5% of them.
    """
    adjacency = nb.build_adjacency(pairs, codes, unknown="drop")
    named = set(pairs.pairs.ravel())
    missing = [c for c in adjacency.codes if c not in named]
    if len(missing) == len(codes):
        raise nb.NeighbourError(
            f"{pairs.source} names none of the table's {len(codes)} LSOAs (first in the "
            f"table: {', '.join(map(str, codes[:3]))}; in the file: "
            f"{', '.join(pairs.pairs[:3, 0]) if len(pairs.pairs) else 'no pairs'})"
        )
    if len(missing) > MAX_MISSING * len(codes):
        raise nb.NeighbourError(
            f"{pairs.source} misses {len(missing)} of the table's {len(codes)} LSOAs "
            f"(over {MAX_MISSING:.0%}: another vintage of LSOA codes? first: "
            f"{', '.join(missing[:5])})"
        )
    if missing:
        log.warning(
            "%s: %d of the table's LSOAs have no neighbour pair and are islands (iid part "
            "only): %s",
            pairs.source,
            len(missing),
            ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""),
        )
    if adjacency.dropped:
        log.info("%s: %d pairs outside the table dropped", pairs.source, adjacency.dropped)
    return adjacency


@dataclass(frozen=True)
class SpatialEffect(Term):
    """The graph over the table's LSOAs: ``codes``, ``edges``, each row's ``index``.

    ``bym2``: whether the model has the BYM2 effect (else the graph is for the check only);
    ``source``: the graph's file name.
    """

    codes: np.ndarray
    edges: np.ndarray
    index: np.ndarray
    bym2: bool
    source: str

    name = "spatial"
    spec_keys = ("spatial", "neighbours")
    reported = ("spatial_sd", "spatial_rho", "spatial_effect")
    derived = ("spatial_phi", "spatial_theta", "spatial_z")

    def __post_init__(self) -> None:
        """Set ``on_rows``: whether the model has the BYM2 effect (a check-only graph: no)."""
        object.__setattr__(self, "on_rows", self.bym2)

    @classmethod
    def encode(
        cls, table: pd.DataFrame, spec: Any, core: Any, la_table: pd.DataFrame | None
    ) -> SpatialEffect | None:
        """Return the graph of ``spec.neighbours`` over the table's LSOAs."""
        kind, where = getattr(spec, "spatial", ""), getattr(spec, "neighbours", "")
        if not kind and not where:
            return None
        family = families.get(getattr(spec, "family", "poisson"))
        if kind == "bym2" and family.parameters:  # its own extra-Poisson variation (NB's phi)
            raise SpatialError(NEGBIN_REFUSED)
        lsoa = table["lsoa"].astype(str).to_numpy()
        codes, index = np.unique(lsoa, return_inverse=True)
        path = nb.resolve(where, codes)
        adjacency = graph_for_table(nb.read_neighbours(path), codes)
        return cls(
            codes=np.asarray(adjacency.codes, dtype=str),
            edges=adjacency.edges,
            index=index.astype(np.int64),
            bym2=kind == "bym2",
            source=path.name,
        )

    @classmethod
    def from_tree(cls, tree: xr.DataTree, const: xr.Dataset) -> SpatialEffect | None:
        """Return the graph a fit keeps (``spatial_edge``, coord ``spatial_lsoa``)."""
        if "spatial_edge" not in const:
            return None
        codes = const[DIM].values.astype(str)
        index = pd.Index(codes).get_indexer(const["lsoa"].values.astype(str))
        return cls(
            codes=codes,
            edges=const["spatial_edge"].values.astype(np.int64),
            index=index.astype(np.int64),
            bym2=tree.attrs.get("spatial", "") == "bym2",
            source=tree.attrs.get("neighbours", ""),
        )

    def adjacency(self) -> nb.Adjacency:
        """Return the graph as an :class:`~socialgradient.data.neighbours.Adjacency`."""
        pairs = self.codes[self.edges] if len(self.edges) else np.zeros((0, 2), str)
        found = nb.NeighbourPairs(pairs=pairs, rows=len(pairs), symmetric=True, one_way=0)
        return nb.build_adjacency(found, self.codes)

    def coords(self) -> dict[str, list]:
        """Return the ``spatial_lsoa`` coordinate."""
        return {DIM: list(self.codes)}

    def constant_data(self, row: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``spatial_edge`` (dims spatial_pair, pair_end) and the LSOA coordinate."""
        return (
            {"spatial_edge": (("spatial_pair", "pair_end"), self.edges)},
            {DIM: self.codes},
        )

    def attrs(self) -> dict[str, str]:
        """Return ``spatial`` (``bym2`` or empty) and ``neighbours`` (the graph's file)."""
        return {"spatial": "bym2" if self.bym2 else "", "neighbours": self.source}

    def hash_parts(self) -> list[np.ndarray]:
        """Return the codes, the edges and whether the model has the effect."""
        return [self.codes, self.edges, np.asarray(self.bym2)]

    def rows(self, ctx: Context) -> None:
        """Add the BYM2 effect of each row's LSOA (nothing for a check-only graph)."""
        if not self.bym2:
            return
        data, order = ctx.data, ctx.order
        effect = add_bym2(self.adjacency(), dim=DIM, groups=self.la_of_codes(data.la_index))
        pm.Deterministic("spatial_effect", pt.cast(effect, "float32"), dims=DIM)
        ctx.eta = ctx.eta + effect[self.index[order]]
        # pm.Data, not a constant: refits of tables on the same graph share a compilation
        y_per_lsoa = pm.Data(
            "rows_spatial_y", np.bincount(self.index, weights=data.y, minlength=len(self.codes))
        )
        ctx.linear = ctx.linear + pt.dot(effect, y_per_lsoa)

    def la_of_codes(self, la_index: np.ndarray) -> np.ndarray:
        """Return each LSOA's LA (an index into the fit's LAs), from the rows' ``la_index``.

        Raises
        ------
        SpatialError
            An LSOA whose rows lie in two LAs, or one without rows.
        """
        la = np.full(len(self.codes), -1, dtype=np.int64)
        la[self.index] = la_index
        if (la[self.index] != la_index).any() or (la < 0).any():
            raise SpatialError("an LSOA of the spatial term lies in two LAs, or has no rows")
        return la

    def row_eta(self, chain: xr.Dataset, data: Any, eta: np.ndarray) -> np.ndarray:
        """Add each row's LSOA effect from the draws to ``eta``."""
        if not self.bym2:
            return eta
        effect = chain["spatial_effect"].transpose("draw", DIM).values
        eta += effect[:, self.index]
        return eta

    def predict_eta(
        self, posterior: xr.Dataset, new: NewRows, eta: np.ndarray, slope: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add a BYM2 fit's effect of each new row's ``lsoa`` (0 for an LSOA not in the fit).

        A table without an ``lsoa`` column gets none: rates at a zero LSOA effect.
        """
        if not self.bym2 or "lsoa" not in new.table.columns:
            return eta, slope
        where = pd.Index(self.codes).get_indexer(new.table["lsoa"].astype(str).to_numpy())
        effect = posterior["spatial_effect"].transpose("chain", "draw", ...).values
        return eta + np.where(where >= 0, effect[..., np.maximum(where, 0)], 0.0), slope
