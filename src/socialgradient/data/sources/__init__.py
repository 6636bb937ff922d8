"""Readers for the public source files, each returning a validated pandas table.

One import point for the readers split across modules:

* :mod:`~socialgradient.data.sources.iod` - English Indices of Deprivation 2019 (Files 1, 2,
  3, 5, 6, 7 by their published column names; mySociety's income scores):
  :func:`read_iod_file`, :func:`read_mysociety_scores`, :func:`read_iod`;
* :mod:`~socialgradient.data.sources.geo` - ONS lookups LSOA11 -> LAD19 -> UTLA19 and the
  children's-services LA of a DfE year with every reorganisation and DfE merge explicit
  (:data:`REORGANISATIONS`, :data:`DFE_MERGES`, :func:`children_services_la`); ONS 2011
  Rural-Urban Classification (:func:`read_ruc`);
* :mod:`~socialgradient.data.sources.dfe` - DfE children's social care tables and ONS
  child populations by LA and year, tidy, suppressed cells flagged
  (:func:`read_dfe_table`, :func:`read_dfe_csc`, :func:`read_population`).

Errors are :class:`~socialgradient.data.schema.InputError`; the rule ids are listed in
:mod:`~socialgradient.data.sources.base` (plus ``lsoa_mismatch``, ``unknown_category``,
``unknown_table``, ``malformed_year``, ``unsupported_year`` from the readers).
:data:`SHARED_FILES` names each file's place in the shared data folder.
"""

from __future__ import annotations

from socialgradient.data.schema import InputError
from socialgradient.data.sources.base import read_csv_text, read_layout
from socialgradient.data.sources.dfe import (
    DFE_TABLES,
    POPULATION_FILE,
    SUPPRESSION,
    read_dfe_csc,
    read_dfe_table,
    read_population,
)
from socialgradient.data.sources.geo import (
    DFE_MERGES,
    LATEST_YEAR,
    REORGANISATIONS,
    RUC_CLASSES,
    LAChange,
    children_services_la,
    la_names,
    read_lsoa_lad,
    read_lsoa_utla,
    read_ltla_utla,
    read_ruc,
)
from socialgradient.data.sources.iod import (
    FILE_NAMES,
    find_file,
    read_iod,
    read_iod_file,
    read_mysociety_scores,
)

#: Where each source lives under the shared data folder (a ``.gz`` copy is also accepted).
SHARED_FILES = {
    "iod": "iod2019",
    "lsoa_lad": "la_lookups/ons_LSOA11_to_LAD19_IMD19_lookup_Dec2019_EN.csv",
    "ltla_utla": "la_lookups/ons_LTLA19_to_UTLA19_Apr2019_EW.csv",
    "lsoa_utla": "la_lookups/ons_LSOA11_to_UTLA19_bestfit_EW.csv",
    "ruc": "ruc2011/ons_RUC11_LSOA11_EW.csv",
    "dfe_csc": "dfe_csc",
    "population": "population_la/" + POPULATION_FILE[0],
}

__all__ = [
    "DFE_MERGES",
    "DFE_TABLES",
    "FILE_NAMES",
    "LATEST_YEAR",
    "REORGANISATIONS",
    "RUC_CLASSES",
    "SHARED_FILES",
    "SUPPRESSION",
    "InputError",
    "LAChange",
    "children_services_la",
    "find_file",
    "la_names",
    "read_csv_text",
    "read_dfe_csc",
    "read_dfe_table",
    "read_iod",
    "read_iod_file",
    "read_layout",
    "read_lsoa_lad",
    "read_lsoa_utla",
    "read_ltla_utla",
    "read_mysociety_scores",
    "read_population",
    "read_ruc",
]
