"""What may leave the secure environment, and how.

A fit's output set (:mod:`~socialgradient.release.report`), disclosure control, perturbation,
the release ledger and its audit, and census table sets.
"""
