"""Models by hand, and what a spec's priors imply (part of the facade).

:func:`build` gives the PyMC model of a table for you to extend and sample, :func:`assemble`
turns your draws into the result tree that the rest of :mod:`socialgradient.api` accepts,
and :func:`prior_predictive` samples the priors. Re-exported by :mod:`socialgradient.api`.
"""

from __future__ import annotations

import pandas as pd
import pymc as pm
import xarray as xr

from socialgradient.model import parameterisation
from socialgradient.model.build import build_model
from socialgradient.model.encode import encode, single
from socialgradient.results import checks
from socialgradient.sampling import fit as _fit
from socialgradient.spec import Spec


def _spec(spec: Spec | str, **changes) -> Spec:
    spec = Spec(outcome=spec) if isinstance(spec, str) else spec
    return spec.replace(**changes)


def build(
    table: pd.DataFrame,
    spec: Spec | str = "referrals",
    *,
    likelihood: str = "sufficient",
    **changes,
) -> pm.Model:
    """Build the PyMC model for a table.

    Extend it inside ``with model:`` and sample it yourself, then :func:`assemble` turns the
    draws into a result tree that :func:`summarise`, :func:`la_gradients`, :func:`plot` and
    LOO accept.

    Parameters
    ----------
    table : pandas.DataFrame
        The neighbourhood table (validated and encoded here).
    spec : Spec or str, default "referrals"
        A spec, or an outcome name (a spec of that outcome with the defaults).
    likelihood : {"sufficient", "pointwise"}, default "sufficient"
        ``"pointwise"`` gives an observed per-row variable for PyMC's own
        ``pm.sample_posterior_predictive`` / ``pm.compute_log_likelihood``.
    **changes
        Spec fields to override (``family=``, ``stratum=``, ...).

    Returns
    -------
    pymc.Model
        The model.

    Raises
    ------
    InputError
        The table breaks the input contract (:mod:`socialgradient.data.schema`).
    """
    spec = _spec(spec, **changes)
    return build_model(single(encode(table, spec)), spec, likelihood=likelihood)


def assemble(
    sampled: xr.DataTree, table: pd.DataFrame, spec: Spec | str = "referrals", **changes
) -> xr.DataTree:
    """Turn the draws of a model built by :func:`build` and sampled by hand into a result tree.

    Parameters
    ----------
    sampled : xarray.DataTree
        The sampler's DataTree.
    table : pandas.DataFrame
        The table the model was built on.
    spec : Spec or str, default "referrals"
        The spec it was built with, or an outcome name.
    **changes
        Spec fields overridden when it was built.

    Returns
    -------
    xarray.DataTree
        The result tree, as :func:`fit` returns it.
    """
    spec = _spec(spec, **changes)
    data = single(encode(table, spec))
    centred = parameterisation.choose(data, spec.family, spec.la_effects)
    return _fit.assemble(sampled, data, spec, centred=centred)


def prior_predictive(
    table: pd.DataFrame,
    spec: Spec | str = "referrals",
    draws: int = 1000,
    seed: int = 0,
    la_table: pd.DataFrame | None = None,
    **changes,
) -> dict:
    """Sample what the priors of ``spec`` imply on ``table`` before seeing its counts.

    :func:`socialgradient.results.checks.prior_predictive` on the validated, encoded table
    (whose counts may be all zero).

    Parameters
    ----------
    table : pandas.DataFrame
        The neighbourhood table.
    spec : Spec or str, default "referrals"
        A spec, or an outcome name.
    draws : int, default 1000
        Prior draws, 1 to 1,000,000 (as a spec's ``sampling.draws``).
    seed : int, default 0
        Random seed, 0 to 2**32 - 1 (as a spec's ``sampling.seed``).
    la_table : pandas.DataFrame, optional
        The LA moderators' table, instead of the spec's ``la_data`` path.
    **changes
        Spec fields to override.

    Returns
    -------
    dict
        ``rate_per_10k``, ``gradient_mean_la``, ``la_sd`` and ``replicated_total`` (against
        ``observed_total``), each as quantiles 5%, 50%, 95%.

    Raises
    ------
    ValueError
        ``draws`` or ``seed`` not a whole number in its range (a bool is refused too).
    """
    _setting("draws", draws, 1, 1_000_000)
    _setting("seed", seed, 0, 2**32 - 1)
    spec = _spec(spec, **changes)
    return checks.prior_predictive(
        encode(table, spec, la_table=la_table, events=False), spec, draws, seed
    )


def _setting(name: str, value, lo: int, hi: int) -> None:
    """Check a whole-number keyword argument is in [lo, hi] (not a bool), else raise ValueError."""
    import numbers

    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not lo <= int(value) <= hi
    ):
        raise ValueError(
            f"{name} must be an integer from {lo} to {hi}, got {value!r} ({type(value).__name__})"
        )
