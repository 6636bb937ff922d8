"""Publish an output set's ``release/`` as a static, offline, accessible website and EES data.

:func:`publish` reads a **verified** output set (:func:`socialgradient.util.outputs.verify`:
every file as its manifest lists it) and builds the site from ``release/`` alone:
``index.html``, ``la/<code>.html`` per LA, ``methods.html``, ``data/`` (EES tidy CSV, its
``.meta.csv`` and ``index.html`` with the screening results of
:func:`socialgradient.release.ees.screen`), SVG figures drawn from the released numbers
(:mod:`socialgradient.release.site_figures`), the release's PNG figures, and local CSS and
JavaScript. It refuses an ``internal/`` folder, a set that does not verify, EES files that
fail a screening check, and a site that fails :func:`scan` (the release scans: no LSOA code,
no count under the threshold, nothing from ``internal/``). The site is written whole or not
at all (built aside, then renamed into place); an existing folder is replaced only if it is a
site this function wrote (it holds :data:`MARKER`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from socialgradient.release import ees, findings_site, la_bands, neighbours, site, site_figures
from socialgradient.release.disclosure import LOG_NAME, DisclosureError
from socialgradient.util import outputs

MARKER = ".socialgradient-site"
LSOA_CODE = re.compile(rb"[EW]01\d{6}")
PNG_FIGURES = ("gradient_curve", "inverse_intervention")
EES_NAME = "la_social_gradient"


class PublishError(ValueError):
    """The output set or the destination cannot be published as asked (a message)."""


def _source(out: Path) -> Path:
    where = out.resolve()
    if any(
        p.name in outputs.PARTS and (p.parent / outputs.MANIFEST).is_file()
        for p in (where, *where.parents)
    ):
        raise PublishError(
            f"{out}: publish reads a whole output set (the folder holding MANIFEST.json, "
            "release/ and internal/) and builds the site from its release/ only; give that "
            "folder, never internal/ or release/ itself"
        )
    outputs.verify(out)  # OutputSetError (a ValueError) naming every problem
    return out / "release"


def _destination(site_dir: Path, out: Path) -> None:
    s, o = site_dir.resolve(), out.resolve()
    if s == o or o in s.parents or s in o.parents:
        raise PublishError(
            f"{site_dir}: the site must be outside the output set {out} and not hold it"
        )
    if site_dir.exists():
        if not site_dir.is_dir():
            raise PublishError(f"{site_dir}: exists and is not a folder")
        if any(site_dir.iterdir()) and not (site_dir / MARKER).is_file():
            raise PublishError(
                f"{site_dir}: a folder that is not empty and not a site written by publish "
                f"(no {MARKER}); choose another --out or empty it"
            )


def read_release(release: Path) -> site.Released:
    """Read what the site needs from ``release/`` (and nothing else)."""
    need = ["summary.json", "la_gradients.csv", "ppc.json", LOG_NAME]
    missing = [n for n in need if not (release / n).is_file()]
    if missing:
        raise PublishError(f"{release}: no {', '.join(missing)}; not a fit's release")
    with open(release / "summary.json", encoding="utf-8", newline="") as f:
        summary = json.load(f)
    with open(release / "ppc.json", encoding="utf-8", newline="") as f:
        ppc = json.load(f)
    with open(release / LOG_NAME, encoding="utf-8", newline="") as f:
        log = [json.loads(line) for line in f if line.strip()]
    las = pd.read_csv(release / "la_gradients.csv", dtype={"la": str})
    if "gradient_mean_la" not in summary or las.empty:
        raise PublishError(f"{release}: summary.json has no gradient_mean_la or no LA rows")
    given = dict(zip(las["la"], las["la_name"], strict=True)) if "la_name" in las else {}
    info = neighbours.la_info(las["la"], {k: str(v) for k, v in given.items() if pd.notna(v)})
    names = {c: i.name for c, i in info.items()}
    bands = None
    if (release / la_bands.FILE).is_file():
        bands = pd.read_csv(release / la_bands.FILE, dtype={"la": str})
    return site.Released(summary, las, ppc, log, info, names, bands=bands)


def _svg(fig, path: Path) -> None:
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "socialgradient", "svg.fonttype": "path"}):
        fig.savefig(path, format="svg", metadata={"Date": None})
    fig.clear()


def _figures(r: site.Released, release: Path, root: Path, boundaries) -> None:
    (root / "figures").mkdir()
    eng = r.england
    fig, alt = site_figures.forest(r.las, eng, r.names)
    _svg(fig, root / "figures" / "la_forest.svg")
    r.figures["la_forest"] = (
        "figures/la_forest.svg",
        alt,
        "Each LA's gradient score: median (marker), 80% (thick) and 95% (thin) intervals; "
        "marker shape says whether the 95% interval lies above, below or across England's.",
    )
    fig, alt = site_figures.ppc_ratio(r.ppc)
    _svg(fig, root / "figures" / "ppc.svg")
    r.figures["ppc"] = ("figures/ppc.svg", alt, "Observed and replicated totals by decile.")
    from socialgradient.results.maps import find_boundaries, match_codes, read_boundaries

    found = find_boundaries(boundaries)
    if found is not None:
        rings = read_boundaries(found)
        unit = match_codes({c for c, _ in rings}, r.las["la"])
        fig, alt = site_figures.la_map(r.las, eng, [(unit[c] or c, g) for c, g in rings], r.names)
        _svg(fig, root / "figures" / "la_map.svg")
        r.figures["la_map"] = (
            "figures/la_map.svg",
            alt,
            "Hatched: 95% interval includes England's.",
        )
    ctx = r.summary.get("contextual_effect", {})
    words = {
        "gradient_curve": f"Modelled rates rise with neighbourhood deprivation by a factor of "
        f"{eng['median']:.2f} per 10 percentage points (95% interval {eng['ci95'][0]:.2f} to "
        f"{eng['ci95'][1]:.2f}), with observed rates by decile where released.",
        "inverse_intervention": "Rates by neighbourhood deprivation in LAs of differing "
        "deprivation; contextual effect (log rate ratio) "
        + (
            f"{ctx['median']:.2f}, P(below 0) {ctx.get('p_negative', float('nan')):.2f}."
            if ctx
            else "not estimated."
        ),
    }
    for name in PNG_FIGURES:
        if (release / f"{name}.png").is_file():
            shutil.copyfile(release / f"{name}.png", root / "figures" / f"{name}.png")
            r.figures[name] = (
                f"figures/{name}.png",
                words[name],
                name.replace("_", " ").capitalize() + ".",
            )
    (root / "figures" / "la").mkdir()
    for code in r.las["la"].astype(str):
        group = [code, *[c for c in r.info[code].neighbours if c in set(r.las["la"])]]
        fig, alt = site_figures.forest(r.las[r.las["la"].isin(group)], eng, r.names, code)
        _svg(fig, root / "figures" / "la" / f"{code}.svg")
        r.figures[f"la/{code}"] = (
            f"../figures/la/{code}.svg",
            alt,
            f"{r.names.get(code, code)} (bold) and its statistical neighbours; dashed: England.",
        )


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def scan(site_dir: Path, threshold: int, internal: Path | None = None) -> list[str]:
    """Run the release scans over a built site; every problem found (none: ``[]``).

    No file holds an LSOA code's shape; every count in the EES ``cases`` column and on the LA
    pages (their LA total and their table of counts by deprivation band) is hidden (``c``), 0
    or at least ``threshold``; no file is a copy of a file of
    ``internal`` (same SHA-256) or names it.
    """
    problems = []
    hashes = {}
    if internal is not None and internal.is_dir():
        hashes = {
            hashlib.sha256(p.read_bytes()).hexdigest(): p.name
            for p in internal.rglob("*")
            if p.is_file()
        }
    for p in sorted(q for q in site_dir.rglob("*") if q.is_file()):
        blob = p.read_bytes()
        rel = p.relative_to(site_dir)
        if LSOA_CODE.search(blob):
            problems.append(f"{rel}: holds an LSOA code")
        if hashlib.sha256(blob).hexdigest() in hashes or b"internal/" in blob:
            problems.append(f"{rel}: a copy of, or a reference to, internal/")
        if p.suffix == ".csv" and not p.name.endswith(".meta.csv"):
            table = pd.read_csv(p, dtype=str, keep_default_na=False)
            for v in table.get("cases", []):
                if v not in ("c", "x", "z") and 0 < float(v) < threshold:
                    problems.append(f"{rel}: a count {v} under the threshold {threshold}")
        if p.suffix == ".html":
            for v in re.findall(
                rb"Cases \(protected count\)</th><td class=\"num\">([\d,.]+)<", blob
            ):
                if 0 < float(v.replace(b",", b"")) < threshold:
                    problems.append(f"{rel}: a count {v.decode()} under the threshold {threshold}")
            for v in la_bands.page_counts(blob):
                if not re.fullmatch(rb"[\d,]+", v) or 0 < float(v.replace(b",", b"")) < threshold:
                    problems.append(
                        f"{rel}: a band count {v.decode()} under the threshold {threshold}"
                    )
    return problems


def publish(out_dir, site_dir, *, year: int = 2019, boundaries=None) -> dict:
    """Build the site of an output set; see the module docstring.

    Parameters
    ----------
    out_dir : path-like
        A verified output set (the folder holding ``MANIFEST.json``), or a ``suite`` folder
        (``findings.csv`` and a verified output set per spec): then the site is its findings
        page (:mod:`socialgradient.release.findings_site`).
    site_dir : path-like
        Where to write the site (created; a previous site there is replaced).
    year : int
        The reporting year of the data (year ending 31 March) for the EES ``time_period``;
        default 2019, the year the default data are calibrated to.
    boundaries : path-like, optional
        The ONS boundary GeoJSON for the map (see
        :func:`socialgradient.results.maps.find_boundaries`); without one, no map.

    Returns
    -------
    dict
        ``site`` (path), ``pages`` (number of HTML pages), ``las``, ``screening`` (check
        name -> result) and ``figures`` (number of figures).

    Raises
    ------
    PublishError
        ``internal/`` or ``release/`` given, a site inside the set, a foreign destination, EES
        files that fail a screening check.
    socialgradient.util.outputs.OutputSetError
        The set does not verify.
    DisclosureError
        The built site fails :func:`scan`.
    """
    out, dest = Path(out_dir), Path(site_dir)
    if findings_site.is_suite(out):
        _destination(dest, out)
        findings = findings_site.read(out)
        made = _written(dest, lambda tmp: {"figures": findings_site.build(findings, tmp)}, 10)
        return made | {"las": 0, "screening": {}, "findings": len(findings)}
    release = _source(out)
    _destination(dest, out)
    r = read_release(release)
    threshold = int(r.log[0]["rule"]["threshold"]) if r.log else 10

    def fill(tmp: Path) -> dict:
        for sub in ("la", "data"):
            (tmp / sub).mkdir()
        stats = r.ppc.get("statistic", [])
        total: dict = next((x for x in stats if x.get("statistic") == "total"), {})
        data, meta = ees.ees_tables(r.las, r.england, r.info, year, total.get("observed"))
        r.screening = ees.screen(data, meta)
        failed = [f"{c.check}: {c.message}" for c in r.screening if c.result == "FAIL"]
        if failed:
            raise PublishError("EES files fail DfE's screening checks: " + "; ".join(failed))
        r.ees_files = [p.name for p in ees.write_ees(data, meta, tmp / "data", EES_NAME)]
        _figures(r, release, tmp, boundaries)
        _write(tmp / "index.html", site.index_page(r))
        _write(tmp / "methods.html", site.methods_page(r))
        _write(tmp / "data" / "index.html", site.data_page(r))
        for code in r.las["la"].astype(str):
            _write(tmp / "la" / f"{code}.html", site.la_page(r, code))
        return {"figures": len(r.figures)}

    made = _written(dest, fill, threshold, out / "internal")
    return made | {"las": len(r.las), "screening": {c.check: c.result for c in r.screening}}


def _written(dest: Path, fill, threshold: int, internal: Path | None = None) -> dict:
    """Build a site aside with ``fill(folder)``, scan it, and rename it into ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        (tmp / "static").mkdir()
        for asset in ("site.css", "sort.js"):
            shutil.copyfile(neighbours.STATIC / asset, tmp / "static" / asset)
        made = fill(tmp)
        problems = scan(tmp, threshold, internal)
        if problems:
            raise DisclosureError("the site fails the release scans: " + "; ".join(problems))
        _write(tmp / MARKER, "a site written by socialgradient publish\n")
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{tmp.name[-8:]}")
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old)
        else:
            tmp.rename(dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return made | {"site": dest, "pages": len(list(dest.rglob("*.html")))}
