"""Tuning draws per chain where a spec leaves ``tune`` out: fewer where the data pin the LA SDs.

NUTS's warm-up adapts the step size and the mass matrix. How long it needs depends on the
posterior's hardest direction, which in these models is the LA SDs (``la_sd``) of a sparse
table. Measured (issue 32):

* the default England (every LA SD's ``sd(log tau)`` 0.06): 200 tuning draws adapt as well as
  500 (step size, leapfrog steps per draw, ``la_sd``'s bulk ESS) and save about 16,500 of a
  fit's 72,000 leapfrog steps (``bench/england_target.md``);
* a sparse looked-after table (``sd(log tau)`` 8.9 and 30.5): after 200 tuning draws ``la_sd``
  mixed so slowly that the target took 3,200 draws per chain instead of 900
  (``bench/run_time.md``).

So a spec without ``tune`` gets :data:`SHORT` where the model's only scale parameters are the
LA SDs (one outcome; no spline, spatial term or LA-level outcome, each of which brings scale
parameters of its own) and the data pin every one of them down: ``sd(log tau)`` below
:data:`socialgradient.model.parameterisation.TAU_PINNED` for the intercept and the slope (the
normal-normal model's Fisher information at the moment estimate,
:func:`~socialgradient.model.parameterisation.tau_uncertainty`), the rule by which every LA is
sampled centred, computed in the same pass
(:func:`~socialgradient.model.parameterisation.la_choice`). Otherwise :data:`LONG`. A spec
that sets ``tune`` gets what it sets. The choice depends on the data alone, so a seed still
gives the same draws.
"""

from __future__ import annotations

import dataclasses
import logging

from socialgradient.spec import Sampling, Spec

log = logging.getLogger(__name__)

#: Tuning draws per chain where the data pin the LA SDs down ...
SHORT = 200
#: ... and everywhere else (the default before the rule).
LONG = 500


def short(spec: Spec, pinned: bool) -> bool:
    """Return whether ``spec``'s fit gets :data:`SHORT` tuning.

    ``pinned``: the data pin every LA SD down
    (:func:`socialgradient.model.parameterisation.la_choice`). The LA SDs must also be the
    model's only scale parameters: one outcome (a joint model's LA covariance has ten
    dimensions, measured at 400 only), no spline, no spatial term, no LA-level outcome.
    """
    others = spec.outcomes or spec.curve != "log-linear" or spec.spatial or spec.la_outcome
    return pinned and not others


def resolve(spec: Spec, pinned: bool) -> Sampling:
    """Return ``spec.sampling`` with ``tune`` chosen (:func:`short`) where the spec left it out."""
    s = spec.sampling
    if s.tune is not None:
        return s
    brief = short(spec, pinned)
    tune = SHORT if brief else LONG
    log.info(
        "tuning %d draws per chain: %s",
        tune,
        "the data pin the LA SDs down" if brief else "the LA SDs or other scales need it",
    )
    return dataclasses.replace(s, tune=tune)


def tune_of(s: Sampling) -> int:
    """Return ``s``'s tuning draws per chain: its own, or :data:`LONG` where it has none."""
    return s.tune if s.tune is not None else LONG


def fallback(s: Sampling) -> Sampling:
    """Return ``s`` with :data:`LONG` tuning where ``tune`` is left out (no data rule applied)."""
    return dataclasses.replace(s, tune=tune_of(s))
