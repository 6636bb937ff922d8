"""Perturbed structure and denominators of a fit's release.

The counts of LSOAs, children and the exposure per LA or decile, and the child-weighted
mean income, are not public over exactly the fitted LSOAs: released as they are, the
difference of two fits one LSOA apart would say which LSOA one of them left out. They are
perturbed by cell keys (:mod:`socialgradient.release.perturbation`): counts by the
cell-key method, sums by Laplace noise scaled to their largest LSOA (:data:`SPREAD`), means
by noise up to one LSOA's pull on them. :func:`release_summary` does the same for the
national figures of ``summary.json``.
"""

from __future__ import annotations

import json
from typing import cast

import numpy as np
import pandas as pd
import xarray as xr

from socialgradient.data.deprivation import income_deciles
from socialgradient.release import ledger as ledgers
from socialgradient.release import perturbation
from socialgradient.results import gradients
from socialgradient.results.summaries import finite, units


def group(tree: xr.DataTree, name: str) -> xr.Dataset:
    """Return the group ``name`` of a fit (``"constant_data"``...) as a Dataset.

    The Dataset shares the tree's arrays (nothing is copied).
    """
    return cast(xr.DataTree, tree[name]).to_dataset()


def _loo_shift(values, weights, groups, n_groups, lsoa) -> np.ndarray:
    """Return, per group, the largest pull one LSOA has on a weighted mean.

    Per group, the largest change of the weighted mean of ``values`` that leaving out one
    LSOA (all its rows) makes: the noise a mean needs so that no one LSOA can be read off a
    difference of two releases.
    """
    frame = pd.DataFrame({"g": groups, "u": lsoa, "w": weights, "wv": weights * values})
    per = frame.groupby(["g", "u"], sort=False)[["w", "wv"]].sum().reset_index()
    tot = per.groupby("g")[["w", "wv"]].transform("sum")
    mean = tot["wv"] / tot["w"]
    rest = (tot["w"] - per["w"]).where(lambda x: x > 0)
    shift = ((tot["wv"] - per["wv"]) / rest - mean).abs().fillna(0.0)
    out = np.zeros(n_groups)
    np.maximum.at(out, per["g"].to_numpy(dtype=int), shift.to_numpy())
    return out


#: the scale of the (Laplace) noise of ``children`` and the exposure per group, in units of
#: its largest LSOA's: for two releases one LSOA apart, the likelihood of "LSOA j was
#: dropped" over "LSOA k was dropped" is at most exp(|c_j - c_k| / scale) <= exp(1 / SPREAD)
#: (the log-density of a difference of two Laplace draws is 1/scale-Lipschitz), so no
#: difference rules an LSOA out or singles one out.
SPREAD = 2


def perturbed_sums(ids, lsoa, values, groups, n_groups, keys, measure) -> np.ndarray:
    """Return the per-group sums of ``values`` plus Laplace noise.

    Per group, the sum of ``values`` plus Laplace noise of scale :data:`SPREAD` times the
    group's largest LSOA total, read from the cell key of the rows (``ids``).
    """
    ck = perturbation.cell_keys(keys.magnitude_keys(ids, values, measure), groups, n_groups)
    return perturbation.perturb_laplace(
        np.bincount(groups, weights=values, minlength=n_groups),
        ck,
        SPREAD * _largest(values, groups, n_groups, lsoa),
    )


def _largest(values, groups, n_groups, lsoa) -> np.ndarray:
    """Per group, the largest one LSOA's total of ``values``: the noise bound of a sum."""
    per = (
        pd.DataFrame({"g": groups, "u": lsoa, "v": values})
        .groupby(["g", "u"], sort=False)["v"]
        .sum()
        .reset_index()
    )
    out = np.zeros(n_groups)
    np.maximum.at(out, per["g"].to_numpy(dtype=int), per["v"].to_numpy())
    return out


