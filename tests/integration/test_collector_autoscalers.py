"""HorizontalPodAutoscalers: the real-cluster collector against the test API server, read back from the real Kafka (kubepulse.autoscalers.v1)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from collectors import Collector
from collectors.testing import FakeApiServer
from collectors.testing import payloads as k
from kubepulse.report import held_resources
from models.codec import decode
from models.records import AutoscalerScrape
from models.settings import Settings
from streams.topics import AUTOSCALERS
from tests.integration.test_collector_metrics import cluster, read_scrapes, shop, with_clusters
from tests.integration.test_collector_quotas import published
from tests.kafkautil import consume


@pytest.fixture
def api():
    with FakeApiServer(bookmark_interval_s=0.2) as server:
        yield server


async def read_autoscalers(settings: Settings, count: int) -> dict[str | None, AutoscalerScrape]:
    msgs = await consume(settings, AUTOSCALERS.named(settings.kafka.topic_prefix), count=count, timeout=20)
    return {key: decode(AutoscalerScrape, value) for key, value in msgs}


def _cpu(utilization: int) -> dict:
    return {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": utilization}}}


async def test_hpas_land_on_the_autoscalers_topic_with_their_target_bounds_and_utilization_metrics(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path
) -> None:
    shop(api)
    api.add(
        "HorizontalPodAutoscaler",
        k.horizontalpodautoscaler("shop", "cart", target=("Deployment", "cart"), min_replicas=2, max_replicas=12, current=3,
                                  metrics=[_cpu(65), {"type": "ContainerResource", "containerResource": {
                                      "name": "memory", "container": "cart", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        k.horizontalpodautoscaler("shop", "checkout", target=("Deployment", "checkout"), max_replicas=4, metrics=[
            {"type": "Pods", "pods": {"metric": {"name": "requests_per_second"}, "target": {"type": "AverageValue", "averageValue": "500m"}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "512Mi"}}},
        ]),
    )
    s = with_clusters(settings, cluster(api, tmp_path, "prod-eu"))
    async with Collector(s, events=False) as c:
        (report,) = await c.scrape_once()
    assert (report.error, report.autoscaler_error, report.autoscalers, report.nodes) == (None, None, 2, 1)
    assert [a.status for a in api.requests(verb="list", resource="horizontalpodautoscalers")] == [200]
    got = await read_autoscalers(s, 2)
    assert sorted(got) == ["prod-eu/shop/cart", "prod-eu/shop/checkout"]
    cart = got["prod-eu/shop/cart"]
    assert (cart.target_kind, cart.target_name, cart.min_replicas, cart.max_replicas, cart.current_replicas) == ("Deployment", "cart", 2, 12, 3)
    assert [(m.type, m.resource, m.container, m.target_average_utilization) for m in cart.metrics] == [
        ("Resource", "cpu", None, 65), ("ContainerResource", "memory", "cart", 80)]
    # What right-sizing makes of them: the cart container's CPU and memory requests are held, another container's CPU only.
    assert held_resources(cart, "cart") == ["cpu", "memory"] and held_resources(cart, "istio-proxy") == ["cpu"]
    checkout = got["prod-eu/shop/checkout"]
    assert (checkout.min_replicas, checkout.current_replicas) == (1, None)  # the API's default; no status yet
    assert [(m.type, m.metric_name, m.target_type, m.target_average_value) for m in checkout.metrics] == [
        ("Pods", "requests_per_second", "AverageValue", 0.5), ("Resource", None, "AverageValue", 512 * 2**20)]
    assert held_resources(checkout, "checkout") == []  # average values do not divide by the request
    assert published("prod-eu", "autoscalers") >= 2


async def test_forbidden_hpas_name_the_rule_once_and_quotas_and_node_scrapes_keep_flowing(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shop(api)
    api.add("ResourceQuota", k.resourcequota("shop", "compute", hard={"pods": "10"}, used={"pods": "1"}))
    api.add("HorizontalPodAutoscaler", k.horizontalpodautoscaler("shop", "cart", target=("Deployment", "cart"), metrics=[_cpu(70)]))
    api.forbid("list", "horizontalpodautoscalers", group="autoscaling")
    name = f"nohpa-{settings.kafka.topic_prefix.strip('.')}"
    s = with_clusters(settings, cluster(api, tmp_path, name))
    caplog.set_level(logging.WARNING, logger="kubepulse.collectors")
    async with Collector(s, events=False) as c:
        (r1,) = await c.scrape_once()
        (r2,) = await c.scrape_once()
        api.forbidden.discard(("list", "autoscaling", "horizontalpodautoscalers"))
        (r3,) = await c.scrape_once()
    for r in (r1, r2):
        assert (r.error, r.errors, r.nodes, r.quotas, r.autoscalers) == (None, 0, 1, 1, 0)
        assert r.autoscaler_error is not None and "403 Forbidden" in r.autoscaler_error
    warnings = [r.getMessage() for r in caplog.records if "403 Forbidden" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert ('Add this rule to its ClusterRole: {apiGroups: ["autoscaling"], resources: ["horizontalpodautoscalers"], verbs: ["list"]}'
            in warnings[0]) and "without HorizontalPodAutoscalers" in warnings[0]
    assert (r3.autoscalers, r3.autoscaler_error) == (1, None)
    assert len(await read_scrapes(s, 3)) == 3
    assert list(await read_autoscalers(s, 1)) == [f"{name}/shop/cart"]
