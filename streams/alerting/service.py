"""Runs the alert dispatcher on Kafka: reads kubepulse.alerts.v1 (and events, silences), writes notifications.

``run_dispatcher(settings)`` is the whole process (``kubepulse alerting
run``); ``register_dispatcher(app, settings)`` runs the same thing as a task
of the Faust worker. See :mod:`streams.alerting.dispatcher` for the delivery
guarantees; this module is the Kafka plumbing they rely on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata
from aiokafka.errors import KafkaError

from models.codec import decode, encode
from models.errors import RecordError
from models.kafka import assign_all, read_to_end
from models.records import AlertGroupState, AlertTransition, DeadLetter, KubeEvent, Notification, Silence
from models.settings import Settings
from streams._metrics import DEAD_LETTERS
from streams.alerting._metrics import COMMIT_FAILURES, DispatcherHealth
from streams.alerting.config import AlertingConfig, load_config
from streams.alerting.dispatcher import Dispatcher
from streams.alerting.errors import MatcherError
from streams.topics import ALERT_GROUPS, ALERTS, DEADLETTER, EVENTS, NOTIFICATIONS, SILENCES, create_topics

__all__ = ["KafkaSink", "run_dispatcher", "register_dispatcher"]

log = logging.getLogger("kubepulse.alerting")

_EVENTS_LOOKBACK = timedelta(minutes=15)
"""How far back the recent-events ring is filled at start: enough for a crash loop's BackOff history."""


