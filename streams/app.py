"""The Faust app: reads kubepulse.metrics.v1 and kubepulse.events.v1, writes rollups, anomalies, alerts and dead letters.

``create_app(settings)`` builds everything from one Settings object (no
module-level app, nothing read from the environment), so tests run isolated
apps side by side under their own topic prefix and consumer group.

Agents
  ``process_scrapes``  kubepulse.metrics.v1 → rollups.v1, anomalies.v1, alerts.v1
                       (windows + detectors + rules in one pass, streams.pipeline)
  ``process_events``   kubepulse.events.v1 → alerts.v1 (event rules: OOMKilled, Evicted...)
Both send what they cannot decode or process to kubepulse.deadletter.v1.

State and recovery. Node state (``node_to_state``) and event-rule state
(``event_key_to_rules``) are Faust tables backed by changelog topics. A node's
state is written every ``streams.checkpoint_interval_s`` (one changelog
record per changed node, not one per series or per scrape), and the agent
acks its input messages only once the state that includes them is written:
Faust commits offsets only up to the first unacked message, so after a crash
the replay starts at or before every node's checkpoint. The state records the
offset it includes, so a replayed message already in it is skipped: windows
and detectors see each sample exactly once.

Outputs. Rollups and anomalies are deterministic (same input, same record,
same key), so the rare replayed duplicate is idempotent downstream
(Elasticsearch document ids are derived from the record). Alert transitions
must be published exactly once: each carries the per-fingerprint
``sequence`` the rule engine keeps in its (checkpointed) state, and after
every rebalance the worker reads back what kubepulse.alerts.v1 already holds
(fingerprint → highest sequence) and drops a replayed transition it finds
there. That gives exactly-once transitions without Kafka transactions, whose
per-partition producers and commit-interval latency cost throughput and the
1 s alert budget; ``streams.processing_guarantee="exactly_once"`` is still
passed through to Faust for those who want it.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from models.errors import RecordError
from models.records import AlertTransition, KubeEvent, NodeScrape, Record
from models.settings import Settings
from streams import _metrics as M
from streams.codec import decode_or_dead_letter, encode
from streams.deadletter import dead_letter
from streams.pipeline import NodeState, Pipeline
from streams.topics import ALERTS, ANOMALIES, DEADLETTER, EVENTS, METRICS, ROLLUPS

__all__ = ["create_app", "make_rule_engine", "PublishedAlerts"]

log = logging.getLogger(__name__)

_ALERT_HISTORY = timedelta(days=1)
"""How far back a worker reads kubepulse.alerts.v1 to learn what was published: far beyond any replay."""


def make_rule_engine(settings: Settings) -> Any:
    """The rule engine of ``streams.rules`` for these settings."""
    try:
        from streams.rules import RuleEngine
    except ImportError:  # the rule engine is another part of kubepulse; a worker without it still windows and scores
        log.error("streams.rules is not importable: running without alert rules")
        return None
    return RuleEngine.from_settings(settings)


class PublishedAlerts:
    """Fingerprint → highest transition sequence already on kubepulse.alerts.v1.

    Loaded from the topic itself after each rebalance (read_committed), so a
    worker that takes over a partition, or restarts after SIGKILL, does not
    publish again a transition its predecessor already published.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = ALERTS.named(settings.kafka.topic_prefix)
        self.seq: dict[str, int] = {}
        self.stale = True

    async def load(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.settings.kafka.aiokafka_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(self.topic)
            if parts is None:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in parts]
            seq: dict[str, int] = {}
            if tps:
                consumer.assign(tps)
                since = int((datetime.now(UTC) - _ALERT_HISTORY).timestamp() * 1000)
                starts = await consumer.offsets_for_times({tp: since for tp in tps})
                ends = await consumer.end_offsets(tps)
                for tp in tps:
                    st = starts.get(tp)
                    if st is None:
                        consumer.seek(tp, ends[tp])
                    else:
                        consumer.seek(tp, st.offset)
                remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
                while remaining:
                    batch = await consumer.getmany(*remaining, timeout_ms=1000)
                    for tp, msgs in batch.items():
                        for m in msgs:
                            fp = m.key.decode() if m.key else ""
                            n = _sequence_of(m.value)
                            if n > seq.get(fp, 0):
                                seq[fp] = n
                    for tp in list(remaining):
                        if await consumer.position(tp) >= ends[tp]:
                            remaining.discard(tp)
            self.seq = seq
            self.stale = False
        finally:
            await consumer.stop()

    def fresh(self, t: AlertTransition) -> bool:
        """True the first time a transition is seen; records it as published."""
        if self.seq.get(t.fingerprint, 0) >= t.sequence:
            return False
        self.seq[t.fingerprint] = t.sequence
        return True


