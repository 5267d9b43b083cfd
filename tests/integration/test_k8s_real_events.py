"""Events through a real kube-apiserver: each arrives once, and after etcd compaction (410 Gone) a relist loses and repeats nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import REGISTRY

from collectors import Collector
from collectors.testing import payloads as k
from models.codec import decode
from models.records import KubeEvent
from models.settings import ClusterSettings, Settings
from streams.topics import EVENTS
from tests.integration.k8s_fixtures import (  # noqa: F401 - fixtures are used by name
    K8S_TEST_TIMEOUT_S,
    ControlPlane,
    Kube,
    PausableProxy,
    control_plane,
    etcd_compact,
    k8s_namespace,
    kube,
)
from tests.kafkautil import consume

pytestmark = pytest.mark.timeout(K8S_TEST_TIMEOUT_S)


def metric(name: str, **labels: str) -> int:
    return int(REGISTRY.get_sample_value(name, labels) or 0)


async def until(predicate: Callable[[], bool], *, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not met within {timeout}s")
        await asyncio.sleep(0.05)


def create_event(kube: Kube, ns: str, **kw: Any) -> dict[str, Any]:
    body = k.event(ns, **kw)
    del body["metadata"]["uid"]  # the API server assigns it
    return kube.post(f"/api/v1/namespaces/{ns}/events", body)


def bump(kube: Kube, ev: dict[str, Any], count: int) -> dict[str, Any]:
    """What a kubelet does when an event repeats: same Event object, higher count."""
    meta = ev["metadata"]
    return kube.call("PATCH", f"/api/v1/namespaces/{meta['namespace']}/events/{meta['name']}", {"count": count})


def kubeconfig_via(cp: ControlPlane, server: str, path: Path) -> Path:
    """The admin kubeconfig, pointed at ``server`` (a proxy in front of the API server)."""
    kc = yaml.safe_load(cp.kubeconfig.read_text())
    kc["clusters"][0]["cluster"]["server"] = server
    path.write_text(yaml.safe_dump(kc))
    return path


@pytest.fixture
def proxy(control_plane: ControlPlane) -> Iterator[PausableProxy]:
    u = urlsplit(control_plane.api_url)
    p = PausableProxy((u.hostname or "127.0.0.1", u.port or 443))
    yield p
    p.close()


async def read_ours(s: Settings, cluster: str, ns: str) -> list[KubeEvent]:
    # Other tests' events are in the cluster too; read all this collector published, keep this namespace's.
    msgs = await consume(s, EVENTS.named(s.kafka.topic_prefix), count=metric("kubepulse_collector_records_published_total", cluster=cluster, kind="events"), timeout=20)
    return [e for e in (decode(KubeEvent, v) for _, v in msgs) if e.namespace == ns]


async def test_events_created_through_the_api_arrive_once_each_and_a_repeat_arrives_with_its_new_count(
    stack, settings: Settings, control_plane: ControlPlane, kube: Kube, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    name = f"ev-{ns}"
    s = settings.model_copy(update={"clusters": [ClusterSettings(name=name, kubeconfig=control_plane.kubeconfig)]})
    oom = create_event(kube, ns, reason="OOMKilled", involved=("Pod", "cart-1"), message="Container app exceeded its memory limit (512Mi)", host="node-a")
    async with Collector(s, watch_timeout_s=30) as c:
        await c.run(iterations=1)
        w = c.watchers[name]
        await until(lambda: oom["metadata"]["uid"] in w.seen, what="listed event emitted")
        # Created after the list: these come through the watch.
        back = create_event(kube, ns, reason="BackOff", involved=("Pod", "cart-1"), message="Back-off restarting failed container app")
        sched = create_event(kube, ns, reason="FailedScheduling", involved=("Pod", "web-2"), message="0/3 nodes are available: 3 Insufficient cpu.", component="default-scheduler")
        bump(kube, back, 5)
        await until(lambda: w.seen.get(back["metadata"]["uid"]) == 5 and sched["metadata"]["uid"] in w.seen, what="watched events emitted")
        assert w.relists == 1  # no 410 here: everything came through one list and the watch
    got = await read_ours(s, name, ns)
    assert sorted((e.reason, e.count) for e in got) == [("BackOff", 1), ("BackOff", 5), ("FailedScheduling", 1), ("OOMKilled", 1)]
    by = {(e.reason, e.count): e for e in got}
    e = by[("OOMKilled", 1)]
    assert (e.cluster, e.uid, e.namespace, e.name, e.type) == (name, oom["metadata"]["uid"], ns, oom["metadata"]["name"], "Warning")
    assert (e.message, e.involved_object.kind, e.involved_object.name, e.source_host) == ("Container app exceeded its memory limit (512Mi)", "Pod", "cart-1", "node-a")
    assert e.resource_version == oom["metadata"]["resourceVersion"]  # the real server's, carried through
    assert by[("FailedScheduling", 1)].source_component == "default-scheduler"
    assert by[("BackOff", 5)].uid == by[("BackOff", 1)].uid == back["metadata"]["uid"]


async def test_after_etcd_compaction_the_watch_gets_410_gone_and_the_relist_neither_loses_nor_duplicates_events(
    stack, settings: Settings, control_plane: ControlPlane, kube: Kube, k8s_namespace: str, proxy: PausableProxy, tmp_path: Path
) -> None:
    ns = k8s_namespace
    name = f"gone-{ns}"
    kc = kubeconfig_via(control_plane, proxy.url, tmp_path / "kc.yaml")
    s = settings.model_copy(update={"clusters": [ClusterSettings(name=name, kubeconfig=kc)]})
    first = create_event(kube, ns, reason="BackOff", involved=("Pod", "cart-1"))
    create_event(kube, ns, reason="Evicted", involved=("Pod", "db-0"), message="The node was low on resource: memory.")
    async with Collector(s, watch_timeout_s=60) as c:
        await c.run(iterations=1)
        w = c.watchers[name]
        watched = create_event(kube, ns, reason="Unhealthy", involved=("Pod", "web-1"), message="Readiness probe failed")
        await until(lambda: watched["metadata"]["uid"] in w.seen, what="watched event emitted")
        # A partition: the watch breaks and cannot come back. Meanwhile events
        # change and etcd's history is compacted past the collector's resourceVersion.
        proxy.cut()
        await until(lambda: metric("kubepulse_collector_scrape_errors_total", cluster=name, reason="unavailable") >= 1, what="watch broken by the partition")
        gap = create_event(kube, ns, reason="FailedMount", involved=("Pod", "db-0"), message='MountVolume.SetUp failed for volume "data"')
        bump(kube, first, 2)
        kube.post(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "after-the-events"}})
        compacted_at = etcd_compact(control_plane)
        assert int(w.resource_version or 0) < compacted_at
        proxy.heal()
        await until(lambda: w.relists == 2, timeout=30, what="relist after 410 Gone")
        # The new watch works: an event after the relist arrives too.
        late = create_event(kube, ns, reason="Killing", involved=("Pod", "web-1"), message="Stopping container web")
        await until(lambda: late["metadata"]["uid"] in w.seen, what="event after the relist emitted")
    assert metric("kubepulse_collector_scrape_errors_total", cluster=name, reason="expired") == 1  # a real 410 Gone
    got = await read_ours(s, name, ns)
    seen = [(e.uid, e.count) for e in got]
    assert len(seen) == len(set(seen)), f"duplicates: {seen}"
    assert sorted((e.reason, e.count) for e in got) == [
        ("BackOff", 1),
        ("BackOff", 2),
        ("Evicted", 1),
        ("FailedMount", 1),
        ("Killing", 1),
        ("Unhealthy", 1),
    ]
    (fm,) = [e for e in got if e.reason == "FailedMount"]
    assert (fm.uid, fm.message, fm.involved_object.name) == (gap["metadata"]["uid"], 'MountVolume.SetUp failed for volume "data"', "db-0")
