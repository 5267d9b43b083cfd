"""streams._runtime.Outbox against the real Kafka: confirmed writes, keyed partitions, and a write the broker refuses."""

from __future__ import annotations

import asyncio
import os

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from models.settings import Settings
from prometheus_client import REGISTRY

from streams._publish import partition_for
from streams._runtime import Outbox
from streams.errors import WriteFailed
from tests.kafkautil import create_topics


async def _read_all(settings: Settings, topic: str, count: int) -> dict[bytes, tuple[int, bytes]]:
    consumer = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await consumer._client._wait_on_metadata(topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: dict[bytes, tuple[int, bytes]] = {}
        while len(got) < count:
            batch = await consumer.getmany(timeout_ms=2000)
            assert batch, f"only {len(got)} of {count} records arrived on {topic}"
            for tp, msgs in batch.items():
                for m in msgs:
                    got[m.key] = (tp.partition, m.value)
        return got
    finally:
        await consumer.stop()


async def test_confirmed_records_are_on_the_partition_a_keyed_send_picks_and_readable_at_once(
    stack: dict[str, str], settings: Settings
) -> None:
    batched, plain = settings.kafka.topic_prefix + "batched", settings.kafka.topic_prefix + "plain"
    await create_topics(settings, [batched, plain], partitions=6)
    keys = [f"c1/ns{i % 7}/pod-{i}/app" for i in range(300)]
    outbox = Outbox(settings)
    try:
        outbox.put(batched, [(k, f'{{"i":{i}}}'.encode()) for i, k in enumerate(keys)])
        # A key a keyed send would put elsewhere: the explicit partition wins.
        pinned = next(f"pinned:{i}" for i in range(100) if partition_for(f"pinned:{i}".encode(), list(range(6))) != 5)
        outbox.put(batched, [(pinned, b'{"i":"pinned"}')], partition=5)
        await outbox.drain()
        await outbox.confirm()
    finally:
        await outbox.stop()
    producer = AIOKafkaProducer(**settings.kafka.producer_kwargs())
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(plain, f'{{"i":{i}}}'.encode(), key=k.encode())
                               for i, k in enumerate(keys)])
    finally:
        await producer.stop()
    got_batched = await _read_all(settings, batched, len(keys) + 1)
    got_plain = await _read_all(settings, plain, len(keys))
    assert {k: p for k, (p, _) in got_batched.items() if not k.startswith(b"pinned:")} == {
        k: p for k, (p, _) in got_plain.items()}
    assert len({p for p, _ in got_batched.values()}) == 6, "300 keys spread over all 6 partitions"
    assert got_batched[keys[42].encode()][1] == b'{"i":42}'
    assert got_batched[pinned.encode()] == (5, b'{"i":"pinned"}')


async def test_a_write_the_broker_refuses_is_retried_reported_and_then_fails_the_confirmation(
    stack: dict[str, str], settings: Settings
) -> None:
    topic = settings.kafka.topic_prefix + "small"
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                            topic_configs={"max.message.bytes": "2048"})])
    finally:
        await admin.close()
    settings.streams.write_failure_timeout_s = 3.0
    outbox = Outbox(settings)
    labels = {"topic": topic, "error": "MessageSizeTooLargeError"}
    failures_before = REGISTRY.get_sample_value("kubepulse_stream_write_failures_total", labels) or 0.0
    try:
        outbox.put(topic, [("fits", b"x" * 100)])
        await outbox.confirm()
        assert not outbox.failing
        outbox.put(topic, [("too-big", os.urandom(8000))])  # random: compression cannot shrink it
        seen_failing = []

        async def watch() -> None:
            while True:
                seen_failing.append(outbox.failing)
                await asyncio.sleep(0.2)

        watcher = asyncio.create_task(watch())
        try:
            await outbox.confirm()
        except WriteFailed as exc:
            message = str(exc)
        else:
            raise AssertionError("a record above the topic's max.message.bytes was confirmed")
        finally:
            watcher.cancel()
    finally:
        await outbox.stop()
    assert topic in message and "MessageSizeTooLarge" in message and "max.message.bytes" in message
    assert any(seen_failing), "writes were reported failing while they were retried"
    assert REGISTRY.get_sample_value("kubepulse_stream_write_failures_total", labels) >= failures_before + 2, \
        "each attempt is counted"
    assert outbox.failing and REGISTRY.get_sample_value("kubepulse_stream_writes_failing") == 1.0
    got = await _read_all(settings, topic, 1)
    assert got == {b"fits": (0, b"x" * 100)}
