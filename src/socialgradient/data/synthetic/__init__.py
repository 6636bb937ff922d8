"""The synthetic England (LSOA level) and its CIN-Census-shaped child records, with truth.

* :mod:`~socialgradient.data.synthetic.england` - the LSOA table, calibrated per LA;
* :mod:`~socialgradient.data.synthetic.context` - population, area, density, LA indicators;
* :mod:`~socialgradient.data.synthetic.calibration` - builds the per-LA calibration table
  (package data ``la_calibration.csv``) from the public files;
* :mod:`~socialgradient.data.synthetic.records` - child-level records, with
  :mod:`~socialgradient.data.synthetic.history` (earlier episodes) and
  :mod:`~socialgradient.data.synthetic.records_truth` (their truth);
* :mod:`~socialgradient.data.synthetic.sample` - the committed records sample.
"""
