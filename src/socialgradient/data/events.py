"""What a fit needs of a neighbourhood table beyond the input contract: events to fit.

:func:`require_events` is called by :func:`socialgradient.api.encode` before a fit, on a
table that passed :func:`socialgradient.data.schema.validate`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from socialgradient.data.errors import _listing, fail


def require_events(table: pd.DataFrame, outcomes: Sequence[str], trials: str = "") -> None:
    """Check what a fit needs beyond :func:`validate`: each outcome has events somewhere.

    An outcome that is 0 on every row (or, for a binomial, equals its trials on every row)
    carries no information on a gradient: a fit would return its prior, with a WARN at best.
    :func:`validate` allows such a column (an aggregate may be all zero; a prior predictive
    check does not look at counts); :func:`socialgradient.api.encode` calls this before a fit.

    Parameters
    ----------
    table : pandas.DataFrame
        A table that passed :func:`validate` (counts int64).
    outcomes : sequence of str
        The count columns to be fitted.
    trials : str, optional
        The binomial's trials column.

    Raises
    ------
    InputError
        ``no_events`` (an outcome is 0 on every row) or ``every_trial_an_event`` (a binomial
        outcome equals its trials on every row), with every row listed.
    """
    outcomes = [outcomes] if isinstance(outcomes, str) else list(outcomes)
    rows = np.arange(len(table))
    listing = _listing(table, rows, None)
    for c in outcomes:
        y = table[c].to_numpy()
        if not np.any(y > 0):
            within = f" (of the trials in {trials!r})" if trials else ""
            raise fail(
                "no_events",
                f"outcome {c!r} is 0 on every one of the {len(y)} rows"
                f"{within}: it says nothing about a gradient, a fit would return its "
                f"prior; check the column and the filters that made the table: {listing}",
                rows,
                [c],
            )
        if trials and np.all(y == table[trials].to_numpy()):
            raise fail(
                "every_trial_an_event",
                f"outcome {c!r} equals its trials {trials!r} on "
                f"every one of the {len(y)} rows: a proportion of 1 everywhere says "
                f"nothing about a gradient, a fit would return its prior: {listing}",
                rows,
                [c, trials],
            )
