r"""The between-LA social gradient on the real DfE tables: an LA x year panel model
(over 400 lines because the model's statement, fit, summaries and output set are read together).

For LA :math:`l` (fixed geography, :mod:`socialgradient.panel.data`) in reporting year
:math:`t`, with :math:`n_{lt}` children aged 0-17 and LA deprivation :math:`m_l` (child-
weighted mean IoD2019 income score minus the national mean, in 10-point units):

.. math::

    \log \mathrm{E}[y_{lt}] = \log n_{lt} + \alpha_l + c_t + d_t m_l, \qquad
    \alpha_l \sim \mathrm{N}(a + b\, m_l,\ \sigma_{LA})

:math:`c_t` and :math:`d_t` sum to zero over the years, so :math:`\exp(b + d_t)` is the
**between-LA social gradient in year t** (the rate ratio between LAs 10 points apart in
income deprivation), :math:`\exp(b)` its geometric mean over the years and
:math:`\exp(d_T - d_{t_0})` its change from the first to the last year. Family: negative
binomial (NB2, variance :math:`\mu + \mu^2/\phi`) or Poisson. Only observed cells enter the
likelihood (see the panel's ``reason`` column).

Priors (log rate per child):

================  =============================  ==============================================
a                 Normal(-4, 2.5)                log rate at mean deprivation, average year
b                 Normal(0, 1)                   log gradient per 10 points, average year
la_sd             HalfNormal(1)                  SD of LA effects around the gradient line
year_effect       ZeroSumNormal(0.5)             log rate ratio of year t to the average year;
                                                 ~150 LAs a year pin these down; independent
                                                 years let COVID-era dips show
gradient_change   walk: steps ~ N(0, d_sd),      change in the log gradient, mean zero over
                  d_sd ~ HalfNormal(0.1)         years; a random walk (default) follows any
                  linear: b_trend*(t - mean t),  shape, shrinking to a flat line when the data
                  b_trend ~ N(0, 0.05)           show none; 'linear' gives one trend number
phi               1/sqrt(phi) ~ HalfNormal(1)    NB2 dispersion, shrinks towards Poisson
================  =============================  ==============================================

Parameterisation (tested on the real referrals panel, 150 LAs x 13 years): every LA has
up to 13 years of counts in the hundreds or thousands, so its effect is far better
identified by its data than by the prior; :math:`\alpha_l` is sampled *centred* on
:math:`a + b m_l` (``la_effects = "centred"``, default): 2 x 300 draws gave bulk ESS 277
where the non-centred form gave 79 (on ``b``). Year and gradient effects sum to zero:
with the first year as reference instead, every LA effect is correlated with every year
effect, and ``a`` mixed with bulk ESS 15-30. The random-walk steps are non-centred (year-
to-year changes are small next to their prior); the walk needs ``target_accept = 0.95``
(0.8 gave 3 divergences in 4,000 draws). ``la_effect`` = :math:`\alpha_l - a - b m_l`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from socialgradient.data.sources.geo import DFE_MERGES
from socialgradient.panel.data import FIRST_YEAR, MEASURES, model_inputs, panel_hash
from socialgradient.sampling.fit import sample
from socialgradient.spec import FAMILIES, Sampling, SpecMethods
from socialgradient.util.progress import step

log = logging.getLogger(__name__)

CHANGES = ("walk", "linear", "none")
PARAMETERISATIONS = ("centred", "noncentred")
PARAMETERS = (
    "a",
    "b",
    "la_sd",
    "phi",
    "alpha",
    "la_z",
    "year_effect",
    "gradient_change",
    "d_sd",
    "b_trend",
)
INTERVAL_COLUMNS = ["median", "lo95", "hi95", "lo80", "hi80"]  # of _quantiles


@dataclass(frozen=True)
class PanelSpec(SpecMethods):
    """An LA panel analysis (``models/la_panel_*.toml``)."""

    measure: str = "referrals"
    family: str = "negbin"
    name: str = ""
    first_year: int = FIRST_YEAR
    last_year: int = 0  # 0: as far as the files go
    gradient_change: str = "walk"
    la_effects: str = "centred"
    dfe_merges: bool = False  # True: Isles of Scilly with Cornwall, City of London with Hackney
    target_accept: float = 0.95  # nutpie/PyMC step-size adaptation target
    sampling: Sampling = field(default_factory=Sampling)

    def __post_init__(self):
        for value, allowed, what in (
            (self.measure, tuple(MEASURES), "measure"),
            (self.family, FAMILIES, "family"),
            (self.gradient_change, CHANGES, "gradient_change"),
            (self.la_effects, PARAMETERISATIONS, "la_effects"),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}: choose one of {allowed}")
        if not self.name:
            object.__setattr__(self, "name", f"la_panel_{self.measure}_{self.family}")


def load_panel_spec(path) -> PanelSpec:
    with open(path, "rb") as f:
        return PanelSpec.from_dict(tomllib.load(f))


def build_panel_model(panel: pd.DataFrame, spec: PanelSpec) -> pm.Model:
    """The LA panel model (module docstring) of an assembled panel.

    Free variables ``a``, ``b``, ``la_sd``, ``alpha`` (centred; ``la_z`` non-centred, dims
    la), ``year_effect`` (zero-sum, dims year), ``d_sd`` + ``d_z`` (walk) or ``b_trend``
    (linear), ``inv_sqrt_phi`` (negbin). Deterministics ``la_effect`` (la), ``year_effect``,
    ``gradient_change``, ``log_gradient``, ``gradient`` (year), ``phi``. Observed ``y``
    (dim obs).
    """
    d = model_inputs(panel)
    n_year = len(d["year"])
    coords = {
        "la": d["la"],
        "year": d["year"],
        "year_contrast": d["year"][1:],
        "obs": np.arange(len(d["y"])),
    }
    li, yi = d["la_index"], d["year_index"]
    with pm.Model(coords=coords) as model:
        m = pm.Data("m", d["m"], dims="la")
        log_n = pm.Data("log_exposure", np.log(d["exposure"]), dims="obs")
        a = pm.Normal("a", -4.0, 2.5)
        b = pm.Normal("b", 0.0, 1.0)
        la_sd = pm.HalfNormal("la_sd", 1.0)
        if spec.la_effects == "centred":
            alpha = pm.Normal("alpha", a + b * m, la_sd, dims="la")
            pm.Deterministic("la_effect", alpha - a - b * m, dims="la")
        else:
            z = pm.Normal("la_z", 0.0, 1.0, dims="la")
            u = pm.Deterministic("la_effect", la_sd * z, dims="la")
            alpha = a + b * m + u
        c = pm.ZeroSumNormal("year_effect", 0.5, dims="year") if n_year > 1 else pt.zeros(1)
        t = np.arange(n_year) - (n_year - 1) / 2
        if spec.gradient_change == "walk" and n_year > 1:
            d_sd = pm.HalfNormal("d_sd", 0.1)
            d_z = pm.Normal("d_z", 0.0, 1.0, dims="year_contrast")
            walk = pt.concatenate([pt.zeros(1), pt.cumsum(d_sd * d_z)])
            change = walk - pt.mean(walk)
        elif spec.gradient_change == "linear":
            change = pm.Normal("b_trend", 0.0, 0.05) * t
        else:
            change = pt.zeros(n_year)
        change = pm.Deterministic("gradient_change", change, dims="year")
        log_grad = pm.Deterministic("log_gradient", b + change, dims="year")
        pm.Deterministic("gradient", pt.exp(log_grad), dims="year")
        mu = pt.exp(log_n + alpha[li] + c[yi] + change[yi] * m[li])
        if spec.family == "negbin":
            inv = pm.HalfNormal("inv_sqrt_phi", 1.0)
            phi = pm.Deterministic("phi", 1.0 / pt.square(inv))
            pm.NegativeBinomial("y", mu=mu, alpha=phi, observed=d["y"], dims="obs")
        else:
            pm.Poisson("y", mu=mu, observed=d["y"], dims="obs")
    return model


def fit_panel(
    panel: pd.DataFrame, spec: PanelSpec, report: dict | None = None, progressbar: bool = False
) -> xr.DataTree:
    """Sample the panel model with nutpie (or PyMC); a DataTree with ``posterior``,
    ``sample_stats``, ``observed_data``, ``constant_data`` and attrs ``spec``,
    ``spec_hash``, ``data_hash``, ``measure``, timings and the panel ``report`` (JSON)."""
    model = build_panel_model(panel, spec)
    tree, compile_seconds, sampling_seconds = sample(
        model, spec.sampling, progressbar, target_accept=spec.target_accept
    )
    d = model_inputs(panel)
    obs = panel[panel["observed"]]
    cells = {
        "obs": np.arange(len(obs)),
        "obs_la": ("obs", d["la"][d["la_index"]]),
        "obs_year": ("obs", d["year"][d["year_index"]]),
    }
    las = panel.drop_duplicates("la").set_index("la").reindex(d["la"])
    out = xr.DataTree.from_dict(
        {
            "posterior": tree["posterior"].to_dataset(),
            "sample_stats": tree["sample_stats"].to_dataset(),
            "observed_data": xr.Dataset({"y": ("obs", d["y"])}, coords=cells),
            "constant_data": xr.Dataset(
                {
                    "exposure": ("obs", d["exposure"]),
                    "m": ("la", d["m"]),
                    "income": ("la", las["income"].to_numpy(float)),
                    "la_name": ("la", las["la_name"].astype(str).to_numpy()),
                },
                coords={**cells, "la": d["la"], "year": d["year"]},
            ),
        }
    )
    out.attrs.update(
        spec=spec.to_json(),
        spec_hash=spec.hash,
        data_hash=panel_hash(panel),
        measure=spec.measure,
        family=spec.family,
        report=json.dumps(report or {}, default=str),
        compile_seconds=compile_seconds,
        sampling_seconds=sampling_seconds,
    )
    return out


def diagnose_panel(tree: xr.DataTree) -> dict:
    """:func:`socialgradient.results.checks.diagnose` (same PASS/WARN/FAIL rules) over the panel
    model's parameters: a, b, la_sd, phi, every LA effect, year effect and gradient change."""
    from socialgradient.results import checks

    return checks.diagnose(tree, PARAMETERS)


