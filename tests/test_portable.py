"""Portability: nothing POSIX-only on the way to ``socialgradient.api``, output sets written
the way Windows would write them, text files the same bytes on every system, ``--out``
checked by a real write before any work.

What runs here, on Linux, and why that is the honest test:

* **Static**: an AST walk over ``src/socialgradient`` finds no import of a POSIX-only module
  (``fcntl``, ``termios``, ``pwd``, ``grp``, ``resource``, ...), no use of a POSIX-only
  ``os``/``signal`` name (``os.getuid``, ``os.fork``, ``os.O_DIRECTORY``, ``signal.SIGKILL``,
  ...) and no ``ctypes.CDLL(None)`` unless guarded (``sys.platform``/``os.name`` tests, a
  module switch such as ``outputs._EXCHANGE_AVAILABLE``, ``try: ... except ImportError``),
  and every text ``open``/``read_text``/``write_text`` names ``encoding=`` (and, writing,
  ``newline=``) and every ``to_csv`` names ``lineterminator=``.
* **Dynamic**, in a subprocess whose prelude makes socialgradient's own modules see the
  Windows standard library: ``import fcntl`` (and the other POSIX-only modules) raises
  ImportError when socialgradient imports it (``builtins.__import__`` and
  ``importlib.import_module`` look at the importer, so a cached module is refused too),
  ``ctypes.CDLL(None)`` raises TypeError as on Windows, the ``renameat2`` exchange is off
  (``outputs._EXCHANGE_AVAILABLE``) and the output set takes its Windows branch
  (``outputs._WINDOWS``: no folder fsync; files fsynced through a writable handle).
  Third-party code keeps ``fcntl``: filelock itself uses it on POSIX (on Windows it uses
  ``LockFileEx`` instead), and blocking it for filelock would only make filelock fall back to
  a marker file that a killed writer never releases, which is not what Windows does either.
  The Windows lock backend itself cannot run on Linux; what is tested is that the lock is a
  kernel lock (``UnixFileLock`` here) that a SIGKILLed holder releases.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from socialgradient import cli
from socialgradient.util import outputs
from test_outputs import LOOP, generation_of, write_set

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "socialgradient"
PYTHONPATH = os.pathsep.join(
    [str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
)

# -- static: no POSIX-only code, every text file's encoding and line endings named ---------

POSIX_ONLY_MODULES = {
    "fcntl",
    "termios",
    "pwd",
    "grp",
    "resource",
    "pty",
    "tty",
    "posix",
    "crypt",
    "syslog",
    "spwd",
    "nis",
    "_posixsubprocess",
}
POSIX_ONLY_NAMES = {
    "os": {
        "getuid",
        "geteuid",
        "getgid",
        "getegid",
        "getgroups",
        "setuid",
        "setgid",
        "fork",
        "forkpty",
        "wait3",
        "wait4",
        "WNOHANG",
        "killpg",
        "setsid",
        "getsid",
        "getpgid",
        "setpgid",
        "setpgrp",
        "getpgrp",
        "uname",
        "statvfs",
        "fstatvfs",
        "chown",
        "lchown",
        "fchown",
        "mkfifo",
        "mknod",
        "sched_getaffinity",
        "sched_setaffinity",
        "pathconf",
        "fpathconf",
        "sysconf",
        "getloadavg",
        "sync",
        "nice",
        "openpty",
        "ttyname",
        "O_DIRECTORY",
        "O_NOFOLLOW",
        "O_CLOEXEC",
        "O_NONBLOCK",
        "O_SYNC",
        "O_DSYNC",
        "posix_fadvise",
        "posix_fallocate",
        "pread",
        "pwrite",
        "fchmod",
        "fchdir",
    },
    "signal": {
        "SIGKILL",
        "SIGHUP",
        "SIGQUIT",
        "SIGUSR1",
        "SIGUSR2",
        "SIGALRM",
        "SIGCHLD",
        "SIGPIPE",
        "SIGSTOP",
        "SIGCONT",
        "SIGTSTP",
        "alarm",
        "setitimer",
        "pause",
        "pthread_kill",
        "siginterrupt",
    },
}
# a test naming the platform, or a module switch that is False where the feature is missing
GUARD = re.compile(r"sys\.platform|os\.name|platform\.system|hasattr\(|_WINDOWS|_AVAILABLE")
GUARD_ERRORS = {"ImportError", "ModuleNotFoundError", "AttributeError", "OSError", "TypeError"}


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _guarded(node: ast.AST, parents: dict) -> bool:
    """Under an ``if`` on the platform (or a platform switch), in a ``try`` that catches the
    error a missing feature raises, or after an early ``if <guard>: return`` of its function."""
    child = node
    while child in parents:
        up = parents[child]
        if isinstance(up, ast.If) and GUARD.search(ast.unparse(up.test)):
            return True
        if isinstance(up, ast.Try) and child in up.body:
            caught = {
                n.id if isinstance(n, ast.Name) else getattr(n, "attr", "")
                for h in up.handlers
                if h.type is not None
                for n in ast.walk(h.type)
                if isinstance(n, ast.Name | ast.Attribute)
            }
            if caught & GUARD_ERRORS:
                return True
        if isinstance(up, ast.FunctionDef | ast.AsyncFunctionDef) and child in up.body:
            for stmt in up.body[: up.body.index(child)]:
                if (
                    isinstance(stmt, ast.If)
                    and GUARD.search(ast.unparse(stmt.test))
                    and isinstance(stmt.body[-1], ast.Return | ast.Raise)
                ):
                    return True
        child = up
    return False


def posix_only_uses(tree: ast.AST) -> list[tuple[int, str]]:
    parents = _parents(tree)
    found = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Import):
            names = [a.name.partition(".")[0] for a in node.names]
            what = next((f"import {n}" for n in names if n in POSIX_ONLY_MODULES), None)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mod = node.module.partition(".")[0]
            if mod in POSIX_ONLY_MODULES:
                what = f"from {mod} import ..."
            elif mod in POSIX_ONLY_NAMES:
                bad = [a.name for a in node.names if a.name in POSIX_ONLY_NAMES[mod]]
                what = f"from {mod} import {bad[0]}" if bad else None
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.attr in POSIX_ONLY_NAMES.get(node.value.id, ())
        ):
            what = f"{node.value.id}.{node.attr}"
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func).endswith("CDLL")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value is None
        ):
            what = "ctypes.CDLL(None)"
        if what and not _guarded(node, parents):
            found.append((node.lineno, what))
    return sorted(found)


def _kw(call: ast.Call, name: str) -> bool:
    return any(k.arg == name for k in call.keywords)


def _mode(call: ast.Call, index: int, default: str) -> str | None:
    for k in call.keywords:
        if k.arg == "mode":
            return k.value.value if isinstance(k.value, ast.Constant) else None
    if len(call.args) > index:
        arg = call.args[index]
        return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None
    return default


def text_io_problems(tree: ast.AST) -> list[tuple[int, str]]:
    """Text-mode opens without ``encoding=`` (writes: or without ``newline=``),
    ``read_text``/``write_text`` likewise, ``to_csv`` without ``lineterminator=`` (pandas
    writes ``os.linesep``: CRLF on Windows, in files and in the text that is hashed)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        owner = (
            f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None
        )
        if name in ("open", "fdopen"):
            if owner == "os" and name == "open":
                continue  # os.open takes flags, gives a descriptor
            if owner in ("gzip", "bz2", "lzma"):
                mode_at, enc_at, default = 1, 3, "rb"
            elif isinstance(f, ast.Name) or owner in ("io", "os", "codecs"):
                mode_at, enc_at, default = 1, 3, "r"  # open(file, mode, buffering, encoding
            else:  # Path.open(mode, buffering, encoding, errors, newline)
                mode_at, enc_at, default = 0, 2, "r"
            mode = _mode(node, mode_at, default)
            if mode is None:
                found.append((node.lineno, f"{name}() with a mode that is not a literal"))
            elif "b" not in mode:
                if not (_kw(node, "encoding") or len(node.args) > enc_at):
                    found.append((node.lineno, f"{name}(mode={mode!r}) without encoding="))
                if set(mode) & set("wax+") and not _kw(node, "newline"):
                    found.append((node.lineno, f"{name}(mode={mode!r}) without newline="))
        elif name == "read_text" and owner != "resources":
            if not (_kw(node, "encoding") or node.args):
                found.append((node.lineno, "read_text() without encoding="))
        elif name == "write_text":
            if not (_kw(node, "encoding") or len(node.args) > 1):
                found.append((node.lineno, "write_text() without encoding="))
            if not (_kw(node, "newline") or len(node.args) > 3):
                found.append((node.lineno, "write_text() without newline="))
        elif name == "to_csv" and not _kw(node, "lineterminator"):
            found.append((node.lineno, "to_csv() without lineterminator="))
    return sorted(found)


