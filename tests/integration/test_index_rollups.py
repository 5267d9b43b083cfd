"""kubepulse.rollups.v2 in the real Elasticsearch: exact documents through the indexer, replays that add nothing, setup, storage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from elasticsearch import AsyncElasticsearch
from typer.testing import CliRunner

from collectors.simulator import Fleet
from models.codec import encode
from models.records import EntityRollup, NodeScrape, Record
from models.settings import Settings
from streams._samples import entity_rollups
from streams.index import INDEX_KINDS, alias_name, async_client, documents_for, storage_report, sync_client
from streams.indexing import Indexer, SourceMessage
from streams.topics import spec_for
from tests.indexingutil import cleanup_es, count, indexer_env

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 3, 1, 11, 58, tzinfo=UTC)
"""Two minutes before an hour: the scripted scrapes span two 1m windows, and two 1h windows."""


def _scrapes() -> list[NodeScrape]:
    fleet = Fleet(clusters=2, nodes_per_cluster=2, pods_per_node=3, seed=3, incidents="none", restart_every_s=None, rollout_every_s=None)
    out = []
    for i in range(16):  # 4 minutes at 15 s
        scrapes, _, _ = fleet.step(T0 + timedelta(seconds=15 * i))
        out += scrapes
    return out


@pytest.fixture
async def es(settings: Settings, stack: dict[str, str]) -> AsyncIterator[AsyncElasticsearch]:
    client = async_client(settings, max_retries=2)
    try:
        yield client
    finally:
        await cleanup_es(client, settings)
        await client.close()


async def _index(settings: Settings, client: AsyncElasticsearch, records: list[Record]) -> tuple[int, list[object]]:
    """Through the indexer's own path: encoded records on their topics, strictly decoded, bulk indexed."""
    letters: list[object] = []

    async def dead_letter(batch: object) -> None:
        letters.extend(batch)  # type: ignore[arg-type]

    indexer = Indexer(settings, dead_letter=dead_letter, client=client)
    await indexer.setup()
    prefix = settings.kafka.topic_prefix
    kinds = {NodeScrape: "metrics", EntityRollup: "rollups"}
    msgs = [SourceMessage(spec_for(kinds[type(r)]).named(prefix), 0, i, r.key.encode(), encode(r)) for i, r in enumerate(records)]
    report = await indexer.process(msgs)
    await client.indices.refresh(index=f"{settings.elasticsearch.index_prefix}-*")
    return report.indexed, letters


async def _all(client: AsyncElasticsearch, index: str) -> dict[str, dict]:
    resp = await client.search(index=index, size=10_000, query={"match_all": {}}, version=True)
    return {h["_id"]: {"_index": h["_index"], "_version": h["_version"], "_source": h["_source"]} for h in resp["hits"]["hits"]}