def _masked(tree: xr.DataTree, keys, groups: np.ndarray, n_groups: int) -> dict:
    """Return the perturbed per-group structure and denominators.

    Perturbed per-group structure and denominators (cell-key noise, see
    :mod:`socialgradient.release.perturbation`): ``n_lsoa`` (count noise), ``children`` and the
    exposure (Laplace noise, :func:`perturbed_sums`), the child-weighted mean
    ``income`` (noise up to the largest pull one LSOA has on it).
    """
    const = group(tree, "constant_data")
    ids, lsoa = units(tree), const["lsoa"].values.astype(str)
    children, income = const["children"].values, const["income"].values
    at_risk = gradients.exposure(const).values
    uniq, first = np.unique(lsoa, return_index=True)
    out = {}
    ck = perturbation.cell_keys(
        keys.count_keys(uniq, np.ones(len(uniq)), "n_lsoa"), groups[first], n_groups
    )
    out["n_lsoa"] = perturbation.perturb_counts(
        np.bincount(groups[first], minlength=n_groups), ck, 1
    )
    for name, v in (("children", children), ("exposure", at_risk)):
        measure = name if name == "children" else "exposure:" + tree.attrs.get("exposure", "")
        out[name] = perturbed_sums(ids, lsoa, v, groups, n_groups, keys, measure)
    if tree.attrs.get("exposure", "children") == "children":
        out["exposure"] = out["children"]
    ck = perturbation.cell_keys(keys.magnitude_keys(ids, income, "income"), groups, n_groups)
    mean = np.bincount(groups, weights=children * income, minlength=n_groups) / np.bincount(
        groups, weights=children, minlength=n_groups
    )
    z = 2.0 * ck - 1.0
    out["income"] = mean + z * _loo_shift(income, children, groups, n_groups, lsoa)
    return out


def release_summary(s: dict, tree: xr.DataTree, led: ledgers.Ledger, keys=None) -> dict:
    """Return ``summary(tree)`` as ``release/summary.json`` holds it.

    ``summary(tree)`` as ``release/summary.json`` holds it: the data hash replaced by a
    keyed id (an unkeyed hash of the LSOA table would confirm a guessed table), and with
    ``keys`` the national structure perturbed (``n_lsoa``, ``n_rows``: the fitted LSOAs are
    not a public count when a table leaves some out) and the national mean income given to
    3 decimals with noise up to one LSOA's pull on it (and so a spline fit's income deciles'
    mean incomes, ``curve.local_gradients[].income``).
    """
    s = json.loads(json.dumps(finite(s)))
    model = s.get("model", {})
    if "data_hash" in model:
        model["data_id"] = led.data_id(model.pop("data_hash"))
    if keys is not None and "n_lsoa" in model:
        const = group(tree, "constant_data")
        lsoa = const["lsoa"].values.astype(str)
        uniq = np.unique(lsoa)
        one = np.zeros(len(uniq), int)
        ck = perturbation.cell_keys(keys.count_keys(uniq, np.ones(len(uniq)), "n_lsoa"), one, 1)
        model["n_lsoa"] = int(perturbation.perturb_counts([len(uniq)], ck, 1)[0])
        ids = units(tree)
        ck = perturbation.cell_keys(
            keys.count_keys(ids, np.ones(len(ids)), "n_rows"), np.zeros(len(ids), int), 1
        )
        model["n_rows"] = int(perturbation.perturb_counts([len(ids)], ck, 1)[0])
        if model.get("national_mean_income") is not None:
            z = np.zeros(len(ids), int)
            masked = _masked(tree, keys, z, 1)
            model["national_mean_income"] = round(float(masked["income"][0]), 3)
        if "curve" in s:  # the income deciles' mean incomes, perturbed as the deciles' are
            decile, _ = income_deciles(const["income"].values, const["children"].values)
            income = _masked(tree, keys, decile, 10)["income"]
            for row in s["curve"]["local_gradients"]:
                row["income"] = round(float(income[row["decile"] - 1]), 3)
    return s
