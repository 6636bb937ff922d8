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
# # Needs: factors at assessment and categories of child protection plans
#
# The study found the gradient steepest for neglect, and flatter for needs less tied to
# poverty (a child's physical disability; sexual abuse among CP categories). In the
# synthetic child records each assessment records factors (census codes: 16A neglect,
# 6A physical disability, ...) and each CP plan a category (NEG, EMO, PHY, SAB, MUL).
# The specs stack the counts (one row per LSOA x factor or category, `category` and
# `count`), so one model gives every category its own gradient while sharing the LA
# effects, and the contrasts come from one posterior.

# %%
import os

import arviz as az

import socialgradient.api as sg

DRAWS = int(os.environ.get("SG_DRAWS", 1000))
TUNE = int(os.environ.get("SG_TUNE", 1000))
SCALE = float(os.environ.get("SG_SCALE", 0.2))


def contrast(summary: dict, pair: str) -> str:
    c = summary["stratum_contrast"][pair]
    return (f"{pair}: {c['median']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}], "
            f"P(first steeper) = {c['p_steeper']:.3f}")


# %% [markdown]
# ## Assessment factors: neglect against a child's physical disability

# %%
spec = sg.load_spec(sg.MODELS / "needs_factors.toml")
needs = sg.records_table(spec, scale=SCALE)
tree = sg.fit(needs.table, spec, draws=DRAWS, tune=TUNE, progressbar=False)
summary = sg.summarise(tree)
print(summary["diagnostics"]["verdict"])
truth = {"factor_neglect": needs.truth["factors"]["16A"]["gradient"],
         "factor_physical_disability_child": needs.truth["factors"]["6A"]["gradient"]}
for name, g in summary["stratum_gradient"].items():
    print(f"{name:<34} {g['median']:.3f} [{g['ci95'][0]:.3f}, {g['ci95'][1]:.3f}]  "
          f"truth {truth[name]:.3f}")
print(contrast(summary, "factor_neglect/factor_physical_disability_child"))

# %% [markdown]
# The same fit in ArviZ: the slope offsets of each factor to the reference one.

# %%
az.summary(tree, var_names=["stratum_effect"], coords={"effect": "slope"}, ci_prob=0.95)

# %% [markdown]
# ## CP plans by category of abuse, each against neglect

# %%
spec = sg.load_spec(sg.MODELS / "cp_categories.toml")
cp = sg.records_table(spec, scale=SCALE)
tree = sg.fit(cp.table, spec, draws=DRAWS, tune=TUNE, progressbar=False)
summary = sg.summarise(tree)
print(summary["diagnostics"]["verdict"])
codes = {"cp_neglect": "NEG", "cp_emotional": "EMO", "cp_physical": "PHY",
         "cp_sexual": "SAB", "cp_multiple": "MUL"}
for name, g in summary["stratum_gradient"].items():
    true = cp.truth["cp_categories"][codes[name]]["gradient"]
    print(f"{name:<14} {g['median']:.3f} [{g['ci95'][0]:.3f}, {g['ci95'][1]:.3f}]  "
          f"truth {true:.3f}")
for pair in summary["stratum_contrast"]:
    if "cp_neglect" in pair:
        print(contrast(summary, pair))

# %%
az.plot_forest(tree, var_names=["stratum_effect"], coords={"effect": "slope"}, combined=True)

# %%
az.plot_ppc_rootogram(tree)
