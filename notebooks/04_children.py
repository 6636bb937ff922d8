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
# # Children: age, gender and ethnicity
#
# The study found the gradient steepest for young children and for White children (CP
# plans: 1.91 for White, 1.27 for Black children), with no difference by gender. Those
# need the child-level records: counts per LSOA x stratum with each stratum's own
# population as exposure. The specs `models/strata_*.toml` name the records aggregate they
# are fitted to (`[records]`); `sg.records_table` builds it from the synthetic child
# records (or use `sg.aggregate` on records read from census returns, notebook 09).
# A stratified model gives every stratum its own gradient at an averagely deprived LA
# (`stratum_gradient`) and every pairwise ratio with P(steeper) (`stratum_contrast`),
# all from one posterior.

# %%
import os

import arviz as az

import socialgradient.api as sg

DRAWS = int(os.environ.get("SG_DRAWS", 1000))
TUNE = int(os.environ.get("SG_TUNE", 1000))
SCALE = float(os.environ.get("SG_SCALE", 0.2))  # share of England's LSOAs simulated


def show(summary: dict, truth: dict, dim: str, outcome: str) -> None:
    """Each stratum's gradient with its 95% interval against the records' truth."""
    for level, g in summary["stratum_gradient"].items():
        true = truth["strata"][dim][level]["gradients"][outcome]
        lo, hi = g["ci95"]
        print(f"{level:<8} {g['median']:.3f} [{lo:.3f}, {hi:.3f}]  truth {true:.3f}")


# %% [markdown]
# ## Age: referrals per child in each LSOA x age band

# %%
spec = sg.load_spec(sg.MODELS / "strata_age_band.toml")
age = sg.records_table(spec, scale=SCALE)
print(age.dropped, len(age.table), "cells")
tree = sg.fit(age.table, spec, draws=DRAWS, tune=TUNE, progressbar=False)
summary = sg.summarise(tree)
print(summary["diagnostics"]["verdict"])
show(summary, age.truth, "age_band", "referrals")

# %% [markdown]
# Every pair of age bands: the ratio of their gradients and P(the first is steeper).

# %%
for pair, c in summary["stratum_contrast"].items():
    print(f"{pair:<12} {c['median']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]  "
          f"P(steeper) {c['p_steeper']:.3f}")

# %% [markdown]
# The stratum offsets in ArviZ (`stratum_effect`: offsets to the reference band's
# intercept and slope):

# %%
az.summary(tree, var_names=["b_w", "stratum_effect"], ci_prob=0.95)

# %% [markdown]
# ## Gender

# %%
spec = sg.load_spec(sg.MODELS / "strata_gender.toml")
gender = sg.records_table(spec, scale=SCALE)
summary = sg.summarise(sg.fit(gender.table, spec, draws=DRAWS, tune=TUNE, progressbar=False))
show(summary, gender.truth, "gender", "referrals")
print(summary["stratum_contrast"])

# %% [markdown]
# ## Ethnicity: CP plans

# %%
spec = sg.load_spec(sg.MODELS / "strata_ethnicity_cp_plans.toml")
ethnic = sg.records_table(spec, scale=SCALE)
tree = sg.fit(ethnic.table, spec, draws=DRAWS, tune=TUNE, progressbar=False)
summary = sg.summarise(tree)
show(summary, ethnic.truth, "ethnicity", "cp_plans")
c = summary["stratum_contrast"]["White/Black"]
print(f"White / Black: {c['median']:.2f} [{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}], "
      f"P(White steeper) = {c['p_steeper']:.3f}  (study: 1.91 / 1.27 = {1.91 / 1.27:.2f})")

# %%
az.plot_forest(tree, var_names=["stratum_effect"], combined=True)

# %% [markdown]
# Replicated against observed CP-plan counts per LSOA x ethnicity cell (ArviZ's rootogram):

# %%
az.plot_ppc_rootogram(tree)
