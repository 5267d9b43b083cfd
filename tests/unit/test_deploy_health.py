"""The health server (kubepulse._health): /healthz, /readyz and /metrics over real HTTP,
and the image's HEALTHCHECK command run against it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from kubepulse._health import HealthServer, start_health_server
from models.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, *, accept: str | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def port_settings() -> Settings:
    return load_settings(http_port=_free_port())


def test_readyz_follows_the_ready_callable_and_healthz_stays_ok(port_settings: Settings) -> None:
    state = {"ready": False}
    with start_health_server(port_settings, ready=lambda: state["ready"], host="127.0.0.1") as server:
        assert server.port == port_settings.http_port
        assert _get(f"{server.url}/healthz")[0] == 200
        status, _, body = _get(f"{server.url}/readyz")
        assert (status, body.strip()) == (503, "not ready")
        state["ready"] = True
        status, _, body = _get(f"{server.url}/readyz")
        assert (status, body.strip()) == (200, "ok")


def test_a_ready_check_that_raises_is_a_503_naming_the_error(port_settings: Settings) -> None:
    def broken() -> bool:
        raise RuntimeError("producer not started")

    with start_health_server(port_settings, ready=broken, host="127.0.0.1") as server:
        status, _, body = _get(f"{server.url}/readyz")
    assert status == 503
    assert "RuntimeError: producer not started" in body


def test_healthz_uses_the_alive_check_when_given(port_settings: Settings) -> None:
    alive = {"ok": True}
    with start_health_server(port_settings, ready=lambda: True, alive=lambda: alive["ok"], host="127.0.0.1") as server:
        assert _get(f"{server.url}/healthz")[0] == 200
        alive["ok"] = False
        assert _get(f"{server.url}/healthz")[0] == 503


def test_metrics_serves_the_default_registry_with_the_parts_counters(port_settings: Settings) -> None:
    # The collector's counters live in prometheus_client's default registry; the server must show them.
    from collectors._metrics import SCRAPE_ERRORS

    cluster = f"deploy-test-{os.getpid()}"
    SCRAPE_ERRORS.labels(cluster=cluster, reason="forbidden").inc(3)
    with start_health_server(port_settings, ready=lambda: True, host="127.0.0.1") as server:
        status, content_type, body = _get(f"{server.url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    line = re.search(
        rf'^kubepulse_collector_scrape_errors_total\{{cluster="{cluster}",reason="forbidden"\}} (\S+)$', body, re.M
    )
    assert line is not None and float(line.group(1)) == 3.0


def test_metrics_negotiates_openmetrics_and_can_use_another_registry(port_settings: Settings) -> None:
    registry = CollectorRegistry()
    Counter("kubepulse_test_things", "Things.", registry=registry).inc()
    with start_health_server(port_settings, ready=lambda: True, host="127.0.0.1", registry=registry) as server:
        status, content_type, body = _get(f"{server.url}/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert "kubepulse_test_things_total 1.0" in body
    assert body.rstrip().endswith("# EOF")
    # Only that registry: no process or collector metrics leak in.
    assert "kubepulse_collector_" not in body


def test_unknown_path_is_404_and_close_releases_the_port(port_settings: Settings) -> None:
    server = start_health_server(port_settings, ready=lambda: True, host="127.0.0.1")
    assert _get(f"{server.url}/nope")[0] == 404
    server.close()
    server.close()  # twice is fine
    # The port is released: a restarted server binds it at once (TIME_WAIT does not block it).
    with start_health_server(port_settings, ready=lambda: False, host="127.0.0.1") as again:
        assert _get(f"{again.url}/readyz")[0] == 503


def test_port_zero_disables_the_server() -> None:
    server = start_health_server(load_settings(http_port=0), ready=lambda: True)
    assert isinstance(server, HealthServer)
    assert server.port is None and server.url is None
    server.close()


def test_a_taken_port_fails_at_start(port_settings: Settings) -> None:
    with start_health_server(port_settings, ready=lambda: True, host="127.0.0.1"):
        with pytest.raises(OSError):
            start_health_server(port_settings, ready=lambda: True, host="127.0.0.1")


def _dockerfile_healthcheck() -> list[str]:
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$", text, re.M)
    assert match, "deploy/Dockerfile has no exec-form HEALTHCHECK"
    return json.loads(match.group(1))


def test_the_image_healthcheck_command_passes_against_a_live_server_and_fails_without_one() -> None:
    argv = _dockerfile_healthcheck()
    assert argv[0] == "python"  # slim images have no curl
    port = _free_port()
    env = {**os.environ, "KUBEPULSE_HTTP_PORT": str(port)}
    cmd = [sys.executable, *argv[1:]]
    with start_health_server(load_settings(http_port=port), ready=lambda: False, host="127.0.0.1"):
        # Liveness, not readiness: a worker waiting for its partitions is healthy.
        assert subprocess.run(cmd, env=env, timeout=20).returncode == 0
    assert subprocess.run(cmd, env=env, timeout=20, capture_output=True).returncode != 0


def test_the_compose_healthcheck_is_the_image_healthcheck() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("collector", "collector-real", "worker", "indexer"):
        assert compose["services"][name]["healthcheck"]["test"] == ["CMD", *_dockerfile_healthcheck()], name
