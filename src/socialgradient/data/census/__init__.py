"""CIN Census ingest: child-level records in, LSOA x stratum counts out.

* :mod:`~socialgradient.data.census.write` / :mod:`~socialgradient.data.census.read` - CIN
  Census XML returns in the DfE layout of 2019-2024 (:mod:`~socialgradient.data.census.returns`
  keeps their public names), with :mod:`~socialgradient.data.census.codes` (code lists by
  year, DfE LA numbers, the DfE XSDs) and :mod:`~socialgradient.data.census.frames` (the read
  report, companion tables, :func:`~socialgradient.data.census.frames.build_records`);
* :mod:`~socialgradient.data.census.extracts` - flat child-level extracts with a column mapping;
* :mod:`~socialgradient.data.census.linkage` - records -> LSOA x stratum counts, with a
  linkage report.
"""
