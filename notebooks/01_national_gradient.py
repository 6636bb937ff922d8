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
# # The national social gradient of referrals
#
# Hood, Goldacre et al. (2021) found that rates of referral to children's social care
# rise steeply with the income deprivation of a child's neighbourhood, that the gradient
# is steeper in affluent local authorities, and that - at the same neighbourhood
# deprivation - more affluent LAs intervene more (the *inverse intervention effect*).
#
# This notebook fits the study's model to the embedded synthetic England, whose true
# parameters are known, and checks every headline quantity against that truth.
# Deprivation is in units of 10 percentage points of income-deprived families, so
# `exp(slope)` is the **social gradient score**.

# %%
import os

import arviz as az

import socialgradient.api as sg

# Tests run this notebook with tiny draw counts; a real analysis uses the defaults.
DRAWS = int(os.environ.get("SG_DRAWS", 1000))
TUNE = int(os.environ.get("SG_TUNE", 1000))

# %% [markdown]
# ## Data: one row per LSOA
# `children` is the exposure; `income` the share (0-1) of income-deprived families.

# %%
table = sg.default_data()
table.head()

# %% [markdown]
# ## Fit the hierarchical negative-binomial model
# LA intercepts and slopes are correlated (LKJ) and centred on
# `a + b_b * m_c` and `b_w + b_x * m_c`; see `socialgradient.model` for priors and units.

# %%
tree = sg.fit(table, "referrals", family="negbin", draws=DRAWS, tune=TUNE, progressbar=False)
diagnostics = sg.diagnose(tree)
print(diagnostics["verdict"], diagnostics["reasons"])

# %% [markdown]
# ## The headline quantities, with 95% and 80% equal-tailed intervals

# %%
summary = sg.summarise(tree, diagnostics)
print(sg.headline(summary))

# %% [markdown]
# The fit is an ArviZ `DataTree` (groups `posterior`, `posterior_predictive`,
# `log_likelihood`, `observed_data`, ...), so ArviZ's own tools work on it directly: here the
# model's parameters on their own (log) scale, with 95% equal-tailed intervals and R-hat/ESS.

# %%
az.summary(tree, var_names=["a", "b_w", "b_b", "b_x", "la_sd", "phi"], ci_prob=0.95)

# %%
az.plot_forest(tree, var_names=["b_w", "b_b", "b_x"], combined=True)

# %% [markdown]
# ## Against the known truth

# %%
truth = sg.default_truth()["thresholds"]["referrals"]
for key in ("gradient_mean_la", "gradient_less_deprived_la", "gradient_more_deprived_la",
            "between_la_gradient", "contextual_effect"):
    lo, hi = summary[key]["ci95"]
    print(f"{key:<28} truth {truth[key]:7.3f}   95% ETI [{lo:.3f}, {hi:.3f}]")

# %% [markdown]
# ## A credible interval for every local authority

# %%
las = sg.la_gradients(tree)
true_gradient = las["la"].map({code: v["gradient"] for code, v in truth["la"].items()})
covered = (las["gradient_lo95"] <= true_gradient) & (true_gradient <= las["gradient_hi95"])
print(f"{covered.mean():.0%} of {len(las)} LA intervals cover the true LA gradient")
las.sort_values("gradient_median", ascending=False).head(10)

# %% [markdown]
# ## Figures

# %%
sg.plot(tree, "gradient_curve")

# %%
sg.plot(tree, "la_caterpillar")

# %%
sg.plot(tree, "inverse_intervention")

# %% [markdown]
# ## Posterior predictive checks
# Observed totals by deprivation decile, dispersion and share of zeros against their
# replicates. The same assertions are available for your own test suite.

# %%
sg.plot(tree, "ppc")

# %% [markdown]
# ArviZ's rootogram of the same replicates: how many LSOAs had 0, 1, 2, ... referrals,
# observed against replicated (square-root scale).

# %%
az.plot_ppc_rootogram(tree)

# %%
if DRAWS >= 500:
    sg.assert_converged(tree)
sg.assert_ppc(tree)
