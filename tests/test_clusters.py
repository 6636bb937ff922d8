"""The suite's and the calibration's Dask clusters (socialgradient.study.clusters): the local one on
127.0.0.1 with no dashboard unless asked, a running one over TLS, plain tcp:// to another
host refused without --insecure, and the warning that the data leave the process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dask
import psutil
import pytest

from socialgradient.study import calibrate, clusters, suite

LOCAL = {"127.0.0.1", "::1"}


def _listening(pids) -> set[tuple[str, int]]:
    found = set()
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip, conn.laddr.port))
    return found


def _cluster_pids(client) -> list[int]:
    """This process (the local cluster's scheduler runs here) and the workers'."""
    return [os.getpid(), *client.run(os.getpid).values()]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_local_cluster_listens_on_localhost_only_with_no_dashboard(capsys):
    with suite.client(None, workers=1) as c:
        listening = _listening(_cluster_pids(c))
        link = c.dashboard_link
        assert c.scheduler.address.startswith("tcp://127.0.0.1:")
        assert _status(link) == 404  # Dask's HTTP server (health, metrics), no dashboard
    assert listening  # the scheduler, the worker, its nanny, the HTTP server
    assert {ip for ip, _ in listening} <= LOCAL, listening  # never 0.0.0.0
    assert link.startswith("http://127.0.0.1:")
    assert ":8787/" not in link  # a free port, not the default another cluster may hold
    assert "dashboard" not in capsys.readouterr().err


def test_local_workers_keep_glibcs_adaptive_malloc_thresholds(monkeypatch):
    """Dask's nanny would start them with MALLOC_TRIM_THRESHOLD_=65536: sampling 2x slower."""
    import os

    from socialgradient.util.memory import fixed_thresholds

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with suite.client(None, workers=1) as c:
        seen = c.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), fixed_thresholds()))
    assert list(seen.values()) == [(None, None)]
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ  # the nanny's process is not changed


def test_fixed_malloc_thresholds_are_named_in_a_warning(monkeypatch):
    from socialgradient.util import memory

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert memory.fixed_thresholds() is None
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    if memory._libc() is None:  # not glibc: the variable means nothing there
        assert memory.fixed_thresholds() is None
        return
    said = memory.fixed_thresholds()
    assert said is not None
    assert "MALLOC_TRIM_THRESHOLD_=65536" in said
    assert "twice as slow" in said
    assert "pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null" in said


def test_a_dashboard_when_asked_is_on_localhost_and_its_url_printed(capsys):
    with suite.client(None, workers=1, dashboard=True) as c:
        listening = _listening(_cluster_pids(c))
        link = c.dashboard_link
        assert _status(link) == 200  # the dashboard (or Dask's page asking for bokeh)
    assert {ip for ip, _ in listening} <= LOCAL, listening
    assert link.startswith("http://127.0.0.1:")
    assert f"Dask dashboard (this machine only): {link}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "address",
    [
        "tcp://10.1.2.3:8786",
        "10.1.2.3:8786",
        "tcp://example.org:8786",
        "ws://192.168.0.5:8786",
        "tcp://[2001:db8::1]:8786",
    ],
)
def test_plain_tcp_to_another_host_is_refused_without_insecure(address, caplog):
    with pytest.raises(clusters.InsecureScheduler, match=r"unencrypted.*--insecure"):
        clusters.check_scheduler(address)
    assert clusters.check_scheduler(address, insecure=True) is None
    assert "INSECURE" in caplog.text
    assert "UNENCRYPTED" in caplog.text


@pytest.mark.parametrize(
    "address",
    [
        "tcp://127.0.0.1:8786",
        "127.0.0.1:8786",
        "tcp://localhost:8786",
        "tcp://[::1]:8786",
        "tcp://127.1.2.3:8786",
    ],
)
def test_a_scheduler_on_this_machine_is_allowed_with_the_warning(address, caplog):
    assert clusters.check_scheduler(address) is None
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1
    assert "LSOA-level neighbourhood tables are sent to the Dask scheduler" in (
        warned[0].getMessage()
    )
    assert "leave this process" in warned[0].getMessage()


