"""The report analyses on series whose answer is known: trends, percentiles, HPA holds, kubectl output, the simulator's scenarios."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from collectors.simulator import Autoscaled, Fleet, Growing, Oversized
from kubepulse.report import EntityHistory, Hourly, Quota, capacity, forecast, held_resources, kubectl_commands, mixture_quantile, rightsize
from models.records import AutoscalerMetric, AutoscalerScrape

HOURS = np.arange(28 * 24) * 3600.0 + 1800.0
DAYS = (HOURS - HOURS[-1]) / 86400
DAILY = np.cos(2 * np.pi * (DAYS - 14 / 24))


def test_a_disk_filling_by_the_same_bytes_every_day_is_linear_and_its_fill_day_is_found() -> None:
    rng = np.random.default_rng(3)
    used = 500 + 10 * (DAYS + 28) + 5 * DAILY + rng.normal(0, 1, DAYS.size)  # 10 GB a day from 500
    f = forecast(HOURS, used, limit=1200.0)
    # Now at ~780 (+5 at the daily peak): 1200 is (1200 - 785) / 10 days away.
    assert f.model == "linear" and f.days_to_full == pytest.approx(41.5, rel=0.03)
    assert f.days_to_full_low < f.days_to_full < f.days_to_full_high
    assert f.growth_per_day == pytest.approx(10, rel=0.02)


def test_growth_in_percent_a_day_is_exponential_and_a_line_would_put_the_fill_date_too_late() -> None:
    rng = np.random.default_rng(4)
    y = 100 * 1.03 ** DAYS * (1 + 0.05 * DAILY) * (1 + rng.normal(0, 0.01, DAYS.size))
    truth = math.log(200 / (100 * 1.05)) / math.log(1.03)
    f = forecast(HOURS, y, limit=200.0)
    assert f.model == "exponential" and f.days_to_full == pytest.approx(truth, rel=0.05)
    assert f.days_to_full_low <= truth <= f.days_to_full_high


def test_a_shrinking_or_flat_series_never_fills_and_one_above_its_limit_is_full_now() -> None:
    assert forecast(HOURS, 100 - 0.5 * (DAYS + 28) + DAILY, limit=200.0).days_to_full is None
    full = forecast(HOURS, 150 + 10 * DAILY, limit=155.0)
    assert (full.days_to_full, full.days_to_full_low, full.days_to_full_high) == (0.0, 0.0, 0.0)
    short = forecast(HOURS[-30:], np.linspace(1, 2, 30), limit=3.0)
    assert short.model == "flat" and short.days_to_full is None


def test_noise_without_a_trend_gives_no_late_end_to_the_interval() -> None:
    rng = np.random.default_rng(5)
    f = forecast(HOURS, 50 + 3 * DAILY + rng.normal(0, 2, DAYS.size), limit=80.0)
    assert f.days_to_full_high is None  # the data cannot rule out that it never fills


def test_the_cpu_percentile_from_hourly_statistics_sees_bursts_that_hourly_means_hide() -> None:
    rng = np.random.default_rng(6)
    samples = rng.gamma(2.0, 0.05, size=(336, 240))  # skewed, bursty CPU
    truth = np.percentile(samples, 95)
    est = mixture_quantile(samples.mean(1), samples.min(1), samples.max(1), np.full(336, 240), 0.95)
    of_means = np.percentile(samples.mean(1), 95)
    assert abs(est / truth - 1) < 0.2 and of_means < 0.7 * truth


def _hpa(*metrics: AutoscalerMetric) -> AutoscalerScrape:
    return AutoscalerScrape(cluster="c", namespace="ns", name="web", timestamp=datetime(2026, 1, 1, tzinfo=UTC), target_kind="Deployment",
                            target_name="web", max_replicas=5, metrics=list(metrics))


def test_only_utilization_targets_hold_requests_and_a_container_resource_only_its_container() -> None:
    cpu = AutoscalerMetric(type="Resource", resource="cpu", target_type="Utilization", target_average_utilization=60)
    mem = AutoscalerMetric(type="ContainerResource", resource="memory", container="app", target_type="Utilization", target_average_utilization=80)
    avg = AutoscalerMetric(type="Resource", resource="memory", target_type="AverageValue", target_average_value=2**30)
    assert held_resources(_hpa(cpu, mem), "app") == ["cpu", "memory"]
    assert held_resources(_hpa(cpu, mem), "sidecar") == ["cpu"]
    assert held_resources(_hpa(avg), "app") == [] and held_resources(None, "app") == []


def _container(pod: str, cpu: float, mem: float, *, req_cpu: float, req_mem: float, lim_cpu: float | None, hours: int = 336) -> EntityHistory:
    t = np.arange(hours) * 3600.0
    ones = np.ones(hours)

    def h(mean: float, spread: float = 0.0) -> Hourly:
        return Hourly(t, ones * (mean - spread), ones * (mean + spread), ones * mean, ones * mean, ones * 12)

    metrics = {
        "container.cpu_cores": h(cpu, cpu / 4),
        "container.memory_working_set_bytes": h(mem),
        "container.cpu_request_cores": h(req_cpu),
        "container.memory_request_bytes": h(req_mem),
    }
    if lim_cpu:
        metrics["container.cpu_limit_cores"] = h(lim_cpu)
    return EntityHistory(kind="container", entity_id=f"c/ns/{pod}/app", cluster="c", namespace="ns", workload="web",
                         workload_kind="Deployment", pod=pod, container="app", metrics=metrics)


def test_rightsize_pools_the_replicas_holds_what_the_hpa_divides_by_and_reads_the_requests_they_have_now() -> None:
    pods = [_container(f"web-{i}", 0.1, 200e6, req_cpu=1.0, req_mem=1e9, lim_cpu=2.0) for i in range(3)]
    (free,) = rightsize(pods)
    assert (free.current_cpu_request, free.current_cpu_limit, free.current_memory_request) == pytest.approx((1.0, 2.0, 1e9))
    assert free.pods == 3 and free.replicas == pytest.approx(3.0) and free.confidence == pytest.approx(1.0)
    assert 0.1 < free.cpu_request < 0.13 and free.memory_request >= 200e6 and free.memory_limit >= free.memory_request
    assert free.waste_cpu_cores == pytest.approx(1.0 - free.cpu_request)
    cpu = AutoscalerMetric(type="Resource", resource="cpu", target_type="Utilization", target_average_utilization=60)
    (held,) = rightsize(pods, [_hpa(cpu)])
    assert held.held == ["cpu"] and held.cpu_request == pytest.approx(1.0) and held.cpu_limit == pytest.approx(2.0)
    assert held.waste_cpu_cores == pytest.approx(0) and held.memory_request == free.memory_request
    (young,) = rightsize([_container("web-0", 0.1, 200e6, req_cpu=1.0, req_mem=1e9, lim_cpu=None, hours=84)])
    assert young.confidence == pytest.approx(0.25) and young.cpu_limit is None  # no CPU limit today, none recommended
    lines = kubectl_commands([held, free.model_copy(update={"workload": "api"}), free.model_copy(update={"workload_kind": "Pod"})],
                             contexts={"c": "prod-context"})
    # Sorted by workload: api, then web's two (in the order given).
    assert lines[0].startswith("kubectl --context prod-context -n ns set resources deployment/api -c app --requests=cpu=")
    assert "--requests=memory=" in lines[1] and "cpu" not in lines[1].split("#")[0] and lines[1].endswith("# held by HPA web: cpu")
    assert lines[2].startswith("# c/ns/web/app: a Pod is not set")


def test_a_namespace_is_measured_against_its_tightest_quota_and_a_volume_against_the_capacity_its_share_implies() -> None:
    t = np.arange(72) * 3600.0
    ones = np.ones(72)

    def h(v: np.ndarray) -> Hourly:
        return Hourly(t, v, v, v, v, ones)

    ns = EntityHistory(kind="namespace", entity_id="c/ns/-/-", cluster="c", namespace="ns",
                       metrics={"namespace.cpu_request_cores": h(ones * 3.0), "namespace.memory_request_bytes": h(ones * 1e9)})
    vol = EntityHistory(kind="volume", entity_id="c/ns/db-0/volume:data", cluster="c", namespace="ns", volume="data",
                        metrics={"volume.used_bytes": h(40e9 + t * 1e5), "volume.used_share": h((40e9 + t * 1e5) / 100e9)})
    quotas = {("c", "ns", "requests.cpu"): Quota(4.0, "compute")}
    out = {(r.entity_kind, r.resource): r for r in capacity([ns, vol], quotas, at=datetime(2026, 1, 4, tzinfo=UTC))}
    cpu = out[("namespace", "cpu_requests")]
    assert (cpu.limit, cpu.limit_kind, cpu.limit_name, cpu.idle, cpu.used_share) == (4.0, "quota", "requests.cpu (compute)", 1.0, 0.75)
    assert out[("namespace", "memory_requests")].limit is None  # no quota on it: reported, never full
    disk = out[("volume", "filesystem")]
    assert disk.limit == pytest.approx(100e9) and disk.model == "linear"
    assert disk.days_to_full == pytest.approx((100e9 - (40e9 + t[-1] * 1e5 + 1800 * 1e5)) / (86400 * 1e5), rel=0.01)


def test_the_simulators_scenarios_have_the_truth_they_promise() -> None:
    fleet = Fleet(clusters=1, nodes_per_cluster=2, pods_per_node=3, seed=1, incidents="none", scenarios=[Oversized(), Growing(), Autoscaled()])
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    fleet.step(t0)
    by_name = {st.workload.name: st for st in fleet.scenarios}
    for pod in by_name["report-builder"].workload.pods:
        for c in pod.containers:
            assert c.cpu_base == pytest.approx(c.req_cpu / 4) and c.mem_base == pytest.approx(c.req_mem / 4, abs=1)
    grow = by_name["event-pipeline"].workload
    before = grow.pod_requests.cpu_cores
    fleet.step(t0 + timedelta(days=10))
    assert grow.pod_requests.cpu_cores == pytest.approx(before * 1.02**10)
    (quota,) = [q for q in fleet.quotas() if q.namespace == "analytics"]
    assert math.log(quota.hard["requests.cpu"] / quota.used["requests.cpu"]) / math.log(1.02) == pytest.approx(24, abs=0.1)
    (hpa,) = fleet.autoscalers()
    assert (hpa.namespace, hpa.target_name, hpa.current_replicas) == ("web", "web-api", 3) and held_resources(hpa, "app") == ["cpu"]
    assert Fleet(clusters=1, nodes_per_cluster=2, pods_per_node=3, seed=1).has_autoscalers is False
