"""The real-cluster collector against the test API server over HTTP, publishing to the real Kafka."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY

from collectors import Collector
from collectors.rbac import REQUIRED_RULES, covers
from collectors.testing import FakeApiServer
from collectors.testing import payloads as k
from models.codec import decode
from models.records import NodeScrape
from models.settings import ClusterSettings, Settings
from streams.topics import METRICS
from tests.kafkautil import consume

GiB = 2**30
MiB = 2**20
T0 = 1_767_268_800.0  # 2026-01-01T12:00:00Z


@pytest.fixture
def api():
    with FakeApiServer(bookmark_interval_s=0.2) as server:
        yield server


def with_clusters(settings: Settings, *clusters: ClusterSettings, **kube: object) -> Settings:
    return settings.model_copy(
        update={"clusters": list(clusters), "kubernetes": settings.kubernetes.model_copy(update=kube)}
    )


def cluster(api: FakeApiServer, tmp_path: Path, name: str, **kw: str) -> ClusterSettings:
    return ClusterSettings(name=name, kubeconfig=api.write_kubeconfig(tmp_path / f"{name}.kubeconfig", **kw))


def shop(api: FakeApiServer) -> dict[str, str]:
    """One node (4 CPUs, 16 GiB) running a Deployment pod: app (request+limit) and sidecar (no limit)."""
    api.add("Node", k.node("node-a", cpu="4", memory="16Gi"))
    api.add("ReplicaSet", k.replicaset("shop", "cart-5d9", deployment="cart"))
    p = k.pod(
        "shop",
        "cart-5d9-x1",
        node_name="node-a",
        owner=("ReplicaSet", "cart-5d9"),
        labels={"app": "cart"},
        containers=[
            k.container("app", requests={"cpu": "500m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "512Mi"}),
            k.container("sidecar", requests={"cpu": "100m"}),
        ],
        restarts={"app": (1, "OOMKilled")},
    )
    api.add("Pod", p)
    return {"uid": p["metadata"]["uid"]}


def shop_summary(uid: str, *, t: float, app_ns: int, sidecar_ns: int, rx: int, app_start: float = T0 - 600) -> dict:
    return k.summary(
        "node-a",
        time=t,
        start=T0 - 86400,
        cpu_ns=10 * app_ns,
        working_set=4 * GiB,
        interfaces=[k.interface("eth0", rx=rx * 3, tx=rx)],
        pods=[
            k.pod_stats(
                "shop",
                "cart-5d9-x1",
                uid=uid,
                time=t,
                start=T0 - 600,
                cpu_ns=app_ns + sidecar_ns,
                working_set=320 * MiB,
                interfaces=[k.interface("eth0", rx=rx, tx=rx // 2, rx_errors=0)],
                volumes=[k.volume_stats("data", used=3 * GiB, capacity=10 * GiB, pvc="cart-data", namespace="shop", inodes_used=1234)],
                containers=[
                    k.container_stats("app", time=t, start=app_start, cpu_ns=app_ns, working_set=256 * MiB),
                    k.container_stats("sidecar", time=t, start=T0 - 600, cpu_ns=sidecar_ns, working_set=64 * MiB),
                ],
            )
        ],
    )


async def read_scrapes(settings: Settings, count: int) -> list[tuple[str | None, NodeScrape]]:
    msgs = await consume(settings, METRICS.named(settings.kafka.topic_prefix), count=count, timeout=20)
    return [(key, decode(NodeScrape, value)) for key, value in msgs]


async def test_cpu_rate_comes_from_usage_counter_deltas_and_utilisation_is_against_request_limit_and_node(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path
) -> None:
    uid = shop(api)["uid"]
    s = with_clusters(settings, cluster(api, tmp_path, "prod-eu"))
    async with Collector(s, events=False) as c:
        api.set_summary("node-a", shop_summary(uid, t=T0, app_ns=100 * 10**9, sidecar_ns=10 * 10**9, rx=1_000_000))
        first = await c.scrape_once()
        # 10 s later (kubelet time): app used 5 core-seconds, sidecar 0.5, eth0 received 200 kB.
        api.set_summary("node-a", shop_summary(uid, t=T0 + 10, app_ns=105 * 10**9, sidecar_ns=105 * 10**8, rx=1_200_000))
        second = await c.scrape_once()
    assert (first[0].nodes, first[0].pods, first[0].samples, first[0].errors) == (1, 1, 4, 0)
    assert second[0].error is None

    (k1, s1), (k2, s2) = await read_scrapes(s, 2)
    assert k1 == k2 == "prod-eu/node-a"
    # The first scrape of a series has no rate.
    assert s1.pods[0].containers[0].cpu_cores is None
    assert s1.pods[0].network[0].rx_bytes_per_s is None

    pod = s2.pods[0]
    app, sidecar = pod.containers
    assert (s2.cluster, s2.node, s2.source) == ("prod-eu", "node-a", "summary")
    assert app.cpu_cores == pytest.approx(0.5)
    assert app.cpu_usage_seconds_total == pytest.approx(105.0)
    assert app.cpu_request_share == pytest.approx(1.0)
    assert app.cpu_limit_share == pytest.approx(0.5)
    assert app.cpu_node_share == pytest.approx(0.125)
    assert app.memory_working_set_bytes == 256 * MiB
    assert app.memory_limit_share == pytest.approx(0.5)
    assert app.memory_request_share == pytest.approx(1.0)
    assert app.memory_node_share == pytest.approx(256 / (16 * 1024))
    assert (app.restart_count, app.last_terminated_reason) == (1, "OOMKilled")
    assert app.rootfs is not None and app.rootfs.used_bytes == 4096 and app.logs is not None and app.logs.used_bytes == 1024
    # No limit: limit utilisation is null, never the node's share in disguise.
    assert sidecar.cpu_cores == pytest.approx(0.05)
    assert sidecar.cpu_limit_share is None and sidecar.memory_limit_share is None
    assert sidecar.cpu_request_share == pytest.approx(0.5)
    assert sidecar.memory_request_share is None
    # The pod: requests summed, limit unknown because the sidecar has none.
    assert pod.cpu_cores == pytest.approx(0.55)
    assert pod.requests.cpu_cores == pytest.approx(0.6) and pod.limits.cpu_cores is None
    assert pod.cpu_limit_share is None and pod.cpu_request_share == pytest.approx(0.55 / 0.6)
    assert (pod.workload_kind, pod.workload_name, pod.labels, pod.uid) == ("Deployment", "cart", {"app": "cart"}, uid)
    assert pod.network[0].name == "eth0" and pod.network[0].rx_bytes_per_s == pytest.approx(20_000.0)
    assert pod.network[0].tx_bytes_per_s == pytest.approx(10_000.0) and pod.network[0].rx_errors_per_s == 0.0
    assert pod.ephemeral_storage is not None and pod.ephemeral_storage.used_bytes == 8192
    (vol,) = pod.volumes
    assert (vol.name, vol.pvc_name, vol.used_bytes, vol.capacity_bytes, vol.inodes_used) == ("data", "cart-data", 3 * GiB, 10 * GiB, 1234)
    assert vol.used_share == pytest.approx(0.3)
    node = s2.node_stats
    assert node.cpu_cores == pytest.approx(5.0) and node.cpu_node_share == pytest.approx(5.0 / 4)
    assert node.allocatable.cpu_cores == 4.0 and node.allocatable.memory_bytes == 16 * GiB
    assert node.conditions["MemoryPressure"] == "False"
    assert node.network[0].rx_bytes_per_s == pytest.approx(60_000.0)
    assert node.imagefs is not None and node.imagefs.used_bytes == 10 * GiB


async def test_counter_reset_on_container_restart_gives_no_rate_and_the_next_scrape_resumes(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path
) -> None:
    uid = shop(api)["uid"]
    s = with_clusters(settings, cluster(api, tmp_path, "reset"))
    async with Collector(s, events=False) as c:
        api.set_summary("node-a", shop_summary(uid, t=T0, app_ns=500 * 10**9, sidecar_ns=10**9, rx=10**9))
        await c.scrape_once()
        # The app container restarted: new start time, counter back near zero.
        # The pod's network counter also went down (e.g. a sandbox restart).
        api.set_summary("node-a", shop_summary(uid, t=T0 + 15, app_ns=2 * 10**9, sidecar_ns=2 * 10**9, rx=5000, app_start=T0 + 5))
        await c.scrape_once()
        api.set_summary("node-a", shop_summary(uid, t=T0 + 30, app_ns=5 * 10**9, sidecar_ns=3 * 10**9, rx=35000, app_start=T0 + 5))
        await c.scrape_once()
    (_, s1), (_, s2), (_, s3) = await read_scrapes(s, 3)
    assert s2.pods[0].containers[0].cpu_cores is None  # reset: no negative, no huge rate
    assert s2.pods[0].network[0].rx_bytes_per_s is None
    assert s2.pods[0].containers[1].cpu_cores == pytest.approx(1 / 15)  # the sidecar did not restart
    assert s3.pods[0].containers[0].cpu_cores == pytest.approx(0.2)
    assert s3.pods[0].network[0].rx_bytes_per_s == pytest.approx(2000.0)


async def test_malformed_summary_of_one_node_is_skipped_with_a_reason_and_counted_while_the_rest_is_published(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api.add("Node", k.node("good-1"), k.node("bad"), k.node("good-2"))
    api.set_summary("good-1", k.summary("good-1", time=T0, cpu_ns=10**9, working_set=GiB, pods=[]))
    api.set_summary("good-2", k.summary("good-2", time=T0, cpu_ns=10**9, working_set=GiB, pods=[]))
    api.set_summary("bad", b'{"node": {"nodeName": "bad", "cpu": {"usageCoreNanoSeconds": ')
    name = f"mal-{settings.kafka.topic_prefix.strip('.')}"
    s = with_clusters(settings, cluster(api, tmp_path, name))
    caplog.set_level(logging.WARNING, logger="kubepulse.collectors")
    async with Collector(s, events=False) as c:
        (report,) = await c.scrape_once()
    assert (report.nodes, report.errors) == (2, 1)
    assert "not JSON" in report.node_errors["bad"]
    assert REGISTRY.get_sample_value("kubepulse_collector_scrape_errors_total", {"cluster": name, "reason": "malformed"}) == 1.0
    assert any("node bad skipped (malformed)" in r.getMessage() for r in caplog.records)
    got = await read_scrapes(s, 2)
    assert sorted(key for key, _ in got) == [f"{name}/good-1", f"{name}/good-2"]


async def test_forbidden_node_proxy_falls_back_to_metrics_api_and_names_the_missing_rule_once(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shop(api)
    api.forbid("get", "nodes/proxy")
    api.set_metrics(
        k.node_metrics("node-a", cpu="1500m", memory="6Gi"),
        k.pod_metrics("shop", "cart-5d9-x1", containers={"app": ("250m", "128Mi"), "sidecar": ("50m", "32Mi")}),
    )
    s = with_clusters(settings, cluster(api, tmp_path, "locked"))
    caplog.set_level(logging.WARNING, logger="kubepulse.collectors")
    async with Collector(s, events=False) as c:
        (r1,) = await c.scrape_once()
        (r2,) = await c.scrape_once()
    assert r1.source == r2.source == "metrics.k8s.io" and r1.errors == 0 and r1.nodes == 1
    warnings = [r.getMessage() for r in caplog.records if "Falling back to metrics.k8s.io" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert 'may not get nodes/proxy in the core API group ("")' in warnings[0]
    assert '{apiGroups: [""], resources: ["nodes/proxy"], verbs: ["get"]}' in warnings[0]
    (_, s1), _ = await read_scrapes(s, 2)
    assert s1.source == "metrics.k8s.io"
    assert s1.node_stats.cpu_cores == pytest.approx(1.5) and s1.node_stats.memory_working_set_bytes == 6 * GiB
    app, sidecar = s1.pods[0].containers
    assert app.cpu_cores == pytest.approx(0.25) and app.cpu_limit_share == pytest.approx(0.25)
    assert app.memory_working_set_bytes == 128 * MiB
    assert sidecar.cpu_limit_share is None and sidecar.cpu_request_share == pytest.approx(0.5)
    assert s1.pods[0].cpu_cores == pytest.approx(0.3) and s1.pods[0].workload_name == "cart"


async def test_429_is_retried_after_the_retry_after_delay_and_the_pass_completes(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path
) -> None:
    shop(api)
    api.fail("list", "pods", status=429, retry_after=0.6)
    api.fail("get", "nodes/proxy", status=503, times=1)
    s = with_clusters(settings, cluster(api, tmp_path, "busy"))
    async with Collector(s, events=False) as c:
        (report,) = await c.scrape_once()
    assert report.error is None and report.nodes == 1 and report.errors == 0
    pods = api.requests(verb="list", resource="pods")
    assert [a.status for a in pods] == [429, 200]
    assert pods[1].at - pods[0].at >= 0.6
    assert [a.status for a in api.requests(resource="nodes/proxy")] == [503, 200]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_cluster_that_is_down_is_reported_while_another_keeps_publishing(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path
) -> None:
    shop(api)
    api.set_summary("node-a", shop_summary(api.store.pods[("shop", "cart-5d9-x1")]["metadata"]["uid"], t=T0, app_ns=1, sidecar_ns=1, rx=1))
    down_kc = tmp_path / "down.kubeconfig"
    down_kc.write_text(api.write_kubeconfig(tmp_path / "x.kubeconfig").read_text().replace(api.url, f"http://127.0.0.1:{_closed_port()}"))
    down = ClusterSettings(name="down", kubeconfig=down_kc)
    s = with_clusters(settings, down, cluster(api, tmp_path, "up"), interval_s=1.0, jitter_s=0.0, request_timeout_s=1.0)
    reports = []
    t0 = time.monotonic()
    async with Collector(s, events=False, on_pass=reports.append) as c:
        await c.run(iterations=3)
    elapsed = time.monotonic() - t0
    ups = [r for r in reports if r.cluster == "up"]
    downs = [r for r in reports if r.cluster == "down"]
    assert [r.nodes for r in ups] == [1, 1, 1] and all(r.error is None for r in ups)
    assert len(downs) == 3 and all(r.error and "cluster down" in r.error for r in downs)
    # The healthy cluster kept its 1 s interval (3 passes) despite the other's retries.
    assert elapsed < 12
    got = await read_scrapes(s, 3)
    assert [key for key, _ in got] == ["up/node-a"] * 3


async def test_wrong_credentials_fail_the_pass_with_a_message_about_the_kubeconfig(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path
) -> None:
    shop(api)
    s = with_clusters(settings, cluster(api, tmp_path, "stale", token="expired-token"))
    async with Collector(s, events=False) as c:
        (report,) = await c.scrape_once()
    assert report.error is not None
    assert "401 Unauthorized on list" in report.error and "refresh the token" in report.error
    assert report.nodes == 0


async def test_a_full_run_only_makes_api_calls_that_required_rules_cover_and_uses_every_rule(
    stack, settings: Settings, tmp_path: Path
) -> None:
    with FakeApiServer(bookmark_interval_s=0.1) as open_api, FakeApiServer(bookmark_interval_s=0.1) as locked_api:
        for server in (open_api, locked_api):
            shop(server)
            server.add("Pod", k.pod("batch", "report-123-x", node_name="node-a", owner=("Job", "report-123")))
            server.add("Job", k.job("batch", "report-123", cronjob="report"))
            server.add_event(k.event("shop", reason="BackOff", involved=("Pod", "cart-5d9-x1")))
        locked_api.forbid("get", "nodes/proxy")
        locked_api.set_metrics(k.pod_metrics("batch", "report-123-x", containers={"app": ("10m", "1Mi")}))
        s = with_clusters(settings, cluster(open_api, tmp_path, "open"), cluster(locked_api, tmp_path, "locked"))
        async with Collector(s, watch_timeout_s=1) as c:
            await c.run(iterations=1)
            # Let each watcher list and open a watch.
            for _ in range(100):
                if all(srv.requests(verb="watch") for srv in (open_api, locked_api)):
                    break
                await asyncio.sleep(0.05)
        log = open_api.access_log + locked_api.access_log
    used = {(a.verb, a.group, a.resource) for a in log}
    assert all(a.status != 400 for a in log), [a for a in log if a.status == 400]
    uncovered = [u for u in used if not covers(REQUIRED_RULES, verb=u[0], group=u[1], resource=u[2])]
    assert uncovered == []
    needed = {(v, r["apiGroups"][0], r["resources"][0]) for r in REQUIRED_RULES for v in r["verbs"]}
    assert needed == used, f"rules never exercised: {needed - used}"
    scrapes = await read_scrapes(s, 2)
    pods = {p.name: p for _, sc in scrapes for p in sc.pods}
    assert (pods["report-123-x"].workload_kind, pods["report-123-x"].workload_name) == ("CronJob", "report")
    assert orjson.loads(orjson.dumps(REQUIRED_RULES)) == REQUIRED_RULES
