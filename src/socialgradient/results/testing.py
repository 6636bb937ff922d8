"""Assertions for statisticians' own test suites.

>>> from socialgradient.results.testing import assert_converged, assert_ppc, assert_covers
>>> assert_converged(tree)                       # R-hat, ESS, divergences
>>> assert_ppc(tree)                             # replicated data look like the observed
>>> assert_covers(tree, "gradient_mean_la", 1.62)

Each raises ``AssertionError`` with the numbers that failed, so pytest shows them.
"""

from __future__ import annotations

import xarray as xr

from socialgradient.results import checks, gradients


def assert_converged(
    tree: xr.DataTree, *, rhat_max: float = 1.01, ess_min: float = 400, divergences: int = 0
) -> dict:
    """Assert max R-hat, min bulk/tail ESS and the divergence count; return the diagnostics."""
    d = checks.diagnose(tree)
    problems = []
    if d["rhat_max"] > rhat_max:
        problems.append(f"R-hat {d['rhat_max']:.4f} > {rhat_max} ({d['worst_rhat']})")
    if min(d["ess_bulk_min"], d["ess_tail_min"]) < ess_min:
        problems.append(
            f"ESS bulk {d['ess_bulk_min']:.0f} / tail {d['ess_tail_min']:.0f} < {ess_min}"
            f" ({d['worst_ess']})"
        )
    if d["divergences"] > divergences:
        problems.append(f"{d['divergences']} divergences > {divergences}")
    assert not problems, "not converged: " + "; ".join(problems)
    return d


def assert_ppc(
    tree: xr.DataTree,
    *,
    statistics=("total", "dispersion", "zero_share"),
    deciles: bool = True,
    alpha: float = 0.01,
) -> dict[str, xr.Dataset]:
    """Assert each observed statistic (and decile total) has a two-sided PPC p-value >= alpha.

    Uses ``p_two_sided`` from :func:`socialgradient.results.checks.ppc`:
    ``2 min(P(T_rep >= T_obs), P(T_rep <= T_obs))``, from the replicates.
    """
    result = checks.ppc(tree)
    failures = []
    groups = [("statistic", list(statistics))] + ([("decile", None)] if deciles else [])
    for group, labels in groups:
        ds = result[group]
        dim = next(iter(ds["observed"].dims))
        if labels is not None:
            ds = ds.sel({dim: labels})
        for label in ds[dim].values:
            value = float(ds["p_two_sided"].sel({dim: label}))
            if value < alpha:
                row = ds.sel({dim: label})
                failures.append(
                    f"{group} {label}: observed {float(row['observed']):.4g} outside replicated "
                    f"95% [{float(row['replicated_lower']):.4g}, "
                    f"{float(row['replicated_upper']):.4g}] (p = {value:.4f})"
                )
    assert not failures, "posterior predictive check failed: " + "; ".join(failures)
    return result


def assert_covers(tree: xr.DataTree, name: str, truth: float, prob: float = 0.95) -> tuple:
    """Assert a national quantity's equal-tailed ``prob`` interval contains ``truth``.

    ``name`` is a key of :func:`socialgradient.results.gradients.national` or a scalar posterior
    variable (``a``, ``b_w``, ``phi``, ...). Returns the interval.
    """
    post = tree["posterior"].to_dataset()
    nat = gradients.national(post)
    draws = nat[name] if name in nat else post[name]
    ci = gradients.describe(draws, probs=(prob,))[f"eti{round(prob * 100)}"].values
    lo, hi = float(ci[0]), float(ci[1])
    assert lo <= truth <= hi, (
        f"{name}: truth {truth:.4g} outside {prob:.0%} ETI [{lo:.4g}, {hi:.4g}]"
    )
    return lo, hi
