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
# # Places and LA conditions
#
# Two questions the study could only gesture at. Is the gradient steeper in **rural**
# neighbourhoods, after adjusting for LA deprivation? And do LA **spending and workforce**
# (spend per child, agency share, turnover) move the LA intercepts and gradients, and does
# adjusting for them change the cross-level interaction (the inverse intervention effect)?
# Neighbourhood moderators (`neighbourhood_moderators`) enter as a main effect and an
# interaction with within-LA deprivation; LA moderators (`la_moderators`, columns of an
# LA table) enter the means of the LA intercepts and slopes. LA deprivation `m_c` and the
# cross-level interaction stay in.

# %%
import os

import arviz as az

import socialgradient.api as sg

DRAWS = int(os.environ.get("SG_DRAWS", 1000))
TUNE = int(os.environ.get("SG_TUNE", 1000))
SCALE = float(os.environ.get("SG_SCALE", 0.2))
N_LA = int(os.environ.get("SG_LAS", 0))  # 0: all 150 LAs


def moderators(summary: dict) -> None:
    for name, m in summary["moderators"].items():
        s = m["slope"]
        print(f"{name:<16} ({m['level']}) change in log gradient per unit: {s['median']:+.3f} "
              f"[{s['ci95'][0]:+.3f}, {s['ci95'][1]:+.3f}], P(> 0) = {s['p_positive']:.2f}")


# %% [markdown]
# ## Rurality, in the child records (whose truth has a steeper rural slope)

# %%
spec = sg.load_spec(sg.MODELS / "rurality.toml")
recs = sg.records_table(spec, scale=SCALE)
summary = sg.summarise(sg.fit(recs.table, spec, draws=DRAWS, tune=TUNE, progressbar=False))
print(summary["diagnostics"]["verdict"])
moderators(summary)
area = recs.truth["area"]
print(f"truth: {area['rural']['d'] - area['urban']['d']:+.3f}")

# %% [markdown]
# ## LA spending and workforce, on the default England
# The synthetic indicators are correlates of an LA's intervention intensity, not causes:
# no count depends on them (`data/README.md`), so their true effects are 0, and the
# cross-level interaction should not move.

# %%
table = sg.default_data()
if N_LA:
    table = table[table["la"].isin(table["la"].unique()[:N_LA])].reset_index(drop=True)
spec = sg.load_spec(sg.MODELS / "national_referrals_places.toml")
print(spec.neighbourhood_moderators, spec.la_moderators)
tree = sg.fit(table, spec, draws=DRAWS, tune=TUNE, progressbar=False)
adjusted = sg.summarise(tree)
plain = sg.summarise(sg.fit(table, "referrals", draws=DRAWS, tune=TUNE, progressbar=False))
moderators(adjusted)
for name, s in (("without moderators", plain), ("with moderators", adjusted)):
    i = s["interaction"]
    print(f"cross-level interaction {name:<20} {i['median']:.3f} "
          f"[{i['ci95'][0]:.3f}, {i['ci95'][1]:.3f}]")
print(f"truth: {sg.default_truth()['thresholds']['referrals']['b_x']:.4f} (log scale)")

# %% [markdown]
# The moderated fit in ArviZ: every moderator's change in the log gradient (true value 0).

# %%
az.plot_forest(tree, var_names=["moderator_effect", "la_moderator_effect"],
               coords={"effect": "slope"}, combined=True)

# %%
az.summary(tree, var_names=["b_x", "moderator_effect", "la_moderator_effect"], ci_prob=0.95)

# %%
az.plot_ppc_rootogram(tree)
