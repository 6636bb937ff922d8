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
# # From a census extract to published per-LA intervals
#
# The path an analyst in a secure environment takes: CIN Census XML returns, linked to
# each child's LSOA, aggregated to counts per LSOA, fitted, and written as an output set
# whose `release/` folder is safe to publish (every count through the disclosure gate)
# and whose `internal/` folder (the full posterior, LSOA-level checks) is not. Here the
# returns are written from synthetic records of three LAs, so the notebook runs anywhere.

# %%
import json
import os
import tempfile
from pathlib import Path

import arviz as az

import socialgradient.api as sg

DRAWS = int(os.environ.get("SG_DRAWS", 1000))
TUNE = int(os.environ.get("SG_TUNE", 1000))
work = Path(tempfile.mkdtemp(prefix="sg_census_"))

# %% [markdown]
# ## 1. The returns: one XML file per LA per year (synthetic here)

# %%
table = sg.default_data()
three = ["E06000041", "E09000013", "E06000002"]  # Wokingham, Hammersmith and Fulham, Middlesbrough
geography = table[table["la"].isin(three)][["lsoa", "la", "income", "children", "rural"]]
recs = sg.simulate_records(seed=2021, years=(2019,), geography=geography)
paths = sg.write_returns(recs, work / "returns")
print([p.name for p in paths])

# %% [markdown]
# ## 2. Read and link: every episode accounted for
# The reader validates each file, refuses bad records (or lists them with
# `errors="report"`), and the linkage report says what happened to every record.

# %%
back, read = sg.read_returns(
    work / "returns", work / "returns" / "child_lsoa.csv", geography, recs.population,
    looked_after=work / "returns" / "looked_after.csv",
    cin_plans=work / "returns" / "cin_plans.csv")
print(f"episodes read {read.episodes}, passed {read.passed}, excluded {read.excluded}")
cells, linkage = sg.aggregate(back, by=())
print(linkage.to_dict())

# %% [markdown]
# ## 3. Fit the within-LA gradient of referrals

# %%
tree = sg.fit(cells, "referrals", draws=DRAWS, tune=TUNE, progressbar=False)
summary = sg.summarise(tree)
print(summary["diagnostics"]["verdict"])
sg.la_gradients(tree)[["la", "gradient_median", "gradient_lo95", "gradient_hi95"]]

# %% [markdown]
# The same posterior in ArviZ: each LA's slope (the LA's log gradient) and the replicated
# against the observed referrals per LSOA.

# %%
az.plot_forest(tree, var_names=["la_effect"], coords={"effect": "slope"}, combined=True)

# %%
az.plot_ppc_rootogram(tree)

# %% [markdown]
# ## 4. Write the output set: `release/` to publish, `internal/` to keep
# Counts below the threshold (10) are suppressed, with secondary suppression so they
# cannot be recovered from published totals; the log says what was protected.

# %%
out = work / "fit"
written = sg.write(tree, out)
print(sorted(p.name for p in (out / "release").iterdir()))
print((out / "internal" / "README.txt").read_text()[:300])
for line in (out / "release" / "disclosure_log.jsonl").read_text().splitlines():
    print(json.loads(line))
