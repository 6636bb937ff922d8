"""Data: the input contract and where tables come from.

* :mod:`~socialgradient.data.schema` - the input contract (validation) and its errors;
* :mod:`~socialgradient.data.records` - the child records' contract (columns, true
  parameters) that the synthetic records and the census readers both fill;
* :mod:`~socialgradient.data.deprivation` - the within/between decomposition of deprivation;
* :mod:`~socialgradient.data.synthetic` - the synthetic England and its child-level records;
* :mod:`~socialgradient.data.sources` - readers of the public source files and the table build;
* :mod:`~socialgradient.data.census` - CIN Census ingest: XML returns, flat extracts, linkage.
"""
