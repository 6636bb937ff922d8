"""The published site's pages: index, one page per LA, methods and data (HTML strings).

Each builder takes the :class:`Released` numbers (read from ``release/`` by
:mod:`socialgradient.release.publish`) and returns a page from :mod:`.pages`.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from importlib import metadata

import pandas as pd

from socialgradient.release import la_bands, neighbours, pages
from socialgradient.release.pages import esc, interval, num
from socialgradient.release.site_figures import versus_england

HEADLINE = (  # summary.json key -> what it is
    ("gradient_mean_la", "Social gradient in an LA of average deprivation (England)"),
    ("gradient_less_deprived_la", "Social gradient in a less deprived LA"),
    ("gradient_more_deprived_la", "Social gradient in a more deprived LA"),
    ("interaction", "Change in the gradient per 10 points of LA deprivation"),
    ("between_la_gradient", "Between-LA gradient"),
    ("contextual_effect", "Inverse intervention (contextual) effect, log rate ratio"),
    ("gradient_deprivation_corr", "Correlation of LA gradients with LA deprivation"),
)


@dataclass
class Released:
    """What the site is built from: the files of ``release/``, as read."""

    summary: dict
    las: pd.DataFrame
    ppc: dict
    log: list[dict]
    info: dict
    names: dict[str, str]
    figures: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # src, alt, caption
    screening: list = field(default_factory=list)
    ees_files: list[str] = field(default_factory=list)
    bands: pd.DataFrame | None = None  # la_bands.csv, where the release has it

    @property
    def england(self) -> dict:
        """England's gradient (``gradient_mean_la``: median, ci95, ci80)."""
        return self.summary["gradient_mean_la"]

    @property
    def where(self) -> pd.Series:
        """Each LA's 95% interval against England's median (above, below, covers)."""
        return versus_england(self.las, float(self.england["median"]))


def _headline(s: dict) -> str:
    rows = []
    for key, what in HEADLINE:
        v = s.get(key)
        if not isinstance(v, dict) or "median" not in v:
            continue
        p = v.get("p_negative")
        rows.append(
            [
                (esc(what), None),
                (num(v["median"]), None),
                (interval(*v["ci80"]), None),
                (interval(*v["ci95"]), None),
                (num(p) if p is not None else "&ndash;", None),
            ]
        )
    return pages.table(
        "Headline results (posterior medians and equal-tailed credible intervals)",
        [
            ("Quantity", "text"),
            ("Median", "number"),
            ("80% interval", "number"),
            ("95% interval", "number"),
            ("P(inverse intervention: effect < 0)", "number"),
        ],
        rows,
    )


def index_page(r: Released) -> str:
    """Build the index: headline table, figures, the sortable LA table and links to every LA."""
    s = r.summary
    eng = r.england
    ctx = s.get("contextual_effect", {})
    where = r.where.value_counts()
    outcome = esc(s.get("model", {}).get("outcome", "cases"))
    body = [
        f"<h1>{esc(pages.SITE_NAME)}: {outcome}</h1>",
        f'<p class="lede">Across England, {outcome} rise by a factor of {num(eng["median"])} '
        f"(95% credible interval {interval(*eng['ci95'])}) for every 10 percentage-point rise "
        "in the share of a neighbourhood's families in income deprivation, within an LA of "
        "average deprivation.</p>",
    ]
    if "p_negative" in ctx:
        body.append(
            f'<div class="panel"><p>Probability of an inverse intervention effect (at equal '
            f"neighbourhood deprivation, more deprived LAs intervene less): "
            f"<strong>{num(ctx['p_negative'])}</strong>.</p></div>"
        )
    body.append(
        f"<p>Model diagnostics: <strong>{esc(s['diagnostics']['verdict'])}</strong> "
        '(<a href="methods.html#diagnostics">reasons</a>).</p>'
    )
    body += ["<h2>Headline results</h2>", _headline(s), "<h2>Figures</h2>"]
    for key in ("gradient_curve", "la_map", "la_forest", "inverse_intervention"):
        if key in r.figures:
            body.append(pages.figure(*r.figures[key]))
    if "la_map" not in r.figures:
        body.append(
            "<p>No LA map: the ONS boundary file was not available when this site was built "
            "(the table below has every LA).</p>"
        )
    body += [
        "<h2>Every local authority</h2>",
        f"<p>{where.get('above', 0)} LAs have a gradient steeper than England's (whole 95% "
        f"interval above), {where.get('below', 0)} less steep, and {where.get('covers', 0)} "
        "cannot be told apart from England's.</p>",
        pages.table(
            f"Gradient score of each of the {len(r.las)} local authorities",
            pages.la_headers(r.las),
            pages.la_rows(r.las, r.where, r.names, ""),
            table_id="la-table",
            sortable=True,
        ),
    ]
    links = "".join(
        f'<li><a href="la/{esc(c)}.html">{esc(r.names.get(str(c), c))}</a></li>'
        for c in sorted(r.las["la"].astype(str), key=lambda c: r.names.get(c, c))
    )
    body += ["<h2>Pages by local authority</h2>", f'<ul class="columns">{links}</ul>']
    return pages.page("Results", "\n".join(body), 0, "Social gradient results by LA")


