"""The collector against a real kube-apiserver: node scrapes through the real node proxy, read back from the real Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from collectors import Collector
from collectors.testing import payloads as k
from models.codec import decode
from models.records import NodeScrape
from models.settings import ClusterSettings, Settings
from streams.topics import METRICS
from tests.integration.k8s_fixtures import (  # noqa: F401 - fixtures are used by name
    K8S_TEST_TIMEOUT_S,
    ControlPlane,
    Kube,
    control_plane,
    k8s_namespace,
    k8s_nodes,
    kube,
    kubelet_factory,
)
from tests.kafkautil import consume

# The first test of a session may build kube-apiserver from source (cached afterwards).
pytestmark = pytest.mark.timeout(K8S_TEST_TIMEOUT_S)

GiB = 2**30
MiB = 2**20
T0 = 1_767_268_800.0  # 2026-01-01T12:00:00Z


def published(cluster: str, kind: str) -> int:
    return int(REGISTRY.get_sample_value("kubepulse_collector_records_published_total", {"cluster": cluster, "kind": kind}) or 0)


def make_pod(kube: Kube, ns: str, name: str, *, node: str, owner: dict[str, Any], containers: list[dict[str, Any]], restarts: dict[str, tuple[int, str]]) -> dict[str, Any]:
    """Create a pod bound to ``node`` and give it a Running status, as the scheduler and kubelet would."""
    meta = {
        "name": name,
        "labels": {"app": name.split("-")[0]},
        "ownerReferences": [
            {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"], "controller": True}
        ],
    }
    pod = kube.post(f"/api/v1/namespaces/{ns}/pods", {"metadata": meta, "spec": {"nodeName": node, "containers": containers}})
    statuses = []
    for c in containers:
        count, reason = restarts.get(c["name"], (0, ""))
        st: dict[str, Any] = {
            "name": c["name"],
            "ready": True,
            "restartCount": count,
            "image": c["image"],
            "imageID": "",
            "state": {"running": {"startedAt": k.rfc3339(T0 - 600)}},
        }
        if reason:
            st["lastState"] = {"terminated": {"exitCode": 137, "reason": reason, "startedAt": k.rfc3339(T0 - 900), "finishedAt": k.rfc3339(T0 - 601)}}
        statuses.append(st)
    pod["status"].update({"phase": "Running", "containerStatuses": statuses})
    return kube.call("PUT", f"/api/v1/namespaces/{ns}/pods/{name}/status", pod)


def workloads(kube: Kube, ns: str, node_a: str, node_b: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Deployment's pod on node a (app: request+limit, sidecar: request only) and a CronJob's pod on node b."""
    rs = kube.post(
        f"/apis/apps/v1/namespaces/{ns}/replicasets",
        {
            "metadata": {
                "name": "cart-5d9",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "cart", "uid": "8a1e7c1e-0000-4000-8000-000000000001", "controller": True}],
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "cart"}},
                "template": {"metadata": {"labels": {"app": "cart"}}, "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}},
            },
        },
    )
    job = kube.post(
        f"/apis/batch/v1/namespaces/{ns}/jobs",
        {
            "metadata": {
                "name": "nightly-2960",
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "8a1e7c1e-0000-4000-8000-000000000002", "controller": True}],
            },
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "run", "image": "example/report:1"}]}}},
        },
    )
    cart = make_pod(
        kube,
        ns,
        "cart-5d9-x1",
        node=node_a,
        owner=rs,
        containers=[
            k.container("app", requests={"cpu": "500m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "512Mi"}),
            k.container("sidecar", requests={"cpu": "100m"}),
        ],
        restarts={"app": (1, "OOMKilled")},
    )
    report = make_pod(
        kube,
        ns,
        "nightly-2960-q7",
        node=node_b,
        owner=job,
        containers=[k.container("run", requests={"cpu": "2", "memory": "1Gi"}, limits={"cpu": "2", "memory": "2Gi"})],
        restarts={},
    )
    return cart, report


def summary_a(node: str, ns: str, uid: str, *, t: float, app_ns: int) -> dict[str, Any]:
    return k.summary(
        node,
        time=t,
        start=T0 - 86400,
        cpu_ns=10 * app_ns,
        working_set=4 * GiB,
        pods=[
            k.pod_stats(
                ns,
                "cart-5d9-x1",
                uid=uid,
                time=t,
                start=T0 - 600,
                cpu_ns=app_ns + app_ns // 10,
                working_set=320 * MiB,
                volumes=[k.volume_stats("data", used=3 * GiB, capacity=10 * GiB, pvc="cart-data", namespace=ns)],
                containers=[
                    k.container_stats("app", time=t, start=T0 - 600, cpu_ns=app_ns, working_set=256 * MiB),
                    k.container_stats("sidecar", time=t, start=T0 - 600, cpu_ns=app_ns // 10, working_set=64 * MiB),
                ],
            )
        ],
    )


def summary_b(node: str, ns: str, uid: str, *, t: float, run_ns: int) -> dict[str, Any]:
    return k.summary(
        node,
        time=t,
        start=T0 - 86400,
        cpu_ns=2 * run_ns,
        working_set=20 * GiB,
        pods=[
            k.pod_stats(
                ns,
                "nightly-2960-q7",
                uid=uid,
                time=t,
                start=T0 - 60,
                cpu_ns=run_ns,
                working_set=1536 * MiB,
                containers=[k.container_stats("run", time=t, start=T0 - 60, cpu_ns=run_ns, working_set=1536 * MiB)],
            )
        ],
    )


async def test_collector_publishes_correct_node_scrapes_read_through_the_real_api_servers_node_proxy(
    stack, settings: Settings, control_plane: ControlPlane, kube: Kube, k8s_namespace: str, kubelet_factory, k8s_nodes, tmp_path: Path
) -> None:
    ns = k8s_namespace
    node_a, node_b = f"{ns}-a", f"{ns}-b"
    kubelet_a, kubelet_b = kubelet_factory(), kubelet_factory()
    k8s_nodes(k.node(node_a, cpu="4", memory="16Gi"), kubelet_a)
    k8s_nodes(k.node(node_b, cpu="8", memory="32Gi", conditions={"MemoryPressure": "True"}), kubelet_b)
    cart, report = workloads(kube, ns, node_a, node_b)

    name = f"real-{ns}"
    s = settings.model_copy(update={"clusters": [ClusterSettings(name=name, kubeconfig=control_plane.kubeconfig)]})
    async with Collector(s, events=False) as c:
        kubelet_a.summary = summary_a(node_a, ns, cart["metadata"]["uid"], t=T0, app_ns=100 * 10**9)
        kubelet_b.summary = summary_b(node_b, ns, report["metadata"]["uid"], t=T0, run_ns=50 * 10**9)
        (first,) = await c.scrape_once()
        # 10 s later by the kubelets' clocks: app used 5 core-seconds, run 15.
        kubelet_a.summary = summary_a(node_a, ns, cart["metadata"]["uid"], t=T0 + 10, app_ns=105 * 10**9)
        kubelet_b.summary = summary_b(node_b, ns, report["metadata"]["uid"], t=T0 + 10, run_ns=65 * 10**9)
        (second,) = await c.scrape_once()

    for r in (first, second):
        assert r.error is None and r.source == "summary"
        assert node_a not in r.node_errors and node_b not in r.node_errors, r.node_errors
    # Each kubelet was asked twice, by the API server's kubelet client: the real node proxy.
    for kl in (kubelet_a, kubelet_b):
        assert [(q.path, q.client_cn) for q in kl.requests] == [("/stats/summary", control_plane.kubelet_client_cn)] * 2

    msgs = await consume(s, METRICS.named(s.kafka.topic_prefix), count=published(name, "metrics"), timeout=20)
    scrapes = [(key, decode(NodeScrape, v)) for key, v in msgs]
    ours = [(key, sc) for key, sc in scrapes if sc.node in (node_a, node_b)]
    assert sorted(key for key, _ in ours) == sorted([f"{name}/{node_a}"] * 2 + [f"{name}/{node_b}"] * 2)
    last = {sc.node: sc for _, sc in ours}  # one partition per key: the second scrape comes last

    a = last[node_a]
    assert (a.cluster, a.source) == (name, "summary")
    assert a.node_stats.allocatable.cpu_cores == 4 and a.node_stats.allocatable.memory_bytes == 16 * GiB
    assert a.node_stats.cpu_cores == pytest.approx(5.0)  # 10 x the app's 0.5 cores
    (pod,) = a.pods
    assert (pod.namespace, pod.name, pod.uid) == (ns, "cart-5d9-x1", cart["metadata"]["uid"])
    # Owner resolved through the real ReplicaSet's ownerReferences.
    assert (pod.workload_kind, pod.workload_name, pod.phase, pod.labels) == ("Deployment", "cart", "Running", {"app": "cart"})
    assert pod.volumes[0].pvc_name == "cart-data" and pod.volumes[0].used_bytes == 3 * GiB
    app, sidecar = pod.containers
    assert app.name == "app" and app.cpu_cores == pytest.approx(0.5)
    assert app.cpu_request_share == pytest.approx(1.0) and app.cpu_limit_share == pytest.approx(0.5)
    assert app.cpu_node_share == pytest.approx(0.5 / 4)
    assert app.memory_limit_share == pytest.approx(0.5) and app.memory_request_share == pytest.approx(1.0)
    assert (app.restart_count, app.last_terminated_reason) == (1, "OOMKilled")
    assert sidecar.cpu_cores == pytest.approx(0.05) and sidecar.cpu_request_share == pytest.approx(0.5)
    assert sidecar.cpu_limit_share is None and sidecar.memory_limit_share is None

    b = last[node_b]
    assert b.node_stats.conditions["MemoryPressure"] == "True" and b.node_stats.allocatable.cpu_cores == 8
    (job_pod,) = b.pods
    assert (job_pod.workload_kind, job_pod.workload_name) == ("CronJob", "nightly")
    (run,) = job_pod.containers
    assert run.cpu_cores == pytest.approx(1.5) and run.cpu_limit_share == pytest.approx(0.75)
    assert run.memory_limit_share == pytest.approx(0.75) and run.memory_working_set_bytes == 1536 * MiB
