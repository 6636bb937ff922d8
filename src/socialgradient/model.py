r"""The national social-gradient model: a hierarchical Poisson / negative-binomial GLM.

For LSOA :math:`i` in local authority :math:`l` with child population :math:`n_i`,
within-LA deprivation :math:`w_i` and LA deprivation :math:`m_{c,l}` (both in units of
10 percentage points of income deprivation, see :mod:`socialgradient.deprivation`):

.. math::

    \log \mathrm{E}[y_i] = \log n_i + \alpha_l + \beta_l w_i, \qquad
    (\alpha_l, \beta_l) \sim \mathrm{MVN}\big((a + b_b m_{c,l},\; b_w + b_x m_{c,l}),\;
    \Sigma\big)

with :math:`\Sigma = \mathrm{diag}(\sigma)\, R\, \mathrm{diag}(\sigma)`. The family is
Poisson or negative binomial (NB2: variance :math:`\mu + \mu^2/\phi`).

For a stratified table (one row per LSOA x stratum, e.g. age band), the linear predictor
gains stratum offsets to the intercept and the slope, :math:`\gamma_s + \delta_s w_i`, zero
for the reference stratum (the one with most children): the gradient of stratum :math:`s`
in an averagely deprived LA is :math:`\exp(b_w + \delta_s)`.

Priors (weakly informative on the log-rate-per-child scale; checked by
:func:`socialgradient.checks.prior_predictive`):

========  ==========================  =====================================================
name      prior                       why
========  ==========================  =====================================================
a         Normal(-4, 2.5)             log rate per child at an LA's mean deprivation, for an
                                      LA at the national mean: e^-4 = 180 per 10,000; the
                                      95% range is about 1.4 to 25,000 per 10,000
b_w       Normal(0, 1)                within-LA log gradient per 10 points: scores 0.14-7
b_b       Normal(0, 1)                between-LA log gradient per 10 points of LA deprivation
b_x       Normal(0, 1)                change in the within-LA log gradient per 10 points of LA
                                      deprivation (cross-level interaction)
la_sd     HalfNormal([1, 0.5])        SDs of LA intercepts and slopes (effect dim)
la_corr   LKJ(eta=2)                  mildly favours small intercept-slope correlations
phi       1/sqrt(phi) ~ HalfNormal(1) NB2 dispersion, a Stan-style "penalised complexity"-ish
                                      prior that shrinks towards the Poisson (phi -> inf)
========  ==========================  =====================================================

Parameterisation: each LA holds hundreds of LSOAs, so its intercept and slope are well
identified by the data; the LA effects are therefore sampled *centred on their
hierarchical means*. Non-centred forms give R-hat 1.1-1.5 on England-sized data.

Speed: the likelihood is written through sufficient statistics. The :math:`y\,\eta` part is
linear in the LA parameters, so it collapses to per-LA sums :math:`\sum y` and
:math:`\sum y w`; the negative binomial's :math:`\log\Gamma(y+\phi)-\log\Gamma(\phi)` terms
depend on the data only through how many LSOAs have each count. Only the
:math:`\mu`-dependent normaliser runs over LSOAs: rows are sorted by LA so LA effects reach
them by ``repeat``, and it costs one ``exp`` and one ``log`` per row. The resulting log
density equals the textbook per-LSOA log-likelihood up to a constant that does not depend
on the parameters (``tests/test_model.py`` checks this against ``pm.Poisson`` /
``pm.NegativeBinomial``); ``bench/results.md`` records what each step buys.
Pointwise log-likelihood and posterior predictive draws are computed after sampling
(:mod:`socialgradient.predict`), so no per-LSOA quantity is stored during sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from socialgradient.deprivation import decompose
from socialgradient.spec import Spec

EFFECTS = ("intercept", "slope")


@dataclass(frozen=True)
class NeighbourhoodData:
    """One outcome of a validated neighbourhood table, encoded for the model.

    Rows are LSOAs (dim ``lsoa``) or, for a stratified table, LSOA x stratum cells (dim
    ``cell``, with the LSOA and stratum of each cell as coordinates).

    Attributes
    ----------
    lsoa : ndarray of str, dims (row,)
        LSOA code of each row.
    la : ndarray of str, dims (la,)
        LA codes.
    la_index : ndarray of int, dims (row,)
        Position of each row's LA in ``la``.
    children : ndarray of float, dims (row,)
        Child population (weights of the LA deprivation means).
    income : ndarray of float, dims (row,)
        Share (0-1) of families in income deprivation.
    y : ndarray of int, dims (row,)
        Outcome counts.
    w : ndarray, dims (row,); m_la, m_c : ndarray, dims (la,); x_bar : float
        The deprivation decomposition in 10-point units.
    outcome : str
        Name of the outcome column.
    strata : tuple of str
        Stratum levels, the reference (most children) first; empty when unstratified.
    stratum_index : ndarray of int, dims (row,), or None
        Position of each row's stratum in ``strata``.
    stratum_name : str
        Name of the stratum column ("" when unstratified).
    exposure : ndarray of float, dims (row,)
        The offset's exposure: ``children`` unless another column was named.
    exposure_name : str
        Name of the exposure column.
    """

    lsoa: np.ndarray
    la: np.ndarray
    la_index: np.ndarray
    children: np.ndarray
    income: np.ndarray
    y: np.ndarray
    w: np.ndarray
    m_la: np.ndarray
    m_c: np.ndarray
    x_bar: float
    outcome: str
    strata: tuple = ()
    stratum_index: np.ndarray | None = None
    stratum_name: str = ""
    exposure: np.ndarray | None = None
    exposure_name: str = "children"

    def __post_init__(self):
        if self.exposure is None:
            object.__setattr__(self, "exposure", self.children)

    @classmethod
    def from_table(
        cls, table: pd.DataFrame, outcome: str, stratum: str | None = None,
        exposure: str = "children",
    ) -> NeighbourhoodData:
        """Encode a table that has passed :func:`socialgradient.data.schema.validate`."""
        d = decompose(table["income"], table["children"], table["la"])
        strata, stratum_index = (), None
        if stratum:
            size = table.groupby(table[stratum].astype(str))["children"].sum()
            strata = tuple(size.sort_values(ascending=False, kind="stable").index)
            lookup = {level: i for i, level in enumerate(strata)}
            stratum_index = table[stratum].astype(str).map(lookup).to_numpy()
        return cls(
            lsoa=table["lsoa"].to_numpy(dtype=str),
            la=d.la,
            la_index=d.la_index,
            children=table["children"].to_numpy(dtype=float),
            income=table["income"].to_numpy(dtype=float),
            y=table[outcome].to_numpy(dtype=np.int64),
            w=d.w,
            m_la=d.m_la,
            m_c=d.m_c,
            x_bar=d.x_bar,
            outcome=outcome,
            strata=strata,
            stratum_index=stratum_index,
            stratum_name=stratum or "",
            exposure=table[exposure].to_numpy(dtype=float),
            exposure_name=exposure,
        )

    @property
    def row_dim(self) -> str:
        """``lsoa`` for one row per LSOA, ``cell`` for LSOA x stratum rows."""
        return "cell" if self.strata else "lsoa"

    @property
    def row_coords(self) -> dict:
        """Coordinates of the row dim (LSOA codes, or cell number with LSOA and stratum)."""
        if not self.strata:
            return {"lsoa": self.lsoa}
        cell = np.arange(len(self.y))
        return {
            "cell": cell,
            "lsoa": ("cell", self.lsoa),
            "stratum": ("cell", np.asarray(self.strata)[self.stratum_index]),
        }

    @property
    def coords(self) -> dict[str, list]:
        """Coordinates for the model's named dims."""
        coords = {"la": list(self.la), "effect": list(EFFECTS)}
        if self.strata:
            return {**coords, "cell": list(range(len(self.y))), "stratum": list(self.strata)}
        return {**coords, "lsoa": list(self.lsoa)}


