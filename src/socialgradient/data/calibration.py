"""Per-LA calibration table for the synthetic England, derived from public LSOA data.

The synthetic generator (:mod:`socialgradient.data.synthetic`) needs, for each of England's
children's services local authorities (LAs), how many neighbourhoods (2011 LSOAs) it has, how
many children live there and how income deprivation is spread across them. This module derives
those LA-level summaries from the analysis-ready LSOA table in the shared data folder
(``lsoa2011_merged/lsoa2011_iod2019_income_children_utla_ruc.csv.gz``: MHCLG English Indices of
Deprivation 2019 income domain, IoD2019 mid-2015 child population, ONS LSOA11->UTLA19 lookup and
2011 Rural-Urban Classification) and, where available, each LA's observed DfE referral rate in
2018-19.

LAs are upper-tier local authorities (UTLA19) with the Isles of Scilly (E06000053, one LSOA)
merged into Cornwall (E06000052), as DfE does for children's social care; that leaves 150 LAs,
each with at least 2 LSOAs (City of London has 6).

Only LA-level aggregates are written; no LSOA-level values leave the shared folder. Contains
public sector information licensed under the Open Government Licence v3.0 (MHCLG IoD2019, ONS,
DfE).

Regenerate the committed table (run from the repository root)::

    python -m socialgradient.data.calibration \\
        ../shared/data src/socialgradient/data/la_calibration.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

LSOA_FILE = Path("lsoa2011_merged") / "lsoa2011_iod2019_income_children_utla_ruc.csv.gz"
REFERRALS_FILE = Path("dfe_csc") / "c1_children_in_need_referrals_and_rereferrals_2013_to_2025.csv"
POPULATION_FILE = Path("population_la") / "ons_mid-year_population_estimates_2012_to_2024.csv"

#: DfE reports the Isles of Scilly with Cornwall for children's social care.
MERGE = {"E06000053": "E06000052"}

ATTRIBUTION = (
    "# Derived LA-level summaries. Contains public sector information licensed under the Open "
    "Government Licence v3.0: MHCLG English Indices of Deprivation 2019, ONS (mid-2015 "
    "population, LSOA11-UTLA19 lookup, RUC2011), DfE Characteristics of children in need "
    "2018-19. See socialgradient.data.calibration and data/README.md."
)

#: Columns of the calibration table, in order.
COLUMNS = [
    "la",
    "la_name",
    "n_lsoa",
    "children",
    "income_mean",
    "income_sd",
    "income_min",
    "income_max",
    "logit_income_mean",
    "logit_income_sd",
    "rural_share",
    "children_mean",
    "children_sd",
    "dfe_referrals_per_10k_2019",
]

DECIMALS = 6


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _dfe_referral_rates(shared: Path) -> pd.Series:
    """Referrals per 10,000 children aged 0-17 in the year to 31 March 2019, by LA code.

    Count from DfE's C1 table over the ONS mid-2018 estimate (DfE's own denominator);
    Isles of Scilly summed into Cornwall. Missing (NaN) for Bournemouth, Christchurch and
    Poole and for Dorset, whose 2019 figures are reported under the pre-2019 authorities.
    """
    ref = pd.read_csv(shared / REFERRALS_FILE, dtype=str)
    ref = ref[(ref["time_period"] == "2019") & (ref["geographic_level"] == "Local authority")]
    pop = pd.read_csv(shared / POPULATION_FILE, dtype=str)
    pop = pop[(pop["time_period"] == "2018") & (pop["geographic_level"] == "Local authority")]
    both = pd.DataFrame(
        {
            "count": pd.to_numeric(ref.set_index("new_la_code")["referral_count"], errors="coerce"),
            "pop": pd.to_numeric(pop.set_index("new_la_code")["population_estimate"],
                                 errors="coerce"),
        }
    )
    both.index = both.index.map(lambda code: MERGE.get(code, code))
    summed = both.groupby(level=0).sum(min_count=1)
    return (summed["count"] / summed["pop"] * 1e4).rename("dfe_referrals_per_10k_2019")


def build_calibration(shared_data_dir) -> pd.DataFrame:
    """Per-LA summaries of LSOA income deprivation and child population.

    Parameters
    ----------
    shared_data_dir : path-like
        The shared data folder (holding ``lsoa2011_merged/``, ``dfe_csc/``, ``population_la/``).

    Returns
    -------
    DataFrame, one row per LA (150), sorted by LA code, with columns :data:`COLUMNS`:
    ``la``/``la_name`` (UTLA19 code/name), ``n_lsoa``, ``children`` (total aged 0-15, mid-2015),
    ``income_mean`` (child-weighted mean LSOA income score, 0-1), ``income_sd`` (unweighted SD
    over LSOAs), ``income_min``/``income_max``, ``logit_income_mean``/``logit_income_sd``
    (unweighted, logit scale), ``rural_share`` (share of LSOAs classed rural, RUC2011 D/E),
    ``children_mean``/``children_sd`` (children 0-15 per LSOA) and
    ``dfe_referrals_per_10k_2019`` (observed, all ages 0-17; NaN where unavailable).
    Floats are rounded to 6 decimals so the table round-trips through CSV exactly.
    """
    shared = Path(shared_data_dir)
    lsoa = pd.read_csv(
        shared / LSOA_FILE,
        usecols=["lsoa11cd", "utla19cd", "utla19nm", "income_score_rate",
                 "children_0_15_mid2015", "urban_rural"],
    )
    names = lsoa.drop_duplicates("utla19cd").set_index("utla19cd")["utla19nm"]
    lsoa["la"] = lsoa["utla19cd"].map(lambda code: MERGE.get(code, code))
    lsoa["la_name"] = lsoa["la"].map(names)
    income = lsoa["income_score_rate"].to_numpy(dtype=float)
    children = lsoa["children_0_15_mid2015"].to_numpy(dtype=float)
    lsoa["logit_income"] = _logit(np.clip(income, 1e-4, 1 - 1e-4))
    lsoa["weighted_income"] = income * children
    lsoa["rural"] = (lsoa["urban_rural"] == "Rural").astype(float)

    groups = lsoa.groupby("la", sort=True)
    table = pd.DataFrame(
        {
            "la_name": groups["la_name"].first(),
            "n_lsoa": groups.size(),
            "children": groups["children_0_15_mid2015"].sum(),
            "income_mean": groups["weighted_income"].sum()
            / groups["children_0_15_mid2015"].sum(),
            "income_sd": groups["income_score_rate"].std(),
            "income_min": groups["income_score_rate"].min(),
            "income_max": groups["income_score_rate"].max(),
            "logit_income_mean": groups["logit_income"].mean(),
            "logit_income_sd": groups["logit_income"].std(),
            "rural_share": groups["rural"].mean(),
            "children_mean": groups["children_0_15_mid2015"].mean(),
            "children_sd": groups["children_0_15_mid2015"].std(),
        }
    )
    try:
        table = table.join(_dfe_referral_rates(shared))
    except FileNotFoundError:
        table["dfe_referrals_per_10k_2019"] = np.nan
    table = table.rename_axis("la").reset_index()
    table["n_lsoa"] = table["n_lsoa"].astype("int64")
    table["children"] = table["children"].astype("int64")
    floats = table.select_dtypes("float").columns
    table[floats] = table[floats].round(DECIMALS)
    return table[COLUMNS]


def write_calibration(table: pd.DataFrame, path) -> None:
    """Write the table as CSV with a one-line attribution comment (read with ``comment='#'``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(ATTRIBUTION + "\n")
        table.to_csv(f, index=False, lineterminator="\n")
    tmp.replace(path)


def read_calibration(path) -> pd.DataFrame:
    """Read a table written by :func:`write_calibration`."""
    return pd.read_csv(path, comment="#", dtype={"la": str, "la_name": str})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m socialgradient.data.calibration SHARED_DATA_DIR OUT_CSV",
              file=sys.stderr)
        return 2
    table = build_calibration(argv[0])
    write_calibration(table, argv[1])
    print(f"wrote {argv[1]}: {len(table)} LAs, {int(table['n_lsoa'].sum())} LSOAs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