def la_page(r: Released, code: str) -> str:
    """Build one LA's page: its gradient beside England's and its statistical neighbours'."""
    las = r.las.assign(la=r.las["la"].astype(str)).set_index("la", drop=False)
    row = las.loc[code]
    info = r.info[code]
    name = r.names.get(code, code)
    where = r.where.set_axis(las.index)[code]
    eng = r.england
    body = [
        f"<h1>{esc(name)}</h1>",
        f'<p class="secondary">{esc(code)}'
        + (f", DfE LA number {esc(info.number)}" if info.number else "")
        + (f", {esc(info.region_name)}" if info.region_name else "")
        + "</p>",
        f'<p class="lede">Social gradient score {num(row["gradient_median"])} (80% interval '
        f"{interval(row['gradient_lo80'], row['gradient_hi80'])}; 95% interval "
        f"{interval(row['gradient_lo95'], row['gradient_hi95'])}) against England's "
        f"{num(eng['median'])} (95% interval {interval(*eng['ci95'])}).</p>",
        f'<div class="panel"><p>{pages.tag(where)} In {esc(name)}, rates rise by a factor of '
        f"about {num(row['gradient_median'])} for every 10 percentage-point rise in the share "
        f"of a neighbourhood's families in income deprivation. That gradient is "
        f"{pages.verdict_words(where)}.</p></div>",
    ]
    if "p_steeper_than_england" in row and pd.notna(row["p_steeper_than_england"]):
        body.append(
            f"<p>Probability that its gradient is steeper than England's: "
            f"<strong>{num(row['p_steeper_than_england'])}</strong>.</p>"
        )
    else:
        body.append(
            "<p>The probability that its gradient is steeper than England's is not in this "
            "release (its <code>la_gradients.csv</code> has no <code>p_steeper_than_england"
            "</code> column); the interval above says whether it is clearly steeper.</p>"
        )
    body.append(f"<p>Rank among {len(las)} LAs (1 = steepest): {pages.rank_text(row)}.</p>")
    sns = [c for c in info.neighbours if c in las.index]
    missing = [c for c in info.neighbours if c not in las.index]
    body.append("<h2>Beside England and its statistical neighbours</h2>")
    if info.neighbours:
        body.append(
            f"<p>DfE's statistical neighbours of {esc(name)} (closest first) in this release: "
            f"{len(sns)} of {len(info.neighbours)}"
            + (
                f"; without results here: {esc(', '.join(map(neighbours.name_of, missing)))}"
                if missing
                else ""
            )
            + ".</p>"
        )
    else:
        body.append(
            f"<p>{esc(name)} has no DfE statistical neighbours in the April 2021 groupings "
            "(it has no DfE LA number there, e.g. an authority created later).</p>"
        )
    if f"la/{code}" in r.figures:
        src, alt, caption = r.figures[f"la/{code}"]
        body.append(pages.figure(src, alt, caption))
    sub = las.loc[[code, *sns]]
    rows = pages.la_rows(
        sub.reset_index(drop=True),
        r.where.set_axis(las.index)[sub.index].reset_index(drop=True),
        r.names,
        "../",
    )
    england_row = [
        ("England", None),
        ("E92000001", None),
        (num(eng["median"]), None),
        (interval(*eng["ci80"]), None),
        (interval(*eng["ci95"]), None),
        *([("&ndash;", None)] if "p_steeper_than_england" in las.columns else []),
        ("&ndash;", None),
        ("&ndash;", None),
    ]
    body.append(
        pages.table(
            f"{name}, England and its statistical neighbours",
            pages.la_headers(las),
            [rows[0], england_row, *rows[1:]],
        )
    )
    body += [
        "<h2>Rates</h2>",
        pages.table(
            f"Children and {r.summary.get('model', {}).get('outcome', 'cases')} in {name} "
            "(disclosure-protected)",
            [("Measure", "text"), ("Value", "number")],
            [
                [("Children", None), (num(row.get("children"), 0), None)],
                [("Cases (protected count)", None), (_count(row.get("cases")), None)],
                [("Rate per 10,000 children", None), (_count(row.get("rate_per_10k"), 1), None)],
            ],
        ),
        la_bands.section(
            r.bands,
            code,
            name,
            esc(r.summary.get("model", {}).get("outcome", "cases")),
            r.log[0]["rule"] if r.log else {},
        ),
    ]
    return pages.page(name, "\n".join(body), 1, f"Social gradient in {name}")


