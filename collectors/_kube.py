"""A thin, fast wrapper around the official ``kubernetes`` client for raw JSON GETs.

Why raw: the Summary payload of a busy node is hundreds of KB and the typed
models of the generated client cost far more to build than ``orjson.loads``;
so requests go through ``ApiClient.param_serialize``/``call_api`` (the
client's own auth, TLS and connection pool) and bodies are parsed here.

Retries the kopf way: 429 and 5xx and timeouts are retried with backoff,
honouring ``Retry-After``; 401/403 become :class:`AccessDenied` whose message
names the missing rule; 410 becomes :class:`ResourceExpired`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from typing import Any

import orjson
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from collectors._metrics import API_RETRIES
from collectors.errors import (
    AccessDenied,
    ApiError,
    ClusterConfigError,
    ClusterUnavailable,
    MalformedPayload,
    NotFound,
    ResourceExpired,
)
from collectors.rbac import ApiCall, access_message
from models.settings import ClusterSettings

log = logging.getLogger("kubepulse.collectors")

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _server_message(body: bytes) -> str:
    # The API server answers errors with a metav1.Status; keep its message.
    try:
        status = orjson.loads(body)
        return str(status.get("message") or "")[:300]
    except (orjson.JSONDecodeError, AttributeError):
        return body[:200].decode("utf-8", "replace")


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from the API server; fall back to backoff


class KubeClient:
    """GETs against one cluster's API server, thread-safe (one connection pool, ``pool_size`` wide)."""

    def __init__(
        self,
        cluster: ClusterSettings,
        *,
        timeout_s: float = 10.0,
        pool_size: int = 32,
        attempts: int = 4,
        retry_max_s: float = 60.0,
    ) -> None:
        self.cluster = cluster.name
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.retry_max_s = retry_max_s
        cfg = k8s.Configuration()
        try:
            if cluster.in_cluster:
                k8s_config.load_incluster_config(client_configuration=cfg)
            else:
                k8s_config.load_kube_config(
                    config_file=str(cluster.kubeconfig) if cluster.kubeconfig else None,
                    context=cluster.context,
                    client_configuration=cfg,
                    persist_config=False,
                )
        except (ConfigException, OSError, TypeError, ValueError) as exc:
            where = "in-cluster service account" if cluster.in_cluster else f"kubeconfig {cluster.kubeconfig or '~/.kube/config'}"
            ctx = f", context {cluster.context}" if cluster.context else ""
            raise ClusterConfigError(f"cluster {cluster.name}: cannot load {where}{ctx}: {exc}") from exc
        # One pooled connection per concurrent scrape: a smaller pool makes
        # urllib3 open and discard connections on every request.
        cfg.connection_pool_maxsize = pool_size
        # Retries are done here (with Retry-After and metrics), not by urllib3.
        cfg.retries = False
        self.host = cfg.host
        self._api = k8s.ApiClient(cfg)

    def close(self) -> None:
        self._api.close()

    # -- requests --------------------------------------------------------

    def _request(self, call: ApiCall, name: str | None, query: dict[str, Any] | None, timeout: Any) -> Any:
        method, url, headers, _, _ = self._api.param_serialize(
            "GET",
            call.path,
            path_params={"name": name} if name is not None else None,
            query_params=list((query or {}).items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        try:
            return self._api.call_api(method, url, header_params=headers, _request_timeout=timeout).response
        except urllib3.exceptions.HTTPError as exc:
            raise ClusterUnavailable(f"cluster {self.cluster}: {call.verb} {call.resource}: {type(exc).__name__}: {exc}") from exc
        except k8s.ApiException as exc:  # raised by the client for TLS errors
            raise ClusterUnavailable(f"cluster {self.cluster}: {call.verb} {call.resource}: {exc.reason}") from exc

    def _raise_for(self, call: ApiCall, status: int, body: bytes) -> None:
        msg = _server_message(body)
        if status in (401, 403):
            raise AccessDenied(access_message(call, cluster=self.cluster, status=status, server_message=msg), status=status)
        if status == 410:
            raise ResourceExpired(f"cluster {self.cluster}: {call.verb} {call.resource}: 410 Gone: {msg}", status=status)
        if status == 404:
            raise NotFound(f"cluster {self.cluster}: {call.verb} {call.resource}: 404: {msg}", status=status)
        if status in _RETRY_STATUSES:
            raise ClusterUnavailable(f"cluster {self.cluster}: {call.verb} {call.resource}: {status}: {msg}", status=status)
        raise ApiError(f"cluster {self.cluster}: {call.verb} {call.resource}: {status}: {msg}", status=status)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_max_s)
        # Full jitter so many failing requests do not retry in lockstep.
        return random.uniform(0, min(self.retry_max_s, 0.2 * 2**attempt))

    def get(self, call: ApiCall, *, name: str | None = None, query: dict[str, Any] | None = None) -> bytes:
        """The body of a successful GET, retrying 429/5xx/timeouts; raises an :class:`ApiError` otherwise."""
        for attempt in range(self.attempts):
            last = attempt == self.attempts - 1
            try:
                resp = self._request(call, name, query, self.timeout_s)
            except ClusterUnavailable:
                if last:
                    raise
                API_RETRIES.labels(self.cluster, "0").inc()
                time.sleep(self._delay(attempt, None))
                continue
            try:
                body = resp.data
            except urllib3.exceptions.HTTPError as exc:
                if last:
                    raise ClusterUnavailable(f"cluster {self.cluster}: {call.verb} {call.resource}: reading body: {exc}") from exc
                API_RETRIES.labels(self.cluster, "0").inc()
                time.sleep(self._delay(attempt, None))
                continue
            status = resp.status
            if 200 <= status < 300:
                return body
            if status in _RETRY_STATUSES and not last:
                API_RETRIES.labels(self.cluster, str(status)).inc()
                delay = self._delay(attempt, _retry_after(resp.headers))
                log.debug("cluster %s: %s %s answered %s, retrying in %.2fs", self.cluster, call.verb, call.resource, status, delay)
                time.sleep(delay)
                continue
            self._raise_for(call, status, body)
        raise AssertionError("unreachable")  # pragma: no cover

    def get_json(self, call: ApiCall, *, name: str | None = None, query: dict[str, Any] | None = None) -> Any:
        body = self.get(call, name=name, query=query)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedPayload(f"cluster {self.cluster}: {call.verb} {call.resource}: invalid JSON: {exc}") from exc

    def list_all(self, call: ApiCall, *, limit: int = 500) -> tuple[list[dict[str, Any]], str]:
        """All items of a collection, page by page, and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": limit}
        while True:
            page = self.get_json(call, query=query)
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise MalformedPayload(f"cluster {self.cluster}: {call.verb} {call.resource}: not a list (no items)")
            items.extend(page["items"])
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return items, str(meta.get("resourceVersion") or "")
            query = {"limit": limit, "continue": token}

    def watch(self, call: ApiCall, *, query: dict[str, Any], timeout_s: float) -> Any:
        """Open a watch stream; returns the urllib3 response to read lines from (``watch_lines``)."""
        resp = self._request(call, None, {**query, "watch": "true"}, (self.timeout_s, timeout_s))
        if resp.status != 200:
            body = resp.data
            if resp.status in _RETRY_STATUSES:
                API_RETRIES.labels(self.cluster, str(resp.status)).inc()
                err = ClusterUnavailable(f"cluster {self.cluster}: watch {call.resource}: {resp.status}", status=resp.status)
                err.retry_after = _retry_after(resp.headers)
                raise err
            self._raise_for(call, resp.status, body)
        return resp


def watch_lines(resp: Any) -> Iterator[dict[str, Any]]:
    """Decoded watch events (one JSON object per line) from an open watch response."""
    buf = b""
    try:
        for chunk in resp.stream(amt=None, decode_content=False):
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line, buf = buf[:nl], buf[nl + 1 :]
                if line.strip():
                    try:
                        yield orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        raise MalformedPayload(f"watch stream: invalid JSON line: {exc}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise ClusterUnavailable(f"watch stream broke: {type(exc).__name__}: {exc}") from exc
    finally:
        resp.release_conn()
