"""The published site in a real browser: headless Chromium (Debian's) driven by playwright.

Every page loads with no console error and no failed request, every link and image
resolves, the LA table sorts (by click and by keyboard), the skip link comes first, axe-core
(tests/browser, from the npm registry: ``npm ci`` there) finds no serious or critical WCAG
2.2 A/AA violation, and screenshots of the index and an LA page at desktop (1280 px) and
phone (390 px) widths are saved under pytest's temporary folder (their paths printed).
Skipped only where Chromium or axe-core is absent and ``CI`` is unset; on CI they must be.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pandas as pd
import pytest

from fakes import fake_table
from socialgradient.release import publish as pub
from socialgradient.release import report
from test_release import fit_like

AXE = Path(__file__).resolve().parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
BOUNDARIES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "boundaries"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTHS = {"desktop": 1280, "phone": 390}
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


def _need(ok: bool, what: str) -> None:
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing on CI (.ci/run installs it)")
    pytest.skip(f"{what} not installed")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request on stderr
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A site published from a small fake fit (12 LAs), served over HTTP on localhost."""
    tmp = tmp_path_factory.mktemp("site")
    table = fake_table(12, 15, seed=3)
    report.write(fit_like(table), tmp / "out")
    built = pub.publish(tmp / "out", tmp / "site", boundaries=BOUNDARIES)
    with _served(tmp / "site") as root:
        yield built, root, tmp


@contextlib.contextmanager
def _served(folder: Path):
    """``folder`` served over HTTP on localhost (axe-core reads stylesheets by XHR, which
    Chromium refuses on file:// URLs); its root URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    _need(CHROMIUM is not None, "chromium")
    _need(AXE.is_file(), f"axe-core ({AXE})")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _visit(page, url: str) -> None:
    response = page.goto(url, wait_until="load")
    assert response is not None
    assert response.ok, (url, response.status)


def test_every_page_loads_links_resolve_and_axe_passes(site, browser, capsys):
    built, root, _ = site
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on(
        "console",
        lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"failed request: {r.url}"))
    page.on(
        "response",
        lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
    )
    seen: set[str] = set()
    todo = [urljoin(root, "index.html")]
    other: set[str] = set()
    violations = {}
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        _visit(page, url)
        # every image decoded (SVG and PNG), each with alt text that says something
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.src, e.complete && e.naturalWidth > 0, e.alt])"
        )
        for src, loaded, alt in images:
            assert loaded, src
            assert len(alt) > 40, (src, alt)
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            target = urljoin(url, href).split("#")[0]
            assert urlparse(target).netloc == urlparse(root).netloc, f"external link {href}"
            if target.endswith(".html"):
                todo.append(target)
            elif target != root:
                other.add(target)
        page.add_script_tag(path=str(AXE))
        found = page.evaluate(
            "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
            ".violations.map(v => [v.id, v.impact, v.nodes.length])",
            AXE_TAGS,
        )
        violations[url] = [v for v in found if v[1] in ("serious", "critical")]
    for target in sorted(other):  # the data files
        assert context.request.get(target).ok, target
    assert len(seen) == built["pages"] == 12 + 3  # every LA, index, methods, data
    assert errors == []
    assert {u: v for u, v in violations.items() if v} == {}
    with capsys.disabled():
        print(f"\nbrowser: {len(seen)} pages, {len(other)} data links, axe tags {AXE_TAGS}")
    context.close()


def test_la_table_sorts_by_click_and_keyboard(site, browser):
    _, root, _ = site
    page = browser.new_page()
    page.goto(urljoin(root, "index.html"))
    head = page.locator("#la-table thead th").filter(has_text="Gradient score (median)")
    col = page.eval_on_selector_all(
        "#la-table thead th", "hs => hs.findIndex(h => h.textContent.includes('median'))"
    )

    def column() -> list[float]:
        return [
            float(v)
            for v in page.eval_on_selector_all(
                f"#la-table tbody tr > :nth-child({col + 1})",
                "cs => cs.map(c => c.getAttribute('data-value'))",
            )
        ]

    head.locator("button").click()
    assert head.get_attribute("aria-sort") == "ascending"
    assert column() == sorted(column())
    head.locator("button").focus()
    page.keyboard.press("Enter")
    assert head.get_attribute("aria-sort") == "descending"
    assert column() == sorted(column(), reverse=True)
    assert "descending" in page.locator("#la-table-status").inner_text()
    # the skip link is the first stop of the keyboard and leads to the main content
    page.keyboard.press("Home")
    page.goto(urljoin(root, "index.html"))
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main-content"
    page.close()


def test_screenshots_at_desktop_and_phone_widths(site, browser, tmp_path_factory, capsys):
    _, root, _ = site
    shots = tmp_path_factory.mktemp("screenshots")
    la = "la/E06000001.html"
    paths = []
    for label, width in WIDTHS.items():
        page = browser.new_page(viewport={"width": width, "height": 900})
        for name, rel in (("index", "index.html"), ("la", la)):
            page.goto(urljoin(root, rel))
            # nothing wider than the screen but the scrolling table wrappers
            wide = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 1, (label, name, wide)
            path = shots / f"{name}_{label}.png"
            page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 10_000
            paths.append(path)
        page.close()
    with capsys.disabled():
        print("\nscreenshots:\n" + "\n".join(f"  {p}" for p in paths))


def test_findings_page_of_a_suite_loads_and_passes_axe(tmp_path, browser):
    """`publish` on a suite folder (committed bench/suite/findings.csv of one spec, a fake
    fit's output set beside it): the page loads from disk with its figures, no error, and
    axe finds no serious or critical violation."""
    bench = Path(__file__).resolve().parents[1] / "bench" / "suite" / "findings.csv"
    findings = pd.read_csv(bench)
    spec = findings["spec"].value_counts().index[0]
    suite = tmp_path / "suite"
    report.write(fit_like(fake_table(3, 12, seed=5)), suite / spec)
    findings[findings["spec"] == spec].to_csv(suite / "findings.csv", index=False)
    pub.publish(suite, tmp_path / "site")
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda r: errors.append(f"failed request: {r.url}"))
    with _served(tmp_path / "site") as root:
        page.goto(urljoin(root, "index.html"))
        images = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth > 0)")
        assert images
        assert all(images)
        page.add_script_tag(path=str(AXE))
        found = page.evaluate(
            "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
            ".violations.map(v => [v.id, v.impact, v.nodes.length])",
            AXE_TAGS,
        )
    assert [v for v in found if v[1] in ("serious", "critical")] == []
    assert errors == []
    page.close()
