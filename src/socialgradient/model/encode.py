"""A validated table encoded for a spec (:func:`encode`).

A validated table encoded for a spec: :func:`encode` gives the
:class:`~socialgradient.model.data.NeighbourhoodData` (one per threshold for the joint model)
that :func:`socialgradient.model.build.build_model` and the fits read.
"""

from __future__ import annotations

import pandas as pd

from socialgradient.data import schema
from socialgradient.model import joint, la_outcome, moderators
from socialgradient.model.data import NeighbourhoodData
from socialgradient.spec import Spec


def encode(
    table: pd.DataFrame,
    spec: Spec | str,
    stratum: str = "",
    exposure: str = "children",
    la_table: pd.DataFrame | None = None,
    *,
    events: bool = True,
) -> NeighbourhoodData | list[NeighbourhoodData]:
    """Validate ``table`` (and the LA table of the spec's LA moderators) and encode it.

    ``spec`` is a :class:`Spec` or an outcome name (then ``stratum`` and ``exposure`` say
    the rest). ``la_table`` overrides reading the spec's ``la_data``. ``events`` (default):
    refuse an outcome with no events (:func:`socialgradient.data.schema.require_events`:
    ``no_events``, ``every_trial_an_event``), which a fit would answer with its prior;
    ``False`` for what does not look at the counts (:func:`prior_predictive`).
    """
    if isinstance(spec, str):
        spec = Spec(spec, stratum=stratum, exposure=exposure)
    if spec.outcomes:  # the joint threshold model: one encoding per threshold
        joint.check_spec(spec)
        valid = schema.validate(table, list(spec.outcomes))
        if events:
            schema.require_events(valid, list(spec.outcomes))
        return [NeighbourhoodData.from_table(valid, o) for o in spec.outcomes]
    strata = spec.strata or spec.stratum or None  # several columns, or one as before
    valid = schema.validate(
        table,
        [spec.outcome],
        strata,
        spec.exposure,
        trials=spec.trials,
        moderators=spec.neighbourhood_moderators,
        trend=spec.stratum_trend,
    )
    if events:
        schema.require_events(valid, [spec.outcome], spec.trials)
    lo = spec.la_outcome
    if lo is not None:  # its columns named, then checked as counts
        la_outcome.check_columns(table, lo)
        extra = [c for c in (lo.count, lo.trials) if c != spec.outcome]
        schema.validate(table, extra)
    las = None
    la_columns = [
        *spec.la_moderators,
        *[c for c in (lo.covariates if lo else ()) if c not in spec.la_moderators],
    ]
    if la_columns:
        raw = la_table if la_table is not None else moderators.read_la_table(spec.la_data)
        las = moderators.validate_la_table(raw, la_columns, valid["la"].unique())
    return NeighbourhoodData.from_spec(
        valid, spec.outcome, spec, spec.exposure, spec.trials, la_table=las
    )


def single(data: NeighbourhoodData | list[NeighbourhoodData]) -> NeighbourhoodData:
    """Return the one outcome's data of a single-outcome spec's :func:`encode`.

    Raises
    ------
    ValueError
        ``data`` is a joint spec's list (one per threshold): that spec is fitted whole
        (``socialgradient.api.fit``), not as one model of one outcome.
    """
    if isinstance(data, list):
        raise ValueError(
            f"a joint spec ({len(data)} outcomes) is fitted whole by sg.fit; this step takes "
            "a single-outcome spec"
        )
    return data
