"""The Dask clusters ``socialgradient suite`` and ``calibrate`` run on: local, or encrypted.

**A local cluster** (the default): a ``LocalCluster`` whose scheduler and workers listen on
127.0.0.1 only, with no dashboard unless one is asked for (``dashboard=True``,
``--dashboard``: then on 127.0.0.1, on a free port, its URL printed). The scheduler's own
HTTP server (health and metrics routes, no dashboard) listens on 127.0.0.1 too, on a free
port. Other users of the same machine can still reach 127.0.0.1, and Dask without TLS
authenticates no one: on a shared machine, run where only you log in, or on a cluster of
your own with TLS.

**A running cluster** (``scheduler=ADDRESS``, ``--scheduler``): the tasks carry what they fit
(the suite: the LSOA-level tables, a few MiB each; the calibration: simulated data only) to
the scheduler and its workers, so those data leave this process -- a warning says so, once
per run -- and the workers run whatever the scheduler sends them.

* ``tls://HOST:PORT`` (or ``wss://``): Dask's mutual TLS, :class:`distributed.Security` with
  ``require_encryption=True``: the CA certificate, this client's certificate and its key from
  :func:`tls_security` (``--tls-ca-file``, ``--tls-cert``, ``--tls-key``) or, for any not given,
  from Dask's own configuration (``distributed.comm.tls.ca-file``,
  ``distributed.comm.tls.client.cert``, ``distributed.comm.tls.client.key``, e.g. the
  environment variables ``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``, ``..._CLIENT__CERT``,
  ``..._CLIENT__KEY``). A CA and a client certificate are required. Dask checks that the
  scheduler's certificate is signed by that CA, not its host name: use a CA of the cluster's
  own.
* ``tcp://HOST:PORT`` (or no scheme, ``ws://``, ``ucx://``): unencrypted. Allowed to a
  loopback host (127.0.0.0/8, ::1, ``localhost``, a name that resolves only to those); to
  any other host refused (:class:`InsecureScheduler`, a ValueError) unless ``insecure=True``
  (``--insecure``), and then warned about loudly.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import sys
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Schemes whose connections Dask encrypts (with a :class:`distributed.Security`).
ENCRYPTED = frozenset({"tls", "wss"})
#: What the suite's tasks carry (the calibration's say their own).
SENDS = "the LSOA-level neighbourhood tables"


class InsecureScheduler(ValueError):
    """An unencrypted scheduler address on another host, without ``insecure=True``."""


def tls_security(
    ca_file: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None
):
    """Return a :class:`distributed.Security` requiring encryption, for a ``tls://`` scheduler.

    A :class:`distributed.Security` requiring encryption, for a ``tls://`` scheduler:
    the files given, and for those not given Dask's configuration
    (``distributed.comm.tls.ca-file``, ``.client.cert``, ``.client.key``). A ValueError
    when no CA or no client certificate is found (Dask's TLS is mutual: the scheduler asks
    for this client's certificate); a FileNotFoundError for a file given that is missing.
    """
    from distributed import Security

    given = {"tls_ca_file": ca_file, "tls_client_cert": cert, "tls_client_key": key}
    for field, path in given.items():
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{field.replace('_', '-')}: no such file: {path}")
    sec = Security(
        require_encryption=True, **{k: str(v) for k, v in given.items() if v is not None}
    )
    lacking = [
        flag
        for flag, value in (
            ("--tls-ca-file", getattr(sec, "tls_ca_file", None)),
            ("--tls-cert", getattr(sec, "tls_client_cert", None)),
        )
        if not value
    ]
    if lacking:
        raise ValueError(
            f"a tls:// scheduler needs {' and '.join(lacking)} (or Dask's "
            "distributed.comm.tls.ca-file / distributed.comm.tls.client.cert "
            "configuration)"
        )
    return sec


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` is this machine's loopback.

    Whether ``host`` is this machine's loopback: 127.0.0.0/8, ::1, ``localhost``, or a
    name that resolves to those addresses only (unresolvable: not loopback).
    """
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False
    try:
        return bool(found) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in found)
    except ValueError:
        return False


