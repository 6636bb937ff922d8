"""Derive the queen-contiguity neighbours of England's 32,844 LSOAs (2011) from ONS boundaries.

Source (recorded in ``data/lsoa11_neighbours.md``): the per-district GeoJSON files
``boundaries/lsoa/*.geojson`` of the public repository ``drkane/geo-lookups`` at commit
``d23350ed68f1022c89fc773f31b81423acc769ad`` (2023-04-25, "update boundaries crs"), the last
commit whose LSOA files are the 2011 LSOAs (property ``LSOA11CD``; later commits hold the
2021 LSOAs). They are ONS Open Geography Portal LSOA (December 2011) boundaries, generalised
and clipped to the coastline, in CRS84 lon/lat: Open Government Licence v3.0, "Source: Office
for National Statistics licensed under the Open Government Licence v3.0. Contains OS data
(c) Crown copyright and database right".

Method: queen contiguity, i.e. two LSOAs are neighbours when their boundaries share at least
one vertex (coordinates rounded to 1e-7 degrees, about 1 cm). The ONS boundaries are
topologically consistent (a shared edge has the same vertices in both polygons), which is how
libpysal's ``Queen`` builds contiguity too. LSOAs parted by water wider than the coastline
clip (estuaries, the Solent, the Isles of Scilly) are *not* joined: they form separate
components or islands, which ``socialgradient.data.neighbours`` reports and the BYM2 term
handles (Freni-Sterrantino et al. 2018).

Usage::

    git clone https://github.com/drkane/geo-lookups && git -C geo-lookups checkout d23350ed
    python bench/lsoa_neighbours.py geo-lookups/boundaries/lsoa data/lsoa11_neighbours.csv.gz

Files for districts, counties and combined authorities overlap; each LSOA is read once.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np

SCALE = 1e7  # vertices rounded to 1e-7 degrees


def read_vertices(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Return the English LSOA11 codes and every boundary vertex (x, y, LSOA index)."""
    codes: list[str] = []
    seen: set[str] = set()
    xs, ys, owners = [], [], []
    for path in sorted(folder.glob("*.geojson")):
        with open(path, encoding="utf-8", newline="") as handle:
            collection = json.load(handle)
        for feature in collection["features"]:
            code = feature["properties"].get("LSOA11CD")
            if not code or not code.startswith("E01") or code in seen:
                continue
            seen.add(code)
            geometry = feature["geometry"]
            polygons = geometry["coordinates"]
            if geometry["type"] == "Polygon":
                polygons = [polygons]
            ring = np.concatenate([np.asarray(r, dtype=float) for p in polygons for r in p])
            xs.append(np.round(ring[:, 0] * SCALE).astype(np.int64))
            ys.append(np.round(ring[:, 1] * SCALE).astype(np.int64))
            owners.append(np.full(len(ring), len(codes), dtype=np.int64))
            codes.append(code)
    return codes, np.concatenate(xs), np.concatenate(ys), np.concatenate(owners)


def queen_pairs(x: np.ndarray, y: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Return the unique (i, j), i < j, of owners that share a vertex."""
    table = np.unique(np.stack([x, y, owner], axis=1), axis=0)  # sorted by vertex, then owner
    pairs = []
    k = 1
    while True:
        idx = np.flatnonzero(
            np.all(table[k:, :2] == table[:-k, :2], axis=1)
        )  # rows i and i + k at the same vertex
        if not len(idx):
            break
        pairs.append(np.stack([table[idx, 2], table[idx + k, 2]], axis=1))
        k += 1
    both = np.concatenate(pairs)
    both = np.sort(both, axis=1)
    return np.unique(both, axis=0)


def main(folder: str, out: str) -> None:
    """Write ``lsoa,neighbour`` rows (each pair once, i < j by code) to ``out`` (gzip)."""
    codes, x, y, owner = read_vertices(Path(folder))
    pairs = queen_pairs(x, y, owner)
    names = np.asarray(codes)
    rows = np.sort(np.stack([names[pairs[:, 0]], names[pairs[:, 1]]], axis=1), axis=1)
    rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
    text = "lsoa,neighbour\n" + "".join(f"{a},{b}\n" for a, b in rows)
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(text.encode("utf-8"))  # mtime 0: the same input gives the same bytes
    print(f"{len(codes)} LSOAs, {len(rows)} neighbour pairs -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
