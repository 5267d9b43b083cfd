"""Small helpers for tests that talk to the real Kafka: produce records, read a topic back."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from models import kafka
from models.codec import encode
from models.records import Record
from models.settings import Settings


SESSION = uuid.uuid4().hex[:4]
"""This pytest session's id: every test topic and consumer group starts with it (``new_run_id``), so the
session deletes its own topics at the end and never those of another session sharing the broker."""


def new_run_id() -> str:
    """A short id unique to one test (or one module's worker): topic prefix ``t<id>.``, group ``kp-test-<id>``."""
    return SESSION + uuid.uuid4().hex[:8]


async def create_topics(settings: Settings, names: list[str], *, partitions: int = 4) -> None:
    """The test topics ``names``, with ``partitions`` partitions on the one local broker."""
    await kafka.create_topics(settings, names, partitions=partitions, replication=1)


async def produce(settings: Settings, topic: str, items: list[tuple[str | None, Record | bytes]]) -> None:
    """Send (key, record-or-raw-bytes) pairs and wait until all are acknowledged."""
    producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = []
        for key, value in items:
            data = value if isinstance(value, bytes) else encode(value)
            futures.append(await producer.send(topic, data, key=key.encode() if key is not None else None))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume(settings: Settings, topic: str, *, count: int, timeout: float = 30.0) -> list[tuple[str | None, bytes]]:
    """Read a topic from the beginning until ``count`` messages arrived or ``timeout`` passed."""
    consumer = AIOKafkaConsumer(
        **settings.kafka.aiokafka_kwargs(), auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    out: list[tuple[str | None, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        tps = await kafka.topic_partitions(consumer, topic, timeout=timeout)
        if tps:
            consumer.assign(tps)
            await consumer.seek_to_beginning()
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                out.extend((m.key.decode() if m.key else None, m.value) for m in msgs)
    finally:
        await consumer.stop()
    return out
