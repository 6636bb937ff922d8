"""The study: the suite of specs, its findings, calibration, records aggregates, the cluster."""