async def test_scripted_rollups_land_as_exactly_the_documents_built_for_them_and_a_replay_adds_nothing(
    settings: Settings, es: AsyncElasticsearch
) -> None:
    scrapes = _scrapes()
    rollups = entity_rollups(scrapes)
    assert {(r.window, r.window_start) for r in rollups} == {
        ("1m", T0), ("1m", T0 + timedelta(minutes=1)), ("1m", T0 + timedelta(minutes=2)), ("1m", T0 + timedelta(minutes=3)),
        ("1h", T0.replace(minute=0)), ("1h", T0.replace(minute=0) + timedelta(hours=1)),
    }
    indexed, letters = await _index(settings, es, [*scrapes, *rollups])
    assert letters == []
    expected = {d.id: d for r in rollups for d in documents_for(r)}
    # The defaults: 1h for every kind, 1m only for nodes, their interfaces, namespaces and clusters.
    assert {(d.kind, d.body["metricset.name"]) for d in expected.values()} == {
        *(("rollups-1m", k) for k in ("node", "node_interface", "namespace", "cluster")),
        *(("rollups-1h", k) for k in ("node", "node_interface", "pod", "pod_interface", "container", "volume", "workload", "namespace", "cluster")),
    }
    raw = sum(len(documents_for(s)) for s in scrapes)
    assert indexed == raw + len(expected)

    prefix = settings.elasticsearch.index_prefix
    stored = await _all(es, alias_name(settings, "rollups"))
    assert stored.keys() == expected.keys()
    for id_, doc in expected.items():
        assert stored[id_]["_index"] == f"{prefix}-{doc.kind}-{doc.day}"
        assert stored[id_]["_source"] == doc.body
    # The two hours' documents went to the hours' own day; the minutes' to theirs.
    assert {v["_index"] for v in stored.values()} == {f"{prefix}-rollups-1m-2026.03.01", f"{prefix}-rollups-1h-2026.03.01"}
    one = next(d.body for d in expected.values() if d.body["metricset.name"] == "namespace" and d.kind == "rollups-1m")
    record = next(r for r in rollups if r.entity_id + "/" == one["kubepulse.entity"] and r.window == "1m"
                  and r.window_start.isoformat() == one["@timestamp"])
    assert one["kubernetes.namespace_totals.cpu_cores.avg"] == record.metrics["namespace.cpu_cores"].mean
    assert one["kubepulse.rollup.count"] == max(s.count for s in record.metrics.values())

    # A replay (a worker restarted after a crash republishes what it had not checkpointed) overwrites the same ids.
    again, letters = await _index(settings, es, [*scrapes, *rollups])
    assert letters == [] and again == indexed
    replayed = await _all(es, alias_name(settings, "rollups"))
    assert replayed.keys() == stored.keys()
    assert all(replayed[i]["_source"] == stored[i]["_source"] and replayed[i]["_version"] == 2 for i in stored)
    assert await count(es, alias_name(settings, "metrics")) == raw


async def test_rollup_statistics_are_aggregatable_and_range_queries_work_on_doc_values(settings: Settings, es: AsyncElasticsearch) -> None:
    rollups = [r for r in entity_rollups(_scrapes()) if r.window == "1h"]
    await _index(settings, es, rollups)
    index = alias_name(settings, "rollups-1h")
    fields = ["kubernetes.container.cpu_cores.avg", "kubernetes.workload.memory_request_bytes.max", "kubernetes.container.cpu_cores.count"]
    caps = (await es.field_caps(index=index, fields=fields)).body["fields"]
    assert {f: next(iter(caps[f])) for f in fields} == {fields[0]: "double", fields[1]: "double", fields[2]: "integer"}
    assert all(t["aggregatable"] and t["searchable"] for f in fields for t in caps[f].values())
    top = max(r.metrics["container.cpu_cores"].mean for r in rollups if r.kind == "container" and "container.cpu_cores" in r.metrics)
    assert await count(es, index, {"range": {"kubernetes.container.cpu_cores.avg": {"gte": top}}}) == 1
    resp = await es.search(index=index, size=0, query={"term": {"metricset.name": "workload"}},
                           aggs={"w": {"terms": {"field": "kubernetes.workload.name", "size": 100}, "aggs": {"m": {"max": {"field": fields[1]}}}}})
    got = {b["key"]: b["m"]["value"] for b in resp["aggregations"]["w"]["buckets"]}
    want: dict[str, float] = {}
    for r in rollups:
        if r.kind == "workload":
            want[r.workload] = max(want.get(r.workload, 0.0), r.metrics["workload.memory_request_bytes"].max)
    assert got == pytest.approx(want)


async def test_es_setup_creates_the_first_index_of_every_kind_once_and_status_lists_them(settings: Settings, es: AsyncElasticsearch) -> None:
    import asyncio
    import json

    from kubepulse.cli import app

    env = indexer_env(settings)

    def cli(*args: str):  # noqa: ANN202 - a click Result; the command runs its own event loop, so in a thread
        return CliRunner().invoke(app, list(args), env=env)

    today = datetime.now(UTC).strftime("%Y.%m.%d")
    prefix = settings.elasticsearch.index_prefix
    first = await asyncio.to_thread(cli, "es", "setup")
    assert first.exit_code == 0, first.output
    assert [line for line in first.output.splitlines() if line.startswith("index ")] == [f"index {prefix}-{k}-{today}" for k in INDEX_KINDS]
    second = await asyncio.to_thread(cli, "es", "setup")
    assert second.exit_code == 0 and "index " not in second.output
    status = await asyncio.to_thread(cli, "es", "status", "--json")
    rows = json.loads(status.output)
    assert list(rows) == list(INDEX_KINDS)
    assert all(r["template"] and r["indices"] == 1 and r["docs"] == 0 for r in rows.values())
    # The settings that make a sample cost ~15 bytes are on the real indices, not only in the templates.
    got = (await es.indices.get_settings(index=f"{prefix}-*")).body
    for name, body in got.items():
        index = body["settings"]["index"]
        assert index["codec"] == "best_compression", name
        sorted_by = index.get("sort", {}).get("field")
        assert sorted_by == (["kubepulse.entity", "@timestamp"] if "-metrics-" in name or "-rollups-" in name else None), name


