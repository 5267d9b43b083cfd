"""Everything Faust-specific about the stream worker, in one place: the app, confirmed writes, the offset guard.

Why Faust is kept, and where it ends. Faust (faust-streaming) gives the
worker its consumer group and partition assignment, agents over streams of
raw messages with explicit acks, changelog-backed tables with recovery and
standby replicas, timers and the worker lifecycle (signals, graceful stop).
It does not give confirmed writes: ``topic.send`` and ``table[key] = v``
queue records in a buffer that Faust flushes for at most 0.1 s before it
commits offsets, and a failed send is logged, not retried. So every record
the worker writes (outputs, dead letters, changelog entries) goes through
:class:`Outbox`, a plain aiokafka producer of our own (acks=all, idempotent,
compressed), and an input message is acked only after the writes that
depend on it are confirmed (``streams._state``). What of Faust is used, and
must be re-checked on a Faust upgrade, is all here:

- ``faust.App`` settings (``make_app``), ``app.topic``, ``app.Table`` with raw
  bytes keys and values, ``app.agent`` over ``stream.noack().events()`` and
  ``event.ack()``, ``app.timer``, the rebalance and shutdown signals;
- a table's in-memory store (``table.data``: what changelog recovery fills,
  and what :meth:`Runtime.write_table` keeps in step with what we write) and
  its ``changelog_topic`` name; ``Store._key_partition`` (``table_keys``);
- ``Consumer.perform_seek`` / ``seek`` / ``highwater`` (:class:`OffsetGuard`).

Everything else (partitioning, batching, retries, acks) is ours.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from models.errors import ConfigError
from models.kafka import partition_counts, records_to_end, start_producer, topic_partitions
from models.records import AlertTransition, DeadLetter, Record
from models.settings import Settings
from streams import _metrics as M
from streams._publish import partitions_for_keys
from streams.codec import encode
from streams.deadletter import dead_letter
from streams.errors import WriteFailed
from streams.topics import ALERTS, DEADLETTER, TopicSpec

__all__ = ["Runtime", "Outbox", "OffsetGuard", "PublishedAlerts", "make_app", "table_keys", "partition_mismatch"]

log = logging.getLogger(__name__)

_ALERT_HISTORY = timedelta(days=1)
"""How far back a worker reads kubepulse.alerts.v1 to learn what was published: far beyond any replay."""

_CHANGELOG_CONFIG = {
    # A table's changelog is read whole at every (re)assignment, so it must stay close to one entry per key:
    # roll segments often enough for the log cleaner to compact all but the newest few minutes.
    "segment.ms": str(10 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.2",
}


def _broker_urls(settings: Settings) -> list[str]:
    return [f"kafka://{hp.strip()}" for hp in settings.kafka.bootstrap_servers.split(",")]


def make_app(settings: Settings) -> faust.App:
    """The worker's Faust app from the settings (no module-level app: tests run isolated apps side by side)."""
    k = settings.kafka
    s = settings.streams
    return faust.App(
        k.consumer_group,
        broker=_broker_urls(settings),
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        topic_partitions=k.topic_partitions,
        topic_replication_factor=k.topic_replication,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_compression_type=None if k.compression_type == "none" else k.compression_type,
        broker_commit_interval=min(2.8, s.checkpoint_interval_s),
        # Faust's default makes a rebalance (and a shutdown) wait until every message an agent has taken
        # is acked. Ours are acked only after a checkpoint, so that wait deadlocked the whole group. The
        # revoke and shutdown hooks checkpoint instead, and whatever is still unacked is replayed.
        stream_wait_empty=False,
        # Messages fetched ahead, per partition: a 250-pod scrape is ~0.5 MB and one takes milliseconds to process.
        stream_buffer_maxsize=64,
        # Our messages are big (a whole node scrape); fetch enough per poll to keep the agent busy.
        consumer_max_fetch_size=8 * 1024 * 1024,
        table_standby_replicas=1,
        # A killed worker's partitions move to the others after this long: short, so a crash costs seconds.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        logging_config=None,
    )


