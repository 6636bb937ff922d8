"""The committed child-level sample: ``data/records_sample/``.

Full-England child-level records are ~680,000 episodes a year, too big to commit; the seed
rebuilds them (``socialgradient simulate --out DIR --records``). The repository commits a
small, complete slice of the default simulation instead, so that a user can open real-shaped
records without running anything: three LAs -- the least, median and most income-deprived
(child-weighted mean income in the calibration table) of the LAs with 80-120 LSOAs -- for two
collection years, cut from ``simulate_records(seed=2021, years=(2019, 2020))`` of full
England. Every table keeps all rows of those LAs (children persist across years within an LA,
so the slice is closed under the history links); the truth is the full simulation's, plus
``sample_las``.

Regenerate (run from the repository root; ~10 s)::

    python -m socialgradient.data.synthetic.sample data/records_sample
"""

from __future__ import annotations

import dataclasses
import logging
import sys

import pandas as pd

from socialgradient.data.census import linkage
from socialgradient.data.records import Records
from socialgradient.data.synthetic import england
from socialgradient.data.synthetic.records import simulate_records

log = logging.getLogger(__name__)

YEARS = (2019, 2020)
LSOA_RANGE = (80, 120)


def sample_las(calibration: pd.DataFrame | None = None) -> list[str]:
    """Codes of the least, median and most deprived LA with 80-120 LSOAs."""
    cal = england.load_calibration() if calibration is None else calibration
    mid = cal[cal["n_lsoa"].between(*LSOA_RANGE)].sort_values(["income_mean", "la"])
    return [str(mid["la"].iloc[k]) for k in (0, len(mid) // 2, len(mid) - 1)]


def restrict(records: Records, las) -> Records:
    """Return the rows of ``records`` in the LAs ``las`` (all tables).

    The truth gains ``sample_las``.
    """
    las = list(las)
    children = records.children[records.children["la"].isin(las)].reset_index(drop=True)
    keys = children[["year", "child_id"]]
    episodes = records.episodes.merge(keys, on=["year", "child_id"])
    factors = records.factors.merge(keys, on=["year", "child_id"])
    population = records.population[records.population["la"].astype(str).isin(las)]
    population = population.assign(
        lsoa=population["lsoa"].astype(str), la=population["la"].astype(str)
    ).reset_index(drop=True)
    geography = records.geography[records.geography["la"].isin(las)].reset_index(drop=True)
    defs = dict(
        records.truth["definitions"],
        sample_las="LA codes of this sample: the rows of the full simulation in them",
    )
    truth = dict(records.truth, sample_las=las, definitions=defs)
    return dataclasses.replace(
        records,
        children=children,
        episodes=episodes,
        factors=factors,
        population=population,
        geography=geography,
        truth=truth,
    )


def build() -> Records:
    """Rebuild the committed sample from the default seed."""
    return restrict(simulate_records(seed=england.DEFAULT_SEED, years=YEARS), sample_las())


def main(argv: list[str] | None = None) -> int:
    """Rebuild the committed sample and write it (command line: ``[OUT]``)."""
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "data/records_sample"
    records = build()
    linkage.write(records, out)
    log.info(
        "wrote %s: %d child rows, %d episodes in %s",
        out,
        len(records.children),
        len(records.episodes),
        ", ".join(records.truth["sample_las"]),
    )
    return 0


if __name__ == "__main__":
    from socialgradient.util import progress

    progress.configure()
    raise SystemExit(main())
