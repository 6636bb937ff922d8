"""HTML of the published site: the page shell, tables and the LA page, as plain strings.

Every page is standalone HTML5 in British English with a skip link, one ``h1``, landmarks
(header, nav, main, footer), tables with captions and ``scope`` on every header, figures
with alt text that states their message, and only local CSS and JavaScript
(``static/site.css``, ``static/sort.js``): no CDN, web font or external request. Values are
escaped; the page text is built from released numbers only.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import pandas as pd

SITE_NAME = "The social gradient in children's social care"


def esc(value) -> str:
    """Escape ``value`` for HTML text and attributes."""
    return html.escape(str(value), quote=True)


def num(value, dp: int = 2) -> str:
    """Format a number to ``dp`` places; a missing value as an en dash with a hidden reason."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<span aria-label="not available">&ndash;</span>'
    return f"{float(value):,.{dp}f}"


def interval(lo, hi, dp: int = 2) -> str:
    """Format an interval as ``lo to hi``."""
    return f"{num(lo, dp)} to {num(hi, dp)}"


NAV: tuple[tuple[str, str], ...] = (
    ("index.html", "Social gradient: results"),
    ("methods.html", "Methods"),
    ("data/index.html", "Data"),
)


def page(title: str, body: str, depth: int = 0, description: str = "", nav=NAV) -> str:
    """Wrap ``body`` in the site's page shell.

    ``depth``: folders below the site root; ``nav``: (path from the root, text) of the
    navigation's links.
    """
    up = "../" * depth
    links = "".join(f'<a href="{up}{esc(href)}">{esc(text)}</a>' for href, text in nav)
    return f"""<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} - {esc(SITE_NAME)}</title>
<meta name="description" content="{esc(description or title)}">
<link rel="stylesheet" href="{up}static/site.css">
<link rel="icon" href="data:,">
</head>
<body>
<a class="skip-link" href="#main-content">Skip to main content</a>
<header class="site"><div class="width">
<nav aria-label="Site">{links}</nav>
</div></header>
<main id="main-content" class="width" tabindex="-1">
{body}
</main>
<footer class="site"><div class="width">
<p>Published from a verified output set's <code>release/</code> folder only: numbers that
passed the disclosure gate and model summaries. Intervals are equal-tailed credible
intervals. Contains public sector information licensed under the Open Government Licence
v3.0.</p>
</div></footer>
<script src="{up}static/sort.js"></script>
</body>
</html>
"""


def figure(src: str, alt: str, caption: str) -> str:
    """Show a figure with its alt text (its message) and a visible caption."""
    return (
        f'<figure><img src="{esc(src)}" alt="{esc(alt)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def table(
    caption: str,
    headers: list[tuple[str, str]],
    rows: Sequence[Sequence[tuple[str, str | None]]],
    table_id: str = "",
    sortable: bool = False,
    row_headers: bool = True,
) -> str:
    """Build an accessible table.

    Parameters
    ----------
    caption : str
        Its caption (escaped).
    headers : list of (text, kind)
        Column headers; ``kind`` "number" right-aligns (and sorts numerically), "text" not.
    rows : list of list of (html, sort value)
        Cells as ready HTML with an optional sort value (``data-value``).
    table_id : str
        The table's id (needed when ``sortable``).
    sortable : bool
        Headers become buttons that sort the rows (``static/sort.js``).
    row_headers : bool
        The first cell of each row is a row header (``th scope="row"``).

    Returns
    -------
    str
        The table's HTML, in a scrolling wrapper.
    """
    head = []
    for text, kind in headers:
        cls = ' class="num"' if kind == "number" else ""
        if sortable:
            head.append(
                f'<th scope="col"{cls} data-sort="{kind}"><button type="button">'
                f"{esc(text)}</button></th>"
            )
        else:
            head.append(f'<th scope="col"{cls}>{esc(text)}</th>')
    body = []
    for row in rows:
        cells = []
        for i, ((content, value), (_, kind)) in enumerate(zip(row, headers, strict=True)):
            cls = ' class="num"' if kind == "number" else ""
            data = f' data-value="{esc(value)}"' if value is not None else ""
            tag = "th" if (i == 0 and row_headers) else "td"
            scope = ' scope="row"' if tag == "th" else ""
            cells.append(f"<{tag}{scope}{cls}{data}>{content}</{tag}>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    klass = ' class="sortable"' if sortable else ""
    status = (
        f'<p id="{esc(table_id)}-status" class="secondary" role="status" aria-live="polite">'
        "Select a column heading to sort the table.</p>"
        if sortable
        else ""
    )
    return (
        f'{status}<div class="table-wrap"><table{ident}{klass}><caption>{esc(caption)}</caption>'
        f"<thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def verdict_words(where: str) -> str:
    """Say in words where an LA's 95% interval lies against England's gradient."""
    return {
        "above": "steeper than England's: its whole 95% interval lies above England's median",
        "below": "less steep than England's: its whole 95% interval lies below England's median",
        "covers": "not distinguishable from England's: its 95% interval includes England's median",
    }[where]


def tag(where: str) -> str:
    """Tag (in text, not colour alone) for an LA's position against England."""
    text = {"above": "Steeper", "below": "Less steep", "covers": "Similar"}[where]
    return f'<span class="tag {where}">{text}</span>'


def la_rows(las: pd.DataFrame, where: pd.Series, names: dict[str, str], up: str) -> list:
    """Rows of the LA table: name (link), code, median, intervals, rank, versus England."""
    rows = []
    for i, r in las.iterrows():
        code = str(r["la"])
        name = names.get(code, code)
        row = [
            (f'<a href="{up}la/{esc(code)}.html">{esc(name)}</a>', name),
            (esc(code), code),
            (num(r["gradient_median"]), f"{r['gradient_median']:.6g}"),
            (interval(r["gradient_lo80"], r["gradient_hi80"]), f"{r['gradient_lo80']:.6g}"),
            (interval(r["gradient_lo95"], r["gradient_hi95"]), f"{r['gradient_lo95']:.6g}"),
            (rank_text(r), _sortable(r.get("rank_median"))),
            (tag(where[i]), where[i]),
        ]
        if "p_steeper_than_england" in las.columns:
            row.insert(
                5, (num(r["p_steeper_than_england"]), _sortable(r["p_steeper_than_england"]))
            )
        rows.append(row)
    return rows


def _sortable(value) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value):.6g}"


def rank_text(r) -> str:
    """Give an LA's rank (1 = steepest) with its 95% interval, or why it has none."""
    if "rank_median" not in r or pd.isna(r["rank_median"]):
        return "not ranked"
    return f"{r['rank_median']:.0f} ({r['rank_lo95']:.0f} to {r['rank_hi95']:.0f})"


LA_HEADERS = [
    ("Local authority", "text"),
    ("Code", "text"),
    ("Gradient score (median)", "number"),
    ("80% interval", "number"),
    ("95% interval", "number"),
    ("Rank, 1 = steepest (95% interval)", "number"),
    ("Against England", "text"),
]


def la_headers(las: pd.DataFrame) -> list[tuple[str, str]]:
    """Headers of the LA table (with P(steeper than England) when released)."""
    out = list(LA_HEADERS)
    if "p_steeper_than_england" in las.columns:
        out.insert(5, ("P(steeper than England)", "number"))
    return out