def _report(check) -> list[str]:
    return [
        f"{p.relative_to(ROOT)}:{line}: {what}"
        for p in _sources()
        for line, what in check(ast.parse(p.read_text(encoding="utf-8"), str(p)))
    ]


def test_no_posix_only_module_or_call_in_the_package():
    assert _sources(), PACKAGE
    assert _report(posix_only_uses) == []


def test_the_posix_check_sees_what_it_should():
    bad = ast.parse(
        "import fcntl\nimport os\nos.getuid()\nfrom pwd import getpwnam\n"
        "import ctypes\nctypes.CDLL(None)\nimport signal\nsignal.SIGKILL\n"
    )
    assert [w for _, w in posix_only_uses(bad)] == [
        "import fcntl",
        "os.getuid",
        "from pwd import ...",
        "ctypes.CDLL(None)",
        "signal.SIGKILL",
    ]
    ok = ast.parse(
        textwrap.dedent("""
        import os, sys
        try:
            import fcntl
        except ImportError:
            fcntl = None
        if sys.platform.startswith("linux"):
            os.getuid()
        def f():
            if not _EXCHANGE_AVAILABLE:
                return False
            import ctypes
            return ctypes.CDLL(None)
        flags = getattr(os, "O_BINARY", 0)
    """)
    )
    assert posix_only_uses(ok) == []


