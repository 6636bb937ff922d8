r"""The deprivation curve of a fit: local gradients and modelled rates at the income deciles.

For an averagely deprived LA (:math:`m_c = 0`, LA effects at their means) the log rate at
within-LA deprivation :math:`w` is :math:`a + b_w w + f(w)`, with :math:`f = 0` for a
log-linear fit and the penalised spline of :mod:`socialgradient.model.terms.curve` for
``curve = "spline"``. Its *local gradient* at :math:`w_0` is :math:`\exp(b_w + f'(w_0))`: the
rate ratio (binomial: odds ratio) per 10 points at that point, in the headline's units;
``gradient_mean_la`` = :math:`\exp(b_w)` is the child-weighted log-linear summary of them.

*The income deciles* are those of the figures and checks: the fit's rows ranked by
neighbourhood income deprivation and cut into ten groups
(:func:`socialgradient.data.deprivation.income_deciles`). Each decile is represented by
its child-weighted mean income share ``income`` (e.g. 0.03 ... 0.30), placed in an
averagely deprived LA: :math:`w_0 = 10\,\mathrm{income} - \bar x`. (Deciles of ``w`` would
stay inside the data but say nothing about income; the income deciles are what a reader
means, and the spline continues linearly beyond the data's range of ``w``.) A log-linear
fit's local gradients are all :math:`\exp(b_w)`, so both forms can be put side by side
(:func:`local_gradients`); only a spline fit's ``summary.json`` carries them (``curve``),
so a log-linear fit's outputs are as they were.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from socialgradient.data.deprivation import UNIT, income_deciles
from socialgradient.model import families
from socialgradient.model.terms.curve import Curve
from socialgradient.results.gradients import PER, _exp, describe, exposure


def spline(tree: xr.DataTree) -> Curve | None:
    """Return the fit's spline basis, or None for a log-linear fit."""
    const = tree["constant_data"].to_dataset()
    return Curve.from_tree(tree, const)


def points(tree: xr.DataTree) -> xr.Dataset:
    """Return the income deciles' points: ``income`` (share) and ``w``, dims (decile,)."""
    const = tree["constant_data"].to_dataset()
    _, point = income_deciles(const["income"].values, const["children"].values)
    w = point * 100 / UNIT - float(tree.attrs["x_bar"])
    decile = np.arange(1, 11)
    return xr.Dataset({"income": ("decile", point), "w": ("decile", w)}, coords={"decile": decile})


def _curve_at(tree: xr.DataTree, w: np.ndarray, slope: bool) -> xr.DataArray:
    """Return :math:`f(w)` (or :math:`f'(w)`) of each draw, dims (chain, draw, point)."""
    post = tree["posterior"].to_dataset()
    basis = spline(tree)
    if basis is None:
        return xr.zeros_like(post["b_w"]).expand_dims(point=len(w), axis=-1)
    z = basis.slopes(w) if slope else basis.basis(w)
    coef = post["curve_coef"].transpose("chain", "draw", "curve_basis")
    return xr.DataArray(coef.values @ z.T, dims=("chain", "draw", "point"))


def local_gradients(tree: xr.DataTree) -> xr.DataArray:
    r"""Return :math:`\exp(b_w + f'(w_0))` at the income deciles, dims (chain, draw, decile)."""
    at = points(tree)
    df = _curve_at(tree, at["w"].values, slope=True).rename(point="decile")
    b_w = tree["posterior"].to_dataset()["b_w"]
    out = _exp(b_w + df.assign_coords(decile=at["decile"].values))
    return out.assign_coords(income=("decile", at["income"].values)).rename("local_gradient")


def rates(tree: xr.DataTree, income: np.ndarray) -> xr.DataArray:
    r"""Return the modelled rate per 10,000 at ``income`` in an averagely deprived LA.

    Parameters
    ----------
    tree : DataTree
        A fit (log-linear or spline).
    income : array of float
        Neighbourhood income shares (0-1).

    Returns
    -------
    DataArray
        Dims (chain, draw, income): ``1e4`` times the inverse link of
        :math:`a + b_w w + f(w)` at :math:`w = 10\,\mathrm{income} - \bar x`.
    """
    income = np.asarray(income, dtype=float)
    w = income * 100 / UNIT - float(tree.attrs["x_bar"])
    post = tree["posterior"].to_dataset()
    f = _curve_at(tree, w, slope=False).rename(point="income")
    eta = post["a"] + post["b_w"] * xr.DataArray(w, dims="income") + f
    fam = families.get(tree.attrs["family"])
    mean = fam.inverse_link(eta.transpose("chain", "draw", "income").values)
    return xr.DataArray(
        PER * mean, dims=("chain", "draw", "income"), coords={"income": income}, name="rate"
    )


def observed(tree: xr.DataTree) -> tuple[np.ndarray, np.ndarray]:
    """Return each income decile's point (share) and observed rate per 10,000 (exposure).

    Unprotected (the counts of the fit): for release, pass gated rates to the figure.
    """
    const = tree["constant_data"].to_dataset()
    decile, point = income_deciles(const["income"].values, const["children"].values)
    cases = np.asarray(tree["observed_data"].to_dataset()[tree.attrs["outcome"]].values, float)
    at_risk = np.asarray(exposure(const).values, dtype=float)
    rate = (
        PER
        * np.bincount(decile, weights=cases, minlength=10)
        / np.bincount(decile, weights=at_risk, minlength=10)
    )
    return point, rate


def summary(tree: xr.DataTree) -> dict[str, Any]:
    """Return ``summary.json``'s ``curve``: the form, the spline's SD, the local gradients.

    Returns
    -------
    dict
        ``form`` (``spline`` or ``log-linear``), ``curve_sd`` (spline: median and 95% ETI
        of the RMS departure from log-linear, log scale), ``local_gradients``: one
        ``{decile, income, median, lo95, hi95}`` per income decile (``income`` the decile's
        child-weighted mean share; the gradient score at that point in an averagely
        deprived LA, the headline's units) and ``meaning``.
    """
    draws = local_gradients(tree)
    d = describe(draws)
    lo, hi = d["eti95"].sel(ci_bound="lower").values, d["eti95"].sel(ci_bound="upper").values
    rows = [
        {
            "decile": int(k),
            "income": float(draws["income"].values[i]),
            "median": float(d["median"].values[i]),
            "lo95": float(lo[i]),
            "hi95": float(hi[i]),
        }
        for i, k in enumerate(draws["decile"].values)
    ]
    post = tree["posterior"].to_dataset()
    out: dict[str, Any] = {"form": "spline" if spline(tree) is not None else "log-linear"}
    if "curve_sd" in post:
        sd = describe(post["curve_sd"])
        out["curve_sd"] = {
            "median": float(sd["median"]),
            "ci95": [float(v) for v in sd["eti95"].values],
        }
    out["local_gradients"] = rows
    out["meaning"] = (
        "local_gradients: exp(b_w + f'(w)) per 10 points at each income decile's child-weighted "
        "mean income share, in an averagely deprived LA (w = 10 * income - x_bar); "
        "gradient_mean_la = exp(b_w) is their child-weighted log-linear summary; curve_sd: "
        "root-mean-square departure of the log rate from log-linear across children"
    )
    return out
