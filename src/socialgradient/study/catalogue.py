"""The catalogue of the study's findings: one :class:`Finding` a row.

Each row ties a finding of the study to the spec whose ``release/summary.json`` answers it,
the quantity (a dotted path into that summary), the study's figure wherever it published one
(the gradients of neglect 1.84 and of a child's physical disability 1.47 at assessment, of CP
plans for neglect 1.98 and sexual abuse 1.62, and their ratios, as for White and Black
children), and the truth of the synthetic data (:mod:`socialgradient.study.truths`). The
claims as probabilities (rankings, the LA range, equivalence) are
:data:`socialgradient.study.claims.CLAIMS`.
:mod:`socialgradient.study.findings` turns the catalogue into the findings table.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from socialgradient.data.synthetic.england import OUTCOMES as THRESHOLDS
from socialgradient.study.truths import (
    AGE_LINE,
    CP,
    DESIGN,
    FIRST_STEP,
    LA_LEVEL,
    POOLED,
    PSEUDO_TRUE,
    REALISED,
    _cp,
    _factor,
    _la_corr,
    _la_outcome,
    _la_regression,
    _pooled,
    _ratio,
    _stratum,
    _t,
)


@dataclass(frozen=True)
class Finding:
    """One finding: ``quantity`` of spec ``spec``'s summary against ``truth(truth_dict)``."""

    theme: str
    finding: str
    spec: str
    quantity: str
    truth: Callable[[dict], float] | None = None
    published: float | None = None
    note: str = ""
    #: the summary key of the probability shown ("": p_steeper, else p_positive)
    probability: str = ""


#: the study's CP-plan gradients by category of abuse (data/README.md: neglect 1.98, sexual 1.62)
PUBLISHED_CP = {"neglect": 1.98, "sexual": 1.62}

