"""One analysis, as a frozen spec loaded from a TOML file in ``models/``.

A spec holds values only (the types of its values are in :mod:`socialgradient.spec.values`,
its parts in :mod:`socialgradient.spec.parts`, their typed validation in
:mod:`socialgradient.util.typed`). Its canonical JSON and that JSON's hash are stored in a fitted
result's attrs, so a saved fit can be checked against the spec that made it.

Example ``models/national_referrals.toml``::

    name = "national_referrals"
    outcome = "referrals"
    family = "negbin"          # "poisson", "negbin" or "binomial" (with trials = "column")
    stratum = ""               # e.g. "age_band" for a table of LSOA x age-band cells
    strata = []                # or several stratum columns: ["age_band", "gender"]
    stratum_trend = ""         # a numeric cell column (e.g. "age"): main effect + slope on w
    exposure = "children"      # the offset's column (log-link families)
    neighbourhood_moderators = []  # row columns: main effect + interaction with w
    la_data = ""               # LA table (one row per LA, column `la`), relative to this file
    la_moderators = []         # its columns: enter the means of the LA intercept and slope
    la_effects = "auto"        # "centred", "noncentred" or "auto" (per LA, by information)
    spatial = ""               # "bym2": a BYM2 LSOA effect (docs/spatial.md)
    neighbours = ""            # its lsoa,neighbour CSV (relative to this file), or "lsoa11"
    curve = "log-linear"       # or "spline": a penalised spline in w (model/terms/curve.py)
    target_accept = 0.8

    [priors]                   # scales (and a's mean); defaults in socialgradient.model.build
    b_w = 1.0

    [la_outcome]               # an LA-level outcome on the LA gradients (la_outcome.py)
    count = "rereferrals"      # LA totals of this column ...
    trials = "referrals"       # ... out of LA totals of this one (binomial, logit)
    adjust = ["spend_per_child"]  # la_data columns; LA deprivation m_c is always in

    [records]                  # only for specs fitted to the synthetic child records
    by = ["ethnicity"]         # (socialgradient.study.aggregates builds and caches the table)
    scale = 0.2

    [sampling]
    sampler = "nutpie"         # or "pymc", "numpyro"
    draws = 1000               # fixed draws per chain (stop = "draws", a spec's default)
    tune = 500                 # left out: 200 where the data pin the LA SDs, else 500
    chains = 4                 # (socialgradient.sampling.tuning)
    seed = 2021
    stop = "draws"             # or "target": draws until rhat, ess are met (max_draws, max_seconds)

``stop = "target"`` (:mod:`socialgradient.sampling.target`) checks every 100 draws per chain and
keeps the draws up to the first check that passes; reproducible for a seed unless
``max_seconds`` ran out. ``sg.fit(table, "referrals")``, ``socialgradient fit`` without
``--spec`` and ``socialgradient run`` sample to the target; ``--draws N`` means N fixed draws.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from socialgradient.spec.parts import (
    LAOutcome,
    Priors,
    RecordsTable,
    Sampling,
    _canonical,
)
from socialgradient.spec.values import (
    CURVES,
    FAMILIES,
    LA_EFFECTS,
    NAME,
    SAMPLERS,
    AnyNumber,
    Chains,
    Count,
    Curve,
    Family,
    FixedFamily,
    Fraction,
    LAEffects,
    Number,
    PositiveNumber,
    Rhat,
    Sampler,
    Seconds,
    Seed,
    Spatial,
    Stop,
    TargetAccept,
    plain_name,
)
from socialgradient.util.typed import (
    SpecError,
    _check_keys,
    _convert,
    _names,
    _prepare,
    _validate,
)

__all__ = [
    "CURVES",
    "FAMILIES",
    "LA_EFFECTS",
    "NAME",
    "SAMPLERS",
    "AnyNumber",
    "Chains",
    "Count",
    "Curve",
    "Family",
    "FixedFamily",
    "Fraction",
    "LAEffects",
    "LAOutcome",
    "Number",
    "PositiveNumber",
    "Priors",
    "RecordsTable",
    "Rhat",
    "Sampler",
    "Sampling",
    "Seconds",
    "Seed",
    "Spatial",
    "Spec",
    "SpecError",
    "SpecMethods",
    "Stop",
    "TargetAccept",
    "load_spec",
    "plain_name",
]

SpecError.__module__ = __name__  # the spec's error, documented and raised as spec.SpecError
for _part in (Sampling, Priors, RecordsTable, LAOutcome):
    _part.__module__ = __name__  # documented (and pickled) as socialgradient.spec's


class SpecMethods:
    """JSON, hash, ``replace`` and ``from_dict`` for any frozen spec dataclass.

    JSON, hash, ``replace`` and ``from_dict`` for any frozen spec dataclass that has a
    ``sampling: Sampling`` field (:class:`Spec`, :class:`socialgradient.panel.model.PanelSpec`).
    """

    def to_json(self) -> str:
        """Return the canonical JSON (sorted keys), the form stored with results."""
        raw = json.loads(json.dumps(dataclasses.asdict(cast(Any, self))))
        return json.dumps(_canonical(raw), sort_keys=True)

    @property
    def hash(self) -> str:
        """Return a short SHA-256 of :meth:`to_json`.

        Short SHA-256 of :meth:`to_json`; a path in it (``la_data``, ``neighbours``) counts by
        its file name only, so a checkout moved elsewhere keeps its hashes (the LA table's values
        are in the fit's data hash).
        """
        raw = json.loads(self.to_json())
        for key in ("la_data", "neighbours"):
            if raw.get(key):
                raw[key] = Path(raw[key]).name
        return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> Any:
        """Return a copy with top-level or sampling fields (``draws=``, ...) changed.

        ``None`` values are ignored. ``draws=N`` without ``stop=`` means N fixed draws
        (``stop = "draws"``), as ``--draws N`` does.
        """
        spec = cast(Any, self)  # a frozen spec dataclass with ``priors`` and ``sampling``
        sampling_fields = {f.name for f in dataclasses.fields(Sampling)}
        sampling = {k: v for k, v in changes.items() if k in sampling_fields and v is not None}
        top = {k: v for k, v in changes.items() if k not in sampling_fields and v is not None}
        if "draws" in sampling and "stop" not in sampling:
            sampling["stop"] = "draws"
        if isinstance(top.get("priors"), dict):
            _check_keys(top["priors"], _names(Priors), "priors")
            top["priors"] = dataclasses.replace(spec.priors, **top["priors"])
        return dataclasses.replace(
            spec, **top, sampling=dataclasses.replace(spec.sampling, **sampling)
        )

    @classmethod
    def from_dict(cls, raw: dict):
        """Build from a parsed TOML/JSON mapping with msgspec (strict types).

        Build from a parsed TOML/JSON mapping with msgspec (strict types: a string is
        not a number, a number not a string); unknown keys are an error, not ignored. Every
        wrong key or value raises :class:`SpecError` naming the key.
        """
        raw = _prepare(raw, cls, "")
        outcomes = raw.get("outcomes")
        if outcomes and isinstance(outcomes, list | tuple) and "outcome" not in raw:
            raw["outcome"] = outcomes[0]
        return _convert(raw, cls, "")

    @classmethod
    def from_json(cls, text: str):
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Spec(SpecMethods):
    """An analysis: which outcome, which family, which terms, which priors, how to sample.

    The defaults are the national model of the study; every field is a value (no class
    paths), so the spec's canonical JSON identifies the analysis. Lists are stored as
    tuples. ``la_data`` is resolved against the spec file's folder by :func:`load_spec`.
    """

    outcome: str
    family: Family = "negbin"
    name: str = ""
    stratum: str = ""  # column splitting LSOAs into cells (e.g. "age_band"); "" for none
    strata: tuple[str, ...] = ()  # two or more stratum columns (one is kept as `stratum`)
    stratum_trend: str = ""  # numeric cell column (e.g. "age"): a trend in rate and gradient
    exposure: str = "children"  # the offset's column (e.g. person-days at risk)
    trials: str = ""  # binomial: the column of trials (e.g. "referrals")
    neighbourhood_moderators: tuple[str, ...] = ()
    la_data: str = ""
    la_moderators: tuple[str, ...] = ()
    la_effects: LAEffects = "auto"
    curve: Curve = "log-linear"  # or "spline": a penalised spline of w (model/terms/curve.py)
    target_accept: TargetAccept = 0.8
    outcomes: tuple[str, ...] = ()  # thresholds of a joint model, in order (outcome = first)
    records: RecordsTable | None = None  # fitted to the synthetic records' aggregate
    la_outcome: LAOutcome | None = None  # an LA-level outcome on the LA gradients
    spatial: Spatial = ""  # "bym2": a BYM2 LSOA effect on the `neighbours` graph
    neighbours: str = ""  # lsoa,neighbour CSV (relative to this file), "lsoa11" or "synthetic"
    priors: Priors = field(default_factory=Priors)
    sampling: Sampling = field(default_factory=Sampling)

    _where = ""

    def __post_init__(self):
        _validate(self)
        if self.name and not plain_name(self.name):
            raise SpecError(
                f"name {self.name!r} is not allowed: it becomes a folder under "
                f"--out, so it must match {NAME.pattern} (letters, digits, _ . -, "
                "starting with a letter or digit) with no '..'"
            )
        if (self.family == "binomial") != bool(self.trials):
            raise SpecError(
                "the binomial family needs `trials` (the column of trials), and "
                "only the binomial takes it"
            )
        if self.family == "binomial" and self.exposure != "children":
            raise SpecError("a binomial fit has no exposure offset: its denominator is `trials`")
        for name in ("neighbourhood_moderators", "la_moderators", "outcomes", "strata"):
            value = getattr(self, name)
            if len(set(value)) != len(value):
                raise SpecError(f"{name} repeats a column: {list(value)}")
        self._normalise_strata()
        if self.outcomes and (len(self.outcomes) < 2 or self.outcome != self.outcomes[0]):
            raise SpecError(
                "a joint spec lists at least two outcomes, `outcome` being the "
                f"first: got outcome={self.outcome!r}, outcomes={self.outcomes}"
            )
        if self.curve != "log-linear" and self.outcomes:
            raise SpecError(
                f"curve = {self.curve!r} is for a single-outcome spec, not a joint one "
                f"(outcomes = {list(self.outcomes)})"
            )
        if self.la_moderators and not self.la_data:
            raise SpecError("la_moderators need la_data: the LA table they are columns of")
        if self.la_outcome is not None:
            if self.outcomes:
                raise SpecError(
                    "la_outcome is for a single-outcome spec, not a joint one "
                    f"(outcomes = {list(self.outcomes)})"
                )
            if self.la_outcome.covariates and not self.la_data:
                raise SpecError(
                    f"la_outcome.adjust {list(self.la_outcome.covariates)} "
                    "needs la_data: the LA table they are columns of"
                )
        if (self.spatial or self.neighbours) and self.outcomes:
            raise SpecError("spatial/neighbours are for a single-outcome spec, not a joint one")
        if not self.name:
            stem = "_".join(self.outcomes) if self.outcomes else self.outcome
            object.__setattr__(self, "name", f"{stem}_{self.family}")

    def _normalise_strata(self) -> None:
        """Hold one stratum column as ``stratum``, two or more as ``strata``.

        One stratum column is always held as ``stratum`` (``strata = ["x"]`` is
        ``stratum = "x"``, the same spec and hash); two or more as ``strata``.
        """
        if self.stratum and self.strata and self.strata != (self.stratum,):
            raise SpecError(
                f"give the stratum columns once: stratum={self.stratum!r} and "
                f"strata={list(self.strata)} (use strata alone for several)"
            )
        if len(self.strata) == 1:
            object.__setattr__(self, "stratum", self.strata[0])
            object.__setattr__(self, "strata", ())
        if "" in self.strata:
            raise SpecError(f"strata names an empty column: {list(self.strata)}")
        if self.stratum_trend and self.stratum_trend in self.stratum_columns:
            raise SpecError(
                f"stratum_trend {self.stratum_trend!r} is also a stratum column: "
                "a column is either levels (strata) or a number (the trend)"
            )

    @property
    def stratum_columns(self) -> tuple[str, ...]:
        """The stratum columns, one or several (() for none)."""
        return self.strata or ((self.stratum,) if self.stratum else ())

    def to_json(self) -> str:
        """Return the canonical JSON, leaving out fields at their defaults since they came.

        Canonical JSON: fields at their defaults since the model language was added
        are left out, so the hashes of earlier specs (and their saved fits) still match
        (prior scales added later are left out at their defaults too).
        """
        raw = _canonical(json.loads(json.dumps(dataclasses.asdict(self))))
        for key, value in _NEW_PRIOR_DEFAULTS.items():
            if raw["priors"].get(key) == value:
                raw["priors"].pop(key)
        for key, default in _NEW_DEFAULTS.items():
            if raw.get(key) == default:
                raw.pop(key)
        return json.dumps(raw, sort_keys=True)


#: Prior scales added after the ``[priors]`` table existed: left out of the canonical JSON at
#: their defaults, so a spec with other priors set keeps its hash.
_NEW_PRIOR_DEFAULTS = {
    "trend_intercept": 1.0,
    "trend_slope": 0.5,
    "b_w_mean": 0.0,
    "b_b_mean": 0.0,
    "b_x_mean": 0.0,
    "fixed": "normal",
    "fixed_nu": 3,
    "curve_sd": 0.5,
}
_NEW_DEFAULTS = {
    "trials": "",
    "neighbourhood_moderators": [],
    "la_data": "",
    "la_moderators": [],
    "la_effects": "auto",
    "target_accept": 0.8,
    "priors": {
        k: v for k, v in dataclasses.asdict(Priors()).items() if k not in _NEW_PRIOR_DEFAULTS
    },
    "outcomes": [],
    "records": None,
    "la_outcome": None,
    "strata": [],
    "stratum_trend": "",
    "spatial": "",
    "neighbours": "",
    "curve": "log-linear",
}


#: Shipped neighbour graphs' names (socialgradient.data.neighbours.SHIPPED).
_SHIPPED = ("lsoa11", "synthetic")


def load_spec(path: str | Path) -> Spec:
    """Read a spec from a TOML file; relative ``la_data``/``neighbours`` are from its folder."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    for key in ("la_data", "neighbours"):  # a shipped graph's name is not a path
        if raw.get(key) and not Path(raw[key]).is_absolute() and raw[key] not in _SHIPPED:
            raw[key] = str((path.parent / raw[key]).resolve())
    return Spec.from_dict(raw)
