"""Elasticsearch unreachable for a minute in the middle of a stream: consumption pauses, nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from models.records import EntityRollup, MetricStats
from models.settings import Settings
from streams.index import alias_name, async_client
from streams.topics import ROLLUPS
from tests.indexingutil import CuttableProxy, IndexerProcess, cleanup_es, committed, count, wait_for_committed, wait_for_count
from tests.kafkautil import create_topics, produce

pytestmark = pytest.mark.asyncio(loop_scope="session")

OUTAGE_S = float(os.environ.get("KUBEPULSE_TEST_ES_OUTAGE_S", "60"))
"""How long Elasticsearch is unreachable: the issue asks for 60 s; shorten it locally with the variable."""


def _rollups(n: int, *, offset: int) -> list[tuple[str, EntityRollup]]:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    out = []
    for i in range(offset, offset + n):
        ws = start + timedelta(hours=i % 48)
        r = EntityRollup(
            entity_id=f"c1/ns/pod-{i % 50}/ct{i}", kind="container", cluster="c1", window="1h", window_start=ws,
            window_end=ws + timedelta(hours=1), metrics={"container.cpu_cores": MetricStats(min=1.0, max=1.0, mean=1.0, last=1.0, sum=1.0, count=1)},
        )
        out.append((r.key, r))
    return out


async def test_elasticsearch_unreachable_for_a_minute_pauses_indexing_and_loses_or_doubles_nothing(
    settings: Settings, stack: dict[str, str], tmp_path: Path
) -> None:
    """Elasticsearch is shared by everyone on this machine, so it is not stopped: the indexer talks to it
    through a TCP proxy this test owns, and "stopping" is closing the proxy's listening socket and aborting
    its connections. The indexer then gets exactly what a stopped server gives, connection refused, for
    ``KUBEPULSE_TEST_ES_OUTAGE_S`` seconds (60 by default). A second Elasticsearch would cost half a
    gigabyte and a minute of start-up for no more realism.

    During the outage the indexer is also stopped gracefully (SIGTERM) while it holds an unindexed batch,
    and a new one is started after: the batch must not have been committed, so the new process reads it
    again. The end count must equal what was produced, with every id once.
    """
    es_host, _, es_port = settings.elasticsearch.url.split("://", 1)[1].rpartition(":")
    proxy = CuttableProxy(es_host, int(es_port))
    await proxy.start()
    direct = async_client(settings, max_retries=2)
    topic = ROLLUPS.named(settings.kafka.topic_prefix)
    group = f"{settings.kafka.consumer_group}-indexing"
    alias = alias_name(settings, "rollups")
    await create_topics(settings, [topic])
    first = IndexerProcess(settings, tmp_path / "indexer-1.log", es_url=proxy.url)
    second: IndexerProcess | None = None
    try:
        await produce(settings, topic, _rollups(2000, offset=0))
        await wait_for_count(direct, alias, 2000, proc=first)
        await wait_for_committed(settings, group, topic, 2000)

        await proxy.cut()
        await produce(settings, topic, _rollups(1000, offset=2000))
        await asyncio.sleep(OUTAGE_S / 2)
        # Paused: nothing new indexed, nothing committed past what is indexed.
        assert await count(direct, alias) == 2000
        assert await committed(settings, group, topic) == 2000
        assert "Elasticsearch is unreachable" in first.log()
        assert first.terminate() == 0, first.log()
        assert await committed(settings, group, topic) == 2000, "a batch that was never indexed got committed on shutdown"

        second = IndexerProcess(settings, tmp_path / "indexer-2.log", es_url=proxy.url)
        await produce(settings, topic, _rollups(1000, offset=3000))
        await asyncio.sleep(OUTAGE_S / 2)
        assert await count(direct, alias) == 2000

        await proxy.restore()
        await wait_for_count(direct, alias, 4000, proc=second, timeout=90)
        await wait_for_committed(settings, group, topic, 4000)
        assert await count(direct, alias) == 4000
        # Every record once: as many distinct series as documents.
        resp = await direct.search(index=alias, size=0, aggs={"ids": {"cardinality": {"field": "kubepulse.entity", "precision_threshold": 10000}}})
        assert resp["aggregations"]["ids"]["value"] == 4000
    finally:
        first.terminate()
        if second is not None:
            second.terminate()
        await proxy.close()
        await cleanup_es(direct, settings)
        await direct.close()
