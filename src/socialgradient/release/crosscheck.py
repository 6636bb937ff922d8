"""The check of a new release against every earlier one sharing its units.

A :class:`Publication` is one published table of one release: its units (LSOA or LSOA x
stratum rows, by id), their true values per measure, the partitions of the units whose
totals were published (or assumed published elsewhere: ``public``), which totals were
hidden, and the rounding and threshold. :func:`check` puts a new publication beside every
earlier one sharing units and a measure, and hides further totals of the new one until no
hidden total of any release, no single unit and no small group of units (below the
threshold) is pinned (:mod:`socialgradient.release.audit`, exact model: published values as if
unperturbed). Units are matched by id *and value*: a unit whose count changed between two
releases is two unknowns (the difference of two releases of revised data is protected by
the perturbation, which the check does not count on).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from socialgradient.release import audit


@dataclass
class Publication:
    """One published table of one release (see the module docstring).

    ``partitions``: name -> (code per unit, labels); ``hidden``: name -> bool array (labels
    x measures); ``public``: partitions whose totals are taken as published elsewhere (exact,
    never hidden by us).
    """

    name: str
    units: np.ndarray
    measures: list[str]
    values: np.ndarray
    partitions: dict[str, tuple[np.ndarray, np.ndarray]]
    hidden: dict[str, np.ndarray]
    public: tuple[str, ...] = ()
    round_to: int | None = None
    threshold: int | None = None
    suppress_zeros: bool = False
    integer: bool = True
    release: str = ""
    #: :func:`content_digest` of a publication read from the ledger (which never changes
    #: one); empty for one made in memory
    content: str = ""

    def __post_init__(self):
        self.units = np.asarray(self.units, dtype=str)
        self.values = np.asarray(self.values, dtype=float).reshape(len(self.units), -1)
        if len(set(self.units.tolist())) != len(self.units):
            raise ValueError(f"{self.name}: unit ids must be unique")
        for name, (codes, labels) in self.partitions.items():
            self.partitions[name] = (
                np.asarray(codes, dtype=np.int64),
                np.asarray(labels, dtype=str),
            )
            shape = (len(labels), len(self.measures))
            if name in self.public:
                self.hidden[name] = np.zeros(shape, bool)
            self.hidden[name] = np.asarray(
                self.hidden.get(name, np.zeros(shape, bool)), bool
            ).reshape(shape)

    def totals(self, name: str) -> np.ndarray:
        """Return the true totals of partition ``name`` (labels x measures)."""
        codes, labels = self.partitions[name]
        return np.stack(
            [
                np.bincount(codes, weights=self.values[:, j], minlength=len(labels))
                for j in range(len(self.measures))
            ],
            axis=1,
        )

    def label(self, name: str, k: int, j: int) -> str:
        """Return the label of total ``k`` of partition ``name``, measure ``j``."""
        where = self.partitions[name][1][k]
        text = (
            f"[{where}]"
            if name in ("cell", "total") or name.startswith("by ")
            else f"[{name}={where}]"
        )
        return text + (f" {self.measures[j]}" if name == "cell" or len(self.measures) > 1 else "")


def _var_keys(pub: Publication, j: int) -> np.ndarray:
    values = np.char.mod("%.6f", np.round(pub.values[:, j], 6))
    return np.char.add(np.char.add(pub.units, "\x00"), values)


def _weights(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)


@dataclass
class Outcome:
    """What :func:`check` did.

    ``hidden`` ([(partition, label index, measure index)] of the
    new publication), ``actions`` (labelled, for the analyst), ``stats`` and ``compared``
    (earlier publications taken into account).
    """

    hidden: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    stats: audit.Stats = field(default_factory=audit.Stats)
    compared: int = 0


def check(new: Publication, earlier=(), protection: float = 1.0) -> Outcome:
    """Hide totals of ``new`` until nothing hidden in any release is pinned.

    Hide further totals of ``new`` (in place) until, with every earlier publication
    sharing units and a measure with it, nothing hidden is pinned narrower than
    ``protection`` (see the module docstring). :class:`RuntimeError` when that cannot be
    done by hiding totals of ``new``. Earlier publications with the same content (the same
    table of the same data released again) are put in the check once: they add the same
    constraints and the same hidden totals, whose answers are given for each of them.
    """
    out = Outcome()
    seen: set[int] = set()
    for j, measure in enumerate(new.measures):
        pubs: list[tuple[Publication, int]] = []  # the distinct earlier publications
        copies: list[int] = []  # per earlier publication sharing units: its place in pubs
        place: dict[object, int | None] = {}
        for p in earlier:
            if measure not in p.measures:
                continue
            k = p.measures.index(measure)
            key = _fingerprint(p, k)
            if key not in place:
                place[key] = len(pubs) if np.isin(p.units, new.units).any() else None
                if place[key] is not None:
                    pubs.append((p, k))
            at = place[key]
            if at is not None:
                seen.add(id(p))
                copies.append(at)
        out.compared = len(seen)
        for p, k in pubs:  # a copy revises as its first does: the first is named
            _small_revision(new, j, p, k)
        _check_measure(new, j, pubs, copies, protection, out)
    return out


def content_digest(pub: Publication) -> str:
    """Return a digest (SHA-256) of everything :func:`check` reads of ``pub``.

    Everything but the release's id (named in messages only), every measure: equal
    digests mean the same table of the same data, hidden alike. The ledger records it with
    each publication and gives it back as :attr:`Publication.content`.
    """
    return "sha256:" + _digest(pub, slice(None)).hex()


def _fingerprint(pub: Publication, k: int):
    """Return a key equal for publications whose measure ``k`` is checked alike."""
    return (pub.content, k) if pub.content else _digest(pub, k)


def _digest(pub: Publication, k) -> bytes:
    h = hashlib.sha256()
    head = (pub.name, list(pub.measures), str(k), list(pub.partitions), list(pub.public))
    h.update(repr((*head, pub.round_to, pub.threshold, pub.suppress_zeros, pub.integer)).encode())
    arrays = [pub.units, pub.values[:, k]]
    for name, (codes, labels) in pub.partitions.items():
        arrays += [codes, labels, pub.hidden[name][:, k]]
    for x in arrays:
        x = np.ascontiguousarray(x)
        h.update(f"{x.dtype.str}{x.shape}".encode())
        h.update(x.tobytes())
    return h.digest()


def _small_revision(new: Publication, j: int, old: Publication, k: int) -> None:
    """Refuse data that revise an earlier release's by fewer than the threshold.

    Refuse (:class:`RuntimeError`) a release of data that revise an earlier release's by
    fewer than ``threshold`` records of a measure (a child added or removed): even
    perturbed, the two releases would differ in exactly the cells those records count in
    (their LA, stratum and steps of care). Same data, or data that differ by at least the
    threshold (another year), pass.
    """
    shared, i_new, i_old = np.intersect1d(new.units, old.units, return_indices=True)
    if not len(shared):
        return
    change = float(np.abs(new.values[i_new, j] - old.values[i_old, k]).sum())
    limit = new.threshold or 1
    if 0 < change < limit:
        raise RuntimeError(
            f"{new.measures[j]}: this data revises the data of an earlier release in the "
            f"ledger ({old.name}, release {old.release or 'in progress'}) by fewer than "
            f"{limit} (units changed: {int((new.values[i_new, j] != old.values[i_old, k]).sum())}"
            "); the two releases together would single out the records that changed. "
            "Publish one of them, or wait until the revision is larger"
        )


def _check_measure(new: Publication, j: int, pubs, copies, protection, out: Outcome) -> None:
    """Check ``new``'s measure ``j`` against the distinct earlier ``pubs``.

    ``copies``: for each earlier publication in the ledger's order, its place in ``pubs``
    (the hidden totals of each are checked in that order, as if each were put in).
    """
    every = [(new, j), *pubs]
    keys = np.concatenate([_var_keys(p, k) for p, k in every])
    var_of, uniques = pd.factorize(keys)
    values = np.concatenate([p.values[:, k] for p, k in every])
    n_var = len(uniques)
    var_value = np.zeros(n_var)
    var_value[var_of] = values
    # cells: every partition label of every publication
    var_parts: list[np.ndarray] = []
    col_parts: list[np.ndarray] = []
    meta: list[tuple[int, str, int]] = []
    start, base = 0, 0
    first_cell = []  # each publication's first cell
    for q, (p, _) in enumerate(every):
        first_cell.append(base)
        vars_p = var_of[start : start + len(p.units)]
        start += len(p.units)
        for name, (codes, labels) in p.partitions.items():
            var_parts.append(vars_p)
            col_parts.append(base + codes)
            meta += [(q, name, i) for i in range(len(labels))]
            base += len(labels)
    cell_var, cell_col = np.concatenate(var_parts), np.concatenate(col_parts)
    n_cell = base
    first_cell.append(n_cell)
    signature = np.zeros(n_var, np.uint64)
    with np.errstate(over="ignore"):
        np.add.at(signature, cell_var, _cell_weights(first_cell, copies)[cell_col])
    atom_sig, atom_of = np.unique(signature, return_inverse=True)
    n_atom = len(atom_sig)
    atom_value = np.bincount(atom_of, weights=var_value, minlength=n_atom)
    atom_size = np.bincount(atom_of, minlength=n_atom)
    c = sparse.csr_array(
        (np.ones(len(cell_var)), (cell_col, atom_of[cell_var])), shape=(n_cell, n_atom)
    )
    c.sum_duplicates()
    c.data[:] = 1.0
    true = c @ atom_value
    is_new = np.array([q == 0 for q, _, _ in meta])
    public = np.array([name in every[q][0].public for q, name, _ in meta])
    hidden = np.array([every[q][0].hidden[name][i, every[q][1]] for q, name, i in meta])
    # the same cell (table, partition, label, units and values) hidden before: hidden again
    var_sig = np.zeros(n_cell, np.uint64)
    with np.errstate(over="ignore"):
        np.add.at(var_sig, cell_col, _weights(n_var, 2)[cell_var])
    ident = [
        (every[q][0].name, name, every[q][0].partitions[name][1][i], int(var_sig[ci]))
        for ci, (q, name, i) in enumerate(meta)
    ]
    before = {ident[ci] for ci in np.flatnonzero(hidden & ~is_new)}
    for ci in np.flatnonzero(is_new & ~hidden & ~public).tolist():
        if ident[ci] in before:
            hidden[ci] = True
            _, name, i = meta[ci]
            new.hidden[name][i, j] = True
            out.hidden.append((name, i, j))
            out.actions.append(
                f"secondary: {new.label(name, i, j)} (hidden in an earlier "
                "release of the same table)"
            )
    lo, hi = _bounds(every, meta, true)
    lo[hidden], hi[hidden] = 0.0, np.inf  # a hidden total says nothing (and is inactive)
    integer = all(p.integer for p, _ in every)
    check_ = audit.Audit(c, lo, hi, atom_value, integer=integer)
    check_.set_active(np.flatnonzero(hidden), False)

    def label(ci: int) -> str:
        q, name, i = meta[ci]
        text = every[q][0].label(name, i, every[q][1])
        return text if q == 0 else f"{text} of an earlier release"

    # the hidden totals of every publication in order, a copy's those of its first
    made: dict[int, tuple[str, object]] = {}
    targets = []
    for q in [0, *(q + 1 for q in copies)]:
        for ci in (
            first_cell[q] + np.flatnonzero(hidden[first_cell[q] : first_cell[q + 1]])
        ).tolist():
            if ci not in made:
                made[ci] = (label(ci), c[[ci]])
            targets.append(audit.Target(*made[ci], ci))
    threshold = new.threshold
    small = (atom_size == 1) | ((atom_value < threshold) if threshold else False)
    shown = (atom_value > 0) | new.suppress_zeros
    sole = np.unique(c.indices[np.repeat(np.diff(c.indptr) == 1, np.diff(c.indptr))])
    for a in np.flatnonzero(small & shown & ~np.isin(np.arange(n_atom), sole)):
        row = sparse.csr_array((np.ones(1), ([0], [a])), shape=(1, n_atom))
        what = "one unit" if atom_size[a] == 1 else f"a group of {atom_size[a]} units"
        targets.append(audit.Target(f"{what} behind the totals", row))
    mine = np.flatnonzero(is_new & ~public)
    order = np.lexsort(
        (true[mine], true[mine] <= 0, np.array([meta[ci][1] == "total" for ci in mine]))
    )
    mine = mine[order]
    ct = c.T.tocsr()

    def candidates(t: audit.Target):
        atoms = np.flatnonzero(audit._dense(t.row))
        ring1 = np.unique(ct[atoms].indices) if len(atoms) else np.zeros(0, int)
        ring2 = np.unique(ct[np.unique(c[ring1].indices)].indices) if len(ring1) else ring1
        live = mine[check_.active[mine]]  # smallest positive totals first, the total last
        near = np.isin(live, np.union1d(ring1, ring2))  # linked to the target's cells
        return [int(x) for x in np.concatenate([live[near], live[~near]])]

    try:
        rows, actions = audit.secure(
            check_, targets, candidates, protection, label=label, permanent=~is_new | public
        )
    finally:
        out.stats.add(check_.stats)
    out.actions += actions
    for ci in rows:
        _, name, i = meta[ci]
        new.hidden[name][i, j] = True
        out.hidden.append((name, i, j))


def _cell_weights(first_cell: list[int], copies: list[int]) -> np.ndarray:
    """Return the random weight of each cell whose sums over a unit's cells name its atom.

    Each cell of a publication put in once weighs what it and its copies' cells weigh
    together (wrapping sums), so the atoms, and their order, are those of the check with
    every copy put in.
    """
    sizes = np.diff(first_cell)
    every = [0, *(q + 1 for q in copies)]
    drawn = _weights(int(sizes[every].sum()), 1)
    out = np.zeros(first_cell[-1], np.uint64)
    at = 0
    with np.errstate(over="ignore"):
        for q in every:
            out[first_cell[q] : first_cell[q + 1]] += drawn[at : at + sizes[q]]
            at += sizes[q]
    return out


def _bounds(every, meta, true) -> tuple[np.ndarray, np.ndarray]:
    """Return what a reader knows of each cell's total when it is shown.

    What a reader knows of each cell's total when it is shown: exact, or its rounding
    interval; at least the threshold when it is not zero.
    """
    lo, hi = true.astype(float).copy(), true.astype(float).copy()
    for ci, (q, name, _) in enumerate(meta):
        p = every[q][0]
        if name in p.public:
            continue
        t = true[ci]
        if p.round_to:
            r = p.round_to
            rv = r * np.floor(t / r + 0.5)
            if p.integer:
                lo[ci], hi[ci] = np.ceil(rv - r / 2), np.ceil(rv + r / 2) - 1
            else:
                lo[ci], hi[ci] = rv - r / 2, rv + r / 2
            lo[ci] = max(lo[ci], 0.0)
        if p.threshold and t > 0:
            lo[ci] = max(lo[ci], float(p.threshold))
    return lo, hi
