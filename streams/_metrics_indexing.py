"""Prometheus counters of the indexer (documents indexed, retried, held, dead-lettered, bulk latency, the buffer) and its readiness."""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "DOCS_INDEXED",
    "DOCS_RETRIED",
    "DOCS_HELD",
    "DOCS_DEAD_LETTERED",
    "BATCHES_FAILED",
    "BULK_SECONDS",
    "ES_UP",
    "BUFFER_BYTES",
    "BUFFER_BYTES_PEAK",
    "FETCH_PAUSED",
    "HEALTH",
    "IndexingHealth",
]

DOCS_INDEXED = Counter("kubepulse_indexing_docs_indexed_total", "Documents Elasticsearch accepted.", ["kind"])
DOCS_RETRIED = Counter(
    "kubepulse_indexing_docs_retried_total",
    "Documents sent again: after a 429 or 5xx (rejected), an unreachable Elasticsearch (unreachable), a write "
    "block or refused credentials (blocked), a missing or closed index (index_missing), a reply that is not JSON (bad_reply).",
    ["reason"],
)
DOCS_HELD = Gauge("kubepulse_indexing_docs_held", "Documents of the bulk request in flight that wait for a retry (0 when it went through).")
DOCS_DEAD_LETTERED = Counter(
    "kubepulse_indexing_docs_dead_lettered_total",
    "Documents that are their own fault (a mapping or parsing error, not serialisable, or the one a reply breaks on), "
    "sent to the dead-letter topic.",
    ["kind"],
)
BATCHES_FAILED = Counter(
    "kubepulse_indexing_bulk_failed_total",
    "Bulk requests given up after repeated replies that are not JSON; their documents are then sent in halves to find the cause.",
)
BULK_SECONDS = Histogram(
    "kubepulse_indexing_bulk_seconds",
    "Time of one bulk request, successful or not.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ES_UP = Gauge("kubepulse_indexing_elasticsearch_up", "1 when the last bulk request reached Elasticsearch, 0 while it is down.")
BUFFER_BYTES = Gauge("kubepulse_indexing_buffer_bytes", "Bytes of Kafka messages the indexer holds: received and not yet indexed.")
BUFFER_BYTES_PEAK = Gauge("kubepulse_indexing_buffer_bytes_peak", "Most bytes the indexer has held at once since it started.")
FETCH_PAUSED = Gauge("kubepulse_indexing_fetch_paused", "1 while the buffer is full and the indexer has stopped fetching from Kafka.")


class IndexingHealth:
    """Why the indexer is not ready, if it is not: what /readyz reports (thread-safe: the health server reads it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problem: str | None = None

    def hold(self, problem: str) -> None:
        with self._lock:
            self._problem = problem

    def clear(self) -> None:
        with self._lock:
            self._problem = None

    @property
    def problem(self) -> str | None:
        with self._lock:
            return self._problem

    def ready(self) -> bool:
        """True unless a bulk request is held (Elasticsearch down, blocked, missing indices, bad replies)."""
        return self.problem is None


HEALTH = IndexingHealth()
"""The process's one indexer health (one indexing agent per process)."""
