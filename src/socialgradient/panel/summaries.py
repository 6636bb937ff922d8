"""The LA panel model's summaries: diagnostics, intervals, the gradient by year, LA effects.

:func:`diagnose_panel` applies every fit's PASS/WARN/FAIL rules to the panel model's
:data:`PARAMETERS`; :func:`gradient_by_year`, :func:`summarise_panel` and :func:`la_table`
give the model's numbers (median, 95% and 80% ETIs) from a fitted tree
(:func:`socialgradient.panel.model.fit_panel`).
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pandas as pd
import xarray as xr

PARAMETERS = (
    "a",
    "b",
    "la_sd",
    "phi",
    "alpha",
    "la_z",
    "year_effect",
    "gradient_change",
    "d_sd",
    "b_trend",
)
INTERVAL_COLUMNS = ["median", "lo95", "hi95", "lo80", "hi80"]  # of _quantiles


def diagnose_panel(tree: xr.DataTree) -> dict[str, Any]:
    """Diagnose the panel model's parameters (:data:`PARAMETERS`).

    :func:`socialgradient.results.checks.diagnose` (the same PASS/WARN/FAIL rules as every
    fit's) over a, b, la_sd, phi, every LA effect, year effect and gradient change.
    """
    from socialgradient.results import checks

    return checks.diagnose(tree, PARAMETERS)


def _posterior(tree: xr.DataTree) -> xr.Dataset:
    """Return the tree's ``posterior`` group, as a (read-only) dataset."""
    post = tree["posterior"]
    if not isinstance(post, xr.DataTree):
        raise TypeError("the tree's posterior is a variable, not a group")
    return post.dataset


def _quantiles(draws: xr.DataArray) -> pd.DataFrame:
    """Return the median and ArviZ's 95% and 80% ETIs of ``draws``.

    As every fit's intervals (:func:`socialgradient.results.gradients.describe`); one row per
    value of the draws' other dim (or one row).
    """
    from socialgradient.results.gradients import describe

    d = describe(draws)
    columns = {"median": d["median"]}
    for prob in (95, 80):
        for name, bound in (("lo", "lower"), ("hi", "upper")):
            columns[f"{name}{prob}"] = d[f"eti{prob}"].sel(ci_bound=bound, drop=True)
    table = xr.Dataset(columns).drop_vars([c for c in d.coords if c not in d.dims])
    if not table.dims:
        return pd.DataFrame({k: [float(v)] for k, v in table.items()})
    return table.to_dataframe()[INTERVAL_COLUMNS]


def gradient_by_year(tree: xr.DataTree) -> pd.DataFrame:
    """Return exp(b + d_t) per year: median, 95% and 80% ETIs (rate ratio per 10 points)."""
    table = _quantiles(_posterior(tree)["gradient"])
    table.index = table.index.astype(int)
    return table.rename_axis("year").reset_index()


def summarise_panel(tree: xr.DataTree, diagnostics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the headline numbers of a panel fit.

    The gradient by year, its change first -> last year (ratio of gradients), la_sd, phi and
    the diagnostics (:func:`diagnose_panel` unless given).
    """
    post = _posterior(tree)

    def one(x: xr.DataArray) -> dict[str, Any]:
        row = _quantiles(x).iloc[0]
        return {
            "median": float(row["median"]),
            "ci95": [float(row["lo95"]), float(row["hi95"])],
            "ci80": [float(row["lo80"]), float(row["hi80"])],
        }

    years = post["gradient"]["year"].values
    out = {
        "measure": tree.attrs["measure"],
        "family": tree.attrs["family"],
        "gradient_by_year": {int(y): one(post["gradient"].sel(year=y)) for y in years},
        "gradient_ratio_last_vs_first": one(
            # np.exp of a DataArray is a DataArray (numpy's stubs say ndarray)
            cast(
                xr.DataArray,
                np.exp(
                    post["gradient_change"].isel(year=-1) - post["gradient_change"].isel(year=0)
                ),
            )
        ),
    }
    for name in ("la_sd", "phi"):
        if name in post:
            out[name] = one(post[name])
    out["diagnostics"] = diagnostics or diagnose_panel(tree)
    return out


def la_table(tree: xr.DataTree, panel: pd.DataFrame) -> pd.DataFrame:
    """Return one row per LA: its deprivation, observed rate and LA effect.

    The observed rate is per 10,000 over its observed years; the LA effect its median and
    95% ETI (log rate ratio to the gradient line).
    """
    obs = panel[panel["observed"]].groupby("la")[["count", "exposure"]].sum()
    las = panel.drop_duplicates("la").set_index("la")[["la_name", "income", "m"]]
    eff = _quantiles(_posterior(tree)["la_effect"])[["median", "lo95", "hi95"]]
    eff.columns = ["la_effect_" + c for c in eff.columns]
    table = las.join(obs).join(eff)
    table["rate_per_10k"] = table["count"] / table["exposure"] * 1e4
    table["years_observed"] = panel[panel["observed"]].groupby("la").size()
    return table.rename_axis("la").reset_index()
