"""The collector against a real kube-apiserver: ResourceQuotas as the real server lists them, read back from the real Kafka."""

from __future__ import annotations


import pytest
from prometheus_client import REGISTRY

from collectors import Collector
from collectors.testing import payloads as k
from models.codec import decode
from models.records import QuotaScrape
from models.settings import ClusterSettings, Settings
from streams.topics import QUOTAS
from tests.integration.k8s_fixtures import (  # noqa: F401 - fixtures are used by name
    K8S_TEST_TIMEOUT_S,
    ControlPlane,
    Kube,
    control_plane,
    k8s_namespace,
    kube,
)
from tests.kafkautil import consume

# The first test of a session may build kube-apiserver from source (cached afterwards).
pytestmark = pytest.mark.timeout(K8S_TEST_TIMEOUT_S)

GiB = 2**30


def published(cluster: str) -> int:
    return int(REGISTRY.get_sample_value("kubepulse_collector_records_published_total", {"cluster": cluster, "kind": "quotas"}) or 0)


async def test_a_real_resource_quota_is_published_from_spec_until_counted_and_then_from_its_status(
    stack, settings: Settings, control_plane: ControlPlane, kube: Kube, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    hard = {"cpu": "1500m", "memory": "8Gi", "pods": "10", "count/deployments.apps": "5"}
    body = k.resourcequota(ns, "compute", hard=hard)
    del body["status"], body["metadata"]["uid"]  # a client sends neither: the server assigns them
    created = kube.post(f"/api/v1/namespaces/{ns}/resourcequotas", body)
    # No kube-controller-manager runs here: the real server keeps the quota uncounted.
    assert not created.get("status"), created.get("status")

    name = f"real-{ns}"
    s = settings.model_copy(update={"clusters": [ClusterSettings(name=name, kubeconfig=control_plane.kubeconfig)]})
    async with Collector(s, events=False) as c:
        (first,) = await c.scrape_once()
        # What the quota controller would write once it counted the namespace.
        created["status"] = {"hard": hard, "used": {"cpu": "750m", "memory": "6Gi", "pods": "10", "count/deployments.apps": "1"}}
        kube.call("PUT", f"/api/v1/namespaces/{ns}/resourcequotas/compute/status", created)
        (second,) = await c.scrape_once()
    for r in (first, second):
        assert (r.error, r.quota_error) == (None, None)
        assert r.quotas >= 1  # other tests' namespaces may hold quotas too

    msgs = await consume(s, QUOTAS.named(s.kafka.topic_prefix), count=published(name), timeout=20)
    ours = [(key, decode(QuotaScrape, v)) for key, v in msgs if key == f"{name}/{ns}/compute"]
    assert len(ours) == 2, [key for key, _ in msgs]
    (_, before), (_, after) = ours  # one key, one partition: in pass order
    want_hard = {"cpu": 1.5, "memory": 8.0 * GiB, "pods": 10.0, "count/deployments.apps": 5.0}
    assert (before.cluster, before.namespace, before.name) == (name, ns, "compute")
    assert (before.hard, before.used) == (want_hard, {})  # spec.hard fallback
    assert (after.hard, after.used) == (want_hard, {"cpu": 0.75, "memory": 6.0 * GiB, "pods": 10.0, "count/deployments.apps": 1.0})
    assert after.timestamp > before.timestamp
