"""The fit's released tables: its observed totals through the gate, the LA table, the PPC.

:func:`gate` protects the fit's LA, decile and national totals together
(:func:`socialgradient.release.partitions.protect_partitions`); :func:`release_la_gradients`
and :func:`release_ppc` build ``la_gradients.csv`` and ``ppc.json`` from the gated totals
(rates derived from a hidden count blank, others from the published value) and the
perturbed denominators of :mod:`socialgradient.release.masking`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from socialgradient.release import disclosure, la_bands
from socialgradient.release import ledger as ledgers
from socialgradient.release.masking import _masked, group
from socialgradient.release.readers import for_readers
from socialgradient.results import checks, gradients
from socialgradient.results.summaries import finite, la_gradients, to_json, units

TABLE = "fit totals (la_gradients.csv, ppc.json)"
#: the column of ``la_gradients.csv`` holding P(steeper than England) (:func:`p_steeper`)
P_STEEPER = "p_steeper_than_england"


def gate(
    tree: xr.DataTree, rule: disclosure.Rule, led: ledgers.Ledger | None = None, earlier=()
) -> tuple[disclosure.Partitioned, np.ndarray]:
    """Protect the fit's observed LA, decile, LA x band and national totals together.

    The fit's observed LA, decile, LA x deprivation-band (:mod:`socialgradient.release.
    la_bands`) and national totals, protected together, so that no hidden total can be
    recovered by differencing the others (against the ``earlier`` publications of the ledger
    ``led`` too, whose secret keys the perturbation; default the default ledger's); and each
    row's deprivation decile.
    """
    y = tree["observed_data"][tree.attrs["outcome"]].values
    const = group(tree, "constant_data")
    decile = checks.deprivation_decile(const["income"].values)
    keys = (led or ledgers.Ledger()).keys() if rule.perturb else None
    la = const["lsoa_la"].values.astype(str)
    parts = disclosure.protect_partitions(
        y,
        {"la": la, "decile": decile, la_bands.PARTITION: la_bands.cells(la, decile)},
        rule,
        units=units(tree),
        earlier=earlier,
        keys=keys,
        name=TABLE,
        measure=tree.attrs["outcome"],
    )
    return parts, decile


def _aligned(parts: disclosure.Partitioned, name: str, labels) -> np.ndarray:
    where = {str(g): i for i, g in enumerate(parts.groups[name])}
    return np.array([parts.shown[name][where[str(v)]] for v in labels])


def p_steeper(tree: xr.DataTree, codes) -> np.ndarray:
    """Return, per LA of ``codes``, P(its gradient is steeper than England's).

    The share of posterior draws in which the LA's gradient score
    (:func:`socialgradient.results.gradients.la_gradient`, exp(b_la)) exceeds England's, the
    gradient of an averagely deprived LA (``gradient_mean_la`` = exp(b_w) of
    :func:`socialgradient.results.gradients.national`, the value the site and ``summary.json``
    call England's). A model output: it is a function of the posterior alone and reveals no
    count beyond what the published gradients and their intervals already reflect, so it
    needs no disclosure gate.
    """
    post = group(tree, "posterior").drop_vars("la_name", errors="ignore")
    la = gradients.la_gradient(post)
    england = gradients.national(post)["gradient_mean_la"]
    share = (la > england).mean(gradients.SAMPLE_DIMS)
    return share.sel(la=np.asarray(codes, dtype=str)).values.astype(float)


def release_la_gradients(
    tree: xr.DataTree, parts: disclosure.Partitioned, keys=None
) -> pd.DataFrame:
    """Return the LA table of ``la_gradients.csv``: :func:`la_gradients` with gated counts.

    Hidden ``cases`` and their rates are blank, rates computed from the published count.
    With ``keys`` (the perturbation's :class:`~socialgradient.release.perturbation.CellKeys`)
    the LA's structure and denominators are perturbed too (``n_lsoa``, ``children``,
    ``la_income``; the rate's denominator): their sums over exactly the fitted LSOAs are not
    public, and differences between two fits would say which LSOA one of them left out.
    The table is the readers' (:func:`socialgradient.release.readers.for_readers`): each LA's
    name beside its code, every estimate to 3 significant digits, and P(steeper than
    England) (:func:`p_steeper`, column :data:`P_STEEPER`).
    """
    frame = la_gradients(tree)
    frame.insert(int(frame.columns.get_loc("rank_median")), P_STEEPER, p_steeper(tree, frame["la"]))
    shown = _aligned(parts, "la", frame["la"])
    true = frame["cases"].to_numpy(dtype=float)
    ratio = np.divide(shown, true, out=np.where(np.isnan(shown), np.nan, 1.0), where=true > 0)
    frame["rate_per_10k"] = (frame["rate_per_10k"] * ratio).round(2)
    frame["cases"] = pd.array(np.where(np.isnan(shown), pd.NA, shown), dtype="Int64")
    if keys is None:
        return for_readers(frame, tree)
    const = group(tree, "constant_data")
    order = {str(la): i for i, la in enumerate(frame["la"])}
    groups = np.array([order[str(la)] for la in const["lsoa_la"].values])
    masked = _masked(tree, keys, groups, len(frame))
    frame["n_lsoa"] = masked["n_lsoa"].astype(int)
    frame["children"] = np.round(masked["children"]).astype(int)
    exposure = np.round(masked["exposure"])
    frame["rate_per_10k"] = np.round(
        gradients.PER * shown / np.where(exposure > 0, exposure, np.nan), 2
    )
    frame["la_income"] = np.round(masked["income"], 4)
    return for_readers(frame, tree)


def release_ppc(
    tree: xr.DataTree,
    parts: disclosure.Partitioned,
    decile: np.ndarray,
    full: dict[str, xr.Dataset] | None = None,
) -> dict[str, xr.Dataset]:
    """Return the posterior predictive checks for release.

    Posterior predictive checks for release: replicated quantities as computed, observed
    decile and national totals gated (p-values against the published value, blank where it
    is hidden); observed dispersion, zero share and maximum withheld (p-values kept for the
    first two, which pool every row). ``full``: :func:`socialgradient.results.checks.ppc` of the
    tree, if already computed.
    """
    full = checks.ppc(tree) if full is None else full
    outcome = tree.attrs["outcome"]
    rep = group(tree, "posterior_predictive")[outcome]
    rep_dec = checks.group_totals(rep, decile - 1, np.arange(1, 11), "decile")
    obs_dec = xr.DataArray(
        _aligned(parts, "decile", rep_dec["decile"].values),
        dims="decile",
        coords={"decile": rep_dec["decile"].values},
    )
    dec = checks._compare(obs_dec, rep_dec)
    for p in ("p_value", "p_two_sided"):
        dec[p] = dec[p].where(np.isfinite(obs_dec))
    stat = full["statistic"].copy(deep=True)
    total = float(parts.shown["total"][0])
    with_total = checks._compare(xr.DataArray(total), rep_dec.sum("decile"))
    names = list(stat["statistic"].values)
    for var in stat.data_vars:
        values = stat[var].values.astype(float).copy()
        if var == "observed":
            values[names.index("total")] = total
            for name in ("dispersion", "zero_share", "max"):
                values[names.index(name)] = np.nan
        elif str(var).startswith("p_"):
            values[names.index("total")] = (
                float(with_total[var]) if math.isfinite(total) else np.nan
            )
            values[names.index("max")] = np.nan
        stat[var] = ("statistic", values)
    return {"decile": dec, "statistic": stat}


def _records(result: dict[str, xr.Dataset], names=("decile", "statistic")) -> dict:
    return {
        name: finite(result[name].to_dataframe().reset_index().to_dict(orient="records"))
        for name in names
    }


def ppc_json(tree: xr.DataTree, full: dict[str, xr.Dataset] | None = None) -> str:
    """Return the posterior predictive checks by decile and statistic as JSON.

    The posterior predictive checks by decile and statistic (LA level omitted) as JSON,
    unprotected (for ``internal/``). ``full``: :func:`socialgradient.results.checks.ppc` of the
    tree, if already computed.
    """
    full = checks.ppc(tree) if full is None else full
    names = ("decile", "statistic", *(("spatial",) if "spatial" in full else ()))
    return to_json(_records(full, names))


def _gated_decile_rates(tree, parts, decile, keys=None) -> tuple[np.ndarray, np.ndarray]:
    """Return each decile's mean income (%) and gated observed rate per 10,000.

    Child-weighted mean income (%) and gated observed rate per 10,000 of each decile
    (with ``keys``: over perturbed denominators and means, as :func:`release_la_gradients`).
    """
    const = group(tree, "constant_data")
    income, children = const["income"].values, const["children"].values
    at_risk = gradients.exposure(const).values
    d = decile - 1
    kids = np.bincount(d, weights=children, minlength=10)
    mean_income = np.bincount(d, weights=children * income, minlength=10) / kids
    exposure = np.bincount(d, weights=at_risk, minlength=10)
    if keys is not None:
        masked = _masked(tree, keys, d, 10)
        mean_income, exposure = masked["income"], masked["exposure"]
    shown = _aligned(parts, "decile", np.arange(1, 11))
    return 100 * mean_income, gradients.PER * shown / exposure
