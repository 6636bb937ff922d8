"""The release ledger: what every release published, kept in the secure environment, and
the check of a new release against all earlier ones of the same or overlapping data
(over 400 lines because the ledger's records and the cross-release check are one concern).

Where it lives (:func:`default_path`): ``--ledger PATH`` where a command has it, else
``$SOCIALGRADIENT_LEDGER``, else a per-user state folder (``$XDG_STATE_HOME`` or
``~/.local/state``, ``%LOCALAPPDATA%`` on Windows, then ``socialgradient/ledger``). Not in
an output folder: ``DIR/internal/`` is replaced whenever ``DIR`` is written again, and
releases of the same data go to many folders; not one file per data hash either: tables
that differ by a few rows have different hashes, and differencing them is the attack. One
ledger is shared by every release of a project (a team sets ``SOCIALGRADIENT_LEDGER`` to a
folder in the project's secure storage); its public ``id`` is written in each release's
disclosure log, so an output checker sees whether two releases were checked against the
same ledger. See ``docs/disclosure.md``.

The folder holds ``secret.key`` (32 random bytes, created once, mode 0600: the key of the
perturbation (:mod:`socialgradient.release.perturbation`) and of the keyed data ids in release/;
never copied out), ``releases/*.npz`` (one file per release, written atomically: the
publications below) and ``.lock`` (one writer at a time, from the check to the record).

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

import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import io
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock
from scipy import sparse

from socialgradient.release import audit
from socialgradient.util.files import atomic_write

ENV = "SOCIALGRADIENT_LEDGER"
SECRET = "secret.key"
RELEASES = "releases"
FORMAT = "socialgradient-ledger/1"


def default_path() -> Path:
    """``$SOCIALGRADIENT_LEDGER``, else the per-user state folder's ``socialgradient/ledger``."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "socialgradient" / "ledger"


# -- publications -------------------------------------------------------------------------


@dataclass
class Publication:
    """One published table of one release (see the module docstring).

    ``partitions``: name -> (code per unit, labels); ``hidden``: name -> bool array (labels
    x measures); ``public``: partitions whose totals are taken as published elsewhere (exact,
    never hidden by us)."""

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
        codes, labels = self.partitions[name]
        return np.stack(
            [
                np.bincount(codes, weights=self.values[:, j], minlength=len(labels))
                for j in range(len(self.measures))
            ],
            axis=1,
        )

    def label(self, name: str, k: int, j: int) -> str:
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
    """What :func:`check` did: ``hidden`` ([(partition, label index, measure index)] of the
    new publication), ``actions`` (labelled, for the analyst), ``stats`` and ``compared``
    (earlier publications taken into account)."""

    hidden: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    stats: audit.Stats = field(default_factory=audit.Stats)
    compared: int = 0


def check(new: Publication, earlier=(), protection: float = 1.0) -> Outcome:
    """Hide further totals of ``new`` (in place) until, with every earlier publication
    sharing units and a measure with it, nothing hidden is pinned narrower than
    ``protection`` (see the module docstring). :class:`RuntimeError` when that cannot be
    done by hiding totals of ``new``."""
    out = Outcome()
    seen: set[int] = set()
    for j, measure in enumerate(new.measures):
        pubs = [
            (p, p.measures.index(measure))
            for p in earlier
            if measure in p.measures and np.isin(p.units, new.units).any()
        ]
        seen.update(id(p) for p, _ in pubs)
        out.compared = len(seen)
        for p, k in pubs:
            _small_revision(new, j, p, k)
        _check_measure(new, j, pubs, protection, out)
    return out


def _small_revision(new: Publication, j: int, old: Publication, k: int) -> None:
    """Refuse (:class:`RuntimeError`) a release of data that revise an earlier release's by
    fewer than ``threshold`` records of a measure (a child added or removed): even
    perturbed, the two releases would differ in exactly the cells those records count in
    (their LA, stratum and steps of care). Same data, or data that differ by at least the
    threshold (another year), pass."""
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


def _check_measure(new: Publication, j: int, pubs, protection: float, out: Outcome) -> None:
    every = [(new, j), *pubs]
    keys = np.concatenate([_var_keys(p, k) for p, k in every])
    var_of, uniques = pd.factorize(keys)
    values = np.concatenate([p.values[:, k] for p, k in every])
    n_var = len(uniques)
    var_value = np.zeros(n_var)
    var_value[var_of] = values
    # cells: every partition label of every publication
    cell_var, cell_col, meta = [], [], []
    start, base = 0, 0
    for q, (p, _) in enumerate(every):
        vars_p = var_of[start : start + len(p.units)]
        start += len(p.units)
        for name, (codes, labels) in p.partitions.items():
            cell_var.append(vars_p)
            cell_col.append(base + codes)
            meta += [(q, name, i) for i in range(len(labels))]
            base += len(labels)
    cell_var, cell_col = np.concatenate(cell_var), np.concatenate(cell_col)
    n_cell = base
    signature = np.zeros(n_var, np.uint64)
    with np.errstate(over="ignore"):
        np.add.at(signature, cell_var, _weights(n_cell, 1)[cell_col])
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
    for ci in np.flatnonzero(is_new & ~hidden & ~public):
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

    targets = [audit.Target(label(ci), c[[ci]], ci) for ci in np.flatnonzero(hidden)]
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
        atoms = np.flatnonzero(np.asarray(t.row.todense()).ravel())
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


