"""Compare a fast model's log density with a textbook per-row reference model (tests)."""

from __future__ import annotations

import numpy as np
import pymc as pm

from socialgradient.model.build import dispersion

MODE = "FAST_COMPILE"


def observe(family: str, mu, y) -> None:
    """The textbook per-row likelihood ``y`` ~ Poisson or NB2(mu), in the current model."""
    if family == "poisson":
        pm.Poisson("y", mu=mu, observed=y)
    else:
        pm.NegativeBinomial("y", mu=mu, alpha=dispersion(), observed=y)


def assert_same_density(model: pm.Model, ref: pm.Model, seed: int = 2) -> None:
    """Log densities equal up to a constant at 5 jittered points, and gradients equal."""
    rng = np.random.default_rng(seed)
    start = model.initial_point()
    points = [{k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in start.items()} for _ in range(5)]
    ours = np.array([model.compile_logp(mode=MODE)(p) for p in points])
    theirs = np.array([ref.compile_logp(mode=MODE)(p) for p in points])
    np.testing.assert_allclose(ours - ours[0], theirs - theirs[0], atol=1e-8 * abs(ours).max())
    g, g_ref = model.compile_dlogp(mode=MODE)(points[1]), ref.compile_dlogp(mode=MODE)(points[1])
    np.testing.assert_allclose(g, g_ref, rtol=1e-8, atol=1e-8 * np.abs(g_ref).max())
