"""One analysis, as a frozen spec loaded from a TOML file in ``models/``.

(over 400 lines because it holds every spec dataclass with its documented fields; their typed
validation is in :mod:`socialgradient.util.typed`.)

A spec holds values only. Its canonical JSON and that JSON's hash are stored in a fitted
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
    tune = 500                 # nutpie's adaptation settles well within it (its own default
    chains = 4                 # is 300); every suite spec PASSes at 400-500
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
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import msgspec

from socialgradient.util.typed import SpecError, _check_keys, _convert, _names, _prepare, _validate

SpecError.__module__ = __name__  # the spec's error, documented and raised as spec.SpecError

#: A spec's ``name`` becomes a folder under ``--out`` (``socialgradient suite``): a plain name,
#: no ``/``, ``\``, ``..``, absolute path or leading dot.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def plain_name(name: str) -> bool:
    """``name`` may be a folder under ``--out``: it matches :data:`NAME`, with no ``..``."""
    return isinstance(name, str) and bool(NAME.fullmatch(name)) and ".." not in name


# -- the types of spec values -------------------------------------------------------------
# Each field's annotation is its rule: msgspec (strict: no "0.9" -> 0.9, no true -> 1)
# checks a value against it, and its description is what an error says is allowed.
# Where a float field takes an int, the int is kept as it is (1 stays 1, not 1.0): the
# canonical JSON, so the hash, of every spec written with an int is what it was.


def _meta(**kw) -> msgspec.Meta:
    return msgspec.Meta(**kw)


Family = Literal["negbin", "poisson", "binomial"]
Sampler = Literal["nutpie", "pymc", "numpyro"]
Stop = Literal["draws", "target"]
LAEffects = Literal["auto", "centred", "noncentred"]
Spatial = Literal["", "bym2"]
Curve = Literal["log-linear", "spline"]
#: draws and tune per chain
Count = Annotated[int, _meta(ge=1, le=1_000_000, description="an integer from 1 to 1000000")]
Chains = Annotated[int, _meta(ge=1, le=64, description="an integer from 1 to 64")]
#: numpy's legacy seed range (nutpie takes a u64, PyMC a numpy seed)
Seed = Annotated[
    int, _meta(ge=0, le=2**32 - 1, description="an integer from 0 to 4294967295 (2**32 - 1)")
]
Rhat = Annotated[
    Annotated[int, _meta(gt=1, le=2)] | Annotated[float, _meta(gt=1, le=2)],
    _meta(description="in (1, 2] (a number)"),
]
Seconds = Annotated[
    Annotated[int, _meta(gt=0)] | Annotated[float, _meta(gt=0)] | None,
    _meta(description="> 0 (a number of seconds, or left out: no time budget)"),
]
TargetAccept = Annotated[float, _meta(ge=0.5, lt=1, description="in [0.5, 1) (a number)")]
PositiveNumber = Annotated[
    Annotated[int, _meta(gt=0)] | Annotated[float, _meta(gt=0)],
    _meta(description="> 0 (a finite number)"),
]
AnyNumber = Annotated[
    int | float | None, _meta(description="a finite number (or left out: the family's default)")
]
Number = Annotated[int | float, _meta(description="a finite number")]
#: the prior family of the fixed effects a, b_w, b_b, b_x (:mod:`socialgradient.model.priors`)
FixedFamily = Literal["normal", "student_t"]
Fraction = Annotated[
    Annotated[int, _meta(ge=1, le=1)] | Annotated[float, _meta(gt=0, le=1)],
    _meta(description="in (0, 1] (a number)"),
]

FAMILIES: tuple[str, ...] = typing.get_args(Family)
SAMPLERS: tuple[str, ...] = typing.get_args(Sampler)
LA_EFFECTS: tuple[str, ...] = typing.get_args(LAEffects)
CURVES: tuple[str, ...] = typing.get_args(Curve)


# -- checking values against the field types (msgspec) --------------------------------------


@dataclass(frozen=True)
class Sampling:
    """MCMC settings: draws, tune and the draw budget are per chain.

    ``stop = "draws"`` samples ``draws`` draws; ``stop = "target"`` samples until every
    reported quantity has R-hat <= ``rhat`` and bulk and tail ESS >= ``ess``, or the budget
    (``max_draws``, ``max_seconds``) runs out (nutpie only; see the module docstring).
    """

    sampler: Sampler = "nutpie"
    draws: Count = 1000
    tune: Count = 500
    chains: Chains = 4
    seed: Seed = 2021
    stop: Stop = "draws"
    rhat: Rhat = 1.01
    ess: PositiveNumber = 400
    max_draws: Count = 4000
    max_seconds: Seconds = None

    _where = "sampling."

    def __post_init__(self):
        _validate(self)
        if self.stop == "target" and self.sampler != "nutpie":
            raise SpecError(
                f"sampling to a target (stop = 'target') needs the nutpie sampler, not "
                f"{self.sampler!r}: give fixed draws (--draws N, or stop = 'draws')"
            )


#: Sampling fields added after specs were hashed: left out of the canonical JSON at these
#: defaults, so every spec written before (all of them fixed draws) keeps its hash.
_NEW_SAMPLING_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(Sampling)
    if f.name in ("stop", "rhat", "ess", "max_draws", "max_seconds")
}


def _canonical(raw: dict) -> dict:
    """Drop the :data:`_NEW_SAMPLING_DEFAULTS` at their defaults from a spec's JSON mapping."""
    sampling = raw.get("sampling")
    if isinstance(sampling, dict):
        for key, default in _NEW_SAMPLING_DEFAULTS.items():
            if key in sampling and sampling[key] == default:
                sampling.pop(key)
    return raw