# --------------------------------------------------------------------------
# Confirmed writes
# --------------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    topic: str
    partition: int | None
    """None: not partitioned yet (the brokers' metadata was out of reach)."""
    records: list[tuple[bytes, bytes | None]]
    future: Any = None


@dataclass(slots=True)
class _WriteHealth:
    failing_since: float | None = None
    last_error: str = ""
    fatal: str = ""


class Outbox:
    """Every record the worker writes, held until the broker confirmed it.

    :meth:`put` is synchronous (so a caller can queue a message's outputs and
    mark its state changed with no await in between, and a checkpoint never
    sees one without the other); :meth:`drain` hands what was put to the
    producer, one batch per partition; :meth:`confirm` waits until everything
    handed over so far is acknowledged, re-sending what failed with backoff,
    and raises :class:`WriteFailed` once writes have failed for
    ``streams.write_failure_timeout_s``. Meanwhile ``failing`` is true
    (``/readyz`` false, ``kubepulse_stream_writes_failing`` 1) and new drains
    wait: processing pauses instead of piling up records that cannot go out.

    Keys are partitioned as a keyed ``producer.send()`` would (murmur2, as
    Kafka's Java client), unless a partition is given (changelog entries go to
    their input partition).
    """

    _BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
    _SLOW_S = 5.0
    """A confirmation taking this long counts as failing (not ready): a broker that is gone answers nothing until
    the producer's request timeout expires the batches, and readiness must not wait for that."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout_s = settings.streams.write_failure_timeout_s
        # A batch the brokers do not take within request_timeout_ms fails, and the outbox sends it again.
        self._kwargs = settings.kafka.producer_kwargs(linger_ms=5, max_batch_size=512 * 1024,
                                                      max_request_size=1024 * 1024, request_timeout_ms=15_000)
        self.producer: AIOKafkaProducer | None = None
        self._queued: list[tuple[str, int | None, list[tuple[bytes, bytes | None]]]] = []
        self._inflight: list[_Batch] = []
        self._partitions: dict[str, list[int]] = {}
        self._keys: dict[str, dict[bytes, int]] = {}
        self._lock = asyncio.Lock()
        self.health = _WriteHealth()
        self.largest: dict[str, int] = {}
        """Topic → largest record value written (also on /metrics)."""
        self._busy_since: float | None = None
        """When the confirmation in progress began (None: none is)."""
        M.WRITES_FAILING.set_function(lambda: 1.0 if self.failing else 0.0)
        self._ok = asyncio.Event()
        self._ok.set()

    @property
    def failing(self) -> bool:
        """Writes failed and are being retried, or the brokers have not confirmed them for ``_SLOW_S``."""
        busy = self._busy_since is not None and time.monotonic() - self._busy_since >= self._SLOW_S
        return busy or self.health.failing_since is not None or bool(self.health.fatal)

    async def start(self) -> None:
        if self.producer is None:
            self.producer = await start_producer(**self._kwargs)

    async def stop(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            await producer.stop()

    # -- queueing -----------------------------------------------------------------

    def put(self, topic: str, records: Iterable[tuple[str | bytes, bytes | None]], *, partition: int | None = None) -> None:
        """Queue ``(key, value)`` records for ``topic`` (a value of None is a tombstone); nothing is sent yet."""
        batch = [(k.encode() if isinstance(k, str) else k, v) for k, v in records]
        if batch:
            self._queued.append((topic, partition, batch))
            M.RECORDS_OUT.labels(topic).inc(len(batch))

    def put_record(self, topic: str, key: str, record: Record) -> None:
        self.put(topic, [(key, encode(record))])

    async def drain(self) -> None:
        """Hand what was put to the producer (waiting, while writes fail, until they recover)."""
        if not self._queued:
            return
        await self._ok.wait()
        async with self._lock:
            await self._send_queued()

    async def _partitions_of(self, topic: str) -> list[int]:
        assert self.producer is not None
        parts = self._partitions.get(topic)
        known = self.producer.client.cluster.partitions_for_topic(topic)
        if parts is None or (known is not None and len(known) != len(parts)):
            parts = self._partitions[topic] = sorted(await self.producer.partitions_for(topic))
            self._keys[topic] = {}
        return parts

    async def _send_queued(self) -> None:
        """Hand the queued records to the producer; what cannot be handed over (no broker) becomes a failed batch."""
        queued, self._queued = self._queued, []
        try:
            await self.start()
        except KafkaError as exc:
            self._inflight += [_Batch(t, p, r, _failed_future(exc)) for t, p, r in queued]
            return
        grouped: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        for topic, partition, records in queued:
            if partition is not None:
                grouped.setdefault((topic, partition), []).extend(records)
                continue
            try:
                parts = await self._partitions_of(topic)
            except KafkaError as exc:  # no metadata without a broker: partitioned when sent again
                self._inflight.append(_Batch(topic, None, records, _failed_future(exc)))
                continue
            cache = self._keys[topic]
            if len(cache) > 2_000_000:
                cache.clear()
            new = list(dict.fromkeys(k for k, _ in records if k not in cache))
            if new:
                cache.update(zip(new, partitions_for_keys(new, parts), strict=True))
            for k, v in records:
                grouped.setdefault((topic, cache[k]), []).append((k, v))
        for (topic, partition), records in grouped.items():
            await self._send(topic, partition, records)

    async def _send(self, topic: str, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        """Hand one partition's records to the producer as few record batches as fit; keep their futures."""
        producer = self.producer
        assert producer is not None
        largest = max(len(v or b"") for _, v in records)
        if largest > self.largest.get(topic, 0):
            self.largest[topic] = largest
            M.LARGEST_RECORD.labels(topic).set(largest)
        batch = producer.create_batch()
        start = 0
        for i, (key, value) in enumerate(records):
            if batch.append(key=key, value=value, timestamp=None) is not None:
                continue
            if i == start:
                raise WriteFailed(f"a record of {len(value or b'')} bytes for {topic} does not fit in a batch of "
                                  "max_batch_size; nothing kubepulse writes should be that large")
            await self._send_batch(batch, topic, partition, records[start:i])
            batch, start = producer.create_batch(), i
            batch.append(key=key, value=value, timestamp=None)
        await self._send_batch(batch, topic, partition, records[start:])

    async def _send_batch(self, batch: Any, topic: str, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        assert self.producer is not None
        try:
            fut = await self.producer.send_batch(batch, topic, partition=partition)
        except KafkaError as exc:  # e.g. no metadata while the brokers are away
            fut = _failed_future(exc)
        self._inflight.append(_Batch(topic, partition, records, fut))

    # -- confirmation ---------------------------------------------------------------

    async def confirm(self) -> None:
        """Return once every record put so far is acknowledged; raise :class:`WriteFailed` after the timeout."""
        if not self._queued and not self._inflight:
            return
        self._busy_since = time.monotonic()
        attempt = 0
        try:
            while True:
                async with self._lock:
                    await self._send_queued()
                    inflight, self._inflight = self._inflight, []
                results = await asyncio.gather(*(b.future for b in inflight), return_exceptions=True)
                failed = [(b, r) for b, r in zip(inflight, results, strict=True) if isinstance(r, BaseException)]
                if not failed and not self._inflight:
                    if self.health.failing_since is not None:
                        log.warning("writes recovered after %.1f s", time.monotonic() - self.health.failing_since)
                    self.health.failing_since = None
                    self._ok.set()
                    return
                if failed:
                    await self._failed(failed, attempt)
                    attempt += 1
        finally:
            self._busy_since = None

    async def _failed(self, failed: list[tuple[_Batch, BaseException]], attempt: int) -> None:
        now = time.monotonic()
        h = self.health
        if h.failing_since is None:
            h.failing_since = now
        self._ok.clear()
        b0, e0 = failed[0]
        h.last_error = f"{b0.topic}[{b0.partition}]: {type(e0).__name__}: {e0}"
        for b, e in failed:
            M.WRITE_FAILURES.labels(b.topic, type(e).__name__).inc(len(b.records))
        elapsed = now - h.failing_since
        if elapsed >= self.timeout_s:
            h.fatal = (f"writes failed for {elapsed:.0f} s (streams.write_failure_timeout_s {self.timeout_s:g} s), "
                       f"last: {h.last_error}. {_advice(e0)}")
            raise WriteFailed(h.fatal) from e0
        delay = self._BACKOFF_S[min(attempt, len(self._BACKOFF_S) - 1)]
        log.warning("%d record batch(es) not confirmed (%s); sending again in %.1f s (giving up after %.0f s more)",
                    len(failed), h.last_error, delay, self.timeout_s - elapsed)
        await asyncio.sleep(delay)
        # An idempotent producer whose batch expired or failed cannot go on with the next sequence numbers
        # of that partition: a fresh producer (a new producer id) sends the records again. A record the
        # broker did take before the error is then written twice: outputs are idempotent downstream
        # (document ids, alert sequence numbers), changelog entries are the same key and value.
        async with self._lock:
            await self.stop()
            self._queued[:0] = [(b.topic, b.partition, b.records) for b, _ in failed]
            await self._send_queued()


def _failed_future(exc: BaseException) -> asyncio.Future:
    fut: asyncio.Future = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    return fut


def _advice(exc: BaseException) -> str:
    name = type(exc).__name__
    if "TooLarge" in name:
        return ("A record is larger than the topic's max.message.bytes: kubepulse keeps every record below 900 KiB "
                "(a state entry per pod), so check the topic's max.message.bytes override (kafka-configs --describe).")
    if "Authorization" in name:
        return "The worker's principal may not write this topic: grant WRITE (and DESCRIBE) on the kubepulse topics."
    return "Check that the brokers are reachable from the worker (kafka.bootstrap_servers) and accept writes."


# --------------------------------------------------------------------------
# Offsets after a rebalance
# --------------------------------------------------------------------------


class OffsetGuard:
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

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.topics: set[str] = set()
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


def table_keys(table: Any, partition: int) -> set[bytes]:
    """Keys a Faust table holds for ``partition`` after changelog recovery.

    Faust's in-memory store records each recovered key's changelog partition
    (``Store._key_partition``, faust-streaming 0.15): the changelog partition
    of a key is the input partition that wrote it. Keys this worker wrote
    itself are tracked by the caller. Re-check on a Faust upgrade: without
    that index this returns nothing, and a key silent since before a restart
    is only ticked once it sends again.
    """
    store = table.data
    index = getattr(store, "_key_partition", None) or {}
    return {k for k in list(store.keys()) if index.get(k) == partition}


# --------------------------------------------------------------------------
# Alert transitions published exactly once
# --------------------------------------------------------------------------


class PublishedAlerts:
    """Fingerprint → highest transition sequence already on kubepulse.alerts.v1.

    Loaded from the topic itself after each rebalance (read_committed), so a
    worker that takes over a partition, or restarts after SIGKILL, does not
    publish again a transition its predecessor already published. What this
    worker itself put is merged in (never replaced), so a read that races our
    own in-flight writes cannot forget them; a put that is never confirmed
    ends the worker (``Outbox.confirm``), and its successor reads the topic.
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
        known = dict(self.seq)
        consumer = AIOKafkaConsumer(**self.settings.kafka.aiokafka_kwargs(), group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed")
        await consumer.start()
        try:
            seq: dict[str, int] = {}
            since = int((datetime.now(UTC) - _ALERT_HISTORY).timestamp() * 1000)
            tps = await topic_partitions(consumer, self.topic, timeout=0.1)  # none yet: nothing was published
            async for m in records_to_end(consumer, tps, since_ms=since):
                fp = m.key.decode() if m.key else ""
                n = _sequence_of(m.value)
                if n > seq.get(fp, 0):
                    seq[fp] = n
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


# --------------------------------------------------------------------------
# Co-partitioning
# --------------------------------------------------------------------------


def partition_mismatch(counts: dict[str, int], want: int) -> str | None:
    """What is wrong when a topic of ``counts`` (name → partitions) has not ``want`` partitions, else None.

    Faust keeps a key's table state on the changelog partition numbered like the input partition the
    key came from, and creates changelogs and repartition topics with ``kafka.topic_partitions``. With
    another count on either side a successor restores the wrong keys, or none, after a rebalance (rule
    state lost, alerts that never resolve): so the worker refuses to start instead.

    >>> print(partition_mismatch({"t.kubepulse.quotas.v1": 3}, 8))  # doctest: +NORMALIZE_WHITESPACE
    kafka.topic_partitions (env KUBEPULSE_KAFKA__TOPIC_PARTITIONS) is 8, but the worker's input and table
    topics must all have exactly that many partitions (Faust co-partitions a table's changelog with its
    input): topic t.kubepulse.quotas.v1 has 3 partitions. Fix: set kafka.topic_partitions to 3 (then every
    topic agrees), or recreate the topic t.kubepulse.quotas.v1 with 8 partitions.
    """
    wrong = {name: n for name, n in sorted(counts.items()) if n != want}
    if not wrong:
        return None
    found = "; ".join(f"topic {name} has {n} partition{'s' if n != 1 else ''}" for name, n in wrong.items())
    listed = ", ".join(wrong)
    fixes = [f"recreate the topic{'s' if len(wrong) > 1 else ''} {listed} with {want} partitions"]
    if len(set(counts.values())) == 1:
        fixes.insert(0, f"set kafka.topic_partitions to {next(iter(counts.values()))} (then every topic agrees)")
    return (f"kafka.topic_partitions (env KUBEPULSE_KAFKA__TOPIC_PARTITIONS) is {want}, but the worker's input and "
            f"table topics must all have exactly that many partitions (Faust co-partitions a table's changelog with "
            f"its input): {found}. Fix: {', or '.join(fixes)}.")


# --------------------------------------------------------------------------
# The runtime
# --------------------------------------------------------------------------


@dataclass
class Runtime:
    """The app and what every stage shares: topics by kind, the outbox, dead letters, published alerts."""

    settings: Settings
    app: faust.App = field(init=False)
    outbox: Outbox = field(init=False)
    guard: OffsetGuard = field(init=False)
    published: PublishedAlerts = field(init=False)
    names: dict[str, str] = field(default_factory=dict)
    """Record kind → topic name under the prefix (``rollups`` → ``t1.kubepulse.rollups.v2``)."""

    def __post_init__(self) -> None:
        self.app = make_app(self.settings)
        self.outbox = Outbox(self.settings)
        self.guard = OffsetGuard(self.app)
        self.published = PublishedAlerts(self.settings)

        @self.app.on_partitions_assigned.connect
        async def _assigned(sender: Any, assigned: Any, **kw: Any) -> None:
            self.guard.install()

        @self.app.on_partitions_revoked.connect
        async def _revoked_alerts(sender: Any, revoked: Any, **kw: Any) -> None:
            self.published.stale = True

    # -- declarations -------------------------------------------------------------

    def topic(self, spec: TopicSpec, *, internal: bool = False) -> faust.TopicT:
        """The Faust topic of ``spec`` under the prefix (raw bytes: agents decode strictly themselves)."""
        k = self.settings.kafka
        name = spec.named(k.topic_prefix)
        self.names[spec.kind] = name
        return self.app.topic(name, key_serializer="raw", value_serializer="raw", partitions=k.topic_partitions,
                              replicas=k.topic_replication, internal=internal)

    def table(self, name: str) -> Any:
        """A changelog-backed table of raw bytes keys and values, compacted often enough to recover fast."""
        return self.app.Table(name, default=None, key_type=bytes, value_type=bytes,
                              partitions=self.settings.kafka.topic_partitions, extra_topic_configs=_CHANGELOG_CONFIG)

    def input(self, topic: faust.TopicT) -> None:
        """``topic`` is read by an agent: the offset guard watches its partitions."""
        self.guard.topics.add(topic.get_topic_name())

    def copartitioned(self) -> list[str]:
        """The topics that must have ``kafka.topic_partitions`` partitions: agents' inputs (repartition
        topics included) and the tables' changelogs."""
        changelogs = {t.changelog_topic.get_topic_name() for t in self.app.tables.values()}
        return sorted(self.guard.topics | changelogs)

    async def check_partitions(self) -> None:
        """Raise ``ConfigError`` if an existing co-partitioned topic has another partition count than
        ``kafka.topic_partitions`` (called before the worker consumes; missing topics are created right)."""
        problem = partition_mismatch(await partition_counts(self.settings, self.copartitioned()),
                                     self.settings.kafka.topic_partitions)
        if problem:
            raise ConfigError(problem)

    # -- writes ---------------------------------------------------------------------

    def send(self, kind: str, key: str, record: Record) -> None:
        """Queue one record for the topic of ``kind`` (sent by the next drain, confirmed by the next checkpoint)."""
        self.outbox.put_record(self.names[kind], key, record)

    def send_many(self, kind: str, records: Sequence[tuple[str, bytes]]) -> None:
        """Queue pre-encoded ``(key, JSON)`` records for the topic of ``kind``."""
        self.outbox.put(self.names[kind], records)

    def dead_letter(self, exc: BaseException, *, stage: str, message: Any) -> None:
        """Queue the dead letter of ``message`` that failed at ``stage``."""
        self.send_dead_letter(dead_letter(exc, source_topic=message.topic, stage=stage, partition=message.partition,
                                          offset=message.offset, key=message.key, payload=message.value))

    def send_dead_letter(self, dl: DeadLetter) -> None:
        M.DEAD_LETTERS.labels(dl.stage).inc()
        self.outbox.put_record(self.names.get("deadletter") or DEADLETTER.named(self.settings.kafka.topic_prefix),
                               dl.source_topic, dl)

    def write_table(self, table: Any, partition: int, entries: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Queue table entries for the changelog partition ``partition`` (None deletes), and keep the store in step.

        Not ``table[key] = value``: Faust takes the changelog partition from the current event and queues
        the write unconfirmed; a checkpoint also runs from a timer and the rebalance hook.
        """
        store = table.data
        index = getattr(store, "_key_partition", None)
        for key, value in entries:
            if value is None:
                store.pop(key, None)
                if index is not None:
                    index.pop(key, None)
            else:
                store[key] = value
                if index is not None:
                    # Faust's own index of which partition a key's changelog is on, so that after a
                    # rebalance our keys are found (table_keys) and those of lost partitions dropped.
                    index[key] = partition
        self.outbox.put(table.changelog_topic.get_topic_name(), entries, partition=partition)

    async def prepare(self) -> None:
        """Before an agent handles a message: know what kubepulse.alerts.v1 holds (after each rebalance).

        Awaited before the message, so that handling it (state change and queued outputs) has no await
        inside: a checkpoint then never snapshots a state whose transitions are not queued yet.
        """
        if self.published.stale:
            # Our own earlier writes must be on the topic before it is read back (or merged, see load()).
            await self.outbox.confirm()
            await self.published.ensure_loaded()

    def publish_transitions(self, transitions: Sequence[AlertTransition]) -> None:
        """Queue alert transitions not published before (by us, or by whoever had the partition before)."""
        for t in transitions:
            if self.published.fresh(t):
                self.send("alerts", t.fingerprint, t)
            else:
                M.DUPLICATES_SUPPRESSED.labels("alert_transition").inc()

    # -- health -----------------------------------------------------------------------

    def ready(self) -> bool:
        """/readyz: the app runs, no rebalance is in progress, and writes are confirmed."""
        return bool(self.app.started) and not self.app.rebalancing and not self.outbox.failing

    def fatal(self, exc: BaseException) -> None:
        """A write could not be confirmed in time: exit non-zero now, with nothing more acked or committed.

        Offsets committed so far only cover input whose writes were confirmed, so the successor (the
        orchestrator restarts the pod) replays exactly what is missing. A graceful stop would run the
        shutdown checkpoint, which cannot succeed either.
        """
        log.critical("stopping the worker: %s", exc)
        logging.shutdown()
        os._exit(3)

