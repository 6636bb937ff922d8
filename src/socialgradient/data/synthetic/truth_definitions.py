"""The definitions of every key of the records' truth (``Records.truth["definitions"]``).

The truth itself is built by :mod:`socialgradient.data.synthetic.records_truth`; the same
definitions are in ``data/README.md``, section "Child-level records".
"""

from __future__ import annotations

DEFINITIONS = {
    "seed": "seed of simulate_records",
    "scale": "LSOAs-per-LA multiplier of the synthetic geography (ignored with a supplied one)",
    "years": "collection years: the year ending 31 March of each (drawn independently)",
    "geography": "'synthetic' (synthetic.simulate(seed, scale)) or 'supplied'",
    "n_lsoa": "LSOAs in the geography",
    "n_la": "local authorities in the geography",
    "x_bar": "child-weighted national mean of x = 10 * income (10-point units)",
    "unit": "percentage points of income deprivation per model unit of x",
    "la_effect_shared": "correlation of an LA's standardised (a_la, b_la) draws between "
    "thresholds (1: one draw per LA, which keeps thresholds nestable)",
    "definitions": "one-line definition of every key of this truth",
    "model": "the rate model for a child in stratum s of LSOA i in LA l (text)",
    "thresholds": "per threshold: synthetic.py's true parameters and realised LA effects",
    "a": "log rate per child per year at w = 0, m_c = 0, population-average stratum",
    "b_w": "mean within-LA slope per 10 points at m_c = 0 (population-average stratum)",
    "b_b": "between-LA slope: change in a_la's mean per 10 points of m_c",
    "b_x": "cross-level interaction: change in b_la's mean per 10 points of m_c",
    "sigma_a": "SD of a_la around a + b_b * m_c",
    "sigma_b": "SD of b_la around b_w + b_x * m_c",
    "rho": "correlation of the LA intercept and slope deviations",
    "phi": "NB2 dispersion of the LSOA totals (variance mu + mu^2 / phi)",
    "phi_effective": "dispersion actually reached after thinning (phi, unless phi exceeds the "
    "parent threshold's)",
    "lsoa_level": "gradient implied for LSOA totals over all strata (composition included): "
    "per-LA log-linear fits to the expected totals, LA slopes regressed on m_c; "
    "the target of the national model fitted to aggregate(by=())",
    "parent": "threshold the children are thinned from (None for referrals)",
    "clipped_share": "per year: share of cells where the thinning probability exceeded 1 and "
    "was clipped (expected counts there fall below the model)",
    "gradient_mean_la": "exp(b_w): social gradient score at an averagely deprived LA",
    "gradient_less_deprived_la": "exp(b_w - b_x): gradient at an LA 10 points less deprived",
    "gradient_more_deprived_la": "exp(b_w + b_x): gradient at an LA 10 points more deprived",
    "between_la_gradient": "exp(b_b): rate ratio per 10 points of LA mean deprivation",
    "contextual_effect": "b_b - b_w: between minus within slope (< 0: inverse intervention)",
    "la": "realised LA effects keyed by LA code",
    "a_la": "realised LA intercept",
    "b_la": "realised LA within-LA slope per 10 points",
    "gradient": "a gradient exp(slope): rate ratio per 10 points of within-LA deprivation",
    "m_c": "LA child-weighted mean x minus x_bar (10-point units)",
    "strata": "per dimension (age_band, gender, ethnicity) and level: offsets and gradients",
    "age_trend": "the age profile by single year of age (0-17) and its least-squares line: "
    "the truth of a linear stratum trend in age fitted to aggregate(by=('age',))",
    "ages": "single years of age 0-17",
    "band": "age band of each single year",
    "alpha_by_age": "true log rate-ratio offset of each single year (its band's alpha: the rate "
    "does not change within a band)",
    "d_by_age": "true slope offset of each single year (its band's d)",
    "weight_by_age": "weight of each year in the line: nominal share (1/18) x exp(alpha), the "
    "expected referrals of that age, normalised to sum 1",
    "slope": "change in the log gradient per year of age: weighted least-squares slope of "
    "d_by_age on age (the target of trend_effect[slope], any threshold)",
    "intercept_slope": "change in the log rate per year of age at w = 0: the same line through "
    "alpha_by_age (the target of trend_effect[intercept])",
    "max_departure": "largest distance of d_by_age from its line (the staircase's steps)",
    "gradient_ratio_0_to_17": "exp(17 * slope): the line's ratio of the gradient at 17 to "
    "that at 0",
    "alpha": "log rate-ratio offset of the stratum level (centred on nominal_share)",
    "d": "slope offset of the stratum level, added to b_la (centred on nominal_share)",
    "nominal_share": "population share used to centre alpha (sum share*exp(alpha) = 1) and d "
    "(sum share*d = 0)",
    "realised_share": "share of the simulated child population 0-17 in this level",
    "gradients": "per threshold: exp(b_w + d) at an average LA (other dimensions averaged)",
    "area": "rural/urban slope offsets d (by LSOA, centred on the rural share 0.17)",
    "factors": "per census factor code: factor identified at assessment (assessed children)",
    "name": "short name; the aggregate column is factor_<name> (cp_<name> for CP categories)",
    "c3_column": "column of DfE file C3 (factors identified at the end of assessment)",
    "share_w0": "probability (factor) / share (CP category) at w = 0",
    "delta": "slope offset of the factor over the assessment slope: "
    "log(gradient) - b_w(assessments)",
    "cp_categories": "per census category of abuse code of a CP plan (CP-plan children)",
    "d_effective": "local slope offset at w = 0 after the softmax (d - sum share_w0 * d)",
    "gradient_pseudo_true": "exp(b_w) of a log-linear fit to the first year's LSOA counts of "
    "the factor (category), pooled over strata: per LA the Poisson projection (KL, pseudo-true "
    "value) of its true expected counts onto log(children) + c + s w, the LA slopes regressed "
    "on m_c (the truth of the CP categories, whose shares follow a softmax in w; for the "
    "factors, log-linear in w, it differs from gradient only by pooling)",
    "durations": "episode duration, days from referral_date to closure_date: piecewise "
    "exponential, hazard base_rate * exp(level_log_hr + (g_w + u_b) w + g_b m_c "
    "+ u_a), censored at 31 March",
    "pieces_days": "start (days since referral) of each piece of the baseline hazard",
    "base_rate": "hazard per day in each piece for an 'nfa' episode at w = 0, m_c = 0",
    "level_log_hr": "log hazard ratio by episode outcome (nfa, cin_plan, cp_plan, looked_after)",
    "g_w": "log hazard ratio per 10 points of w (< 0: longer in more deprived neighbourhoods)",
    "g_b": "log hazard ratio per 10 points of m_c (> 0: shorter in more deprived LAs)",
    "u_a": "durations: the LA's log hazard ratio (closing practice)",
    "u_b": "durations: the LA's change of the log hazard ratio per 10 points of w",
    "rereferral": "re-referral within 12 months (referred children): logit p = logit(p0) + "
    "c_w w + c_x w m_c + c_g dev_l",
    "repeat_cp": "second or subsequent CP plan (CP-plan children): same form as rereferral",
    "p0": "probability at w = 0",
    "c_g": "log-odds per unit of the LA's referral log-gradient departure dev_l = "
    "b_la[referrals] - (b_w + b_x m_c), added to the flag's logit (the LA-level "
    "association of issue 10)",
    "la_outcomes": "per flag (rereferral, repeat_cp): the LA-level question's truth, per LA "
    "and as the realised coefficient the la_outcome model estimates",
    "departure": "the LA's referral log-gradient departure dev_l = b_la - (b_w + b_x m_c)",
    "expected_p": "the LA's true mean flag probability over its children at risk (referred "
    "children; CP-plan children for repeat_cp), all years",
    "expected_logit": "logit(expected_p)",
    "at_risk": "the LA's children at risk of the flag (the binomial's trials), all years",
    "realised_k_g": "least squares over LAs of expected_logit on 1, b_la (referrals) and m_c: "
    "the coefficient of b_la (log-odds per unit log gradient), the truth of "
    "the la_outcome model adjusted for m_c only (with LA covariates: "
    "records_truth.la_outcome_coefficient)",
    "realised_k_m": "that regression's coefficient of m_c",
    "statement": "la_outcomes: the flags' model and the question, in words",
    "c_w": "logit slope per 10 points of w at m_c = 0",
    "c_x": "change of c_w per 10 points of m_c (< 0: steeper in affluent LAs)",
    "ethnicity_mix": "logit(non-White share) = base + urban + income (income - 0.123) + "
    "N(0, la_sd) per LA; non-White children split by 'split'",
    "base": "ethnicity_mix: logit of the non-White share in a rural LSOA of mean income",
    "urban": "ethnicity_mix: added to that logit in urban LSOAs",
    "income": "ethnicity_mix: logit change per unit (0-1) of LSOA income deprivation",
    "la_sd": "ethnicity_mix: SD of the LA's normal deviation of that logit; durations: SDs of "
    "an LA's own log hazard ratio u_a and of its slope u_b on w",
    "split": "ethnicity_mix: shares of Mixed, Asian, Black, Other among non-White children",
    "age_bands": "age band -> [lowest, highest] age at 31 March",
    "realised": "per year: children (rows), referrals (episodes), children reaching each later "
    "threshold, cp_plan_starts (plans, incl. earlier same-year ones), factor rows",
    "la_intercepts_from_dfe": "LA codes whose standardised intercept deviation is the "
    "standardised residual of log(DfE 2018-19 referral rate) on m_c "
    "(the rest are N(0, 1) draws)",
    "a_study": "the intercept of synthetic.PARAMETERS (study population), before level_shift",
    "level_shift": "added to every threshold's intercept so that the records mimic DfE's census "
    "population: log(dfe_referred_children_per_10k / "
    "study_referred_children_per_10k)",
    "cp_plan_shift": "added to the cp_plans intercept on top of level_shift: log of DfE's CP "
    "plan starts per referred child (66,680 / 575,290) over the 0.1000 the "
    "study's ratios give",
    "dfe_referred_children_per_10k": "DfE 2018-19: children referred per 10,000 aged 0-17 "
    "(575,290 / 11.79 million)",
    "study_referred_children_per_10k": "children referred per 10,000 aged 0-17 that "
    "synthetic.PARAMETERS give on the default geography",
    "history": "per year: flagged re-referrals / repeat CP plans and where their earlier "
    "episode is (data.history): linked to the previous year's child, an earlier "
    "episode in the same year, or not in the records",
    "rereferrals": "flagged re-referrals (children) in the year",
    "rereferrals_linked_previous_year": "re-referred children matched to a child of the "
    "previous year (same child_id)",
    "rereferrals_earlier_episode_same_year": "re-referred children given an earlier episode "
    "in the same year",
    "rereferrals_earlier_not_in_records": "re-referred children whose earlier referral is not "
    "in the records (before the first year, or unmatched)",
    "repeat_cp_plans": "flagged repeat CP plans (children) in the year",
    "repeat_cp_linked_previous_year": "repeat plans whose earlier plan is the matched "
    "previous-year child's",
    "repeat_cp_earlier_plan_same_year": "repeat plans given an earlier CP-plan episode in the "
    "same year",
    "repeat_cp_earlier_not_in_records": "repeat plans whose earlier plan is not in the records",
}
