"""Prometheus metrics and readiness of the alert dispatcher (served at /metrics and /readyz with the process's)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge

__all__ = ["COMMIT_FAILURES", "WRITE_FAILURES", "WRITES_FAILING", "DELIVERIES", "RECEIVER_FAILING", "DispatcherHealth"]

COMMIT_FAILURES = Counter(
    "kubepulse_alerting_commit_failures_total",
    "Commits of the alerts offsets that failed (the group rebalanced or the broker refused); the batch's "
    "state was already written, so it is replayed and dropped as known, never lost.",
    ["error"],
)
WRITE_FAILURES = Counter(
    "kubepulse_alerting_write_failures_total",
    "Dispatcher writes to Kafka (group state, notifications log, dead letters) the broker did not confirm; "
    "each is retried with backoff, the alerts offsets stay uncommitted meanwhile.",
    ["error"],
)
WRITES_FAILING = Gauge(
    "kubepulse_alerting_writes_failing", "1 while the dispatcher's Kafka writes fail and are retried (/readyz is false), else 0."
)
DELIVERIES = Counter(
    "kubepulse_alerting_deliveries_total",
    "Notifications to a receiver's integration by final outcome (delivered, or dead-lettered after its retries).",
    ["receiver", "integration", "outcome"],
)
RECEIVER_FAILING = Gauge(
    "kubepulse_alerting_receiver_failing",
    "1 while the last notification to this integration ran out of retries (until one is delivered), else 0.",
    ["receiver", "integration"],
)


class DispatcherHealth:
    """What /readyz says of one dispatcher: it runs, its Kafka writes are confirmed, and no receiver keeps failing.

    >>> h = DispatcherHealth()
    >>> h.started(); h.ready()
    True
    >>> h.delivery("pager", "pagerduty/0", delivered=False); h.ready(), h.reason()
    (False, 'receiver pager (pagerduty/0) is failing')
    >>> h.delivery("pager", "pagerduty/0", delivered=True); h.ready()
    True
    """

    def __init__(self) -> None:
        self.running = False
        self.writes_failing_since: float | None = None
        self.failing_receivers: set[tuple[str, str]] = set()

    def started(self) -> None:
        self.running = True

    def stopped(self) -> None:
        self.running = False

    def write_failed(self, exc: BaseException) -> None:
        WRITE_FAILURES.labels(error=type(exc).__name__).inc()
        if self.writes_failing_since is None:
            self.writes_failing_since = time.monotonic()
        WRITES_FAILING.set(1)

    def write_ok(self) -> None:
        if self.writes_failing_since is not None:
            self.writes_failing_since = None
            WRITES_FAILING.set(0)

    def delivery(self, receiver: str, integration: str, *, delivered: bool) -> None:
        DELIVERIES.labels(receiver, integration, "delivered" if delivered else "dead_lettered").inc()
        RECEIVER_FAILING.labels(receiver, integration).set(0 if delivered else 1)
        if delivered:
            self.failing_receivers.discard((receiver, integration))
        else:
            self.failing_receivers.add((receiver, integration))

    def reason(self) -> str | None:
        """Why the dispatcher is not ready, or None when it is."""
        if not self.running:
            return "not running"
        if self.writes_failing_since is not None:
            return f"Kafka writes failing for {time.monotonic() - self.writes_failing_since:.0f} s"
        if self.failing_receivers:
            return ", ".join(f"receiver {r} ({i}) is failing" for r, i in sorted(self.failing_receivers))
        return None

    def ready(self) -> bool:
        return self.reason() is None