def _quantiles(draws: xr.DataArray) -> pd.DataFrame:
    """Median and ArviZ's 95% and 80% ETIs (:func:`socialgradient.results.gradients.describe`, as
    every fit's intervals), one row per value of the draws' other dim (or one row)."""
    from socialgradient.results.gradients import describe

    d = describe(draws)
    columns = {"median": d["median"]}
    for prob in (95, 80):
        for name, bound in (("lo", "lower"), ("hi", "upper")):
            columns[f"{name}{prob}"] = d[f"eti{prob}"].sel(ci_bound=bound, drop=True)
    table = xr.Dataset(columns).drop_vars([c for c in d.coords if c not in d.dims])
    if not table.dims:
        return pd.DataFrame({k: [float(v)] for k, v in table.items()})
    return table.to_dataframe()[INTERVAL_COLUMNS]


def gradient_by_year(tree: xr.DataTree) -> pd.DataFrame:
    """exp(b + d_t) per year: median, 95% and 80% ETIs (rate ratio per 10 points)."""
    table = _quantiles(tree["posterior"]["gradient"])
    table.index = table.index.astype(int)
    return table.rename_axis("year").reset_index()


def summarise_panel(tree: xr.DataTree, diagnostics: dict | None = None) -> dict:
    """Headline numbers: gradient by year, its change first -> last year (ratio of
    gradients), la_sd, phi, diagnostics."""
    post = tree["posterior"]

    def one(x):
        row = _quantiles(x).iloc[0]
        return {
            "median": float(row["median"]),
            "ci95": [float(row["lo95"]), float(row["hi95"])],
            "ci80": [float(row["lo80"]), float(row["hi80"])],
        }

    years = post["gradient"]["year"].values
    out = {
        "measure": tree.attrs["measure"],
        "family": tree.attrs["family"],
        "gradient_by_year": {int(y): one(post["gradient"].sel(year=y)) for y in years},
        "gradient_ratio_last_vs_first": one(
            np.exp(post["gradient_change"].isel(year=-1) - post["gradient_change"].isel(year=0))
        ),
    }
    for name in ("la_sd", "phi"):
        if name in post:
            out[name] = one(post[name])
    out["diagnostics"] = diagnostics or diagnose_panel(tree)
    return out


