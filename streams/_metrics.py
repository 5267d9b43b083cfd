"""Prometheus counters of the stream worker (served by kubepulse._health at /metrics).

Counters are process-wide (prometheus_client's default registry), labelled by
topic or stage, so one scrape of a worker shows what flows through it.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "RECORDS_IN",
    "RECORDS_OUT",
    "SAMPLES_IN",
    "DEAD_LETTERS",
    "LATE_SAMPLES_DROPPED",
    "DUPLICATES_SUPPRESSED",
    "CHECKPOINTS",
    "SILENT_TICKS",
    "STATES_FORGOTTEN",
    "CHECKPOINT_BYTES",
    "CONSUMER_LAG",
    "PROCESS_SECONDS",
    "WRITE_FAILURES",
    "WRITES_FAILING",
    "LARGEST_RECORD",
    "HELD_MESSAGES",
    "CLOCK_CLAMPED",
    "GC_PAUSE_SECONDS",
]

RECORDS_IN = Counter("kubepulse_stream_records_in_total", "Records read by the stream agents.", ["topic"])
RECORDS_OUT = Counter("kubepulse_stream_records_out_total", "Records published by the stream agents.", ["topic"])
SAMPLES_IN = Counter("kubepulse_stream_samples_in_total", "Metric values (non-null) in the node scrapes read.")
DEAD_LETTERS = Counter("kubepulse_stream_dead_letters_total", "Records sent to the dead-letter topic.", ["stage"])
LATE_SAMPLES_DROPPED = Counter(
    "kubepulse_stream_late_samples_dropped_total", "Samples later than the window grace, dropped.", ["reason"]
)
DUPLICATES_SUPPRESSED = Counter(
    "kubepulse_stream_duplicates_suppressed_total",
    "Replayed inputs or alert transitions already applied/published before a restart.",
    ["kind"],
)
CHECKPOINTS = Counter("kubepulse_stream_checkpoints_total", "States written to a state table (changelog).", ["table"])
SILENT_TICKS = Counter(
    "kubepulse_stream_silent_ticks_total", "Silent keys ticked forward to their partition's event time.", ["table"]
)
STATES_FORGOTTEN = Counter(
    "kubepulse_stream_states_forgotten_total", "Table entries deleted (silent past node_state_ttl_s, or empty).",
    ["table"],
)
CHECKPOINT_BYTES = Counter(
    "kubepulse_stream_checkpoint_bytes_total", "Bytes of state written to a table's changelog.", ["table"]
)
CONSUMER_LAG = Gauge("kubepulse_stream_consumer_lag", "Highwater minus the offset being processed.", ["topic", "partition"])
PROCESS_SECONDS = Histogram(
    "kubepulse_stream_process_seconds",
    "Time to process one node scrape (windows, scores, rules).",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
)
WRITE_FAILURES = Counter(
    "kubepulse_stream_write_failures_total",
    "Records the broker did not confirm (each is sent again until confirmed or the worker gives up).",
    ["topic", "error"],
)
WRITES_FAILING = Gauge(
    "kubepulse_stream_writes_failing",
    "1 while writes are being retried (input is not acked meanwhile and /readyz is false), else 0.",
)
LARGEST_RECORD = Gauge("kubepulse_stream_largest_record_bytes", "Largest record value written, per topic.", ["topic"])
HELD_MESSAGES = Gauge(
    "kubepulse_stream_held_messages", "Input messages processed but not acked yet (their state is not written yet)."
)
CLOCK_CLAMPED = Counter(
    "kubepulse_stream_clock_clamped_total",
    "Scrapes whose timestamp was ahead of the time Kafka received them by more than the allowed skew.",
    ["topic"],
)
GC_PAUSE_SECONDS = Histogram(
    "kubepulse_stream_gc_pause_seconds",
    "Garbage collections of the worker process and how long each held it, by generation.",
    ["generation"],
    buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
