"""streams._publish against the real Kafka: batched records land on the partitions a keyed send would pick."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from models.settings import Settings
from streams._publish import BatchPublisher
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


async def test_batched_records_land_on_the_same_partition_as_a_keyed_send_of_the_same_key(
    stack: dict[str, str], settings: Settings
) -> None:
    batched, plain = settings.kafka.topic_prefix + "batched", settings.kafka.topic_prefix + "plain"
    await create_topics(settings, [batched, plain], partitions=6)
    keys = [f"c1/ns{i % 7}/pod-{i}/app/container.cpu_cores" for i in range(300)]
    producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all", max_batch_size=4096)
    await producer.start()
    try:
        # max_batch_size is small so that one call fills several batches per partition.
        n = await BatchPublisher(producer).publish(batched, [(k, f'{{"i":{i}}}'.encode()) for i, k in enumerate(keys)])
        for i, k in enumerate(keys):
            await producer.send(plain, f'{{"i":{i}}}'.encode(), key=k.encode())
        await producer.flush()
    finally:
        await producer.stop()
    assert n == len(keys)
    got_batched = await _read_all(settings, batched, len(keys))
    got_plain = await _read_all(settings, plain, len(keys))
    assert set(got_batched) == {k.encode() for k in keys}
    assert {k: p for k, (p, _) in got_batched.items()} == {k: p for k, (p, _) in got_plain.items()}
    assert len({p for p, _ in got_batched.values()}) == 6, "300 keys should spread over all 6 partitions"
    assert got_batched[keys[42].encode()][1] == b'{"i":42}'
