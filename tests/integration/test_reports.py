"""Capacity and right-sizing against the real Elasticsearch, on history the real pipeline made from the simulator's known workloads.

Two weeks of a small simulated fleet with three controlled scenarios (``collectors.simulator._scenarios``)
go through the worker's own windows and cluster sums (``tests.reportutil``); the hourly rollups, the last
quotas and the HPA are indexed with the index contract's documents, and the reports read them back with
their own queries. The truths the recommendations and forecasts are held to come from the simulator's
samples and quotas, not from the rollups the reports read.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from elasticsearch import helpers
from typer.testing import CliRunner

from kubepulse.cli import app as cli_app

from collectors.simulator import Autoscaled, Growing, Oversized
from kubepulse.report import capacity_report, from_rollups, install, kubectl_commands, rightsize, rightsize_report
from models.records import CapacityForecast, NodeScrape, Recommendation
from models.settings import load_settings
from streams.index import alias_name, async_client, documents_for, field_types, index_name, sync_client
from tests.indexingutil import cleanup_es, indexer_env
from tests.reportutil import History, simulate_history

END = datetime(2026, 3, 15, tzinfo=UTC)
DAYS = 14
CLUSTER = "prod-eu-west"
SCENARIOS = (Oversized(), Growing(), Autoscaled())


class Raw:
    """Every container sample of the scenario workloads as the simulator produced it (the truth)."""

    def __init__(self) -> None:
        self.cpu: dict[str, list[float]] = defaultdict(list)
        self.memory: dict[str, list[int]] = defaultdict(list)
        self.requests: dict[str, tuple[float, int]] = {}
        self.namespace_requests: dict[str, tuple[float, float]] = {}

    def __call__(self, s: NodeScrape) -> None:
        for p in s.pods:
            if p.workload_name not in ("report-builder", "web-api", "event-pipeline"):
                continue
            for c in p.containers:
                if c.cpu_cores is not None:
                    self.cpu[p.workload_name].append(c.cpu_cores)
                self.memory[p.workload_name].append(c.memory_working_set_bytes or 0)
                self.requests[p.workload_name] = (c.requests.cpu_cores or 0.0, c.requests.memory_bytes or 0)


@pytest.fixture(scope="module")
def history() -> tuple[History, Raw]:
    raw = Raw()
    return simulate_history(end=END, days=DAYS, scenarios=SCENARIOS, interval_s=240, on_scrape=raw), raw


@pytest.fixture(scope="module")
def reports_es(stack: dict[str, str], history: tuple[History, Raw]) -> Any:
    h, _ = history
    run = f"kp-test-{int(time.time() * 1000) % 10**10:010d}-reports"
    settings = load_settings(elasticsearch={"index_prefix": run})

    async def teardown() -> None:
        client = async_client(settings)
        try:
            await cleanup_es(client, settings)
        finally:
            await client.close()

    install(settings)
    client = sync_client(settings)
    try:
        actions = ({"_op_type": "index", "_index": index_name(run, d.kind, d.day), "_id": d.id, "_source": d.body}
                   for r in (*h.rollups, *h.quotas, *h.autoscalers) for d in documents_for(r))
        ok, errors = helpers.bulk(client, actions, chunk_size=2000, raise_on_error=False)
        assert not errors, errors[:3]
        client.indices.refresh(index=f"{run}-*")
        yield client, settings
    finally:
        client.close()
        asyncio.run(teardown())


def _flat(props: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in props.items():
        out += _flat(v["properties"], f"{prefix}{k}.") if "properties" in v else [prefix + k]
    return out


def _rec(recs: list[Recommendation], workload: str) -> Recommendation:
    (r,) = [r for r in recs if r.workload == workload]
    return r


def test_a_workload_requesting_four_times_its_use_gets_a_recommendation_within_20_percent_of_the_truth(reports_es, history) -> None:
    client, settings = reports_es
    _, raw = history
    recs = rightsize_report(client, settings)
    r = _rec(recs, "report-builder")
    cpu_req, mem_req = raw.requests["report-builder"]
    # Today's requests, read back from the rollups' shares, are the pod spec's.
    assert r.current_cpu_request == pytest.approx(cpu_req, rel=1e-6)
    assert r.current_memory_request == pytest.approx(mem_req, rel=1e-6)
    # The truth: the 95th percentile of every CPU sample, and the highest working set, of its containers.
    cpu_truth = float(np.percentile(raw.cpu["report-builder"], 95))
    mem_truth = max(raw.memory["report-builder"])
    cpu_error = r.cpu_request / cpu_truth - 1
    mem_error = r.memory_request / mem_truth - 1
    print(f"\nreport-builder: cpu request {cpu_req:.3f} -> {r.cpu_request:.3f} (truth p95 {cpu_truth:.4f}, error {cpu_error:+.1%}); "
          f"memory {mem_req / 2**20:.0f}Mi -> {r.memory_request / 2**20:.0f}Mi (truth max {mem_truth / 2**20:.1f}Mi, {mem_error:+.1%})")
    assert abs(cpu_error) <= 0.2
    assert 0 <= mem_error <= 0.2  # headroom above the highest working set, never below it
    assert r.cpu_request < cpu_req / 2.5 and r.memory_request < mem_req / 2.5
    assert r.waste_cpu_cores == pytest.approx(cpu_req - r.cpu_request) and r.waste_memory_bytes == pytest.approx(mem_req - r.memory_request)
    assert r.confidence == pytest.approx(1.0) and r.pods >= 2 and r.held == [] and r.hpa is None


def test_a_namespace_growing_2_percent_a_day_gets_days_to_full_within_20_percent(reports_es, history) -> None:
    client, settings = reports_es
    h, _ = history
    forecasts = capacity_report(client, settings, cluster=CLUSTER)
    (quota,) = [q for q in h.quotas if q.namespace == "analytics"]
    growing = {f.resource: f for f in forecasts if f.entity_kind == "namespace" and f.namespace == "analytics"}
    for resource, quota_resource in (("cpu_requests", "requests.cpu"), ("memory_requests", "requests.memory")):
        f = growing[resource]
        # The truth: the quota's hard over what the namespace requests at the end, at 2 % a day compounded.
        truth = math.log(quota.hard[quota_resource] / quota.used[quota_resource]) / math.log(1.02)
        error = f.days_to_full / truth - 1
        print(f"\nanalytics {resource}: {f.days_to_full:.2f} d ({f.days_to_full_low:.2f}-{f.days_to_full_high:.2f}), truth {truth:.2f} d, "
              f"error {error:+.1%}, model {f.model}, limit {f.limit_name}")
        assert abs(error) <= 0.2
        assert f.model == "exponential" and f.limit == quota.hard[quota_resource] and f.limit_kind == "quota"
        assert f.days_to_full_low <= f.days_to_full <= f.days_to_full_high
        assert f.full_at == pytest.approx(f.history_end - timedelta(minutes=30) + timedelta(days=f.days_to_full), abs=timedelta(seconds=1))
    # A namespace whose requests do not grow never fills its quota.
    flat = [f for f in forecasts if f.namespace == "reports" and f.entity_kind == "namespace" and f.resource == "cpu_requests"]
    assert flat and flat[0].days_to_full is None and flat[0].limit is not None


def test_idle_capacity_is_allocatable_minus_the_p95_of_the_hourly_use(reports_es, history) -> None:
    client, settings = reports_es
    h, _ = history
    forecasts = capacity_report(client, settings, cluster=CLUSTER)
    (cluster_cpu,) = [f for f in forecasts if f.entity_kind == "cluster" and f.resource == "cpu_use"]
    hours = sorted((r for r in h.rollups if r.kind == "cluster"), key=lambda r: r.window_start)
    p95 = float(np.percentile([r.metrics["cluster.cpu_cores"].mean for r in hours if "cluster.cpu_cores" in r.metrics], 95))
    allocatable = hours[-1].metrics["cluster.cpu_allocatable_cores"].last
    assert cluster_cpu.limit == pytest.approx(allocatable) and cluster_cpu.idle == pytest.approx(allocatable - p95)
    assert 0 < cluster_cpu.idle < allocatable
    # Every node has its five resources, its filesystem against the capacity the used share implies.
    nodes = [f for f in forecasts if f.entity_kind == "node"]
    assert sorted({f.resource for f in nodes}) == ["cpu_requests", "cpu_use", "filesystem", "memory_requests", "memory_working_set"]
    fs = [f for f in nodes if f.resource == "filesystem"]
    assert all(f.limit_kind == "capacity" and f.limit in (80 * 2**30, 100 * 2**30, 120 * 2**30) for f in fs)
    assert any(f.entity_kind == "volume" and f.persistentvolumeclaim for f in forecasts)


def test_an_hpa_workload_keeps_the_cpu_request_its_hpa_divides_by_and_is_right_sized_on_memory(reports_es, history) -> None:
    client, settings = reports_es
    h, raw = history
    recs = rightsize_report(client, settings)
    r = _rec(recs, "web-api")
    cpu_req, mem_req = raw.requests["web-api"]
    assert r.hpa == "web-api" and r.held == ["cpu"]
    assert r.cpu_request == pytest.approx(cpu_req) and r.cpu_limit == pytest.approx(r.current_cpu_limit) and r.waste_cpu_cores == pytest.approx(0)
    assert max(raw.memory["web-api"]) <= r.memory_request < mem_req / 2
    # Ignoring the HPA would cut the request to about the p95 of its use (60 % of the request): the loop the hold avoids.
    unheld = _rec(rightsize(from_rollups(h.rollups), []), "web-api")
    print(f"\nweb-api: cpu request {cpu_req:.3f} held (without the HPA: {unheld.cpu_request:.3f}); "
          f"memory {mem_req / 2**20:.0f}Mi -> {r.memory_request / 2**20:.0f}Mi")
    assert unheld.cpu_request < 0.8 * cpu_req and unheld.held == []
    lines = kubectl_commands(recs)
    (web,) = [line for line in lines if "deployment/web-api" in line]
    assert "--requests=memory=" in web and "cpu=" not in web.split("#")[0] and "held by HPA web-api: cpu" in web
    (builder,) = [line for line in lines if "deployment/report-builder" in line]
    assert builder.startswith(f"kubectl --context {CLUSTER} -n reports set resources deployment/report-builder -c app --requests=cpu=")


def test_report_run_writes_each_forecast_and_recommendation_once_a_day_and_the_cli_prints_them(reports_es) -> None:
    client, settings = reports_es
    env = indexer_env(settings)
    runner = CliRunner()
    first = runner.invoke(cli_app, ["report", "run"], env=env)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output.strip().splitlines()[-1])
    assert summary["at"] == END.isoformat() and summary["capacity"] > 20 and summary["recommendations"] > 10
    again = runner.invoke(cli_app, ["report", "run"], env=env)
    assert again.exit_code == 0, again.output
    client.indices.refresh(index=f"{settings.elasticsearch.index_prefix}-*")
    assert client.count(index=alias_name(settings, "capacity"))["count"] == summary["capacity"]
    assert client.count(index=alias_name(settings, "recommendations"))["count"] == summary["recommendations"]
    for kind in ("capacity", "recommendations"):  # the documents landed in the kinds' strict mappings, unchanged
        (body,) = client.indices.get_mapping(index=alias_name(settings, kind)).body.values()
        assert body["mappings"]["dynamic"] == "strict" and set(_flat(body["mappings"]["properties"])) == set(field_types(kind))
    doc = client.search(index=alias_name(settings, "recommendations"), query={"term": {"kubernetes.workload.name": "web-api"}})["hits"]["hits"][0]
    assert doc["_source"]["kubernetes.hpa.name"] == "web-api" and doc["_source"]["kubepulse.recommendation.held"] == ["cpu"]
    cap = runner.invoke(cli_app, ["report", "capacity", "--json", "--cluster", CLUSTER], env=env)
    assert cap.exit_code == 0, cap.output
    parsed = [CapacityForecast.model_validate_json(line) for line in cap.output.splitlines()]
    assert len(parsed) == summary["capacity"] and {p.cluster for p in parsed} == {CLUSTER}
    table = runner.invoke(cli_app, ["report", "capacity"], env=env)
    assert table.exit_code == 0 and "ns analytics" in table.output and "exponential" in table.output
    kubectl = runner.invoke(cli_app,
                            ["report", "rightsize", "--namespace", "reports", "--format", "kubectl"], env=env)
    assert kubectl.exit_code == 0, kubectl.output
    assert kubectl.output.splitlines() == [line for line in kubectl_commands(rightsize_report(client, settings, namespace="reports"))]
    assert kubectl.output.startswith("kubectl --context")