def _sequence_of(value: bytes | None) -> int:
    import orjson

    try:
        return int(orjson.loads(value or b"{}").get("sequence", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


def _broker_urls(settings: Settings) -> list[str]:
    return [f"kafka://{hp.strip()}" for hp in settings.kafka.bootstrap_servers.split(",")]


def create_app(settings: Settings, *, engine: Any = None, event_engine: Any = None, pipeline: Pipeline | None = None) -> faust.App:
    """The worker's Faust app: topics, tables and agents wired from ``settings``.

    ``engine``/``event_engine`` default to ``streams.rules.RuleEngine.from_settings(settings)``
    (two instances: node-keyed state and event-keyed state are checkpointed in different tables).
    """
    k = settings.kafka
    s = settings.streams
    prefix = k.topic_prefix
    app = faust.App(
        k.consumer_group,
        broker=_broker_urls(settings),
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        topic_partitions=k.topic_partitions,
        topic_replication_factor=k.topic_replication,
        topic_allow_declare=True,
        processing_guarantee=s.processing_guarantee,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
        producer_max_batch_size=512 * 1024,
        producer_max_request_size=4 * 1024 * 1024,
        broker_commit_interval=min(2.8, s.checkpoint_interval_s),
        stream_buffer_maxsize=4096,
        # Our messages are big (a whole node scrape); fetch enough per poll to keep the agent busy.
        consumer_max_fetch_size=8 * 1024 * 1024,
        table_standby_replicas=1,
        # A killed worker's partitions move to the others after this long: short, so a crash costs seconds.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        logging_config=None,
    )
    if engine is None:
        engine = make_rule_engine(settings)
    if event_engine is None:
        event_engine = make_rule_engine(settings)
    pipe = pipeline or Pipeline(settings, engine=engine)

    def topic(spec: Any) -> faust.TopicT:
        return app.topic(
            spec.named(prefix),
            key_serializer="raw",
            value_serializer="raw",
            partitions=k.topic_partitions,
            replicas=k.topic_replication,
        )

    metrics_topic = topic(METRICS)
    events_topic = topic(EVENTS)
    names = {
        "rollups": ROLLUPS.named(prefix),
        "anomalies": ANOMALIES.named(prefix),
        "alerts": ALERTS.named(prefix),
        "deadletter": DEADLETTER.named(prefix),
    }
    for kind in ("rollups", "anomalies", "alerts", "deadletter"):
        topic({"rollups": ROLLUPS, "anomalies": ANOMALIES, "alerts": ALERTS, "deadletter": DEADLETTER}[kind])

    def table(name: str) -> Any:
        # bytes keys and values: Faust then uses its "raw" codec in the changelog, the store and recovery;
        # values are our own compact encodings (NodeState.dumps), not JSON.
        return app.Table(name, default=None, key_type=bytes, value_type=bytes, partitions=k.topic_partitions)

    node_to_state = table("node_to_state")
    event_key_to_rules = table("event_key_to_rules")
    published = PublishedAlerts(settings)
    # In-memory working copies of the table entries, per partition, and what waits for a checkpoint.
    cache: dict[bytes, NodeState] = {}
    dirty: dict[int, set[bytes]] = defaultdict(set)
    pending: dict[int, list[Any]] = defaultdict(list)
    last_checkpoint: dict[int, float] = defaultdict(float)
    interval = s.checkpoint_interval_s

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, revoked: Any, **kw: Any) -> None:
        # Faust seeks every assigned partition back to its committed offset after a rebalance, so
        # the working copies and unacked events are dropped: the table plus the replay rebuild them.
        cache.clear()
        dirty.clear()
        pending.clear()
        last_checkpoint.clear()
        published.stale = True

    async def send(name: str, key: str, record: Record) -> None:
        producer = await app.maybe_start_producer()
        await producer.send(names[name], key.encode(), encode(record), None, None, None)
        M.RECORDS_OUT.labels(names[name]).inc()

    async def send_dead_letter(exc: BaseException, *, stage: str, message: Any) -> None:
        dl = dead_letter(exc, source_topic=message.topic, stage=stage, partition=message.partition,
                         offset=message.offset, key=message.key, payload=message.value)
        await send_dl(dl)

    async def send_dl(dl: Any) -> None:
        M.DEAD_LETTERS.labels(dl.stage).inc()
        await send("deadletter", dl.source_topic, dl)

    async def publish_transitions(transitions: list[AlertTransition]) -> None:
        if not transitions:
            return
        if published.stale:
            await published.load()
        for t in transitions:
            if published.fresh(t):
                await send("alerts", t.fingerprint, t)
            else:
                M.DUPLICATES_SUPPRESSED.labels("alert_transition").inc()

    def load_node(key: bytes) -> NodeState:
        st = cache.get(key)
        if st is None:
            raw = node_to_state.get(key)
            st = NodeState.loads(raw) if raw else pipe.new_state(key.decode())
            pipe.attach(st)
            cache[key] = st
        return st

    def checkpoint(partition: int) -> None:
        for key in dirty.pop(partition, ()):
            st = cache[key]
            data = st.dumps()
            node_to_state[key] = data
            M.CHECKPOINTS.inc()
            M.CHECKPOINT_BYTES.inc(len(data))
        for ev in pending.pop(partition, ()):
            ev.ack()
        last_checkpoint[partition] = time.monotonic()

    @app.agent(metrics_topic, name="process_scrapes")
    async def process_scrapes(stream: faust.StreamT) -> None:
        """kubepulse.metrics.v1 → rollups, anomalies, alerts (and dead letters)."""
        async for event in stream.noack().events():
            msg = event.message
            M.RECORDS_IN.labels(msg.topic).inc()
            p = msg.partition
            try:
                scrape = decode_or_dead_letter(NodeScrape, msg.value, source_topic=msg.topic, partition=p,
                                               offset=msg.offset, key=msg.key)
                if not isinstance(scrape, NodeScrape):
                    await send_dl(scrape)
                elif msg.key is not None and msg.key.decode("utf-8", "replace") != scrape.key:
                    raise RecordError(f"key {msg.key!r} is not the scrape's cluster/node {scrape.key!r}",
                                      error_type="key_mismatch")
                else:
                    key = msg.key or scrape.key.encode()
                    st = load_node(key)
                    t0 = time.perf_counter()
                    out = pipe.process(st, scrape, offset=msg.offset)
                    M.PROCESS_SECONDS.observe(time.perf_counter() - t0)
                    if out.replayed:
                        M.DUPLICATES_SUPPRESSED.labels("input").inc()
                    else:
                        dirty[p].add(key)
                        M.SAMPLES_IN.inc(out.samples)
                        if out.late_dropped:
                            M.LATE_SAMPLES_DROPPED.labels("window closed").inc(out.late_dropped)
                        await publish_transitions(out.transitions)
                        for a in out.anomalies:
                            await send("anomalies", a.series_id, a)
                        for r in out.rollups:
                            await send("rollups", r.series_id, r)
            except Exception as exc:  # noqa: BLE001 - nothing escapes an agent: dead-letter and go on
                log.exception("scrape at %s[%s]@%s failed", msg.topic, p, msg.offset)
                await send_dead_letter(exc, stage="windows", message=msg)
            pending[p].append(event)
            if time.monotonic() - last_checkpoint[p] >= interval:
                checkpoint(p)

    @app.agent(events_topic, name="process_events")
    async def process_events(stream: faust.StreamT) -> None:
        """kubepulse.events.v1 → alerts (and dead letters)."""
        async for event in stream.events():
            msg = event.message
            M.RECORDS_IN.labels(msg.topic).inc()
            try:
                ev = decode_or_dead_letter(KubeEvent, msg.value, source_topic=msg.topic, partition=msg.partition,
                                           offset=msg.offset, key=msg.key)
                if not isinstance(ev, KubeEvent):
                    await send_dl(ev)
                    continue
                key = ev.key
                if event_engine is None:
                    continue
                raw = event_key_to_rules.get(key.encode())
                if raw is not None:
                    offset, rules_bytes = pickle.loads(raw)  # our own changelog, never foreign input
                    if msg.offset <= offset:
                        M.DUPLICATES_SUPPRESSED.labels("input").inc()
                        continue
                    rstate = event_engine.state_from_bytes(rules_bytes)
                else:
                    rstate = event_engine.new_state()
                transitions = list(event_engine.observe_event(ev, state=rstate))
                if ev.timestamp is not None:
                    transitions.extend(event_engine.tick(ev.timestamp, state=rstate))
                # Events are few: checkpoint each one, with its offset, so a replay is skipped above.
                # The engine's sequence numbers make a transition replayed before this write a duplicate
                # that PublishedAlerts drops.
                await publish_transitions(transitions)
                event_key_to_rules[key.encode()] = pickle.dumps((msg.offset, rstate.to_bytes()))
            except Exception as exc:  # noqa: BLE001 - nothing escapes an agent
                log.exception("event at %s[%s]@%s failed", msg.topic, msg.partition, msg.offset)
                await send_dead_letter(exc, stage="rules", message=msg)

    app.kubepulse = {  # type: ignore[attr-defined]
        "pipeline": pipe,
        "published": published,
        "tables": (node_to_state, event_key_to_rules),
        "agents": (process_scrapes, process_events),
    }
    return app