def test_every_text_file_names_its_encoding_and_line_endings():
    assert _report(text_io_problems) == []


def test_the_text_check_sees_what_it_should():
    bad = ast.parse(
        textwrap.dedent("""
        open(p)
        open(p, "w", encoding="utf-8")
        path.open("a", encoding="utf-8")
        os.fdopen(fd, "w")
        path.read_text()
        path.write_text(s, encoding="utf-8")
        df.to_csv(p, index=False)
    """)
    )
    assert [w for _, w in text_io_problems(bad)] == [
        "open(mode='r') without encoding=",
        "open(mode='w') without newline=",
        "open(mode='a') without newline=",
        "fdopen(mode='w') without encoding=",
        "fdopen(mode='w') without newline=",
        "read_text() without encoding=",
        "write_text() without newline=",
        "to_csv() without lineterminator=",
    ]
    ok = ast.parse(
        textwrap.dedent("""
        open(p, "rb"); os.open(p, os.O_RDONLY); open(p, encoding="utf-8")
        open(p, "w", encoding="utf-8", newline="")
        path.write_text(s, encoding="utf-8", newline="\\n")
        df.to_csv(p, index=False, lineterminator="\\n")
    """)
    )
    assert text_io_problems(ok) == []


# -- dynamic: socialgradient as Windows would run it ----------------------------------------

