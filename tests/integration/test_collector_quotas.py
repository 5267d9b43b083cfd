"""ResourceQuotas: the real-cluster collector against the test API server, read back from the real Kafka (kubepulse.quotas.v1)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from collectors import Collector
from collectors.testing import FakeApiServer
from collectors.testing import payloads as k
from models.codec import decode
from models.records import QuotaScrape
from models.series import quota_entities
from models.settings import Settings
from streams.topics import QUOTAS
from tests.integration.test_collector_metrics import cluster, read_scrapes, shop, with_clusters
from tests.kafkautil import consume

GiB = 2**30
MiB = 2**20


@pytest.fixture
def api():
    with FakeApiServer(bookmark_interval_s=0.2) as server:
        yield server


def published(cluster_name: str, kind: str) -> float:
    return REGISTRY.get_sample_value("kubepulse_collector_records_published_total", {"cluster": cluster_name, "kind": kind}) or 0.0


async def read_quotas(settings: Settings, count: int, *, timeout: float = 20) -> list[tuple[str | None, QuotaScrape]]:
    msgs = await consume(settings, QUOTAS.named(settings.kafka.topic_prefix), count=count, timeout=timeout)
    return [(key, decode(QuotaScrape, value)) for key, value in msgs]


async def test_quota_hard_and_used_land_on_the_quotas_topic_as_cores_bytes_and_counts_keyed_by_cluster_namespace_name(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path
) -> None:
    shop(api)
    api.add(
        "ResourceQuota",
        k.resourcequota(
            "shop",
            "compute",
            hard={"cpu": "1500m", "memory": "8Gi", "pods": "10", "count/deployments.apps": "5", "requests.storage": "100G"},
            used={"cpu": "1250m", "memory": "7680Mi", "pods": "10", "count/deployments.apps": "2", "requests.storage": "0"},
        ),
        # Created a moment ago: the quota controller has not counted it yet.
        k.resourcequota("batch", "fresh", hard={"limits.cpu": "4", "limits.memory": "512Mi"}),
    )
    s = with_clusters(settings, cluster(api, tmp_path, "prod-eu"))
    before = datetime.now(timezone.utc)
    async with Collector(s, events=False) as c:
        (report,) = await c.scrape_once()
    after = datetime.now(timezone.utc)
    assert (report.error, report.quota_error, report.quotas, report.nodes) == (None, None, 2, 1)
    assert [a.status for a in api.requests(verb="list", resource="resourcequotas")] == [200]

    got = dict(await read_quotas(s, 2))
    assert sorted(got) == ["prod-eu/batch/fresh", "prod-eu/shop/compute"]
    q = got["prod-eu/shop/compute"]
    assert (q.cluster, q.namespace, q.name, q.source) == ("prod-eu", "shop", "compute", "kubernetes")
    assert q.hard == {"cpu": 1.5, "memory": 8 * GiB, "pods": 10.0, "count/deployments.apps": 5.0, "requests.storage": 100e9}
    assert q.used == {"cpu": 1.25, "memory": 7680 * MiB, "pods": 10.0, "count/deployments.apps": 2.0, "requests.storage": 0.0}
    assert before <= q.timestamp <= after
    # No status yet: the limits come from spec.hard and nothing is counted.
    fresh = got["prod-eu/batch/fresh"]
    assert (fresh.hard, fresh.used) == ({"limits.cpu": 4.0, "limits.memory": 512 * MiB}, {})
    assert fresh.timestamp == q.timestamp  # one pass, one time
    # What the stream worker makes of it: the share a KubeQuotaFullyUsed rule reads.
    shares = {e.labels["resource"]: dict(e.metrics)["quota.used_share"] for e in quota_entities(q)}
    assert shares["pods"] == 1.0 and shares["cpu"] == pytest.approx(1.25 / 1.5) and shares["memory"] == pytest.approx(0.9375)
    assert published("prod-eu", "quotas") >= 2


async def test_forbidden_resourcequotas_names_the_rule_once_and_node_scrapes_keep_flowing(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shop(api)
    api.add("ResourceQuota", k.resourcequota("shop", "compute", hard={"pods": "10"}, used={"pods": "1"}))
    api.forbid("list", "resourcequotas")
    name = f"noquota-{settings.kafka.topic_prefix.strip('.')}"
    s = with_clusters(settings, cluster(api, tmp_path, name))
    caplog.set_level(logging.WARNING, logger="kubepulse.collectors")
    async with Collector(s, events=False) as c:
        (r1,) = await c.scrape_once()
        (r2,) = await c.scrape_once()
        # Granted meanwhile: the next pass publishes the quota and says so.
        api.forbidden.discard(("list", "", "resourcequotas"))
        (r3,) = await c.scrape_once()
    for r in (r1, r2):
        assert (r.error, r.errors, r.nodes, r.quotas) == (None, 0, 1, 0)
        assert r.quota_error is not None and "403 Forbidden" in r.quota_error
    # Asked again each pass (the rule may be granted meanwhile), told once.
    assert [a.status for a in api.requests(verb="list", resource="resourcequotas")] == [403, 403, 200]
    warnings = [r.getMessage() for r in caplog.records if "403 Forbidden" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"cluster {name}: 403 Forbidden: the collector may not list resourcequotas in the core API group" in warnings[0]
    assert 'Add this rule to its ClusterRole: {apiGroups: [""], resources: ["resourcequotas"], verbs: ["list"]}' in warnings[0]
    assert "without ResourceQuotas" in warnings[0]
    assert [key for key, _ in await read_scrapes(s, 3)] == [f"{name}/node-a"] * 3
    assert (r3.error, r3.quotas, r3.quota_error) == (None, 1, None)
    assert published(name, "quotas") == 1.0 and published(name, "metrics") == 3.0
    assert any("listing resourcequotas is allowed again" in r.getMessage() for r in caplog.records)
    ((key, q),) = await read_quotas(s, 1)
    assert (key, q.used) == (f"{name}/shop/compute", {"pods": 1.0})


async def test_a_503_on_resourcequotas_is_retried_and_a_lasting_one_fails_the_pass_but_not_its_node_scrapes(
    stack, settings: Settings, api: FakeApiServer, tmp_path: Path
) -> None:
    shop(api)
    api.add("ResourceQuota", k.resourcequota("shop", "compute", hard={"pods": "10"}, used={"pods": "3"}))
    api.fail("list", "resourcequotas", status=503, times=1, retry_after=0.2)
    name = f"flaky-{settings.kafka.topic_prefix.strip('.')}"
    s = with_clusters(settings, cluster(api, tmp_path, name), retry_max_s=0.2)
    async with Collector(s, events=False) as c:
        (ok,) = await c.scrape_once()
        api.fail("list", "resourcequotas", status=500, times=100)
        (failed,) = await c.scrape_once()
    assert (ok.error, ok.quotas) == (None, 1)
    assert [a.status for a in api.requests(verb="list", resource="resourcequotas")][:2] == [503, 200]
    # Still failing after the client's retries: the pass reports it (so the cluster loop backs off)...
    assert failed.quotas == 0 and failed.error is not None and "list resourcequotas: 500" in failed.error
    assert failed.errors == 1
    assert REGISTRY.get_sample_value("kubepulse_collector_scrape_errors_total", {"cluster": name, "reason": "unavailable"}) == 1.0
    # ...while that pass's node scrape was still published.
    assert failed.nodes == 1
    assert len(await read_scrapes(s, 2)) == 2