class KafkaSink:
    """The dispatcher's output on Kafka: one idempotent producer, acks=all; failed writes are counted and raise."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings, *, health: DispatcherHealth) -> None:
        self._p = producer
        self._health = health
        prefix = settings.kafka.topic_prefix
        self._notifications = NOTIFICATIONS.named(prefix)
        self._deadletter = DEADLETTER.named(prefix)
        self._groups = ALERT_GROUPS.named(prefix)
        self._pending: list[asyncio.Future[Any]] = []

    async def _queue(self, topic: str, value: bytes | None, key: bytes) -> None:
        try:
            self._pending.append(await self._p.send(topic, value, key=key))
        except Exception as exc:
            self._health.write_failed(exc)
            raise

    async def notification(self, record: Notification) -> None:
        await self._queue(self._notifications, encode(record), record.key.encode())

    async def dead_letter(self, record: DeadLetter) -> None:
        # A lost page is the worst outcome: wait for this one's acknowledgement now.
        await self.send(self._deadletter, record.source_topic.encode(), encode(record))
        DEAD_LETTERS.labels(stage=record.stage).inc()

    async def group_state(self, key: str, state: AlertGroupState | None) -> None:
        await self._queue(self._groups, encode(state) if state is not None else None, key.encode())

    async def flush(self) -> None:
        """Wait for every queued write; the first failure is raised once all have settled (none is left unobserved)."""
        pending, self._pending = self._pending, []
        results = await asyncio.gather(*pending, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for exc in errors:
            self._health.write_failed(exc)
        if errors:
            raise errors[0]
        self._health.write_ok()

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        try:
            await self._p.send_and_wait(topic, value, key=key)
        except Exception as exc:
            self._health.write_failed(exc)
            raise


def _oldest_member_assignor(started: float) -> type[AbstractPartitionAssignor]:
    """An assignor that gives every partition to the member that started first.

    Grouping and inhibition need all alerts in one process, so one member
    dispatches and the others stand by; preferring the oldest member keeps the
    owner stable when a new worker joins (no needless hand-over).
    """

    class OldestMemberAssignor(AbstractPartitionAssignor):
        name = "kubepulse-oldest"
        version = 0

        @classmethod
        def assign(
            cls, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
        ) -> dict[str, ConsumerProtocolMemberAssignment]:
            def age(item: tuple[str, ConsumerProtocolMemberMetadata]) -> tuple[float, str]:
                member_id, meta = item
                try:
                    return float(meta.user_data.decode()), member_id
                except (AttributeError, ValueError):
                    return float("inf"), member_id

            owner = min(members.items(), key=age)[0]
            topics: set[str] = set()
            for meta in members.values():
                topics.update(meta.subscription)
            owned = []
            for topic in sorted(topics):
                parts = cluster.partitions_for_topic(topic) or set()
                owned.append((topic, sorted(parts)))
            return {
                member_id: ConsumerProtocolMemberAssignment(cls.version, owned if member_id == owner else [], b"")
                for member_id in members
            }

        @classmethod
        def metadata(cls, topics: Any) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), f"{started:.6f}".encode())

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            return None

    return OldestMemberAssignor


class _Takeover(ConsumerRebalanceListener):
    """Loads the group states when this worker gets the alerts partitions; drops them when it loses them."""

    def __init__(self, dispatcher: Dispatcher, settings: Settings) -> None:
        self._d = dispatcher
        self._settings = settings
        self.owned: set[TopicPartition] = set()
        self.settled = asyncio.Event()
        """Clear while a hand-over runs: the consume loop must not ingest into half-loaded state."""

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.settled.clear()
        if revoked:
            log.info("alert dispatcher: %d alerts partition(s) revoked, handing over", len(revoked))
            await self._d.suspend()
        self.owned -= set(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            if assigned:
                await self._load(assigned)
            self.owned |= set(assigned)
        finally:
            self.settled.set()

    async def _load(self, assigned: list[TopicPartition]) -> None:
        raw: dict[bytes | None, bytes | None] = {}
        for key, value in await read_to_end(self._settings, ALERT_GROUPS.named(self._settings.kafka.topic_prefix)):
            raw[key] = value  # the latest value per key wins; None is a tombstone (a finished group)
        latest = []
        for key, value in raw.items():
            if value is None:
                continue
            try:
                latest.append(decode(AlertGroupState, value))
            except RecordError as exc:
                log.error("unreadable alert group state %r skipped: %s", key, exc.reason)
        await self._d.load(latest)
        log.info("alert dispatcher took over %d partition(s) with %d alert group(s)", len(assigned), len(latest))


async def _follow(consumer: AIOKafkaConsumer, handle: Any, stop: asyncio.Event, *, settings: Settings, health: DispatcherHealth) -> None:
    while not stop.is_set():
        batch = await consumer.getmany(timeout_ms=200)
        for msgs in batch.values():
            for m in msgs:
                # A silence's dead letter that cannot be written is retried, not skipped.
                await _retrying_writes(settings, health, stop, lambda m=m: handle(m))


async def run_dispatcher(
    settings: Settings,
    *,
    config: AlertingConfig | None = None,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    time_scale: float = 1.0,
    health: DispatcherHealth | None = None,
) -> None:
    """Consume alerts and notify until ``stop`` is set (or the task is cancelled).

    ``ready`` is set once silences are loaded and the alerts consumer has
    joined its group (tests and the benchmark wait for it); ``health`` is
    what /readyz asks. A batch whose writes fail is retried with backoff,
    its offsets uncommitted, for ``streams.write_failure_timeout_s``; then
    the dispatcher raises (the process exits non-zero, its orchestrator
    restarts it).
    """
    config = config or load_config(settings)
    stop = stop or asyncio.Event()
    prefix = settings.kafka.topic_prefix
    await create_topics(settings, [ALERTS, EVENTS, NOTIFICATIONS, DEADLETTER, SILENCES, ALERT_GROUPS])
    producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()
    health = health or DispatcherHealth()
    sink = KafkaSink(producer, settings, health=health)
    dispatcher = Dispatcher(config, settings=settings, sink=sink, time_scale=time_scale, health=health)
    side = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), enable_auto_commit=False, group_id=None)
    alerts = _alerts_consumer(settings)
    tasks: list[asyncio.Task[None]] = []
    try:
        await _start_side(side, dispatcher, sink, settings)
        on_side = _side_handler(dispatcher, sink, SILENCES.named(prefix))
        tasks.append(asyncio.create_task(_follow(side, on_side, stop, settings=settings, health=health), name="alerting-side-topics"))
        listener = _Takeover(dispatcher, settings)
        await alerts.start()
        alerts.subscribe([ALERTS.named(prefix)], listener=listener)
        await _consume_alerts(alerts, listener, dispatcher, sink, settings=settings, health=health, stop=stop, ready=ready)
    finally:
        health.stopped()
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await dispatcher.close()
        for c in (alerts, side):
            try:
                await c.stop()
            except Exception:  # stopping is best effort; the broker times the member out anyway
                log.debug("stopping a consumer failed", exc_info=True)
        try:
            await sink.flush()
        finally:
            await producer.stop()


def _alerts_consumer(settings: Settings) -> AIOKafkaConsumer:
    """The alerts topic's consumer: one group, every partition to its oldest member (see ``_oldest_member_assignor``)."""
    return AIOKafkaConsumer(
        **settings.kafka.aiokafka_kwargs(),
        group_id=f"{settings.kafka.consumer_group}.alerting",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        partition_assignment_strategy=(_oldest_member_assignor(time.time()),),
        max_poll_records=500,
        # An alert is latency-critical and rare: do not let the broker hold a fetch open waiting for more.
        fetch_max_wait_ms=50,
    )


