"""The commands that fit, simulate or read fits.

``run``, ``fit``, ``simulate``, ``suite``, ``calibrate``, ``report``, ``compare`` and ``verify``
(:mod:`socialgradient.cli` dispatches to them).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from socialgradient.spec import Sampling, Spec, load_spec
from socialgradient.util.progress import step

log = logging.getLogger("socialgradient.cli")  # the command line's own logger


def _cluster(args, **options):
    """Return the Dask cluster that suite's or calibrate's options name, checked before any work.

    The Dask cluster that suite's or calibrate's options name, checked before any work
    (:func:`socialgradient.study.clusters.target`).
    """
    from socialgradient.study import clusters

    files = (args.tls_ca_file, args.tls_cert, args.tls_key)
    security = clusters.tls_security(*files) if any(f is not None for f in files) else None
    return clusters.target(
        args.scheduler,
        args.workers,
        dashboard=args.dashboard,
        security=security,
        insecure=args.insecure,
        **options,
    )


def _spec(args, outcome: str | None = None, stop: str | None = None) -> Spec:
    """Return the spec of ``--spec`` (or of ``outcome``, sampled to the target) with the options.

    ``stop``: the stopping rule when neither ``--stop`` nor ``--draws`` is given (run's
    "target"); ``--draws N`` alone means N fixed draws.
    """
    if args.spec:
        spec = load_spec(args.spec)
    elif outcome is None:  # unreachable: run's --spec has a default, fit's --outcome is required
        raise ValueError("an outcome or a spec is needed")
    else:
        spec = Spec(outcome=outcome, sampling=Sampling(stop="target"))
    keys = ("stop", "rhat", "ess", "max_draws", "max_seconds")
    target = {k: getattr(args, k, None) for k in keys}
    if target["stop"] is None and args.draws is None:
        target["stop"] = stop
    spec = spec.replace(**target).replace(
        outcome=outcome,
        family=args.family,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        sampler=args.sampler,
    )
    given = [f"--{k.replace('_', '-')}" for k in keys[1:] if target[k] is not None]
    if given and spec.sampling.stop != "target":
        raise ValueError(
            f"{', '.join(given)} set(s) the sampling target, but this fit samples fixed draws "
            "(--draws, or the spec's): add --stop target, or leave them out"
        )
    return spec


def _priors(items: list[str]) -> dict[str, float | str]:
    """``--prior NAME=SCALE`` flags as a dict (validated by :class:`Spec`'s Priors).

    ``--prior fixed=student_t`` (a word, not a number) names the fixed effects' family.
    """
    out: dict[str, float | str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = value.strip() if name.strip() == "fixed" else float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--prior {item!r}: write NAME=NUMBER, e.g. --prior b_w=0.5")
    return out


def _fit_and_write(
    table, spec: Spec, out: Path, progress: bool, compare: bool, command: str = "fit"
) -> dict:
    from socialgradient import api
    from socialgradient.model import families
    from socialgradient.results import checks
    from socialgradient.util import outputs

    outputs.check_destination(out)  # before any sampling

    # the pointwise log-likelihood only for LOO: the comparison computes it when asked
    tree = api.fit(table, spec, progressbar=progress, pointwise=False)
    extra = {}
    other = families.get(spec.family).nests if compare else None
    if other is not None:
        log.info("fitting the %s model for the LOO comparison ...", other)
        rival = api.fit(table, spec.replace(family=other), progressbar=progress, pointwise=False)
        with step(log, "LOO comparison"):
            loo = checks.loo_compare({spec.family: tree, other: rival})
        extra["loo"] = json.loads(loo.to_json(orient="index"))
        print(loo.to_string())
    paths = api.write(tree, out, extra=extra, command=command)
    s = json.loads(paths["summary"].read_text(encoding="utf-8"))
    print(_headline(s))
    print(f"wrote {out}/: release/ (safe to publish), internal/ (not for release), MANIFEST.json")
    return {"summary": s, "paths": paths}


def _report(args) -> int:
    from socialgradient import api
    from socialgradient.release import disclosure, report
    from socialgradient.sampling import fit

    source, manifest = report.locate_fit(args.fit)
    rule = disclosure.Rule(threshold=args.threshold, round_to=args.round_to, reason=args.override)
    rule.check()
    from socialgradient.util import outputs

    outputs.check_destination(args.out)
    tree = fit.load(source, pointwise=False)  # a report needs no LOO
    extra = {}
    if manifest is not None:  # keys a command added (the LOO comparison of run) carry over
        old = json.loads(
            (source.parent.parent / "release" / "summary.json").read_text(encoding="utf-8")
        )
        extra = {k: old[k] for k in ("loo",) if k in old}
    paths = api.write(
        tree,
        args.out,
        extra=extra,
        rule=rule,
        posterior=source,
        command="report",
        ledger=args.ledger,
    )
    print(_headline(json.loads(paths["summary"].read_text(encoding="utf-8"))))
    print(
        f"wrote {args.out}/: release/ (safe to publish), internal/ (not for release), MANIFEST.json"
    )
    return 0


def _headline(s: dict) -> str:
    from socialgradient.release import joint as joint_release
    from socialgradient.release import report

    return joint_release.headline(s) if "thresholds" in s else report.headline(s)


def _verify(args) -> int:
    """``verify DIR``: :func:`socialgradient.util.outputs.check`, nothing recovered or changed."""
    from socialgradient.util import outputs

    manifest, problems = outputs.check(args.dir)
    if problems or manifest is None:  # no problem found means a manifest was read
        print(
            f"{args.dir}: not a whole, clean output set ({len(problems)} problem(s)):",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(outputs.summary(args.dir, manifest))
    return 0


def _compare(args) -> int:
    """``compare A B [--json FILE]``: :func:`socialgradient.results.compare.compare`."""
    from socialgradient.results import compare
    from socialgradient.util.files import atomic_write

    if len(args.names) != 2:
        raise ValueError(f"compare: --names takes two labels, got {args.names}")
    result = compare.compare(args.a, args.b, names=tuple(args.names))
    print(compare.text(result))
    if args.json is not None:
        text = json.dumps(result, indent=2) + "\n"
        atomic_write(
            args.json, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline="\n")
        )
    return 0


def _calibrate(args) -> int:
    """``calibrate``: the calibration study (:mod:`socialgradient.study.calibrate`)."""
    from socialgradient.study import calibrate

    if args.workers < 1:
        raise ValueError(f"calibrate: --workers must be at least 1, got {args.workers}")
    from socialgradient.util import outputs

    outputs.check_destination(args.out)  # before any replicate is simulated or fitted
    cluster = _cluster(args, sends=calibrate.SENDS)
    # The package's lines are shown by main's progress.configure (a root handler as well,
    # as logging.basicConfig here added, printed each of them twice).
    logging.getLogger("distributed").setLevel(logging.WARNING)  # the cluster's chatter
    done = calibrate.run(
        args.out,
        args.replicates,
        args.model,
        scale=args.scale,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        scheduler=cluster,
        workers=args.workers,
    )
    print(calibrate.headline(done["aggregate"], args.model))
    print(f"wrote {args.out / 'calibration.json'}, {args.out / 'calibration.md'}")
    return 1 if done["failed"] else 0


def _simulate(args) -> int:
    """``simulate``: a synthetic England (and its child records with ``--records``)."""
    from socialgradient.data import schema
    from socialgradient.data.synthetic import england

    if not args.records and (args.years or args.geography):
        raise ValueError("--years and --geography apply to child-level records: add --records")
    if args.curvature and args.geography is not None:
        raise ValueError("--curvature applies to the synthetic England table, not --geography")
    from socialgradient.util import outputs

    outputs.check_destination(args.out)  # before simulating
    if args.geography is None:
        with step(log, "simulated the synthetic England (scale %s)", args.scale):
            syn = england.simulate(seed=args.seed, scale=args.scale, curvature=args.curvature)
        if args.spatial_sd is not None:
            syn = _spatial_field(syn, args)
        england.write(syn, args.out)
        print(f"wrote {args.out}: {len(syn.table)} LSOAs in {syn.table['la'].nunique()} LAs")
    if args.records:
        from socialgradient.data.census import linkage
        from socialgradient.data.synthetic import records

        geography = None
        if args.geography is not None:
            geography = schema.read_table(args.geography)
            schema.validate(geography.assign(_n=0), ["_n"])  # codes, income, children
        with step(log, "simulated child records"):
            rec = records.simulate_records(
                seed=args.seed,
                years=args.years or (2019,),
                scale=args.scale,
                geography=geography,
            )
        paths = linkage.write(rec, args.out)
        print(
            f"wrote {args.out}: {len(rec.children)} children, {len(rec.episodes)} "
            f"episodes in {rec.truth['n_lsoa']} LSOAs ({', '.join(sorted(paths))})"
        )
    return 0


def _spatial_field(syn, args):
    """Redraw a full-size synthetic England's counts around a BYM2 field (``--spatial-sd``)."""
    import dataclasses

    from socialgradient.data.neighbours import read_neighbours, resolve
    from socialgradient.data.synthetic.spatial import with_field

    if args.scale != 1.0:
        raise ValueError("--spatial-sd needs the full-size England (--scale 1): the shipped graph")
    pairs = read_neighbours(resolve("synthetic"))
    table, truth = with_field(
        syn.table, syn.truth, pairs, args.spatial_sd, args.spatial_rho, seed=args.seed
    )
    return dataclasses.replace(syn, table=table, truth=truth)


def _suite(args, progress: bool) -> int:
    """``suite``: every national spec of ``--models`` (:mod:`socialgradient.study.suite`)."""
    from socialgradient.data import schema
    from socialgradient.study import suite

    if args.workers < 1:
        raise ValueError(f"suite: --workers must be at least 1, got {args.workers}")
    from socialgradient.util import outputs

    outputs.check_destination(args.out)
    cluster = _cluster(args)  # before the table is read
    table = schema.read_table(args.data)
    truth_file = Path(args.data).with_name("truth.json")  # as `simulate` writes it
    truth = json.loads(truth_file.read_text(encoding="utf-8")) if truth_file.exists() else None
    items = suite.run(
        args.models,
        table,
        args.out,
        progressbar=progress,
        truth=truth,
        scheduler=cluster,
        workers=args.workers,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        sampler=args.sampler,
    )
    print(suite.headline(items))
    print(f"wrote {args.out / 'suite.csv'}, {args.out / 'findings.md'}")
    verdicts = [i.summary["diagnostics"]["verdict"] for i in items if i.summary]
    return 1 if "FAIL" in verdicts else 0


def _neighbours(value: str | None) -> str | None:
    """Return ``--neighbours`` as the spec holds it: a shipped graph's name, or a full path."""
    from socialgradient.data.neighbours import SHIPPED

    if not value or value in SHIPPED:
        return value
    return str(Path(value).resolve())


def _fit(args, progress: bool) -> int:
    """``fit``: the national model of one neighbourhood table, and its output set."""
    from socialgradient.data import schema
    from socialgradient.util import outputs

    outputs.check_destination(args.out)  # before reading the table or sampling
    spec = _spec(args, args.outcome)
    spec = spec.replace(
        stratum=args.stratum,
        strata=tuple(args.strata) if args.strata else None,
        stratum_trend=args.stratum_trend,
        exposure=args.exposure,
        trials=args.trials,
        neighbourhood_moderators=args.neighbourhood_moderators,
        la_data=str(Path(args.la_data).resolve()) if args.la_data else None,
        la_moderators=args.la_moderators,
        la_effects=args.la_effects,
        curve=args.curve,
        target_accept=args.target_accept,
        priors=_priors(args.prior or []) or None,
        spatial=args.spatial,
        neighbours=_neighbours(args.neighbours),
    )
    result = _fit_and_write(schema.read_table(args.data), spec, args.out, progress, compare=False)
    if result["summary"]["diagnostics"]["verdict"] == "FAIL" and not args.allow_fail:
        print(
            "socialgradient fit: the diagnostics verdict is FAIL (outputs written; "
            "--allow-fail exits 0)",
            file=sys.stderr,
        )
        return 1
    return 0


def _run(args, progress: bool) -> int:
    """``run``: the main job, the national referrals model (``--compare``: a LOO comparison)."""
    from socialgradient.data import schema

    if not args.data.exists():
        raise FileNotFoundError(
            f"default data {args.data} not found; run from the repository root, or "
            f"regenerate it with `socialgradient simulate --out {args.data.parent}`"
        )
    spec = _spec(args, stop="target")
    from socialgradient.util import outputs

    outputs.check_destination(args.out)
    outputs.check_destination(args.figures)
    table = schema.load(args.data, [spec.outcome])
    log.info(
        "%s: %d LSOAs in %d LAs; %s", args.data, len(table), table["la"].nunique(), spec.to_json()
    )
    start = time.perf_counter()
    result = _fit_and_write(table, spec, args.out, progress, compare=args.compare, command="run")
    args.figures.mkdir(parents=True, exist_ok=True)
    for path in result["paths"].values():
        if path.suffix == ".png":
            (args.figures / path.name).write_bytes(path.read_bytes())
    print(f"main job: {time.perf_counter() - start:.0f} s; figures in {args.figures}/")
    return 0 if result["summary"]["diagnostics"]["verdict"] != "FAIL" else 1
