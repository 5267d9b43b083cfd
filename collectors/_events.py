"""core/v1 Events of one cluster: list, then watch from the list's resourceVersion with bookmarks.

Runs in a thread (the official client is synchronous). On 410 Gone it
relists; events are deduplicated by ``(uid, count)``, so a relist neither
loses an event created during the gap nor repeats one already emitted.

An event is marked seen only once ``emit`` returned, i.e. Kafka confirmed it;
when ``emit`` raises :class:`PublishFailed` the watch stops there, backs off and
resumes from the last delivered event's resourceVersion (a relist if it
expired meanwhile), so the event is offered again. An unexpected error is
counted, logged with its traceback and the watch restarted (relisting) with
backoff: the thread never ends before ``stop`` is set.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from collectors._kube import KubeClient, watch_lines
from collectors._metrics import EVENTS_RELISTS, SCRAPE_ERRORS, WATCH_CRASHES
from collectors.errors import AccessDenied, ApiError, ClusterUnavailable, MalformedPayload, PublishFailed, ResourceExpired
from collectors.rbac import LIST_EVENTS, WATCH_EVENTS
from models.records import KubeEvent

log = logging.getLogger("kubepulse.collectors.events")


def _dt(s: Any) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def to_record(obj: dict[str, Any], *, cluster: str) -> KubeEvent:
    """A core/v1 Event as a KubeEvent (older ``firstTimestamp``/``count`` and newer ``eventTime``/``series`` alike)."""
    meta = obj["metadata"]
    involved = obj.get("involvedObject") or {}
    series = obj.get("series") or {}
    source = obj.get("source") or {}
    first = _dt(obj.get("firstTimestamp")) or _dt(obj.get("eventTime"))
    last = _dt(obj.get("lastTimestamp")) or _dt(series.get("lastObservedTime")) or first
    return KubeEvent.model_validate(
        {
            "cluster": cluster,
            "uid": meta["uid"],
            "namespace": meta.get("namespace") or "",
            "name": meta["name"],
            "reason": obj.get("reason") or "",
            "type": obj.get("type") or "Normal",
            "message": obj.get("message") or "",
            "count": obj.get("count") or series.get("count") or 1,
            "first_seen": first,
            "last_seen": last,
            "involved_object": {
                "kind": involved.get("kind"),
                "name": involved.get("name"),
                "namespace": involved.get("namespace"),
                "uid": involved.get("uid"),
                "field_path": involved.get("fieldPath"),
            },
            "source_component": source.get("component") or obj.get("reportingComponent") or None,
            "source_host": source.get("host") or obj.get("reportingInstance") or None,
            "resource_version": meta.get("resourceVersion") or "",
        }
    )


class EventWatcher:
    """List+watch of one cluster's Events, calling ``emit`` once per new (uid, count)."""

    def __init__(
        self,
        client: KubeClient,
        *,
        cluster: str,
        emit: Callable[[KubeEvent], None],
        stop: threading.Event,
        watch_timeout_s: int = 300,
        retry_max_s: float = 60.0,
    ) -> None:
        self.client = client
        self.cluster = cluster
        self.emit = emit
        self.stop = stop
        self.watch_timeout_s = watch_timeout_s
        self.retry_max_s = retry_max_s
        self.resource_version: str | None = None
        self.seen: dict[str, int] = {}
        """Event uid -> highest count emitted."""
        self.relists = 0
        self.error: str | None = None
        """Why the watch is failing right now (retried with backoff), None once it delivers again."""
        self._resp: Any = None
        self._failures = 0

    def interrupt(self) -> None:
        """Unblock a watch waiting for data (called from another thread at shutdown)."""
        resp = self._resp
        if resp is not None:
            try:
                resp.shutdown()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if self.resource_version is None:
                    self._relist()
                self._watch()
                self._failures = 0
            except ResourceExpired:
                # The watch window moved past our resourceVersion: relist.
                SCRAPE_ERRORS.labels(self.cluster, "expired").inc()
                log.info("cluster %s: event watch expired (410 Gone), relisting", self.cluster)
                self.resource_version = None
            except ApiError as exc:
                if self.stop.is_set():
                    return
                SCRAPE_ERRORS.labels(self.cluster, exc.reason).inc()
                level = logging.ERROR if isinstance(exc, AccessDenied) else logging.WARNING
                self._back_off(str(exc), level, getattr(exc, "retry_after", None))
            except PublishFailed as exc:
                if self.stop.is_set():
                    return
                # Not marked seen: resuming from the last delivered resourceVersion offers it again.
                SCRAPE_ERRORS.labels(self.cluster, "publish").inc()
                self._back_off(f"cluster {self.cluster}: an event was not delivered: {exc}", logging.ERROR, None)
            except Exception as exc:  # noqa: BLE001 - a bug must not end this cluster's events for good
                if self.stop.is_set():
                    return
                WATCH_CRASHES.labels(self.cluster, type(exc).__name__).inc()
                SCRAPE_ERRORS.labels(self.cluster, "internal").inc()
                log.exception("cluster %s: event watch failed unexpectedly; restarting it (relist)", self.cluster)
                # Whatever state the error left, a relist rebuilds it; (uid, count) keeps it free of repeats.
                self.resource_version = None
                self._back_off(f"cluster {self.cluster}: event watch: unexpected {type(exc).__name__}: {exc}",
                               logging.ERROR, None)

    def _back_off(self, error: str, level: int, delay: float | None) -> None:
        self.error = error
        self._failures += 1
        if delay is None:
            delay = random.uniform(0.5, 1.0) * min(self.retry_max_s, 2.0**self._failures)
        log.log(level, "%s; events retried in %.1fs", error, delay)
        self.stop.wait(delay)

    def _offer(self, obj: dict[str, Any]) -> None:
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata") or {}, dict):
            SCRAPE_ERRORS.labels(self.cluster, "invalid_event").inc()
            log.warning("cluster %s: event skipped, not an object with metadata: %.200r", self.cluster, obj)
            return
        meta = obj.get("metadata") or {}
        uid = meta.get("uid")
        count = obj.get("count") or (obj.get("series") or {}).get("count") or 1
        if not uid or not isinstance(count, int) or self.seen.get(uid, 0) >= count:
            if uid and not isinstance(count, int):
                self._invalid(meta, uid, count, f"count {count!r} is not an integer")
            return
        try:
            record = to_record(obj, cluster=self.cluster)
        except (ValidationError, KeyError, TypeError, ValueError, AttributeError) as exc:
            self._invalid(meta, uid, count, exc)
            return
        self.emit(record)  # raises PublishFailed when Kafka did not confirm it: not seen, offered again
        self.seen[uid] = count

    def _invalid(self, meta: dict[str, Any], uid: str, count: Any, why: object) -> None:
        SCRAPE_ERRORS.labels(self.cluster, "invalid_event").inc()
        log.warning("cluster %s: event %s/%s skipped, not a valid Event: %s", self.cluster, meta.get("namespace"), meta.get("name"), why)
        # Seen at this count (0 when it has none that compares), so the same bad version is not logged again.
        self.seen[uid] = count if isinstance(count, int) else max(self.seen.get(uid, 0), 1)

    def _relist(self) -> None:
        items, rv = self.client.list_all(LIST_EVENTS)
        EVENTS_RELISTS.labels(self.cluster).inc()
        self.relists += 1
        for obj in items:
            self._offer(obj)
        # Events absent from a full list are gone (TTL): forget them, bounding memory.
        listed = {(o.get("metadata") or {}).get("uid") for o in items if isinstance(o, dict)}
        self.seen = {u: c for u, c in self.seen.items() if u in listed}
        self.resource_version = rv
        self.error = None

    def _watch(self) -> None:
        query = {"allowWatchBookmarks": "true", "resourceVersion": self.resource_version, "timeoutSeconds": self.watch_timeout_s}
        self._resp = self.client.watch(WATCH_EVENTS, query=query, timeout_s=self.watch_timeout_s + 10)
        try:
            # closing(): leaving the loop by an exception still releases the connection at once.
            with contextlib.closing(watch_lines(self._resp)) as lines:
                self._watch_lines(lines)
        except ClusterUnavailable:
            if self.stop.is_set():
                return
            raise
        finally:
            self._resp = None

    def _watch_lines(self, lines: Any) -> None:
        for ev in lines:
            if self.stop.is_set():
                return
            kind, obj = ev.get("type"), ev.get("object") or {}
            if kind == "ERROR":
                code = obj.get("code")
                if code == 410:
                    raise ResourceExpired(f"cluster {self.cluster}: watch events: {obj.get('message', '410 Gone')}", status=410)
                raise ClusterUnavailable(f"cluster {self.cluster}: watch events: {code}: {obj.get('message')}", status=code)
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if kind in ("ADDED", "MODIFIED"):
                self._offer(obj)
            elif kind == "DELETED":
                self.seen.pop((obj.get("metadata") or {}).get("uid"), None)
            elif kind != "BOOKMARK":
                raise MalformedPayload(f"cluster {self.cluster}: watch events: unknown event type {kind!r}")
            if rv:
                self.resource_version = rv
            self.error = None  # delivering again
