"""The parts of a spec: sampling settings, priors, a records table, an LA-level outcome.

Each is a frozen dataclass whose fields are typed by :mod:`socialgradient.spec.values` and
checked on creation; :mod:`socialgradient.spec` re-exports and documents them.
"""

import dataclasses
from dataclasses import dataclass

from socialgradient.spec.values import (
    AnyNumber,
    Chains,
    Count,
    FixedFamily,
    Fraction,
    Number,
    PositiveNumber,
    Rhat,
    Sampler,
    Seconds,
    Seed,
    Stop,
    Tune,
)
from socialgradient.util.typed import SpecError, _validate


@dataclass(frozen=True)
class Sampling:
    """MCMC settings: draws, tune and the draw budget are per chain.

    ``tune`` left out (None) is chosen from the data when the fit starts: 200 where they pin
    the LA SDs down, 500 otherwise (:mod:`socialgradient.sampling.tuning`).

    ``stop = "draws"`` samples ``draws`` draws; ``stop = "target"`` samples until every
    reported quantity has R-hat <= ``rhat`` and bulk and tail ESS >= ``ess``, or the budget
    (``max_draws``, ``max_seconds``) runs out (nutpie only; see the module docstring).
    """

    sampler: Sampler = "nutpie"
    draws: Count = 1000
    tune: Tune = None  # chosen from the data (socialgradient.sampling.tuning)
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
    curve_sd: PositiveNumber = 0.5  # spline: prior mean of its RMS departure (log scale), Gamma(2)

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
