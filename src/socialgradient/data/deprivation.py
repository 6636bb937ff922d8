"""Within/between decomposition of neighbourhood deprivation.

Deprivation ``income`` is the share (0-1) of families in income deprivation (IoD income
domain). Models use it in **units of 10 percentage points** (``x = 10 * income``) so that
``exp(slope)`` is the social gradient score: the multiplicative change in a rate for every
10-point rise in the share of low-income families.

With child-weighted means (weights = ``children``, the exposure):

* ``m_la``  the LA's mean of ``x`` over its LSOAs;
* ``w = x - m_la``  within-LA deprivation of each LSOA;
* ``m_c = m_la - x_bar``  between-LA deprivation, ``x_bar`` the national mean over all LSOAs.

The synthetic generator and the model builder both call :func:`decompose`, so the truth a
generator stores and the estimand a model targets are defined by the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

UNIT = 10.0  # percentage points per model unit: x = income * 100 / UNIT


@dataclass(frozen=True)
class Decomposition:
    """Deprivation split into within- and between-LA parts (all in 10-point units).

    Attributes
    ----------
    la : ndarray of str, dims (la,)
        LA codes in order of first appearance.
    la_index : ndarray of int, dims (lsoa,)
        Position of each LSOA's LA in ``la``.
    w : ndarray, dims (lsoa,)
        Within-LA deprivation, ``x - m_la``.
    m_la : ndarray, dims (la,)
        Child-weighted LA mean of ``x``.
    m_c : ndarray, dims (la,)
        ``m_la - x_bar``.
    x_bar : float
        Child-weighted national mean of ``x``.
    """

    la: np.ndarray
    la_index: np.ndarray
    w: np.ndarray
    m_la: np.ndarray
    m_c: np.ndarray
    x_bar: float


def decompose(income, children, la) -> Decomposition:
    """Split LSOA income deprivation into within-LA and between-LA parts.

    Parameters
    ----------
    income : array-like of float, dims (lsoa,)
        Share (0-1) of families in income deprivation.
    children : array-like of float, dims (lsoa,)
        Child population (the weights).
    la : array-like of str, dims (lsoa,)
        LA code of each LSOA.
    """
    x = np.asarray(income, dtype=float) * 100.0 / UNIT
    n = np.asarray(children, dtype=float)
    la_index, la_codes = pd.factorize(pd.Series(np.asarray(la), dtype=str))
    weight = np.bincount(la_index, weights=n)
    m_la = np.bincount(la_index, weights=n * x) / weight
    x_bar = float(np.sum(n * x) / np.sum(n))
    return Decomposition(
        la=np.asarray(la_codes, dtype=str),
        la_index=la_index,
        w=x - m_la[la_index],
        m_la=m_la,
        m_c=m_la - x_bar,
        x_bar=x_bar,
    )


def decile_index(income) -> np.ndarray:
    """Return each row's income decile, 0 (least deprived) to 9.

    Rows ranked by ``income`` (ties in row order) and cut into ten groups of (nearly) equal
    count: the deciles of the figures, the checks and the local gradients.
    """
    return pd.qcut(pd.Series(income).rank(method="first"), 10, labels=False).to_numpy()


def income_deciles(income, children) -> tuple[np.ndarray, np.ndarray]:
    """Return each row's income decile and each decile's child-weighted mean income.

    The deciles are :func:`decile_index`'s (0 = least deprived). A decile's point is the
    child-weighted mean income share of its rows; for an averagely deprived LA it stands at
    ``w = 10 * point - x_bar``.

    Parameters
    ----------
    income : array of float, dims (row,)
        Share (0-1) of families in income deprivation.
    children : array of float, dims (row,)
        Child population of each row (the weights of the points).

    Returns
    -------
    decile : ndarray of int, dims (row,)
        0-9.
    point : ndarray of float, dims (10,)
        Child-weighted mean income share (0-1) of each decile.
    """
    income = np.asarray(income, dtype=float)
    kids = np.asarray(children, dtype=float)
    if len(income) < 10:
        raise ValueError(f"income deciles need at least 10 rows, got {len(income)}")
    decile = decile_index(income)
    total = np.bincount(decile, weights=kids, minlength=10)
    point = np.bincount(decile, weights=kids * income, minlength=10) / np.where(total > 0, total, 1)
    empty = total <= 0
    if empty.any():  # a decile of rows without children: its plain mean income
        rows = np.bincount(decile, minlength=10)
        plain = np.bincount(decile, weights=income, minlength=10) / rows
        point = np.where(empty, plain, point)
    return decile.astype(int), point
