"""Give the synthetic England real adjacency: ``data/synthetic_neighbours.csv.gz``.

Each synthetic LSOA (``data/neighbourhoods.parquet``, codes E019xxxxx) is placed on the real
LSOA 2011 of the same LA with the same income rank within that LA
(:func:`socialgradient.data.synthetic.spatial.place_on_real`; real income: the IoD2019
income domain rate of ``shared/data/lsoa2011_merged``, the Isles of Scilly merged into
Cornwall as the synthetic England merges them), and the real queen-contiguity graph
``data/lsoa11_neighbours.csv.gz`` is carried over to the synthetic codes. The result is a
SYNTHETIC graph: real adjacency and realistically clustered deprivation, synthetic LSOAs.

Usage::

    python bench/synthetic_neighbours.py /path/to/lsoa2011_iod2019_income_children_utla_ruc.csv.gz
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pandas as pd

from socialgradient.data.neighbours import build_adjacency, read_neighbours
from socialgradient.data.synthetic.spatial import place_on_real, relabel_pairs

ROOT = Path(__file__).resolve().parents[1]
SCILLY, CORNWALL = "E06000053", "E06000052"


def main(merged: str) -> None:
    """Write the synthetic England's neighbours and print its graph's summary."""
    real = pd.read_csv(merged, usecols=["lsoa11cd", "utla19cd", "income_score_rate"])
    real = real.rename(
        columns={"lsoa11cd": "lsoa", "utla19cd": "la", "income_score_rate": "income"}
    )
    real["la"] = real["la"].replace({SCILLY: CORNWALL})
    synthetic = pd.read_parquet(
        ROOT / "data" / "neighbourhoods.parquet", columns=["lsoa", "la", "income"]
    )
    placement = place_on_real(synthetic, real)
    pairs = relabel_pairs(read_neighbours(ROOT / "data" / "lsoa11_neighbours.csv.gz"), placement)
    adjacency = build_adjacency(pairs, synthetic["lsoa"].tolist())
    out = ROOT / "data" / "synthetic_neighbours.csv.gz"
    text = "lsoa,neighbour\n" + "".join(f"{a},{b}\n" for a, b in pairs.pairs)
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(text.encode("utf-8"))
    print(adjacency.summary() | {"file": str(out)})


if __name__ == "__main__":
    main(sys.argv[1])