PRELUDE = textwrap.dedent(
    """
    import builtins, ctypes, importlib, sys
    BLOCKED = {"fcntl", "termios", "pwd", "grp", "resource", "pty", "tty", "posix",
               "crypt", "syslog"}

    def _ours(name):
        return name == "socialgradient" or str(name).startswith("socialgradient.")

    def _refuse(name):
        return ModuleNotFoundError(f"No module named {name!r} (as on Windows)", name=name)

    _real_import = builtins.__import__

    def _import(name, globals=None, locals=None, fromlist=(), level=0):
        if (level == 0 and name.partition(".")[0] in BLOCKED
                and _ours((globals or {}).get("__name__", ""))):
            raise _refuse(name)
        return _real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = _import
    _real_import_module = importlib.import_module

    def _import_module(name, package=None):
        if (name.partition(".")[0] in BLOCKED
                and _ours(sys._getframe(1).f_globals.get("__name__", ""))):
            raise _refuse(name)
        return _real_import_module(name, package)

    importlib.import_module = _import_module

    class _CDLL(ctypes.CDLL):
        def __init__(self, name, *args, **kwargs):
            if name is None and _ours(sys._getframe(1).f_globals.get("__name__", "")):
                raise TypeError("CDLL(None): no process handle on Windows")
            super().__init__(name, *args, **kwargs)

    ctypes.CDLL = _CDLL
    for _probe in ("import fcntl", "from fcntl import flock",
                   "import importlib; importlib.import_module('fcntl')"):
        try:
            exec(_probe, {"__name__": "socialgradient._probe"})
        except ImportError:
            pass
        else:
            raise SystemExit(f"the prelude does not block {_probe!r}")
    from socialgradient.util import outputs as _outputs
    _outputs._EXCHANGE_AVAILABLE = False
    _outputs._WINDOWS = True
    """
)


def run_portable(script: str, *args, **popen) -> subprocess.Popen | subprocess.CompletedProcess:
    """Run ``script`` after :data:`PRELUDE` in a new interpreter (``popen``: Popen's
    keywords, returned unstarted-waited; else run to the end and return the result)."""
    argv = [sys.executable, "-c", PRELUDE + textwrap.dedent(script), *map(str, args)]
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    if popen:
        return subprocess.Popen(argv, env=env, **popen)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


FIT_AND_WRITE = """
    import json, os, sys
    from pathlib import Path
    import socialgradient.api as api
    from socialgradient.util import outputs
    from fakes import fake_tree

    renames = []
    _rename = os.rename
    def rename(a, b):
        renames.append(os.fspath(b))
        return _rename(a, b)
    os.rename = rename

    out = Path(sys.argv[1])
    first = api.write(fake_tree(n_la=4, n_lsoa_per_la=6, draws=30), out)
    created = outputs.verify(out)["files"]
    api.write(fake_tree(n_la=4, n_lsoa_per_la=6, draws=30, seed=1), out)  # replaces the set
    manifest = outputs.read(out)
    holders = sorted(n for n, m in sys.modules.items()
                     if n.startswith("socialgradient") and hasattr(m, "fcntl"))
    print(json.dumps({"files": sorted(manifest["files"]), "first": sorted(created),
                      "renamed_to": [Path(r).name for r in renames], "holders": holders,
                      "fcntl_loaded_by_others": "fcntl" in sys.modules}))
"""


def test_api_imports_fits_and_writes_a_set_without_posix_modules(tmp_path):
    out = tmp_path / "out"
    done = run_portable(FIT_AND_WRITE, out)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["holders"] == []
    assert result["files"] == result["first"]
    assert {
        "release/summary.json",
        "release/la_gradients.csv",
        "internal/posterior.nc",
        "internal/README.txt",
    } <= set(result["files"])
    assert all("\\" not in f for f in result["files"])  # manifest names use / everywhere
    # the second write swapped each part in with the two renames, not renameat2
    assert {"release.old", "internal.old"} <= set(result["renamed_to"])
    manifest = outputs.verify(out)
    assert sorted(manifest["files"]) == result["files"]
    for rel in manifest["files"]:
        if rel.endswith((".json", ".csv", ".jsonl", ".txt")):
            assert b"\r\n" not in (out / rel).read_bytes(), rel
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock",
        "MANIFEST.json",
        "internal",
        "release",
    ]