def la_table(tree: xr.DataTree, panel: pd.DataFrame) -> pd.DataFrame:
    """One row per LA: deprivation, observed rate per 10,000 over its observed years, the
    LA effect (median and 95% ETI, log rate ratio to the gradient line)."""
    obs = panel[panel["observed"]].groupby("la")[["count", "exposure"]].sum()
    las = panel.drop_duplicates("la").set_index("la")[["la_name", "income", "m"]]
    eff = _quantiles(tree["posterior"]["la_effect"])[["median", "lo95", "hi95"]]
    eff.columns = ["la_effect_" + c for c in eff.columns]
    table = las.join(obs).join(eff)
    table["rate_per_10k"] = table["count"] / table["exposure"] * 1e4
    table["years_observed"] = panel[panel["observed"]].groupby("la").size()
    return table.rename_axis("la").reset_index()


def plot_gradient(tree: xr.DataTree):
    """The between-LA gradient by year, median with 80% and 95% ETIs."""
    import matplotlib.pyplot as plt

    g = gradient_by_year(tree)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(g["year"], g["lo95"], g["hi95"], alpha=0.2, color="C0", label="95% ETI")
    ax.fill_between(g["year"], g["lo80"], g["hi80"], alpha=0.35, color="C0", label="80% ETI")
    ax.plot(g["year"], g["median"], "o-", color="C0", label="median")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(
        xlabel="year ending 31 March",
        ylabel="rate ratio per 10 points of LA deprivation",
        title=f"Between-LA social gradient: {tree.attrs['measure']}",
    )
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def plot_scatter(tree: xr.DataTree, panel: pd.DataFrame, year: int | None = None):
    """LA rates per 10,000 against LA deprivation in ``year`` (default: last), with the
    fitted population line exp(a + c_t + (b + d_t) m) and its 95% band."""
    import matplotlib.pyplot as plt

    post = tree["posterior"]
    year = int(post["year"].values[-1]) if year is None else int(year)
    rows = panel[(panel["year"] == year) & panel["observed"]]
    grid = np.linspace(panel["m"].min(), panel["m"].max(), 50)
    lin = (
        post["a"]
        + post["year_effect"].sel(year=year)
        + post["log_gradient"].sel(year=year) * xr.DataArray(grid, dims="m")
    )
    band = _quantiles(np.exp(lin))[["lo95", "median", "hi95"]].to_numpy().T * 1e4
    x_bar = float(json.loads(tree.attrs.get("report", "{}")).get("x_bar") or 0.0)
    to_income = grid / 10 + x_bar
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(rows["income"], rows["count"] / rows["exposure"] * 1e4, s=12, alpha=0.7)
    ax.fill_between(to_income, band[0], band[2], alpha=0.25, color="C1", label="95% ETI")
    ax.plot(to_income, band[1], color="C1", label="fitted (LA effect 0)")
    ax.set_yscale("log")
    ax.set(
        xlabel="LA income deprivation (child-weighted mean IoD2019 income score)",
        ylabel="rate per 10,000 children (log scale)",
        title=f"{tree.attrs['measure']} by LA, year to 31 March {year}",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


PUBLISHED = "DfE published statistics (public, disclosure-controlled at source)"
PANEL_README = """NOT FOR RELEASE

This folder holds the full posterior tree of the LA panel (posterior.nc: every draw, the
observed LA x year counts and exposures). Those counts are DfE's published figures, but the
tree stays here by the same rule as every fit's. Keep it inside the secure environment.

What may be published is in ../release/.
"""


def write_panel(tree: xr.DataTree, panel: pd.DataFrame, out, boundaries=None) -> dict:
    """Write the panel's output set to ``out``, whole or not at all
    (:class:`socialgradient.util.outputs.Writer`). ``release/``: ``panel.csv`` and
    ``la_effects.csv`` (LA counts: DfE's published figures, through the disclosure gate under
    a logged reason), ``gradient_by_year.csv``, ``summary.json``, ``panel_report.json``,
    figures ``gradient_by_year.png``, ``la_scatter.png`` and, given the boundary GeoJSON,
    ``la_map.png`` (with ``map_report.json``: codes matched and unmatched), and
    ``disclosure_log.jsonl``. ``internal/``: ``posterior.nc``.
    Returns ``{"summary": ..., "paths": {file name: final path}}``."""
    import matplotlib.pyplot as plt

    from socialgradient.panel.data import map_units
    from socialgradient.release import disclosure
    from socialgradient.results.maps import choropleth, read_boundaries
    from socialgradient.sampling.fit import save
    from socialgradient.util import outputs

    summary = summarise_panel(tree)
    las = la_table(tree, panel)
    meta = {
        "command": "panel",
        "spec_hash": tree.attrs["spec_hash"],
        "data_hash": tree.attrs["data_hash"],
        "measure": tree.attrs["measure"],
    }
    with outputs.Writer(out, readme=PANEL_README, **meta) as w:
        rel = w.release
        log_path = rel / disclosure.LOG_NAME
        # LA-level counts leave through the disclosure gate; these are DfE's published
        # figures (already disclosure-controlled by DfE, suppressed cells kept missing), so
        # they pass under a logged reason rather than being suppressed a second time.
        for name, table in (("panel.csv", panel), ("la_effects.csv", las)):
            disclosure.write_table(
                table,
                rel / name,
                level="la",
                override=PUBLISHED,
                group_columns=["la", "year"] if name == "panel.csv" else ["la"],
                count_columns=[],
                log=log_path,
                logged_path=w.path(f"release/{name}"),
                log_root=w.out,
            )
        texts = {
            "panel_report.json": json.dumps(json.loads(tree.attrs["report"]), indent=2),
            "gradient_by_year.csv": gradient_by_year(tree).to_csv(index=False, lineterminator="\n"),
            "summary.json": json.dumps(summary, indent=2, default=float),
        }
        with step(log, "panel figures"):
            figures = {
                "gradient_by_year.png": plot_gradient(tree),
                "la_scatter.png": plot_scatter(tree, panel),
            }
            if boundaries is not None and Path(boundaries).is_file():
                polygons = read_boundaries(boundaries)
                merged = json.loads(tree.attrs["spec"]).get("dfe_merges")
                coded, match = map_units(polygons, las["la"], DFE_MERGES if merged else ())
                texts["map_report.json"] = json.dumps(match, indent=2)
                figures["la_map.png"] = choropleth(
                    las.set_index("la")["la_effect_median"],
                    coded,
                    title=f"LA effects, {tree.attrs['measure']}: log rate ratio to the "
                    "gradient line",
                    label="LA effect (log scale)",
                )
            for name, fig in figures.items():
                fig.savefig(rel / name, dpi=120, format="png")
                plt.close(fig)
        for name, body in texts.items():
            (rel / name).write_text(body.rstrip("\n") + "\n", encoding="utf-8", newline="\n")
        with open(log_path, "a", encoding="utf-8", newline="\n") as f:
            for name in figures:
                sha = hashlib.sha256((rel / name).read_bytes()).hexdigest()
                f.write(
                    json.dumps(
                        {
                            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                            "file": name,
                            "level": "model",
                            "decision": "written",
                            "note": "drawn from model outputs and the LA figures above only",
                            "sha256": sha,
                        }
                    )
                    + "\n"
                )
        save(tree, w.internal / "posterior.nc")
        w.commit()
    names = [*texts, *figures, "panel.csv", "la_effects.csv", disclosure.LOG_NAME]
    paths = {name: w.path(f"release/{name}") for name in names}
    paths["posterior.nc"] = w.path("internal/posterior.nc")
    return {"summary": summary, "paths": paths}


def panel_command(args) -> int:
    """``socialgradient panel SHARED_DIR --out DIR [--measure M] [--spec TOML] ...``."""
    from socialgradient import resources
    from socialgradient.panel.data import build_panel

    root = resources.root("models")
    default = root / f"la_panel_{args.measure or 'referrals'}.toml"
    spec = (
        load_panel_spec(args.spec)
        if args.spec
        else load_panel_spec(default)
        if default.is_file()
        else PanelSpec()
    )
    spec = spec.replace(
        measure=args.measure,
        family=args.family,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        sampler=args.sampler,
    )
    from socialgradient.util import outputs

    outputs.check_destination(args.out)  # before any reading or sampling
    start = time.perf_counter()
    panel, report = build_panel(
        args.shared_dir,
        spec.measure,
        spec.first_year,
        spec.last_year or None,
        DFE_MERGES if spec.dfe_merges else (),
    )
    log.info(
        "panel %s: %s LAs, years %s; %s cells observed, excluded %s",
        spec.measure,
        report["las"],
        report["years"],
        report["observed"],
        report["excluded"],
    )
    tree = fit_panel(panel, spec, report, progressbar=not args.no_progress)
    boundaries = (
        Path(args.shared_dir)
        / "boundaries"
        / "Counties_and_Unitary_Authorities_Dec2020_UK_BUC.geojson"
    )
    result = write_panel(tree, panel, args.out, boundaries)
    print(gradient_by_year(tree).round(3).to_string(index=False))
    diag = result["summary"]["diagnostics"]
    print(
        f"verdict {diag['verdict']} {diag['reasons']}; R-hat max {diag['rhat_max']:.3f}, "
        f"ESS bulk min {diag['ess_bulk_min']:.0f}, divergences {diag['divergences']}; "
        f"{time.perf_counter() - start:.0f} s; wrote {args.out}/: release/ (safe to "
        f"publish), internal/ (not for release), MANIFEST.json"
    )
    return 0 if diag["verdict"] != "FAIL" else 1
