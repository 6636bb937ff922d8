"""Shared pytest set-up.

Property tests explore new examples on a developer's machine; under CI (``CI`` set) they run
derandomized, so a landing is decided by the code, not by which examples were drawn.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import settings

import socialgradient

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


#: the tests' ledger secret: fixed, so perturbed releases are the same on every run
LEDGER_SECRET = bytes(range(32))


@pytest.fixture(scope="session", autouse=True)
def _session_ledger(tmp_path_factory):
    """Releases made by the tests are recorded in ledgers of the test session, never in the
    user's (socialgradient.release.ledger.default_path): one per module (for module fixtures) and
    one per test (below), all with the same fixed secret."""
    yield from _ledger_at(tmp_path_factory.mktemp("ledger"))


@pytest.fixture(scope="module", autouse=True)
def _module_ledger(tmp_path_factory):
    yield from _ledger_at(tmp_path_factory.mktemp("ledger"))


@pytest.fixture(autouse=True)
def _test_ledger(tmp_path_factory):
    """Each test its own ledger: a test's releases see each other, not other tests' (the
    same synthetic LSOA codes recur across tests with other counts); the shared secret keeps
    a re-report of a module fixture's fit the same release."""
    yield from _ledger_at(tmp_path_factory.mktemp("ledger"))


@pytest.fixture(autouse=True)
def _dask_scheduler_kept():
    """A test leaves Dask's global scheduler setting as it found it.

    A ``distributed.Client`` made the default sets it to ``dask.distributed`` and restores,
    when closed, what it found; two opened in two threads and closed out of order left it set,
    and every later test computing with Dask then asked for a client no longer there. Such a
    test fails here, by name, and the setting is restored for the tests after it."""

    def setting():
        return sys.modules["dask"].config.get("scheduler", None) if "dask" in sys.modules else None

    before = setting()
    yield
    after = setting()
    if after != before:
        sys.modules["dask"].config.set(scheduler=before)
        pytest.fail(f"the test left Dask's scheduler setting {after!r} (it was {before!r})")


def _ledger_at(path):
    from socialgradient.release.ledger import ENV, SECRET

    (path / SECRET).write_bytes(LEDGER_SECRET)
    old = os.environ.get(ENV)
    os.environ[ENV] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


def _stop(procs) -> None:
    """SIGTERM each process group (dask closes gracefully), SIGKILL what is left."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@pytest.fixture(scope="session")
def scheduler(tmp_path_factory):
    """A Dask scheduler and two workers (one process, one thread each, with a nanny that
    restarts a killed worker), started as separate processes as on a real cluster; its
    address. The workers import socialgradient from this checkout and run elsewhere."""
    tmp = tmp_path_factory.mktemp("dask")
    file = tmp / "scheduler.json"
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(
            [str(Path(socialgradient.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        )
    }
    dask = [sys.executable, "-m", "dask"]
    common = {
        "cwd": tmp,
        "env": env,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "start_new_session": True,
    }
    procs = [
        subprocess.Popen(
            [
                *dask,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(file),
            ],
            **common,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        *dask,
                        "worker",
                        address,
                        "--nworkers",
                        "1",
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--local-directory",
                        str(tmp),
                    ],
                    **common,
                )
            )
        from dask.distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        _stop(procs)


#: ``models/national_referrals.toml`` as it was when spec hashes were first published: the
#: specs written before a field existed must keep that hash (saved fits and suites stay valid).
FIRST_NATIONAL_SPEC = """\
name = "national_referrals"
outcome = "referrals"
family = "negbin"

[sampling]
sampler = "nutpie"
draws = 1000
tune = 1000
chains = 4
seed = 2021
"""


@pytest.fixture
def first_national_spec(tmp_path):
    """The first national spec, loaded from a file (its hash is ``45cc431df78139ab``)."""
    from socialgradient.spec import load_spec

    path = tmp_path / "first_national_referrals.toml"
    path.write_text(FIRST_NATIONAL_SPEC)
    return load_spec(path)
