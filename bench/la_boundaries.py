"""Derive ``data/la_boundaries.geojson.gz``: England's authorities of ONS's BUC boundaries.

Reads ONS's *Counties and Unitary Authorities (December 2020) UK BUC* GeoJSON (the shared
data's ``boundaries/`` folder, Open Government Licence v3.0), keeps the 151 English
features (codes starting ``E``) with their code and name, rounds coordinates to 4 decimals
(about 10 m, far below the 500 m generalisation of BUC) and writes them gzipped with a fixed
timestamp, so the same input gives the same bytes. Provenance: ``data/la_boundaries.md``.

Run: ``.venv/bin/python bench/la_boundaries.py [PATH_TO_GEOJSON]``.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / ".." / "shared" / "data" / "boundaries"
NAME = "Counties_and_Unitary_Authorities_Dec2020_UK_BUC.geojson"
OUT = ROOT / "data" / "la_boundaries.geojson.gz"


def _round(coords):
    if isinstance(coords[0], (int, float)):
        return [round(coords[0], 4), round(coords[1], 4)]
    return [_round(c) for c in coords]


def main(path: Path) -> None:
    """Write the English features of ``path`` to :data:`OUT`."""
    source = json.loads(path.read_text(encoding="utf-8"))
    features = [
        {
            "type": "Feature",
            "properties": {k: f["properties"][k] for k in ("CTYUA20CD", "CTYUA20NM")},
            "geometry": {
                "type": f["geometry"]["type"],
                "coordinates": _round(f["geometry"]["coordinates"]),
            },
        }
        for f in source["features"]
        if f["properties"]["CTYUA20CD"].startswith("E")
    ]
    out = {
        "type": "FeatureCollection",
        "name": "England counties and unitary authorities, December 2020, BUC",
        "features": features,
    }
    raw = json.dumps(out, separators=(",", ":")).encode("utf-8")
    with gzip.GzipFile(OUT, "wb", mtime=0) as handle:
        handle.write(raw)
    print(f"wrote {OUT}: {len(features)} authorities")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE / NAME)