def test_loopback_names():
    assert clusters.is_loopback("localhost")
    assert clusters.is_loopback("127.0.0.1")
    assert clusters.is_loopback("[::1]")
    assert not clusters.is_loopback("10.0.0.1")
    assert not clusters.is_loopback("no-such-host.invalid")


@pytest.fixture
def tls_files(tmp_path):
    files = {}
    for name in ("ca.pem", "client.pem", "client.key"):
        files[name] = tmp_path / name
        files[name].write_text("not read until a connection is made\n")
    return files


def test_tls_gets_a_security_requiring_encryption_from_the_files_given(tls_files, caplog):
    sec = clusters.tls_security(
        tls_files["ca.pem"], tls_files["client.pem"], tls_files["client.key"]
    )
    assert sec.require_encryption is True
    assert (sec.tls_ca_file, sec.tls_client_cert, sec.tls_client_key) == (
        str(tls_files["ca.pem"]),
        str(tls_files["client.pem"]),
        str(tls_files["client.key"]),
    )
    assert clusters.check_scheduler("tls://10.1.2.3:8786", security=sec) is sec
    assert "(encrypted, TLS)" in caplog.text
    target = clusters.target("tls://10.1.2.3:8786", security=sec)
    assert (target.scheduler, target.security) == ("tls://10.1.2.3:8786", sec)


def test_tls_takes_the_files_from_dasks_configuration(tls_files):
    with dask.config.set(
        {
            "distributed.comm.tls.ca-file": str(tls_files["ca.pem"]),
            "distributed.comm.tls.client.cert": str(tls_files["client.pem"]),
            "distributed.comm.tls.client.key": str(tls_files["client.key"]),
        }
    ):
        sec = clusters.check_scheduler("tls://10.1.2.3:8786")
        assert sec.tls_ca_file == str(tls_files["ca.pem"])
        assert sec.tls_client_key == str(tls_files["client.key"])
        assert sec.require_encryption is True
        # a file given overrides the configuration's
        other = tls_files["ca.pem"].with_name("other-ca.pem")
        other.write_text("x\n")
        assert clusters.tls_security(ca_file=other).tls_ca_file == str(other)


def test_tls_without_a_ca_or_certificate_or_with_a_missing_file_is_refused(tls_files):
    with pytest.raises(ValueError, match="needs --tls-ca-file and --tls-cert"):
        clusters.check_scheduler("tls://10.1.2.3:8786")
    with pytest.raises(ValueError, match="needs --tls-cert"):
        clusters.tls_security(ca_file=tls_files["ca.pem"])
    with pytest.raises(FileNotFoundError, match="tls-ca-file: no such file"):
        clusters.tls_security(tls_files["ca.pem"].with_name("gone.pem"))


def test_tls_files_with_an_unencrypted_or_a_local_cluster_and_a_remote_dashboard_refused(tls_files):
    sec = clusters.tls_security(tls_files["ca.pem"], tls_files["client.pem"])
    with pytest.raises(ValueError, match="is tcp://, unencrypted: use tls://"):
        clusters.check_scheduler("tcp://127.0.0.1:8786", security=sec)
    with pytest.raises(ValueError, match="TLS files are for a running cluster"):
        clusters.target(None, security=sec)
    with pytest.raises(ValueError, match="--dashboard is the local cluster's"):
        clusters.target("tcp://127.0.0.1:8786", dashboard=True)


def test_suite_and_calibrate_refuse_before_any_work(tmp_path, monkeypatch):
    """The address is checked first: no spec read, no table built, no replicate looked at."""

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the scheduler address was checked")

    monkeypatch.setattr(suite, "national_specs", no_work)
    monkeypatch.setattr(calibrate, "read_result", no_work)
    with pytest.raises(clusters.InsecureScheduler):
        suite.run(tmp_path, None, tmp_path / "out", scheduler="tcp://10.1.2.3:8786")
    with pytest.raises(clusters.InsecureScheduler):
        calibrate.run(tmp_path / "out", 1, scheduler="tcp://10.1.2.3:8786")


