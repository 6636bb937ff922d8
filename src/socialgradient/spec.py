"""One analysis, as a frozen spec loaded from a TOML file in ``models/``.

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
    target_accept = 0.8

    [priors]                   # scales (and a's mean); defaults in socialgradient.model
    b_w = 1.0

    [la_outcome]               # an LA-level outcome on the LA gradients (la_outcome.py)
    count = "rereferrals"      # LA totals of this column ...
    trials = "referrals"       # ... out of LA totals of this one (binomial, logit)
    adjust = ["spend_per_child"]  # la_data columns; LA deprivation m_c is always in

    [records]                  # only for specs fitted to the synthetic child records
    by = ["ethnicity"]         # (socialgradient.aggregates builds and caches the table)
    scale = 0.2

    [sampling]
    sampler = "nutpie"         # or "pymc", "numpyro"
    draws = 1000
    tune = 500                 # nutpie's adaptation settles well within it (its own default
    chains = 4                 # is 300); every suite spec PASSes at 400-500
    seed = 2021
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

FAMILIES = ("negbin", "poisson", "binomial")
SAMPLERS = ("nutpie", "pymc", "numpyro")
LA_EFFECTS = ("auto", "centred", "noncentred")


@dataclass(frozen=True)
class Sampling:
    """MCMC settings: draws and tune are per chain."""

    sampler: str = "nutpie"
    draws: int = 1000
    tune: int = 500
    chains: int = 4
    seed: int = 2021

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}: choose one of {SAMPLERS}")
        for name in ("draws", "tune", "chains"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"sampling.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Priors:
    """Prior scales of the national model (units in :mod:`socialgradient.model`).

    Each value is the standard deviation (scale) of a Normal or half-Normal prior, except
    ``a_mean`` (the intercept's prior mean, on the link scale: None = the family's default,
    -4 for log-rate families, 0 for the binomial's logit) and ``lkj_eta``.
    """

    a_mean: float | None = None
    a: float = 2.5
    b_w: float = 1.0
    b_b: float = 1.0
    b_x: float = 1.0
    la_sd_intercept: float = 1.0
    la_sd_slope: float = 0.5
    lkj_eta: float = 2.0
    inv_sqrt_phi: float = 1.0
    stratum_intercept: float = 1.0
    stratum_slope: float = 0.5
    trend_intercept: float = 1.0  # per standard deviation of the stratum trend's column
    trend_slope: float = 0.5  # per standard deviation of the stratum trend's column
    moderator_intercept: float = 1.0  # per standard deviation of the moderator
    moderator_slope: float = 0.5  # per standard deviation of the moderator

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "a_mean" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"priors.{f.name} must be a number, got {value!r}")
            if f.name != "a_mean" and not value > 0:
                raise ValueError(f"priors.{f.name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class RecordsTable:
    """The table a spec is fitted to when it is built from the synthetic child records
    (``[records]`` in a spec file; :mod:`socialgradient.aggregates` builds and caches it).

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
    seed: int = 2021
    scale: float = 0.2
    years: tuple[int, ...] = (2019,)
    durations: str = ""
    stack: tuple[str, ...] = ()
    positive: str = ""

    def __post_init__(self):
        if self.durations and self.stack:
            raise ValueError("records: `durations` and `stack` each reshape the table; give one")
        for name in ("by", "groups", "years", "stack"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str | int)
                               else tuple(value))
        if not 0 < self.scale <= 1:
            raise ValueError(f"records.scale must be in (0, 1], got {self.scale!r}")
        if self.durations and "durations" not in self.groups:
            object.__setattr__(self, "groups", (*self.groups, "durations"))


@dataclass(frozen=True)
class LAOutcome:
    """An LA-level outcome regressed on the model's own LA gradients (``[la_outcome]``).

    ``count``: a column of the table whose LA totals are the binomial's successes (e.g.
    ``rereferrals``); ``trials``: the column whose LA totals are its trials (e.g.
    ``referrals``); ``adjust``: LA covariates, columns of the spec's ``la_data`` (LA
    deprivation ``m_c`` is always in; naming it is allowed). See
    :mod:`socialgradient.la_outcome`.
    """

    count: str
    trials: str
    adjust: tuple[str, ...] = ()

    def __post_init__(self):
        adjust = (self.adjust,) if isinstance(self.adjust, str) else tuple(self.adjust)
        if len(set(adjust)) != len(adjust):
            raise ValueError(f"la_outcome.adjust repeats a column: {list(adjust)}")
        if not self.count or not self.trials or self.count == self.trials:
            raise ValueError("la_outcome needs `count` and `trials`, two different columns: "
                             f"got count={self.count!r}, trials={self.trials!r}")
        object.__setattr__(self, "adjust", adjust)

    @property
    def covariates(self) -> tuple[str, ...]:
        """The LA-table columns among ``adjust`` (all but ``m_c``)."""
        return tuple(a for a in self.adjust if a != "m_c")


