"""One analysis, as a frozen spec loaded from a TOML file in ``models/``.

A spec holds values only. Its canonical JSON and that JSON's hash are stored in a fitted
result's attrs, so a saved fit can be checked against the spec that made it.

Example ``models/national_referrals.toml``::

    name = "national_referrals"
    outcome = "referrals"
    family = "negbin"          # or "poisson"
    stratum = ""               # e.g. "age_band" for a table of LSOA x age-band cells

    [sampling]
    sampler = "nutpie"         # or "pymc", "numpyro"
    draws = 1000
    tune = 1000
    chains = 4
    seed = 2021
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

FAMILIES = ("negbin", "poisson")
SAMPLERS = ("nutpie", "pymc", "numpyro")


@dataclass(frozen=True)
class Sampling:
    """MCMC settings: draws and tune are per chain."""

    sampler: str = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 2021

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}: choose one of {SAMPLERS}")
        for name in ("draws", "tune", "chains"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"sampling.{name} must be a positive integer, got {value!r}")


class SpecMethods:
    """JSON, hash, ``replace`` and ``from_dict`` for any frozen spec dataclass that has a
    ``sampling: Sampling`` field (:class:`Spec`, :class:`socialgradient.panel.PanelSpec`)."""

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), the form stored with results."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def hash(self) -> str:
        """Short SHA-256 of :meth:`to_json`."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def replace(self, **changes):
        """A copy with top-level fields or sampling fields (``draws=``, ...) changed;
        ``None`` values are ignored."""
        sampling_fields = {f.name for f in dataclasses.fields(Sampling)}
        sampling = {k: v for k, v in changes.items() if k in sampling_fields and v is not None}
        top = {k: v for k, v in changes.items() if k not in sampling_fields and v is not None}
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
        return cls(**raw, sampling=Sampling(**sampling))

    @classmethod
    def from_json(cls, text: str):
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Spec(SpecMethods):
    """An analysis: which outcome, which family, which strata, how to sample."""

    outcome: str
    family: str = "negbin"
    name: str = ""
    stratum: str = ""  # column splitting LSOAs into cells (e.g. "age_band"); "" for none
    exposure: str = "children"  # the offset's column (e.g. person-days at risk)
    sampling: Sampling = field(default_factory=Sampling)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}: choose one of {FAMILIES}")
        if not self.name:
            object.__setattr__(self, "name", f"{self.outcome}_{self.family}")

def load_spec(path: str | Path) -> Spec:
    """Read a spec from a TOML file."""
    with open(path, "rb") as f:
        return Spec.from_dict(tomllib.load(f))


def _check_keys(raw: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}")
