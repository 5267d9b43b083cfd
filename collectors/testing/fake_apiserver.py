"""A test Kubernetes API server over real HTTP: the lists, watches and node proxy the collector uses.

It speaks the real shapes (core/v1 lists, ResourceQuotas included, with ``resourceVersion`` and
``continue``, watch streams of ``{"type", "object"}`` lines with BOOKMARKs
and a 410 ERROR for a too-old resourceVersion, kubelet ``stats/v1alpha1``
through ``/api/v1/nodes/{node}/proxy/stats/summary``, metrics.k8s.io) and is
strict about requests: a wrong bearer token is a 401, an unknown path a 404
and an unknown query parameter a 400, so a client bug fails the test.

Programmable per test: objects, Summary payloads (a dict, raw bytes, or a
callable of the node name), 403 for an RBAC rule (:meth:`forbid`), 429/5xx
with ``Retry-After`` (:meth:`fail`), watch expiry (:meth:`expire_events`).
Every request is in :attr:`access_log` with its RBAC verb and resource.

Run it as a separate process (for benchmarks) with
``python -m collectors.testing --nodes 1000 --pods-per-node 30 --kubeconfig kc.yaml``.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import yaml

__all__ = ["FakeApiServer", "Access", "Fault"]

_LIST_PARAMS = frozenset(
    {"limit", "continue", "resourceVersion", "resourceVersionMatch", "labelSelector", "fieldSelector", "timeoutSeconds", "pretty"}
)
_WATCH_PARAMS = frozenset({"watch", "allowWatchBookmarks", "resourceVersion", "timeoutSeconds", "labelSelector", "fieldSelector", "sendInitialEvents", "resourceVersionMatch"})

# path regex -> (api group, resource, kind of list, "collection" | "proxy")
_ROUTES: list[tuple[re.Pattern[str], str, str, str]] = [
    (re.compile(r"^/api/v1/nodes$"), "", "nodes", "NodeList"),
    (re.compile(r"^/api/v1/nodes/(?P<name>[^/]+)/proxy/stats/summary$"), "", "nodes/proxy", "Summary"),
    (re.compile(r"^/api/v1/pods$"), "", "pods", "PodList"),
    (re.compile(r"^/api/v1/events$"), "", "events", "EventList"),
    (re.compile(r"^/api/v1/resourcequotas$"), "", "resourcequotas", "ResourceQuotaList"),
    (re.compile(r"^/apis/autoscaling/v2/horizontalpodautoscalers$"), "autoscaling", "horizontalpodautoscalers",
     "HorizontalPodAutoscalerList"),
    (re.compile(r"^/apis/apps/v1/replicasets$"), "apps", "replicasets", "ReplicaSetList"),
    (re.compile(r"^/apis/batch/v1/jobs$"), "batch", "jobs", "JobList"),
    (re.compile(r"^/apis/metrics.k8s.io/v1beta1/nodes$"), "metrics.k8s.io", "nodes", "NodeMetricsList"),
    (re.compile(r"^/apis/metrics.k8s.io/v1beta1/pods$"), "metrics.k8s.io", "pods", "PodMetricsList"),
]
_API_VERSIONS = {"": "v1", "apps": "apps/v1", "batch": "batch/v1", "metrics.k8s.io": "metrics.k8s.io/v1beta1",
                 "autoscaling": "autoscaling/v2"}


@dataclass(slots=True)
class Access:
    """One request as the API server's audit log would see it."""

    method: str
    path: str
    query: dict[str, str]
    verb: str
    group: str
    resource: str
    status: int
    at: float


@dataclass(slots=True)
class Fault:
    """Answer ``status`` (with ``Retry-After``) to the next ``times`` requests matching verb/resource."""

    verb: str
    resource: str
    status: int
    times: int = 1
    retry_after: float | None = None
    group: str = ""
    name: str | None = None


@dataclass(slots=True)
class _Store:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    replicasets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    resourcequotas: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    horizontalpodautoscalers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    node_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    pod_metrics: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def _status(code: int, reason: str, message: str, *, details: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}
    if details:
        out["details"] = details
    return out