class SpecMethods:
    """JSON, hash, ``replace`` and ``from_dict`` for any frozen spec dataclass that has a
    ``sampling: Sampling`` field (:class:`Spec`, :class:`socialgradient.panel.PanelSpec`)."""

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), the form stored with results."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def hash(self) -> str:
        """Short SHA-256 of :meth:`to_json`; a path in it (``la_data``) counts by its file
        name only, so a checkout moved elsewhere keeps its hashes (the LA table's values
        are in the fit's data hash)."""
        raw = json.loads(self.to_json())
        if raw.get("la_data"):
            raw["la_data"] = Path(raw["la_data"]).name
        return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **changes):
        """A copy with top-level fields or sampling fields (``draws=``, ...) changed;
        ``None`` values are ignored."""
        sampling_fields = {f.name for f in dataclasses.fields(Sampling)}
        sampling = {k: v for k, v in changes.items() if k in sampling_fields and v is not None}
        top = {k: v for k, v in changes.items() if k not in sampling_fields and v is not None}
        if isinstance(top.get("priors"), dict):
            _check_keys(top["priors"], {f.name for f in dataclasses.fields(Priors)}, "[priors]")
            top["priors"] = dataclasses.replace(self.priors, **top["priors"])
        return dataclasses.replace(
            self, **top, sampling=dataclasses.replace(self.sampling, **sampling)
        )

    @classmethod
    def from_dict(cls, raw: dict):
        """Build from a parsed TOML/JSON mapping; unknown keys are an error, not ignored."""
        raw = dict(raw)
        sampling = raw.pop("sampling", {})
        _check_keys(raw, {f.name for f in dataclasses.fields(cls)} - {"sampling"}, "spec")
        _check_keys(sampling, {f.name for f in dataclasses.fields(Sampling)}, "[sampling]")
        if raw.get("outcomes") and "outcome" not in raw:
            raw["outcome"] = raw["outcomes"][0]
        if raw.get("records") is not None and not isinstance(raw["records"], RecordsTable):
            _check_keys(raw["records"], {f.name for f in dataclasses.fields(RecordsTable)},
                        "[records]")
            raw["records"] = RecordsTable(**raw["records"])
        if raw.get("la_outcome") is not None and not isinstance(raw["la_outcome"], LAOutcome):
            _check_keys(raw["la_outcome"], {f.name for f in dataclasses.fields(LAOutcome)},
                        "[la_outcome]")
            raw["la_outcome"] = LAOutcome(**raw["la_outcome"])
        if "priors" in raw:
            _check_keys(raw["priors"], {f.name for f in dataclasses.fields(Priors)}, "[priors]")
            raw["priors"] = Priors(**raw["priors"])
        return cls(**raw, sampling=Sampling(**sampling))

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
    family: str = "negbin"
    name: str = ""
    stratum: str = ""  # column splitting LSOAs into cells (e.g. "age_band"); "" for none
    strata: tuple[str, ...] = ()  # two or more stratum columns (one is kept as `stratum`)
    stratum_trend: str = ""  # numeric cell column (e.g. "age"): a trend in rate and gradient
    exposure: str = "children"  # the offset's column (e.g. person-days at risk)
    trials: str = ""  # binomial: the column of trials (e.g. "referrals")
    neighbourhood_moderators: tuple[str, ...] = ()
    la_data: str = ""
    la_moderators: tuple[str, ...] = ()
    la_effects: str = "auto"
    target_accept: float = 0.8
    outcomes: tuple[str, ...] = ()  # thresholds of a joint model, in order (outcome = first)
    records: RecordsTable | None = None  # fitted to the synthetic records' aggregate
    la_outcome: LAOutcome | None = None  # an LA-level outcome on the LA gradients
    priors: Priors = field(default_factory=Priors)
    sampling: Sampling = field(default_factory=Sampling)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}: choose one of {FAMILIES}")
        if self.la_effects not in LA_EFFECTS:
            raise ValueError(f"unknown la_effects {self.la_effects!r}: choose one of {LA_EFFECTS}")
        if not 0.5 <= self.target_accept < 1:
            raise ValueError(f"target_accept must be in [0.5, 1), got {self.target_accept!r}")
        if (self.family == "binomial") != bool(self.trials):
            raise ValueError("the binomial family needs `trials` (the column of trials), and "
                             "only the binomial takes it")
        if self.family == "binomial" and self.exposure != "children":
            raise ValueError("a binomial fit has no exposure offset: its denominator is "
                             "`trials`")
        for name in ("neighbourhood_moderators", "la_moderators", "outcomes", "strata"):
            value = getattr(self, name)
            value = (value,) if isinstance(value, str) else tuple(value)
            if len(set(value)) != len(value):
                raise ValueError(f"{name} repeats a column: {list(value)}")
            object.__setattr__(self, name, value)
        self._normalise_strata()
        if self.outcomes and (len(self.outcomes) < 2 or self.outcome != self.outcomes[0]):
            raise ValueError("a joint spec lists at least two outcomes, `outcome` being the "
                             f"first: got outcome={self.outcome!r}, outcomes={self.outcomes}")
        if self.la_moderators and not self.la_data:
            raise ValueError("la_moderators need la_data: the LA table they are columns of")
        if isinstance(self.records, dict):
            object.__setattr__(self, "records", RecordsTable(**self.records))
        if isinstance(self.priors, dict):
            object.__setattr__(self, "priors", Priors(**self.priors))
        if isinstance(self.la_outcome, dict):
            object.__setattr__(self, "la_outcome", LAOutcome(**self.la_outcome))
        if self.la_outcome is not None:
            if self.outcomes:
                raise ValueError("la_outcome is for a single-outcome spec, not a joint one "
                                 f"(outcomes = {list(self.outcomes)})")
            if self.la_outcome.covariates and not self.la_data:
                raise ValueError(f"la_outcome.adjust {list(self.la_outcome.covariates)} "
                                 "needs la_data: the LA table they are columns of")
        if not self.name:
            stem = "_".join(self.outcomes) if self.outcomes else self.outcome
            object.__setattr__(self, "name", f"{stem}_{self.family}")

    def _normalise_strata(self) -> None:
        """One stratum column is always held as ``stratum`` (``strata = ["x"]`` is
        ``stratum = "x"``, the same spec and hash); two or more as ``strata``."""
        if self.stratum and self.strata and self.strata != (self.stratum,):
            raise ValueError(f"give the stratum columns once: stratum={self.stratum!r} and "
                             f"strata={list(self.strata)} (use strata alone for several)")
        if len(self.strata) == 1:
            object.__setattr__(self, "stratum", self.strata[0])
            object.__setattr__(self, "strata", ())
        if "" in self.strata:
            raise ValueError(f"strata names an empty column: {list(self.strata)}")
        if self.stratum_trend and self.stratum_trend in self.stratum_columns:
            raise ValueError(f"stratum_trend {self.stratum_trend!r} is also a stratum column: "
                             "a column is either levels (strata) or a number (the trend)")

    @property
    def stratum_columns(self) -> tuple[str, ...]:
        """The stratum columns, one or several (() for none)."""
        return self.strata or ((self.stratum,) if self.stratum else ())

    def to_json(self) -> str:
        """Canonical JSON: fields at their defaults since the model language was added
        are left out, so the hashes of earlier specs (and their saved fits) still match
        (prior scales added later are left out at their defaults too)."""
        raw = json.loads(json.dumps(dataclasses.asdict(self)))
        for key, value in _NEW_PRIOR_DEFAULTS.items():
            if raw["priors"].get(key) == value:
                raw["priors"].pop(key)
        for key, default in _NEW_DEFAULTS.items():
            if raw.get(key) == default:
                raw.pop(key)
        return json.dumps(raw, sort_keys=True)

#: Prior scales added after the ``[priors]`` table existed: left out of the canonical JSON at
#: their defaults, so a spec with other priors set keeps its hash.
_NEW_PRIOR_DEFAULTS = {"trend_intercept": 1.0, "trend_slope": 0.5}
_NEW_DEFAULTS = {
    "trials": "",
    "neighbourhood_moderators": [],
    "la_data": "",
    "la_moderators": [],
    "la_effects": "auto",
    "target_accept": 0.8,
    "priors": {k: v for k, v in dataclasses.asdict(Priors()).items()
               if k not in _NEW_PRIOR_DEFAULTS},
    "outcomes": [],
    "records": None,
    "la_outcome": None,
    "strata": [],
    "stratum_trend": "",
}


def load_spec(path: str | Path) -> Spec:
    """Read a spec from a TOML file; a relative ``la_data`` is taken from the file's folder."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    if raw.get("la_data") and not Path(raw["la_data"]).is_absolute():
        raw["la_data"] = str((path.parent / raw["la_data"]).resolve())
    return Spec.from_dict(raw)


def _check_keys(raw: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}")
