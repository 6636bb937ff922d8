"""Draw a table from the national model itself, with known truth, for any spec's terms.

Where :mod:`socialgradient.data.synthetic` builds a realistic England, this module draws
counts for a given geography straight from the model of :mod:`socialgradient.model.build` at
stated parameter values: any family, neighbourhood and LA moderators, binomial trials.
Recovery tests, peer comparisons and calibration studies use it to ask "does the fit
return the truth it was given?" for model terms the realistic England does not exercise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pandas as pd

from socialgradient.data.deprivation import decompose
from socialgradient.model import families


@dataclass(frozen=True)
class Truth:
    """Parameter values of the national model.

    Parameter values of the national model (names and units of
    :mod:`socialgradient.model.build`); moderator effects are per unit of the moderator,
    ``(main effect or intercept shift, slope change)``.
    """

    a: float = -4.0
    b_w: float = 0.48
    b_b: float = 0.25
    b_x: float = -0.26
    sigma_a: float = 0.25
    sigma_b: float = 0.15
    rho: float = -0.3
    phi: float = 20.0
    moderators: dict[str, tuple[float, float]] = field(default_factory=dict)
    la_moderators: dict[str, tuple[float, float]] = field(default_factory=dict)


def draw(
    geography: pd.DataFrame,
    truth: Truth,
    family: str = "negbin",
    *,
    outcome: str = "y",
    trials: str = "",
    la_table: pd.DataFrame | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Draw counts for every row of ``geography`` from the model at ``truth``.

    Parameters
    ----------
    geography : DataFrame
        ``lsoa``, ``la``, ``children``, ``income``, the moderator columns of ``truth`` and,
        for the binomial, the ``trials`` column.
    la_table : DataFrame, optional
        One row per LA (column ``la``) with the LA moderator columns of ``truth``.

    Returns
    -------
    (DataFrame, dict)
        ``geography`` plus the ``outcome`` column; the truth in the keys of
        :func:`socialgradient.release.report.summary` (``gradient_mean_la``, ...,
        ``moderators``: ``{name: {"intercept", "slope"}}``) and ``la_gradient``
        (LA code -> exp(b_la)).
    """
    rng = np.random.default_rng(seed)
    t = geography.reset_index(drop=True)
    d = decompose(t["income"], t["children"], t["la"])
    n_la = len(d.la)
    weight = t["children"].to_numpy(float)
    la_children = np.bincount(d.la_index, weight, n_la)
    centre = np.column_stack([truth.a + truth.b_b * d.m_c, truth.b_w + truth.b_x * d.m_c])
    if truth.la_moderators and la_table is None:
        raise ValueError(f"LA moderators {list(truth.la_moderators)} need la_table")
    for name, (c, dd) in truth.la_moderators.items():
        v = cast(pd.DataFrame, la_table).set_index("la").loc[d.la, name].to_numpy(float)
        v = v - np.average(v, weights=la_children)
        centre += np.column_stack([c * v, dd * v])
    cov = np.array(
        [
            [truth.sigma_a**2, truth.rho * truth.sigma_a * truth.sigma_b],
            [truth.rho * truth.sigma_a * truth.sigma_b, truth.sigma_b**2],
        ]
    )
    theta = centre + rng.multivariate_normal(np.zeros(2), cov, n_la)
    eta = theta[d.la_index, 0] + theta[d.la_index, 1] * d.w
    for name, (g, h) in truth.moderators.items():
        z = t[name].to_numpy(float)
        z = z - np.average(z, weights=weight)
        eta = eta + g * z + h * z * d.w
    n = t[trials].to_numpy(np.int64) if trials else None
    y = families.get(family).draw(eta, weight, n, {"phi": truth.phi}, rng)
    out = t.assign(**{outcome: y})
    moderators = {
        **{k: {"intercept": g, "slope": h} for k, (g, h) in truth.moderators.items()},
        **{k: {"intercept": c, "slope": dd} for k, (c, dd) in truth.la_moderators.items()},
    }
    return out, {
        "gradient_mean_la": float(np.exp(truth.b_w)),
        "gradient_less_deprived_la": float(np.exp(truth.b_w - truth.b_x)),
        "gradient_more_deprived_la": float(np.exp(truth.b_w + truth.b_x)),
        "interaction": float(np.exp(truth.b_x)),
        "between_la_gradient": float(np.exp(truth.b_b)),
        "contextual_effect": float(truth.b_b - truth.b_w),
        "moderators": moderators,
        "la_gradient": dict(zip(d.la, np.exp(theta[:, 1]).tolist(), strict=True)),
    }
