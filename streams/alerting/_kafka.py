"""Kafka helpers of the alerting package: create its topics, read a compacted topic to its end."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from models.settings import Settings
from streams.topics import TopicSpec

__all__ = ["ensure_topics", "read_to_end", "assign_all"]


async def ensure_topics(settings: Settings, specs: list[TopicSpec]) -> None:
    """Create the topics that do not exist yet (compacted ones with ``cleanup.policy=compact``)."""
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                spec.named(settings.kafka.topic_prefix),
                num_partitions=settings.kafka.topic_partitions,
                replication_factor=settings.kafka.topic_replication,
                topic_configs={"cleanup.policy": "compact"} if spec.compacted else {},
            )
            for spec in specs
            if spec.named(settings.kafka.topic_prefix) not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another worker won the race: same specs, same topic
    finally:
        await admin.close()


async def assign_all(consumer: AIOKafkaConsumer, topic: str, *, timeout: float = 30.0) -> list[TopicPartition]:
    """Assign every partition of ``topic`` to a group-less consumer (waits for metadata)."""
    deadline = time.monotonic() + timeout
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            return tps
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no partitions after {timeout:.0f} s")
        await consumer._client.force_metadata_update()  # aiokafka has no public call for this
        await asyncio.sleep(0.1)


async def read_to_end(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of ``topic`` from the beginning up to its end at call time, in offset order per partition."""
    consumer = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[tuple[bytes | None, bytes | None]] = []
    try:
        tps = await assign_all(consumer, topic)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, msgs in batch.items():
                out.extend((m.key, m.value) for m in msgs)
                if msgs and msgs[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out