def la_effects(data: NeighbourhoodData):
    """Priors and the LA intercepts and slopes, in the current model context.

    Creates ``a``, ``b_w``, ``b_b``, ``b_x``, the LKJ covariance ``la_cov`` (with
    deterministics ``la_sd``, ``la_corr``) and returns ``la_effect`` (dims la, effect),
    centred on ``(a + b_b m_c, b_w + b_x m_c)``. Shared by :func:`build_model` and the
    textbook reference models of the tests and benchmarks.
    """
    m_c = pm.Data("m_c", data.m_c, dims="la")
    a = pm.Normal("a", -4.0, 2.5)
    b_w = pm.Normal("b_w", 0.0, 1.0)
    b_b = pm.Normal("b_b", 0.0, 1.0)
    b_x = pm.Normal("b_x", 0.0, 1.0)
    chol, corr, sd = pm.LKJCholeskyCov(
        "la_cov", eta=2.0, n=2, sd_dist=pm.HalfNormal.dist(sigma=np.array([1.0, 0.5]), size=2),
        # An explicit start (LA SDs 0.2 and 0.1, uncorrelated): the default draws the SDs
        # through scipy, which fails on PyTensor's read-only constants for some graphs
        # (Poisson with strata under nutpie: "cannot set WRITEABLE flag").
        initval=np.array([0.2, 0.0, 0.1]),
    )
    pm.Deterministic("la_sd", sd, dims="effect")
    pm.Deterministic("la_corr", corr[0, 1])
    centre = pt.stack([a + b_b * m_c, b_w + b_x * m_c], axis=1)
    return pm.MvNormal("la_effect", mu=centre, chol=chol, dims=("la", "effect"))


