"""The disclosure rule and the refusal it raises.

:class:`Rule`: suppress counts below ``threshold`` (10), secondary suppression until every
hidden cell's range is at least ``protection`` (5) wide, cell-key perturbation, rounding;
zeros kept unless asked. A rule weaker than the default needs a stated reason, which is
logged (:meth:`Rule.check`). The gate that applies it is :mod:`socialgradient.release.disclosure`.
"""

from __future__ import annotations

from dataclasses import dataclass


class DisclosureError(PermissionError):
    """A write the disclosure rule refuses (child-level rows without an override reason)."""


@dataclass(frozen=True)
class Rule:
    """The disclosure rule: threshold, secondary suppression, perturbation, rounding.

    Suppress counts below ``threshold`` (None: none), secondary-suppress until every
    hidden cell's range is at least ``protection`` wide, perturb visible counts
    (``perturb``, the cell-key method), round them to the nearest ``round_to`` (None: no
    rounding); zeros suppressed only if asked.
    """

    threshold: int | None = 10
    round_to: int | None = None
    secondary: bool = True
    suppress_zeros: bool = False
    perturb: bool = True
    #: the narrowest range (max - min) of values that what is published may leave for a
    #: hidden cell, a single unit's count or a group of units below the threshold
    protection: int = 5
    #: why a rule weaker than the default (threshold below 10, none, no secondary
    #: suppression, no perturbation, a lower protection level) is used; required for
    #: writing under such a rule, and logged
    reason: str | None = None

    def __post_init__(self):
        for name in ("threshold", "round_to"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"Rule.{name} must be a positive integer or None, not {v!r}")
        p = self.protection
        if isinstance(p, bool) or not isinstance(p, int) or p < 0:
            raise ValueError(f"Rule.protection must be a non-negative integer, not {p!r}")

    @property
    def weaker(self) -> bool:
        """Whether the rule is weaker than the default.

        Weaker than the default rule: a lower threshold, none, no secondary suppression,
        no perturbation or a lower protection level.
        """
        default = Rule()
        return (
            self.threshold is None
            or (default.threshold is not None and self.threshold < default.threshold)
            or not self.secondary
            or not self.perturb
            or self.protection < default.protection
        )

    def check(self) -> None:
        """Refuse (:class:`DisclosureError`) a weaker rule that states no reason."""
        if self.weaker and not (isinstance(self.reason, str) and self.reason.strip()):
            raise DisclosureError(
                f"threshold {self.threshold} (secondary={self.secondary}, perturb="
                f"{self.perturb}, protection={self.protection}) is weaker than the default "
                f"{Rule().threshold}: give the reason with --override REASON (logged)"
            )

    @property
    def floor(self) -> int:
        """No perturbed visible count is below this (the threshold)."""
        return self.threshold or 1


#: The default rule (the default argument of the gate's functions).
DEFAULT = Rule()
