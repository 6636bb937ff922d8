"""The pseudo-true gradient: what a log-linear model fitted to a curved truth estimates.

A log-linear rate model fitted to counts whose true rate is not log-linear in ``w`` (the
records generator's CP categories, shares of a softmax in ``w``) converges to the Poisson
(Kullback-Leibler) projection of the true expected counts onto the model's form, over the
data's own rows and exposures (White 1982, *Maximum likelihood estimation of misspecified
models*, Econometrica 50, 1-25): the truth a study of such a fit is judged against
(:mod:`socialgradient.data.synthetic.records_truth`). Computed exactly from the expected
counts, no sampling.
"""

from __future__ import annotations

import numpy as np


def projected_la_slopes(
    expected, exposure, w, la_index, n_la: int, tol: float = 1e-12, max_iter: int = 100
) -> np.ndarray:
    """Return each LA's slope of the Poisson projection of expected counts onto a log-linear rate.

    Per LA, the (c, s) that minimise the Poisson deviance of ``expected`` against
    ``exposure * exp(c + s * w)``: the Kullback-Leibler projection of the true expected
    counts onto the log-linear model (its pseudo-true value, White 1982), the slope a
    Poisson fit with an intercept per LA converges to as the counts grow. With the
    intercept profiled out the score equation is that the ``exposure * exp(s * w)``-weighted
    mean of ``w`` equal the ``expected``-weighted mean; Newton's method on it (a convex
    problem), from the weighted least squares of log(expected / exposure) on ``w``, to
    ``tol``. Exact, no sampling.

    Parameters
    ----------
    expected, exposure, w : array-like, dims (row,)
        True expected counts, exposures (children) and within-LA deprivation (10-point
        units) of each row.
    la_index : array-like of int, dims (row,)
        Each row's LA, 0 .. n_la - 1.
    n_la : int
        Number of LAs.
    tol, max_iter
        Newton's stopping rule (largest step in the slope) and iteration limit.

    Returns
    -------
    ndarray, dims (la,)
        Log-rate slope per 10 points of ``w``; NaN for an LA whose rows with positive
        expected counts have fewer than two distinct values of ``w``.
    """
    e = np.asarray(expected, float)
    n = np.asarray(exposure, float)
    w = np.asarray(w, float)
    la = np.asarray(la_index)
    keep = (n > 0) & (e >= 0)
    e, n, w, la = e[keep], n[keep], w[keep], la[keep]

    def s(v):
        return np.bincount(la, weights=v, minlength=n_la)

    total = s(e)
    with np.errstate(divide="ignore", invalid="ignore"):
        target = s(e * w) / total  # the expected-weighted mean of w
        var_e = s(e * w * w) / total - target**2
        y = np.where(e > 0, np.log(np.where(e > 0, e, 1.0) / n), 0.0)
        ybar = s(e * y) / total
        slope = (s(e * w * y) / total - target * ybar) / var_e
    ok = np.isfinite(slope) & (var_e > 1e-12 * np.maximum(1.0, target**2))
    slope = np.where(ok, slope, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):  # w about its LA mean: no overflow
        dw = w - (s(w) / np.bincount(la, minlength=n_la))[la]
    for _ in range(max_iter):
        r = n * np.exp(slope[la] * dw)
        sr = s(r)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = s(r * w) / sr
            var = s(r * w * w) / sr - mean**2
            step = np.where(ok, (target - mean) / var, 0.0)
        step = np.clip(np.nan_to_num(step), -1.0, 1.0)
        slope = slope + step
        if np.max(np.abs(step)) < tol:
            break
    else:
        raise RuntimeError(f"projection did not converge in {max_iter} Newton steps")
    return np.where(ok, slope, np.nan)


def pseudo_true_gradient(expected, exposure, w, la_index, m_c) -> dict[str, float]:
    """Return the pseudo-true gradient of a multilevel log-linear fit to expected counts.

    Each LA's Poisson projection slope (:func:`projected_la_slopes`), then the least squares
    of the LA slopes on the LA's mean deprivation ``m_c`` (10-point units), as the truth's
    ``lsoa_level`` does: ``b_w`` (the intercept, the mean LA slope at an averagely deprived
    LA) is what the model's fixed within-LA slope estimates when its log-linear form is
    fitted to counts whose true curve is not log-linear; for counts that are exactly
    log-linear in ``w`` in every LA it is their own slope.

    Parameters
    ----------
    expected, exposure, w, la_index
        As for :func:`projected_la_slopes`.
    m_c : array-like, dims (la,)
        Each LA's mean deprivation minus the national mean (10-point units).

    Returns
    -------
    dict
        ``b_w`` and ``b_x`` (log-rate slopes per 10 points) and ``gradient`` = exp(b_w).
    """
    m_c = np.asarray(m_c, float)
    slope = projected_la_slopes(expected, exposure, w, la_index, len(m_c))
    ok = np.isfinite(slope)
    b_x, b_w = np.polyfit(m_c[ok], slope[ok], 1)
    return {"b_w": float(b_w), "b_x": float(b_x), "gradient": float(np.exp(b_w))}
