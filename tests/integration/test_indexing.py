"""The indexer against the real Kafka and Elasticsearch: types, idempotent replays, quotas, dead letters, retention."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticsearch import AsyncElasticsearch
from typer.testing import CliRunner

from collectors.simulator import Fleet
from models.codec import decode
from models.records import DeadLetter, EntityRollup, MetricStats, NodeScrape, QuotaScrape
from models.settings import Settings
from streams._samples import full_records, node_scrape
from streams.index import INDEX_KINDS, INDEXED_KINDS, REPORT_KINDS, alias_name, async_client, documents_for, field_types, install_templates, run_janitor, sync_client
from streams.deadletter import original_payload
from streams.topics import DEADLETTER, METRICS, QUOTAS, ROLLUPS, spec_for
from tests.indexingutil import IndexerProcess, cleanup_es, count, indexer_env, wait_for_committed, wait_for_count
from tests.kafkautil import consume, create_topics, produce

# The async fixtures live on the session loop (pyproject), so the tests run there too.
pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def es(settings: Settings, stack: dict[str, str]) -> AsyncIterator[AsyncElasticsearch]:
    client = async_client(settings, max_retries=2)
    try:
        yield client
    finally:
        await cleanup_es(client, settings)
        await client.close()


@pytest.fixture
def indexer(settings: Settings, tmp_path: Path, stack: dict[str, str]) -> AsyncIterator[IndexerProcess]:
    proc = IndexerProcess(settings, tmp_path / "indexer.log")
    yield proc
    proc.terminate()


def _flat_mapping(props: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in props.items():
        if "properties" in v:
            out |= _flat_mapping(v["properties"], f"{prefix}{k}.")
        else:
            out[prefix + k] = v["type"]
    return out


def _rollups(n: int, *, start: datetime) -> list[tuple[str, EntityRollup]]:
    out = []
    for i in range(n):
        ws = start + timedelta(hours=i % 24)
        r = EntityRollup(
            entity_id=f"c1/ns{i % 7}/pod-{i % 97}/ct{i}", kind="container", cluster="c1", namespace=f"ns{i % 7}", pod=f"pod-{i % 97}",
            container=f"ct{i}", window="1h", window_start=ws, window_end=ws + timedelta(hours=1),
            metrics={"container.cpu_cores": MetricStats(min=0.1, max=0.3, mean=0.2, last=0.25, sum=0.8, count=4)},
        )
        out.append((r.key, r))
    return out


async def test_every_record_kind_lands_with_its_mapped_types_and_answers_range_terms_and_date_histogram_queries(
    settings: Settings, es: AsyncElasticsearch, indexer: IndexerProcess
) -> None:
    prefix = settings.kafka.topic_prefix
    # Every kind a topic carries (the report kinds have none: kubepulse report run writes them, tests/integration/test_reports.py).
    records = {k: r for k, r in full_records().items() if k in INDEXED_KINDS}
    await create_topics(settings, [spec_for(k).named(prefix) for k in INDEXED_KINDS])
    for kind, rec in records.items():
        await produce(settings, spec_for(kind).named(prefix), [(getattr(rec, "key", None) if kind != "deadletter" else rec.source_topic, rec)])
    for kind, rec in records.items():
        await wait_for_count(es, alias_name(settings, kind), len(documents_for(rec)), proc=indexer)
    # Index kinds, in which the records landed (the rollup, a 1h one, in rollups-1h).
    landed = sorted({d.kind for rec in records.values() for d in documents_for(rec)}, key=INDEX_KINDS.index)
    assert landed == [k for k in INDEX_KINDS if k != "rollups-1m" and k not in REPORT_KINDS]

    for kind in landed:
        mapping = await es.indices.get_mapping(index=alias_name(settings, kind))
        (body,) = mapping.body.values()
        assert body["mappings"]["dynamic"] == "strict"
        assert _flat_mapping(body["mappings"]["properties"]) == field_types(kind), kind

    metrics = alias_name(settings, "metrics")
    scrape = records["metrics"]
    assert isinstance(scrape, NodeScrape)
    # Numbers are numbers: a range on bytes and on a share (as keywords these would compare as strings).
    ws = scrape.pods[0].containers[0].memory_working_set_bytes
    assert await count(es, metrics, {"range": {"kubernetes.container.memory.workingset.bytes": {"gte": ws, "lte": ws}}}) == 10
    assert await count(es, metrics, {"range": {"kubernetes.container.cpu.usage.limit.pct": {"gt": 0.2, "lt": 0.3}}}) == 10
    assert await count(es, metrics, {"range": {"kubernetes.node.memory.capacity.bytes": {"gte": 16 * 2**30}}}) == 1
    # Labels aggregate as keywords, flattened keys included.
    resp = await es.search(
        index=metrics,
        size=0,
        query={"term": {"metricset.name": "pod"}},
        aggs={"apps": {"terms": {"field": "kubernetes.labels.app"}}, "ns": {"terms": {"field": "kubernetes.namespace"}}},
    )
    assert {b["key"]: b["doc_count"] for b in resp["aggregations"]["apps"]["buckets"]} == {"app0": 2, "app1": 1, "app2": 1, "app3": 1}
    assert {b["key"] for b in resp["aggregations"]["ns"]["buckets"]} == {"ns0", "ns1"}
    # Times are dates: one histogram bucket per kind, at the record's event time.
    for kind in landed:
        resp = await es.search(
            index=alias_name(settings, kind), size=0, aggs={"t": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1d"}}}
        )
        buckets = [b for b in resp["aggregations"]["t"]["buckets"] if b["doc_count"]]
        assert [b["key_as_string"][:10] for b in buckets] == ["2026-03-01"], kind
    resp = await es.search(index=alias_name(settings, "alerts"), query={"term": {"kubepulse.alert.labels.severity": "critical"}})
    assert resp["hits"]["hits"][0]["_source"]["rule.name"] == "PodMemoryHigh"


async def test_the_same_10000_records_produced_twice_give_exactly_10000_documents(
    settings: Settings, es: AsyncElasticsearch, indexer: IndexerProcess
) -> None:
    topic = ROLLUPS.named(settings.kafka.topic_prefix)
    await create_topics(settings, [topic])
    items = _rollups(10_000, start=datetime(2026, 3, 1, tzinfo=UTC))
    await produce(settings, topic, items)
    alias = alias_name(settings, "rollups")
    assert await wait_for_count(es, alias, 10_000, proc=indexer) == 10_000
    await produce(settings, topic, items)
    group = f"{settings.kafka.consumer_group}-indexing"
    # Once the indexer has committed past the second copy, it has indexed it.
    assert await wait_for_committed(settings, group, topic, 20_000) == 20_000
    assert await count(es, alias) == 10_000


async def test_a_document_elasticsearch_rejects_reaches_the_dead_letter_topic_with_the_error_text(
    settings: Settings, es: AsyncElasticsearch, indexer: IndexerProcess
) -> None:
    """Kubelet reports some filesystems' free inodes as 2**64 - 1 (NFS and FUSE mounts do): the record
    is valid (a non-negative int), but ``long`` cannot hold it, so Elasticsearch rejects that one volume
    document. It must reach the dead-letter topic with ES's reason while the rest of the scrape is indexed."""
    prefix = settings.kafka.topic_prefix
    metrics_topic, dl_topic = METRICS.named(prefix), DEADLETTER.named(prefix)
    await create_topics(settings, [metrics_topic, dl_topic])
    scrape = node_scrape(pods=2, containers=1)
    scrape.pods[1].volumes[0].inodes_free = 2**64 - 1
    await produce(settings, metrics_topic, [(scrape.key, scrape)])

    (key, raw), = await consume(settings, dl_topic, count=1, timeout=60)
    dl = decode(DeadLetter, raw)
    assert key == metrics_topic
    assert (dl.source_topic, dl.stage, dl.offset, dl.key) == (metrics_topic, "indexing", 0, scrape.key)
    assert "kubernetes.volume.fs.inodes.free" in dl.reason and "out of range" in dl.reason, dl.reason
    assert dl.error_type == "document_parsing_exception"
    # The whole source message, so the dead letter can be replayed once the cause is fixed.
    assert (dl.payload_encoding, dl.truncated) == ("text", False)
    assert decode(NodeScrape, original_payload(dl)) == scrape
    total = len(documents_for(scrape))
    await wait_for_count(es, alias_name(settings, "metrics"), total - 1, proc=indexer)
    # The dead letter itself is indexed too (it is on a topic the indexer reads).
    await wait_for_count(es, alias_name(settings, "deadletter"), 1, proc=indexer)
    assert await count(es, alias_name(settings, "metrics")) == total - 1