async def test_a_v1_rollups_template_left_by_an_older_install_is_replaced_not_fought(settings: Settings, es: AsyncElasticsearch) -> None:
    """An older kubepulse installed ``<prefix>-rollups`` for ``<prefix>-rollups-*`` at priority 200: Elasticsearch
    refuses two templates of one priority that match the same index, so setup must retire it."""
    from streams.index import install_templates

    prefix = settings.elasticsearch.index_prefix
    await es.indices.put_index_template(name=f"{prefix}-rollups", index_patterns=[f"{prefix}-rollups-*"], priority=200,
                                        meta={"managed_by": "kubepulse", "kind": "rollups"})
    names = await install_templates(es, settings)
    assert f"{prefix}-rollups-1h" in names
    found = await es.options(ignore_status=404).indices.get_index_template(name=f"{prefix}-rollups")
    assert found.get("index_templates", []) == []


async def test_storage_report_counts_documents_and_bytes_per_kind_and_per_sample(settings: Settings, es: AsyncElasticsearch) -> None:
    scrapes = _scrapes()
    rollups = entity_rollups(scrapes)
    await _index(settings, es, [*scrapes, *rollups])
    samples = 1_000_000
    client = sync_client(settings)
    try:
        report = storage_report(client, settings.elasticsearch.index_prefix, samples=samples)
    finally:
        client.close()
    docs = {k: sum(1 for r in [*scrapes, *rollups] for d in documents_for(r) if d.kind == k) for k in ("metrics", "rollups-1m", "rollups-1h")}
    assert {k: v["docs"] for k, v in report["kinds"].items()} == docs
    assert all(v["indices"] == 1 and v["bytes"] > 0 for v in report["kinds"].values())
    raw, r1m, r1h = (report["kinds"][k]["bytes"] for k in ("metrics", "rollups-1m", "rollups-1h"))
    assert report["rollup_doc_ratio"] == round((docs["rollups-1m"] + docs["rollups-1h"]) / docs["metrics"], 4)
    assert report["es_bytes_per_sample"] == round((raw + r1m + r1h) / samples, 2)
    # Force-merged: one segment per shard.
    segments = await es.indices.segments(index=f"{settings.elasticsearch.index_prefix}-*")
    assert all(len(shard[0]["segments"]) == 1 for index in segments["indices"].values() for shard in index["shards"].values())


async def test_a_rollup_with_a_metric_the_mapping_does_not_know_is_dead_lettered_with_elasticsearchs_reason(
    settings: Settings, es: AsyncElasticsearch
) -> None:
    """A worker newer than its indexer (a metric added to models.series on one side only) must not lose the
    record silently: the strict mapping refuses it, the dead letter says why, the other rollups are indexed."""
    good = [r for r in entity_rollups(_scrapes()) if r.window == "1h" and r.kind == "container"][:3]
    stats = next(iter(good[0].metrics.values()))
    odd = good[0].model_copy(update={"entity_id": "c9/ns/p/ct", "metrics": {"container.unheard_of_bytes": stats}})
    indexed, letters = await _index(settings, es, [*good, odd])
    assert indexed == 3
    (dl,) = letters
    assert dl.stage == "indexing" and dl.error_type == "strict_dynamic_mapping_exception"
    assert "unheard_of_bytes" in dl.reason and "c9/ns/p/ct" in dl.payload
