"""Figures from a fake fitted result: structure, plotted data, and atomic saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

from fakes import fake_tree
from socialgradient.results import maps, plots
from socialgradient.results.checks import deprivation_decile, ppc
from socialgradient.results.gradients import describe, la_table, national, rate_curve
from socialgradient.results.maps import read_boundaries

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


def test_la_caterpillar_on_a_deprivation_axis(tree):
    fig = plots.la_caterpillar(tree)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel().startswith("LA mean income deprivation (%")
    table = la_table(tree)
    order = np.argsort(table["m_c"].values)
    la_pct = (tree.attrs["x_bar"] + table["m_c"].values[order]) * 10
    points = next(line for line in ax.lines if line.get_label().startswith("LA gradient"))
    np.testing.assert_allclose(points.get_xdata(), la_pct)  # real x: LA deprivation in %
    np.testing.assert_allclose(points.get_ydata(), table["gradient_median"].values[order])
    intervals = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert [len(c.get_segments()) for c in intervals] == [N_LA, N_LA]
    lower95 = [seg[0] for seg in intervals[0].get_segments()]
    expected95 = table["gradient_eti95"].sel(ci_bound="lower").values[order]
    np.testing.assert_allclose(lower95, np.column_stack([la_pct, expected95]))
    post = _post(tree)
    national_line = next(line for line in ax.lines if line.get_label().startswith("national"))
    np.testing.assert_allclose(national_line.get_ydata(), float(np.exp(post["b_w"]).median()))
    curve = next(line for line in ax.lines if line.get_label().startswith("expected"))
    x = curve.get_xdata()
    assert x.min() == pytest.approx(la_pct.min())
    assert x.max() == pytest.approx(la_pct.max())
    m_c = x / 10 - tree.attrs["x_bar"]
    b_w, b_x = post["b_w"].values.ravel(), post["b_x"].values.ravel()
    expected = [np.median(np.exp(b_w + b_x * m)) for m in m_c]
    np.testing.assert_allclose(curve.get_ydata(), expected)


def test_la_forest_one_named_row_per_la(tree):
    fig = plots.la_forest(tree)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    table = la_table(tree)
    order = np.argsort(-table["gradient_median"].values)
    names = tree["constant_data"]["la_name"].values[order]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(names)
    assert all(name.startswith("Authority ") for name in names)
    points = next(line for line in ax.lines if line.get_label().startswith("LA (median"))
    np.testing.assert_array_equal(points.get_ydata(), np.arange(N_LA))  # steepest on top
    np.testing.assert_allclose(points.get_xdata(), table["gradient_median"].values[order])
    intervals = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert [len(c.get_segments()) for c in intervals] == [N_LA, N_LA]
    upper80 = [seg[1][0] for seg in intervals[1].get_segments()]
    np.testing.assert_allclose(upper80, table["gradient_eti80"].sel(ci_bound="upper").values[order])
    national_line = next(line for line in ax.lines if line.get_label().startswith("national"))
    np.testing.assert_allclose(
        national_line.get_xdata(), float(np.exp(_post(tree)["b_w"]).median())
    )


def test_la_forest_legible_at_150_las():
    big = fake_tree(n_la=150, n_lsoa_per_la=3, chains=1, draws=20)
    fig = plots.la_forest(big)
    labels = fig.axes[0].get_yticklabels()
    assert len(labels) == 150
    assert fig.get_figheight() >= 0.12 * 150  # a row per LA at readable spacing
    assert labels[0].get_fontsize() <= 6


def test_la_forest_falls_back_to_codes(tree):
    unnamed = tree.copy()
    unnamed["constant_data"] = unnamed["constant_data"].to_dataset().drop_vars("la_name")
    labels = [t.get_text() for t in plots.la_forest(unnamed).axes[0].get_yticklabels()]
    assert sorted(labels) == sorted(tree["constant_data"]["la"].values)


def test_la_name_coordinate_survives_save_load(tree, tmp_path):
    from socialgradient.sampling.fit import load, save

    const = tree["constant_data"]
    assert const["la_name"].dims == ("la",)
    assert list(const.indexes) == ["lsoa", "la"]  # codes stay the index
    assert "la_name" not in tree["posterior"].coords  # ArviZ's summary fails on it there
    save(tree, tmp_path / "fit.nc")
    back = load(tmp_path / "fit.nc")
    np.testing.assert_array_equal(back["constant_data"]["la_name"].values, const["la_name"].values)
    assert list(plots.la_names(back)) == list(const["la_name"].values)


BOUNDARIES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "boundaries"
needs_boundaries = pytest.mark.skipif(
    maps.find_boundaries(BOUNDARIES) is None, reason="ONS boundary GeoJSON not present"
)


def test_the_package_ships_englands_boundaries(monkeypatch):
    monkeypatch.delenv("SOCIALGRADIENT_SHARED", raising=False)
    path = maps.find_boundaries()
    assert path is not None
    assert path.name == maps.SHIPPED
    codes = {code for code, _ in read_boundaries(path)}
    assert len(codes) == 151
    assert all(code.startswith("E") for code in codes)
    if maps.find_boundaries(BOUNDARIES) is not None:  # the same authorities as ONS's file
        assert codes == {code for code, _ in read_boundaries(maps.find_boundaries(BOUNDARIES))}


@needs_boundaries
def test_la_map_one_patch_per_matched_la(tree):
    # fake LAs E06000001-6 are real codes (Hartlepool ... Warrington); make one Buckinghamshire
    # (E10000002, whose boundary is E06000060) and drop one from the boundaries' view
    codes = tree["constant_data"]["la"].values.astype(str).copy()
    codes[0] = "E10000002"
    groups = {
        name: node.to_dataset().assign_coords(la=codes) if "la" in node.dims else node.to_dataset()
        for name, node in tree.children.items()
    }
    lsoa_la = groups["constant_data"]["lsoa_la"]
    groups["constant_data"]["lsoa_la"] = lsoa_la.where(lsoa_la != "E06000001", "E10000002")
    renamed = xr.DataTree.from_dict(groups)
    renamed.attrs.update(tree.attrs)
    fig = plots.la_map(renamed, BOUNDARIES)
    ax = fig.axes[0]
    fitted = next(c for c in ax.collections if c.get_gid() == "fitted")
    grey = next(c for c in ax.collections if c.get_gid() == "no_fit")
    assert len(fitted.get_paths()) == N_LA  # one (compound) patch per matched LA
    table = la_table(renamed)
    np.testing.assert_allclose(np.exp(fitted.get_array()), table["gradient_median"].values)
    rings = read_boundaries(maps.find_boundaries(BOUNDARIES))
    english = {code for code, _ in rings}
    assert len(english) == 151
    assert len(grey.get_paths()) == 151 - N_LA  # every other English LA, grey
    assert np.allclose(grey.get_facecolor()[:, :3], 0.85)
    assert len(fig.axes) == 2  # the colourbar
    centre = np.log(float(np.exp(_post(tree)["b_w"]).median()))
    assert fitted.norm.vcenter == pytest.approx(centre)  # diverging around the national median
    lo, hi = fitted.get_clim()  # the colour bar spans the medians' range, no further
    log_med = np.log(table["gradient_median"].values)
    assert (lo, hi) == pytest.approx((min(log_med.min(), centre), max(log_med.max(), centre)))
    # uncertainty not by colour alone: LAs whose 95% interval includes the centre hatched
    eti = np.log(table["gradient_eti95"])
    lower, upper = eti.sel(ci_bound="lower").values, eti.sel(ci_bound="upper").values
    covers = int(((lower <= centre) & (upper >= centre)).sum())
    hatched = [c for c in ax.collections if c.get_gid() == "hatched"]
    assert (len(hatched[0].get_paths()) if hatched else 0) == covers


@needs_boundaries
def test_the_panel_map_is_the_same_choropleth():
    """The panel's LA map (write_panel) is maps.choropleth over its units: one patch per
    unit with a value, the others grey, the scale centred at 0 (log rate ratios)."""
    from socialgradient.panel.data import map_units

    rings = read_boundaries(maps.find_boundaries(BOUNDARIES))
    units = ["E06000001", "E06000002", "E09000012", "E10000002"]
    coded, report = map_units(rings, units)
    values = pd.Series([0.3, -0.1, 0.2, np.nan], index=units)
    fig = maps.choropleth(values, coded, title="LA effects", label="LA effect (log scale)")
    ax = fig.axes[0]
    fitted = next(c for c in ax.collections if c.get_gid() == "fitted")
    grey = next(c for c in ax.collections if c.get_gid() == "no_fit")
    drawn = [u for u in units[:3] if u in {c for c, _ in coded}]
    assert len(drawn) == 3
    assert len(fitted.get_paths()) == 3  # the unit without a value is grey
    np.testing.assert_allclose(fitted.get_array(), [0.3, -0.1, 0.2])
    assert len(grey.get_paths()) == len({c for c, _ in coded}) - 3
    lo, hi = fitted.get_clim()
    assert (lo, hi) == pytest.approx((-0.1, 0.3))  # the values' range, centred at 0
    assert fitted.norm.vcenter == 0
    assert not [c for c in ax.collections if c.get_gid() == "hatched"]
    fig = maps.choropleth(values, coded, hatch={"E06000002"})
    (hatched,) = [c for c in fig.axes[0].collections if c.get_gid() == "hatched"]
    assert len(hatched.get_paths()) == 1
    assert hatched.get_hatch() == "////"
    assert report["boundary_codes"] == 151


def test_la_map_without_boundaries_says_what_is_missing(tree, tmp_path, monkeypatch):
    monkeypatch.delenv("SOCIALGRADIENT_SHARED", raising=False)
    with pytest.raises(FileNotFoundError, match="no ONS boundary file"):
        plots.la_map(tree, tmp_path / "none")
    paths = plots.save_all(tree, tmp_path / "figs", boundaries=tmp_path / "none")
    assert "la_map" not in paths  # the other figures, the forest included, still written
    assert "la_forest" in paths


def test_match_codes_buckinghamshire_and_merges():
    match = maps.match_codes(
        ["E06000060", "E06000053", "E09000001", "E06000001", "E10000021"],
        ["E10000002", "E06000052", "E09000012", "E06000001"],
    )
    assert match == {
        "E06000060": "E10000002",
        "E06000053": "E06000052",
        "E09000001": "E09000012",
        "E06000001": "E06000001",
        "E10000021": None,
    }


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
    dec = checks["decile"]
    # decile totals on a ratio scale: observed / replicated median, log axis ticked at 1
    observed = next(line for line in left.lines if line.get_label() == "observed")
    np.testing.assert_allclose(
        observed.get_ydata(), dec["observed"].values / dec["replicated_median"].values
    )
    assert left.get_yscale() == "log"
    assert 1 in left.yaxis.get_major_locator().tick_values(0.5, 2)
    (bars,) = left.collections
    lo = (dec["replicated_lower"] / dec["replicated_median"]).values
    np.testing.assert_allclose([seg[0][1] for seg in bars.get_segments()], lo)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "replicated 95% interval",
        "observed",
        "replicated 95%",
    ]
    stat = checks["statistic"].sel(statistic=["dispersion", "zero_share"])
    obs = next(line for line in right.lines if line.get_label() == "observed")
    np.testing.assert_allclose(
        obs.get_xdata(), stat["observed"].values / stat["replicated_median"].values
    )
    assert len(right.get_yticks()) == 2


def test_ppc_plot_withheld_observed_has_no_legend_entry(tree):
    checks = ppc(tree)
    withheld = {
        "decile": checks["decile"].assign(observed=checks["decile"]["observed"] * np.nan),
        "statistic": checks["statistic"].assign(
            observed=checks["statistic"]["observed"] * np.nan,
            p_value=checks["statistic"]["p_value"] * np.nan,
        ),
    }
    fig = plots.ppc_plot(tree, checks=withheld)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "observed" not in texts
    assert not [line for ax in fig.axes for line in ax.lines if line.get_label() == "observed"]
    assert "not released" in fig.axes[1].get_yticklabels()[0].get_text()


def test_findings_figure_wraps_labels_ticks_ratios_and_keeps_the_legend_outside():
    from socialgradient.results.plot_checks import WRAP, findings_figure

    long = "Gradient in the least deprived fifth of LAs relative to the most deprived fifth"
    findings = pd.DataFrame(
        {
            "theme": "gradient",
            "finding": [long, "short one", "Inverse intervention effect at the national mean"],
            "quantity": ["a", "b", "contextual_effect"],
            "median": [1.4, 2.2, -0.2],
            "lo95": [1.1, 1.9, -0.3],
            "hi95": [1.8, 2.6, -0.1],
            "truth": [1.5, 2.1, -0.2],
            "published": [1.62, np.nan, np.nan],
        }
    )
    fig = findings_figure(findings, "gradient")
    ratio, additive_ax = fig.axes
    labels = [t.get_text() for t in ratio.get_yticklabels()]
    assert " ".join(labels[0].split()) == long  # wrapped, never cut
    assert all(len(line) <= WRAP for line in labels[0].split("\n"))
    ticks = ratio.xaxis.get_major_locator().tick_values(1, 3)
    assert {1, 1.25, 1.5, 2, 2.5} <= set(np.round(ticks, 2))
    assert [t.get_text() for t in ratio.get_xticklabels() if t.get_text()][:1] != ["10^0"]
    assert not ratio.get_legend()  # one legend for the figure, below the axes
    (legend,) = fig.legends
    fig.canvas.draw()
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent())
    assert len(additive_ax.get_yticks()) == 1


def test_poisson_fit_plots():
    small = fake_tree(n_la=3, n_lsoa_per_la=10, draws=20, family="poisson", seed=1)
    assert len(plots.ppc_plot(small).axes) == 2
    assert len(plots.la_caterpillar(small).axes[0].lines) == 3
    assert len(plots.la_forest(small).axes[0].get_yticklabels()) == 3


def test_save_all_writes_pngs_atomically(tree, tmp_path):
    out = tmp_path / "figs"
    paths = plots.save_all(tree, out, boundaries=tmp_path / "none")
    assert set(paths) == {
        "gradient_curve",
        "la_caterpillar",
        "la_forest",
        "inverse_intervention",
        "ppc",
    }
    for name, path in paths.items():
        assert path == out / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 1000
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in paths)


def test_drawing_does_not_import_jax():
    """arviz_base registers jax lazily and matplotlib would load it (~0.6 s) to ask whether
    a plotted array is a jax array; save_all drops the unloaded registration first."""
    import subprocess
    import sys

    code = (
        "import io, sys, arviz_base\n"
        "from socialgradient.util.imports import forget_unloaded_jax\n"
        "assert type(sys.modules['jax']).__name__ == '_LazyModule'\n"
        "forget_unloaded_jax()\n"
        "from matplotlib.figure import Figure\n"
        "f = Figure(); f.add_subplot().plot([1.0, 2.0]); f.savefig(io.BytesIO(), format='png')\n"
        "print('jax._src' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "False"


def test_an_output_sets_readers_share_one_la_table(tree, monkeypatch):
    """Within ``reusing_la_table(tree)`` the LA table of that tree is computed once, each
    reader getting an equal table of its own; another tree, or the same outside the block,
    is computed afresh."""
    from socialgradient.results import gradients

    computed = []
    real = gradients._la_table
    monkeypatch.setattr(gradients, "_la_table", lambda t: computed.append(t) or real(t))
    other = fake_tree(n_la=N_LA, n_lsoa_per_la=20, chains=2, draws=50, seed=1)
    with gradients.reusing_la_table(tree):
        first = gradients.la_table(tree)
        first["gradient_median"] = first["gradient_median"] * 0  # a reader's own copy
        second = gradients.la_table(tree)
        plots.la_forest(tree)
        gradients.la_table(other)
    assert computed == [tree, other]
    xr.testing.assert_identical(second, real(tree))
    gradients.la_table(tree)
    assert computed == [tree, other, tree]
