"""HTTP server of the long-running commands: /healthz, /readyz and Prometheus /metrics.

``kubepulse collect``, ``simulate`` and ``worker`` call :func:`start_health_server`
once at start; Kubernetes probes and Docker's HEALTHCHECK hit it, Prometheus
scrapes it. It serves prometheus_client's default registry, where each part
defines its own counters (``collectors/_metrics.py``, ``streams/_metrics.py``...).

It runs in a daemon thread rather than on the asyncio loop, so a scrape never
competes with the loop for a turn and a request is answered even while an
agent holds the loop. Liveness can still catch a wedged loop: pass ``alive``
with a check the loop must keep true (e.g. a heartbeat timestamp it updates).

>>> from models.settings import Settings
>>> start_health_server(Settings(http_port=0), ready=lambda: True).port is None
True
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from models.settings import Settings

__all__ = ["HealthServer", "start_health_server"]

log = logging.getLogger(__name__)

Check = Callable[[], bool]


class HealthServer:
    """A running (or disabled) health server; ``close()`` stops it, and it is a context manager."""

    def __init__(self, server: ThreadingHTTPServer | None, thread: threading.Thread | None) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int | None:
        """The bound port (useful with an ephemeral port), or None when disabled."""
        return None if self._server is None else int(self._server.server_address[1])

    @property
    def url(self) -> str | None:
        """``http://127.0.0.1:<port>``, or None when disabled."""
        return None if self.port is None else f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop serving and release the port; safe to call twice or on a disabled server."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HealthServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run_check(check: Check) -> tuple[bool, str]:
    # A check that raises is a failed check with its reason, never a 500 with a
    # traceback: the probe result is what Kubernetes acts on.
    try:
        ok = bool(check())
    except Exception as exc:  # noqa: BLE001 - any failure of the check means "not ok"
        return False, f"check failed: {type(exc).__name__}: {exc}"
    return ok, "ok" if ok else "not ready"


def _handler(ready: Check, alive: Check | None, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "kubepulse"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = urlsplit(self.path).path.rstrip("/") or "/"
            if path == "/healthz":
                ok, text = _run_check(alive) if alive is not None else (True, "ok")
                self._send(200 if ok else 503, text.encode() + b"\n", "text/plain; charset=utf-8")
            elif path == "/readyz":
                ok, text = _run_check(ready)
                self._send(200 if ok else 503, text.encode() + b"\n", "text/plain; charset=utf-8")
            elif path == "/metrics":
                # choose_encoder honours Accept, so an OpenMetrics scraper gets OpenMetrics.
                encoder, content_type = choose_encoder(self.headers.get("Accept"))
                self._send(200, encoder(registry), content_type)
            else:
                self._send(404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain; charset=utf-8")

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            # Probes every few seconds would drown the process log.
            log.debug("health %s - " + format, self.address_string(), *args)

    return Handler


def start_health_server(
    settings: Settings,
    *,
    ready: Check,
    alive: Check | None = None,
    host: str = "0.0.0.0",  # noqa: S104 - probes and scrapers come from outside the pod
    registry: CollectorRegistry = REGISTRY,
) -> HealthServer:
    """Serve /healthz, /readyz and /metrics on ``settings.http_port`` in a daemon thread.

    ``ready`` answers /readyz (e.g. "the Kafka producer has started and the
    partitions are assigned"); ``alive`` answers /healthz (default: the
    process answers, so it is alive). ``settings.http_port == 0`` disables the
    server: the returned handle has ``port is None`` and ``close()`` does
    nothing, so callers need no special case. A port that is taken raises
    ``OSError`` at once, at start, not at the first probe.
    """
    if settings.http_port == 0:
        return HealthServer(None, None)
    server = ThreadingHTTPServer((host, settings.http_port), _handler(ready, alive, registry))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="kubepulse-health", daemon=True)
    thread.start()
    log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)", host, settings.http_port)
    return HealthServer(server, thread)