async def _start_side(side: AIOKafkaConsumer, dispatcher: Dispatcher, sink: KafkaSink, settings: Settings) -> None:
    """Load the silences to their end, then point ``side`` at new silences and at the recent Events (context)."""
    prefix = settings.kafka.topic_prefix
    # Silences first, to their end: a silenced alert must not page during start-up.
    for key, value in await read_to_end(settings, SILENCES.named(prefix)):
        await _put_silence(dispatcher, sink, SILENCES.named(prefix), key, value)
    await side.start()
    sil_tps = await assign_all(side, SILENCES.named(prefix))
    ev_tps = await assign_all(side, EVENTS.named(prefix))
    side.assign(sil_tps + ev_tps)
    sil_end = await side.end_offsets(sil_tps)
    for tp in sil_tps:
        side.seek(tp, sil_end[tp])
    since = int((datetime.now(UTC) - _EVENTS_LOOKBACK).timestamp() * 1000)
    offsets = await side.offsets_for_times({tp: since for tp in ev_tps})
    ev_end = await side.end_offsets(ev_tps)
    for tp in ev_tps:
        side.seek(tp, offsets[tp].offset if offsets.get(tp) else ev_end[tp])


def _side_handler(dispatcher: Dispatcher, sink: KafkaSink, silences_topic: str) -> Callable[[Any], Awaitable[None]]:
    """What the side consumer does with a message: a silence is put, an Event becomes context."""

    async def on_side(m: Any) -> None:
        if m.topic == silences_topic:
            await _put_silence(dispatcher, sink, m.topic, m.key, m.value, partition=m.partition, offset=m.offset)
        else:
            try:
                dispatcher.add_event(decode(KubeEvent, m.value))
            except RecordError:
                pass  # the events pipeline dead-letters bad events; here they are only context

    return on_side


async def _consume_alerts(
    alerts: AIOKafkaConsumer, listener: _Takeover, dispatcher: Dispatcher, sink: KafkaSink,
    *, settings: Settings, health: DispatcherHealth, stop: asyncio.Event, ready: asyncio.Event | None,
) -> None:
    """Until ``stop``: fetch alert transitions, hand them to the dispatcher, commit once their writes are confirmed."""
    ready_by = time.monotonic() + 15.0
    while not stop.is_set():
        # The group is joined inside getmany; ready means "owns the alerts
        # partitions" (or, for a standby, has waited long enough to be one).
        if not health.running and (listener.owned or time.monotonic() > ready_by):
            health.started()
            if ready is not None:
                ready.set()
        batch = await alerts.getmany(timeout_ms=200)
        if not batch:
            continue
        await listener.settled.wait()
        transitions, undecodable = _decode_alerts(batch)
        commit = _committer(alerts, {tp: msgs[-1].offset + 1 for tp, msgs in batch.items() if msgs})
        await _retrying_writes(settings, health, stop, lambda: _handle(sink, dispatcher, undecodable, transitions, commit))


def _decode_alerts(batch: dict[TopicPartition, list[Any]]) -> tuple[list[AlertTransition], list[DeadLetter]]:
    """The batch's alert transitions, and a dead letter for each message that is not one."""
    transitions = []
    undecodable = []
    for tp, msgs in batch.items():
        for m in msgs:
            try:
                transitions.append(decode(AlertTransition, m.value))
            except RecordError as exc:
                undecodable.append(
                    DeadLetter(
                        source_topic=tp.topic, partition=tp.partition, offset=m.offset,
                        key=m.key.decode(errors="replace") if m.key else None,
                        stage="decode", reason=exc.reason, error_type=exc.error_type,
                        payload=(m.value or b"").decode(errors="backslashreplace")[:10000],
                        occurred_at=datetime.now(UTC),
                    )
                )
    return transitions, undecodable


