"""Assertions for statisticians' own test suites.

>>> from socialgradient.results.testing import assert_converged, assert_ppc, assert_covers
>>> assert_converged(tree)                       # R-hat, ESS, divergences
>>> assert_ppc(tree)                             # replicates look like the data (Holm, FWER 5%)
>>> assert_covers(tree, "gradient_mean_la", 1.62)

Each raises ``AssertionError`` with the numbers that failed, so pytest shows them.
"""

from __future__ import annotations

import numpy as np
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


#: the family-wise error rate of :func:`assert_ppc`: the chance that a well-specified model
#: fails any of its tests is at most this
FAMILY_ALPHA = 0.05


def holm(p_values, alpha: float = FAMILY_ALPHA) -> np.ndarray:
    """Holm's step-down test: which of several hypotheses to reject at family-wise ``alpha``.

    The p-values are sorted, p_(1) <= ... <= p_(m); p_(j) is rejected while
    p_(i) < alpha / (m - i + 1) for every i <= j, and the procedure stops at the first that is
    not. The chance of rejecting any true hypothesis is at most ``alpha`` whatever the
    dependence between the tests (Holm 1979), with more power than Bonferroni's alpha / m.

    Parameters
    ----------
    p_values : array-like of float
        One p-value per test, each in [0, 1].
    alpha : float
        The family-wise error rate, in (0, 1).

    Returns
    -------
    ndarray of bool
        True where the test's hypothesis is rejected, in the order given.

    Raises
    ------
    ValueError
        For an ``alpha`` outside (0, 1) or a p-value outside [0, 1] (or NaN).
    """
    p = np.asarray(p_values, dtype=float).ravel()
    if not 0 < alpha < 1:
        raise ValueError(f"holm: the family-wise alpha must lie in (0, 1), got {alpha}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"holm: p-values must lie in [0, 1], got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    thresholds = alpha / (p.size - np.arange(p.size))
    below = p[order] < thresholds
    n_rejected = p.size if below.all() else int(np.argmin(below))
    rejected = np.zeros(p.size, dtype=bool)
    rejected[order[:n_rejected]] = True
    return rejected


def assert_ppc(
    tree: xr.DataTree,
    *,
    statistics=("total", "dispersion", "zero_share"),
    deciles: bool = True,
    alpha: float = FAMILY_ALPHA,
) -> dict[str, xr.Dataset]:
    """Assert that replicated data look like the observed, at a family-wise error ``alpha``.

    The tests are the two-sided PPC p-values of :func:`socialgradient.results.checks.ppc`
    (``2 min(P(T_rep >= T_obs), P(T_rep <= T_obs))``, from the replicates) of each statistic
    in ``statistics`` and, with ``deciles``, of the total in each deprivation decile: 13
    tests by default. They are tested together with Holm's step-down procedure
    (:func:`holm`), so a model that is right fails the assertion with probability at most
    ``alpha`` (5% by default; less in practice, as posterior predictive p-values are
    conservative), whatever the dependence between the tests (the decile totals add up to
    the national total). With 13 tests at 0.05, the smallest p-value fails below
    0.05 / 13 = 0.0038, the next below 0.05 / 12, and so on.

    Parameters
    ----------
    tree : DataTree
        A fit with ``posterior_predictive``, ``observed_data`` and ``constant_data``.
    statistics : sequence of str
        Statistics of :func:`~socialgradient.results.checks.ppc` tested (of ``total``,
        ``dispersion``, ``zero_share``, ``max``).
    deciles : bool
        Also test the total of each deprivation decile.
    alpha : float
        The family-wise error rate, in (0, 1).

    Returns
    -------
    dict of Dataset
        :func:`~socialgradient.results.checks.ppc`'s result.

    Raises
    ------
    AssertionError
        Naming every rejected test with its observed value, replicated 95% interval,
        p-value and Holm threshold.
    """
    result = checks.ppc(tree)
    tests = []  # (label, p, row)
    groups = [("statistic", list(statistics))] + ([("decile", None)] if deciles else [])
    for group, labels in groups:
        ds = result[group]
        dim = next(iter(ds["observed"].dims))
        if labels is not None:
            ds = ds.sel({dim: labels})
        for label in ds[dim].values:
            row = ds.sel({dim: label})
            tests.append((f"{group} {label}", float(row["p_two_sided"]), row))
    if not tests:
        return result
    rejected = holm([p for _, p, _ in tests], alpha)
    rank = {i: r for r, i in enumerate(np.argsort([p for _, p, _ in tests], kind="stable"))}
    failures = [
        f"{label}: observed {float(row['observed']):.4g} outside replicated "
        f"95% [{float(row['replicated_lower']):.4g}, {float(row['replicated_upper']):.4g}] "
        f"(p = {p:.4f} < {alpha:g}/{len(tests) - rank[i]})"
        for i, (label, p, row) in enumerate(tests)
        if rejected[i]
    ]
    assert not failures, (
        f"posterior predictive check failed (Holm, family-wise alpha {alpha:g} over "
        f"{len(tests)} tests): " + "; ".join(failures)
    )
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