class FakeApiServer:
    """The API server of one fake cluster; ``with FakeApiServer() as api: ...`` serves on 127.0.0.1."""

    def __init__(self, *, token: str = "kp-test-token", bookmark_interval_s: float = 0.5, summary_latency_s: float = 0.0, port: int = 0) -> None:
        self.token = token
        self.bookmark_interval_s = bookmark_interval_s
        self.summary_latency_s = summary_latency_s
        self.store = _Store()
        self.summaries: dict[str, dict[str, Any] | bytes | Callable[[str], Any]] = {}
        self.summary_fallback: Callable[[str], Any] | None = None
        self.forbidden: set[tuple[str, str, str]] = set()
        self.faults: list[Fault] = []
        self.access_log: list[Access] = []
        self.cond = threading.Condition()
        self.rv = 1000
        self.compacted_rv = 0
        self._event_log: list[tuple[int, str, dict[str, Any]]] = []
        self._watch_generation = 0
        self._watch_garbage: list[bytes] = []
        self._closed = False
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> FakeApiServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name="fake-apiserver")
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self._closed = True
            self.cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, *, context: str = "fake", token: str | None = None) -> Path:
        """A kubeconfig file whose ``context`` points at this server with a bearer token."""
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": token or self.token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(cfg))
        return path

    # -- programming -------------------------------------------------------------

    def _bump(self, obj: dict[str, Any]) -> int:
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        return self.rv

    def add(self, kind: str, *objs: dict[str, Any]) -> None:
        """Add (or replace) objects of ``kind``: ``Node``, ``Pod``, ``ReplicaSet``, ``Job``, ``ResourceQuota`` or ``HorizontalPodAutoscaler``."""
        stores = {
            "Node": self.store.nodes,
            "Pod": self.store.pods,
            "ReplicaSet": self.store.replicasets,
            "Job": self.store.jobs,
            "ResourceQuota": self.store.resourcequotas,
            "HorizontalPodAutoscaler": self.store.horizontalpodautoscalers,
        }
        with self.cond:
            for o in objs:
                m = o["metadata"]
                self._bump(o)
                stores[kind][m["name"] if kind == "Node" else (m["namespace"], m["name"])] = o  # type: ignore[index]

    def remove_pod(self, namespace: str, name: str) -> None:
        with self.cond:
            self.store.pods.pop((namespace, name), None)
            self.rv += 1

    def set_summary(self, node: str, payload: dict[str, Any] | bytes | Callable[[str], Any]) -> None:
        """What ``/api/v1/nodes/{node}/proxy/stats/summary`` answers: a dict, raw bytes (malformed on purpose), or a callable."""
        self.summaries[node] = payload

    def set_metrics(self, *objs: dict[str, Any]) -> None:
        """metrics.k8s.io NodeMetrics / PodMetrics objects."""
        for o in objs:
            m = o["metadata"]
            if "containers" in o:
                self.store.pod_metrics[(m["namespace"], m["name"])] = o
            else:
                self.store.node_metrics[m["name"]] = o

    def forbid(self, verb: str, resource: str, group: str = "") -> None:
        """Answer 403 to ``verb`` on ``group/resource`` as RBAC would."""
        self.forbidden.add((verb, group, resource))

    def fail(self, verb: str, resource: str, *, status: int, times: int = 1, retry_after: float | None = None, group: str = "", name: str | None = None) -> None:
        """Answer ``status`` to the next ``times`` matching requests (e.g. 429 with ``Retry-After``)."""
        with self.cond:
            self.faults.append(Fault(verb, resource, status, times, retry_after, group, name))

    def add_event(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.cond:
            rv = self._bump(obj)
            self.store.events[obj["metadata"]["uid"]] = obj
            self._event_log.append((rv, "ADDED", orjson.loads(orjson.dumps(obj))))
            self.cond.notify_all()
        return obj

    def update_event(self, uid: str, **changes: Any) -> dict[str, Any]:
        """Change an event (e.g. ``count=2, lastTimestamp=...``): a MODIFIED watch event."""
        with self.cond:
            obj = self.store.events[uid]
            obj.update(changes)
            rv = self._bump(obj)
            self._event_log.append((rv, "MODIFIED", orjson.loads(orjson.dumps(obj))))
            self.cond.notify_all()
        return obj

    def delete_event(self, uid: str) -> None:
        with self.cond:
            obj = self.store.events.pop(uid)
            rv = self._bump(obj)
            self._event_log.append((rv, "DELETED", orjson.loads(orjson.dumps(obj))))
            self.cond.notify_all()

    def expire_events(self) -> None:
        """Compact the watch history: open watches end, and a watch from any resourceVersion seen so far gets 410 Gone."""
        with self.cond:
            self.compacted_rv = self.rv + 1
            self._event_log.clear()
            self._watch_generation += 1
            self.cond.notify_all()

    def garble_next_watch(self, line: bytes) -> None:
        """Send ``line`` (not a watch event: e.g. ``b"[]"``) as the first line of the next watch stream, once.

        What a proxy or a broken API server may put on the stream; the collector must survive it.
        """
        with self.cond:
            self._watch_garbage.append(line)
            self._watch_generation += 1  # open watches end, so the next one carries it
            self.cond.notify_all()

    def requests(self, *, verb: str | None = None, resource: str | None = None) -> list[Access]:
        return [a for a in list(self.access_log) if (verb is None or a.verb == verb) and (resource is None or a.resource == resource)]

    # -- serving ---------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server._serve(self)

            def do_POST(self) -> None:  # noqa: N802
                server._reply(self, 405, _status(405, "MethodNotAllowed", "the collector only reads"), verb="create", group="", resource="?")

            do_PUT = do_PATCH = do_DELETE = do_POST

        return Handler

    def _log(self, h: BaseHTTPRequestHandler, status: int, verb: str, group: str, resource: str) -> None:
        parts = urlsplit(h.path)
        self.access_log.append(Access(h.command, parts.path, dict(parse_qsl(parts.query)), verb, group, resource, status, time.time()))

    def _reply(
        self, h: BaseHTTPRequestHandler, code: int, body: Any, *, verb: str, group: str, resource: str, headers: dict[str, str] | None = None
    ) -> None:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        self._log(h, code, verb, group, resource)
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        for pattern, group, resource, kind in _ROUTES:
            m = pattern.match(parts.path)
            if m:
                break
        else:
            self._reply(h, 404, _status(404, "NotFound", f"the server could not find the requested resource ({parts.path})"), verb="get", group="?", resource=parts.path)
            return
        name = m.groupdict().get("name")
        watch = query.get("watch") in ("true", "1")
        verb = "get" if name else ("watch" if watch else "list")
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            self._reply(h, 401, _status(401, "Unauthorized", "Unauthorized"), verb=verb, group=group, resource=resource)
            return
        allowed = set() if name else (_WATCH_PARAMS if watch else _LIST_PARAMS | {"watch"})
        unknown = set(query) - allowed
        if unknown:
            self._reply(h, 400, _status(400, "BadRequest", f"unknown query parameters {sorted(unknown)} for {verb} {resource}"), verb=verb, group=group, resource=resource)
            return
        if "limit" in query and not query["limit"].isdigit():
            self._reply(h, 400, _status(400, "BadRequest", f"limit must be an integer, got {query['limit']!r}"), verb=verb, group=group, resource=resource)
            return
        if (verb, group, resource) in self.forbidden:
            scope = "at the cluster scope"
            what = f'{resource.split("/")[0]} "{name}"' if name else resource
            msg = f'{what} is forbidden: User "system:serviceaccount:kubepulse:kubepulse-collector" cannot {verb} resource "{resource}" in API group "{group}" {scope}'
            self._reply(h, 403, _status(403, "Forbidden", msg, details={"name": name or "", "kind": resource.split("/")[0]}), verb=verb, group=group, resource=resource)
            return
        with self.cond:
            fault = next((f for f in self.faults if f.verb == verb and f.resource == resource and f.group == group and f.times > 0 and f.name in (None, name)), None)
            if fault:
                fault.times -= 1
        if fault:
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}.get(fault.status, "Failure")
            self._reply(h, fault.status, _status(fault.status, reason, f"injected {fault.status} for {verb} {resource}"), verb=verb, group=group, resource=resource, headers=headers)
            return
        if name:
            self._summary(h, name)
        elif watch:
            self._watch(h, query)
        else:
            self._list(h, query, group, resource, kind)

    def _list(self, h: BaseHTTPRequestHandler, query: dict[str, str], group: str, resource: str, kind: str) -> None:
        with self.cond:
            source = {
                ("", "nodes"): self.store.nodes,
                ("", "pods"): self.store.pods,
                ("", "events"): self.store.events,
                ("", "resourcequotas"): self.store.resourcequotas,
                ("autoscaling", "horizontalpodautoscalers"): self.store.horizontalpodautoscalers,
                ("apps", "replicasets"): self.store.replicasets,
                ("batch", "jobs"): self.store.jobs,
                ("metrics.k8s.io", "nodes"): self.store.node_metrics,
                ("metrics.k8s.io", "pods"): self.store.pod_metrics,
            }[(group, resource)]
            items = list(source.values())
            rv = str(self.rv)
        offset = int(query.get("continue") or 0)
        limit = int(query.get("limit") or 0)
        page = items[offset : offset + limit] if limit else items[offset:]
        meta: dict[str, Any] = {"resourceVersion": rv}
        if limit and offset + limit < len(items):
            meta["continue"] = str(offset + limit)
            meta["remainingItemCount"] = len(items) - offset - limit
        body = orjson.dumps({"kind": kind, "apiVersion": _API_VERSIONS[group], "metadata": meta, "items": page})
        self._reply(h, 200, body, verb="list", group=group, resource=resource)

    def _summary(self, h: BaseHTTPRequestHandler, node: str) -> None:
        if node not in self.store.nodes:
            self._reply(h, 404, _status(404, "NotFound", f'nodes "{node}" not found'), verb="get", group="", resource="nodes/proxy")
            return
        if self.summary_latency_s:
            time.sleep(self.summary_latency_s)  # the kubelet's own time to answer
        payload = self.summaries.get(node) or self.summary_fallback
        if payload is None:
            payload = {"node": {"nodeName": node, "startTime": "2026-01-01T00:00:00Z"}, "pods": []}
        if callable(payload):
            payload = payload(node)
        self._reply(h, 200, payload if isinstance(payload, bytes) else orjson.dumps(payload), verb="get", group="", resource="nodes/proxy")

    def _watch(self, h: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        try:
            cursor = int(query.get("resourceVersion") or 0)
        except ValueError:
            self._reply(h, 400, _status(400, "BadRequest", "resourceVersion must be an integer here"), verb="watch", group="", resource="events")
            return
        timeout = float(query.get("timeoutSeconds") or 1800)
        bookmarks = query.get("allowWatchBookmarks") == "true"
        self._log(h, 200, "watch", "", "events")
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def send(obj: dict[str, Any] | bytes) -> None:
            data = (obj if isinstance(obj, bytes) else orjson.dumps(obj)) + b"\n"
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        deadline = time.monotonic() + timeout
        last_bookmark = time.monotonic()
        try:
            with self.cond:
                generation = self._watch_generation
                if self._watch_garbage:
                    send(self._watch_garbage.pop(0))
                if cursor < self.compacted_rv:
                    # What the real API server does: 200, then one ERROR event with a 410 Status.
                    send({"type": "ERROR", "object": _status(410, "Expired", f"too old resource version: {cursor} ({self.compacted_rv})")})
                    return
                while not self._closed and generation == self._watch_generation:
                    for rv, typ, obj in self._event_log:
                        if rv > cursor:
                            send({"type": typ, "object": obj})
                            cursor = rv
                    now = time.monotonic()
                    if now >= deadline:
                        return
                    if bookmarks and now - last_bookmark >= self.bookmark_interval_s:
                        cursor = max(cursor, self.rv)
                        send({"type": "BOOKMARK", "object": {"kind": "Event", "apiVersion": "v1", "metadata": {"resourceVersion": str(cursor)}}})
                        last_bookmark = now
                    self.cond.wait(timeout=min(self.bookmark_interval_s, max(0.0, deadline - now)))
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            try:
                h.wfile.write(b"0\r\n\r\n")
                h.wfile.flush()
            except OSError:
                pass
            h.close_connection = True


def main(argv: list[str] | None = None) -> None:
    """Serve a synthetic fleet until stdin closes (for bench/collector.py)."""
    from collectors.testing.fleet import Fleet

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods-per-node", type=int, default=30)
    p.add_argument("--kubeconfig", type=Path, required=True)
    p.add_argument("--latency", type=float, default=0.0, help="seconds each Summary takes to answer (the kubelet)")
    args = p.parse_args(argv)
    server = FakeApiServer(summary_latency_s=args.latency)
    fleet = Fleet(nodes=args.nodes, pods_per_node=args.pods_per_node)
    fleet.install(server)
    server.start()
    server.write_kubeconfig(args.kubeconfig)
    print(f"ready {server.url}", flush=True)
    sys.stdin.read()  # the parent closes our stdin to stop us
    server.stop()


if __name__ == "__main__":
    main()