@dataclass(frozen=True)
class Priors:
    """Prior scales of the national model (units in :mod:`socialgradient.model.build`).

    Each value is the standard deviation (scale) of a Normal or half-Normal prior, except
    ``a_mean`` (the intercept's prior mean, on the link scale: None = the family's default,
    -4 for log-rate families, 0 for the binomial's logit), ``b_w_mean``, ``b_b_mean``,
    ``b_x_mean`` (the slopes' prior means, log rate ratio per 10 points), ``lkj_eta``, and
    ``fixed`` / ``fixed_nu``: the family of the priors of ``a``, ``b_w``, ``b_b``, ``b_x``
    ("normal", or "student_t" with ``fixed_nu`` degrees of freedom, unused by "normal"; scale
    as given).
    """

    a_mean: AnyNumber = None
    a: PositiveNumber = 2.5
    b_w: PositiveNumber = 1.0
    b_b: PositiveNumber = 1.0
    b_x: PositiveNumber = 1.0
    la_sd_intercept: PositiveNumber = 1.0
    la_sd_slope: PositiveNumber = 0.5
    lkj_eta: PositiveNumber = 2.0
    inv_sqrt_phi: PositiveNumber = 1.0
    stratum_intercept: PositiveNumber = 1.0
    stratum_slope: PositiveNumber = 0.5
    trend_intercept: PositiveNumber = 1.0  # per standard deviation of the stratum trend's column
    trend_slope: PositiveNumber = 0.5  # per standard deviation of the stratum trend's column
    moderator_intercept: PositiveNumber = 1.0  # per standard deviation of the moderator
    moderator_slope: PositiveNumber = 0.5  # per standard deviation of the moderator
    b_w_mean: Number = 0.0
    b_b_mean: Number = 0.0
    b_x_mean: Number = 0.0
    fixed: FixedFamily = "normal"
    fixed_nu: PositiveNumber = 3
    curve_sd: PositiveNumber = 0.5  # spline curve: RMS departure from log-linear (log scale)

    _where = "priors."

    def __post_init__(self):
        _validate(self)


@dataclass(frozen=True)
class RecordsTable:
    """The table a spec is fitted to when it is built from the synthetic child records.

    The table a spec is fitted to when it is built from the synthetic child records
    (``[records]`` in a spec file; :mod:`socialgradient.study.aggregates` builds and caches it).

    ``by``: strata of the aggregate (``age_band``, ``gender``, ``ethnicity``; () for one row
    per LSOA); ``groups``: column groups of
    :func:`socialgradient.data.census.linkage.aggregate`; ``seed``, ``scale``, ``years``: of
    :func:`~socialgradient.data.synthetic.records.simulate_records`;
    ``durations``: an outcome level (``nfa``, ``cin_plan``, ``cp_plan``, ``looked_after``) whose
    piecewise-exponential statistics become the rows (columns ``piece``, ``days``, ``ends``);
    ``stack``: count columns to put under one another (one row per input row x column, the
    column's name in ``category`` and its count in ``count``: e.g. the CP categories, fitted
    with ``stratum = "category"`` so every category gets its own gradient and contrasts);
    ``positive``: keep only rows where this column is > 0 (a binomial's trials: a row without
    trials carries no information), the dropped rows counted in the aggregate's report.
    """

    by: tuple[str, ...] = ()
    groups: tuple[str, ...] = ("thresholds",)
    seed: Seed = 2021
    scale: Fraction = 0.2
    years: tuple[int, ...] = (2019,)
    durations: str = ""
    stack: tuple[str, ...] = ()
    positive: str = ""

    _where = "records."

    def __post_init__(self):
        _validate(self)
        if self.durations and self.stack:
            raise SpecError("records: `durations` and `stack` each reshape the table; give one")
        if self.durations and "durations" not in self.groups:
            object.__setattr__(self, "groups", (*self.groups, "durations"))


@dataclass(frozen=True)
class LAOutcome:
    """An LA-level outcome regressed on the model's own LA gradients (``[la_outcome]``).

    ``count``: a column of the table whose LA totals are the binomial's successes (e.g.
    ``rereferrals``); ``trials``: the column whose LA totals are its trials (e.g.
    ``referrals``); ``adjust``: LA covariates, columns of the spec's ``la_data`` (LA
    deprivation ``m_c`` is always in; naming it is allowed). See
    :mod:`socialgradient.model.la_outcome`.
    """

    count: str
    trials: str
    adjust: tuple[str, ...] = ()

    _where = "la_outcome."

    def __post_init__(self):
        _validate(self)
        if len(set(self.adjust)) != len(self.adjust):
            raise SpecError(f"la_outcome.adjust repeats a column: {list(self.adjust)}")
        if not self.count or not self.trials or self.count == self.trials:
            raise SpecError(
                "la_outcome needs `count` and `trials`, two different columns: "
                f"got count={self.count!r}, trials={self.trials!r}"
            )

    @property
    def covariates(self) -> tuple[str, ...]:
        """The LA-table columns among ``adjust`` (all but ``m_c``)."""
        return tuple(a for a in self.adjust if a != "m_c")


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
