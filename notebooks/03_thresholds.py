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
# # The gradient at every threshold of intervention, in one model
#
# The study found that the social gradient steepens at each threshold: referral,
# assessment, child-in-need plan, child protection plan, looked after. Fitting each
# threshold separately gives five posteriors that cannot be compared draw by draw. The
# joint threshold model (`socialgradient.joint`, spec `models/joint_thresholds.toml`) fits
# all five counts of the same neighbourhoods at once: each threshold has its own fixed
# effects, and an LA's ten coefficients (intercept and slope per threshold) are correlated.
# "The gradient steepens at every step" then has a posterior probability.

# %%
import os

import arviz as az

import socialgradient.api as sg

# Tests run this notebook with tiny draw counts and a few LAs; an analysis uses the defaults.
DRAWS = int(os.environ.get("SG_DRAWS", 1000))
TUNE = int(os.environ.get("SG_TUNE", 1000))
N_LA = int(os.environ.get("SG_LAS", 0))  # 0: all 150 LAs

# %%
table = sg.default_data()
if N_LA:
    table = table[table["la"].isin(table["la"].unique()[:N_LA])].reset_index(drop=True)
spec = sg.load_spec(sg.MODELS / "joint_thresholds.toml")
print(spec.outcomes)

# %% [markdown]
# ## Fit

# %%
tree = sg.fit(table, spec, draws=DRAWS, tune=TUNE, progressbar=False)
summary = sg.summarise(tree)
print(summary["diagnostics"]["verdict"], summary["diagnostics"]["reasons"])

# %% [markdown]
# The fit is an ArviZ-ready `DataTree`: every ArviZ function works on it. The within-LA
# slope `b_w` of each threshold (log rate ratio per 10 points at an averagely deprived LA):

# %%
az.summary(tree, var_names=["b_w", "b_x"], ci_prob=0.95)

# %%
az.plot_forest(tree, var_names=["b_w"], combined=True)

# %% [markdown]
# Replicated against observed counts of the first threshold (ArviZ's rootogram; the
# posterior predictive group holds one variable per threshold):

# %%
az.plot_ppc_rootogram(tree, var_names=[spec.outcomes[0]])

# %% [markdown]
# ## How sure are we that the gradient steepens?
# `p_steepens`: P(the later threshold's gradient is steeper) for each consecutive pair;
# `gradient_ratio`: the later gradient over the earlier, with its 95% interval.

# %%
for pair, p in summary["p_steepens"].items():
    print(f"P({pair.replace('<', ' < ')}) = {p:.3f}")
print(f"P(steepens at every step) = {summary['p_steepens_every_step']:.3f}")
for pair, r in summary["gradient_ratio"].items():
    print(f"{pair:<28} {r['median']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]")

# %% [markdown]
# ## Against the truth of the synthetic England

# %%
truth = sg.default_truth()["thresholds"]
for outcome, t in summary["thresholds"].items():
    g = t["gradient_mean_la"]
    lo, hi = g["ci95"]
    true = truth[outcome]["gradient_mean_la"]
    print(f"{outcome:<14} {g['median']:.3f} [{lo:.3f}, {hi:.3f}]  truth {true:.3f}  "
          f"{'covered' if lo <= true <= hi else 'MISSED'}")

# %% [markdown]
# Per-LA gradients at every threshold (a `threshold` column), as `socialgradient fit`
# writes them to `release/la_gradients.csv`:

# %%
las = sg.la_gradients(tree)
las.head()
