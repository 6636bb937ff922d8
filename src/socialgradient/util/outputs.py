"""Output sets: what a command writes, whole or not at all, publishable apart from internal.
(over 400 lines because the write protocol, its recovery and verify are one concern a
reviewer must read whole.)

An output folder ``DIR`` holds one *output set*::

    DIR/MANIFEST.json   every file of the set with its SHA-256 and size, the spec and data hashes
    DIR/release/        safe to publish: built only from numbers that passed the disclosure gate
    DIR/internal/       LSOA-level information (the posterior tree, unprotected checks) and a
                        README saying it is not for release

Anything else in ``DIR`` (``out/suite/`` beside the main job's set, a user's own files) is
never touched. A reader trusts ``DIR`` only if :func:`verify` passes (:func:`check` lists every
problem; ``socialgradient verify DIR`` prints them): the manifest parses, lists only files
under ``release/`` and ``internal/`` (no ``..``, no absolute path, no name twice), holds
``internal/README.txt`` (NOT FOR RELEASE) and at least one file of ``release/``; the files on
disk there are exactly those listed, each with its listed size and hash; nothing there is a
link, a FIFO, a device or a socket (walked with ``os.scandir``/``os.lstat``, never following a
link), and no file of ``release/`` is the same file (inode) as one of ``internal/``; and no
commit is pending. What a manifest cannot say: who wrote it. Anyone who can write ``DIR`` can
write files and a manifest recomputed to match them; without a secret the checks above tell
an intact set from an accident or a careless edit, not from a deliberate forgery. Hard links
to files outside the set are allowed (backups such as ``rsync --link-dest`` make them); the
content is what the hashes check.

What a write may replace or delete, and only when socialgradient put it there (*ours*):

* ``release/``, ``internal/`` and ``MANIFEST.json``: only as an output set of ours, i.e. a
  manifest that parses as above and lists every file under ``release/`` and ``internal/``
  (files it lists may be missing or altered: a damaged set of ours is replaced), with no link
  or special file there. ``release/`` or ``internal/`` without a manifest, or with a file the
  manifest does not list, is someone else's: the write is refused before any work
  (:func:`check_destination`), naming what is there. Other entries of ``DIR`` do not make it
  "not ours": they are never opened, moved or deleted, so ``out/suite/`` beside the main
  job's set, or a user's notes, stay as they are.
* ``.tmp-X``, ``.commit-X``, ``.old-X`` (``X``: 12 random hex digits): only with the token of
  the writer that made them. Under the lock a writer first records a random token in
  ``DIR/.pending-X`` (fsynced), then creates ``.tmp-X`` with the same token in
  ``.tmp-X/.writer-token``. A ``.commit-X`` is rolled forward only when both tokens are
  present and equal; a ``.tmp-X`` or ``.old-X`` is deleted only when ``.pending-X`` holds a
  token and the folder's own token, if still there, is (a prefix of) it. Anything else of
  those names (a user's ``.tmp-data``, a planted ``.commit-*``) is neither completed nor
  deleted: :func:`verify` names it and a writer refuses the folder. A planted pair of files
  with matching tokens is again a forgery the tokens cannot tell.
* ``.lock`` (the lock file, empty) and ``.probe-X`` (:func:`check_destination`'s probe, only
  with the probe's own text).

Writing (:class:`Writer`) -- every intermediate state is either the previous complete set or
the new complete set, or a pending commit that any later writer (or :func:`read`) rolls
forward to the new complete set:

1. the new set is written into ``DIR/.tmp-<random>/`` (same folder, so same filesystem),
   ``MANIFEST.json`` last, everything fsynced; a kill here leaves the previous set intact
   and a ``.tmp-*`` folder (with its ``.pending-*`` token) that the next run deletes;
2. ``.tmp-X`` is renamed ``.commit-X``: from here on the commit is rolled forward;
3. ``release/`` then ``internal/`` are swapped into place, each in one step
   (``renameat2(RENAME_EXCHANGE)`` where the kernel has it, else two renames);
4. ``MANIFEST.json`` is moved into place with ``os.replace``: the new set is complete;
5. ``.commit-X`` (now holding the previous set) is renamed ``.old-X`` and deleted, then
   ``.pending-X``.

Between 2 and 4 ``verify`` refuses the folder (a ``.commit-*`` is present, and the manifest
would not match); roll-forward tells a new part from an old one by the new manifest's hashes.
Writers of one ``DIR`` are serialised by a lock on ``DIR/.lock`` (:mod:`filelock`: ``flock``
on POSIX, ``LockFileEx`` on Windows, both released by the operating system when a writer
dies), so a killed writer restarts at once.

Paths given to a command (:func:`check_args`, :func:`check_apart`): no output is, or lies
inside, one of the command's inputs, no input lies where the write would replace it
(``census aggregate D --out D`` would delete its own returns), and no output lies inside a
set's ``release/`` (it would ship LSOA-level information) or ``internal/``. ``report DIR --out
DIR`` is allowed: it carries ``internal/posterior.nc`` over into the new set.

Portable: no POSIX-only module. The one-step swap of step 3 is a Linux fast path
(:data:`_EXCHANGE_AVAILABLE`); elsewhere (or with it switched off) the two renames and the
roll-forward keep every state above. On Windows folders are not fsynced (they cannot be
opened; NTFS journals its metadata). File names in the manifest use ``/`` on every system.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import re
import secrets
import shutil
import stat
import sys
from collections.abc import Iterable
from pathlib import Path

from filelock import FileLock

from socialgradient.util.files import sha256_of

PARTS = ("release", "internal")
MANIFEST = "MANIFEST.json"
FORMAT = "socialgradient-output-set/1"
LOCK = ".lock"
PROBE = ".probe-"  # check_destination's write probe (deleted at once; a killed one is a leftover)
PENDING = ".pending-"  # DIR/.pending-X: the token of the writer of .tmp-X / .commit-X / .old-X
TOKEN = ".writer-token"  # the same token inside that folder
README = "internal/README.txt"
_PROBE_TEXT = b"socialgradient: can this folder be written?\n"
_TOKEN_HEAD = b"socialgradient output-set writer "
_TOKEN = re.compile(rb"socialgradient output-set writer [0-9a-f]{32}\n")
_KEY = re.compile(r"[0-9a-f]{12}")
_WRITER_FOLDERS = (".tmp-", ".commit-", ".old-")
# Windows: folders cannot be opened for fsync, and fsync needs a file opened for writing.
_WINDOWS = os.name == "nt"
# Linux's renameat2(RENAME_EXCHANGE) for step 3; elsewhere (or False) the two renames.
_EXCHANGE_AVAILABLE = sys.platform.startswith("linux")
INTERNAL_README = """NOT FOR RELEASE

