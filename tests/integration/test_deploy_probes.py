"""What the Kubernetes probes and Prometheus see: the real ``kubepulse worker`` and
``kubepulse simulate`` processes, on the real Kafka, answer /healthz, /readyz and
/metrics on KUBEPULSE_HTTP_PORT, and stop cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KUBEPULSE = Path(sys.executable).with_name("kubepulse")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture
def process_env(stack: dict[str, str], run_id: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEPULSE_")}
    env.update(
        KUBEPULSE_KAFKA__BOOTSTRAP_SERVERS=stack["kafka"],
        KUBEPULSE_ELASTICSEARCH__URL=stack["elasticsearch"],
        KUBEPULSE_KAFKA__TOPIC_PREFIX=f"t{run_id}.",
        KUBEPULSE_KAFKA__CONSUMER_GROUP=f"kp-test-{run_id}",
        KUBEPULSE_KAFKA__TOPIC_PARTITIONS="2",
        KUBEPULSE_ELASTICSEARCH__INDEX_PREFIX=f"kp-test-{run_id}",
        KUBEPULSE_ALERTING__NOTIFICATIONS_FILE=str(tmp_path / "notifications.jsonl"),
        KUBEPULSE_HTTP_PORT=str(_free_port()),
        HOME=str(tmp_path),
    )
    return env


@pytest.fixture
def started(process_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], str]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> tuple[subprocess.Popen[bytes], str]:
        log = open(tmp_path / f"{argv[0]}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([str(KUBEPULSE), *argv], env=process_env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc, f"http://127.0.0.1:{process_env['KUBEPULSE_HTTP_PORT']}"

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited {proc.returncode} before it was ready:\n{log.read_text()[-3000:]}"
        if _status(f"{url}/readyz")[0] == 200:
            return
        time.sleep(0.2)
    pytest.fail(f"/readyz not 200 after {timeout} s:\n{log.read_text()[-3000:]}")


def test_worker_serves_probes_and_its_counters_then_stops_on_sigterm(started, tmp_path: Path) -> None:
    proc, url = started("worker")
    _wait_ready(proc, url, tmp_path / "worker.log", timeout=90)
    assert _status(f"{url}/healthz")[0] == 200
    status, body = _status(f"{url}/metrics")
    assert status == 200
    assert "# TYPE kubepulse_stream_records_in_total counter" in body  # streams/_metrics.py, the default registry
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert _status(f"{url}/healthz")[0] == 0  # the port is closed with the process


def test_simulate_serves_probes_while_running_and_stops_on_sigterm(started, tmp_path: Path) -> None:
    proc, url = started("simulate", "--clusters", "1", "--nodes", "2", "--pods", "2", "--speed", "10")
    _wait_ready(proc, url, tmp_path / "simulate.log", timeout=30)
    status, body = _status(f"{url}/metrics")
    assert status == 200 and "process_cpu_seconds_total" in body
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert '"scrapes":' in (tmp_path / "simulate.log").read_text()  # it finished its run and printed the summary
