"""Bad input, everywhere: 10,000 poison records and records at the contract's edges through worker → indexer → dispatcher.

On the real Kafka and Elasticsearch: a real ``kubepulse worker`` and ``kubepulse es index`` and a dispatcher
paging the strict PagerDuty fake. Poison (tests/poison.py) is dead-lettered by every consumer that reads it,
each with its reason; every good record, including ones with every name at its maximum length, 200 labels,
unicode and empty optionals, arrives in Elasticsearch and pages; event times a broken clock makes up are
not indexed; and no process stops.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticsearch import AsyncElasticsearch

from kubepulse._cli_streams import create_topics
from models.codec import decode
from models.records import DeadLetter
from models.settings import Settings, load_settings
from streams.alerting import config_from_dict, run_dispatcher
from streams.index import documents_for, index_name
from streams.topics import DEADLETTER, EVENTS, METRICS, QUOTAS
from tests.fakes.fixtures import ROUTING_KEY, pd, tls_ca  # noqa: F401 - fixtures
from tests.fakes.pagerduty import FakePagerDuty
from tests.indexingutil import IndexerProcess, cleanup_es
from tests.kafkautil import new_run_id, produce
from tests.poison import edge_event, edge_quota, edge_scrape, encoded, long_name, poison_records
from tests.streamsutil import Worker, read_until

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(600)]

RULES = Path(__file__).parent / "data" / "streams_rules.yaml"
POISON = {"metrics": 7000, "events": 2000, "quotas": 1000}


@pytest.fixture
async def pipeline(stack: dict[str, str], tmp_path: Path, pd: FakePagerDuty) -> AsyncIterator[tuple[Settings, Worker, IndexerProcess]]:
    run = new_run_id()
    settings = load_settings(
        kafka={"topic_prefix": f"t{run}.", "consumer_group": f"kp-test-{run}", "topic_partitions": 2},
        elasticsearch={"url": stack["elasticsearch"], "index_prefix": f"kp-{run}", "bulk_max_seconds": 0.5},
        streams={"window_grace_s": 0, "rules_files": [RULES]},
        http_port=0,
    )
    await create_topics(settings)
    worker = Worker(settings, tmp_path / "worker.log", KUBEPULSE_STREAMS__RULES_FILES=f'["{RULES}"]')
    indexer = IndexerProcess(settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"consumer_group": f"kp-test-{run}-ix"})}),
                             tmp_path / "indexer.log")
    config = config_from_dict({
        "route": {"receiver": "pager", "group_by": ["..."], "group_wait": 0, "group_interval": 0.2, "repeat_interval": "4h"},
        "receivers": [{"name": "pager", "retry": {"initial_backoff": 0.01, "timeout": 15},
                       "pagerduty_configs": [{"routing_key": ROUTING_KEY, "url": pd.url, "ca_file": str(pd.ca_file)}]}],  # type: ignore[attr-defined]
    }, settings=settings, environ={})
    stop, ready = asyncio.Event(), asyncio.Event()
    dispatcher = asyncio.create_task(run_dispatcher(settings, config=config, stop=stop, ready=ready))
    await asyncio.wait([dispatcher, asyncio.create_task(ready.wait())], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    assert ready.is_set() and not dispatcher.done(), "dispatcher did not start"
    yield settings, worker, indexer
    assert not dispatcher.done(), f"the dispatcher stopped: {dispatcher.exception() if dispatcher.done() else ''}"
    stop.set()
    await asyncio.wait_for(asyncio.gather(dispatcher, return_exceptions=True), 30)
    worker.stop()
    indexer.terminate()
    es = AsyncElasticsearch(stack["elasticsearch"])
    try:
        await cleanup_es(es, settings)
    finally:
        await es.close()


async def _es_ids(es: AsyncElasticsearch, index: str) -> set[str]:
    await es.options(ignore_status=404).indices.refresh(index=index)
    resp = await es.options(ignore_status=404).search(index=index, size=10_000, source=False, query={"match_all": {}})
    return {h["_id"] for h in resp.get("hits", {}).get("hits", [])}


async def test_poison_is_dead_lettered_by_every_consumer_and_every_good_record_arrives_and_pages(
    pipeline: tuple[Settings, Worker, IndexerProcess], pd: FakePagerDuty, stack: dict[str, str]
) -> None:
    settings, worker, indexer = pipeline
    prefix = settings.kafka.topic_prefix
    now = datetime.now(UTC).replace(microsecond=0)
    t0 = now - timedelta(minutes=5)
    cluster, node = long_name("cluster", 253), long_name("node", 253)

    # Good: an edge node, hot for 2 minutes (NodeCPUHigh has `for: 1m`), its Events and a 200-resource quota.
    good = [edge_scrape(cluster, node, t0 + timedelta(seconds=15 * i), cpu=3.0) for i in range(9)]
    events = [edge_event(cluster, t0 + timedelta(seconds=15 * i), i) for i in range(3)]
    quota = edge_quota(cluster, t0)
    # Valid records whose clock is broken: the worker bounds their time, the indexer refuses to make their indices.
    broken_clock = [edge_scrape("clock", "n1", datetime(9999, 12, 31, tzinfo=UTC), cpu=0.1, pods=1),
                    edge_scrape("clock", "n2", datetime(1970, 1, 1, tzinfo=UTC), cpu=0.1, pods=1)]
    poison = poison_records(t0, **POISON)

    # Poison first, so everything good comes after it on every partition.
    await produce(settings, METRICS.named(prefix), [(p.key, p.value) for p in poison["metrics"]])
    await produce(settings, EVENTS.named(prefix), [(p.key, p.value) for p in poison["events"]])
    await produce(settings, QUOTAS.named(prefix), [(p.key, p.value) for p in poison["quotas"]])
    await produce(settings, METRICS.named(prefix), encoded(good + broken_clock))
    await produce(settings, EVENTS.named(prefix), encoded(events))
    await produce(settings, QUOTAS.named(prefix), encoded([quota]))

    # Every poison record: one dead letter from the worker and one from the indexer, each with a reason.
    total = sum(POISON.values())
    expected = 2 * total + len(broken_clock)  # + the indexer's refusals of the broken clocks

    def dead(msgs: list) -> list[DeadLetter]:
        return [decode(DeadLetter, v) for _, v in msgs]

    msgs = await read_until(settings, DEADLETTER.named(prefix), lambda m: len(m) >= expected, timeout=300)
    letters = dead(msgs)
    assert worker.proc.poll() is None, f"worker exited {worker.proc.returncode}:\n{worker.log()}"
    assert indexer.proc.poll() is None, f"indexer exited {indexer.proc.returncode}:\n{indexer.log()}"
    assert len(letters) == expected, Counter((d.source_topic, d.stage) for d in letters)
    assert all(d.reason and d.error_type for d in letters)

    by_source: dict[tuple[str, str], Counter[str]] = {}
    for d in letters:
        consumer = "indexer" if d.stage == "indexing" else "worker"
        by_source.setdefault((d.source_topic.removeprefix(prefix), consumer), Counter())[d.key or ""] += 1
    for kind, topic in (("metrics", METRICS), ("events", EVENTS), ("quotas", QUOTAS)):
        name = topic.named(prefix).removeprefix(prefix)
        want = Counter(p.key for p in poison[kind])
        for consumer in ("worker", "indexer"):
            got = by_source.get((name, consumer), Counter())
            got = Counter({k: v for k, v in got.items() if k.startswith("poison/")})
            assert got == want, f"{consumer} on {name}: {sum(got.values())} dead letters of {sum(want.values())} poison"
    # Reasons say what was wrong.
    reason = {d.key: d.reason for d in letters if d.stage != "indexing" and d.source_topic == METRICS.named(prefix)}
    kinds = {p.key: p.kind for p in poison["metrics"]}
    for key, text in reason.items():
        if kinds.get(key) == "nan":
            assert "finite" in text.lower() or "nan" in text.lower(), text
        if kinds.get(key) == "truncated_json":
            assert "json" in text.lower(), text
        if kinds.get(key) == "namespace_too_long":
            assert "63" in text, text
    refused = [d for d in letters if d.error_type == "event_time_out_of_range"]
    assert sorted(d.key or "" for d in refused) == sorted(s.key for s in broken_clock)
    # A dead letter keeps what is needed to find the original, huge ones included, and stays writable.
    huge = [d for d in letters if (d.key or "").startswith("poison/huge")]
    assert len(huge) == 4 and all(d.offset is not None and d.payload for d in huge)

    # Every good record is in Elasticsearch, document for document.
    es = AsyncElasticsearch(stack["elasticsearch"])
    try:
        ix = settings.elasticsearch.index_prefix
        want_docs: dict[str, set[str]] = {}
        for rec in [*good, *events, quota]:
            for doc in documents_for(rec):
                want_docs.setdefault(index_name(ix, doc.kind, doc.day), set()).add(doc.id)
        deadline = time.monotonic() + 120
        while True:
            got_docs = {index: await _es_ids(es, index) for index in want_docs}
            missing = {index: len(ids - got_docs[index]) for index, ids in want_docs.items() if ids - got_docs[index]}
            if not missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert not missing, f"documents missing per index: {missing}\n{indexer.log()}"
        # No index for the broken clocks' days.
        for year in ("9999", "1970"):
            resp = await es.indices.get(index=f"{ix}-metrics-{year}.*", allow_no_indices=True, expand_wildcards="all")
            assert not resp.body, f"an index was made for {year}: {list(resp.body)}"
    finally:
        await es.close()

    # The edge node's alert, with its 253-character cluster and node names, pages.
    await pd.wait_for(lambda: any(e["event_action"] == "trigger" for e in pd.events), timeout=90)
    trigger = next(e for e in pd.events if e["event_action"] == "trigger")
    assert node in str(trigger["payload"]) and len(trigger["dedup_key"]) <= 255
    assert pd.rejected == [], pd.rejected
    assert worker.proc.poll() is None and indexer.proc.poll() is None
