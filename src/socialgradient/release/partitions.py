"""The protection of several partitions of the same units published together.

:func:`protect_partitions`: a fit's LA totals, deprivation-decile totals and national
total, say, hidden, checked across each other and the ledger's earlier releases, perturbed
and rounded as one publication (:class:`Partitioned`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from socialgradient.release import ledger as ledgers
from socialgradient.release import perturbation
from socialgradient.release.rule import DEFAULT, DisclosureError, Rule


@dataclass(frozen=True)
class Partitioned:
    """Published totals of several partitions of the same units, after :func:`protect_partitions`.

    ``shown[name]``: one value per group of that partition, in ``groups[name]`` order (NaN
    where hidden; perturbed and rounded as the rule says); ``shown["total"]``: the grand
    total. ``hidden[name]``: boolean per group. ``actions``: what was done, with labels (for
    the analyst; :func:`public_actions` for the log). ``publication``: what the ledger
    records; ``check``: the public summary of the protection check.
    """

    groups: dict[str, np.ndarray]
    shown: dict[str, np.ndarray]
    hidden: dict[str, np.ndarray]
    actions: list[str]
    publication: ledgers.Publication | None = None
    check: dict = field(default_factory=dict)

    @property
    def n_hidden(self) -> int:
        """Return how many totals are hidden, over every partition."""
        return int(sum(h.sum() for h in self.hidden.values()))


def protect_partitions(
    values,
    partitions: dict[str, np.ndarray],
    rule: Rule = DEFAULT,
    min_width: float | None = None,
    *,
    units=None,
    earlier=(),
    keys=None,
    name: str = "totals",
    measure: str = "count",
) -> Partitioned:
    """Protect the totals of several partitions of the same units, published together.

    ``values``: one count per unit (e.g. per LSOA); ``partitions``: name -> one group label
    per unit (e.g. ``{"la": ..., "decile": ...}``); the grand total is published too, as
    ``"total"``. Totals below ``rule.threshold`` are hidden (zeros only if
    ``suppress_zeros``), then further totals (:func:`socialgradient.release.ledger.check`) until
    no hidden total, no single unit and no group of units below the threshold can be
    narrowed below ``min_width`` (default ``rule.protection``) by the visible totals (exact,
    or within their rounding interval), non-negativity and the ``earlier`` publications
    of the ledger that share units with this one (a total hidden in an earlier release of
    table ``name`` stays hidden). Visible totals are then perturbed (``rule.perturb``; keys
    from ``keys``, a :class:`socialgradient.release.perturbation.CellKeys`, default the ledger's)
    and rounded. ``units``: the units' ids (``LSOA`` or ``LSOA|stratum``).
    """
    y = np.asarray(values, dtype=float)
    if y.ndim != 1 or not np.all(np.isfinite(y)) or (y < 0).any():
        raise ValueError("values must be finite, non-negative counts, one per unit")
    units = (
        np.array([f"u{i}" for i in range(len(y))])
        if units is None
        else np.asarray(units, dtype=str)
    )
    names = [n for n in partitions if n != "total"]
    parts = {}
    for n in names:
        labels = np.asarray(partitions[n])
        if labels.shape != y.shape:
            raise ValueError(f"partition {n!r} needs one label per unit")
        groups, codes = np.unique(labels, return_inverse=True)
        parts[n] = (codes.ravel(), groups.astype(str))
    parts["total"] = (np.zeros(len(y), np.int64), np.array(["total"]))
    hidden = {}
    for n, (codes, groups) in parts.items():
        true = np.bincount(codes, weights=y, minlength=len(groups))
        hidden[n] = np.zeros((len(groups), 1), bool)
        if rule.threshold is not None:
            hidden[n][:, 0] = (true < rule.threshold) & ((true > 0) | rule.suppress_zeros)
    pub = ledgers.Publication(
        name,
        units,
        [measure],
        y[:, None],
        parts,
        hidden,
        round_to=rule.round_to,
        threshold=rule.threshold,
        suppress_zeros=rule.suppress_zeros,
        integer=True,
    )
    actions = [
        f"primary: {pub.label(n, int(k), 0)} below {rule.threshold}"
        for n in parts
        for k in np.flatnonzero(hidden[n][:, 0])
    ]
    check = {}
    if rule.secondary:
        try:
            outcome = ledgers.check(
                pub, earlier, rule.protection if min_width is None else min_width
            )
        except RuntimeError as err:
            raise DisclosureError(f"refused: {err}") from None
        actions += outcome.actions
        check = {**outcome.stats.public(), "earlier_publications": outcome.compared}
    if rule.perturb:
        keys = keys if keys is not None else ledgers.Ledger().keys()
        row_keys = keys.count_keys(units, y, measure)
    shown_d, hidden_d, groups_d = {}, {}, {}
    n_visible = 0
    for n, (codes, groups) in parts.items():
        true = np.bincount(codes, weights=y, minlength=len(groups))
        shown = true.copy()
        if rule.perturb:
            ck = perturbation.cell_keys(row_keys, codes, len(groups))
            shown = perturbation.perturb_counts(true, ck, rule.floor)
        if rule.round_to is not None:
            shown = np.floor(shown / rule.round_to + 0.5) * rule.round_to
        h = pub.hidden[n][:, 0]
        n_visible += int((~h).sum())
        shown_d[n], hidden_d[n] = np.where(h, np.nan, shown), h.copy()
        groups_d[n] = groups if n != "total" else np.array(["total"])
    if rule.perturb:
        actions.append(f"perturbed {n_visible} totals (cell key)")
    if rule.round_to is not None:
        actions.append(f"rounded {n_visible} totals to the nearest {rule.round_to}")
    return Partitioned(groups_d, shown_d, hidden_d, actions, pub, check)
