"""CIN Census ingest: child-level records in, LSOA x stratum counts out.

* :mod:`~socialgradient.data.census.returns` - CIN Census XML returns (write, read);
* :mod:`~socialgradient.data.census.extracts` - flat child-level extracts with a column mapping;
* :mod:`~socialgradient.data.census.linkage` - records -> LSOA x stratum counts, with a
  linkage report.
"""
