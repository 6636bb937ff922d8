# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The between-LA social gradient on the real DfE tables, 2013 onwards
#
# The secure census links each child to a neighbourhood; the published DfE tables do not.
# They do give every children's-services LA's counts each year, so the **between-LA**
# gradient can be measured on open data: how much higher are referral rates in an LA 10
# points more income-deprived, and has that changed since 2013?
#
# Model (`socialgradient.panel`): for LA *l* in year *t*,
# `log E[y_lt] = log(children 0-17) + alpha_l + c_t + d_t * m_l` with
# `alpha_l ~ N(a + b * m_l, la_sd)`, negative binomial; the gradient in year *t* is
# `exp(b + d_t)` per 10 points of LA deprivation (a random walk over years).
#
# Data: `shared/data` beside the repository (DfE CSC tables, ONS child populations,
# IoD2019, ONS lookups, boundaries). The project never ships those files; without them
# this notebook says so and its cells do nothing.

# %%
import json
import os
from pathlib import Path

import arviz as az

import socialgradient.api as sg

try:
    HERE = Path(__file__).resolve().parent
except NameError:  # inside Jupyter, started in notebooks/
    HERE = Path.cwd()
SHARED = Path(os.environ.get("SG_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
MEASURE = os.environ.get("SG_MEASURE", "referrals")
SPEC = sg.load_panel_spec(sg.MODELS / f"la_panel_{MEASURE}.toml")
# Tests run this notebook with tiny draw counts; a real analysis uses the spec's.
SPEC = SPEC.replace(draws=int(os.environ.get("SG_DRAWS", SPEC.sampling.draws)),
                    tune=int(os.environ.get("SG_TUNE", SPEC.sampling.tune)))
OUT = Path("out") / "la_panel" / MEASURE
print(SPEC.to_json())

missing = sg.panel_data_missing(SHARED)
HAVE_DATA = not missing
if not HAVE_DATA:
    print(f"The shared public data are not available (missing: {missing}).\n"
          "This notebook needs shared/data beside the repository (or SG_SHARED_DATA); "
          "every cell below does nothing.")

# %% [markdown]
# ## The panel: one row per LA and year on one fixed geography
#
# Reorganised areas are summed onto one unit for every year (Northamptonshire and Cumbria
# as before their splits; Bournemouth, Poole and Dorset with BCP and Dorset, as
# Christchurch moved between them). Suppressed cells stay in the table as missing and are
# left out of the likelihood; the report counts every one. (Each cell below runs only when
# the shared data are there.)

# %%
if HAVE_DATA:
    panel, report = sg.build_panel(SHARED, SPEC)
    print(f"{report['las']} LAs, years {report['years']}: {report['cells']} cells, "
          f"{report['observed']} observed; excluded {report['excluded']}")
    for cell in report["excluded_cells"]:
        print(f"  {cell['year']} {cell['la']} {cell['la_name']}: {cell['reason']} "
              f"{cell['markers']}")
    for unit, info in report["units_joined"].items():
        print(f"  unit {unit} ({info['name']}): {info['members']}")
    print(panel.head().to_string())

# %% [markdown]
# ## Fit

# %%
if HAVE_DATA:
    tree = sg.fit_panel(panel, SPEC, report)
    diagnostics = sg.diagnose_panel(tree)
    print(diagnostics["verdict"], diagnostics["reasons"])
    print({k: diagnostics[k] for k in ("rhat_max", "ess_bulk_min", "ess_tail_min",
                                       "divergences")})

# %% [markdown]
# The fit is an ArviZ `DataTree`: ArviZ's summary of the gradient line's parameters (log
# scale) and its forest plot of the gradient in each year (rate ratio per 10 points). The
# panel fit has no replicated counts, so there is no posterior predictive plot here.

# %%
if HAVE_DATA:
    print(az.summary(tree, var_names=["a", "b", "la_sd", "phi"], ci_prob=0.95))
    az.plot_forest(tree, var_names=["gradient"], combined=True)

# %% [markdown]
# ## The between-LA gradient by year (rate ratio per 10 points, 95% and 80% ETIs)

# %%
if HAVE_DATA:
    print(sg.gradient_by_year(tree).round(3).to_string(index=False))
    summary = sg.summarise_panel(tree, diagnostics)
    print("change, last vs first year (ratio of gradients):",
          json.dumps(summary["gradient_ratio_last_vs_first"]))
    fig_gradient = sg.plot_panel(tree, "gradient_by_year")

# %% [markdown]
# ## LA rates against LA deprivation, with the fitted line

# %%
if HAVE_DATA:
    fig_scatter = sg.plot_panel(tree, "la_scatter", panel)

# %% [markdown]
# ## LAs furthest above and below the gradient line

# %%
if HAVE_DATA:
    las = sg.panel_la_table(tree, panel).sort_values("la_effect_median")
    print(las[["la_name", "income", "rate_per_10k", "la_effect_median", "la_effect_lo95",
               "la_effect_hi95"]].iloc[[*range(5), *range(-5, 0)]].round(3).to_string())

# %% [markdown]
# ## Every output, and the map of LA effects when the boundary file is there

# %%
if HAVE_DATA:
    boundaries = SHARED / "boundaries" / \
        "Counties_and_Unitary_Authorities_Dec2020_UK_BUC.geojson"
    result = sg.write_panel(tree, panel, OUT, boundaries if boundaries.is_file() else None)
    print(sorted(p.name for p in result["paths"].values()))
    if (OUT / "release" / "map_report.json").is_file():
        print((OUT / "release" / "map_report.json").read_text())
    else:
        print(f"no boundary file at {boundaries}: map skipped")
