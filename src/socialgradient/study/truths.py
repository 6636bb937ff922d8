"""The truths the findings are checked against.

Each is a function of a truth dict (``truth.json`` of the default table, or the records'
truth) returning the value a finding's quantity should recover, with the notes that explain
where the truth is not simply a parameter of the simulation (:mod:`socialgradient.study.catalogue`
ties each to its finding).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from socialgradient.data.records import CP_CATEGORIES
from socialgradient.data.synthetic.records_truth import la_outcome_coefficient
from socialgradient.model.la_outcome import STEP


def _t(outcome: str, key: str) -> Callable[[dict], float]:
    return lambda t: t["thresholds"][outcome][key]


def _ratio(f: Callable, g: Callable) -> Callable[[dict], float]:
    return lambda t: f(t) / g(t)


def _pooled(outcome: str, f: Callable[[dict], float]) -> Callable[[dict], float]:
    """Return a records gradient as seen in a table that pools the ethnic groups.

    A records gradient as seen in a table that pools the ethnic groups: minorities live
    in more deprived LSOAs and have flatter slopes, so pooled LSOA counts have a flatter
    gradient than the stratum-level truth. The shift is the records truth's own for the
    threshold (``lsoa_level.b_w - b_w``: per-LA fits to the expected pooled totals).
    """

    def pooled(t):
        th = t["thresholds"][outcome]
        return f(t) * math.exp(th["lsoa_level"]["b_w"] - th["b_w"])

    return pooled


def _stratum(dim: str, level: str, outcome: str) -> Callable[[dict], float]:
    return lambda t: t["strata"][dim][level]["gradients"][outcome]


def _factor(code: str) -> Callable[[dict], float]:
    return _pooled("assessments", lambda t: t["factors"][code]["gradient"])


def _cp(code: str) -> Callable[[dict], float]:
    """Return a CP category's pseudo-true gradient (records truth ``gradient_pseudo_true``).

    A category's share of CP plans follows a softmax in w, so its expected counts are not
    log-linear in w; the log-linear model estimates their Kullback-Leibler (Poisson)
    projection onto its form over the data's LSOAs and exposures (White 1982): per LA the
    projection slope of the first year's true expected counts, the LA slopes regressed on
    m_c (:func:`socialgradient.data.synthetic.pseudo_true.pseudo_true_gradient`). The counts
    are pooled over ethnic groups and so is the projection: no pooling shift is applied on top.
    """
    return lambda t: t["cp_categories"][code]["gradient_pseudo_true"]


def _la_corr(outcome: str) -> Callable[[dict], float]:
    """Realised correlation over LAs of the true LA gradient (log scale) and m_c."""

    def corr(t):
        las = t["thresholds"][outcome]["la"].values()
        b = pd.Series([v["b_la"] for v in las])
        m = pd.Series([v["m_c"] for v in las])
        return float(b.corr(m))

    return corr


def _la_regression(
    term: str, moderators=("spend_per_child", "agency_share", "turnover")
) -> Callable[[dict], float]:
    """Return the realised coefficient of ``term`` in the regression of the true LA slopes.

    Coefficient of ``term`` (``m_c`` or a moderator) in the least-squares regression of the
    realised true LA slopes of referrals on m_c and the LA moderators, over the LAs: the
    association the model's LA-level regression estimates. The synthetic indicators cause
    no count, but they proxy each LA's intervention intensity (its intercept residual),
    which is correlated with its slope (rho = -0.3), so their association is not zero.
    """

    def coef(t):
        las = t["thresholds"]["referrals"]["la"]
        ind = t["la_indicators"]["by_la"]
        codes = sorted(las)
        x = np.column_stack(
            [
                np.ones(len(codes)),
                [las[c]["m_c"] for c in codes],
                *[[ind[c][m] for c in codes] for m in moderators],
            ]
        )
        y = np.array([las[c]["b_la"] for c in codes])
        beta = np.linalg.lstsq(x, y, rcond=None)[0]
        return float(beta[(["intercept", "m_c", *moderators]).index(term)])

    return coef


RESOURCES = ("spend_per_child", "agency_share", "turnover")


@functools.cache
def _la_table() -> pd.DataFrame:
    """Read the default LA table (``data/las.parquet``), the ``la_data`` of the la_outcome specs."""
    from socialgradient import resources

    return pd.read_parquet(resources.path("data", "las.parquet")).set_index("la")


def _la_outcome(flag: str, covariates=RESOURCES) -> Callable[[dict], float]:
    """Return the LA-level question's truth as the la_outcome model estimates it.

    The LA-level question's truth as the la_outcome model estimates it: the odds ratio
    per :data:`~socialgradient.model.la_outcome.STEP` of log gradient, exp(STEP k), k the realised
    least-squares coefficient of the true LA referral log gradient in the regression of the
    LAs' true expected flag logits on it, m_c and ``covariates`` (of the default LA table,
    as in the specs' ``la_data``): records truth ``la_outcomes[flag]``.
    """

    def truth(t):
        las = _la_table()
        cov = {c: {str(k): float(v) for k, v in las[c].items()} for c in covariates}
        return math.exp(STEP * la_outcome_coefficient(t["la_outcomes"][flag], cov))

    return truth


POOLED = (
    "truth for counts pooled over ethnic groups: the stratum-level gradient times the "
    "threshold's pooling shift (records truth lsoa_level)"
)
REALISED = (
    "truth: the association in the realised LAs (least squares of the true LA "
    "slopes on m_c and the three indicators); no count depends on the indicators, "
    "but they proxy intervention intensity, which is correlated with the LA slope"
)
LA_LEVEL = (
    "truth: exp(0.1 k), k the realised least-squares coefficient of the true LA "
    "referral log gradient in the regression of the LAs' true expected logits on it, "
    "m_c and the three indicators (records truth la_outcomes; stated c_g = 1.0, plus "
    "a little from the children at risk of a steeper LA living in more deprived "
    "LSOAs); the estimate carries every draw of every LA gradient (one joint model)"
)
PSEUDO_TRUE = (
    "truth: the pseudo-true gradient, exp(b_w) of the log-linear fit to the category's true "
    "expected LSOA counts (pooled over ethnic groups): per LA the Poisson (KL) projection of "
    "the counts onto log(children) + c + s w, the LA slopes regressed on m_c; the category's "
    "share of CP plans follows a softmax in w, so it is not its local gradient at w = 0 "
    "(records truth gradient_pseudo_true)"
)
FIRST_STEP = (
    "the truth's first step (1.62 to 1.66) is small against what the realised LA "
    "effects let the data resolve: the separate national fits of referrals and "
    "assessments (rows above) do not find assessments steeper either"
)
AGE_LINE = (
    "truth: the least-squares line through the records' age profile of the log "
    "gradient (constant within each age band, falling between bands), weighted by "
    "each year's expected referrals (records truth age_trend); probability: P(slope < 0)"
)
DESIGN = (
    "the study's three gradients cannot all hold in a log-linear interaction: the "
    "synthetic truth keeps their contrast (data/README.md)"
)
CP = {code: name for code, (name, _, _) in CP_CATEGORIES.items()}  # NEG -> neglect, ...