FINDINGS: tuple[Finding, ...] = (
    # -- thresholds (default table, truth.json) --------------------------------------------
    Finding(
        "thresholds",
        "Referral gradient, averagely deprived LA",
        "national_referrals",
        "gradient_mean_la",
        _t("referrals", "gradient_mean_la"),
        1.62,
    ),
    Finding(
        "thresholds",
        "Referral gradient, LA 10 points less deprived",
        "national_referrals",
        "gradient_less_deprived_la",
        _t("referrals", "gradient_less_deprived_la"),
        2.33,
        DESIGN,
    ),
    Finding(
        "thresholds",
        "Referral gradient, LA 10 points more deprived",
        "national_referrals",
        "gradient_more_deprived_la",
        _t("referrals", "gradient_more_deprived_la"),
        1.39,
        DESIGN,
    ),
    Finding(
        "thresholds",
        "More deprived LAs intervene more (between-LA gradient > 1)",
        "national_referrals",
        "between_la_gradient",
        _t("referrals", "between_la_gradient"),
    ),
    Finding(
        "thresholds",
        "Inverse intervention effect: contextual effect b_b - b_w < 0",
        "national_referrals",
        "contextual_effect",
        _t("referrals", "contextual_effect"),
    ),
    Finding(
        "thresholds",
        "LA gradients flatter in more deprived LAs (corr with m_c)",
        "national_referrals",
        "gradient_deprivation_corr",
        _la_corr("referrals"),
    ),
    # every threshold's own gradient comes from the joint model (one fit of all five; a
    # separate national fit per threshold gave the same medians within 0.002)
    *(
        Finding(
            "thresholds",
            f"Gradient, averagely deprived LA: {o} (joint model)",
            "joint_thresholds",
            f"thresholds.{o}.gradient_mean_la",
            _t(o, "gradient_mean_la"),
            {"referrals": 1.62, "cp_plans": 1.80}.get(o),
        )
        for o in THRESHOLDS
    ),
    *(
        Finding(
            "thresholds",
            f"Joint model, steepening {lo} -> {hi} (ratio of gradients)",
            "joint_thresholds",
            f"gradient_ratio.{hi}/{lo}",
            _ratio(_t(hi, "gradient_mean_la"), _t(lo, "gradient_mean_la")),
            note=FIRST_STEP if lo == "referrals" else "",
        )
        for lo, hi in itertools.pairwise(THRESHOLDS)
    ),
    Finding(
        "thresholds",
        "Joint model, P(gradient steepens at every threshold)",
        "joint_thresholds",
        "p_steepens_every_step",
    ),
    # -- children (records) ----------------------------------------------------------------
    *(
        Finding(
            "children",
            f"Referral gradient, age {band}",
            "strata_age_band",
            f"stratum_gradient.{band}",
            _pooled("referrals", _stratum("age_band", band, "referrals")),
            note=POOLED,
        )
        for band in ("0-4", "5-9", "10-15", "16-17")
    ),
    Finding(
        "children",
        "Steeper for young children: gradient ratio 0-4 / 16-17",
        "strata_age_band",
        "stratum_contrast.0-4/16-17",
        _ratio(
            _stratum("age_band", "0-4", "referrals"), _stratum("age_band", "16-17", "referrals")
        ),
    ),
    Finding(
        "children",
        "Gradient falls with each year of age: change in log gradient per year",
        "strata_age_trend",
        "stratum_trend.slope",
        lambda t: t["age_trend"]["slope"],
        note=AGE_LINE,
        probability="p_negative",
    ),
    Finding(
        "children",
        "No gender difference: gradient ratio M / F",
        "strata_gender",
        "stratum_contrast.M/F",
        _ratio(_stratum("gender", "M", "referrals"), _stratum("gender", "F", "referrals")),
    ),
    Finding(
        "children",
        "CP-plan gradient, White children",
        "strata_ethnicity_cp_plans",
        "stratum_gradient.White",
        _stratum("ethnicity", "White", "cp_plans"),
        1.91,
    ),
    Finding(
        "children",
        "CP-plan gradient, Black children",
        "strata_ethnicity_cp_plans",
        "stratum_gradient.Black",
        _stratum("ethnicity", "Black", "cp_plans"),
        1.27,
    ),
    Finding(
        "children",
        "Steeper for White than Black children: ratio White / Black",
        "strata_ethnicity_cp_plans",
        "stratum_contrast.White/Black",
        _ratio(
            _stratum("ethnicity", "White", "cp_plans"), _stratum("ethnicity", "Black", "cp_plans")
        ),
        1.91 / 1.27,
    ),
    # -- needs and CP categories (records) -------------------------------------------------
    Finding(
        "needs",
        "Gradient of assessments with neglect",
        "needs_factors",
        "stratum_gradient.factor_neglect",
        _factor("16A"),
        1.84,
        POOLED,
    ),
    Finding(
        "needs",
        "Gradient of assessments with a child's physical disability",
        "needs_factors",
        "stratum_gradient.factor_physical_disability_child",
        _factor("6A"),
        1.47,
        POOLED,
    ),
    Finding(
        "needs",
        "Neglect steeper than physical disability: ratio",
        "needs_factors",
        "stratum_contrast.factor_neglect/factor_physical_disability_child",
        _ratio(_factor("16A"), _factor("6A")),
        1.84 / 1.47,
    ),
    *(
        Finding(
            "needs",
            f"CP-plan gradient, category {name}",
            "cp_categories",
            f"stratum_gradient.cp_{name}",
            _cp(code),
            PUBLISHED_CP.get(name),
            PSEUDO_TRUE,
        )
        for code, name in CP.items()
    ),
    Finding(
        "needs",
        "Neglect steeper than sexual abuse: CP-plan gradient ratio",
        "cp_categories",
        "stratum_contrast.cp_neglect/cp_sexual",
        _ratio(_cp("NEG"), _cp("SAB")),
        PUBLISHED_CP["neglect"] / PUBLISHED_CP["sexual"],
        "truth: the ratio of the two categories' pseudo-true gradients (rows above)",
    ),
    # -- outcomes of provision (records) ---------------------------------------------------
    Finding(
        "outcomes",
        "Re-referrals per referral: odds ratio per 10 points (average LA)",
        "rereferrals",
        "gradient_mean_la",
        lambda t: math.exp(t["rereferral"]["c_w"]),
    ),
    Finding(
        "outcomes",
        "Re-referrals: cross-level interaction (odds ratio)",
        "rereferrals",
        "interaction",
        lambda t: math.exp(t["rereferral"]["c_x"]),
    ),
    Finding(
        "outcomes",
        "Repeat CP plans per CP plan: odds ratio per 10 points",
        "repeat_cp_plans",
        "gradient_mean_la",
        lambda t: math.exp(t["repeat_cp"]["c_w"]),
    ),
    Finding(
        "outcomes",
        "Repeat CP plans: cross-level interaction (odds ratio)",
        "repeat_cp_plans",
        "interaction",
        lambda t: math.exp(t["repeat_cp"]["c_x"]),
    ),
    Finding(
        "outcomes",
        "LAs with steeper referral gradients have more re-referrals "
        "(adjusted for LA deprivation and resources): odds ratio per 0.1 of log gradient",
        "la_rereferrals",
        "la_outcome.odds_ratio_per_tenth",
        _la_outcome("rereferral"),
        note=LA_LEVEL,
    ),
    Finding(
        "outcomes",
        "LAs with steeper referral gradients have more repeat CP plans "
        "(adjusted for LA deprivation and resources): odds ratio per 0.1 of log gradient",
        "la_repeat_cp_plans",
        "la_outcome.odds_ratio_per_tenth",
        _la_outcome("repeat_cp"),
        note=LA_LEVEL,
    ),
    *(
        Finding(
            "outcomes",
            f"{what} closure: hazard ratio per 10 points within LA",
            f"durations_{level}",
            "gradient_mean_la",
            lambda t: math.exp(t["durations"]["g_w"]),
        )
        for level, what in (("cin_plan", "CIN-plan episode"), ("cp_plan", "CP-plan episode"))
    ),
    *(
        Finding(
            "outcomes",
            f"{what} closure: hazard ratio per 10 points between LAs",
            f"durations_{level}",
            "between_la_gradient",
            lambda t: math.exp(t["durations"]["g_b"]),
        )
        for level, what in (("cin_plan", "CIN-plan episode"), ("cp_plan", "CP-plan episode"))
    ),
    # -- places and LA conditions -----------------------------------------------------------
    Finding(
        "places",
        "Steeper in rural neighbourhoods: change in log gradient, rural",
        "rurality",
        "moderators.rural.slope",
        lambda t: t["area"]["rural"]["d"] - t["area"]["urban"]["d"],
    ),
    Finding(
        "places",
        "Cross-level interaction (national model, no moderators)",
        "national_referrals",
        "interaction",
        lambda t: math.exp(t["thresholds"]["referrals"]["b_x"]),
    ),
    Finding(
        "places",
        "Cross-level interaction adjusted for rurality, spend and workforce",
        "national_referrals_places",
        "interaction",
        lambda t: math.exp(_la_regression("m_c")(t)),
        note=REALISED,
    ),
    Finding(
        "places",
        "Rural neighbourhoods, default England: change in log gradient (no true effect)",
        "national_referrals_places",
        "moderators.rural.slope",
        lambda t: 0.0,
    ),
    Finding(
        "places",
        "Population density, default England: change in log gradient per "
        "person per km2 (no true effect)",
        "national_referrals_places",
        "moderators.density.slope",
        lambda t: 0.0,
    ),
    *(
        Finding(
            "places",
            f"LA {name}: change in log LA gradient per unit",
            "national_referrals_places",
            f"moderators.{name}.slope",
            _la_regression(name),
            note=REALISED,
        )
        for name in ("spend_per_child", "agency_share", "turnover")
    ),
)
