"""Dead letters keep the whole message and ``kubepulse deadletter replay`` sends it back: real Kafka and Elasticsearch."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from models.codec import decode, encode
from models.records import DeadLetter, KubeEvent, NodeScrape
from models.settings import Settings
from streams._samples import node_scrape
from streams.codec import decode_or_dead_letter
from streams.deadletter import original_payload
from streams.index import alias_name, async_client, documents_for, index_name
from streams.indexing import Indexer, SourceMessage
from streams.topics import DEADLETTER, EVENTS, METRICS
from tests.indexingutil import KUBEPULSE, ROOT, cleanup_es, count, indexer_env
from tests.kafkautil import consume, create_topics, produce

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _replay(settings: Settings, *args: str) -> str:
    """``kubepulse deadletter replay ARGS`` as a user runs it, with this test's settings; its output (it must succeed)."""
    proc = await asyncio.create_subprocess_exec(str(KUBEPULSE), "deadletter", "replay", *args, cwd=ROOT, env=indexer_env(settings),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def _publish(settings: Settings, letters: Sequence[DeadLetter]) -> None:
    """What the worker and the indexer do with a dead letter: a confirmed send to the dead-letter topic, keyed by source topic."""
    producer = AIOKafkaProducer(**settings.kafka.producer_kwargs())
    await producer.start()
    try:
        for dl in letters:
            await (await producer.send(DEADLETTER.named(settings.kafka.topic_prefix), encode(dl), key=dl.source_topic.encode()))
    finally:
        await producer.stop()


async def test_a_scrape_the_indexer_dead_lettered_is_replayed_after_the_fix_and_indexed(settings: Settings, stack: dict[str, str]) -> None:
    """The daily index was created by hand with ``kubernetes.node.name`` as a number (an operator's mistake): every
    document of the scrape is rejected with a mapping error. Fixed (the index deleted, the template makes it right),
    the replay puts the very same message back on the metrics topic, and indexing it now works."""
    prefix = settings.kafka.topic_prefix
    metrics_topic, dl_topic = METRICS.named(prefix), DEADLETTER.named(prefix)
    await create_topics(settings, [metrics_topic, dl_topic])
    scrape = node_scrape(pods=2, containers=1)
    await produce(settings, metrics_topic, [(scrape.key, scrape)])
    ((key, raw),) = await consume(settings, metrics_topic, count=1)
    direct = async_client(settings, max_retries=2)
    letters: list[DeadLetter] = []

    async def sink(batch: Sequence[DeadLetter]) -> None:
        letters.extend(batch)
        await _publish(settings, batch)

    indexer = Indexer(settings, dead_letter=sink, backoff_initial=0.05, backoff_max=0.2)
    (index,) = {index_name(settings.elasticsearch.index_prefix, d.kind, d.day) for d in documents_for(scrape)}
    try:
        await indexer.setup(wait=False)
        await direct.indices.create(index=index, mappings={"properties": {"kubernetes": {"properties": {"node": {"properties": {"name": {"type": "long"}}}}}}})
        report = await indexer.process([SourceMessage(metrics_topic, 0, 0, key.encode(), raw)])
        assert (report.indexed, report.dead_letters) == (0, 1)
        (dl,) = letters
        assert "(and " in dl.reason and dl.error_type == "document_parsing_exception", dl.reason
        assert original_payload(dl) == raw

        await direct.indices.delete(index=index)  # the fix
        dry = await _replay(settings, "--topic", "kubepulse.metrics.v1", "--dry-run")
        assert f"would replay 1 to {metrics_topic}" in dry, dry
        assert len(await consume(settings, metrics_topic, count=2, timeout=5)) == 1, "a dry run sent something"

        done = await _replay(settings, "--topic", metrics_topic, "--reason", "document_parsing_exception", "--since", "1h")
        assert "read 1, matched 1, replayed 1" in done, done
        (_, first), (again_key, again) = await consume(settings, metrics_topic, count=2)
        assert (again_key, again) == (key, raw) and decode(NodeScrape, again) == scrape

        report = await indexer.process([SourceMessage(metrics_topic, 0, 1, again_key.encode(), again)])
        assert (report.indexed, report.dead_letters) == (len(documents_for(scrape)), 0)
        assert await count(direct, alias_name(settings, "metrics")) == len(documents_for(scrape))
    finally:
        await indexer.close()
        await cleanup_es(direct, settings)
        await direct.close()


async def test_big_binary_messages_the_worker_dead_letters_are_kept_whole_or_flagged_and_replayed_byte_for_byte(
    settings: Settings, stack: dict[str, str]
) -> None:
    """300 KiB that are not UTF-8 (base64), 1 MiB of compressible text (escaped quotes make its JSON too big: gzip) and 1 MiB of random bytes (too big
    even compressed: truncated, with size and hash). Each dead letter is written to a stock broker (1 MiB messages);
    the first two come back exactly, the third is reported as not replayable."""
    prefix = settings.kafka.topic_prefix
    events_topic, dl_topic = EVENTS.named(prefix), DEADLETTER.named(prefix)
    await create_topics(settings, [events_topic, dl_topic])
    binary = b"\xff\xfe" + os.urandom(300 * 1024)
    text = (b"{\"cluster\": \"c1\", \"message\": \"" + b"back-off restarting \"failed\" container " * 30_000)[: 2**20 - 1024]
    random_mib = os.urandom(2**20 - 200)
    messages = [(b"c1/ns/a", binary), (b"c1/ns/b", text), (b"c1/ns/c", random_mib)]
    letters = []
    for offset, (k, v) in enumerate(messages):
        dl = decode_or_dead_letter(KubeEvent, v, source_topic=events_topic, partition=0, offset=offset, key=k)
        assert isinstance(dl, DeadLetter)
        assert len(encode(dl)) <= 900 * 1024
        letters.append(dl)
    assert [(d.payload_encoding, d.truncated) for d in letters] == [("base64", False), ("gzip+base64", False), ("text", True)]
    assert (letters[2].payload_bytes, letters[2].payload_sha256) == (len(random_mib), hashlib.sha256(random_mib).hexdigest())
    await _publish(settings, letters)
    stored = [decode(DeadLetter, v) for _, v in await consume(settings, dl_topic, count=3)]
    assert sorted(stored, key=lambda d: d.offset or 0) == letters

    out = await _replay(settings, "--topic", events_topic)
    assert "matched 3, replayed 2, not replayable 1" in out, out
    back = dict(await consume(settings, events_topic, count=2))
    assert back == {"c1/ns/a": binary, "c1/ns/b": text}
