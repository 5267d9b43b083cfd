"""Prometheus metrics of the collector: records published, retried and lost, scrape errors, pass duration."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_PUBLISHED = Counter(
    "kubepulse_collector_records_published_total",
    "Records acknowledged by Kafka, by cluster and record kind (metrics, events, quotas).",
    ["cluster", "kind"],
)
SCRAPE_ERRORS = Counter(
    "kubepulse_collector_scrape_errors_total",
    "Failed scrapes, API calls or records, by cluster and reason "
    "(malformed, unavailable, forbidden, not_found, expired, publish, invalid_event...).",
    ["cluster", "reason"],
)
API_RETRIES = Counter(
    "kubepulse_collector_api_retries_total",
    "API requests retried after a 429, a 5xx or a timeout, by cluster and status (0: no answer).",
    ["cluster", "status"],
)
PASS_DURATION = Histogram(
    "kubepulse_collector_pass_duration_seconds",
    "Wall time of one full pass over a cluster's nodes.",
    ["cluster"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
EVENTS_RELISTS = Counter(
    "kubepulse_collector_event_relists_total",
    "Event relists after 410 Gone (or a first list), by cluster.",
    ["cluster"],
)
PUBLISH_FAILURES = Counter(
    "kubepulse_collector_publish_failures_total",
    "Sends Kafka did not confirm (each is sent again with backoff until kubernetes.publish_timeout_s), "
    "by cluster, record kind and error.",
    ["cluster", "kind", "error"],
)
RECORDS_LOST = Counter(
    "kubepulse_collector_records_lost_total",
    "Scrapes given up after kubernetes.publish_timeout_s without Kafka's confirmation (the pass failed), "
    "by cluster, record kind and reason. Events are never counted here: the watch offers them again.",
    ["cluster", "kind", "reason"],
)
PUBLISH_FAILING = Gauge(
    "kubepulse_collector_publish_failing",
    "1 while a record is being sent again after Kafka did not confirm it (/readyz is false meanwhile), else 0.",
)
PUBLISH_BUFFERED = Gauge(
    "kubepulse_collector_publish_buffered_bytes",
    "Bytes handed to Kafka and not yet confirmed (bounded by kubernetes.publish_buffer_bytes).",
)
WATCH_CRASHES = Counter(
    "kubepulse_collector_event_watch_restarts_total",
    "Event watches restarted with backoff after an unexpected error, by cluster and error.",
    ["cluster", "error"],
)