def _committer(alerts: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> Callable[[], Awaitable[None]]:
    """Commit ``offsets`` of a handled batch; a failed commit is counted, not fatal."""

    async def commit() -> None:
        try:
            await alerts.commit(offsets)
        except KafkaError as exc:
            # Mostly a rebalance between the fetch and the commit (CommitFailedError, or
            # IllegalStateError once the partitions are gone). The batch's group states are
            # already acknowledged in the state topic, so nothing is lost: the rejoin that
            # follows reloads the groups from there (_Takeover), the uncommitted batch comes
            # again and its sequences drop it as known, and `delivered` keeps what was sent
            # from being sent again. A later batch's commit covers these offsets too.
            COMMIT_FAILURES.labels(error=type(exc).__name__).inc()
            log.warning("alert dispatcher: committing the alerts offsets failed (%s: %s); the batch will be "
                        "replayed and dropped as known", type(exc).__name__, exc)

    return commit


async def _handle(
    sink: KafkaSink, dispatcher: Dispatcher, undecodable: list[DeadLetter], transitions: list[AlertTransition], commit: Any
) -> None:
    while undecodable:
        await sink.dead_letter(undecodable[0])
        undecodable.pop(0)  # written: a retry of the batch does not write it again
    await dispatcher.ingest(transitions, commit=commit)


async def _retrying_writes(settings: Settings, health: DispatcherHealth, stop: asyncio.Event, attempt: Any) -> None:
    """Run ``attempt`` until its Kafka writes are confirmed: backoff up to 5 s, give up after the write failure timeout.

    Meanwhile the batch's offsets stay uncommitted and /readyz is false
    (the sink marks the health); ``ingest`` keeps the groups it could not
    write and writes them again, and the sequence check makes the retried
    transitions harmless.
    """
    delay = 0.1
    first_failure: float | None = None
    while True:
        try:
            await attempt()
            return
        except KafkaError as exc:
            first_failure = first_failure or time.monotonic()
            failing_for = time.monotonic() - min(first_failure, health.writes_failing_since or first_failure)
            if failing_for > settings.streams.write_failure_timeout_s:
                log.critical("alert dispatcher: Kafka writes failed for %.0f s, giving up: %s: %s",
                             failing_for, type(exc).__name__, exc)
                raise
            log.warning("alert dispatcher: a Kafka write failed (%s: %s), retrying the batch in %.1f s",
                        type(exc).__name__, exc, delay)
        if stop.is_set():
            return  # stopping: the uncommitted batch is the next owner's
        await asyncio.sleep(delay)
        delay = min(5.0, delay * 2)


async def _put_silence(
    dispatcher: Dispatcher, sink: KafkaSink, topic: str, key: bytes | None, value: bytes | None,
    *, partition: int | None = None, offset: int | None = None,
) -> None:
    """Give a silence to the dispatcher; one it cannot use mutes nothing, so it is dead-lettered with the reason."""
    if value is None:
        return
    try:
        dispatcher.add_silence(decode(Silence, value))
        return
    except RecordError as exc:
        reason, error_type = exc.reason, exc.error_type
    except MatcherError as exc:
        reason, error_type = f"a matcher of this silence cannot be parsed, so it mutes nothing: {exc}", "MatcherError"
    sid = key.decode(errors="replace") if key else None
    log.error("SILENCE NOT APPLIED: silence %s on %s is dead-lettered: %s", sid, topic, reason)
    await sink.dead_letter(
        DeadLetter(
            source_topic=topic, partition=partition, offset=offset, key=sid, stage="silence",
            reason=reason[:4000], error_type=error_type,
            payload=value.decode(errors="backslashreplace")[:10000], occurred_at=datetime.now(UTC),
        )
    )


def register_dispatcher(app: Any, settings: Settings, *, config: AlertingConfig | None = None) -> None:
    """Run the dispatcher inside a Faust worker (``create_app`` calls this); one task, stopped with the app."""

    @app.task
    async def alert_dispatcher() -> None:
        await run_dispatcher(settings, config=config)
