"""CIN Census XML returns: the public names of the writer, the reader and the code lists.

The implementation is split (issue 12/14): :mod:`~socialgradient.data.census.codes` (code lists
by collection year, DfE LA numbers, the DfE XSDs), :mod:`~socialgradient.data.census.write`
(:func:`write_returns`), :mod:`~socialgradient.data.census.read` (:func:`read_returns`) and
:mod:`~socialgradient.data.census.frames` (:class:`ReadReport`, :func:`build_records`). This
module keeps the names the CLI, :mod:`~socialgradient.data.census.extracts` and users import.
See ``docs/census_returns.md``.
"""

from __future__ import annotations

from socialgradient.data.census.codes import (
    BOOL_CODES,
    CLOSURE_CODES,
    CP_CODES,
    ETHNIC_CODES,
    FACTOR_CODE,
    GENDER_CODES,
    GENDER_WRITE,
    LA_NUMBERS,
    NEED_CODES,
    SOURCE_CODES,
    UNKNOWN,
    WRITE_ETHNIC,
)
from socialgradient.data.census.frames import (
    CHILD_LSOA_COLUMNS,
    LOOKED_AFTER_COLUMNS,
    ReadReport,
    _age,
    _band,
    build_records,
    default_population,
    read_child_lsoa,
)
from socialgradient.data.census.read import EXCLUDED, READ_RULES, read_returns
from socialgradient.data.census.write import lea_codes_from_dfe, write_returns

__all__ = [
    "BOOL_CODES",
    "CHILD_LSOA_COLUMNS",
    "CLOSURE_CODES",
    "CP_CODES",
    "ETHNIC_CODES",
    "EXCLUDED",
    "FACTOR_CODE",
    "GENDER_CODES",
    "GENDER_WRITE",
    "LA_NUMBERS",
    "LOOKED_AFTER_COLUMNS",
    "NEED_CODES",
    "READ_RULES",
    "SOURCE_CODES",
    "UNKNOWN",
    "WRITE_ETHNIC",
    "ReadReport",
    "_age",
    "_band",
    "build_records",
    "default_population",
    "lea_codes_from_dfe",
    "read_child_lsoa",
    "read_returns",
    "write_returns",
]