async def test_janitor_deletes_indices_past_retention_and_keeps_current_ones(settings: Settings, es: AsyncElasticsearch) -> None:
    await install_templates(es, settings)
    await install_templates(es, settings)  # idempotent
    p = settings.elasticsearch.index_prefix
    today = datetime.now(UTC).date()
    old, edge, new = today - timedelta(days=7), today - timedelta(days=6), today
    names = [f"{p}-metrics-{d:%Y.%m.%d}" for d in (old, edge, new)] + [f"{p}-alerts-{old:%Y.%m.%d}", f"{p}-scratch"]
    # Each rollup window has its own retention: 14 days of 1m, 400 of 1h.
    two_weeks = today - timedelta(days=14)
    names += [f"{p}-rollups-1m-{two_weeks:%Y.%m.%d}", f"{p}-rollups-1h-{two_weeks:%Y.%m.%d}"]
    for n in names:
        await es.indices.create(index=n)
    # Every daily index joined its kind's alias through the template.
    aliases = await es.indices.get_alias(name=alias_name(settings, "metrics"))
    assert sorted(aliases.body) == sorted(names[:3])

    env = indexer_env(settings)
    result = CliRunner().invoke(_cli(), ["es", "janitor", "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert f"would delete {p}-metrics-{old:%Y.%m.%d}" in result.output
    assert len((await es.indices.get(index=f"{p}-*")).body) == 7

    client = sync_client(settings)
    try:
        report = run_janitor(client, settings)  # metrics_days=7: today and the 6 days before are kept
    finally:
        client.close()
    gone = {f"{p}-metrics-{old:%Y.%m.%d}", f"{p}-rollups-1m-{two_weeks:%Y.%m.%d}"}
    assert sorted(report.delete) == sorted(gone)
    remaining = set((await es.indices.get(index=f"{p}-*")).body)
    assert remaining == set(names) - gone


def _cli():  # noqa: ANN202 - typer app
    from kubepulse.cli import app

    return app


async def test_naming_an_ilm_policy_on_a_cluster_without_ilm_fails_setup_with_the_fix(settings: Settings, es: AsyncElasticsearch) -> None:
    from streams.index import ElasticsearchSetupError, ilm_running

    assert await ilm_running(es) is False  # the local server has no ILM module: the janitor's case
    with_policy = settings.model_copy(update={"elasticsearch": settings.elasticsearch.model_copy(update={"ilm_policy": "kp-90d"})})
    with pytest.raises(ElasticsearchSetupError, match="KUBEPULSE_ELASTICSEARCH__ILM_POLICY"):
        await install_templates(es, with_policy)
    # Nothing half-installed: no template names the missing policy.
    resp = await es.options(ignore_status=404).indices.get_index_template(name=f"{settings.elasticsearch.index_prefix}-*")
    assert resp.get("index_templates", []) == []


QUOTA_T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _quotas() -> list[QuotaScrape]:
    """Three steps of a simulated cluster's quotas, and one as Kubernetes reports it (a count/ resource, one not counted yet)."""
    fleet = Fleet(clusters=1, nodes_per_cluster=2, pods_per_node=5, seed=3, incidents="none")
    out = []
    for k in range(3):
        fleet.step(QUOTA_T0 + timedelta(seconds=15 * k))
        out += fleet.quotas()
    sample = full_records(timestamp=QUOTA_T0)["quotas"]
    assert isinstance(sample, QuotaScrape)
    return [*out, sample]


async def test_a_quota_record_lands_as_one_typed_document_per_resource_and_a_replay_adds_none(
    settings: Settings, es: AsyncElasticsearch, indexer: IndexerProcess
) -> None:
    topic = QUOTAS.named(settings.kafka.topic_prefix)
    await create_topics(settings, [topic])
    quotas = _quotas()
    items = [(q.key, q) for q in quotas]
    expected = sum(len(q.hard) for q in quotas)
    await produce(settings, topic, items)
    alias = alias_name(settings, "quotas")
    assert await wait_for_count(es, alias, expected, proc=indexer) == expected

    mapping = (await es.indices.get_mapping(index=alias)).body
    (body,) = mapping.values()
    assert body["mappings"]["dynamic"] == "strict"
    assert next(iter(mapping)) == f"{settings.elasticsearch.index_prefix}-quotas-2026.03.01"
    rq = body["mappings"]["properties"]["kubernetes"]["properties"]["resourcequota"]["properties"]
    assert rq["used"]["properties"]["pct"]["type"] == field_types("quotas")["kubernetes.resourcequota.used.pct"] == "double"
    assert rq["resource"]["type"] == "keyword"

    # Numbers are numbers: a range on the share finds exactly the quotas the simulator runs close to full.
    near_full = [(q, r) for q in quotas for r in q.hard if r in q.used and q.hard[r] > 0 and q.used[r] / q.hard[r] >= 0.9]
    assert {(q.namespace, r) for q, r in near_full} == {("shop", "requests.memory"), ("ns0", "requests.cpu"), ("ns0", "count/deployments.apps")}
    assert await count(es, alias, {"range": {"kubernetes.resourcequota.used.pct": {"gte": 0.9}}}) == len(near_full)
    # Resources aggregate as keywords, "/" included; one document per quota and resource at each time.
    resp = await es.search(
        index=alias,
        size=0,
        query={"term": {"kubernetes.resourcequota.name": "compute"}},
        aggs={"r": {"terms": {"field": "kubernetes.resourcequota.resource", "size": 20}}},
    )
    by_resource = {b["key"]: b["doc_count"] for b in resp["aggregations"]["r"]["buckets"]}
    assert by_resource == {r: sum(r in q.hard for q in quotas) for q in quotas for r in q.hard}
    assert by_resource["count/deployments.apps"] == 1 and by_resource["pods"] == len(quotas)
    # Not counted yet: the document has the hard limit and no share.
    resp = await es.search(index=alias, query={"term": {"kubernetes.resourcequota.resource": "limits.cpu"}}, size=50)
    sample = [h["_source"] for h in resp["hits"]["hits"] if h["_source"]["kubernetes.namespace"] == "ns0"]
    assert len(sample) == 1 and sample[0]["kubernetes.resourcequota.hard.value"] == 8.0
    assert "kubernetes.resourcequota.used.pct" not in sample[0]

    # The same records again: once the indexer has committed past them, they overwrote their own documents.
    await produce(settings, topic, items)
    group = f"{settings.kafka.consumer_group}-indexing"
    assert await wait_for_committed(settings, group, topic, 2 * len(items)) == 2 * len(items)
    assert await count(es, alias) == expected