def check_scheduler(address: str, *, security=None, insecure: bool = False, sends: str = SENDS):
    """Return the :class:`distributed.Security` to reach the scheduler at ``address`` with.

    The :class:`distributed.Security` to reach the scheduler at ``address`` with (None:
    unencrypted), after the checks above: ``tls://`` gets ``security`` or :func:`tls_security`
    from Dask's configuration; ``security`` with an unencrypted address is a ValueError;
    ``tcp://`` to another host is refused unless ``insecure``. Logs the warning that
    ``sends`` leave this process.
    """
    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme == "inproc":  # this process's own: nothing leaves it
        return security
    try:
        host, _ = parse_host_port(location)
    except ValueError as err:
        raise ValueError(f"scheduler address {address!r}: {err}") from err
    if scheme in ENCRYPTED:
        sec = security if security is not None else tls_security()
        log.warning(
            "%s are sent to the Dask scheduler at %s and its workers: they leave "
            "this process (encrypted, TLS)",
            sends,
            address,
        )
        return sec
    if security is not None:
        raise ValueError(
            f"TLS files were given, but the scheduler address {address!r} is "
            f"{scheme}://, unencrypted: use tls://HOST:PORT"
        )
    if is_loopback(host):
        log.warning(
            "%s are sent to the Dask scheduler at %s and its workers: they leave "
            "this process (unencrypted, on this machine)",
            sends,
            address,
        )
        return None
    if not insecure:
        raise InsecureScheduler(
            f"scheduler address {address!r}: {scheme}:// to another host sends {sends} "
            "over the network unencrypted, and lets anyone who can reach it run code on its "
            "workers; use tls://HOST:PORT with --tls-ca-file/--tls-cert/--tls-key (Dask "
            "TLS), or --insecure to send them anyway"
        )
    log.warning(
        "INSECURE: %s are sent UNENCRYPTED over the network to the Dask scheduler "
        "at %s (--insecure); anyone on the path can read them",
        sends,
        address,
    )
    return None


@dataclass(frozen=True)
class Target:
    """Name a cluster to run on, checked (:func:`target`).

    A cluster to run on, checked (:func:`target`): a running one (``scheduler``: an
    address, with the ``security`` to reach it, or a :class:`distributed.Client`), or a
    local one of ``workers`` processes (``scheduler`` None), with a dashboard or not.
    """

    scheduler: object = None
    workers: int = 2
    dashboard: bool = False
    security: object = None


def target(
    scheduler=None,
    workers: int = 2,
    *,
    dashboard: bool = False,
    security=None,
    insecure: bool = False,
    sends: str = SENDS,
) -> Target:
    """Return the cluster ``scheduler`` names, checked before any work.

    The cluster ``scheduler`` names, checked before any work (:func:`check_scheduler`
    for an address; TLS files without a running cluster, or a dashboard with one, are a
    ValueError).
    """
    from distributed import Client

    if isinstance(scheduler, Target):
        return scheduler
    if isinstance(scheduler, Client):
        return Target(scheduler, workers)
    if scheduler:
        if dashboard:
            raise ValueError(
                "--dashboard is the local cluster's; a running cluster's "
                "dashboard is its scheduler's"
            )
        sec = check_scheduler(str(scheduler), security=security, insecure=insecure, sends=sends)
        return Target(str(scheduler), workers, False, sec)
    if security is not None:
        raise ValueError(
            "TLS files are for a running cluster (--scheduler tls://...); the "
            "local cluster listens on 127.0.0.1 only"
        )
    return Target(None, workers, dashboard)


