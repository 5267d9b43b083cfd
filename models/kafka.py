"""Kafka plumbing every kubepulse process shares: create topics, count or wait for a topic's partitions, read a topic to its end.

It lives in ``models/`` beside the settings it connects with
(``KafkaSettings.aiokafka_kwargs``), because ``models/`` is the one part every
other part (collectors, streams, the CLI, the tests) may import. It takes topic
names, not ``streams.topics`` specs, for the same reason: ``models/`` imports
nothing else of ours.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from models.settings import Settings

__all__ = ["start_producer", "create_topics", "partition_counts", "topic_partitions", "assign_all", "records_to_end", "read_to_end"]


async def start_producer(**kwargs: Any) -> AIOKafkaProducer:
    """A started ``AIOKafkaProducer(**kwargs)``; if starting fails, the producer is stopped before the error propagates.

    A producer whose ``start()`` raised (no broker, a cancelled task) still
    holds its client and connections: stopping it is what keeps a retry loop
    from leaking one per attempt.
    """
    producer = AIOKafkaProducer(**kwargs)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


async def create_topics(
    settings: Settings,
    names: Iterable[str],
    *,
    compacted: Collection[str] = (),
    partitions: int | None = None,
    replication: int | None = None,
) -> list[str]:
    """Create the topics of ``names`` that do not exist yet; return the names created.

    Partitions and replication default to ``kafka.topic_partitions`` and
    ``kafka.topic_replication`` (never rely on the broker's auto-create); the
    names in ``compacted`` get ``cleanup.policy=compact``. Another process
    creating the same topics at the same time is not an error: same names, same
    topics.
    """
    k = settings.kafka
    admin = AIOKafkaAdminClient(**k.aiokafka_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                name,
                num_partitions=k.topic_partitions if partitions is None else partitions,
                replication_factor=k.topic_replication if replication is None else replication,
                topic_configs={"cleanup.policy": "compact"} if name in compacted else {},
            )
            for name in dict.fromkeys(names)
            if name not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another worker, collector or simulator won the race
            # Right after creation a partition may answer NotLeaderForPartition for a
            # moment: producers retry (aiokafka logs a warning), nothing is lost.
        return [t.name for t in new]
    finally:
        await admin.close()


async def partition_counts(settings: Settings, names: Iterable[str]) -> dict[str, int]:
    """How many partitions each existing topic of ``names`` has; a topic that does not exist is left out.

    Only topics the broker lists are described: a metadata request for a missing topic may auto-create it
    on a broker with ``auto.create.topics.enable``, with the broker's partition count, not ours.
    """
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in dict.fromkeys(names) if n in existing]
        if not wanted:
            return {}
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(wanted) if not t["error_code"]}
    finally:
        await admin.close()


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str, *, timeout: float = 30.0) -> list[TopicPartition]:
    """The partitions of ``topic``, sorted, once the consumer's metadata knows them; ``[]`` if it still does not after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() >= deadline:
            return []
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call for this
        await asyncio.sleep(0.1)


async def assign_all(consumer: AIOKafkaConsumer, topic: str, *, timeout: float = 30.0) -> list[TopicPartition]:
    """Assign every partition of ``topic`` to a group-less consumer (waits for metadata up to ``timeout``)."""
    tps = await topic_partitions(consumer, topic, timeout=timeout)
    if not tps:
        raise TimeoutError(f"topic {topic} has no partitions after {timeout:.0f} s")
    consumer.assign(tps)
    return tps


async def records_to_end(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], *, since_ms: int | None = None, only_before_end: bool = False
) -> AsyncIterator[Any]:
    """Assign ``tps`` and yield their records from ``since_ms`` (else the beginning) until each reaches its end as of now.

    The end offsets are read once, before the first fetch. A fetch may bring
    records written after that: they are yielded too, unless ``only_before_end``.
    """
    if not tps:
        return
    consumer.assign(tps)
    if since_ms is not None:
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        for tp in tps:
            start = starts.get(tp)
            consumer.seek(tp, ends[tp] if start is None else start.offset)
    else:
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
    remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=500)
        for tp, msgs in batch.items():
            for m in msgs:
                if not only_before_end or m.offset < ends[tp]:
                    yield m
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)


async def read_to_end(
    settings: Settings, topic: str, *, timeout: float = 30.0, missing_ok: bool = False
) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of ``topic`` from the beginning up to its end at call time, in offset order per partition.

    A topic without partitions after ``timeout`` raises ``TimeoutError``, or
    reads as empty with ``missing_ok``.
    """
    consumer = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic, timeout=timeout)
        if not tps and not missing_ok:
            raise TimeoutError(f"topic {topic} has no partitions after {timeout:.0f} s")
        return [(m.key, m.value) async for m in records_to_end(consumer, tps)]
    finally:
        await consumer.stop()