def _count(value, dp: int = 0) -> str:
    if value is None or pd.isna(value):
        return '<abbr title="hidden by the disclosure gate">c</abbr>'
    return num(value, dp)


def methods_page(r: Released) -> str:
    """Build the methods page.

    Model, priors, diagnostics, PPC, data sources, disclosure control, software, reproduction.
    """
    s = r.summary
    model = s.get("model", {})
    d = s["diagnostics"]
    reasons = "".join(f"<li>{esc(x)}</li>" for x in d.get("reasons", [])) or "<li>none</li>"
    spec = esc(json.dumps(model.get("spec", {}), indent=2, sort_keys=True))
    rule = r.log[0]["rule"] if r.log else {}
    check = r.log[0].get("check", {}) if r.log else {}
    pert = r.log[0].get("perturbation") if r.log else None
    hidden = sum(int(e.get("suppressed", 0)) for e in r.log)
    versions = {"socialgradient": _version("socialgradient"), "python": platform.python_version()}
    versions |= {p: _version(p) for p in ("pymc", "arviz", "numpy", "pandas", "matplotlib")}
    body = [
        "<h1>Methods</h1>",
        "<h2>Model</h2>",
        f"<p>Family: {esc(model.get('family', s.get('family', '')))}; outcome: "
        f"{esc(model.get('outcome', ''))}; {esc(model.get('n_la', len(r.las)))} LAs. For "
        "neighbourhood <var>i</var> in local authority <var>j</var>, with <var>x</var> the share "
        "of families in income deprivation in units of 10 percentage points:</p>",
        '<p class="eq">log &mu;<sub><var>i</var></sub> = log <var>children</var><sub><var>i'
        "</var></sub> + <var>a</var> + <var>a</var><sub><var>j</var></sub> + (<var>b</var>"
        "<sub>w</sub> + <var>b</var><sub>x</sub> <var>m</var><sub><var>j</var></sub> + "
        "<var>b</var><sub><var>j</var></sub>) <var>w</var><sub><var>i</var></sub> + <var>b"
        "</var><sub>b</sub> <var>m</var><sub><var>j</var></sub></p>",
        "<p>where <var>w</var> is the neighbourhood's deprivation minus its LA's child-weighted "
        "mean and <var>m</var> the LA's mean minus England's; (<var>a<sub>j</sub></var>, "
        "<var>b<sub>j</sub></var>) are correlated LA effects (LKJ prior). An LA's gradient "
        "score is exp(<var>b</var><sub>w</sub> + <var>b</var><sub>x</sub> <var>m<sub>j</sub>"
        "</var> + <var>b<sub>j</sub></var>); the inverse intervention (contextual) effect is "
        "<var>b</var><sub>b</sub> &minus; <var>b</var><sub>w</sub>.</p>",
        "<h3>Priors</h3>",
        _priors(model.get("spec", {}), model.get("family", s.get("family", ""))),
        "<h3>Specification as fitted</h3>",
        f"<pre>{spec}</pre>",
        '<h2 id="diagnostics">Diagnostics</h2>',
        f"<p>Verdict: <strong>{esc(d['verdict'])}</strong>. Largest R-hat "
        f"{num(d.get('rhat_max'), 3)}, smallest bulk ESS {num(d.get('ess_bulk_min'), 0)}, "
        f"divergences {esc(d.get('divergences'))}.</p><ul>{reasons}</ul>",
        '<h2 id="ppc">Posterior predictive check</h2>',
    ]
    if "ppc" in r.figures:
        body.append(pages.figure(*r.figures["ppc"]))
    body += [
        "<h2>Data sources</h2>",
        f"<p>Data id {esc(model.get('data_id', 'not recorded'))}, spec hash "
        f"{esc(model.get('spec_hash', 'not recorded'))}; "
        f"{esc(model.get('n_lsoa', ''))} neighbourhoods (LSOAs, count perturbed). LA names and "
        "DfE statistical neighbours: DfE, Children's services statistical neighbour "
        "benchmarking tool, April 2021 groupings (OGL v3.0); LA codes: ONS.</p>",
        "<h2>Disclosure control</h2>",
        f"<p>Counts below {esc(rule.get('threshold'))} are not published"
        + (
            ", with secondary suppression so hidden counts cannot be recovered"
            if rule.get("secondary")
            else ""
        )
        + (
            f"; counts are perturbed ({esc(pert.get('method'))}, noise at most "
            f"{esc(pert.get('max_noise'))})"
            if pert
            else ""
        )
        + f"; every hidden total stays uncertain by at least {esc(rule.get('protection'))}. "
        f"Check: {esc(check.get('method', 'none'))}. In all, {hidden} published "
        "totals are hidden (shown as c); which ones and why is not said.</p>",
        "<h2>Software</h2><p>Versions where this site was built (the output set records the "
        "spec and data hashes of the fit, not its software):</p>",
        "<ul>" + "".join(f"<li>{esc(k)} {esc(v)}</li>" for k, v in versions.items()) + "</ul>",
        "<h2>How to reproduce</h2>",
        "<pre>make run                                  # fit: writes the output set out/\n"
        "socialgradient publish out --out site      # this site, from out/release/ only</pre>",
    ]
    return pages.page("Methods", "\n".join(body), 0, "How the results were made")


