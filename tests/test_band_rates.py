"""Why the default table cannot show the study's ~100 -> ~1,370 per 10,000 span (14x).

The study reports both the span between its least and most deprived neighbourhoods and a
within-LA gradient of 1.62 per 10 points. On England's deprivation (the default table's LSOAs),
the expected rate ratio between the bands income < 0.03 and income >= 0.45 is largest when
deprivation acts the same within and between LAs (b_b = b_w, no cross-level interaction) --
and even then it is ~9x, not 14x: the bands' mean incomes differ by ~46 points, and
1.62 ** 4.6 = 9.3. This test checks that claim of data/README.md over the whole region of
parameters consistent with the study's inverse intervention effect and interaction sign.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from socialgradient.data.deprivation import decompose
from socialgradient.data.synthetic.england import B_X, PARAMETERS

DATA = Path(__file__).resolve().parents[1] / "data" / "neighbourhoods.parquet"


def test_study_span_is_out_of_reach_of_its_own_gradient():
    t = pd.read_parquet(DATA, columns=["la", "children", "income", "referrals"])
    d = decompose(t["income"], t["children"], t["la"])
    m_c, w = d.m_c[d.la_index], d.w
    n = t["children"].to_numpy(float)
    low = (t["income"] < 0.03).to_numpy()
    high = (t["income"] >= 0.45).to_numpy()
    b_w = math.log(PARAMETERS["referrals"]["gradient"])

    def ratio(b_b, b_x):
        mu = n * np.exp(b_b * m_c + (b_w + b_x * m_c) * w)
        return (mu[high].sum() / n[high].sum()) / (mu[low].sum() / n[low].sum())

    grid = [ratio(b_b, b_x) for b_b in np.linspace(0, b_w, 13) for b_x in np.linspace(B_X, 0, 8)]
    assert max(grid) == ratio(b_w, 0.0)  # the corner: no contextual effect, no interaction
    assert 8 < max(grid) < 11  # ~9.4x, far from the study's ~13.7x
    needed = math.exp(math.log(13.7) / (10 * (t["income"][high].mean() - t["income"][low].mean())))
    assert needed > 1.7  # a gradient steeper than the study's 1.62 everywhere
    # the table's own truth (b_b = 0.25, b_x = -0.26) gives ~5x, and the draw agrees
    model = ratio(PARAMETERS["referrals"]["b_b"], B_X)
    drawn = (t["referrals"][high].sum() / n[high].sum()) / (
        t["referrals"][low].sum() / n[low].sum()
    )
    assert 3.5 < model < 6.5
    assert abs(math.log(drawn / model)) < 0.35