def dispersion():
    """NB2 dispersion ``phi`` with 1/sqrt(phi) ~ HalfNormal(1), in the current model context."""
    inv_sqrt_phi = pm.HalfNormal("inv_sqrt_phi", 1.0)
    return pm.Deterministic("phi", 1.0 / pt.square(inv_sqrt_phi))


def build_model(data: NeighbourhoodData, spec: Spec) -> pm.Model:
    """Build the national model for one outcome.

    Parameters
    ----------
    data : NeighbourhoodData
        The encoded outcome.
    spec : Spec
        Uses ``spec.family`` ("negbin" or "poisson").

    Returns
    -------
    pm.Model
        Free variables ``a``, ``b_w``, ``b_b``, ``b_x``, ``la_effect`` (dims la, effect),
        the LKJ covariance (``la_sd`` dims effect, ``la_corr``), for the negative
        binomial ``phi``, and for stratified data ``stratum_effect`` (dims stratum, effect;
        zero for the reference stratum). The likelihood enters as the potential ``loglik``.
    """
    n_la = len(data.la)
    idx = data.la_index
    y_sum = np.bincount(idx, weights=data.y, minlength=n_la)
    yw_sum = np.bincount(idx, weights=data.y * data.w, minlength=n_la)
    # Rows sorted by LA, so LA effects reach rows by `repeat`, whose gradient is a contiguous
    # segment sum (30% faster sampling than gather/scatter on England-sized data).
    order = np.argsort(idx, kind="stable")
    per_la = np.bincount(idx, minlength=n_la)
    w, y = data.w[order], data.y[order]
    log_n = np.log(data.exposure)[order]
    with pm.Model(coords=data.coords) as model:
        theta = la_effects(data)
        eta = pt.repeat(theta[:, 0], per_la) + pt.repeat(theta[:, 1], per_la) * w
        linear = pt.sum(theta[:, 0] * y_sum + theta[:, 1] * yw_sum)
        if data.strata:
            offset = _stratum_effect(data)
            s_idx = data.stratum_index
            eta = eta + offset[s_idx[order], 0] + offset[s_idx[order], 1] * w
            s_y = np.bincount(s_idx, weights=data.y, minlength=len(data.strata))
            s_yw = np.bincount(s_idx, weights=data.y * data.w, minlength=len(data.strata))
            linear = linear + pt.sum(offset[:, 0] * s_y + offset[:, 1] * s_yw)
        if spec.family == "poisson":
            loglik = linear - pt.sum(pt.exp(log_n + eta))
        elif spec.family == "negbin":
            phi = dispersion()
            values, counts = np.unique(data.y, return_counts=True)
            lgamma_part = pt.sum(counts * (pt.gammaln(values + phi) - pt.gammaln(phi)))
            # log(mu + phi), not logaddexp: one exp and one log per row (25% faster sampling).
            log_mu_plus_phi = pt.log(pt.exp(log_n + eta) + phi)
            loglik = (
                lgamma_part
                + len(data.y) * phi * pt.log(phi)
                + linear
                - pt.sum((y + phi) * log_mu_plus_phi)
            )
        else:
            raise ValueError(f"unknown family {spec.family!r}: use 'negbin' or 'poisson'")
        pm.Potential("loglik", loglik)
    return model


def _stratum_effect(data: NeighbourhoodData):
    """Stratum offsets to the intercept and slope, zero for the reference stratum.

    Priors: Normal(0, 1) on the log-rate offset (rate ratios 0.14-7 against the reference),
    Normal(0, 0.5) on the slope offset (gradient ratios 0.37-2.7). The reference stratum is
    the one with most children, so its offsets are the best identified zero.
    """
    contrasts = list(data.strata[1:])
    model = pm.modelcontext(None)
    model.add_coord("stratum_contrast", contrasts)
    raw = pm.Normal(
        "stratum_offset",
        0.0,
        np.array([1.0, 0.5]),
        dims=("stratum_contrast", "effect"),
    )
    full = pt.concatenate([pt.zeros((1, 2)), raw], axis=0)
    return pm.Deterministic("stratum_effect", full, dims=("stratum", "effect"))
