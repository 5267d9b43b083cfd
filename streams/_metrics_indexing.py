"""Prometheus counters of the indexer: documents indexed, retried, dead-lettered, bulk latency, and whether Elasticsearch answers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["DOCS_INDEXED", "DOCS_RETRIED", "DOCS_DEAD_LETTERED", "BULK_SECONDS", "ES_UP"]

DOCS_INDEXED = Counter("kubepulse_indexing_docs_indexed_total", "Documents Elasticsearch accepted.", ["kind"])
DOCS_RETRIED = Counter(
    "kubepulse_indexing_docs_retried_total",
    "Documents sent again after a 429, a 5xx or an unreachable Elasticsearch.",
    ["reason"],
)
DOCS_DEAD_LETTERED = Counter(
    "kubepulse_indexing_docs_dead_lettered_total", "Documents Elasticsearch rejected, sent to the dead-letter topic.", ["kind"]
)
BULK_SECONDS = Histogram(
    "kubepulse_indexing_bulk_seconds",
    "Time of one bulk request, successful or not.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ES_UP = Gauge("kubepulse_indexing_elasticsearch_up", "1 when the last bulk request reached Elasticsearch, 0 while it is down.")
