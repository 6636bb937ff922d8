"""The published site's figures, drawn from the released numbers only (``release/``).

Each function takes tables read from ``release/`` (never the posterior), returns a matplotlib
``Figure`` and, with it, the figure's message in words for its ``alt`` text. Intervals are
equal-tailed (80% thick, 95% thin) on a log (rate-ratio) axis labelled at 1, 1.25, 1.5, 2,
2.5 ...; where a colour carries meaning, a marker shape or a hatch carries it too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from socialgradient.results.plot_checks import ratio_axis

#: a colour-blind-safe pair with contrast >= 3:1 on white (Okabe-Ito blue and vermilion)
ABOVE, BELOW, COVERS = "#0072B2", "#D55E00", "#555555"


def versus_england(las: pd.DataFrame, england: float) -> pd.Series:
    """Place each LA's 95% interval against England's median gradient.

    ``"above"`` or ``"below"`` where the interval lies wholly above or below it,
    ``"covers"`` where it includes it.
    """
    out = np.where(
        las["gradient_lo95"] > england,
        "above",
        np.where(las["gradient_hi95"] < england, "below", "covers"),
    )
    return pd.Series(out, index=las.index)


def _words(where: pd.Series) -> str:
    counts = where.value_counts()
    return (
        f"{counts.get('above', 0)} have a 95% interval wholly above England's, "
        f"{counts.get('below', 0)} wholly below, and {counts.get('covers', 0)} include it"
    )


def forest(
    las: pd.DataFrame, england: dict, names: dict[str, str], highlight: str | None = None
) -> tuple[Figure, str]:
    """Gradient score of each LA in ``las`` by name, steepest first, beside England's.

    Parameters
    ----------
    las : DataFrame
        Rows of ``la_gradients.csv`` (``la``, ``gradient_median``, ``gradient_lo95`` ...).
    england : dict
        ``summary.json``'s ``gradient_mean_la`` (median, ci95, ci80).
    names : dict
        LA code -> name.
    highlight : str, optional
        An LA code drawn in bold (its own page's figure).

    Returns
    -------
    Figure, str
        The figure and its message for the alt text.
    """
    t = las.sort_values("gradient_median", ascending=False, kind="stable").reset_index(drop=True)
    n = len(t)
    eng = float(england["median"])
    where = versus_england(t, eng)
    fig = Figure(figsize=(7.5, max(2.6, 0.2 * n + 1.6)), layout="constrained")
    ax = fig.add_subplot()
    ax.axvspan(*england["ci95"], color="0.88", linewidth=0, zorder=0)
    ax.axvline(eng, color="k", linestyle="--", linewidth=1)
    pos = np.arange(n)
    style = {"above": ("^", ABOVE), "below": ("v", BELOW), "covers": ("o", COVERS)}
    for key, (marker, colour) in style.items():
        sel = (where == key).to_numpy()
        if not sel.any():
            continue
        ax.hlines(pos[sel], t["gradient_lo95"][sel], t["gradient_hi95"][sel], colour, lw=0.9)
        ax.hlines(pos[sel], t["gradient_lo80"][sel], t["gradient_hi80"][sel], colour, lw=3)
        label = {
            "above": "95% interval above England's",
            "below": "95% interval below England's",
            "covers": "95% interval includes England's",
        }[key]
        ax.plot(t["gradient_median"][sel], pos[sel], marker, color=colour, ms=6, label=label)
    labels = [names.get(str(c), str(c)) for c in t["la"]]
    ax.set_yticks(pos, labels, fontsize=8 if n <= 60 else 6)
    for tick, code in zip(ax.get_yticklabels(), t["la"], strict=True):
        if str(code) == highlight:
            tick.set_fontweight("bold")
    ax.set_ylim(n - 0.5, -0.5)
    ratio_axis(ax.xaxis)
    ax.grid(axis="x", color="0.9", linewidth=0.5)
    ax.set_axisbelow(True)
    ax.set_xlabel(
        "Social gradient score (rate ratio per 10 points of deprivation)\n"
        f"dashed: England {eng:.2f}, grey band: its 95% interval; thick: 80%, thin: 95%",
        fontsize="small",
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    top = labels[0]
    message = (
        f"Gradient scores of {n} local authorities, steepest first: medians from "
        f"{t['gradient_median'].iloc[-1]:.2f} ({labels[-1]}) to "
        f"{t['gradient_median'].iloc[0]:.2f} ({top}), against England's {eng:.2f}; "
        f"{_words(where)}."
    )
    return fig, message


def ppc_ratio(ppc: dict) -> tuple[Figure, str]:
    """Draw the posterior predictive check by deprivation decile on a ratio scale.

    Each decile's released observed total and its replicated 95% interval, both divided by
    the replicated median (1: the model's median). A total the disclosure gate hid is not
    drawn and is named in the message.

    Parameters
    ----------
    ppc : dict
        ``release/ppc.json``.

    Returns
    -------
    Figure, str
        The figure and its message for the alt text.
    """
    dec = pd.DataFrame(ppc["decile"])
    med = dec["replicated_median"].astype(float).to_numpy()
    scale = np.where(med > 0, med, np.nan)
    obs = pd.to_numeric(dec["observed"], errors="coerce").to_numpy(float) / scale
    lo = dec["replicated_lower"].to_numpy(float) / scale
    hi = dec["replicated_upper"].to_numpy(float) / scale
    x = dec["decile"].to_numpy()
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.vlines(x, lo, hi, color=COVERS, lw=6, alpha=0.45, label="replicated 95% interval")
    ax.axhline(1.0, color="k", linewidth=0.8, linestyle=":")
    shown = np.isfinite(obs)
    outside = shown & ((obs < lo) | (obs > hi))
    ax.plot(x[shown & ~outside], obs[shown & ~outside], "o", color="k", label="observed, inside")
    if outside.any():
        ax.plot(x[outside], obs[outside], "X", color=BELOW, ms=8, label="observed, outside")
    ratio_axis(ax.yaxis)
    ax.set_xticks(x)
    ax.set_xlabel("Deprivation decile of neighbourhoods (1 = least deprived)")
    ax.set_ylabel("observed / replicated median")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    hidden = [int(d) for d, s in zip(x, shown, strict=True) if not s]
    message = (
        f"Observed totals by deprivation decile divided by the model's replicated median: "
        f"{int(shown.sum() - outside.sum())} of {int(shown.sum())} shown lie inside the "
        f"replicated 95% interval"
        + (
            f"; outside: deciles {', '.join(str(int(d)) for d in x[outside])}"
            if outside.any()
            else ""
        )
        + (f"; not shown (protected): deciles {', '.join(map(str, hidden))}" if hidden else "")
        + "."
    )
    return fig, message


def la_map(las: pd.DataFrame, england: dict, rings, names: dict[str, str]) -> tuple[Figure, str]:
    """Draw the LA map with its uncertainty.

    Median gradient, hatched where the LA's 95% interval includes England's gradient (see
    :func:`socialgradient.results.maps.choropleth`).

    Parameters
    ----------
    las : DataFrame
        Rows of ``la_gradients.csv``.
    england : dict
        ``summary.json``'s ``gradient_mean_la``.
    rings : list
        ``(LA code, lon/lat ring)`` pairs, already coded as the fitted LAs.
    names : dict
        LA code -> name (unused on the map; kept for the message).

    Returns
    -------
    Figure, str
        The figure and its message for the alt text.
    """
    from socialgradient.results.maps import choropleth

    eng = float(england["median"])
    where = versus_england(las, eng)
    codes = las["la"].astype(str)
    values = pd.Series(np.log(las["gradient_median"].to_numpy(float)), index=codes)
    covers = set(codes[(where == "covers").to_numpy()])
    fig = choropleth(
        values,
        rings,
        centre=np.log(eng),
        exp_ticks=True,
        hatch=covers,
        title="Social gradient by local authority",
        label="Social gradient score (median); centre: England "
        f"{eng:.2f}\nhatched: 95% interval includes England's",
    )
    steep = las.loc[las["gradient_median"].idxmax()]
    message = (
        f"Map of {len(las)} local authorities' gradient scores: {_words(where)} (hatched); "
        f"the steepest median is {names.get(str(steep['la']), steep['la'])}'s "
        f"{steep['gradient_median']:.2f}."
    )
    return fig, message
