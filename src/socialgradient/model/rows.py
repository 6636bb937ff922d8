"""A family's view of the data: :class:`Rows`, the counts in the model's order.

Used by every family (:mod:`socialgradient.model.families`, which re-exports it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm

from socialgradient.model.nb_counts import statistics


@dataclass(frozen=True)
class Rows:
    """A family's view of the data, rows in the model's order (sorted by LA).

    ``y`` the counts, ``log_exposure`` log of the exposure (unused by the binomial),
    ``trials`` the binomial's trials (None otherwise).
    """

    y: np.ndarray
    log_exposure: np.ndarray
    trials: np.ndarray | None = None
    exceedances: np.ndarray | None = None  # NB2's K_j (from ``y`` when None)
    tail: np.ndarray | None = None  # NB2's runs above EXACT_COUNTS (see ``_tail``)

    def as_data(self, prefix: str = "rows_") -> Rows:
        """Return the same rows as named ``pm.Data`` in the current model, ``prefix`` + field.

        The data are then inputs of the compiled model instead of constants inside it, so
        the compiled log density (cached on disk by PyTensor's numba backend) serves every
        table of the same structure: a new England-sized table, every LA centred, compiled in
        20 s against 38 s (shared 2-core machine), while a refit of the same table in a new
        process compiles slower than with constants (19-22 s against 13-16 s, 20 LAs).
        """
        exceed, tail = (
            statistics(self.y) if self.exceedances is None else (self.exceedances, self.tail)
        )
        return Rows(
            y=pm.Data(f"{prefix}y", self.y),
            log_exposure=pm.Data(f"{prefix}log_exposure", self.log_exposure),
            trials=None if self.trials is None else pm.Data(f"{prefix}trials", self.trials),
            exceedances=pm.Data(f"{prefix}exceedances", exceed),
            # only with a count above EXACT_COUNTS: other tables keep the graph they had
            tail=None if tail is None else pm.Data(f"{prefix}tail", tail),
        )
