r"""A curved deprivation effect for the synthetic England (off by default).

With ``curvature`` :math:`\kappa \ne 0` (``england.simulate(curvature=...)``, ``socialgradient
simulate --curvature K``) every threshold's counts are drawn from

.. math::

    \log \mathrm{E}[y_i] = \log n_i + a_l + b_l w_i + \tfrac{\kappa}{2} w_i^2,

so the log gradient is no longer one number: at within-LA deprivation :math:`w_0` the local
gradient of an averagely deprived LA (:math:`m_c = 0`, :math:`b_l` at its mean ``b_w``) is
:math:`\exp(b_w + \kappa w_0)` per 10 points, and :math:`\kappa` is the change in the log
gradient per 10 points of within-LA deprivation. :math:`\kappa < 0` is concave (the gradient
flattens in the most deprived neighbourhoods, as the study's band rates suggest); ``b_w``
stays the slope at :math:`w = 0` (the LA's mean deprivation) and ``a`` the log rate there.
The counts are drawn from the same random numbers as without the curve, so only the counts
change, and ``curvature = 0`` (the default) gives exactly the default England.

The truth (:func:`truth`, under ``thresholds.<outcome>.curve`` of ``truth.json``) records
``curvature``; ``local_gradients``, the true local gradient at each income decile's point
(:func:`socialgradient.data.deprivation.income_deciles`: the child-weighted mean income of
the decile, at ``w = 10 * income - x_bar``, as :mod:`socialgradient.results.curve` reports
a fit's); and ``b_w_summary`` / ``gradient_summary``: the child-weighted log-linear summary
of the true curve, the slope of the child-weighted least-squares line through
:math:`b_w w + \tfrac{\kappa}{2} w^2`, i.e. :math:`b_w + \tfrac{\kappa}{2}
\sum_i n_i w_i^3 / \sum_i n_i w_i^2`, which is what a spline fit's ``b_w`` (its curve
orthogonal to :math:`[1, w]`) estimates.
"""

from __future__ import annotations

import math

import numpy as np

from socialgradient.data.deprivation import UNIT, income_deciles

DEFINITIONS = {
    "curve": "curved deprivation effect (simulate(curvature=...)): absent when curvature = 0",
    "curvature": "kappa: log E[y] gains kappa / 2 * w^2; change in the log gradient per 10 points",
    "local_gradients": (
        "per income decile: its child-weighted mean income share, w = 10 * income - x_bar, "
        "and the true local gradient exp(b_w + kappa * w) at an averagely deprived LA"
    ),
    "b_w_summary": "child-weighted least-squares slope of b_w w + kappa/2 w^2 on w",
    "gradient_summary": "exp(b_w_summary)",
}


def check(curvature: float) -> float:
    """Return ``curvature`` as a float, or raise ValueError for a non-finite value."""
    value = float(curvature)
    if not math.isfinite(value):
        raise ValueError(f"curvature must be a finite number, got {curvature!r}")
    return value


def log_rate(w: np.ndarray, curvature: float) -> np.ndarray | float:
    r"""Return the curve's addition to the log rate, :math:`\tfrac{\kappa}{2} w^2`.

    Exactly 0.0 (a float) when ``curvature`` is 0, so adding it leaves a log rate as it was.
    """
    if not curvature:
        return 0.0
    return 0.5 * curvature * np.asarray(w, dtype=float) ** 2


def definitions(curvature: float) -> dict[str, str]:
    """Return the truth's definitions of the curve's keys ({} without a curve)."""
    return dict(DEFINITIONS) if curvature else {}


def entry(curvature: float, b_w: float, w, income, children, x_bar: float) -> dict:
    """Return ``{"curve": truth(...)}`` for a threshold's truth ({} without a curve)."""
    return {"curve": truth(curvature, b_w, w, income, children, x_bar)} if curvature else {}


def truth(
    curvature: float,
    b_w: float,
    w: np.ndarray,
    income: np.ndarray,
    children: np.ndarray,
    x_bar: float,
) -> dict:
    r"""Return the curve's truth for a threshold with mean within-LA slope ``b_w``.

    Parameters
    ----------
    curvature : float
        :math:`\kappa`, per 10 points (log scale).
    b_w : float
        The threshold's mean within-LA slope at ``w = 0`` (log, per 10 points).
    w, income, children : ndarray, dims (lsoa,)
        Within-LA deprivation (10-point units), income share (0-1) and children.
    x_bar : float
        Child-weighted national mean of ``10 * income``.

    Returns
    -------
    dict
        ``curvature``, ``local_gradients`` (``decile`` 1-10, ``income``, ``w``,
        ``gradient``), ``b_w_summary``, ``gradient_summary``.
    """
    _, point = income_deciles(income, children)
    w0 = point * 100 / UNIT - x_bar
    kids = np.asarray(children, dtype=float)
    w = np.asarray(w, dtype=float)
    summary = b_w + 0.5 * curvature * float(np.sum(kids * w**3) / np.sum(kids * w**2))
    return {
        "curvature": curvature,
        "local_gradients": [
            {
                "decile": k + 1,
                "income": float(point[k]),
                "w": float(w0[k]),
                "gradient": math.exp(b_w + curvature * w0[k]),
            }
            for k in range(10)
        ],
        "b_w_summary": summary,
        "gradient_summary": math.exp(summary),
    }
