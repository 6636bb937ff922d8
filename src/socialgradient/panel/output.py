"""The LA panel's output set: what may be published in ``release/``, the tree in ``internal/``.

:func:`write_panel` writes it whole or not at all, the LA counts (DfE's published figures)
through the disclosure gate under a logged reason (:data:`PUBLISHED`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from socialgradient.data.sources.geo import DFE_MERGES
from socialgradient.panel.plots import plot_gradient, plot_scatter
from socialgradient.panel.summaries import gradient_by_year, la_table, summarise_panel
from socialgradient.util.progress import step

log = logging.getLogger(__name__)

PUBLISHED = "DfE published statistics (public, disclosure-controlled at source)"
PANEL_README = """NOT FOR RELEASE

This folder holds the full posterior tree of the LA panel (posterior.nc: every draw, the
observed LA x year counts and exposures). Those counts are DfE's published figures, but the
tree stays here by the same rule as every fit's. Keep it inside the secure environment.

What may be published is in ../release/.
"""


def write_panel(
    tree: xr.DataTree,
    panel: pd.DataFrame,
    out: str | Path,
    boundaries: str | Path | None = None,
) -> dict[str, Any]:
    """Write the panel's output set to ``out``, whole or not at all.

    :class:`socialgradient.util.outputs.Writer` writes it. ``release/``: ``panel.csv`` and
    ``la_effects.csv`` (LA counts: DfE's published figures, through the disclosure gate under
    a logged reason), ``gradient_by_year.csv``, ``summary.json``, ``panel_report.json``,
    figures ``gradient_by_year.png``, ``la_scatter.png`` and, given the boundary GeoJSON,
    ``la_map.png`` (with ``map_report.json``: codes matched and unmatched), and
    ``disclosure_log.jsonl``. ``internal/``: ``posterior.nc``.
    Returns ``{"summary": ..., "paths": {file name: final path}}``.
    """
    import matplotlib.pyplot as plt

    from socialgradient.panel.data import map_units
    from socialgradient.release import disclosure
    from socialgradient.results.maps import choropleth, read_boundaries
    from socialgradient.sampling.fit import save
    from socialgradient.util import outputs

    summary = summarise_panel(tree)
    las = la_table(tree, panel)
    meta = {
        "command": "panel",
        "spec_hash": tree.attrs["spec_hash"],
        "data_hash": tree.attrs["data_hash"],
        "measure": tree.attrs["measure"],
    }
    with outputs.Writer(out, readme=PANEL_README, **meta) as w:
        rel = w.release
        log_path = rel / disclosure.LOG_NAME
        # LA-level counts leave through the disclosure gate; these are DfE's published
        # figures (already disclosure-controlled by DfE, suppressed cells kept missing), so
        # they pass under a logged reason rather than being suppressed a second time.
        for name, table in (("panel.csv", panel), ("la_effects.csv", las)):
            disclosure.write_table(
                table,
                rel / name,
                level="la",
                override=PUBLISHED,
                group_columns=["la", "year"] if name == "panel.csv" else ["la"],
                count_columns=[],
                log=log_path,
                logged_path=w.path(f"release/{name}"),
                log_root=w.out,
            )
        texts = {
            "panel_report.json": json.dumps(json.loads(tree.attrs["report"]), indent=2),
            "gradient_by_year.csv": gradient_by_year(tree).to_csv(index=False, lineterminator="\n"),
            "summary.json": json.dumps(summary, indent=2, default=float),
        }
        with step(log, "panel figures"):
            figures = {
                "gradient_by_year.png": plot_gradient(tree),
                "la_scatter.png": plot_scatter(tree, panel),
            }
            if boundaries is not None and Path(boundaries).is_file():
                polygons = read_boundaries(boundaries)
                merged = json.loads(tree.attrs["spec"]).get("dfe_merges")
                coded, match = map_units(polygons, las["la"], DFE_MERGES if merged else ())
                texts["map_report.json"] = json.dumps(match, indent=2)
                figures["la_map.png"] = choropleth(
                    las.set_index("la")["la_effect_median"],
                    coded,
                    title=f"LA effects, {tree.attrs['measure']}: log rate ratio to the "
                    "gradient line",
                    label="LA effect (log scale)",
                )
            for name, fig in figures.items():
                fig.savefig(rel / name, dpi=120, format="png")
                plt.close(fig)
        for name, body in texts.items():
            (rel / name).write_text(body.rstrip("\n") + "\n", encoding="utf-8", newline="\n")
        with open(log_path, "a", encoding="utf-8", newline="\n") as f:
            for name in figures:
                sha = hashlib.sha256((rel / name).read_bytes()).hexdigest()
                f.write(
                    json.dumps(
                        {
                            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                            "file": name,
                            "level": "model",
                            "decision": "written",
                            "note": "drawn from model outputs and the LA figures above only",
                            "sha256": sha,
                        }
                    )
                    + "\n"
                )
        save(tree, w.internal / "posterior.nc")
        w.commit()
    names = [*texts, *figures, "panel.csv", "la_effects.csv", disclosure.LOG_NAME]
    paths = {name: w.path(f"release/{name}") for name in names}
    paths["posterior.nc"] = w.path("internal/posterior.nc")
    return {"summary": summary, "paths": paths}
