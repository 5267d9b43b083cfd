"""Events: list, then watch with bookmarks, relist on 410 Gone; read back from the real Kafka."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collectors import Collector
from collectors.testing import FakeApiServer
from collectors.testing import payloads as k
from models.codec import decode
from models.records import KubeEvent
from models.settings import ClusterSettings, Settings
from streams.topics import EVENTS
from tests.kafkautil import consume

T = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def api():
    with FakeApiServer(bookmark_interval_s=0.2) as server:
        server.add("Node", k.node("node-a"))
        yield server


def events_settings(settings: Settings, api: FakeApiServer, tmp_path: Path, name: str) -> Settings:
    kc = api.write_kubeconfig(tmp_path / "kc.yaml")
    return settings.model_copy(update={"clusters": [ClusterSettings(name=name, kubeconfig=kc)]})


async def read_events(settings: Settings, count: int, *, timeout: float = 20) -> list[tuple[str | None, KubeEvent]]:
    msgs = await consume(settings, EVENTS.named(settings.kafka.topic_prefix), count=count, timeout=timeout)
    return [(key, decode(KubeEvent, v)) for key, v in msgs]


async def until(predicate, *, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_listed_and_watched_events_are_published_intact_and_a_count_bump_is_published_again(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path
) -> None:
    oom = api.add_event(k.event("shop", reason="OOMKilled", involved=("Pod", "cart-1"), message="Container app exceeded its memory limit (512Mi)", first=T, host="node-a"))
    backoff = api.add_event(k.event("shop", reason="BackOff", involved=("Pod", "cart-1"), message="Back-off restarting failed container app in pod cart-1_shop", first=T))
    s = events_settings(settings, api, tmp_path, "ev")
    async with Collector(s, watch_timeout_s=2) as c:
        await c.run(iterations=1)
        await until(lambda: api.requests(verb="watch"))
        api.add_event(k.event("shop", reason="Evicted", involved=("Pod", "db-0"), message="The node was low on resource: memory."))
        api.add_event(k.event("shop", reason="FailedScheduling", involved=("Pod", "web-2"), message="0/3 nodes are available: 3 Insufficient cpu.", component="default-scheduler"))
        api.add_event(k.event("default", reason="NodeHasInsufficientMemory", involved=("Node", "node-a"), type="Normal", message="Node node-a status is now: NodeHasInsufficientMemory"))
        api.update_event(backoff["metadata"]["uid"], count=7, lastTimestamp=k.rfc3339(T + timedelta(minutes=5)))
        got = await read_events(s, 6)
    assert len(got) == 6
    by_reason = {(e.reason, e.count): (key, e) for key, e in got}
    key, e = by_reason[("OOMKilled", 1)]
    assert key == "ev/shop/cart-1"
    assert (e.cluster, e.uid, e.namespace, e.type, e.message) == ("ev", oom["metadata"]["uid"], "shop", "Warning", "Container app exceeded its memory limit (512Mi)")
    assert (e.involved_object.kind, e.involved_object.name, e.source_component, e.source_host) == ("Pod", "cart-1", "kubelet", "node-a")
    assert e.first_seen == T and e.last_seen == T
    key, e = by_reason[("BackOff", 7)]
    assert key == "ev/shop/cart-1" and e.last_seen == T + timedelta(minutes=5) and e.first_seen == T
    assert ("BackOff", 1) in by_reason
    assert by_reason[("Evicted", 1)][1].message == "The node was low on resource: memory."
    assert by_reason[("FailedScheduling", 1)][1].source_component == "default-scheduler"
    key, e = by_reason[("NodeHasInsufficientMemory", 1)]
    assert key == "ev/default/node-a" and e.involved_object.kind == "Node" and e.type == "Normal"


async def test_relist_after_410_gone_loses_nothing_and_duplicates_nothing(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path
) -> None:
    first = api.add_event(k.event("shop", reason="BackOff", involved=("Pod", "cart-1")))
    api.add_event(k.event("shop", reason="Evicted", involved=("Pod", "db-0")))
    s = events_settings(settings, api, tmp_path, "gone")
    async with Collector(s, watch_timeout_s=5) as c:
        await c.run(iterations=1)
        watcher = c.watchers["gone"]
        await until(lambda: api.requests(verb="watch"))
        # The watch history is compacted while changes happen: the collector's
        # resourceVersion is now too old and it must relist.
        api.expire_events()
        api.add_event(k.event("shop", reason="FailedScheduling", involved=("Pod", "web-2")))
        api.update_event(first["metadata"]["uid"], count=2)
        await until(lambda: watcher.relists == 2)
        await until(lambda: len(api.requests(verb="watch")) >= 3)
        got = await read_events(s, 10, timeout=3)
    seen = [(e.uid, e.count) for _, e in got]
    assert len(seen) == len(set(seen)) == 4, seen
    assert sorted((e.reason, e.count) for _, e in got) == [("BackOff", 1), ("BackOff", 2), ("Evicted", 1), ("FailedScheduling", 1)]
    assert [a.status for a in api.requests(verb="list", resource="events")] == [200, 200]
