"""The output set of a fit (:mod:`socialgradient.util.outputs`), written whole or not at all.

The gated tables are built in :mod:`~socialgradient.release.fit_tables`, the perturbed
denominators in :mod:`~socialgradient.release.masking`; their names stay importable here.

``DIR/release/`` (safe to publish): ``summary.json`` (model outputs), ``la_gradients.csv``,
``la_bands.csv`` (:mod:`~socialgradient.release.la_bands`), ``ppc.json``, the figures and
``disclosure_log.jsonl``. Every observed count in it -- LA totals, LA x deprivation-quintile
totals, deprivation-decile totals, the national total -- is protected together by
:func:`socialgradient.release.disclosure.protect_partitions` (threshold, complementary suppression
such that neither these totals nor those of the earlier releases in the release ledger
(:mod:`socialgradient.release.ledger`) narrow a hidden total, a single LSOA's count or a small group
of LSOAs below the protection level, cell-key perturbation, rounding); rates and PPC
p-values derived from a hidden count are blank, and otherwise computed from the published
value. ``n_lsoa``, ``children``, the rates' denominators and mean incomes per LA are
perturbed (their sums over exactly the fitted LSOAs are not public), and ``summary.json``
identifies the data by a keyed id (``model.data_id``), not its hash. The release is
recorded in the ledger before the set is committed (``docs/disclosure.md``).
Observed single-LSOA statistics (the largest count) and the
observed dispersion and share of zeros are not released (their replicated distributions and
p-values are). ``DIR/internal/`` (not for release): ``posterior.nc`` (the full tree) and
``ppc_full.json`` (unprotected checks), with a README.

Intervals are equal-tailed (ETI), 95% and 80%. Non-finite numbers are ``null`` in JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import shutil
from pathlib import Path

import xarray as xr

from socialgradient.release import disclosure, la_bands, perturbation
from socialgradient.release import ledger as ledgers
from socialgradient.release.fit_tables import (  # noqa: F401 (importable from here, as before)
    TABLE,
    _aligned,
    _gated_decile_rates,
    _records,
    gate,
    ppc_json,
    release_la_gradients,
    release_ppc,
)
from socialgradient.release.masking import (  # noqa: F401 (importable from here, as before)
    SPREAD,
    _largest,
    _loo_shift,
    _masked,
    perturbed_sums,
    release_summary,
)
from socialgradient.results import checks, gradients
from socialgradient.results.summaries import (  # noqa: F401 (report's names, as before)
    NATIONAL_KEYS,
    NO_SPREAD,
    _number,
    finite,
    headline,
    la_gradients,
    summary,
    to_json,
    units,
)
from socialgradient.sampling import fit
from socialgradient.util import outputs
from socialgradient.util.progress import step

log = logging.getLogger(__name__)


def _log_entry(name: str, path: Path, level: str, rule, note: str, **counts) -> dict:
    return {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "file": name,
        "level": level,
        "rule": dataclasses.asdict(rule),
        "override": rule.reason,
        **counts,
        "note": note,
        "decision": "written",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def write(
    tree: xr.DataTree,
    out_dir: str | Path,
    extra: dict | None = None,
    rule: disclosure.Rule | None = None,
    posterior: str | Path | None = None,
    command: str = "write",
    ledger: str | Path | ledgers.Ledger | None = None,
) -> dict[str, Path]:
    """Write the fit's output set to ``out_dir``, all or nothing.

    The set holds ``release/`` and ``internal/`` (see the module docstring) and
    ``MANIFEST.json``.

    ``extra``: keys added to ``summary.json`` (e.g. the LOO comparison). ``rule``: the
    disclosure rule for every observed count in ``release/`` (default ``Rule()``; a weaker
    one needs ``rule.reason``). ``posterior``: an existing ``posterior.nc`` of this fit to
    reuse for ``internal/`` (copied) instead of writing the tree again. ``ledger``: the
    release ledger (:mod:`socialgradient.release.ledger`; default its default folder): the release
    is checked against the earlier ones recorded there, and recorded, under its lock.
    Returns a mapping of output name to final path.
    """
    rule = rule or disclosure.Rule()
    rule.check()
    led = ledger if isinstance(ledger, ledgers.Ledger) else ledgers.Ledger(ledger)
    with gradients.reusing_la_table(tree):
        return _write(tree, out_dir, extra, rule, posterior, command, led)


def _write(tree, out_dir, extra, rule, posterior, command, led) -> dict[str, Path]:
    with step(log, "summary and diagnostics"):
        s = summary(tree)
    s.update(extra or {})
    ppc_full = checks.ppc(tree)
    out = outputs.check_destination(out_dir)  # a refused destination records nothing
    with led.locked():  # the check against the earlier releases and its record, no more
        with step(
            log,
            "disclosure gate (with the ledger's earlier releases), LA table and "
            "posterior predictive checks",
        ):
            earlier = led.publications(measures=[tree.attrs["outcome"]])
            parts, decile = gate(tree, rule, led, earlier)
            keys = led.keys() if rule.perturb else None
            las = release_la_gradients(tree, parts, keys)
            ppc_rel = release_ppc(tree, parts, decile, ppc_full)
            s = release_summary(s, tree, led, keys)
        record(led, [parts.publication], command, out, s, rule)
    paths, _ = _write_set(
        tree, out, s, las, parts, decile, ppc_rel, ppc_full, rule, posterior, command, led, keys
    )
    return paths


def record(led: ledgers.Ledger, publications: list, command: str, out: Path, s: dict, rule) -> None:
    """Record a release in the ledger, under its lock, before its files are written.

    Recorded before the output set is written (as :func:`socialgradient.release.disclosure.
    write` records a table before the file appears): the ledger's lock is held for the check
    and the record only, not while the figures and ``posterior.nc`` are written (a suite's
    other fits waited on it for as long); a release that dies after its record errs on the
    safe side, as one that died before its commit always did.
    """
    led.record(
        [p for p in publications if p is not None],
        command=command,
        out=str(out.resolve()),
        data_id=s["model"].get("data_id"),
        rule=dataclasses.asdict(rule),
    )


def _log_check(parts: disclosure.Partitioned, rule: disclosure.Rule, led: ledgers.Ledger) -> dict:
    """Return the log's account of the protection.

    The log's account of the protection: the check that ran (always, with its size),
    the perturbation's public parameters, the ledger's id.
    """
    return {
        "check": parts.check or {"method": "none: no secondary suppression (weaker rule)"},
        "perturbation": perturbation.describe() if rule.perturb else None,
        "ledger": led.id,
    }


def _write_set(
    tree,
    out_dir,
    s,
    las,
    parts,
    decile,
    ppc_rel,
    ppc_full,
    rule,
    posterior,
    command,
    led,
    keys,
):
    from socialgradient.results import plots  # matplotlib only when writing figures

    meta = {
        "command": command,
        "spec_hash": tree.attrs["spec_hash"],
        "data_hash": tree.attrs["data_hash"],
        "outcome": tree.attrs["outcome"],
    }
    with outputs.Writer(out_dir, **meta) as w:
        rel, internal = w.release, w.internal
        (rel / "summary.json").write_text(to_json(s) + "\n", encoding="utf-8", newline="\n")
        las.to_csv(rel / "la_gradients.csv", index=False, lineterminator="\n")
        bands = la_bands.release_la_bands(tree, parts, decile, keys)
        bands.to_csv(rel / la_bands.FILE, index=False, lineterminator="\n")
        ppc_out = _records(ppc_rel) | {
            "note": (
                "observed totals protected by the disclosure gate (null: hidden); observed "
                "dispersion, zero share and maximum are not released"
            )
        }
        if "spatial" in ppc_full:  # the residual Moran's I: one national statistic
            ppc_out |= _records(ppc_full, ("spatial",))
        (rel / "ppc.json").write_text(to_json(ppc_out) + "\n", encoding="utf-8", newline="\n")
        with step(log, "figures"):
            figures = plots.save_all(
                tree, rel, observed=_gated_decile_rates(tree, parts, decile, keys), checks=ppc_rel
            )
        public = disclosure.public_actions(parts.actions)
        rounded = {
            k: int((~parts.hidden[k]).sum()) if rule.round_to else 0
            for k in ("la", "decile", "total", la_bands.PARTITION)
        }
        band_tag = f"[{la_bands.PARTITION}="
        joint = (
            "LA totals (la_gradients.csv), LA x deprivation-quintile totals (la_bands.csv), "
            "deprivation-decile totals and the national "
            "total (ppc.json) protected together and with the earlier releases in the "
            "ledger: no hidden total, no single LSOA's count and no group of LSOAs "
            "counting fewer than the threshold is narrowed to a range of less than "
            f"{rule.protection} by those published"
        )
        entries = [
            _log_entry(
                "la_gradients.csv",
                rel / "la_gradients.csv",
                "la",
                rule,
                joint,
                rows=len(las),
                suppressed=int(parts.hidden["la"].sum()),
                rounded=rounded["la"],
                **_log_check(parts, rule, led),
                actions=[a for a in public if "[la=" in a],
            ),
            _log_entry(
                "ppc.json",
                rel / "ppc.json",
                "la",
                rule,
                joint,
                suppressed=int(parts.hidden["decile"].sum() + parts.hidden["total"].sum()),
                rounded=rounded["decile"] + rounded["total"],
                **_log_check(parts, rule, led),
                actions=[a for a in public if "[la=" not in a and band_tag not in a],
            ),
            _log_entry(
                la_bands.FILE,
                rel / la_bands.FILE,
                "la",
                rule,
                joint,
                rows=len(bands),
                suppressed=int(parts.hidden[la_bands.PARTITION].sum()),
                rounded=rounded[la_bands.PARTITION],
                **_log_check(parts, rule, led),
                actions=[a for a in public if band_tag in a],
            ),
            *(
                _log_entry(
                    p.name,
                    p,
                    "model",
                    rule,
                    "drawn from model outputs and the gated totals above only",
                )
                for p in figures.values()
            ),
        ]
        with open(rel / disclosure.LOG_NAME, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(json.dumps(e, default=str) + "\n" for e in entries)
        if posterior is not None:
            _copy(Path(posterior), internal / "posterior.nc")
        else:
            fit.save(tree, internal / "posterior.nc")
        with step(log, "full posterior predictive checks (internal)"):
            (internal / "ppc_full.json").write_text(
                ppc_json(tree, ppc_full) + "\n", encoding="utf-8", newline="\n"
            )
        detail = {
            "rule": dataclasses.asdict(rule),
            "actions": parts.actions,
            "ledger": str(led.path),
        }
        (internal / "disclosure_detail.json").write_text(
            to_json(detail) + "\n", encoding="utf-8", newline="\n"
        )
        w.commit()
    log.info("wrote the output set %s", w.out)
    paths = {
        "summary": w.path("release/summary.json"),
        "la_gradients": w.path("release/la_gradients.csv"),
        "la_bands": w.path(f"release/{la_bands.FILE}"),
        "ppc_json": w.path("release/ppc.json"),
        "disclosure_log": w.path(f"release/{disclosure.LOG_NAME}"),
    }
    paths.update({name: w.path(f"release/{p.name}") for name, p in figures.items()})
    paths["posterior"] = w.path("internal/posterior.nc")
    return paths, figures


def _copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst``, not as a hard link.

    A set's files must not change when another set's do.
    """
    shutil.copyfile(src, dst)


def locate_fit(path: str | Path) -> tuple[Path, dict | None]:
    """Return the ``posterior.nc`` that ``path`` names, and its set's manifest.

    The ``posterior.nc`` that ``path`` names (an output folder, or the file itself) and,
    where it belongs to an output set, that set's verified manifest.

    :class:`~socialgradient.util.outputs.OutputSetError` (naming the folder or file) when the set
    is incomplete or altered, or no fit is there.
    """
    path = Path(path)
    if path.is_dir():
        manifest = outputs.read(path)
        nc = path / "internal" / "posterior.nc"
        if "internal/posterior.nc" not in manifest["files"]:
            raise outputs.OutputSetError(f"{path}: its output set holds no internal/posterior.nc")
        return nc, manifest
    if not path.exists():
        raise FileNotFoundError(f"no saved fit at {path}")
    root = path.parent.parent
    if path.parent.name == "internal" and (root / outputs.MANIFEST).exists():
        return path, outputs.read(root)
    return path, None
