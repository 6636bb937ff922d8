"""The study's findings, each tied to one spec's output and to the truth it should recover
(over 400 lines because the catalogue of ~55 findings, with the truth of each, is data that
a reviewer checks row by row in one place).

``socialgradient suite`` fits every spec in ``models/`` and then :func:`table` reads, for each
:class:`Finding` below, one quantity of that spec's ``release/summary.json`` (its median and
95% equal-tailed interval; a probability has no interval), the figure the study published
(blank if none), and the true value of the synthetic data it was fitted to: ``truth.json``
for the default neighbourhood table, the records' truth for a spec fitted to the synthetic
child records (``[records]``). ``covered`` says whether the truth lies in the 95% interval.
:func:`write` writes ``findings.csv`` and ``findings.md``; :func:`readme_table` is the short
table in the README.

Quantities are dotted paths into ``summary.json``: ``gradient_mean_la``,
``thresholds.cp_plans.gradient_mean_la``, ``stratum_contrast.White/Black``. Where the study's
figure and the synthetic truth differ by design (the 2.33 / 1.39 pair: ``data/README.md``),
the row says so in ``note``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from socialgradient.data.records import CP_CATEGORIES
from socialgradient.data.synthetic.england import OUTCOMES as THRESHOLDS
from socialgradient.data.synthetic.records_truth import la_outcome_coefficient
from socialgradient.model.la_outcome import STEP
from socialgradient.util.files import atomic_write

log = logging.getLogger(__name__)

COLUMNS = (
    "theme",
    "finding",
    "quantity",
    "published",
    "median",
    "lo95",
    "hi95",
    "probability",
    "truth",
    "covered",
    "verdict",
    "spec",
    "note",
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


def _t(outcome: str, key: str) -> Callable[[dict], float]:
    return lambda t: t["thresholds"][outcome][key]


def _ratio(f: Callable, g: Callable) -> Callable[[dict], float]:
    return lambda t: f(t) / g(t)


def _pooled(outcome: str, f: Callable[[dict], float]) -> Callable[[dict], float]:
    """A records gradient as seen in a table that pools the ethnic groups: minorities live
    in more deprived LSOAs and have flatter slopes, so pooled LSOA counts have a flatter
    gradient than the stratum-level truth. The shift is the records truth's own for the
    threshold (``lsoa_level.b_w - b_w``: per-LA fits to the expected pooled totals)."""

    def pooled(t):
        th = t["thresholds"][outcome]
        return f(t) * math.exp(th["lsoa_level"]["b_w"] - th["b_w"])

    return pooled


def _stratum(dim: str, level: str, outcome: str) -> Callable[[dict], float]:
    return lambda t: t["strata"][dim][level]["gradients"][outcome]


def _factor(code: str) -> Callable[[dict], float]:
    return _pooled("assessments", lambda t: t["factors"][code]["gradient"])


def _cp(code: str) -> Callable[[dict], float]:
    return _pooled("cp_plans", lambda t: t["cp_categories"][code]["gradient"])


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
    """Coefficient of ``term`` (``m_c`` or a moderator) in the least-squares regression of the
    realised true LA slopes of referrals on m_c and the LA moderators, over the LAs: the
    association the model's LA-level regression estimates. The synthetic indicators cause
    no count, but they proxy each LA's intervention intensity (its intercept residual),
    which is correlated with its slope (rho = -0.3), so their association is not zero."""

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
    """The default LA table (``data/las.parquet``), the ``la_data`` of the la_outcome specs."""
    from socialgradient import resources

    return pd.read_parquet(resources.path("data", "las.parquet")).set_index("la")


def _la_outcome(flag: str, covariates=RESOURCES) -> Callable[[dict], float]:
    """The LA-level question's truth as the la_outcome model estimates it: the odds ratio
    per :data:`~socialgradient.model.la_outcome.STEP` of log gradient, exp(STEP k), k the realised
    least-squares coefficient of the true LA referral log gradient in the regression of the
    LAs' true expected flag logits on it, m_c and ``covariates`` (of the default LA table,
    as in the specs' ``la_data``): records truth ``la_outcomes[flag]``."""

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
LOCAL = (
    "truth is the category's local gradient at w = 0; its share of CP plans follows a "
    "softmax in w, so over the data's range a log-linear fit is flatter for categories "
    "that lose share to neglect as deprivation rises"
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
        note=POOLED,
    ),
    Finding(
        "needs",
        "Gradient of assessments with a child's physical disability",
        "needs_factors",
        "stratum_gradient.factor_physical_disability_child",
        _factor("6A"),
        note=POOLED,
    ),
    Finding(
        "needs",
        "Neglect steeper than physical disability: ratio",
        "needs_factors",
        "stratum_contrast.factor_neglect/factor_physical_disability_child",
        _ratio(_factor("16A"), _factor("6A")),
    ),
    *(
        Finding(
            "needs",
            f"CP-plan gradient, category {name}",
            "cp_categories",
            f"stratum_gradient.cp_{name}",
            _cp(code),
            note=f"{POOLED}; {LOCAL}",
        )
        for code, name in CP.items()
    ),
    Finding(
        "needs",
        "Neglect steeper than sexual abuse: CP-plan gradient ratio",
        "cp_categories",
        "stratum_contrast.cp_neglect/cp_sexual",
        _ratio(_cp("NEG"), _cp("SAB")),
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


def _get(summary: dict, path: str):
    """The value at dotted ``path``; a ratio ``A/B`` stored only as ``B/A`` is inverted
    (median and interval ends, and ``p_steeper`` -> 1 - ``p_steeper``)."""
    *parents, last = path.split(".")
    value = summary
    for part in parents:
        value = value[part]
    if last in value or "/" not in last:
        return value[last]
    a, b = last.split("/")
    other = value[f"{b}/{a}"]
    out = {"median": 1 / other["median"], "ci95": [1 / other["ci95"][1], 1 / other["ci95"][0]]}
    if "p_steeper" in other:
        out["p_steeper"] = 1 - other["p_steeper"]
    return out


def table(
    summaries: dict[str, dict], truths: dict[str, dict | None], findings=FINDINGS
) -> pd.DataFrame:
    """One row per finding (:data:`COLUMNS`); ``summaries``/``truths`` by spec name (a spec
    not fitted gives a row with blank numbers and verdict ``not fitted``)."""
    rows = []
    for f in findings:
        row = dict.fromkeys(COLUMNS)
        row |= {
            "theme": f.theme,
            "finding": f.finding,
            "quantity": f.quantity,
            "published": f.published,
            "spec": f.spec,
            "note": f.note,
        }
        s = summaries.get(f.spec)
        if s is None:
            rows.append(row | {"verdict": "not fitted"})
            continue
        value = _get(s, f.quantity)
        if isinstance(value, dict):
            row |= {
                "median": value["median"],
                "lo95": value["ci95"][0],
                "hi95": value["ci95"][1],
                "probability": value.get(f.probability)
                if f.probability
                else value.get("p_steeper", value.get("p_positive")),
            }
        else:
            row["median"] = float(value)
        truth = truths.get(f.spec)
        if f.truth is not None and truth is not None:
            row["truth"] = float(f.truth(truth))
            if row["lo95"] is not None:
                row["covered"] = bool(row["lo95"] <= row["truth"] <= row["hi95"])
        row["verdict"] = s["diagnostics"]["verdict"]
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _plain(findings: pd.DataFrame) -> pd.DataFrame:
    """``findings`` with missing values as None (blank cells, ``is None`` tests)."""
    return findings.astype(object).where(findings.notna(), None)


def _estimate(row) -> str:
    """``median [lo95, hi95]``, or the median alone (a probability)."""
    if row.lo95 is None:
        return _fmt(row.median)
    return f"{_fmt(row.median)} [{_fmt(row.lo95)}, {_fmt(row.hi95)}]"


def _fmt(v, digits=4) -> str:
    """``digits`` significant digits (a moderator per pound is ~1e-4), no exponent above."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    return f"{v:#.{digits}g}".rstrip(".") if abs(v) >= 1e-3 or v == 0 else f"{v:.{digits - 1}e}"


def markdown(findings: pd.DataFrame) -> str:
    """``findings.md``: one table per theme, then the misses and the verdicts."""
    findings = _plain(findings)
    lines = [
        "# Findings",
        "",
        "Each row: the study's finding, its figure (blank if none), this package's "
        "posterior median [95% equal-tailed interval] (for a probability, the "
        "probability), the synthetic truth, whether the interval covers it, and the "
        "fit's diagnostics verdict. Gradients are rate ratios (odds ratios for "
        "re-referrals and repeat plans, closure hazard ratios for durations) per "
        "10-point rise in income deprivation. Generated by `socialgradient suite`.",
        "",
    ]
    for theme, part in findings.groupby("theme", sort=False):
        lines += [
            f"## {theme}",
            "",
            "| finding | study | median [95%] | P(> 1, or > 0) | truth | covered "
            "| verdict | spec |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in part.itertuples():
            lines.append(
                f"| {r.finding} | {_fmt(r.published, 3)} | {_estimate(r)} | "
                f"{_fmt(r.probability)} | {_fmt(r.truth)} | {_fmt(r.covered)} | "
                f"{r.verdict} | `{r.spec}` |"
            )
        lines.append("")
    notes = findings[findings["note"].fillna("") != ""]
    if len(notes):
        lines += ["## Notes", ""]
        lines += [f"* {r.finding}: {r.note}." for r in notes.itertuples()]
        lines.append("")
    misses = findings[findings["covered"].eq(False)]
    lines += ["## Misses", ""]
    lines += [
        f"* {r.finding} (`{r.spec}`): truth {_fmt(r.truth)} outside "
        f"[{_fmt(r.lo95)}, {_fmt(r.hi95)}]" + (f"; {r.note}." if r.note else ".")
        for r in misses.itertuples()
    ] or ["None: every stored truth lies inside its 95% interval."]
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- findings:begin -->", "<!-- findings:end -->"


def readme_table(findings: pd.DataFrame) -> str:
    """The README's findings table: finding | study | this package (median [95%]) | truth."""
    lines = [
        "| finding | study | this package, default data: median [95%] | truth |",
        "|---|---|---|---|",
    ]
    for r in _plain(findings).itertuples():
        est = _estimate(r)
        if r.covered is False:
            est += " (misses truth)"
        if r.verdict not in ("PASS", None):
            est += f" ({r.verdict})"
        lines.append(f"| {r.finding} | {_fmt(r.published, 3)} | {est} | {_fmt(r.truth)} |")
    return "\n".join(lines)


def update_readme(readme: Path, findings_csv: Path) -> bool:
    """Replace the table between the README's findings markers with :func:`readme_table`
    of ``findings_csv``; returns whether the file changed."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme} has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    table = readme_table(pd.read_csv(findings_csv))
    new = f"{head}{BEGIN}\n{table}\n{END}{tail}"
    if new != text:
        atomic_write(readme, lambda tmp: Path(tmp).write_text(new, encoding="utf-8", newline="\n"))
    return new != text


def additive(quantity: str) -> bool:
    """Whether a quantity is on an additive scale (log effects, correlations: no effect = 0)
    rather than a ratio (gradients, odds and hazard ratios: no effect = 1)."""
    return quantity.endswith(("contextual_effect", "gradient_deprivation_corr", ".slope"))


def figure(findings: pd.DataFrame, theme: str):
    """A forest plot of one theme: each finding's median and 95% interval, the truth (x)
    and the study's figure (diamond); ratios on a log axis around 1, additive quantities
    (log effects, correlations) in a second panel around 0. Probabilities are left out."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    part = findings[(findings["theme"] == theme) & findings["lo95"].notna()]
    groups = [
        (False, part[~part["quantity"].map(additive)]),
        (True, part[part["quantity"].map(additive)]),
    ]
    groups = [(add, g) for add, g in groups if len(g)]
    heights = [len(g) for _, g in groups]
    fig = Figure(figsize=(11, 1.4 + 0.34 * sum(heights)), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (add, g) in zip(axes, groups, strict=True):
        y = np.arange(len(g))[::-1]
        ax.hlines(y, g["lo95"], g["hi95"], color="tab:blue", lw=2, label="95% interval")
        ax.plot(g["median"], y, "o", color="tab:blue", label="posterior median")
        ax.plot(g["truth"], y, "x", color="black", ms=7, label="synthetic truth")
        if g["published"].notna().any():
            ax.plot(g["published"], y, "D", mfc="none", color="tab:red", label="study")
        ax.axvline(0.0 if add else 1.0, color="grey", lw=0.8, ls=":")
        ax.set_yticks(y, g["finding"].str.slice(0, 64), fontsize=8)
        if add:
            ax.set_xlabel("log-scale effect or correlation (0 = none)")
        else:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.tick_params(axis="x", which="minor", labelsize=7)
            ax.set_xlabel("ratio per 10-point rise in deprivation (1 = none)")
    axes[0].legend(loc="lower right", fontsize=7, ncols=2)
    axes[0].set_title(f"Findings: {theme}")
    return fig


def write(findings: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """``findings.csv``, ``findings.md`` and ``figures/findings_<theme>.png`` in
    ``out_dir``, each written atomically."""
    out_dir = Path(out_dir)
    paths = {
        "csv": atomic_write(
            out_dir / "findings.csv",
            lambda tmp: findings.to_csv(tmp, index=False, lineterminator="\n"),
        ),
        "md": atomic_write(
            out_dir / "findings.md",
            lambda tmp: Path(tmp).write_text(markdown(findings), encoding="utf-8", newline="\n"),
        ),
    }
    for theme in findings["theme"].unique():
        if findings.loc[findings["theme"] == theme, "lo95"].notna().any():
            fig = figure(findings, theme)
            paths[theme] = atomic_write(
                out_dir / "figures" / f"findings_{theme}.png",
                lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=120),
            )
    return paths


if __name__ == "__main__":  # python -m socialgradient.study.findings FINDINGS_CSV README
    import sys

    from socialgradient.util import progress

    progress.configure()
    changed = update_readme(Path(sys.argv[2]), Path(sys.argv[1]))
    log.info("%s: %s", sys.argv[2], "updated" if changed else "already up to date")
