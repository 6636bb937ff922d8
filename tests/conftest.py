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
    env = os.environ | {"PYTHONPATH": os.pathsep.join(
        [str(Path(socialgradient.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    dask = [sys.executable, "-m", "dask"]
    common = {"cwd": tmp, "env": env, "stdout": subprocess.DEVNULL,
              "stderr": subprocess.DEVNULL, "start_new_session": True}
    procs = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(file)], **common)]
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen(
                [*dask, "worker", address, "--nworkers", "1", "--nthreads", "1",
                 "--no-dashboard", "--local-directory", str(tmp)], **common))
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
