"""Whether a folder holds a whole, intact output set: every problem named, or its manifest.

A reader trusts ``DIR`` only if :func:`verify` passes (:func:`check` lists every problem;
``socialgradient verify DIR`` prints them): the manifest parses, lists only files under
``release/`` and ``internal/`` (no ``..``, no absolute path, no name twice), holds
``internal/README.txt`` (NOT FOR RELEASE) and at least one file of ``release/``; the files on
disk there are exactly those listed, each with its listed size and hash; nothing there is a
link, a FIFO, a device or a socket (walked with ``os.scandir``/``os.lstat``, never following a
link), and no file of ``release/`` is the same file (inode) as one of ``internal/``; and no
commit is pending. What a manifest cannot say: who wrote it. Anyone who can write ``DIR`` can
write files and a manifest recomputed to match them; without a secret the checks above tell
an intact set from an accident or a careless edit, not from a deliberate forgery. Hard links
to files outside the set are allowed (backups such as ``rsync --link-dest`` make them); the
content is what the hashes check.
"""

from __future__ import annotations

from pathlib import Path

from socialgradient.util._outputs_manifest import (
    MANIFEST,
    PARTS,
    README,
    OutputSetError,
    _differences,
    _manifest_of,
    _walk_parts,
)
from socialgradient.util._outputs_owner import PENDING, _ours, pending


def check(out: str | Path) -> tuple[dict | None, list[str]]:
    """Return ``out``'s manifest and every reason it is not a whole, clean output set.

    No reason: ``[]``. Read-only: nothing is rolled forward or deleted
    (:func:`~socialgradient.util.outputs.read` recovers first).
    """
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
    """Return the manifest of the complete output set in ``out``.

    :class:`OutputSetError` naming every problem (:func:`check`) otherwise.
    """
    out = Path(out)
    manifest, problems = check(out)
    if problems or manifest is None:  # None: with problems
        raise OutputSetError(f"{out}: incomplete or altered output set: {'; '.join(problems)}")
    return manifest


def summary(out: str | Path, manifest: dict) -> str:
    """Return a few lines on a verified set, for ``socialgradient verify``."""
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
