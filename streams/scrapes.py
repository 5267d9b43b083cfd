"""Reads kubepulse.metrics.v1, writes kubepulse.rollups.v2, anomalies.v1 and alerts.v1: one pass per node scrape.

The agent ``process_scrapes`` keeps each node's state (``streams.pipeline``:
windows, detectors, rules, cut into a group per pod) in the table
``node_to_state``, checkpointed by ``streams._state``. What a scrape closes
goes out as it is processed: per-entity rollups, anomalies, alert
transitions (each published once, see ``Runtime.publish_transitions``), and
the node's partials for the cluster-wide sums (``streams.aggregates``).

Time. A scrape is processed at its own timestamp, but no later than the time
Kafka received it plus ``streams.max_clock_skew_s``: a node whose clock runs
fast cannot drag its windows far ahead, nor move its partition's event-time
clock, from which the worker finds the nodes that went silent: every 15 s of
that clock, the partition's nodes silent for ``rules_stale_after_s`` are
ticked to it (``Pipeline.tick``: their windows close and publish, their
alerts resolve at "last seen + rules_stale_after_s", as Prometheus' staleness
does), and those silent for ``node_state_ttl_s`` are forgotten. Data time,
not wall time: a replay ticks the same nodes the same way. A partition with no
input at all has no clock, so a worker whose every node went silent ticks
nothing until one sends again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from models.errors import RecordError
from models.records import DeadLetter, NodeScrape
from streams import _metrics as M
from streams._runtime import Runtime
from streams._state import Checkpointer, KeyedState, bounded_time
from streams.codec import decode_or_dead_letter
from streams.pipeline import NodeState, Outputs, Pipeline
from streams.topics import METRICS

__all__ = ["register_scrapes"]

log = logging.getLogger(__name__)

TICK_STEP_S = 15.0
"""How often (partition event time) silent nodes are looked for: one scrape interval."""

Forward = Callable[[str, list[bytes]], None]


def register_scrapes(rt: Runtime, cp: Checkpointer, pipe: Pipeline, *, forward: Forward | None = None) -> Any:
    """Register ``process_scrapes``; ``forward(cluster, partials)`` takes the node partials (cluster sums)."""
    s = rt.settings.streams
    topic = rt.topic(METRICS)
    state = cp.register(topic.get_topic_name(), KeyedState(
        rt.table("node_to_state"), name="node_to_state", step_s=TICK_STEP_S,
        load=lambda key, header, entries: NodeState.loads(header, entries, pipe),
        new=lambda key: pipe.new_state(key.decode()),
    ))

    def publish(out: Outputs, cluster: str) -> None:
        rt.publish_transitions(out.transitions)
        for a in out.anomalies:
            rt.send("anomalies", a.series_id, a)
        rt.send_many("rollups", out.rollup_records)
        if forward is not None and out.partials:
            forward(cluster, out.partials)

    def tick_silent(p: int, offset: int) -> None:
        """Tick the nodes of partition ``p`` silent for ``rules_stale_after_s``; forget those past the TTL."""
        now = state.clocks.time[p]
        for key in sorted(state.keys(p)):  # sorted: the same order, so the same outputs, on a replay
            st: NodeState = state.get(key, p)
            idle = now - st.last_ts  # its last scrape (a tick moves its windows, not this)
            if idle < s.rules_stale_after_s:
                continue
            if idle >= s.node_state_ttl_s:
                log.info("forgetting node %s: silent for %.0f s of event time", key.decode(), idle)
                publish(pipe.flush(st), st.cluster)
                state.forget(key, p)
                continue
            out = pipe.tick(st, now)
            if out.changed:
                M.SILENT_TICKS.labels(state.name).inc()
                state.touch(key, p, offset)
            publish(out, st.cluster)

    def handle(msg: Any) -> None:
        p = msg.partition
        scrape = decode_or_dead_letter(NodeScrape, msg.value, source_topic=msg.topic, partition=p, offset=msg.offset,
                                       key=msg.key, fast=True)
        if isinstance(scrape, DeadLetter):
            rt.send_dead_letter(scrape)
            return
        key = scrape.key.encode()
        if msg.key is not None and msg.key != key:
            raise RecordError(f"key {msg.key!r} is not the scrape's cluster/node {scrape.key!r}",
                              error_type="key_mismatch")
        ts = bounded_time(scrape.timestamp, received=msg.timestamp, max_skew_s=s.max_clock_skew_s)
        if ts != scrape.timestamp:
            M.CLOCK_CLAMPED.labels(msg.topic).inc()
            scrape.timestamp = ts
        st = state.get(key, p)
        t0 = time.perf_counter()
        out = pipe.process(st, scrape, offset=msg.offset)
        M.PROCESS_SECONDS.observe(time.perf_counter() - t0)
        if out.replayed:
            M.DUPLICATES_SUPPRESSED.labels("input").inc()
            return
        state.touch(key, p, msg.offset)
        M.SAMPLES_IN.inc(out.samples)
        if out.late_dropped:
            M.LATE_SAMPLES_DROPPED.labels("window closed").inc(out.late_dropped)
        publish(out, scrape.cluster)
        if state.clocks.advance(p, ts.timestamp()):
            tick_silent(p, msg.offset)

    return cp.agent(topic, name="process_scrapes", stage="windows", handle=handle,
                    doc="kubepulse.metrics.v1 → rollups, anomalies, alerts (and dead letters).")