KILL_AT = """
    import os, shutil, signal, sys
    from pathlib import Path
    from socialgradient.util import outputs

    out, gen, kill_at, phase = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ops = 0

    def killing(fn):
        def step(*args, **kwargs):
            global ops
            ops += 1
            if ops == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return step

    os.rename, os.replace, shutil.rmtree = map(killing, (os.rename, os.replace, shutil.rmtree))
    outputs._exchange = killing(outputs._exchange)
    if phase == "write":  # as tests/test_outputs.py's write_set
        with outputs.Writer(out, generation=gen) as w:
            (w.release / "r0.txt").write_text(f"{gen}\\n")
            (w.internal / "big.bin").write_text(f"{gen}\\n")
            w.commit()
    else:
        outputs.read(out)
    print(ops)
"""


def _kill_at(out: Path, gen: int, kill_at: int, phase: str) -> int | None:
    """Run a write of generation ``gen`` (or a recovery) SIGKILLed before its ``kill_at``-th
    rename/replace/exchange/rmtree; the number of those steps if it ran to the end."""
    done = run_portable(KILL_AT, out, gen, kill_at, phase)
    if done.returncode == -signal.SIGKILL:
        return None
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.split()[-1])


def _state(out: Path) -> int | None:
    """The generation a reader that does not recover sees (None: it refuses the folder)."""
    try:
        return generation_of(out, outputs.verify(out))
    except outputs.OutputSetError:
        return None


def _recovered(out: Path) -> int:
    gen = generation_of(out, outputs.read(out))
    assert not [
        p.name
        for p in out.iterdir()
        if p.name.startswith((".tmp-", ".commit-", ".old-", outputs.PROBE, outputs.PENDING))
    ]
    return gen


def test_sigkill_at_every_step_of_a_commit_and_of_its_recovery(tmp_path, monkeypatch):
    """The two-rename commit, SIGKILLed before each of its steps, and the recovery of each
    pending commit SIGKILLed before each of its own steps: a reader sees the old set, the new
    set or a refusal (pending), and the next recovery always completes one whole set: the
    old one if the kill came before the commit began, else the new one."""
    monkeypatch.setattr(outputs, "_EXCHANGE_AVAILABLE", False)  # recovery here, as there
    monkeypatch.setattr(outputs, "_WINDOWS", True)
    template = tmp_path / "template"
    write_set(template, 1)
    steps = _kill_at(template, 2, 0, "write")  # a whole write: count its steps
    assert steps is not None
    assert steps >= 8  # tmp->commit, 2 x (exchange tried, 2 renames), manifest, ->old, rmtree
    cases = recoveries = 0
    for n in range(1, steps + 1):
        out = tmp_path / f"kill{n}"
        write_set(out, 1)
        assert _kill_at(out, 2, n, "write") is None
        cases += 1
        # before tmp -> commit: the old set stands; then pending (refused) until the
        # manifest and the rename to .old-X are done; last, only .old-X is left to delete;
        # throughout, .pending-X holds the writer's token (what makes those folders ours)
        left = {p.name.split("-")[0] for p in out.iterdir() if p.name.startswith(".")}
        if n == 1:
            assert (_state(out), left) == (1, {".lock", ".tmp", ".pending"})
        elif n < steps:
            assert (_state(out), left) == (None, {".lock", ".commit", ".pending"})
        else:
            assert (_state(out), left) == (2, {".lock", ".old", ".pending"})
        expect = 1 if n == 1 else 2
        if outputs.pending(out):
            # a recovery killed at each of its own steps, then one that finishes
            probe = tmp_path / f"count{n}"
            shutil.copytree(out, probe)
            total = _kill_at(probe, 0, 0, "recover")
            assert total is not None
            assert _recovered(probe) == expect
            for m in range(1, total + 1):
                again = tmp_path / f"kill{n}-{m}"
                shutil.copytree(out, again)
                assert _kill_at(again, 0, m, "recover") is None
                assert _state(again) in (1, 2, None)
                assert _recovered(again) == expect
                recoveries += 1
        assert _recovered(out) == expect
    print(f"{cases} commits and {recoveries} recoveries killed, each step")


