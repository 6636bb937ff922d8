"""`socialgradient publish`: a site built from a verified release/ only, refusing what it must,
and passing the release's disclosure scans on tiny LAs. Fake fits (no sampler)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fakes import fake_table
from sets import assert_release_clean
from socialgradient import api, cli
from socialgradient.release import findings_site, pages, report
from socialgradient.release import publish as pub
from socialgradient.release.disclosure import DisclosureError
from socialgradient.util import outputs
from test_release import fit_like, tiny_table


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """An output set of a fake fit of 6 LAs, one renamed Cumberland (no DfE neighbours)."""
    path = tmp_path_factory.mktemp("pub") / "out"
    table = fake_table(6, 15, seed=1)
    table["la"] = table["la"].replace({"E06000006": "E06000063"})
    report.write(fit_like(table), path)
    return path


def test_publish_builds_every_page_and_the_ees_files(out, tmp_path):
    built = api.publish(out, tmp_path / "site", boundaries=tmp_path / "none")
    site = tmp_path / "site"
    assert built["pages"] == 6 + 3
    assert built["las"] == 6
    assert set(built["screening"].values()) == {"PASS"}
    assert len(built["screening"]) == 38
    for name in ("index.html", "methods.html", "data/index.html", "la/E06000001.html"):
        assert (site / name).is_file(), name
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "Hartlepool" in index  # names from the package's LA lookup
    assert 'scope="col"' in index
    assert 'class="skip-link"' in index
    assert "http://" not in index
    assert "https://" not in index  # offline: no CDN, fonts or scripts from elsewhere
    assert "No LA map" in index  # no boundary file given
    cumberland = (site / "la" / "E06000063.html").read_text(encoding="utf-8")
    assert "has no DfE statistical neighbours" in cumberland
    hartlepool = (site / "la" / "E06000001.html").read_text(encoding="utf-8")
    assert "statistical neighbours of Hartlepool" in hartlepool
    assert "Middlesbrough" in hartlepool  # a fitted neighbour (E06000002), in the table
    data = pd.read_csv(site / "data" / "la_social_gradient.csv", dtype=str, keep_default_na=False)
    assert len(data) == 7  # England and 6 LAs
    assert data.loc[data["new_la_code"] == "E06000063", "region_name"].item() == "North West"
    methods = (site / "methods.html").read_text(encoding="utf-8")
    for words in ("Diagnostics", "Disclosure control", "How to reproduce", "pymc", "LKJ(eta 2"):
        assert words in methods
    # a second publish replaces the site it wrote, whole
    api.publish(out, site, boundaries=tmp_path / "none")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site.")]


def test_la_names_and_p_steeper_from_the_release_when_given(out, tmp_path):
    other = tmp_path / "out"
    table = fake_table(3, 12, seed=2)
    tree = fit_like(table)
    report.write(tree, other)
    # a release whose la_gradients.csv has la_name (as report.py writes it from issue 30 on)
    # and P(steeper than England) (a column the site shows when a release has it)
    las = pd.read_csv(other / "release" / "la_gradients.csv")
    las["la_name"] = ["Alpha", "Beta", "Gamma"]
    las["p_steeper_than_england"] = [0.91, 0.5, 0.07]
    with outputs.Writer(other, command="test") as w:
        for p in (other / "release").iterdir():
            (w.release / p.name).write_bytes(p.read_bytes())
        las.to_csv(w.release / "la_gradients.csv", index=False)
        w.commit()
    built = api.publish(other, tmp_path / "site", boundaries=tmp_path / "none")
    assert set(built["screening"].values()) == {"PASS"}
    beta = (tmp_path / "site" / "la" / "E06000002.html").read_text(encoding="utf-8")
    assert "<h1>Beta</h1>" in beta
    assert "steeper than England's: <strong>0.50</strong>" in beta
    assert "P(steeper than England)" in (tmp_path / "site" / "index.html").read_text("utf-8")
    data = pd.read_csv(tmp_path / "site" / "data" / "la_social_gradient.csv", dtype=str)
    assert data["prob_steeper_than_england"].tolist() == ["z", "0.91", "0.50", "0.07"]


def test_refuses_internal_release_unverified_and_foreign_destinations(out, tmp_path):
    with pytest.raises(pub.PublishError, match="never internal/ or release/"):
        api.publish(out / "internal", tmp_path / "a")
    with pytest.raises(pub.PublishError, match="never internal/ or release/"):
        api.publish(out / "release", tmp_path / "a")
    with pytest.raises(pub.PublishError, match="outside the output set"):
        api.publish(out, out / "site")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(pub.PublishError, match="not a site written by publish"):
        api.publish(out, foreign)
    assert (foreign / "notes.txt").read_text(encoding="utf-8") == "keep"
    altered = tmp_path / "altered"
    report.write(fit_like(fake_table(3, 12, seed=4)), altered)
    summary = altered / "release" / "summary.json"
    summary.write_text(summary.read_text(encoding="utf-8").replace("1", "2"), encoding="utf-8")
    with pytest.raises(outputs.OutputSetError, match="altered"):
        api.publish(altered, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_cli_publish_and_its_errors(out, tmp_path, capsys):
    assert cli.main(["publish", str(out), "--out", str(tmp_path / "site")]) == 0
    assert "9 pages" in capsys.readouterr().out
    assert cli.main(["publish", str(out / "internal"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "publish: error:" in err
    assert "internal/" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("seed", [0, 1])
def test_site_of_tiny_las_passes_the_release_scans(tmp_path, seed):
    table = tiny_table(seed, n_la=6, per_la=2)  # LA totals of 0-18: some hidden
    out = tmp_path / "out"
    report.write(fit_like(table, seed=seed), out)
    las = pd.read_csv(out / "release" / "la_gradients.csv")
    assert las["cases"].isna().any()  # counts 0-9: the gate hid some
    site = tmp_path / "site"
    api.publish(out, site, boundaries=tmp_path / "none")
    threshold = json.loads((out / "release" / "disclosure_log.jsonl").read_text().split("\n")[0])[
        "rule"
    ]["threshold"]
    assert pub.scan(site, threshold, out / "internal") == []
    # the same check as release/'s: none of the table's LSOA codes, nor any code's shape
    (site / "release").symlink_to(site, target_is_directory=True)
    files = assert_release_clean(site, table["lsoa"])
    assert len(files) > 10
    # every visible count 0 or >= the threshold, hidden ones the GSS symbol c
    data = pd.read_csv(site / "data" / "la_social_gradient.csv", dtype=str, keep_default_na=False)
    cases = data.loc[data["cases"] != "c", "cases"].astype(float)
    assert ((cases == 0) | (cases >= threshold)).all()
    hidden = las.loc[las["cases"].isna(), "la"]
    assert (data.set_index("new_la_code").loc[hidden, "cases"] == "c").all()
    for code in hidden:
        page = (site / "la" / f"{code}.html").read_text(encoding="utf-8")
        assert "hidden by the disclosure gate" in page


def test_scan_finds_what_it_must(out, tmp_path):
    site = tmp_path / "site"
    api.publish(out, site, boundaries=tmp_path / "none")
    assert pub.scan(site, 10, out / "internal") == []
    (site / "extra.html").write_text("<p>E01000123</p>", encoding="utf-8")
    data = site / "data" / "la_social_gradient.csv"
    t = pd.read_csv(data, dtype=str, keep_default_na=False)
    t.loc[1, "cases"] = "3"
    t.to_csv(data, index=False)
    (site / "copy.json").write_bytes((out / "internal" / "ppc_full.json").read_bytes())
    la_page = site / "la" / "E06000001.html"
    text = la_page.read_text(encoding="utf-8")
    shown = re.search(r"Cases \(protected count\)</th><td class=\"num\">([\d,]+)<", text)
    assert shown is not None  # the scan reads the count where the page shows it
    la_page.write_text(text.replace(shown.group(0), shown.group(0).replace(shown[1], "4")), "utf-8")
    problems = pub.scan(site, 10, out / "internal")
    assert any("extra.html: holds an LSOA code" in p for p in problems)
    assert any("a count 3 under the threshold 10" in p for p in problems)
    assert any("E06000001.html: a count 4 under the threshold 10" in p for p in problems)
    assert any("copy.json: a copy of, or a reference to, internal/" in p for p in problems)
    assert issubclass(DisclosureError, PermissionError)


def test_publish_a_suite_folder_as_its_findings_page(tmp_path):
    """A suite folder: every finding of the committed bench/suite/findings.csv that comes from
    one spec, with that spec's output set (a fake fit) beside it."""
    bench = Path(__file__).resolve().parents[1] / "bench" / "suite" / "findings.csv"
    findings = pd.read_csv(bench)
    spec = findings["spec"].value_counts().index[0]
    mine = findings[findings["spec"] == spec]
    suite = tmp_path / "suite"
    report.write(fit_like(fake_table(3, 12, seed=5)), suite / spec)
    mine.to_csv(suite / "findings.csv", index=False)
    built = api.publish(suite, tmp_path / "site")
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    for finding in mine["finding"]:
        assert pages.esc(finding) in page
    themes = mine.loc[mine["lo95"].notna(), "theme"].unique()
    assert built["figures"] == len(themes)
    assert sorted(p.name for p in (tmp_path / "site" / "figures").iterdir()) == sorted(
        f"findings_{t}.svg" for t in themes
    )
    assert 'href="methods.html"' not in page  # no link to a page it does not have
    # a suite folder whose spec set is missing or altered is refused
    shutil.rmtree(suite / spec / "internal")
    with pytest.raises(outputs.OutputSetError):
        api.publish(suite, tmp_path / "site2")
    shutil.rmtree(suite / spec)
    with pytest.raises(findings_site.FindingsError, match=f"no output set {spec}/"):
        api.publish(suite, tmp_path / "site2")