def _bounds(every, meta, true) -> tuple[np.ndarray, np.ndarray]:
    """What a reader knows of each cell's total when it is shown: exact, or its rounding
    interval; at least the threshold when it is not zero."""
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


# -- the store ----------------------------------------------------------------------------


class Ledger:
    """A ledger folder (created on first use, mode 0700)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path).expanduser() if path is not None else default_path()

    def _folder(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.path

    @functools.cached_property
    def secret(self) -> bytes:
        """The ledger's secret (created with the folder)."""
        file = self._folder() / SECRET
        if not file.exists():
            with FileLock(self.path / ".secret.lock"):
                if not file.exists():
                    value = secrets.token_bytes(32)
                    atomic_write(file, lambda tmp: Path(tmp).write_bytes(value))
                    with contextlib.suppress(OSError):
                        os.chmod(file, 0o600)
        value = file.read_bytes()
        if len(value) < 16:
            raise ValueError(f"{file}: damaged ledger secret")
        return value

    @property
    def id(self) -> str:
        """A public name of this ledger (keyed, so it says nothing of the secret)."""
        return hmac.new(self.secret, b"ledger id", hashlib.sha256).hexdigest()[:12]

    def data_id(self, digest: str) -> str:
        """A keyed id of a data hash, for release/ (an unkeyed hash of protected data would
        let a reader confirm a guessed table)."""
        return hmac.new(self.secret, f"data:{digest}".encode(), hashlib.sha256).hexdigest()[:16]

    def keys(self):
        from socialgradient.release.perturbation import CellKeys

        return CellKeys(self.secret)

    @contextlib.contextmanager
    def locked(self):
        """Hold the ledger's lock: one release at a time, from the check to the record."""
        with FileLock(self._folder() / ".lock", mode=0o600):
            yield self

    def files(self) -> list[Path]:
        folder = self.path / RELEASES
        return sorted(folder.glob("*.npz")) if folder.is_dir() else []

    def publications(self, measures=None) -> list[Publication]:
        """Every recorded publication (of one of ``measures``, if given)."""
        out = []
        for file in self.files():
            for pub in _read(file, file.stat().st_mtime_ns):
                if measures is None or set(pub.measures) & set(measures):
                    out.append(pub)
        return out

    def record(self, publications, **meta) -> Path:
        """Record a release (its publications and ``meta``: command, out, data_id, rule)."""
        stamp = dt.datetime.now(dt.UTC)
        rid = f"{stamp:%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"
        arrays, tables = {}, []
        for i, p in enumerate(publications):
            arrays[f"t{i}_units"] = p.units
            arrays[f"t{i}_values"] = p.values
            parts = []
            for k, (name, (codes, labels)) in enumerate(p.partitions.items()):
                arrays[f"t{i}_p{k}_codes"] = codes
                arrays[f"t{i}_p{k}_labels"] = labels
                arrays[f"t{i}_p{k}_hidden"] = p.hidden[name]
                parts.append(name)
            tables.append(
                {
                    "name": p.name,
                    "measures": list(p.measures),
                    "partitions": parts,
                    "public": list(p.public),
                    "round_to": p.round_to,
                    "threshold": p.threshold,
                    "suppress_zeros": p.suppress_zeros,
                    "integer": p.integer,
                }
            )
        head = {
            "format": FORMAT,
            "id": rid,
            "time": stamp.isoformat(timespec="seconds"),
            **meta,
            "tables": tables,
        }
        arrays["meta"] = np.array(json.dumps(head, default=str))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        file = self._folder() / RELEASES / f"{rid}.npz"
        file.parent.mkdir(exist_ok=True, mode=0o700)
        atomic_write(file, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
        return file

    def releases(self) -> list[dict]:
        """The recorded releases' metadata, oldest first."""
        out = []
        for file in self.files():
            with np.load(file, allow_pickle=False) as z:
                out.append(json.loads(str(z["meta"])))
        return out


@functools.lru_cache(maxsize=256)
def _read(file: Path, _mtime: int) -> tuple[Publication, ...]:
    with np.load(file, allow_pickle=False) as z:
        head = json.loads(str(z["meta"]))
        pubs = []
        for i, t in enumerate(head["tables"]):
            parts, hidden = {}, {}
            for k, name in enumerate(t["partitions"]):
                parts[name] = (z[f"t{i}_p{k}_codes"], z[f"t{i}_p{k}_labels"])
                hidden[name] = z[f"t{i}_p{k}_hidden"]
            pubs.append(
                Publication(
                    t["name"],
                    z[f"t{i}_units"],
                    t["measures"],
                    z[f"t{i}_values"],
                    parts,
                    hidden,
                    tuple(t["public"]),
                    t["round_to"],
                    t["threshold"],
                    t["suppress_zeros"],
                    t["integer"],
                    head["id"],
                )
            )
    return tuple(pubs)
