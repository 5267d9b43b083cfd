"""The collector against a real kube-apiserver: HorizontalPodAutoscalers (autoscaling/v2) as the real server lists them."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from collectors import Collector
from collectors.testing import payloads as k
from kubepulse.report import held_resources
from models.codec import decode
from models.records import AutoscalerScrape
from models.settings import ClusterSettings, Settings
from streams.topics import AUTOSCALERS
from tests.integration.k8s_fixtures import (  # noqa: F401 - fixtures are used by name
    K8S_TEST_TIMEOUT_S,
    ControlPlane,
    Kube,
    control_plane,
    k8s_namespace,
    kube,
)
from tests.kafkautil import consume

pytestmark = pytest.mark.timeout(K8S_TEST_TIMEOUT_S)


async def test_a_real_hpa_is_published_with_the_defaults_the_api_server_fills_in(
    stack, settings: Settings, control_plane: ControlPlane, kube: Kube, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    body = k.horizontalpodautoscaler(ns, "web", target=("Deployment", "web"), max_replicas=6, metrics=[
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}])
    del body["status"], body["metadata"]["uid"], body["spec"]["minReplicas"]  # the server assigns uid and defaults minReplicas
    kube.post(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers", body)
    name = f"real-{ns}"
    s = settings.model_copy(update={"clusters": [ClusterSettings(name=name, kubeconfig=control_plane.kubeconfig)]})
    async with Collector(s, events=False) as c:
        (report,) = await c.scrape_once()
    assert (report.error, report.autoscaler_error) == (None, None) and report.autoscalers >= 1
    count = int(REGISTRY.get_sample_value("kubepulse_collector_records_published_total", {"cluster": name, "kind": "autoscalers"}) or 0)
    msgs = await consume(s, AUTOSCALERS.named(s.kafka.topic_prefix), count=count, timeout=20)
    ((key, value),) = [(key, v) for key, v in msgs if key == f"{name}/{ns}/web"]
    hpa = decode(AutoscalerScrape, value)
    assert (hpa.target_kind, hpa.target_name, hpa.min_replicas, hpa.max_replicas) == ("Deployment", "web", 1, 6)
    assert held_resources(hpa, "any-container") == ["cpu"]