def test_sigkill_at_random_moments_with_windows_branches(tmp_path, monkeypatch):
    """The existing kill loop (tests/test_outputs.py), its writer under the prelude: SIGKILLed
    at random moments, the next reader (here, with the same branches) finds one whole set."""
    monkeypatch.setattr(outputs, "_EXCHANGE_AVAILABLE", False)
    monkeypatch.setattr(outputs, "_WINDOWS", True)
    out = tmp_path / "out"
    gen = generation_of(out, write_set(out, 0))
    rng = random.Random(5)
    mid = 0
    for _ in range(12):
        proc = run_portable(LOOP, out, gen, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
        mid += bool(outputs.pending(out))
        seen = _state(out)
        assert seen is None or seen >= gen
        now = _recovered(out)
        assert now >= gen
        gen = now
    assert gen > 0
    print(f"12 kills, {mid} mid-commit")


def test_the_lock_is_the_kernels_and_dies_with_its_holder(tmp_path):
    """Writers of one folder wait for each other; a SIGKILLed holder's lock is released at
    once (flock here, LockFileEx on Windows: never filelock's marker-file soft lock)."""
    assert outputs.FileLock.__name__ in ("UnixFileLock", "WindowsFileLock")
    out = tmp_path / "out"
    holder = run_portable(
        """
        import sys, time
        from pathlib import Path
        from socialgradient.util import outputs
        with outputs._locked(Path(sys.argv[1])):
            print("held", flush=True)
            time.sleep(120)
        """,
        out,
        stdout=subprocess.PIPE,
        text=True,
    )
    done = {}
    try:
        assert holder.stdout.readline().strip() == "held"
        writer = threading.Thread(target=lambda: done.update(m=write_set(out, 1)), daemon=True)
        writer.start()
        writer.join(1.5)
        assert writer.is_alive(), "a second writer did not wait for the lock"
        assert not (out / "MANIFEST.json").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdout.close()
    writer.join(15)
    assert not writer.is_alive(), "the killed holder's lock was not released"
    assert generation_of(out, outputs.verify(out)) == 1


def test_exchange_is_a_linux_fast_path_only(tmp_path, monkeypatch):
    import ctypes

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()

    def no_cdll(*args, **kwargs):
        raise AssertionError("ctypes used with the exchange switched off")

    monkeypatch.setattr(outputs, "_EXCHANGE_AVAILABLE", False)
    monkeypatch.setattr(ctypes, "CDLL", no_cdll)
    assert outputs._exchange(a, b) is False
    write_set(tmp_path / "out", 1)
    write_set(tmp_path / "out", 2)  # both parts replaced by two renames each
    assert generation_of(tmp_path / "out", outputs.verify(tmp_path / "out")) == 2

    def windows_cdll(name, *args, **kwargs):
        raise TypeError("expected str, bytes or os.PathLike object, not NoneType")

    monkeypatch.setattr(outputs, "_EXCHANGE_AVAILABLE", True)  # switched on, but no libc
    monkeypatch.setattr(ctypes, "CDLL", windows_cdll)
    assert outputs._exchange(a, b) is False


# -- --out: a real write before any work ------------------------------------------------------


def _unwritable() -> Path:
    """A folder that ``os.access`` calls writable for root, where nothing can be created."""
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc")
    return Path("/proc") / f"socialgradient-{os.getpid()}" / "out"


def _trace(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_out_under_proc_fails_at_the_check(tmp_path):
    out = _unwritable()
    with pytest.raises(outputs.OutputSetError) as err:
        outputs.check_destination(out)
    assert str(out) in str(err.value)
    assert "No such file" in str(err.value) or "permission denied" in str(err.value)


@pytest.mark.parametrize("fails", ["mkdir", "open", "write", "fsync"])
def test_the_probe_reports_the_os_error_and_leaves_no_trace(tmp_path, monkeypatch, fails):
    (tmp_path / "keep").mkdir()
    before = _trace(tmp_path)
    out = tmp_path / "keep" / "new" / "deeper" / "out"

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(out))

    if fails == "mkdir":
        real_mkdir = Path.mkdir

        def mkdir(self, *args, **kwargs):
            if self.name == "deeper":
                read_only()
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    else:
        monkeypatch.setattr(
            os, fails, read_only if fails == "open" else lambda *a, **k: read_only()
        )
    with pytest.raises(outputs.OutputSetError) as err:
        outputs.check_destination(out)
    monkeypatch.undo()
    assert f"--out {out}" in str(err.value)
    assert os.strerror(errno.EROFS) in str(err.value)
    assert _trace(tmp_path) == before  # no probe file, no folder it made


def test_a_successful_probe_leaves_no_trace(tmp_path):
    write_set(tmp_path / "set", 1)
    before = _trace(tmp_path)
    assert outputs.check_destination(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert outputs.check_destination(tmp_path / "set") == tmp_path / "set"
    assert _trace(tmp_path) == before
    outputs.verify(tmp_path / "set")


def test_a_killed_probe_is_cleared_by_the_next_writer(tmp_path):
    out = tmp_path / "out"
    write_set(out, 1)
    killed = out / f"{outputs.PROBE}0123456789ab"  # as a check killed before its unlink
    killed.write_bytes(outputs._PROBE_TEXT)
    mine = out / f"{outputs.PROBE}notes.txt"  # a user's file of a like name: kept
    mine.write_bytes(b"left by a killed check\n")
    assert generation_of(out, outputs.read(out)) == 1
    assert list(out.glob(outputs.PROBE + "*")) == [mine]


@pytest.fixture
def no_work(monkeypatch):
    """Every heavy step of the commands, replaced by a recorder."""
    from socialgradient import api
    from socialgradient.data.synthetic import england
    from socialgradient.panel import model as panel
    from socialgradient.sampling import fit
    from socialgradient.study import calibrate, suite

    calls = []
    for module, name in (
        (api, "fit"),
        (fit, "fit"),
        (fit, "load"),
        (suite, "run"),
        (calibrate, "run"),
        (panel, "fit_panel"),
        (england, "simulate"),
    ):
        monkeypatch.setattr(
            module, name, lambda *a, _n=f"{module.__name__}.{name}", **k: calls.append(_n)
        )
    return calls


def _argv(command: str, tmp: Path, out: Path) -> list[str]:
    missing = str(tmp / "missing")
    return {
        "fit": ["fit", missing, "--outcome", "referrals", "--out", str(out)],
        "run": ["run", "--out", str(out), "--figures", str(tmp / "figures")],
        "report": ["report", str(tmp / "saved" / "posterior.nc"), "--out", str(out)],
        "suite": ["suite", "--out", str(out)],
        "calibrate": ["calibrate", "--out", str(out), "--replicates", "1"],
        "simulate": ["simulate", "--out", str(out), "--scale", "0.05"],
        "data build": ["data", "build", missing, "--out", str(out)],
        "census write": ["census", "write", "--out", str(out), "--scale", "0.05"],
        "census aggregate": [
            "census",
            "aggregate",
            missing,
            "--child-lsoa",
            missing,
            "--geography",
            missing,
            "--out",
            str(out),
        ],
        "census extract": [
            "census",
            "extract",
            missing,
            "--mapping",
            missing,
            "--geography",
            missing,
            "--out",
            str(out),
        ],
        "panel": ["panel", missing, "--out", str(out)],
    }[command]


@pytest.mark.parametrize(
    "command",
    [
        "fit",
        "run",
        "report",
        "suite",
        "calibrate",
        "simulate",
        "data build",
        "census write",
        "census aggregate",
        "census extract",
        "panel",
    ],
)
def test_every_command_refuses_an_unwritable_out_before_any_work(
    tmp_path, capsys, no_work, command
):
    out = _unwritable()
    if command == "report":  # a file of that name is all report asks for before --out
        (tmp_path / "saved").mkdir()
        (tmp_path / "saved" / "posterior.nc").write_bytes(b"")
    assert cli.main(_argv(command, tmp_path, out)) == 2
    err = capsys.readouterr().err
    assert f"--out {out}" in err, err
    assert "No such file" in err or "permission denied" in err, err
    assert no_work == []
