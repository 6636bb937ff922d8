"""The study's claims as posterior probabilities, from the draws of the suite's fits.

The study's claims are rankings, ranges and equalities, not medians: "neglect is the
steepest factor", "sexual abuse the flattest CP category", "LA gradients range from 1.2 to
2.4", "no gender difference". :func:`compute` answers each from a fit's posterior draws:

* ``steepest`` / ``flattest``: for each stratum level, the posterior probability that its
  gradient is the steepest (flattest) of the fit's strata: the share of draws in which it
  is the largest (smallest). Over the strata the fit holds: a spec that stacks two factors
  ranks those two.
* ``equivalent``: for each ordered pair of strata ``A/B``, the posterior mass of the ratio
  of their gradients inside the region of practical equivalence :data:`ROPE`, a factor of
  1.05 either way: [1/1.05, 1.05] = [0.952, 1.05] (symmetric on the log scale, so
  ``A/B`` and ``B/A`` agree). A "no difference" claim holds when this mass is high; P(ratio
  > 1) near 0.5 alone does not say so.
* ``moderator_equivalent``: for each moderator, the posterior mass of its change in the
  log gradient per unit inside +-log(1.05) (the gradient's factor within the ROPE per unit:
  for a 0/1 moderator such as ``rural``, between its two kinds of neighbourhood).
* ``la_gradient_p05`` / ``la_gradient_p95``: the 5th and 95th percentiles (numpy's linear
  quantiles) over the fit's LAs of the LA gradients exp(b_la), computed in every draw,
  with their medians and 95% intervals: the LA range, against the study's 1.2 to 2.4.

:func:`attach` puts them into the suite's summaries under ``claims``, read by the findings
of :data:`CLAIMS` (paths ``claims.steepest.factor_neglect``, ...), whose truths say whether
the claim holds in the synthetic truth (1 or 0) or give its true value.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

from socialgradient.data.records import CP_CATEGORIES, FACTORS
from socialgradient.results import gradients
from socialgradient.study.catalogue import Finding
from socialgradient.study.truths import PSEUDO_TRUE

#: region of practical equivalence of a ratio of gradients: a factor of 1.05 either way
ROPE = (1 / 1.05, 1.05)
LA_PERCENTILES = {"la_gradient_p05": 0.05, "la_gradient_p95": 0.95}


def _interval(draws: xr.DataArray) -> dict:
    d = gradients.describe(draws)
    return {
        "median": float(d["median"]),
        "ci95": [float(v) for v in d["eti95"].values],
        "ci80": [float(v) for v in d["eti80"].values],
    }


def extreme(strata: xr.DataArray, which: str) -> dict[str, float]:
    """Return, per stratum level, P(its gradient is the steepest or the flattest).

    Parameters
    ----------
    strata : DataArray
        Gradient draws, dims (chain, draw, stratum).
    which : {"steepest", "flattest"}
        Largest or smallest gradient.

    Returns
    -------
    dict
        Level -> the share of draws in which its gradient is the extreme one (they sum to 1).

    Raises
    ------
    ValueError
        For another ``which``, or fewer than two strata.
    """
    if which not in ("steepest", "flattest"):
        raise ValueError(f"which must be 'steepest' or 'flattest', got {which!r}")
    levels = [str(v) for v in strata["stratum"].values]
    if len(levels) < 2:
        raise ValueError(f"a ranking needs two strata or more, got {levels}")
    values = strata.transpose(..., "stratum").values.reshape(-1, len(levels))
    pick = values.argmax(axis=1) if which == "steepest" else values.argmin(axis=1)
    share = np.bincount(pick, minlength=len(levels)) / len(pick)
    return {level: float(p) for level, p in zip(levels, share, strict=True)}


def equivalent(strata: xr.DataArray, rope: tuple[float, float] = ROPE) -> dict[str, float]:
    """Return, for each ordered pair ``A/B`` of strata, P(gradient ratio inside ``rope``).

    Parameters
    ----------
    strata : DataArray
        Gradient draws, dims (chain, draw, stratum).
    rope : tuple of float
        The region of practical equivalence of the ratio, ``(lower, upper)``, lower < 1 <
        upper.

    Returns
    -------
    dict
        ``"A/B"`` -> the share of draws with ``lower <= A / B <= upper``.

    Raises
    ------
    ValueError
        For a ``rope`` that does not contain 1.
    """
    lo, hi = rope
    if not 0 < lo < 1 < hi:
        raise ValueError(f"a region of practical equivalence must contain 1, got {rope}")
    levels = [str(v) for v in strata["stratum"].values]
    out = {}
    for a, b in itertools.permutations(range(len(levels)), 2):
        ratio = strata.isel(stratum=a) / strata.isel(stratum=b)
        out[f"{levels[a]}/{levels[b]}"] = float(((ratio >= lo) & (ratio <= hi)).mean())
    return out


def la_percentiles(posterior: xr.Dataset) -> dict[str, dict]:
    """Return the 5th and 95th percentiles over LAs of the LA gradients, with intervals.

    Parameters
    ----------
    posterior : Dataset
        A fit's posterior with ``la_effect`` (chain, draw, la, effect).

    Returns
    -------
    dict
        ``la_gradient_p05`` and ``la_gradient_p95``: median, ``ci95`` and ``ci80`` of the
        percentile over the draws.
    """
    grad = gradients.la_gradient(posterior)
    out = {}
    for key, q in LA_PERCENTILES.items():
        per_draw = grad.quantile(q, dim="la").drop_vars("quantile")
        out[key] = _interval(per_draw)
    return out


def compute(posterior: xr.Dataset, attrs: dict | None = None) -> dict:
    """Return every claim a fit's posterior answers (see the module's text).

    Parameters
    ----------
    posterior : Dataset
        The fit's posterior draws.
    attrs : dict, optional
        The fit's attrs: a fit with several stratum columns (``stratum_columns``) gets no
        stratum claims (its levels are column=level pairs).

    Returns
    -------
    dict
        ``rope`` and, where the fit has them, ``steepest``, ``flattest``, ``equivalent``
        (strata), ``moderator_equivalent`` (moderators), ``la_gradient_p05`` and
        ``la_gradient_p95`` (LA effects).
    """
    attrs = attrs or {}
    out: dict = {"rope": list(ROPE)}
    if "stratum_effect" in posterior and not attrs.get("stratum_columns"):
        strata = gradients.stratum_gradient(posterior)
        if strata.sizes["stratum"] >= 2:
            out["steepest"] = extreme(strata, "steepest")
            out["flattest"] = extreme(strata, "flattest")
            out["equivalent"] = equivalent(strata)
    if "moderator_effect" in posterior:
        slope = posterior["moderator_effect"].sel(effect="slope")
        inside = abs(slope) <= math.log(ROPE[1])
        out["moderator_equivalent"] = {
            str(m): float(inside.sel(moderator=m).mean()) for m in slope["moderator"].values
        }
    if "la_effect" in posterior and "threshold" not in posterior["la_effect"].dims:
        out |= la_percentiles(posterior)
    return out


def of_fit(path: Path) -> dict:
    """Return :func:`compute` of a saved fit, reading only its posterior and attrs.

    Parameters
    ----------
    path : Path
        A ``posterior.nc`` (an output set's ``internal/posterior.nc``).

    Returns
    -------
    dict
        The claims.
    """
    tree = xr.open_datatree(path, engine="h5netcdf")
    try:
        posterior = tree["posterior"].to_dataset().drop_vars("la_name", errors="ignore").load()
        attrs = dict(tree.attrs)
    finally:
        tree.close()
    return compute(posterior, attrs)


def attach(summaries: dict[str, dict], folders: dict[str, Path], findings) -> list[str]:
    """Add ``claims`` to the summaries of the specs that a claim of ``findings`` reads.

    Parameters
    ----------
    summaries : dict
        Spec name -> its summary (changed in place).
    folders : dict
        Spec name -> its output set (``internal/posterior.nc`` is read).
    findings : iterable of Finding
        The findings tabled; those with a ``claims.`` quantity name the specs.

    Returns
    -------
    list of str
        The specs whose claims were computed.
    """
    wanted = {f.spec for f in findings if f.quantity.startswith("claims.")}
    done = []
    for name in sorted(wanted & set(summaries)):
        summaries[name] = dict(summaries[name])
        summaries[name]["claims"] = of_fit(Path(folders[name]) / "internal" / "posterior.nc")
        done.append(name)
    return done


# -- truths ---------------------------------------------------------------------------------
@functools.cache
def stack(spec: str) -> tuple[str, ...]:
    """Return the stratum levels a ``[records]`` spec of ``models/`` stacks."""
    from socialgradient import resources
    from socialgradient.spec import load_spec

    records = load_spec(resources.root("models") / f"{spec}.toml").records
    return tuple(records.stack) if records is not None else ()


#: the records truth key of each stacked level's true gradient: a factor's probability is
#: log-linear in w (its stratum-level gradient ranks the factors as their pooled gradients
#: do); a CP category's share is a softmax in w, so its truth is the pseudo-true gradient of
#: the log-linear fit (truths.PSEUDO_TRUE), which the categories' ranks use too
GRADIENT_KEY = {"factors": "gradient", "cp_categories": "gradient_pseudo_true"}


def _gradients(spec: str) -> Callable[[dict], dict[str, float]]:
    """Return the true gradient of each level a records spec stacks (factors, CP categories).

    Factors: the stratum-level ``gradient``; CP categories: ``gradient_pseudo_true``
    (:data:`GRADIENT_KEY`).
    """
    codes = {f"factor_{v[0]}": ("factors", k) for k, v in FACTORS.items()}
    codes |= {f"cp_{v[0]}": ("cp_categories", k) for k, v in CP_CATEGORIES.items()}

    def gradients(t: dict) -> dict[str, float]:
        out = {}
        for level in stack(spec):
            group, code = codes[level]
            out[level] = t[group][code][GRADIENT_KEY[group]]
        return out

    return gradients


def _is_extreme(spec: str, level: str, which: str) -> Callable[[dict], float]:
    def truth(t):
        g = _gradients(spec)(t)
        pick = max if which == "steepest" else min
        return float(pick(g, key=lambda k: g[k]) == level)

    return truth


def _la_percentile(outcome: str, q: float) -> Callable[[dict], float]:
    return lambda t: float(
        np.quantile([v["gradient"] for v in t["thresholds"][outcome]["la"].values()], q)
    )


def _gender_inside(t: dict) -> float:
    g = {s: t["strata"]["gender"][s]["gradients"]["referrals"] for s in ("M", "F")}
    return float(ROPE[0] <= g["M"] / g["F"] <= ROPE[1])


INDICATOR = "truth: 1 if the claim holds in the synthetic truth, 0 if not"
RANK = f"{INDICATOR} (over the strata the spec stacks)"
FACTORS_FITTED = (
    f"{RANK}; needs_factors stacks neglect and a child's physical disability only, so this is "
    "P(neglect steeper than physical disability) until the spec stacks every factor"
)
ROPE_TEXT = f"region of practical equivalence: a factor of 1.05 either way ({json.dumps(ROPE)})"
CP_NAMES = [v[0] for v in CP_CATEGORIES.values()]

CLAIMS: tuple[Finding, ...] = (
    *(
        Finding(
            "thresholds",
            f"LA gradients, {round(q * 100)}th percentile over LAs (study: LA gradients "
            "range from 1.2 to 2.4)",
            "national_referrals",
            f"claims.{key}",
            _la_percentile("referrals", q),
            {0.05: 1.2, 0.95: 2.4}[q],
            "truth: the percentile of the realised true LA gradients",
        )
        for key, q in LA_PERCENTILES.items()
    ),
    Finding(
        "children",
        "No gender difference: P(gradient ratio M / F within [0.952, 1.05])",
        "strata_gender",
        "claims.equivalent.M/F",
        _gender_inside,
        note=f"{ROPE_TEXT}; {INDICATOR}",
    ),
    Finding(
        "needs",
        "P(neglect is the steepest assessment factor)",
        "needs_factors",
        "claims.steepest.factor_neglect",
        _is_extreme("needs_factors", "factor_neglect", "steepest"),
        note=FACTORS_FITTED,
    ),
    Finding(
        "needs",
        "P(neglect is the steepest CP-plan category)",
        "cp_categories",
        "claims.steepest.cp_neglect",
        _is_extreme("cp_categories", "cp_neglect", "steepest"),
        note=f"{RANK}, by the categories' pseudo-true gradients",
    ),
    *(
        Finding(
            "needs",
            f"P(category {name} is the flattest CP-plan category)"
            + (" (the study: sexual abuse)" if name == "sexual" else ""),
            "cp_categories",
            f"claims.flattest.cp_{name}",
            _is_extreme("cp_categories", f"cp_{name}", "flattest"),
            note=f"{RANK}, by the categories' pseudo-true gradients; {PSEUDO_TRUE}",
        )
        for name in CP_NAMES
    ),
    Finding(
        "places",
        "Rural neighbourhoods, default England: P(change in log gradient within "
        "+-log 1.05) (no true effect)",
        "national_referrals_places",
        "claims.moderator_equivalent.rural",
        lambda t: 1.0,
        note=f"{ROPE_TEXT}; {INDICATOR}",
    ),
)
