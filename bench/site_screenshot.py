"""Screenshots of a published site's index and one LA page at desktop and phone widths.

Run: ``.venv/bin/python bench/site_screenshot.py SITE OUT [--la CODE]``, where ``SITE`` is a
folder ``socialgradient publish`` wrote and ``OUT`` the folder for the PNGs (created). The
site is served over HTTP on localhost (as ``tests/test_site_browser.py`` serves it) and
opened in headless Chromium from Debian's packages (``chromium`` on ``PATH``) driven by
playwright; each page is captured whole (``full_page``) at 1280 px (desktop) and 390 px
(phone) wide: ``index-desktop.png``, ``index-phone.png``, ``la-<CODE>-desktop.png`` and
``la-<CODE>-phone.png``. ``--la`` picks the LA page (default: the first in ``la/`` by name).
Prints the files written. Exit 2 (a message) when the site, its LA page or Chromium is
missing, or a page does not load.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

WIDTHS = {"desktop": 1280, "phone": 390}
HEIGHT = 900


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request on stderr
        pass


@contextlib.contextmanager
def served(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on localhost while in the block; yield its root URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def pages_of(site: Path, la: str | None) -> dict[str, str]:
    """Return name -> path (from the site root) of the pages to capture.

    Raises
    ------
    SystemExit
        With a message when ``site`` holds no ``index.html`` or not the LA page asked for.
    """
    if not (site / "index.html").is_file():
        raise SystemExit(f"{site}: no index.html; not a site written by socialgradient publish")
    found = sorted((site / "la").glob("*.html")) if (site / "la").is_dir() else []
    if la is not None:
        found = [p for p in found if p.stem == la]
    if not found:
        raise SystemExit(f"{site}: no LA page" + (f" la/{la}.html" if la else "s in la/"))
    return {"index": "index.html", f"la-{found[0].stem}": f"la/{found[0].name}"}


def capture(site: Path, out: Path, la: str | None = None) -> list[Path]:
    """Write the screenshots of ``site`` into ``out``; return the files, in order.

    Parameters
    ----------
    site : pathlib.Path
        A site folder (``index.html``, ``la/<code>.html``).
    out : pathlib.Path
        The folder the PNGs are written to (created).
    la : str, optional
        The LA code whose page is captured (default: the first LA page by name).

    Returns
    -------
    list of pathlib.Path
        ``<page>-<width name>.png`` for each page and width of :data:`WIDTHS`.
    """
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found on PATH (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    targets = pages_of(site, la)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with served(site) as root, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for width_name, width in WIDTHS.items():
                context = browser.new_context(viewport={"width": width, "height": HEIGHT})
                page = context.new_page()
                for name, path in targets.items():
                    response = page.goto(root + path, wait_until="load")
                    if response is None or not response.ok:
                        status = "no response" if response is None else response.status
                        raise SystemExit(f"{path}: did not load ({status})")
                    file = out / f"{name}-{width_name}.png"
                    page.screenshot(path=str(file), full_page=True)
                    written.append(file)
                context.close()
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="a folder written by socialgradient publish")
    parser.add_argument("out", type=Path, help="the folder for the PNG files (created)")
    parser.add_argument("--la", help="the LA code whose page is captured")
    args = parser.parse_args(argv)
    try:
        files = capture(args.site, args.out, args.la)
    except SystemExit as err:
        print(f"site_screenshot: error: {err}", file=sys.stderr)
        return 2
    for f in files:
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
