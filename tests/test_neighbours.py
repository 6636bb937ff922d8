"""Neighbour files and graphs (issue 29 item 2).

Bad rows refused by line, pairs made symmetric, components and islands found, England's real
graph as documented.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from socialgradient.data.neighbours import (
    NeighbourError,
    adjacency_from_file,
    build_adjacency,
    pairs_from_frame,
    read_neighbours,
)

ROOT = Path(__file__).resolve().parents[1]
ENGLAND = ROOT / "data" / "lsoa11_neighbours.csv.gz"
#: the public IoD join beside the checkout (``../shared/data``, never committed), if present
MERGED = (
    ROOT.parent
    / "shared"
    / "data"
    / "lsoa2011_merged"
    / "lsoa2011_iod2019_income_children_utla_ruc.csv.gz"
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "n.csv"
    path.write_text(text, encoding="utf-8", newline="")
    return path


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("lsoa,other\nA,B\n", "no column neighbour"),
        ("lsoa,neighbour\nA,B\nC,C\n", "its own neighbour at line 3 (first: C)"),
        ("lsoa,neighbour\nA,B\nB,C\nA,B\n", "the same pair appears twice at line 4"),
        ("lsoa,neighbour\nA,B\n,C\n", "empty LSOA code at line 3"),
    ],
)
def test_bad_files_are_refused_naming_the_rows(tmp_path, text, needle):
    """A missing column, a self-pair, a repeated row, an empty code: refused, lines named."""
    with pytest.raises(NeighbourError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        read_neighbours(_write(tmp_path, text))


def test_missing_file_is_named(tmp_path):
    """A path that is not a file is named."""
    with pytest.raises(NeighbourError, match="does not exist"):
        read_neighbours(tmp_path / "nope.csv")


def test_one_way_lists_are_made_symmetric_and_say_so(tmp_path):
    """One-way and two-way listings give the same undirected pairs; the one-way is reported."""
    one = read_neighbours(_write(tmp_path, "lsoa,neighbour\nB,A\nB,C\n"))
    both = pairs_from_frame(
        pd.DataFrame({"lsoa": ["A", "B", "B", "C"], "neighbour": ["B", "A", "C", "B"]})
    )
    assert one.pairs.tolist() == both.pairs.tolist() == [["A", "B"], ["B", "C"]]
    assert (one.one_way, one.symmetric) == (2, False)
    assert (both.one_way, both.symmetric) == (0, True)
    assert "2 listed one way only, made symmetric" in one.describe()
    assert "both directions" in both.describe()
    m = build_adjacency(one, ["A", "B", "C"]).matrix().toarray()
    assert (m == m.T).all()
    assert m.sum() == 4


def test_unknown_codes_refused_or_dropped():
    """Pairs naming LSOAs outside the model are refused by default, dropped on request."""
    pairs = pairs_from_frame(pd.DataFrame({"lsoa": ["A", "B"], "neighbour": ["B", "Z"]}))
    with pytest.raises(NeighbourError, match="1 pairs name 1 LSOAs that are not in the data"):
        build_adjacency(pairs, ["A", "B"])
    adj = build_adjacency(pairs, ["A", "B"], unknown="drop")
    assert adj.dropped == 1
    assert adj.edges.tolist() == [[0, 1]]
    with pytest.raises(NeighbourError, match="codes repeat: A"):
        build_adjacency(pairs, ["A", "B", "A"])


def test_components_and_islands_largest_first():
    """Components are labelled largest first; an LSOA that no pair names is an island."""
    # order: an island, a pair, a triangle, a path of four
    frame = pd.DataFrame(
        [
            ("p1", "p2"),
            ("t1", "t2"),
            ("t2", "t3"),
            ("t1", "t3"),
            ("q1", "q2"),
            ("q2", "q3"),
            ("q3", "q4"),
        ],
        columns=["lsoa", "neighbour"],
    )
    codes = ["i1", "p1", "p2", "t1", "t2", "t3", "q1", "q2", "q3", "q4"]
    adj = build_adjacency(pairs_from_frame(frame), codes)
    assert adj.sizes.tolist() == [4, 3, 2, 1]
    assert adj.component.tolist() == [3, 2, 2, 1, 1, 1, 0, 0, 0, 0]
    assert adj.islands.tolist() == [0]
    assert adj.degree.tolist() == [0, 1, 1, 2, 2, 2, 1, 2, 2, 1]
    s = adj.summary()
    assert s["components"] == 4
    assert s["islands"] == ["i1"]
    assert s["pairs"] == 7


def test_england_real_graph(tmp_path):
    """The shipped real graph: 32,844 LSOAs, 7 components, the Isles of Scilly an island."""
    pairs = read_neighbours(ENGLAND)
    assert len(pairs.pairs) == 96217
    assert pairs.one_way == 96217
    codes = np.unique(pairs.pairs)
    assert len(codes) == 32843  # every LSOA but the island is in some pair
    adj = build_adjacency(pairs, [*codes, "E01019077"])
    s = adj.summary()
    assert s["component_sizes"] == [32708, 89, 25, 11, 7, 3, 1]
    assert s["islands"] == ["E01019077"]
    assert 5.8 < float(s["mean_neighbours"]) < 5.9  # type: ignore[arg-type]
    if MERGED.is_file():  # the public IoD join, where the shared data are present
        merged = pd.read_csv(MERGED, usecols=["lsoa11cd"])
        assert set(merged["lsoa11cd"]) == {*codes, "E01019077"}
    # a gzip file is read as such by path as well
    copy = tmp_path / "copy.csv.gz"
    with gzip.open(ENGLAND, "rb") as src, gzip.open(copy, "wb") as dst:
        dst.write(src.read())
    assert adjacency_from_file(copy, adj.codes).edges.shape == adj.edges.shape


def test_synthetic_england_placed_on_real_adjacency():
    """The shipped synthetic graph: England's shape over the default data's codes."""
    from socialgradient.data.neighbours import adjacency_from_file
    from socialgradient.results.spatial import morans_i

    table = pd.read_parquet(ROOT / "data" / "neighbourhoods.parquet", columns=["lsoa", "income"])
    adj = adjacency_from_file(ROOT / "data" / "synthetic_neighbours.csv.gz", table["lsoa"])
    assert adj.summary()["component_sizes"] == [32708, 89, 25, 11, 7, 3, 1]
    assert float(morans_i(table["income"].to_numpy(), adj)) > 0.4  # deprivation clusters


def test_place_on_real_by_income_rank_and_relabel():
    """Placement matches LA and income rank; bad LA counts are named; pairs carry over."""
    from socialgradient.data.synthetic.spatial import place_on_real, relabel_pairs

    syn = pd.DataFrame(
        {"lsoa": ["s1", "s2", "s3"], "la": ["A", "A", "B"], "income": [0.3, 0.1, 0.5]}
    )
    real = pd.DataFrame(
        {"lsoa": ["r1", "r2", "r3"], "la": ["A", "A", "B"], "income": [0.2, 0.4, 0.1]}
    )
    placed = place_on_real(syn, real)
    assert placed.to_dict() == {"s2": "r1", "s1": "r2", "s3": "r3"}
    pairs = pairs_from_frame(pd.DataFrame({"lsoa": ["r1", "r2"], "neighbour": ["r3", "r3"]}))
    assert relabel_pairs(pairs, placed).pairs.tolist() == [["s1", "s3"], ["s2", "s3"]]
    with pytest.raises(
        NeighbourError, match=r"1 LAs have different numbers of LSOAs: B \(1 synthetic, 2 real\)"
    ):
        place_on_real(syn, pd.concat([real, real.tail(1).assign(lsoa="r4")]))
