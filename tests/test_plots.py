"""Figures from a fake fitted result: structure, plotted data, and atomic saving."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

from fakes import fake_tree
from socialgradient import plots
from socialgradient.checks import deprivation_decile, ppc
from socialgradient.gradients import describe, la_table, national, rate_curve

N_LA = 6


@pytest.fixture(scope="module")
def tree():
    return fake_tree(n_la=N_LA, n_lsoa_per_la=20, chains=2, draws=50)


def _post(tree):
    return tree["posterior"].to_dataset()


def test_gradient_curve(tree):
    fig = plots.gradient_curve(tree)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    median_line, observed = ax.lines
    income = np.linspace(0.01, 0.60, 100)
    curve = rate_curve(_post(tree), income, {"average": 0.0}, tree.attrs["x_bar"])
    expected = describe(curve.sel(la_type="average"))["median"].values
    np.testing.assert_allclose(median_line.get_xdata(), 100 * income)
    np.testing.assert_allclose(median_line.get_ydata(), expected)
    # two bands (95%, 80%)
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2
    # observed decile rates at the deciles' child-weighted mean income
    const = tree["constant_data"]
    decile = deprivation_decile(const["income"].values)
    cases = tree["observed_data"]["referrals"].values
    kids, inc = const["children"].values, const["income"].values
    rates = [1e4 * cases[decile == d].sum() / kids[decile == d].sum() for d in range(1, 11)]
    x = [100 * np.average(inc[decile == d], weights=kids[decile == d]) for d in range(1, 11)]
    np.testing.assert_allclose(observed.get_ydata(), rates)
    np.testing.assert_allclose(observed.get_xdata(), x)
    g = describe(national(_post(tree))["gradient_mean_la"])
    lo, hi = g["eti95"].values
    assert ax.get_title() == (
        f"Social gradient {float(g['median']):.2f} (95% CI {lo:.2f}-{hi:.2f}) per 10 points"
    )


def test_la_caterpillar_orders_by_deprivation(tree):
    fig = plots.la_caterpillar(tree)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    table = la_table(tree)
    order = np.argsort(table["m_c"].values)
    points = next(line for line in ax.lines if line.get_label() == "LA gradient")
    np.testing.assert_array_equal(points.get_xdata(), np.arange(N_LA))
    np.testing.assert_allclose(points.get_ydata(), table["gradient_median"].values[order])
    intervals = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert [len(c.get_segments()) for c in intervals] == [N_LA, N_LA]
    lower95 = [seg[0][1] for seg in intervals[0].get_segments()]
    expected95 = table["gradient_eti95"].sel(ci_bound="lower").values[order]
    np.testing.assert_allclose(lower95, expected95)
    post = _post(tree)
    national_line = next(line for line in ax.lines if line.get_label().startswith("national"))
    np.testing.assert_allclose(national_line.get_ydata(), float(np.exp(post["b_w"]).median()))
    interaction = next(line for line in ax.lines if line.get_label().startswith("exp("))
    m_c = table["m_c"].values[order]
    b_w, b_x = post["b_w"].values.ravel(), post["b_x"].values.ravel()
    expected = [np.median(np.exp(b_w + b_x * m)) for m in m_c]
    np.testing.assert_allclose(interaction.get_ydata(), expected)
    la_pct = (tree.attrs["x_bar"] + m_c) * 10
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == [f"{v:.0f}" for v in la_pct]


def test_inverse_intervention(tree):
    fig = plots.inverse_intervention(tree)
    (ax,) = fig.axes
    assert len(ax.lines) == 3
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 3
    x_bar = tree.attrs["x_bar"]
    scores = national(_post(tree))
    names = ("gradient_less_deprived_la", "gradient_mean_la", "gradient_more_deprived_la")
    for line, m_c, name in zip(ax.lines, (-1.0, 0.0, 1.0), names, strict=True):
        x = line.get_xdata()
        mean = (x_bar + m_c) * 10
        assert x.min() == pytest.approx(max(mean - 15, 0.5))
        assert x.max() == pytest.approx(min(mean + 15, 65))
        curve = rate_curve(_post(tree), x / 100, {"t": m_c}, x_bar).sel(la_type="t")
        np.testing.assert_allclose(line.get_ydata(), describe(curve)["median"].values)
        assert f"gradient {float(scores[name].median()):.2f}" in line.get_label()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [s.split()[0] for s in legend] == ["affluent", "average", "deprived"]


def test_ppc_plot(tree):
    fig = plots.ppc_plot(tree)
    left, right = fig.axes
    checks = ppc(tree)
    observed = next(line for line in left.lines if line.get_label() == "observed")
    np.testing.assert_allclose(observed.get_ydata(), checks["decile"]["observed"].values)
    stat = checks["statistic"].sel(statistic=["dispersion", "zero_share"])
    obs = next(line for line in right.lines if line.get_label() == "observed")
    np.testing.assert_allclose(
        obs.get_xdata(), stat["observed"].values / stat["replicated_median"].values
    )
    assert len(right.get_yticks()) == 2


def test_poisson_fit_plots():
    small = fake_tree(n_la=3, n_lsoa_per_la=10, draws=20, family="poisson", seed=1)
    assert len(plots.ppc_plot(small).axes) == 2
    assert len(plots.la_caterpillar(small).axes[0].lines) == 3


def test_save_all_writes_pngs_atomically(tree, tmp_path):
    out = tmp_path / "figs"
    paths = plots.save_all(tree, out)
    assert set(paths) == {"gradient_curve", "la_caterpillar", "inverse_intervention", "ppc"}
    for name, path in paths.items():
        assert path == out / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 1000
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in paths)