This folder holds LSOA-level information: the full posterior tree (posterior.nc, whose
observed data, constant data and pointwise log-likelihood each reveal LSOA counts, codes and
incomes) and the posterior predictive checks with unprotected observed values (ppc_full.json:
totals by deprivation decile and LA, the largest single-LSOA count). Keep it inside the secure
environment.

What may be published is in ../release/, built only from numbers that passed the disclosure
gate. `socialgradient report DIR --out DIR` rebuilds it from this folder (e.g. under a
stricter rule).
"""


class OutputSetError(ValueError):
    """An output folder that cannot be written, or is not a complete, intact output set."""


# -- destination ------------------------------------------------------------------------


def check_destination(out: str | Path) -> Path:
    """Check, before any work, that ``out`` can hold an output set; return it as a Path.

    Refused with :class:`OutputSetError`: ``out`` (or a folder on its way) is a file, or the
    nearest existing folder is not writable, or a probe fails: the folders up to ``out`` are
    created and a file there is created, written, fsynced and deleted (``os.access`` is not
    enough: root passes it on read-only mounts and under ``/proc``). The probe leaves no
    trace: its file and the folders it created are removed again, whatever the outcome.

    Refused too, before anything is written, where the write would replace or delete what
    socialgradient did not put there (:func:`foreign`: ``release/``, ``internal/`` or
    ``MANIFEST.json`` that are not an output set of ours, ``.tmp-*``/``.commit-*``/``.old-*``
    without our writer's token, a ``.lock`` that is not our empty lock file), or where ``out``
    lies inside an output set's ``release/`` or ``internal/``.
    """
    out = Path(out)
    probe = out
    while not probe.exists():
        if probe.is_symlink():
            raise OutputSetError(f"--out {out}: {probe} is a broken link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is" if probe == out else f"lies under {probe}, which is"
        raise OutputSetError(f"--out {out} {what} a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputSetError(f"--out {out}: cannot write to {probe} (permission denied)")
    inside = _inside_a_set(out)
    if inside:
        raise OutputSetError(f"--out {out} lies inside {inside}: an output set never goes there")
    _refuse_foreign(out)
    _probe_write(out, probe)
    return out


def _refuse_foreign(out: Path) -> None:
    found = foreign(out)
    if found:
        raise OutputSetError(
            f"--out {out} holds what socialgradient did not write there, which an output "
            f"set's write would replace or delete: {'; '.join(found)}. Nothing was changed: "
            "choose an empty or new folder, or move these away"
        )


def _probe_write(out: Path, existing: Path) -> None:
    """Create the folders from ``existing`` down to ``out`` and a file in ``out`` (written,
    fsynced), then remove all of them; :class:`OutputSetError` naming the OS error if any
    step fails."""
    missing = []
    folder = out
    while folder != existing and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    created: list[Path] = []
    name = out / f"{PROBE}{secrets.token_hex(6)}"
    made = False
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                if not folder.is_dir():
                    raise
            else:
                created.append(folder)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(name, flags, 0o644)
        made = True
        try:
            os.write(fd, _PROBE_TEXT)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise OutputSetError(f"--out {out}: cannot write there: {err}") from None
    finally:
        if made:
            with contextlib.suppress(OSError):
                name.unlink(missing_ok=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()


def foreign(out: str | Path) -> list[str]:
    """What in ``out`` an output set's write would replace or delete although socialgradient
    did not write it (the module docstring says what is ours), one line each; [] for an
    absent or empty folder, or one holding only an output set of ours, leftovers of our
    writer and entries a write never touches (``out/suite/``, a user's notes)."""
    out = Path(out)
    if not out.is_dir():
        return []
    found, mid_commit = [], False
    try:
        names = sorted(os.listdir(out))
    except OSError as err:
        return [f"cannot list the folder ({err})"]
    for name in names:
        path = out / name
        if name.startswith(_WRITER_FOLDERS):
            exact = name.startswith(".commit-")
            if _ours(out, path, exact=exact):
                mid_commit |= exact
            else:
                found.append(
                    f"{name} (not left by socialgradient's writer: no token matching {PENDING}*)"
                )
        elif name == LOCK:
            st = _lstat(path)
            if st is not None and not stat.S_ISREG(st.st_mode):
                found.append(f"{LOCK} (a link or not a file; socialgradient's lock is a file)")
            elif st is not None and st.st_size:
                found.append(f"{LOCK} ({st.st_size} bytes; socialgradient's lock file is empty)")
    here = [n for n in (*PARTS, MANIFEST) if _lstat(out / n) is not None]
    if here and not mid_commit:  # a pending commit of ours: the writer checks after recovery
        found += _not_a_set_of_ours(out, here)
    return found


def _not_a_set_of_ours(out: Path, here: list[str]) -> list[str]:
    what = ", ".join(f"{n}/" if n in PARTS else n for n in here)
    manifest, problems = _manifest_of(out)
    if manifest is None:
        return [f"{what} with {problems[0]}: not an output set of socialgradient"]
    files, _, problems = _walk_parts(out)
    unlisted = sorted(set(files) - set(manifest["files"]))
    if unlisted:
        shown = ", ".join(unlisted[:8]) + (
            f" and {len(unlisted) - 8} more" if len(unlisted) > 8 else ""
        )
        problems.append(f"file(s) its {MANIFEST} does not list: {shown}")
    return [f"{what}: {p}" for p in problems]


def _inside_a_set(path: str | Path, out: str | Path | None = None) -> str | None:
    """The part (``X/release``, ``X/internal``, a writer's folder of ``X``) of an output set
    ``X`` that ``path`` is or lies in (``X`` holds a manifest or a pending commit, or is
    ``out``); None where there is none."""
    path = _resolved(path)
    top = _resolved(out) if out is not None else None
    for folder in (path, *path.parents):
        name, parent = folder.name, folder.parent
        if (name in PARTS or name.startswith(_WRITER_FOLDERS)) and (
            parent == top or _lstat(parent / MANIFEST) is not None or pending(parent)
        ):
            return str(folder)
    return None


# -- paths given to a command -----------------------------------------------------------


def _resolved(path: str | Path) -> Path:
    """``path`` made absolute with every link followed (as far as it exists), and in the
    case the filesystem compares names in (Windows)."""
    return Path(os.path.normcase(Path(path).resolve()))


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _replaced_part(path: Path, out: Path) -> str | None:
    """The entry of ``out`` that an output set's write replaces and that holds ``path``."""
    if not _within(path, out) or path == out:
        return None
    first = path.relative_to(out).parts[0]
    if first in (*PARTS, MANIFEST) or first.startswith(_WRITER_FOLDERS):
        return first
    return None


def check_apart(
    out: str | Path,
    *,
    inputs: dict[str, Iterable[str | Path]] | None = None,
    others: dict[str, str | Path] | None = None,
    carried: Iterable[str] = (),
    nested: bool = False,
) -> None:
    """Refuse (:class:`OutputSetError`) paths that would make a command destroy its input or
    leak: ``out`` equal to, or inside, an input; an input where the write replaces it
    (``out/release``, ``out/internal``, ``out/MANIFEST.json``); another output (``others``:
    ``--report`` FILE, ``--figures`` DIR) equal to an input, or inside ``out``'s set, or inside
    any output set's ``release/`` (it would ship LSOA-level information) or ``internal/``.

    ``inputs`` and ``others`` map a flag's name (for the message) to its path(s); every path
    is resolved (links followed) before it is compared. ``carried``: names of inputs the
    command copies into its new set before the commit (``report``'s fit: ``report DIR --out
    DIR`` rebuilds a set in place), which may be ``out`` or lie where the write replaces.
    ``nested``: the command writes output sets in folders of ``out`` (``suite``: OUT/<spec>),
    so an input in such a set's ``release/`` or ``internal/`` is refused too.
    """
    o = _resolved(out)
    carried = set(carried)
    ins = [(flag, Path(p), _resolved(p)) for flag, paths in (inputs or {}).items() for p in paths]
    for flag, given, i in ins:
        if o == i and flag not in carried:
            raise OutputSetError(
                f"--out {out} is also the input {flag} {given}: an output "
                "never replaces its input; choose another --out"
            )
        if o != i and _within(o, i):
            raise OutputSetError(
                f"--out {out} lies inside the input {flag} {given}: choose an --out outside it"
            )
        part = _replaced_part(i, o)
        inner = _inside_a_set(i) if nested else None
        if inner and Path(inner).parent.parent == o:
            part = Path(inner).relative_to(o).as_posix()
        if part and flag not in carried:
            raise OutputSetError(
                f"the input {flag} {given} lies in {part} of --out {out}, "
                "which the write replaces: choose another --out, or move "
                "the input out of it first"
            )
    for flag, path in (others or {}).items():
        p = _resolved(path)
        for iflag, given, i in ins:
            if p == i:
                raise OutputSetError(f"{flag} {path} is also the input {iflag} {given}")
        if p == o:
            raise OutputSetError(f"{flag} {path} is --out itself: name a path outside it")
        part = _replaced_part(p, o)
        inside = _inside_a_set(p, out) or (str(o / part) if part else None)
        if inside:
            why = (
                "release/ is published, and this holds LSOA-level information"
                if Path(inside).name == "release"
                else "it would change that output set"
            )
            raise OutputSetError(
                f"{flag} {path} lies inside {inside}: {why}; name a path "
                "outside any output set's release/ and internal/"
            )


#: argparse destinations that name an output besides --out
_OUTPUT_FLAGS = ("report", "figures")
#: argparse destinations that name an input although they are strings, not Paths
_STR_INPUTS = ("la_data",)


def check_args(args) -> None:
    """:func:`check_apart` for a command's parsed arguments (an ``argparse.Namespace``):
    ``args.out`` against every other path the command was given (``Path`` values, or lists
    of them, and ``--la-data``) as inputs, and ``--report``/``--figures`` as outputs.
    ``report``'s fit is carried (``report DIR --out DIR`` rebuilds in place)."""
    out = getattr(args, "out", None)
    if out is None:
        return
    inputs, others = {}, {}
    for key, value in vars(args).items():
        flag = "--" + key.replace("_", "-")
        if key == "out" or value is None:
            continue
        if key in _OUTPUT_FLAGS:
            others[flag] = value
            continue
        values = value if isinstance(value, list | tuple) else [value]
        paths = [
            v
            for v in values
            if isinstance(v, Path) or (key in _STR_INPUTS and isinstance(v, str) and v)
        ]
        if paths:
            inputs[key if key in ("fit", "data", "returns", "extract", "shared_dir") else flag] = (
                paths
            )
    command = getattr(args, "command", None)
    check_apart(
        out,
        inputs=inputs,
        others=others,
        carried=("fit",) if command == "report" else (),
        nested=command == "suite",
    )


# -- reading ----------------------------------------------------------------------------


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _kind(mode: int) -> str:
    for test, what in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return what
    return "not a regular file"


def _walk(root: Path, part: str) -> tuple[dict[str, os.stat_result], set[str], list[str]]:
    """Every regular file under ``root/part`` (``part/...`` -> its ``lstat``), walked with
    ``os.scandir`` without following a link; the paths that are links or special files and a
    line for each."""
    files: dict[str, os.stat_result] = {}
    bad: set[str] = set()
    problems: list[str] = []
    st = _lstat(root / part)
    if st is None:
        return files, bad, problems
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        what = "a link" if stat.S_ISLNK(st.st_mode) else "not a folder"
        return files, {part}, [f"{part}/ is {what}"]
    stack = [root / part]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = Path(entry.path).relative_to(root).as_posix()
                junction = getattr(entry, "is_junction", lambda: False)()
                if entry.is_symlink() or junction:
                    bad.add(rel)
                    problems.append(
                        f"{rel} is a link (links are never part of a set: copied "
                        "with cp -rL or tar -h, a link ships what it points to)"
                    )
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    st = os.lstat(entry.path)  # full lstat: inode and links on Windows too
                    if stat.S_ISREG(st.st_mode):
                        files[rel] = st
                    else:
                        bad.add(rel)
                        problems.append(f"{rel} is {_kind(st.st_mode)}, not a regular file")
    return files, bad, problems


def _walk_parts(root: Path) -> tuple[dict[str, os.stat_result], set[str], list[str]]:
    """:func:`_walk` of ``release/`` and ``internal/``, and any file of ``release/`` that is
    the same file (inode) as one of ``internal/``."""
    files: dict[str, os.stat_result] = {}
    bad: set[str] = set()
    problems: list[str] = []
    for part in PARTS:
        f, b, p = _walk(root, part)
        files.update(f)
        bad |= b
        problems += p
    inodes = {
        (st.st_dev, st.st_ino): rel
        for rel, st in files.items()
        if rel.startswith("internal/") and st.st_ino
    }
    for rel, st in sorted(files.items()):
        twin = inodes.get((st.st_dev, st.st_ino)) if rel.startswith("release/") else None
        if twin is not None and st.st_ino:
            problems.append(f"{rel} is the same file as {twin} (a hard link)")
    return files, bad, problems


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _Duplicate(sorted({k for k in keys if keys.count(k) > 1}))
    return dict(pairs)


def _entry_problem(rel: object, entry: object) -> str | None:
    """Why a manifest's file entry is not one a writer of ours writes (None if it is)."""
    if not isinstance(rel, str):
        return f"{rel!r} is not a path"
    if "\\" in rel or "\0" in rel or rel.startswith("/") or re.match(r"[A-Za-z]:", rel):
        return f"{rel!r} is not a relative path with /"
    parts = rel.split("/")
    if parts[0] not in PARTS or len(parts) < 2:
        return f"{rel!r} lies outside release/ and internal/"
    if any(p in ("", ".", "..") for p in parts):
        return f"{rel!r} holds an empty, . or .. step"
    if not isinstance(entry, dict):
        return f"{rel!r} has no hash and size"
    sha, size = entry.get("sha256"), entry.get("bytes")
    if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        return f"{rel!r} has no SHA-256"
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return f"{rel!r} has no size"
    return None


def _manifest_problems(path: Path) -> tuple[dict | None, list[str]]:
    """The manifest at ``path`` and what is wrong with it (None and the reasons where it
    cannot be used at all)."""
    st = _lstat(path)
    if st is None:
        return None, [f"no {MANIFEST}"]
    if not stat.S_ISREG(st.st_mode):
        return None, [f"{MANIFEST} is a link or not a file"]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates)
    except _Duplicate as err:
        return None, [f"a damaged {MANIFEST} (names given twice: {err.args[0]})"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, [f"a damaged {MANIFEST} ({err})"]
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None, [f"a {MANIFEST} that is not a socialgradient output-set manifest"]
    files = manifest.get("files")
    if not isinstance(files, dict):
        return None, [f"a damaged {MANIFEST} (no file list)"]
    problems = [
        f"{MANIFEST}: {why}" for rel, entry in files.items() if (why := _entry_problem(rel, entry))
    ]
    if README not in files:
        problems.append(f"{MANIFEST} lists no {README} (every set has one)")
    if not any(rel.startswith("release/") for rel in files if isinstance(rel, str)):
        problems.append(f"{MANIFEST} lists nothing in release/ (every set has a file there)")
    return (None if problems else manifest), problems


def _manifest_of(root: Path) -> tuple[dict | None, list[str]]:
    return _manifest_problems(root / MANIFEST)


def _load_manifest(path: Path) -> dict:
    manifest, problems = _manifest_problems(path)
    if manifest is None:
        raise OutputSetError(f"{path}: {'; '.join(problems)}")
    return manifest


def _mismatch(root: Path, manifest: dict, parts=PARTS) -> str | None:
    """Why the files under ``root`` do not match ``manifest`` (None if they do)."""
    problems = _differences(root, manifest, parts)
    return problems[0] if problems else None


def _differences(root: Path, manifest: dict, parts=PARTS, walked: tuple | None = None) -> list[str]:
    listed = {k: v for k, v in manifest["files"].items() if k.split("/", 1)[0] in parts}
    if walked is None:
        files, bad, problems = {}, set(), []
        for part in parts:
            f, b, p = _walk(root, part)
            files.update(f)
            bad |= b
            problems += p
    else:
        files, bad, problems = walked
        problems = list(problems)
    missing = sorted(set(listed) - set(files) - bad)
    unlisted = sorted(set(files) - set(listed))
    if missing or unlisted:
        problems.append(f"files differ from the manifest (missing {missing}, unlisted {unlisted})")
    for rel in sorted(set(listed) & set(files)):
        entry = listed[rel]
        if files[rel].st_size != entry["bytes"] or sha256_of(root / rel) != entry["sha256"]:
            problems.append(f"{rel} does not match its SHA-256 in the manifest")
    return problems


def pending(out: str | Path) -> list[Path]:
    """Commits begun but not finished in ``out`` (``.commit-*`` folders), ours or not."""
    out = Path(out)
    return sorted(out.glob(".commit-*")) if out.is_dir() else []


def check(out: str | Path) -> tuple[dict | None, list[str]]:
    """Every reason ``out`` is not a whole, clean output set (none: ``[]``) and its manifest.

    Read-only: nothing is rolled forward or deleted (:func:`read` recovers first)."""
    out = Path(out)
    if not out.is_dir():
        return None, ["not a folder: no output set here"]
    problems = []
    for commit in pending(out):
        key = commit.name.removeprefix(".commit-")
        if _ours(out, commit, exact=True):
            problems.append(
                f"an interrupted or running write is pending ({commit.name}); "
                "rerun the command to complete it"
            )
        else:
            problems.append(
                f"{commit.name} was not left by socialgradient's writer (no token "
                f"matching {PENDING}{key}): refused, neither completed nor "
                "deleted; remove it if it is not yours"
            )
    manifest, why = _manifest_of(out)
    problems += [f"not a complete output set: {w}" if w == f"no {MANIFEST}" else w for w in why]
    walked = _walk_parts(out)
    if manifest is None:
        problems += walked[2]
        return None, problems
    problems += _differences(out, manifest, walked=walked)
    if README in walked[0] and not (out / README).read_bytes().startswith(b"NOT FOR RELEASE"):
        problems.append(f"{README} does not begin with NOT FOR RELEASE")
    return manifest, problems


def verify(out: str | Path) -> dict:
    """The manifest of the complete output set in ``out``; :class:`OutputSetError` naming
    every problem (:func:`check`) otherwise."""
    out = Path(out)
    manifest, problems = check(out)
    if problems:
        raise OutputSetError(f"{out}: incomplete or altered output set: {'; '.join(problems)}")
    return manifest


def summary(out: str | Path, manifest: dict) -> str:
    """A few lines on a verified set, for ``socialgradient verify``."""
    files = manifest["files"]
    count = {part: sum(r.startswith(part + "/") for r in files) for part in PARTS}
    size = sum(e["bytes"] for e in files.values())
    return (
        f"{out}: a whole, clean output set ({manifest.get('command', 'a command')}, "
        f"{manifest.get('created', '?')})\n"
        f"  {len(files)} files ({count['release']} in release/, {count['internal']} in "
        f"internal/), {size:,} bytes; every SHA-256 checked\n"
        "  no link, FIFO, device or socket; no unlisted or missing file; no pending commit"
    )


def read(out: str | Path) -> dict:
    """Recover ``out`` where it can be written (finish a pending commit of ours, clear our
    leftovers), then :func:`verify` it."""
    out = Path(out)
    if out.is_dir() and os.access(out, os.W_OK) and (pending(out) or _leftovers(out)):
        with _locked(out):
            recover(out)
    return verify(out)


def table_of(path: str | Path) -> Path:
    """The input table that ``path`` names: ``path`` itself, or where ``path`` is an output
    set written by ``data build`` or ``census aggregate|extract``, its table
    (``internal/neighbourhoods.*``, named by the manifest's ``table``) once the set is
    recovered and verified (:func:`read`)."""
    path = Path(path)
    if not (path.is_dir() and ((path / MANIFEST).exists() or pending(path))):
        return path
    manifest = read(path)
    if not manifest.get("table"):
        raise OutputSetError(
            f"{path}: this output set holds no input table (written by "
            f"{manifest.get('command', 'another command')})"
        )
    return path / manifest["table"]


def internal_of(path: str | Path) -> Path:
    """``path/internal`` where ``path`` is an output set (recovered and verified), else
    ``path``: the record-level inputs that ``census write`` puts in its set's internal/."""
    path = Path(path)
    if path.is_dir() and ((path / MANIFEST).exists() or pending(path)):
        read(path)
        return path / "internal"
    return path


# -- writing ----------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(out: Path):
    """Hold ``out/.lock`` (blocking): ``flock`` on POSIX, ``LockFileEx`` on Windows, through
    :mod:`filelock`; the OS releases either when the holder dies. No soft (marker-file)
    fallback, which a killed writer would leave held; the file stays, as before."""
    out.mkdir(parents=True, exist_ok=True)
    try:  # filelock >= 4: say so explicitly (3.x has no soft fallback and keeps the file on POSIX)
        lock = FileLock(out / LOCK, mode=0o644, fallback_to_soft=False, preserve_lock_file=True)
    except TypeError:
        lock = FileLock(out / LOCK, mode=0o644)
    with lock:
        yield


def _read_small(path: Path, limit: int = 256) -> bytes | None:
    """The bytes of ``path`` if it is a regular file (not a link) of at most ``limit``."""
    st = _lstat(path)
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > limit:
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def _token(out: Path, key: str) -> bytes | None:
    """The whole token in ``out/.pending-KEY``, or None."""
    data = _read_small(out / f"{PENDING}{key}")
    return data if data is not None and _TOKEN.fullmatch(data) else None


def _token_prefix(data: bytes) -> bool:
    """``data`` is a token as a killed write may leave it: the whole token or its start."""
    full = _TOKEN_HEAD + b"0" * 32 + b"\n"
    if len(data) > len(full) or data[: len(_TOKEN_HEAD)] != _TOKEN_HEAD[: len(data)]:
        return False
    rest = data[len(_TOKEN_HEAD) :]
    return all(c in b"0123456789abcdef" for c in rest[:32]) and rest[32:] in (b"", b"\n")


def _ours(out: Path, folder: Path, exact: bool) -> bool:
    """``folder`` (``.tmp-X``, ``.commit-X``, ``.old-X`` in ``out``) was made by our writer:
    a real folder, ``out/.pending-X`` holds a whole token, and the folder's own token is the
    same (``exact``: a commit, whose token is always whole) or, where a kill cut the making
    or the deleting of the folder short, missing or the start of it."""
    prefix = next((p for p in _WRITER_FOLDERS if folder.name.startswith(p)), None)
    key = folder.name[len(prefix) :] if prefix else ""
    if not _KEY.fullmatch(key):
        return False
    st = _lstat(folder)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return False
    token = _token(out, key)
    if token is None:
        return False
    if _lstat(folder / TOKEN) is None:
        return not exact
    mine = _read_small(folder / TOKEN)
    if mine is None:
        return False
    return mine == token if exact else token.startswith(mine)


def _leftovers(out: Path) -> list[Path]:
    """What our writer (or probe) left in ``out`` and only it: ``.tmp-*``/``.old-*`` with our
    token, ``.pending-*`` tokens whose folder is gone, killed probes."""
    found = [p for p in [*out.glob(".tmp-*"), *out.glob(".old-*")] if _ours(out, p, False)]
    for p in out.glob(PENDING + "*"):
        key = p.name.removeprefix(PENDING)
        if (
            _KEY.fullmatch(key)
            and not any(_lstat(out / (f + key)) for f in _WRITER_FOLDERS)
            and (data := _read_small(p)) is not None
            and _token_prefix(data)
        ):
            found.append(p)
    for p in out.glob(PROBE + "*"):
        data = _read_small(p)
        if (
            _KEY.fullmatch(p.name.removeprefix(PROBE))
            and data is not None
            and _PROBE_TEXT.startswith(data)
        ):
            found.append(p)
    return sorted(found)


def _fsync(path: Path) -> None:
    """fsync a file, or a folder's entries (POSIX; Windows cannot open folders)."""
    if path.is_dir():
        if _WINDOWS:
            return
        flags = os.O_RDONLY
    else:
        flags = (os.O_RDWR | getattr(os, "O_BINARY", 0)) if _WINDOWS else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (never an existing one), write ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2``); False where unsupported
    or switched off (:data:`_EXCHANGE_AVAILABLE`)."""
    if not _EXCHANGE_AVAILABLE:
        return False
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(a))


def _swap_in(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``; the previous ``target`` ends up under ``new``'s folder.

    Without the one-step exchange: ``target`` is renamed to ``new.old`` beside ``new``, then
    ``new`` to ``target``. Killed between the two, ``target`` is missing and ``new`` is still
    in the commit: roll-forward sees the part does not match and renames ``new`` in."""
    if _lstat(target) is None:
        os.rename(new, target)
    elif not _exchange(new, target):
        os.rename(target, new.with_name(new.name + ".old"))
        os.rename(new, target)


def _remove_writer_folder(out: Path, folder: Path) -> None:
    """Delete our ``folder`` (``.old-X``, ``.tmp-X``), then its token ``.pending-X`` once the
    folder is gone (a folder left half-deleted keeps its token, so it stays ours)."""
    key = folder.name.split("-", 1)[1]
    shutil.rmtree(folder, ignore_errors=True)
    if _lstat(folder) is None:
        (out / f"{PENDING}{key}").unlink(missing_ok=True)


def _roll_forward(out: Path, commit: Path, check: bool) -> None:
    manifest_path = commit / MANIFEST
    if manifest_path.exists():
        manifest = _load_manifest(manifest_path) if check else None
        for part in PARTS:
            if check and (out / part).is_dir() and _mismatch(out, manifest, (part,)) is None:
                continue  # already swapped in before the interruption
            if not (commit / part).is_dir():
                raise OutputSetError(f"{out}: cannot complete {commit.name}: {part}/ is missing")
            _swap_in(commit / part, out / part)
        _fsync(out)
        os.replace(manifest_path, out / MANIFEST)
        _fsync(out)
    old = out / (".old-" + commit.name.removeprefix(".commit-"))
    os.rename(commit, old)
    _remove_writer_folder(out, old)


def recover(out: str | Path) -> list[str]:
    """Finish pending commits of ours and delete our leftovers (``.tmp-*`` / ``.old-*`` with
    our token, stale ``.pending-*`` tokens, a killed probe's ``.probe-*`` file) in ``out``.

    A ``.commit-*`` without our writer's token is refused (:class:`OutputSetError`): neither
    completed nor deleted, and nothing else is done. Anything else not ours is left alone.
    Call with the lock held (:class:`Writer` does). Returns what was done, for messages.
    """
    out = Path(out)
    done = []
    commits = pending(out)
    planted = [c.name for c in commits if not _ours(out, c, exact=True)]
    if planted:
        raise OutputSetError(
            f"{out}: {', '.join(planted)} not left by socialgradient's writer "
            f"(no token matching {PENDING}*): refused, neither completed nor "
            "deleted; remove it if it is not yours"
        )
    for commit in sorted(commits, key=lambda p: p.stat().st_mtime):
        _roll_forward(out, commit, check=True)
        done.append(f"completed the interrupted write {commit.name}")
    for stray in _leftovers(out):
        if stray.name.startswith(_WRITER_FOLDERS):
            _remove_writer_folder(out, stray)
        else:  # a probe may be deleted by its own process meanwhile
            stray.unlink(missing_ok=True)
        done.append(f"removed {stray.name}")
    return done


class Writer:
    """Write one output set into ``out``, whole or not at all.

    >>> with Writer(out, spec_hash=..., data_hash=...) as w:
    ...     (w.release / "summary.json").write_text(...)
    ...     (w.internal / "posterior.nc") ...
    ...     w.commit()          # without it (or on an error) nothing changes in ``out``

    ``meta`` (spec_hash, data_hash, command, ...) goes into the manifest. ``readme``: the
    text of ``internal/README.txt`` (default: a fit's, :data:`INTERNAL_README`); it must say
    NOT FOR RELEASE. After the block ``path(rel)`` gives a file's final path.

    ``out`` must be absent, empty or hold an output set of ours (:func:`foreign`: checked
    before any work, and again under the lock after recovery); a set holds at least one file
    in ``release/``, and no link or special file anywhere (checked at the commit).
    """

    def __init__(self, out: str | Path, readme: str = INTERNAL_README, **meta):
        if not readme.startswith("NOT FOR RELEASE"):
            raise ValueError("internal/README.txt must begin with NOT FOR RELEASE")
        self.out = check_destination(out)
        self.readme = readme
        self.meta = meta
        self.recovered: list[str] = []
        self._lock = None
        self._tmp: Path | None = None
        self._key = ""
        self.committed = False

    def __enter__(self) -> Writer:
        self._lock = _locked(self.out)
        self._lock.__enter__()
        try:
            self.recovered = recover(self.out)
            _refuse_foreign(self.out)
            self._key = secrets.token_hex(6)
            token = _TOKEN_HEAD + secrets.token_hex(16).encode() + b"\n"
            _write_new(self.out / f"{PENDING}{self._key}", token)  # first: the folder is ours
            _fsync(self.out)
            self._tmp = self.out / f".tmp-{self._key}"
            self._tmp.mkdir()
            _write_new(self._tmp / TOKEN, token)
            for part in PARTS:
                (self._tmp / part).mkdir()
            (self._tmp / "internal" / "README.txt").write_text(
                self.readme, encoding="utf-8", newline="\n"
            )
        except BaseException:
            self._cleanup()
            raise
        return self

    @property
    def release(self) -> Path:
        return self._tmp / "release"

    @property
    def internal(self) -> Path:
        return self._tmp / "internal"

    def path(self, rel: str) -> Path:
        """Final path of the set's file ``rel`` (e.g. ``release/summary.json``)."""
        return self.out / rel

    def final(self, path: str | Path) -> Path:
        """Final path of ``path``, a file written under :attr:`release` or :attr:`internal`."""
        return self.out / Path(path).relative_to(self._tmp)

    def commit(self) -> dict:
        """Write the manifest and swap the set into place; returns the manifest."""
        found, _, problems = _walk_parts(self._tmp)
        if problems:
            raise OutputSetError(f"{self.out}: not committed: {'; '.join(problems)}")
        if not any(rel.startswith("release/") for rel in found):
            raise OutputSetError(
                f"{self.out}: not committed: nothing in release/ (a set holds "
                "at least one file there, e.g. its disclosure log)"
            )
        files = {}
        for part in PARTS:
            for rel in sorted(r for r in found if r.startswith(part + "/")):
                path = self._tmp / rel
                _fsync(path)
                files[rel] = {"sha256": sha256_of(path), "bytes": path.stat().st_size}
            _fsync(self._tmp / part)
        manifest = {
            "format": FORMAT,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **self.meta,
            "files": files,
        }
        (self._tmp / MANIFEST).write_text(
            json.dumps(manifest, indent=1) + "\n", encoding="utf-8", newline="\n"
        )
        _fsync(self._tmp / MANIFEST)
        _fsync(self._tmp)
        commit = self._tmp.with_name(".commit-" + self._key)
        os.rename(self._tmp, commit)
        self._tmp = commit
        _roll_forward(self.out, commit, check=False)
        self.committed = True
        return manifest

    def _cleanup(self) -> None:
        try:
            if self._tmp is not None and self._tmp.name.startswith(".tmp-"):
                _remove_writer_folder(self.out, self._tmp)
            elif self._tmp is None and self._key:  # killed between the token and the folder
                (self.out / f"{PENDING}{self._key}").unlink(missing_ok=True)
        finally:
            if self._lock is not None:
                self._lock.__exit__(None, None, None)
                self._lock = None

    def __exit__(self, *exc) -> None:
        self._cleanup()
