"""The Faust app: reads kubepulse.metrics.v1 and kubepulse.events.v1, writes rollups, anomalies, alerts and dead letters.

``create_app(settings)`` builds everything from one Settings object (no
module-level app, nothing read from the environment), so tests run isolated
apps side by side under their own topic prefix and consumer group.

Agents
  ``process_scrapes``  kubepulse.metrics.v1 → rollups.v1, anomalies.v1, alerts.v1
                       (windows + detectors + rules in one pass, streams.pipeline)
  ``process_events``   kubepulse.events.v1 → alerts.v1 (event rules: OOMKilled, Evicted...)
  ``process_quotas``   kubepulse.quotas.v1 → alerts.v1 (quota rules: KubeQuotaAlmostFull...)
  ``aggregate_clusters`` node partials → cluster-wide rollups (streams.aggregates)
All send what they cannot decode or process to kubepulse.deadletter.v1.

State and recovery. Node state (``node_to_state``), event- and quota-rule state
(``event_key_to_rules``, ``quota_key_to_rules``, see ``streams._keyed``) and the
cluster aggregates (``cluster_to_aggregates``) are Faust tables backed by changelog topics. A node's
state is written every ``streams.checkpoint_interval_s`` (one changelog
record per changed node, not one per series or per scrape), and the agent
acks its input messages only once the state that includes them is written
(``streams._checkpoint``: snapshot, flush outputs, write states, ack): Faust commits
offsets only up to the first unacked message, so after a crash the replay
starts at or before every node's checkpoint. The state records the offset it
includes, so a replayed message already in it is skipped: windows and
detectors see each sample exactly once. Checkpoints also run from a timer (a
partition whose input paused is not left unacked), when partitions are
revoked (a rebalance hands over with nothing to replay) and at shutdown (a
SIGTERM restart replays nothing). ``stream_wait_empty`` is off because Faust's
wait for acks during a rebalance deadlocked on our held messages, and
``_OffsetGuard`` repairs two Faust races that silently skipped input after a
rebalance (see its docstring; tests/integration/test_streams_recovery.py).

Outputs. Rollups and anomalies are deterministic (same input, same record,
same key): after a SIGKILL the input since the last checkpoint is processed
again and may publish a record a second time, byte for byte the same, which
is idempotent downstream (Elasticsearch document ids are derived from the
record). Alert transitions are published exactly once: each carries the
per-fingerprint ``sequence`` the rule engine keeps in its (checkpointed)
state, and after every rebalance the worker reads back what
kubepulse.alerts.v1 already holds (fingerprint → highest sequence, merged
with what it sent itself) and drops a replayed transition it finds there.

Why not Kafka transactions. ``streams.processing_guarantee="exactly_once"``
is passed through and works with faust 0.15.3, aiokafka 0.14 and Kafka 4.1
(measured: one transactional producer per input partition, offsets committed
in transactions), but it would not cover our outputs: Faust picks the
transactional producer from the *output* key's partition, which only fits
outputs co-partitioned with the input, and our outputs (keyed by series or
fingerprint) go through the plain producer in batches. Making them
transactional would cost a producer per partition and hold every output
until the next commit (read_committed consumers), against the 1 s
sample-to-page budget; the sequence dedup gives the exactly-once that
matters (pages) without it.

Silent nodes. A node that stops sending (deleted by an autoscaler, crashed,
its collector cut off) gets no input, so nothing of its own would close its
windows or let its alerts go stale. Each partition therefore has an event-time
clock, the newest scrape timestamp processed on it (``streams._idle``): every
15 s of that clock, the nodes of the partition silent for
``rules_stale_after_s`` or more are ticked to it (``Pipeline.tick``): their
windows close and publish, their alerts resolve at "last seen +
rules_stale_after_s", as Prometheus' staleness does. Data time, not wall
time: a replay ticks the same nodes the same way, and every transition is
dated from the data, so nothing published depends on when a tick ran. A node
silent for ``node_state_ttl_s`` is forgotten (its table entry deleted at the
next checkpoint). Event-rule state is ticked the same way from the events
topic's clock (less the window grace), and deleted once it holds nothing.
What stays: a partition with no input at all has no clock, so a worker whose
every node went silent ticks nothing until one sends again.

Alert dispatch (``streams.dispatch_alerts``, on by default) runs
``streams.alerting.register_dispatcher`` in the same worker: routes, grouping
and receivers (console/file by default); its own consumer group makes one
worker of the group dispatch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from models.errors import RecordError
from models.records import AlertTransition, KubeEvent, NodeScrape, QuotaScrape, Record
from models.series import quota_entities
from models.settings import Settings
from streams import _metrics as M
from streams.codec import decode_or_dead_letter, encode
from streams.deadletter import dead_letter
from streams._checkpoint import Checkpoints
from streams._idle import PartitionClocks
from streams._keyed import KeyedRules
from streams._publish import BatchPublisher
from streams.pipeline import NodeState, Pipeline
from streams.topics import ALERTS, ANOMALIES, DEADLETTER, EVENTS, METRICS, QUOTAS, ROLLUPS

__all__ = ["create_app", "make_rule_engine", "PublishedAlerts"]

log = logging.getLogger(__name__)

_TICK_STEP_S = 15.0
"""How often (partition event time) silent keys are looked for: one scrape interval."""

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
        self._lock = asyncio.Lock()

    async def ensure_loaded(self) -> None:
        """Load once per rebalance, however many agents ask at the same time."""
        async with self._lock:
            if self.stale:
                await self.load()

    async def load(self) -> None:
        # What this worker itself sent stays known (the caller flushed it to the topic first): merged,
        # never replaced, so a read that races our own in-flight sends cannot forget them.
        known = dict(self.seq)
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
            for fp, n in known.items():
                if n > seq.get(fp, 0):
                    seq[fp] = n
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


class _OffsetGuard:
    """Makes sure an agent sees every offset of its input partitions, in order, after each rebalance.

    Two Faust 0.15.3 races drop input after a rebalance, both measured with two workers and a SIGKILL:

    - While a worker recovers its tables, the fetcher already reads the input partitions and drops
      the records; Faust then seeks every partition back to its committed offset
      (``Consumer.perform_seek``), but aiokafka's ``seek_to_committed`` skips a partition without a
      commit (or with a commit at 0): a taken-over partition whose first owner died before its
      first commit resumed after all 34 of its scrapes.
    - A fetch batch still being drained when that seek happens moves Faust's read offset past the
      seek, so the re-read records are dropped as "already read": the agent jumped from offset 18
      to 33 of a partition, and Faust then never committed it again (a gap it cannot close).

    So the guard learns where each partition must start (its committed offset, else its first
    offset) from the same seek, rewinds the uncommitted ones, and the agent checks every message:
    one beyond the expected offset means records were dropped, so the partition is sought back
    and the message is not processed (it comes again, in order).
    """

    _MAX_REWINDS = 3
    """Rewinds of one partition to one offset before a gap is taken as real (none is expected: the
    input topics are neither compacted nor written in transactions)."""
    _STALL_S = 5.0
    """A partition behind its high watermark that got nothing for this long, while the agent got
    nothing from any partition either, is read again from its due offset."""
    _SEEK_SETTLE_S = 2.0
    """Records after a gap that arrive this soon after a rewind were fetched before it: skipped, not re-sought."""

    def __init__(self, app: faust.App, topics: set[str]) -> None:
        self.app = app
        self.topics = topics
        self.next: dict[Any, int] = {}
        self.rewinds: dict[tuple[Any, int], tuple[int, float]] = {}
        """(partition, expected offset) → (rewinds so far, monotonic time of the last one)."""
        self.progress: dict[Any, float] = {}
        """Partition → monotonic time its expected offset last arrived (or was last sought)."""
        self.last_any = time.monotonic()
        """When the agent last admitted a message of any partition."""

    def install(self) -> None:
        """Wrap this app's ``Consumer.perform_seek`` (once): Faust calls it when recovery is done."""
        consumer = self.app.consumer
        if getattr(consumer, "_kubepulse_guard", None) is self:
            return
        seek_committed = consumer.perform_seek

        async def perform_seek() -> None:
            await seek_committed()
            committed = await consumer.seek_to_committed()
            ours = {tp: offset for tp, offset in committed.items() if tp.topic in self.topics}
            fresh = [tp for tp, offset in ours.items() if not offset]
            earliest = await consumer.earliest_offsets(*fresh) if fresh else {}
            for tp in fresh:
                # Offset 0 below the log start (retention) is out of range: aiokafka resets it to earliest.
                await consumer.seek(tp, 0)
            self.next = {tp: offset or earliest.get(tp, 0) or 0 for tp, offset in ours.items()}
            self.progress = dict.fromkeys(self.next, time.monotonic())
            if fresh:
                log.info("no committed offset on %s: reading them from the beginning", sorted(map(str, fresh)))

        consumer.perform_seek = perform_seek  # type: ignore[method-assign]
        consumer._kubepulse_guard = self  # type: ignore[attr-defined]

    async def admit(self, message: Any) -> bool:
        """True if the agent should process ``message``; False if it is out of order (and repaired)."""
        tp = message.tp
        expected = self.next.get(tp)
        offset = message.offset
        if expected is None or offset == expected:
            self.next[tp] = offset + 1
            self.progress[tp] = self.last_any = time.monotonic()
            return True
        if offset < expected:
            return False  # read again before a rewind took effect: already processed in this generation
        now = time.monotonic()
        tries, last = self.rewinds.get((tp, expected), (0, 0.0))
        if now - last < self._SEEK_SETTLE_S:
            return False  # fetched before our seek took effect: the records from `expected` on follow
        if tries >= self._MAX_REWINDS:
            log.warning("offsets %s..%s of %s never arrived: going on from %s", expected, offset - 1, tp, offset)
            self.next[tp] = offset + 1
            return True
        self.rewinds[(tp, expected)] = (tries + 1, now)
        log.warning("offset %s of %s arrived where %s was due: reading again from %s", offset, tp, expected, expected)
        await self.app.consumer.seek(tp, expected)
        return False

    async def repair_stalls(self) -> None:
        """Rewind a partition whose due offset exists on the broker but has not arrived for a while.

        The second race can drop everything after the offsets re-read by a rewind, and then no later
        message comes to reveal the gap: only the broker's high watermark does.
        """
        now = time.monotonic()
        if now - self.last_any < self._STALL_S:
            # The agent is busy with other partitions: under backpressure Faust pauses fetching
            # the ones whose buffers are full, which looks like a stall but is not. Seeking a
            # partition mid-fetch races aiokafka's fetcher (KeyError in fetched_records crashed
            # the Fetcher in a benchmark), so only an idle agent is repaired.
            return
        consumer = self.app.consumer
        for tp, expected in list(self.next.items()):
            if now - self.progress.get(tp, now) < self._STALL_S:
                continue
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not fetched yet / just revoked: nothing to judge
                continue
            if highwater is not None and highwater > expected:
                log.warning("%s has offsets %s..%s that never arrived: reading again from %s",
                            tp, expected, highwater - 1, expected)
                self.progress[tp] = now
                await consumer.seek(tp, expected)

    def reset(self) -> None:
        """A rebalance started: the next perform_seek says where each partition starts again."""
        self.next = {}
        self.rewinds.clear()
        self.progress.clear()


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
        # Faust's default makes a rebalance (and a shutdown) wait until every message an agent has
        # taken is acked. Ours are acked only by a checkpoint, so that wait deadlocked the whole group
        # (the worker never rejoined and published nothing). We checkpoint in the revoke and shutdown
        # hooks ourselves instead, and whatever is still unacked is replayed: see checkpoint().
        stream_wait_empty=False,
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
    quota_engine = make_rule_engine(settings) if event_engine is not None else None
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
    quotas_topic = topic(QUOTAS)
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

    guard = _OffsetGuard(app, {t.get_topic_name() for t in (metrics_topic, events_topic, quotas_topic)})
    node_to_state = table("node_to_state")
    event_key_to_rules = table("event_key_to_rules")
    quota_key_to_rules = table("quota_key_to_rules")
    published = PublishedAlerts(settings)
    clocks = PartitionClocks(step_s=_TICK_STEP_S)

    async def flush_outputs() -> None:
        """Wait until every output sent so far is on its topic (rollups, anomalies, alerts, dead letters)."""
        await app.producer.flush()

    # Working copies of the table entries, and what waits for a checkpoint (streams._checkpoint).
    cp = Checkpoints(interval_s=s.checkpoint_interval_s, flush=flush_outputs)
    metrics_name = metrics_topic.get_topic_name()
    cache: dict[bytes, NodeState] = cp.register(metrics_name, node_to_state, "node_to_state")
    checkpoint = cp.checkpoint
    aggregates: Any = None  # streams.aggregates.Aggregates when streams.cluster_aggregates is on

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, revoked: Any, **kw: Any) -> None:
        # Checkpoint what is done (a clean handover: whoever gets a partition next skips everything up
        # to here as already applied), then drop the working copies: Faust seeks every assigned
        # partition back to its committed offset, and the table plus that replay rebuild them.
        await checkpoint()
        cp.revoked()
        guard.reset()
        clocks.reset()
        event_rules.reset()
        quota_rules.reset()
        published.stale = True

    @app.on_partitions_assigned.connect
    async def _assigned(sender: Any, assigned: Any, **kw: Any) -> None:
        guard.install()

    @app.on_before_shutdown.connect
    async def _shutdown(sender: Any, **kw: Any) -> None:
        # The consumer commits what is acked when it stops, after this: a clean stop replays nothing.
        await checkpoint()

    @app.timer(max(0.1, s.checkpoint_interval_s / 2))
    async def checkpoint_idle_partitions() -> None:
        """The agents checkpoint as they go; this covers a partition whose input paused (its tail stays unacked otherwise)."""
        if cp.due():
            await checkpoint()
        if not app.rebalancing:
            await guard.repair_stalls()

    async def send(name: str, key: str, record: Record) -> None:
        producer = await app.maybe_start_producer()
        await producer.send(names[name], key.encode(), encode(record), None, None, None)
        M.RECORDS_OUT.labels(names[name]).inc()

    batch_publishers: dict[int, BatchPublisher] = {}

    async def send_many(name: str, records: list[tuple[str, bytes]]) -> None:
        """Pre-encoded ``(key, JSON)`` records, one batch per partition (streams._publish): hundreds per scrape."""
        if not records:
            return
        producer = await app.maybe_start_producer()
        raw = getattr(producer, "_producer", None)
        if raw is None or s.processing_guarantee == "exactly_once":
            # Under exactly_once Faust sends through per-partition transactional producers: use its path.
            for key, value in records:
                await producer.send(names[name], key.encode(), value, None, None, None)
        else:
            pub = batch_publishers.get(id(raw))
            if pub is None:
                batch_publishers.clear()
                pub = batch_publishers[id(raw)] = BatchPublisher(raw)
            await pub.publish(names[name], records)
        M.RECORDS_OUT.labels(names[name]).inc(len(records))

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
            # Our own earlier sends must be on the topic before it is read back (or merged, see load()).
            await flush_outputs()
            await published.ensure_loaded()
        for t in transitions:
            if published.fresh(t):
                await send("alerts", t.fingerprint, t)
            else:
                M.DUPLICATES_SUPPRESSED.labels("alert_transition").inc()

    def load_node(key: bytes, partition: int) -> NodeState:
        st = cache.get(key)
        if st is None:
            raw = node_to_state.get(key)
            st = NodeState.loads(raw) if raw else pipe.new_state(key.decode())
            pipe.attach(st)
            cache[key] = st
            clocks.keys[partition].add(key)
        return st

    async def tick_silent_nodes(p: int) -> None:
        """Tick the nodes of partition ``p`` silent for ``rules_stale_after_s``; forget those past the TTL."""
        now = clocks.time[p]
        tp = (metrics_name, p)
        for key in sorted(clocks.keys[p]):  # sorted: the same order, so the same outputs, on a replay
            st = load_node(key, p)
            idle = now - st.last_ts
            if idle < s.rules_stale_after_s:
                continue
            if idle >= s.node_state_ttl_s:
                log.info("forgetting node %s: silent for %.0f s of event time", key.decode(), idle)
                cp.forget_key(tp, key)
                clocks.keys[p].discard(key)
                continue
            out = pipe.tick(st, now)
            if out.changed:
                M.SILENT_TICKS.labels("node_to_state").inc()
                cp.dirty[tp].add(key)
            await publish_transitions(out.transitions)
            await send_many("rollups", out.rollup_records)
            if aggregates is not None:
                await aggregates.forward(st.key.split("/", 1)[0], out.rollup_records)

    @app.agent(metrics_topic, name="process_scrapes")
    async def process_scrapes(stream: faust.StreamT) -> None:
        """kubepulse.metrics.v1 → rollups, anomalies, alerts (and dead letters)."""
        async for event in stream.noack().events():
            msg = event.message
            if not await guard.admit(msg):
                continue
            M.RECORDS_IN.labels(msg.topic).inc()
            p = msg.partition
            tp = (msg.topic, p)
            generation = cp.generation
            cp.busy.add(tp)
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
                    clocks.seed(p, node_to_state)
                    st = load_node(key, p)
                    t0 = time.perf_counter()
                    out = pipe.process(st, scrape, offset=msg.offset)
                    M.PROCESS_SECONDS.observe(time.perf_counter() - t0)
                    if out.replayed:
                        M.DUPLICATES_SUPPRESSED.labels("input").inc()
                    else:
                        cp.dirty[tp].add(key)
                        M.SAMPLES_IN.inc(out.samples)
                        if out.late_dropped:
                            M.LATE_SAMPLES_DROPPED.labels("window closed").inc(out.late_dropped)
                        await publish_transitions(out.transitions)
                        for a in out.anomalies:
                            await send("anomalies", a.series_id, a)
                        await send_many("rollups", out.rollup_records)
                        if aggregates is not None:
                            await aggregates.forward(scrape.cluster, out.rollup_records)
                        if clocks.advance(p, scrape.timestamp.timestamp()):
                            await tick_silent_nodes(p)
            except Exception as exc:  # noqa: BLE001 - nothing escapes an agent: dead-letter and go on
                log.exception("scrape at %s[%s]@%s failed", msg.topic, p, msg.offset)
                await send_dead_letter(exc, stage="windows", message=msg)
            await cp.done(tp, event, generation)

    event_rules = KeyedRules(event_key_to_rules, event_engine, name="event_key_to_rules", step_s=4 * _TICK_STEP_S,
                             lag_s=s.window_grace_s, publish=publish_transitions)
    quota_rules = KeyedRules(quota_key_to_rules, quota_engine, name="quota_key_to_rules", step_s=4 * _TICK_STEP_S,
                             lag_s=s.window_grace_s, publish=publish_transitions)

    def keyed_rules_agent(source: faust.TopicT, name: str, model: type[Any], rules: KeyedRules,
                          observe: Callable[[Any, Any], list[AlertTransition]]) -> Any:
        """An agent reading ``model`` records from ``source``: ``observe(record, rule state)`` per record key → alerts."""

        async def agent(stream: faust.StreamT) -> None:
            async for event in stream.events():
                msg = event.message
                if not await guard.admit(msg):
                    continue  # acked, but it is read again (see _OffsetGuard) and Faust commits only without gaps
                M.RECORDS_IN.labels(msg.topic).inc()
                try:
                    rec = decode_or_dead_letter(model, msg.value, source_topic=msg.topic, partition=msg.partition,
                                                offset=msg.offset, key=msg.key)
                    if not isinstance(rec, model):
                        await send_dl(rec)
                    elif rules.engine is not None:
                        await rules.apply(msg, rec.key.encode(), rec.timestamp, lambda st: observe(rec, st))
                except Exception as exc:  # noqa: BLE001 - nothing escapes an agent
                    log.exception("%s at %s[%s]@%s failed", model.__name__, msg.topic, msg.partition, msg.offset)
                    await send_dead_letter(exc, stage="rules", message=msg)

        return app.agent(source, name=name)(agent)

    # kubepulse.events.v1 → alerts: event rules (OOMKilled, Evicted...), keyed by the involved object.
    process_events = keyed_rules_agent(
        events_topic, "process_events", KubeEvent, event_rules,
        lambda ev, st: event_engine.observe_event(ev, state=st))
    # kubepulse.quotas.v1 → alerts: quota rules (KubeQuotaAlmostFull...), keyed by the ResourceQuota.
    process_quotas = keyed_rules_agent(
        quotas_topic, "process_quotas", QuotaScrape, quota_rules,
        lambda q, st: [t for e in quota_entities(q) for t in quota_engine.observe_entity(e, q.timestamp, state=st)])

    if s.cluster_aggregates:
        # Cluster-wide workload, namespace and cluster rollups from the per-node partials (streams.aggregates).
        from streams.aggregates import Aggregates

        aggregates = Aggregates(app, settings, checkpoints=cp, guard=guard, table=table("cluster_to_aggregates"),
                                send_many=send_many, send_dead_letter=send_dead_letter)
        names["aggregates"] = aggregates.name

    if s.dispatch_alerts:
        # Alerts are routed, grouped and sent to receivers by the same process that raises them (the
        # dispatcher's own consumer group elects one worker to do it). The config is loaded here, so a
        # bad alerting file stops the worker at start with its error, not later inside a task.
        from streams.alerting import load_config, register_dispatcher

        register_dispatcher(app, settings, config=load_config(settings))

    app.kubepulse = {  # type: ignore[attr-defined]
        "pipeline": pipe,
        "published": published,
        "tables": (node_to_state, event_key_to_rules, quota_key_to_rules),
        "agents": (process_scrapes, process_events, process_quotas),
    }
    return app
