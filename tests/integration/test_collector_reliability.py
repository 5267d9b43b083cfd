"""The collector under faults: Kafka gone or refusing, a garbled watch stream, a malformed metrics.k8s.io payload.

Real Kafka throughout (a private broker where it is stopped, ``tests/privatestack.py``); the
Kubernetes API is the test API server. What is checked is what reaches the topics, what the
pass reports and what /metrics and /readyz say.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY

from collectors import Collector
from collectors.testing import FakeApiServer
from collectors.testing import payloads as k
from models.codec import decode
from models.records import KubeEvent
from models.settings import Settings, load_settings
from streams.topics import EVENTS, METRICS
from tests.integration.test_collector_events import until
from tests.integration.test_collector_metrics import T0, cluster, read_scrapes, shop, shop_summary, with_clusters
from tests.kafkautil import consume, new_run_id
from tests.privatestack import PrivateKafka

OUTAGE_S = 44.0
"""Longer than aiokafka's default 40 s request timeout: the outage that used to lose records for good."""


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer(bookmark_interval_s=0.2) as server:
        yield server


@pytest.fixture(scope="module")
def private_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateKafka]:
    kafka = PrivateKafka(tmp_path_factory.mktemp("collector-kafka"))
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.purge()


def private_settings(kafka: PrivateKafka) -> Settings:
    run = new_run_id()
    return load_settings(kafka={"bootstrap_servers": kafka.bootstrap, "topic_prefix": f"t{run}.", "topic_partitions": 1},
                         http_port=0)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def samples_sum(name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels`` (e.g. every ``error`` of one cluster)."""
    total = 0.0
    for metric in REGISTRY.collect():
        for s in metric.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def one_node(api: FakeApiServer) -> None:
    uid = shop(api)["uid"]
    api.set_summary("node-a", shop_summary(uid, t=T0, app_ns=10**9, sidecar_ns=10**9, rx=1000))


async def test_a_broker_outage_longer_than_the_request_timeout_loses_no_event_and_reports_the_scrape_it_gave_up(
    private_kafka: PrivateKafka, api: FakeApiServer, tmp_path: Path
) -> None:
    one_node(api)
    name = f"out-{new_run_id()}"
    base = private_settings(private_kafka)
    s = with_clusters(base, cluster(api, tmp_path, name), publish_timeout_s=30.0, retry_max_s=2.0)
    readiness: list[tuple[bool, float]] = []

    async def watch_readiness(c: Collector) -> None:
        while True:
            readiness.append((c.ready(), sample("kubepulse_collector_publish_failing")))
            await asyncio.sleep(0.5)

    async with Collector(s, watch_timeout_s=5) as c:
        await c.run(iterations=1)  # a healthy pass, and the watch starts
        await until(lambda: api.requests(verb="watch"))
        poller = asyncio.ensure_future(watch_readiness(c))
        await asyncio.to_thread(private_kafka.stop)
        try:
            stopped = asyncio.get_running_loop().time()
            oom = api.add_event(k.event("shop", reason="OOMKilled", involved=("Pod", "cart-5d9-x1"),
                                        message="Container app exceeded its memory limit"))
            (during,) = await c.scrape_once()  # waits for Kafka until publish_timeout_s, then gives up
            after_first = asyncio.get_running_loop().time() - stopped
            # Handed over before the broker returns, confirmed once it is back (within its own 30 s).
            uid = api.store.pods[("shop", "cart-5d9-x1")]["metadata"]["uid"]
            api.set_summary("node-a", shop_summary(uid, t=T0 + 15, app_ns=2 * 10**9, sidecar_ns=10**9, rx=2000))
            second = asyncio.ensure_future(c.scrape_once())
            await asyncio.sleep(max(0.0, OUTAGE_S - (asyncio.get_running_loop().time() - stopped)))
            assert not second.done(), "the pass must wait for Kafka, not drop its scrape"
        finally:
            await asyncio.to_thread(private_kafka.start)
        (recovered,) = await second
        got = await consume(s, EVENTS.named(s.kafka.topic_prefix), count=1, timeout=60)
        await until(c.ready, timeout=30)
        poller.cancel()
    events = [decode(KubeEvent, v) for _, v in got]
    assert [(e.uid, e.reason) for e in events] == [(oom["metadata"]["uid"], "OOMKilled")]
    scrapes = await read_scrapes(s, 4)
    # The healthy pass, the one given up (still queued in the producer: written late once the broker
    # answers, never twice) and the recovered one.
    assert [key for key, _ in scrapes] == [f"{name}/node-a"] * 3
    assert sorted(sc.timestamp.timestamp() for _, sc in scrapes) == [T0, T0, T0 + 15]
    assert recovered.error is None and (recovered.nodes, recovered.lost) == (1, 0)
    # The scrape given up is not silent: the pass failed with the reason and it is counted lost.
    assert during.error is not None and "did not confirm a metrics record" in during.error, during
    assert (during.nodes, during.lost) == (0, 1) and after_first >= 30.0
    assert samples_sum("kubepulse_collector_records_lost_total", cluster=name, kind="metrics") == 1.0
    assert samples_sum("kubepulse_collector_publish_failures_total", cluster=name, kind="metrics") >= 1
    # The event's delivery failed at least once (30 s) and was offered again, not marked seen.
    assert sample("kubepulse_collector_scrape_errors_total", {"cluster": name, "reason": "publish"}) >= 1
    assert samples_sum("kubepulse_collector_records_lost_total", cluster=name, kind="events") == 0
    # Not ready while records were resent, ready again after.
    assert (False, 1.0) in readiness and readiness[0] == (True, 0.0)


async def test_a_scrape_the_broker_refuses_fails_the_pass_and_is_counted_lost(
    stack: dict[str, str], settings: Settings, api: FakeApiServer, tmp_path: Path
) -> None:
    one_node(api)
    name = f"big-{settings.kafka.topic_prefix.strip('.')}"
    s = with_clusters(settings, cluster(api, tmp_path, name))
    admin = AIOKafkaAdminClient(**s.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        # A topic whose limit no NodeScrape fits: the broker refuses the record for good.
        await admin.create_topics([NewTopic(METRICS.named(s.kafka.topic_prefix), num_partitions=1, replication_factor=1,
                                            topic_configs={"max.message.bytes": "128"})])
    finally:
        await admin.close()
    async with Collector(s, events=False) as c:
        (report,) = await c.scrape_once()
        assert report.error is not None and "MessageSizeTooLargeError" in report.error, report
        ready = c.ready()
    assert (report.nodes, report.lost, report.errors) == (0, 1, 1)
    assert sample("kubepulse_collector_records_lost_total",
                  {"cluster": name, "kind": "metrics", "reason": "MessageSizeTooLargeError"}) == 1.0
    assert ready, "nothing is being resent: a refused record is given up at once"


async def test_the_collector_writes_compressed_record_batches(private_kafka: PrivateKafka, api: FakeApiServer,
                                                             tmp_path: Path) -> None:
    api.add("Node", k.node("node-a"))
    pods = [k.pod("shop", f"web-{i}", node_name="node-a", containers=[k.container("app", requests={"cpu": "100m"})])
            for i in range(40)]
    api.add("Pod", *pods)
    api.set_summary("node-a", k.summary("node-a", time=T0, cpu_ns=10**9, working_set=2**30, pods=[
        k.pod_stats("shop", f"web-{i}", uid=p["metadata"]["uid"], time=T0, start=T0 - 60, cpu_ns=10**6 * i, working_set=2**20 * i,
                    containers=[k.container_stats("app", time=T0, start=T0 - 60, cpu_ns=10**6 * i, working_set=2**20 * i)])
        for i, p in enumerate(pods)]))
    s = with_clusters(private_settings(private_kafka), cluster(api, tmp_path, "zstd"))
    async with Collector(s, events=False) as c:
        (report,) = await c.scrape_once()
    assert report.error is None and report.pods == 40
    topic = METRICS.named(s.kafka.topic_prefix)
    ((_, value),) = await consume(s, topic, count=1, timeout=30)
    on_disk = sum(f.stat().st_size for f in (private_kafka.cache / "kafka" / "data").glob(f"{topic}-*/*.log"))
    # The broker stores the batch as the producer compressed it (kafka.compression_type, zstd).
    assert 0 < on_disk < len(value) / 3, (on_disk, len(value))


async def test_an_unexpected_error_in_the_event_watch_is_counted_and_the_watch_restarts(
    stack: dict[str, str], settings: Settings, api: FakeApiServer, tmp_path: Path
) -> None:
    api.add("Node", k.node("node-a"))
    first = api.add_event(k.event("shop", reason="BackOff", involved=("Pod", "cart-1")))
    name = f"garbled-{settings.kafka.topic_prefix.strip('.')}"
    s = with_clusters(settings, cluster(api, tmp_path, name), retry_max_s=1.0)
    async with Collector(s, watch_timeout_s=5) as c:
        await c.run(iterations=1)
        watcher = c.watchers[name]
        await until(lambda: api.requests(verb="watch"))
        api.garble_next_watch(b"[]")  # a JSON line that is no watch event: the watcher's code trips on it
        await until(lambda: len(api.requests(verb="watch")) >= 2)
        later = api.add_event(k.event("shop", reason="Evicted", involved=("Pod", "db-0")))
        got = await consume(s, EVENTS.named(s.kafka.topic_prefix), count=2, timeout=30)
    assert sorted(decode(KubeEvent, v).uid for _, v in got) == sorted([first["metadata"]["uid"], later["metadata"]["uid"]])
    assert watcher.relists == 2, "the watch restarted from a relist, which repeated nothing"
    assert sample("kubepulse_collector_event_watch_restarts_total", {"cluster": name, "error": "AttributeError"}) == 1
    assert sample("kubepulse_collector_scrape_errors_total", {"cluster": name, "reason": "internal"}) == 1


async def test_a_malformed_metrics_api_payload_fails_only_its_node_and_the_other_cluster_goes_on(
    stack: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    with FakeApiServer() as locked_api, FakeApiServer() as open_api:
        one_node(open_api)
        locked_api.add("Node", k.node("good"), k.node("bad"))
        locked_api.add("Pod", k.pod("shop", "web-1", node_name="good"))
        locked_api.forbid("get", "nodes/proxy")
        locked_api.set_metrics(k.node_metrics("good", cpu="500m", memory="1Gi"),
                               k.pod_metrics("shop", "web-1", containers={"app": ("100m", "64Mi")}))
        locked_api.store.node_metrics["bad"] = {"metadata": {"name": "bad"}, "usage": "not a map"}
        # Items with no namespace or name cannot be put on any node: skipped, counted.
        locked_api.store.pod_metrics[("?", "?")] = {"metadata": {"name": "orphan"}, "containers": []}
        locked_api.store.node_metrics["?"] = {"metadata": {}, "usage": {}}
        locked = f"lk-{settings.kafka.topic_prefix.strip('.')}"
        s = with_clusters(settings, cluster(locked_api, tmp_path, locked), cluster(open_api, tmp_path, "fine"),
                          interval_s=1.0, jitter_s=0.0)
        reports = []
        async with Collector(s, events=False, on_pass=reports.append) as c:
            await c.run(iterations=2)
    mine = [r for r in reports if r.cluster == locked]
    assert [(r.source, r.nodes, r.errors, r.error) for r in mine] == [("metrics.k8s.io", 1, 3, None)] * 2, mine
    assert "metrics.k8s.io data of node bad is malformed" in mine[0].node_errors["bad"]
    assert sample("kubepulse_collector_scrape_errors_total", {"cluster": locked, "reason": "malformed"}) == 6
    assert [(r.nodes, r.error) for r in reports if r.cluster == "fine"] == [(1, None)] * 2
    got = await read_scrapes(s, 4)
    assert sorted(key for key, _ in got) == sorted([f"{locked}/good"] * 2 + ["fine/node-a"] * 2)