PRIORS = (  # Priors field -> (parameter, distribution)
    ("a", "intercept a", "Normal(mean {a_mean}, sd {a})"),
    ("b_w", "within-LA slope b_w", "Normal(0, {b_w})"),
    ("b_b", "between-LA slope b_b", "Normal(0, {b_b})"),
    ("b_x", "cross-level interaction b_x", "Normal(0, {b_x})"),
    ("la_sd_intercept", "SD of LA intercepts", "half-Normal({la_sd_intercept})"),
    ("la_sd_slope", "SD of LA slopes", "half-Normal({la_sd_slope})"),
    ("lkj_eta", "correlation of LA effects", "LKJ(eta {lkj_eta})"),
    ("inv_sqrt_phi", "1/sqrt(dispersion), negative binomial", "half-Normal({inv_sqrt_phi})"),
)


def _priors(spec: dict, family: str) -> str:
    """Tabulate the priors of the fitted spec (package defaults where the spec sets none)."""
    import dataclasses

    from socialgradient.model import families
    from socialgradient.spec import Priors

    fam = families.get(family)
    values = dataclasses.asdict(Priors()) | dict(spec.get("priors") or {})
    if values.get("a_mean") is None:
        values["a_mean"] = f"{fam.a_prior_mean:g}"
    rows = [
        [(esc(what), None), (esc(form.format(**values)), None)]
        for key, what, form in PRIORS
        if key != "inv_sqrt_phi" or key in fam.derived
    ]
    return pages.table(
        "Priors (scales in the model's units: deprivation in 10 percentage points)",
        [("Parameter", "text"), ("Prior", "text")],
        rows,
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def data_page(r: Released) -> str:
    """Build the data page: the EES files and the result of each screening check."""
    files = "".join(f'<li><a href="{esc(f)}">{esc(f)}</a></li>' for f in r.ees_files)
    rows = [
        [(esc(c.check), None), (esc(c.result), None), (esc(c.message), None)] for c in r.screening
    ]
    body = [
        "<h1>Data</h1>",
        "<p>The per-LA results as Explore Education Statistics (EES) tidy data, with its "
        "metadata file:</p>",
        f"<ul>{files}</ul>",
        pages.table(
            "Checks of DfE's data screener (eesyscreener) run on these files",
            [("Check", "text"), ("Result", "text"), ("Detail", "text")],
            rows,
        ),
    ]
    return pages.page("Data", "\n".join(body), 1, "Per-LA results as EES data")