#: Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also fixes glibc's
#: mmap threshold at 128 KiB: every temporary array of a log density evaluation larger than
#: that (a row vector of England: 257 KiB) is then mapped and unmapped afresh, page by page,
#: on every leapfrog step. England's referrals fit sampled in 33.0 s with it, 15.6 s without
#: (system CPU 19.3 s against 1.8 s); the suite's 29-minute run spent 955 of its 3,387 CPU
#: seconds in the kernel (``bench/suite/timing.md``). A ``None`` leaves the variable out of the
#: local workers' environment (glibc's own adaptive thresholds); a running cluster's workers
#: keep what their nanny gives them (each fit warns: :func:`socialgradient.util.memory.
#: fixed_thresholds`).
WORKER_ENVIRON = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


@contextlib.contextmanager
def client(scheduler=None, workers: int = 2, **options):
    """Open a Dask client of ``target(scheduler, workers, **options)``.

    A Dask client of ``target(scheduler, workers, **options)`` (:func:`target`; or of
    the :class:`Target` ``scheduler``): the :class:`distributed.Client` given (left open), a
    client of the running cluster at the address, or of a local cluster of ``workers``
    single-threaded processes on 127.0.0.1 (a dashboard only with ``dashboard``), closed on
    exit.

    The local workers are started non-daemonic (``distributed.worker.daemon: False``, kept
    for the cluster's life, as a restarted worker reads it again), so a sampler may start
    processes of its own; nutpie needs none (it samples on threads). They are started without
    Dask's ``MALLOC_TRIM_THRESHOLD_`` (:data:`WORKER_ENVIRON`).
    """
    import dask
    from distributed import Client, LocalCluster

    t = target(scheduler, workers, **options)
    if isinstance(t.scheduler, Client):
        yield t.scheduler
        return
    if t.scheduler:
        with Client(t.scheduler, security=t.security) as c:
            yield c
        return
    # No dashboard unless asked (then on 127.0.0.1); the scheduler's HTTP server, which
    # Dask starts anyway (health, metrics), on 127.0.0.1 and a free port, never 8787.
    local = "127.0.0.1:0"
    with (
        dask.config.set({"distributed.worker.daemon": False, **WORKER_ENVIRON}),
        LocalCluster(
            n_workers=t.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=local if t.dashboard else None,
            scheduler_kwargs=None if t.dashboard else {"dashboard_address": local},
        ) as cluster,
        Client(cluster) as c,
    ):
        if t.dashboard:
            print(
                f"Dask dashboard (this machine only): {c.dashboard_link}",
                file=sys.stderr,
                flush=True,
            )
        yield c


def run_tasks(
    tasks,
    scheduler,
    workers: int,
    done: Callable[[int, object, object, Exception | None], None],
    what: str = "tasks",
) -> None:
    """Run ``tasks`` on the cluster of :func:`client`, the study's one task loop.

    Run ``tasks`` on the cluster of :func:`client` ``(scheduler, workers)``, the study's
    one task loop (the suite's fits, calibration's replicates).

    ``tasks`` is a list of ``(key, function, args, tag)``, the first of highest priority;
    each is submitted as ``function(*args)`` under the Dask key ``key-<run id>``, not pure
    (a rerun samples again). As each finishes, ``done(n, tag, result, error)`` is called
    (``n``: 1, 2, ... in order of completion; ``error``: the task's own exception, or
    KilledWorker, with ``result`` None): a task that fails does not stop the others.
    """
    from distributed import as_completed

    run_id = uuid.uuid4().hex[:8]
    with client(scheduler, workers) as c:
        with warnings.catch_warnings():
            # Each task carries its arguments (a spec's encoded table is a few MiB), so the
            # scheduler can rerun it on another worker if one dies; scattering them instead
            # would lose them with the worker that holds them. Dask's "large graph" warning
            # says exactly that.
            warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
            futures = {
                c.submit(
                    function, *args, key=f"{key}-{run_id}", priority=len(tasks) - rank, pure=False
                ): tag
                for rank, (key, function, args, tag) in enumerate(tasks)
            }
        log.info("submitted %d %s to %s", len(futures), what, c.scheduler.address)
        for n, future in enumerate(as_completed(futures), 1):
            try:
                result = future.result()
            except Exception as e:  # the task's own error (or KilledWorker)
                done(n, futures[future], None, e)
                continue
            done(n, futures[future], result, None)
