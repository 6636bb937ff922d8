"""Compare two fits of the same rows by PSIS-LOO: ``socialgradient compare A B``.

Two fits can be compared when they predict the same observations: the same outcome counts
in the same rows, in the same order. What else the fits hold may differ: covariates and
moderators, family (Poisson, negative binomial, binomial), exposure, strata of the model
terms, priors, curve or spatial terms. :func:`row_identity` is the hash that says which rows a
fit predicts; it is built from the fit's ``observed_data`` alone (each observed variable's
name, the labels of its rows -- every coordinate along the row dim: LSOA codes, and for
stratified cells each cell's LSOA and stratum -- and the observed counts), so a moderator
column or another family does not change it. The fit's ``data_hash`` is not used: it hashes
every array the model reads (moderators too) and tells whether a fit is current, not
whether two fits predict the same rows.

What the numbers mean (:func:`compare`):

* ``elpd``: the expected log pointwise predictive density of each fit, estimated by
  PSIS-LOO (ArviZ 1.x ``arviz_stats.loo``): the sum over rows of the log density of each
  row's count under the fit to the other rows. Higher predicts held-out rows better.
* ``elpd_diff`` = elpd(A) - elpd(B) (positive: A predicts better), and ``se``, its standard
  error from the rows' pointwise differences (ArviZ's ``dse``: sqrt(n) x SD of the n
  pointwise differences). ``z`` = elpd_diff / se; ``preferred`` names the fit with the higher
  elpd when abs(elpd_diff) > 2 se, and is ``None`` otherwise (the data do not tell the two
  apart at that margin; a normal approximation that is rough below 100 rows or when the
  difference is under 4, ArviZ's ``diag_diff``).
* ``pareto_k``: per fit, ArviZ's sample-size-dependent threshold ``good_k`` =
  min(1 - 1/log10(S), 0.7) for S posterior draws, and how many rows have a Pareto k above
  it (``above_good_k``) and above 0.7 and 1: rows whose leave-one-out estimate is unreliable
  (importance sampling cannot stand in for refitting without them). Many such rows make the
  elpd of that fit, and so the difference, optimistic; the counts are reported, not hidden.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import arviz_stats as az
import numpy as np
import xarray as xr

from socialgradient.results.gradients import SAMPLE_DIMS

#: how many standard errors of the difference make a preference
MARGIN = 2.0
ROWS = (
    "the observed data: each observed variable's name, the labels of its rows (every "
    "coordinate along the row dim: LSOA codes, each stratified cell's LSOA and stratum) and "
    "its counts, in order; not the covariates, moderators, exposure, family or priors"
)


def row_identity(tree: xr.DataTree) -> str:
    """Return the hash (16 hex digits) of the rows a fit predicts (see :data:`ROWS`).

    Parameters
    ----------
    tree : DataTree
        A fit, with an ``observed_data`` group.

    Returns
    -------
    str
        SHA-256 of the observed variables' names, row labels and counts, first 16 digits.

    Raises
    ------
    ValueError
        When the tree has no ``observed_data`` group.
    """
    if "observed_data" not in tree.children:
        raise ValueError("a fit without observed_data: its rows cannot be identified")
    observed = tree["observed_data"].to_dataset()
    h = hashlib.sha256()
    for name in sorted(map(str, observed.data_vars)):
        var = observed[name]
        h.update(f"|{name}|{','.join(map(str, var.dims))}|".encode())
        for coord in sorted(map(str, observed.coords)):
            if set(observed[coord].dims) & set(var.dims):
                h.update(f"{coord}:".encode())
                h.update(np.asarray(observed[coord].values).astype(str).tobytes())
        h.update(np.ascontiguousarray(np.asarray(var.values, dtype=np.float64)).tobytes())
    return h.hexdigest()[:16]


def load(source) -> xr.DataTree:
    """Return a fit from a DataTree, an output folder or a ``posterior.nc``.

    Parameters
    ----------
    source : DataTree, str or Path
        A fit; an output set written by ``fit``, ``run`` or ``suite`` (its manifest is checked
        and its ``internal/posterior.nc`` read); or a saved fit (``posterior.nc``).

    Returns
    -------
    DataTree
        The fit with its pointwise log-likelihood.

    Raises
    ------
    FileNotFoundError
        When nothing is at the path.
    ValueError
        When the folder is not a whole output set with a posterior, or the file not a fit.
    """
    from socialgradient.sampling import fit
    from socialgradient.util import outputs

    if isinstance(source, xr.DataTree):
        return fit.with_log_likelihood(source)
    path = Path(source)
    if path.is_dir():
        manifest = outputs.read(path)  # OutputSetError (a ValueError) names the folder
        if "internal/posterior.nc" not in manifest["files"]:
            raise ValueError(f"{path}: its output set holds no internal/posterior.nc")
        path = path / "internal" / "posterior.nc"
    return fit.load(path)


def _loo(tree: xr.DataTree):
    with warnings.catch_warnings():
        # ArviZ warns when some Pareto k is high; the result counts them, per fit.
        warnings.filterwarnings("ignore", "Estimated shape parameter of Pareto", UserWarning)
        return az.loo(tree, pointwise=True)


def _pareto(loo) -> dict:
    k = np.asarray(loo.pareto_k, dtype=float).ravel()
    return {
        "good_k": float(loo.good_k),
        "above_good_k": int((k > loo.good_k).sum()),
        "above_0_7": int((k > 0.7).sum()),
        "above_1": int((k > 1.0).sum()),
        "max": float(np.nanmax(k)),
    }


def compare(a, b, names: tuple[str, str] = ("A", "B")) -> dict:
    """Compare two fits of the same rows by PSIS-LOO (the module's text says what it means).

    Parameters
    ----------
    a, b : DataTree, str or Path
        The fits, or their output folders or ``posterior.nc`` files (:func:`load`).
    names : tuple of str
        Labels of the two fits in the result.

    Returns
    -------
    dict
        ``fits`` (per name: ``outcome``, ``family``, ``spec_hash``, ``elpd``, ``se``,
        ``p_loo``, ``draws``, ``pareto_k``), ``rows`` (``n``, ``identity``,
        ``identified_by``), ``elpd_diff`` (elpd of the first minus the second), ``se``,
        ``z``, ``preferred`` (a name, or None within ``margin_se`` standard errors),
        ``margin_se``, ``diag_diff`` (ArviZ's caution, "" if none) and ``meaning``.

    Raises
    ------
    ValueError
        When the fits predict different rows (their row identities differ), naming how
        rows are identified and how many each fit has.
    """
    if len(names) != 2 or names[0] == names[1]:
        raise ValueError(f"compare needs two different names, got {names!r}")
    trees = {name: load(src) for name, src in zip(names, (a, b), strict=True)}
    ids = {name: row_identity(tree) for name, tree in trees.items()}
    if ids[names[0]] != ids[names[1]]:
        counts = {
            n: int(sum(v.size for v in t["observed_data"].to_dataset().data_vars.values()))
            for n, t in trees.items()
        }
        raise ValueError(
            f"LOO compares fits of the same rows; {names[0]} ({counts[names[0]]} rows) and "
            f"{names[1]} ({counts[names[1]]} rows) predict different rows (row identities "
            f"{ids[names[0]]} and {ids[names[1]]}). Rows are identified by {ROWS}"
        )
    loos = {name: _loo(tree) for name, tree in trees.items()}
    table = az.compare(loos, reference=names[1], round_to="none")
    diff = float(loos[names[0]].elpd - loos[names[1]].elpd)
    se = float(table.loc[names[0], "dse"])
    z = diff / se if se > 0 else float("nan")
    preferred = None
    if abs(diff) > MARGIN * se:
        preferred = names[0] if diff > 0 else names[1]
    fits = {}
    for name, tree in trees.items():
        loo = loos[name]
        fits[name] = {
            "outcome": tree.attrs.get("outcome"),
            "family": tree.attrs.get("family"),
            "spec_hash": tree.attrs.get("spec_hash"),
            "elpd": float(loo.elpd),
            "se": float(loo.se),
            "p_loo": float(loo.p),
            "draws": int(np.prod([tree["posterior"].sizes[d] for d in SAMPLE_DIMS])),
            "pareto_k": _pareto(loo),
        }
    return {
        "fits": fits,
        "rows": {
            "n": int(loos[names[0]].n_data_points),
            "identity": ids[names[0]],
            "identified_by": ROWS,
        },
        "elpd_diff": diff,
        "se": se,
        "z": float(z),
        "preferred": preferred,
        "margin_se": MARGIN,
        "diag_diff": str(table.loc[names[0], "diag_diff"] or ""),
        "meaning": (
            f"elpd_diff = elpd({names[0]}) - elpd({names[1]}), the difference in expected log "
            "predictive density of held-out rows (PSIS-LOO); positive favours "
            f"{names[0]}. se: its standard error from the rows' pointwise differences. A fit "
            f"is preferred only when |elpd_diff| > {MARGIN:g} se. pareto_k.above_good_k: rows "
            "whose LOO estimate is unreliable at ArviZ's threshold for the fit's number of "
            "draws, min(1 - 1/log10(S), 0.7); many make that fit's elpd optimistic."
        ),
    }


def text(result: dict) -> str:
    """Return a few lines for the terminal: the difference, its se, the Pareto-k counts.

    Parameters
    ----------
    result : dict
        What :func:`compare` returns.

    Returns
    -------
    str
        The lines, without a final newline.
    """
    (na, fa), (nb, fb) = result["fits"].items()
    pref = result["preferred"]
    verdict = (
        f"{pref} predicts held-out rows better (|elpd_diff| > {result['margin_se']:g} se)"
        if pref
        else f"neither is preferred (|elpd_diff| <= {result['margin_se']:g} se)"
    )
    lines = [
        f"{result['rows']['n']} rows (row identity {result['rows']['identity']})",
        f"elpd_diff ({na} - {nb}) {result['elpd_diff']:.1f}, se {result['se']:.1f}, "
        f"z {result['z']:.2f}: {verdict}"
        + (f" [{result['diag_diff']}]" if result["diag_diff"] else ""),
    ]
    for name, f in ((na, fa), (nb, fb)):
        k = f["pareto_k"]
        lines.append(
            f"  {name}: {f['family']} elpd {f['elpd']:.1f} (se {f['se']:.1f}), p_loo "
            f"{f['p_loo']:.1f}; Pareto k > {k['good_k']:.2f} (threshold for {f['draws']} "
            f"draws): {k['above_good_k']} rows, > 0.7: {k['above_0_7']}, > 1: {k['above_1']}"
        )
    return "\n".join(lines)
