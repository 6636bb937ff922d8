"""The default specs (``models/``) and default data (``data/``), wherever the package lives.

The repository's top-level ``models/`` and ``data/`` are the only copies in git. A wheel
carries them inside the package, as ``socialgradient/resources/models/`` and
``socialgradient/resources/data/`` (``[tool.setuptools.package-dir]`` in pyproject.toml maps
the top-level folders there at build time). A source checkout or an editable install has no
such copy, so there the checkout's own folders are used. Either way the layout is the same,
so a spec's relative ``la_data = "../data/las.parquet"`` resolves in both.

>>> from socialgradient import resources
>>> resources.path("models", "national_referrals.toml")   # doctest: +SKIP
"""

from __future__ import annotations

from importlib import resources as _resources
from pathlib import Path

KINDS = ("models", "data")
# What a wheel carries (pyproject.toml's package-data says the same; test_packaging checks).
DATA_FILES = (
    "neighbourhoods.parquet",
    "las.parquet",
    "truth.json",
    "la_boundaries.geojson.gz",
    "lsoa11_neighbours.csv.gz",  # the spatial term's shipped graphs (data.neighbours)
    "synthetic_neighbours.csv.gz",
)


def root(kind: str) -> Path:
    """Return the folder of ``kind`` ("models" or "data").

    The packaged copy in an installed wheel, else the source checkout's top-level folder.
    The path may not exist (a bare import of the package files, e.g. copied without the
    checkout); callers say what is missing.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r}; expected one of {KINDS}")
    packaged = Path(str(_resources.files(__name__) / kind))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / kind  # src/socialgradient/resources -> root


def path(kind: str, *parts: str) -> Path:
    """Return a file under :func:`root`, e.g. ``path("data", "neighbourhoods.parquet")``."""
    return root(kind).joinpath(*parts)
