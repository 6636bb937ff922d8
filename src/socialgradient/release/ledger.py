"""The release ledger: what every release published, kept in the secure environment.

Each new release is checked against all earlier ones of the same or overlapping data
(:mod:`socialgradient.release.crosscheck`, whose :class:`Publication`, :class:`Outcome` and
:func:`check` stay importable from here).

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
publications) and ``.lock`` (one writer at a time, from the check to the record).
:mod:`socialgradient.release.crosscheck` describes a :class:`Publication` and the check.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
import hashlib
import hmac
import io
import json
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock, Timeout

from socialgradient.release.crosscheck import (  # noqa: F401 (importable from here)
    Outcome,
    Publication,
    check,
    content_digest,
)
from socialgradient.util.files import atomic_write

if TYPE_CHECKING:
    from socialgradient.release.perturbation import CellKeys

ENV = "SOCIALGRADIENT_LEDGER"
SECRET = "secret.key"
RELEASES = "releases"
FORMAT = "socialgradient-ledger/1"
#: Seconds to wait for the ledger's lock before saying that another release holds it.
LOCK_QUIET_S = 2.0

log = logging.getLogger(__name__)


def default_path() -> Path:
    """``$SOCIALGRADIENT_LEDGER``, else the per-user state folder's ``socialgradient/ledger``."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "socialgradient" / "ledger"


# -- the store ----------------------------------------------------------------------------


class Ledger:
    """A ledger folder (created on first use, mode 0700)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path).expanduser() if path is not None else default_path()
        self._keys: CellKeys | None = None

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
        """Return a keyed id of a data hash, for release/.

        A keyed id of a data hash, for release/ (an unkeyed hash of protected data would
        let a reader confirm a guessed table).
        """
        return hmac.new(self.secret, f"data:{digest}".encode(), hashlib.sha256).hexdigest()[:16]

    def keys(self):
        """Return the perturbation's cell keys under the ledger's secret.

        One :class:`~socialgradient.release.perturbation.CellKeys` per ledger object, so the
        units' keyed seeds are derived once for every table of a release.
        """
        from socialgradient.release.perturbation import CellKeys

        if self._keys is None:
            self._keys = CellKeys(self.secret)
        return self._keys

    @contextlib.contextmanager
    def locked(self):
        """Hold the ledger's lock: one release at a time, from the check to the record.

        Another release of the same ledger (a suite's fits, a second terminal) may hold it for
        as long as its check takes; after :data:`LOCK_QUIET_S` seconds this says so in the log
        and waits on, rather than waiting in silence.
        """
        lock = FileLock(self._folder() / ".lock", mode=0o600)
        try:
            lock.acquire(timeout=LOCK_QUIET_S)
        except Timeout:
            log.warning(
                "waiting for the release ledger's lock (%s): another release is being checked "
                "against this ledger and recorded",
                self.path / ".lock",
            )
            lock.acquire()
        try:
            yield self
        finally:
            lock.release()

    def files(self) -> list[Path]:
        """Return the recorded releases' files, sorted by name."""
        folder = self.path / RELEASES
        return sorted(folder.glob("*.npz")) if folder.is_dir() else []

    def publications(self, measures=None) -> list[Publication]:
        """Every recorded publication (of one of ``measures``, if given).

        A release whose every table has the content (:func:`content_digest`, recorded with
        it) of a table read from an earlier file is not read again: its publications share
        that one's arrays (only its release id differs), so a ledger of many releases of
        the same tables costs about what its distinct tables cost.
        """
        out = []
        first: dict[str, Publication] = {}  # content digest -> the publication read with it
        for file in self.files():
            mtime = file.stat().st_mtime_ns
            head = _head(file, mtime)
            digests = [t.get("content", "") for t in head["tables"]]
            if digests and all(d in first for d in digests):
                pubs = tuple(_copy(first[d], head["id"]) for d in digests)
            else:
                pubs = _read(file, mtime)
                for pub in pubs:
                    first.setdefault(pub.content, pub)
            for pub in pubs:
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
                    "content": content_digest(p),
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
        """Return the recorded releases' metadata, oldest first."""
        out = []
        for file in self.files():
            with np.load(file, allow_pickle=False) as z:
                out.append(json.loads(str(z["meta"])))
        return out


@functools.lru_cache(maxsize=4096)
def _head(file: Path, _mtime: int) -> dict:
    """Return a release file's metadata (read without its arrays)."""
    with np.load(file, allow_pickle=False) as z:
        return json.loads(str(z["meta"]))


def _copy(pub: Publication, release: str) -> Publication:
    """Return ``pub`` as published again by ``release`` (its arrays shared, never changed)."""
    out = copy.copy(pub)
    out.partitions, out.hidden, out.release = dict(pub.partitions), dict(pub.hidden), release
    return out


@functools.lru_cache(maxsize=256)
def _read(file: Path, _mtime: int) -> tuple[Publication, ...]:
    """Return a release file's publications, each with its content digest as computed."""
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
            pubs[-1].content = content_digest(pubs[-1])  # computed, not taken from the file
    return tuple(pubs)