# --- a real TLS cluster, with certificates of its own CA ----------------------------------


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(where: Path) -> dict[str, Path]:
    """A CA, and a certificate it signed (with its key) for the scheduler, worker and
    client alike (Dask checks the CA's signature, not host names)."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=socialgradient test CA",
        cwd=where,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
        "-subj",
        "/CN=dask",
        cwd=where,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "2",
        cwd=where,
    )
    return {name: where / name for name in ("ca.pem", "node.pem", "node.key")}


@pytest.mark.slow  # ~15 s (a minute on a busy machine): a scheduler and a worker started
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_real_tls_cluster(tmp_path, caplog):
    """A scheduler and a worker that accept TLS only: the client built from --tls-* files
    runs a task there; plain tcp:// to that port gets nowhere."""
    certs = _certificates(tmp_path)
    tls = [
        "--tls-ca-file",
        str(certs["ca.pem"]),
        "--tls-cert",
        str(certs["node.pem"]),
        "--tls-key",
        str(certs["node.key"]),
    ]
    file = tmp_path / "scheduler.json"
    common = {
        "cwd": tmp_path,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "start_new_session": True,
    }
    dask_cmd = [sys.executable, "-m", "dask"]
    procs = [
        subprocess.Popen(
            [
                *dask_cmd,
                "scheduler",
                "--protocol",
                "tls",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(file),
                *tls,
            ],
            **common,
        )
    ]
    try:
        deadline = time.monotonic() + 90
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        assert address.startswith("tls://127.0.0.1:")
        procs.append(
            subprocess.Popen(
                [
                    *dask_cmd,
                    "worker",
                    address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--no-nanny",
                    *tls,
                ],
                **common,
            )
        )
        sec = clusters.tls_security(certs["ca.pem"], certs["node.pem"], certs["node.key"])
        with suite.client(address, security=sec) as c:
            c.wait_for_workers(1, timeout=90)
            assert c.submit(sum, [40, 2], pure=False).result(timeout=60) == 42
        assert "(encrypted, TLS)" in caplog.text
        from distributed import Client

        with pytest.raises((OSError, TimeoutError)):  # TLS only: a plain client is refused
            Client(address.replace("tls://", "tcp://"), timeout=3)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=30)


# --- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["suite", "calibrate"])
def test_the_command_refuses_plain_tcp_to_another_host_before_any_work(command, tmp_path, capsys):
    from socialgradient.cli import main

    argv = [command, "--out", str(tmp_path / "out"), "--scheduler", "tcp://10.1.2.3:8786"]
    if command == "suite":
        argv += ["--data", str(tmp_path / "absent.parquet")]  # never read
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"socialgradient {command}: error: scheduler address 'tcp://10.1.2.3:8786'" in err
    assert "--insecure" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("command", ["suite", "calibrate"])
def test_the_command_builds_the_tls_security_from_its_flags(command, tls_files, caplog):
    from socialgradient.cli import _cluster, parser

    args = parser().parse_args(
        [
            command,
            "--out",
            "out",
            "--scheduler",
            "tls://10.1.2.3:8786",
            "--tls-ca-file",
            str(tls_files["ca.pem"]),
            "--tls-cert",
            str(tls_files["client.pem"]),
            "--tls-key",
            str(tls_files["client.key"]),
        ]
    )
    target = _cluster(args, **({"sends": calibrate.SENDS} if command == "calibrate" else {}))
    assert target.scheduler == "tls://10.1.2.3:8786"
    assert target.security.require_encryption is True
    assert target.security.tls_client_key == str(tls_files["client.key"])
    said = "simulated data only" if command == "calibrate" else "LSOA-level"
    assert said in caplog.text
    local = parser().parse_args([command, "--out", "out", "--dashboard"])
    assert _cluster(local) == clusters.Target(None, 2, True, None)
    help_text = parser()._subparsers._group_actions[0].choices[command].format_help()
    for flag in ("--dashboard", "--tls-ca-file", "--tls-cert", "--tls-key", "--insecure"):
        assert flag in help_text
