"""Prometheus metrics of the alert dispatcher (served at /metrics with the rest of the process's)."""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["COMMIT_FAILURES"]

COMMIT_FAILURES = Counter(
    "kubepulse_alerting_commit_failures_total",
    "Commits of the alerts offsets that failed (the group rebalanced or the broker refused); the batch's "
    "state was already written, so it is replayed and dropped as known, never lost.",
    ["error"],
)
