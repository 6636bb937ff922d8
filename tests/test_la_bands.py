"""Issue 30's leftovers in release/: P(steeper than England) per LA in la_gradients.csv, and
la_bands.csv (LA x deprivation quintile) through the fit's gate, on the LA pages. Fake fits
(no sampler); tiny LAs for the disclosure checks."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from fakes import fake_table
from socialgradient import api
from socialgradient.release import fit_tables, la_bands, report
from socialgradient.release import publish as pub
from socialgradient.release.readers import significant
from socialgradient.results.checks import deprivation_decile
from test_release import fit_like, pinned, published_constraints, tiny_table

PROTECTION = 5  # Rule().protection: a hidden cell's range must be at least this wide


def test_p_steeper_is_the_share_of_draws_above_englands_gradient(tmp_path):
    tree = fit_like(fake_table(5, 10, seed=3), draws=200, seed=3)
    post = tree["posterior"]
    slope = post["la_effect"].sel(effect="slope").values  # (chain, draw, la): log gradient
    england = post["b_w"].values[..., None]  # exp(b_w): the averagely deprived LA's
    by_hand = (np.exp(slope) > np.exp(england)).mean(axis=(0, 1))
    codes = post["la"].values.astype(str)
    got = fit_tables.p_steeper(tree, codes[::-1])
    np.testing.assert_allclose(got, by_hand[::-1])  # in the order asked for
    assert 0 < by_hand.min() < by_hand.max() < 1  # a test that can tell LAs apart
    report.write(tree, tmp_path / "out")
    las = pd.read_csv(tmp_path / "out" / "release" / "la_gradients.csv", dtype={"la": str})
    shown = las.set_index("la").loc[codes, fit_tables.P_STEEPER].to_numpy()
    np.testing.assert_array_equal(shown, significant(by_hand))
    text = pd.read_csv(tmp_path / "out" / "release" / "la_gradients.csv", dtype=str)
    assert all(len(re.sub(r"^0\.0*|\.", "", v)) <= 3 for v in text[fit_tables.P_STEEPER])
    # England's value the site compares with is the summary's gradient_mean_la = exp(b_w)
    s = json.loads((tmp_path / "out" / "release" / "summary.json").read_text(encoding="utf-8"))
    assert s["gradient_mean_la"]["median"] == pytest.approx(float(np.median(np.exp(england))))


@pytest.mark.parametrize("seed", [0, 1])
def test_band_cells_of_tiny_las_cannot_be_recovered_from_the_margins(tmp_path, seed):
    table = tiny_table(seed, n_la=6, per_la=6)
    out = tmp_path / "out"
    report.write(fit_like(table, seed=seed), out)
    bands = pd.read_csv(out / "release" / la_bands.FILE, dtype={"la": str})
    # one row per LA and quintile holding fitted LSOAs, quintiles = pairs of the deciles
    quintile = (deprivation_decile(table["income"].to_numpy()) + 1) // 2
    cells = set(zip(table["la"], quintile.tolist(), strict=True))
    assert set(zip(bands["la"], bands["band"], strict=True)) == cells
    assert bands["band"].between(1, 5).all()
    assert bands["la_name"].notna().all()
    visible = bands["cases"].dropna()
    assert ((visible == 0) | (visible >= 10)).all()
    assert bands["cases"].isna().any()  # counts 0-9 over a few LSOAs: some hidden
    assert bands["rate_per_10k"].isna().tolist() == bands["cases"].isna().tolist()
    # the LP attack: every hidden band cell keeps a range of at least the protection level
    # given every published total (LA, band, decile, national), read as perturbed or exact
    for exact in (False, True):
        rows, lo_b, hi_b, hidden = published_constraints(out, table, exact)
        band_targets = [h for h in hidden if " band " in h[0]]
        assert len(band_targets) == int(bands["cases"].isna().sum())
        for name, target, true in hidden:
            lo, hi = pinned(rows, lo_b, hi_b, target)
            assert lo - 1e-6 <= true <= hi + 1e-6
            assert hi - lo >= PROTECTION - 1e-6, f"{name} narrowed to [{lo}, {hi}]"
    # ... and the attack would have worked without the protection: a small cell exists that
    # the LA total minus its other cells would give back exactly
    y, la = table["referrals"].to_numpy(), table["la"].to_numpy()
    small = [
        (a, b)
        for a, b in cells
        if 0 < y[(la == a) & (quintile == b)].sum() < 10
        and len({q for c, q in cells if c == a}) > 1
    ]
    assert small
    log = [
        json.loads(x)
        for x in (out / "release" / "disclosure_log.jsonl").read_text().split("\n")
        if x
    ]
    entry = next(e for e in log if e["file"] == la_bands.FILE)
    assert entry["suppressed"] == int(bands["cases"].isna().sum())
    assert not re.search(r"primary|secondary|below", json.dumps(entry["actions"]))


def test_la_pages_show_the_band_table_with_hidden_cells_as_c(tmp_path):
    table = tiny_table(2, n_la=6, per_la=6)
    out, site = tmp_path / "out", tmp_path / "site"
    report.write(fit_like(table, seed=2), out)
    api.publish(out, site, boundaries=tmp_path / "none")
    bands = pd.read_csv(out / "release" / la_bands.FILE, dtype={"la": str})
    las = pd.read_csv(out / "release" / "la_gradients.csv", dtype={"la": str}).set_index("la")
    assert bands["cases"].isna().any()
    for code, mine in bands.groupby("la"):
        text = (site / "la" / f"{code}.html").read_text(encoding="utf-8")
        block = re.search(r'<table id="la-bands".*?</table>', text, re.S)
        assert block is not None, code
        for header in ("Deprivation quintile", "Children", "Cases (protected count)"):
            assert re.search(rf'<th scope="col"[^>]*>{re.escape(header)}</th>', block[0]), header
        assert block[0].count('<th scope="row">') == len(mine)
        hidden = int(mine["cases"].isna().sum())
        assert block[0].count(">c</abbr>") == 2 * hidden  # the count and its rate
        assert f"hidden by the disclosure gate ({hidden} in this table)" in text
        # P(steeper than England) as la_gradients.csv gives it (no longer "not in this release")
        p = las.loc[code, fit_tables.P_STEEPER]
        assert f"steeper than England's: <strong>{p:.2f}</strong>" in text
        shown = [int(v) for v in mine["cases"].dropna()]
        assert [int(v.replace(b",", b"")) for v in la_bands.page_counts(text.encode())] == shown
    assert pub.scan(site, 10, out / "internal") == []
    # the scan reads the band counts where the page shows them
    code = bands.loc[bands["cases"].notna() & (bands["cases"] > 0), "la"].iloc[0]
    page = site / "la" / f"{code}.html"
    text = page.read_text(encoding="utf-8")
    cut = text.index('<table id="la-bands"')
    shown = re.compile(
        r'(<th scope="row">[^<]*</th><td class="num">[^<]*</td><td class="num">)'
        r"([\d,]+)<"
    )
    page.write_text(text[:cut] + shown.sub(r"\g<1>4<", text[cut:], count=1), encoding="utf-8")
    assert any(f"{code}.html: a band count 4 under" in p for p in pub.scan(site, 10))


def test_a_release_without_la_bands_says_so(tmp_path):
    out = tmp_path / "out"
    report.write(fit_like(fake_table(3, 12, seed=2)), out)
    r = pub.read_release(out / "release")
    assert r.bands is not None
    text = la_bands.section(None, "E06000001", "Hartlepool", "referrals", {})
    assert "no <code>la_bands.csv</code>" in text
