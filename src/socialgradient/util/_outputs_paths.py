"""Where a command may write an output set: its destination probed, its paths kept apart.

The destination (:func:`check_destination`): checked before any work, writable (probed) and
holding nothing a write would replace that socialgradient did not put there
(:func:`~socialgradient.util._outputs_owner.foreign`).

Paths given to a command (:func:`check_args`, :func:`check_apart`): no output is, or lies
inside, one of the command's inputs, no input lies where the write would replace it
(``census aggregate D --out D`` would delete its own returns), and no output lies inside a
set's ``release/`` (it would ship LSOA-level information) or ``internal/``. ``report DIR --out
DIR`` is allowed: it carries ``internal/posterior.nc`` over into the new set.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from socialgradient.util._outputs_manifest import MANIFEST, PARTS, OutputSetError, _lstat
from socialgradient.util._outputs_owner import (
    _PROBE_TEXT,
    _WRITER_FOLDERS,
    PROBE,
    foreign,
    pending,
)


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
    """Create the folders from ``existing`` down to ``out`` and a file in ``out``, then remove them.

    The file is written and fsynced; :class:`OutputSetError` naming the OS error if any step
    fails.
    """
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


def _inside_a_set(path: str | Path, out: str | Path | None = None) -> str | None:
    """Return the part of an output set ``X`` that ``path`` is or lies in, or None.

    The part: ``X/release``, ``X/internal``, a writer's folder of ``X`` (``X`` holds a
    manifest or a pending commit, or is ``out``).
    """
    path = _resolved(path)
    top = _resolved(out) if out is not None else None
    for folder in (path, *path.parents):
        name, parent = folder.name, folder.parent
        if (name in PARTS or name.startswith(_WRITER_FOLDERS)) and (
            parent == top or _lstat(parent / MANIFEST) is not None or pending(parent)
        ):
            return str(folder)
    return None


def _resolved(path: str | Path) -> Path:
    """Return ``path`` made absolute with every link followed (as far as it exists).

    And in the case the filesystem compares names in (Windows).
    """
    return Path(os.path.normcase(Path(path).resolve()))


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _replaced_part(path: Path, out: Path) -> str | None:
    """Return the entry of ``out`` that an output set's write replaces and that holds ``path``."""
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
    """Refuse (:class:`OutputSetError`) paths that would make a command destroy its input or leak.

    Refused: ``out`` equal to, or inside, an input; an input where the write replaces it
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
    """Run :func:`check_apart` for a command's parsed arguments (an ``argparse.Namespace``).

    ``args.out`` against every other path the command was given (``Path`` values, or lists
    of them, and ``--la-data``) as inputs, and ``--report``/``--figures`` as outputs.
    ``report``'s fit is carried (``report DIR --out DIR`` rebuilds in place).
    """
    out = getattr(args, "out", None)
    if out is None:
        return
    inputs: dict[str, Iterable[str | Path]] = {}
    others: dict[str, str | Path] = {}
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
