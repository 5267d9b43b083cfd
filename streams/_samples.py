"""Records with every field set, for the indexing tests and benchmark (one of each kind, or many node scrapes).

Every optional field is populated, so a document built from these records
carries every field of its mapping: the tests use that to prove the table in
``streams.index`` and the documents agree. :func:`entity_rollups` turns node
scrapes into ``kubepulse.rollups.v2`` records shaped like the worker's, with
statistics a test can recompute from the samples (not a second implementation
of the worker: its cluster-wide sums are plain sums per scrape time, and every
window is closed).
"""

from __future__ import annotations

import hashlib

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime, timedelta

from models import fingerprint
from models.records import (
    ENTITY_KINDS,
    AlertTransition,
    Anomaly,
    AutoscalerMetric,
    AutoscalerScrape,
    CapacityForecast,
    ContainerSample,
    DeadLetter,
    EntityRollup,
    Filesystem,
    Incident,
    Interface,
    KubeEvent,
    MetricStats,
    NodeSample,
    NodeScrape,
    Notification,
    ObjectRef,
    PodSample,
    QuotaScrape,
    Recommendation,
    Record,
    Resources,
    Volume,
)
from models.series import AGGREGATE_METRICS, METRICS, entities
from models.settings import StreamsSettings

__all__ = ["full_records", "full_rollups", "node_scrape", "entity_rollups"]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _fs(used: int) -> Filesystem:
    return Filesystem(
        used_bytes=used, capacity_bytes=100 * 2**30, available_bytes=100 * 2**30 - used, inodes_used=1000, inodes=65536, inodes_free=64536
    )


def _iface(name: str, i: int) -> Interface:
    return Interface(
        name=name,
        rx_bytes_total=10_000 + i,
        tx_bytes_total=20_000 + i,
        rx_errors_total=1,
        tx_errors_total=2,
        rx_bytes_per_s=1000.5 + i,
        tx_bytes_per_s=2000.25,
        rx_errors_per_s=0.1,
        tx_errors_per_s=0.2,
    )


def node_scrape(
    *, cluster: str = "c1", node: str = "n1", timestamp: datetime = T0, pods: int = 3, containers: int = 2, seq: int = 0
) -> NodeScrape:
    """A node scrape with every field set: ``pods`` pods of ``containers`` containers and one volume each."""
    usage = {
        "cpu_cores": 0.25 + seq % 7 / 100,
        "cpu_usage_seconds_total": 1234.5 + seq,
        "memory_working_set_bytes": 200 * 2**20 + seq,
        "memory_rss_bytes": 150 * 2**20,
        "memory_usage_bytes": 250 * 2**20,
        "memory_available_bytes": 50 * 2**20,
        "memory_page_faults_total": 1000,
        "memory_major_page_faults_total": 3,
    }
    shares = {
        "cpu_request_share": 0.5,
        "cpu_limit_share": 0.25,
        "cpu_node_share": 0.0625,
        "memory_request_share": 0.8,
        "memory_limit_share": 0.4,
        "memory_node_share": 0.05,
    }
    res = {"requests": Resources(cpu_cores=0.5, memory_bytes=256 * 2**20), "limits": Resources(cpu_cores=1.0, memory_bytes=512 * 2**20)}
    pod_list = []
    for p in range(pods):
        kind = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")[p % 5]
        pod_list.append(
            PodSample(
                namespace=f"ns{p % 2}",
                name=f"pod-{node}-{p}",
                uid=f"uid-{node}-{p}",
                workload_kind=kind,
                workload_name=f"wl{p}",
                labels={"app": f"app{p % 4}", "team": "shop", "app.kubernetes.io/name": f"app{p % 4}"},
                phase="Running",
                network=[_iface("eth0", p), _iface("eth1", p)],
                ephemeral_storage=_fs(2**20),
                volumes=[Volume(name="data", pvc_name=f"data-{p}", **_fs(2**30).model_dump())],
                containers=[
                    ContainerSample(
                        name=f"ct{c}",
                        rootfs=_fs(2**21),
                        logs=_fs(2**22),
                        restart_count=c,
                        last_terminated_reason="OOMKilled",
                        **usage,
                        **shares,
                        **res,
                    )
                    for c in range(containers)
                ],
                **usage,
                **shares,
                **res,
            )
        )
    return NodeScrape(
        cluster=cluster,
        node=node,
        timestamp=timestamp,
        source="simulator",
        node_stats=NodeSample(
            allocatable=Resources(cpu_cores=3.5, memory_bytes=14 * 2**30),
            capacity=Resources(cpu_cores=4.0, memory_bytes=16 * 2**30),
            cpu_node_share=0.3,
            memory_node_share=0.4,
            network=[_iface("eth0", 0)],
            fs=_fs(2**33),
            imagefs=_fs(2**34),
            conditions={"MemoryPressure": "False", "DiskPressure": "False", "Ready": "True"},
            **usage,
        ),
        pods=pod_list,
    )


def full_records(*, timestamp: datetime = T0) -> dict[str, Record]:
    """One record of each indexed kind, every field set."""
    return {**_full_collected(timestamp), **_full_derived(timestamp), **_full_alerting(timestamp)}


def _full_collected(timestamp: datetime) -> dict[str, Record]:
    """What collectors publish: a node scrape, an Event, a ResourceQuota, an HPA."""
    return {
        "metrics": node_scrape(timestamp=timestamp, pods=5),
        "events": KubeEvent(
            cluster="c1",
            uid="ev-1",
            namespace="ns0",
            name="p1.17a",
            reason="OOMKilling",
            type="Warning",
            message="Memory cgroup out of memory: killed process 42",
            count=3,
            first_seen=timestamp - timedelta(minutes=5),
            last_seen=timestamp,
            involved_object=ObjectRef(kind="Pod", name="p1", namespace="ns0", uid="pod-uid", field_path="spec.containers{ct0}"),
            source_component="kubelet",
            source_host="n1",
            resource_version="12345",
        ),
        # A quota as Kubernetes reports one: a count/ resource (its "/" is escaped in the series id, kept
        # in the document), a resource not counted yet (no used.pct) and a hard limit of 0 (none either).
        "quotas": QuotaScrape(
            cluster="c1",
            namespace="ns0",
            name="compute",
            timestamp=timestamp,
            source="kubernetes",
            hard={"requests.cpu": 4.0, "requests.memory": 8 * 2**30, "pods": 20.0, "count/deployments.apps": 10.0, "requests.storage": 0.0, "limits.cpu": 8.0},
            used={"requests.cpu": 3.7, "requests.memory": 2 * 2**30, "pods": 9.0, "count/deployments.apps": 10.0, "requests.storage": 0.0},
        ),
        "autoscalers": AutoscalerScrape(
            cluster="c1",
            namespace="ns0",
            name="wl0",
            timestamp=timestamp,
            source="kubernetes",
            target_kind="Deployment",
            target_name="wl0",
            min_replicas=2,
            max_replicas=10,
            current_replicas=3,
            desired_replicas=4,
            metrics=[
                AutoscalerMetric(type="Resource", resource="cpu", target_type="Utilization", target_average_utilization=60),
                AutoscalerMetric(type="ContainerResource", resource="memory", container="ct0", target_type="Utilization",
                                 target_average_utilization=80),
                AutoscalerMetric(type="Pods", metric_name="requests_per_second", target_type="AverageValue", target_average_value=100.0),
            ],
        ),
    }


def _full_derived(timestamp: datetime) -> dict[str, Record]:
    """What the worker and the reports derive: capacity, a recommendation, a rollup, an anomaly."""
    sid = "c1/ns0/p1/ct0/container.memory_working_set_bytes"
    return {
        "capacity": full_capacity(timestamp=timestamp)[0],
        "recommendations": Recommendation(
            cluster="c1", namespace="ns0", workload="wl0", workload_kind="Deployment", container="ct0", pods=5,
            cpu_p95=0.2, cpu_p99=0.3, cpu_max=0.5, memory_p95=2e8, memory_p99=2.5e8, memory_max=3e8,
            current_cpu_request=1.0, current_cpu_limit=2.0, current_memory_request=1e9, current_memory_limit=2e9,
            cpu_request=0.2, cpu_limit=0.375, memory_request=3e8, memory_limit=4e8, waste_cpu_cores=0.8, waste_memory_bytes=7e8,
            replicas=3.0, hpa="wl0", held=["cpu"], confidence=0.5, history_hours=168, history_start=timestamp - timedelta(days=7),
            history_end=timestamp, generated_at=timestamp,
        ),
        "rollups": EntityRollup(
            entity_id="c1/ns0/p1/ct0",
            kind="container",
            cluster="c1",
            node="n1",
            namespace="ns0",
            workload="wl0",
            workload_kind="Deployment",
            pod="p1",
            container="ct0",
            # 1h: containers are indexed at 1h by default (elasticsearch.rollups).
            window="1h",
            window_start=timestamp,
            window_end=timestamp + timedelta(hours=1),
            metrics={
                "container.memory_working_set_bytes": MetricStats(min=1.0, max=3.0, mean=2.0, last=2.5, sum=8.0, count=4),
                "container.cpu_cores": MetricStats(min=0.25, max=0.5, mean=0.375, last=0.5, sum=1.125, count=3),
            },
        ),
        "anomalies": Anomaly(
            series_id=sid,
            cluster="c1",
            node="n1",
            namespace="ns0",
            workload="wl0",
            pod="p1",
            container="ct0",
            metric="container.memory_working_set_bytes",
            timestamp=timestamp,
            value=9e8,
            baseline=2e8,
            score=12.5,
            threshold=6.0,
            detector="default",
        ),
    }


def _full_alerting(timestamp: datetime) -> dict[str, Record]:
    """Alerting and the rest: an alert transition, a notification, an incident, a dead letter."""
    labels = {"alertname": "PodMemoryHigh", "severity": "critical", "cluster": "c1", "namespace": "ns0", "node": "n1", "pod": "p1", "container": "ct0"}
    return {
        "alerts": AlertTransition(
            fingerprint=fingerprint(labels),
            status="resolved",
            labels=labels,
            annotations={"summary": "memory high", "runbook_url": "https://runbooks/x"},
            starts_at=timestamp - timedelta(minutes=10),
            ends_at=timestamp,
            rule="PodMemoryHigh",
            value=0.95,
            threshold=0.9,
            sequence=2,
            generator_url="http://kibana/app/discover",
        ),
        "notifications": Notification(
            notification_id="nt-1",
            receiver="oncall",
            integration="pagerduty",
            group_key="{}:{alertname=\"PodMemoryHigh\"}",
            fingerprints=[fingerprint(labels)],
            status="firing",
            attempt=2,
            outcome="retry",
            error="HTTP 502 from events.pagerduty",
            http_status=502,
            at=timestamp,
        ),
        "incidents": Incident(
            incident_id="inc-1",
            kind="memory_leak",
            cluster="c1",
            node="n1",
            namespace="ns0",
            pod="p1",
            container="ct0",
            metrics=["container.memory_working_set_bytes"],
            start=timestamp,
            end=timestamp + timedelta(minutes=15),
            seed=7,
        ),
        "deadletter": DeadLetter(
            source_topic="kubepulse.metrics.v1",
            partition=3,
            offset=42,
            key="c1/n1",
            stage="decode",
            reason="invalid JSON: expected value at line 1 column 1",
            error_type="json_invalid",
            payload="{not json",
            payload_bytes=9,
            payload_sha256=hashlib.sha256(b"{not json").hexdigest(),
            occurred_at=timestamp,
        ),
    }


def full_capacity(*, timestamp: datetime = T0) -> list[CapacityForecast]:
    """Two capacity forecasts, every field set between them: a node's CPU requests (cores) and a volume's filesystem (bytes)."""
    common = dict(cluster="c1", model="exponential", days_to_full=12.5, days_to_full_low=9.0, days_to_full_high=20.0,
                  full_at=timestamp + timedelta(days=12.5), interval=0.8, horizon_days=365.0, history_hours=672,
                  history_start=timestamp - timedelta(days=28), history_end=timestamp, generated_at=timestamp)
    return [
        CapacityForecast(entity_kind="namespace", entity_id="c1/ns0/-/-", namespace="ns0", resource="cpu_requests", unit="cores",
                         limit_kind="quota", limit_name="requests.cpu (compute)", limit=4.0, current=3.0, p95=3.1, peak=3.4,
                         idle=0.9, used_share=0.75, growth_per_day=0.06, **common),  # type: ignore[arg-type]
        CapacityForecast(entity_kind="volume", entity_id="c1/ns0/db-0/volume:data", node="n1", namespace="ns0", volume="data",
                         persistentvolumeclaim="data-db-0", resource="filesystem", unit="bytes", limit_kind="capacity",
                         limit=100e9, current=60e9, p95=61e9, peak=62e9, idle=39e9, used_share=0.6, growth_per_day=1e9,
                         **common),  # type: ignore[arg-type]
    ]


_IDENTITY = ("node", "namespace", "workload", "workload_kind", "pod", "container", "volume", "persistentvolumeclaim", "interface")


def full_rollups(*, timestamp: datetime = T0, window: str = "1m") -> list[EntityRollup]:
    """Two rollups of every entity kind (two consecutive windows), carrying every metric of the kind and every
    identity field it has.

    In each, one metric has one sample more than the others (the first metric in one, the last in the other),
    so every other metric gets its own ``<root>.count``: between them every count field appears.
    """
    size = timedelta(minutes=1) if window == "1m" else timedelta(hours=1)
    identity = {
        "node": "n1", "namespace": "ns0", "workload": "wl0", "workload_kind": "StatefulSet", "pod": "db-0",
        "container": "db", "volume": "data", "persistentvolumeclaim": "data-db-0", "interface": "eth0",
    }
    has = {
        "node": ("node",), "node_interface": ("node", "interface"),
        "pod": ("node", "namespace", "workload", "workload_kind", "pod"),
        "pod_interface": ("node", "namespace", "workload", "workload_kind", "pod", "interface"),
        "container": ("node", "namespace", "workload", "workload_kind", "pod", "container"),
        "volume": ("node", "namespace", "workload", "workload_kind", "pod", "volume", "persistentvolumeclaim"),
        "workload": ("namespace", "workload", "workload_kind"), "namespace": ("namespace",), "cluster": (),
    }
    ids = {
        "node": "c1/-/node:n1/-", "node_interface": "c1/-/node:n1/iface:eth0", "pod": "c1/ns0/db-0/-",
        "pod_interface": "c1/ns0/db-0/iface:eth0", "container": "c1/ns0/db-0/db", "volume": "c1/ns0/db-0/volume:data",
        "workload": "c1/ns0/workload:wl0/-", "namespace": "c1/ns0/-/-", "cluster": "c1/-/-/-",
    }
    out = []
    for kind in ENTITY_KINDS:
        names = (METRICS.get(kind) or AGGREGATE_METRICS[kind])
        for n, full in enumerate((names[0], names[-1])):
            metrics = {
                m: MetricStats(min=i, max=i + 2.0, mean=i + 1.0, last=i + 1.5, sum=(i + 1.0) * (4 if m == full else 3),
                               count=4 if m == full else 3)
                for i, m in enumerate(names)
            }
            out.append(EntityRollup(
                entity_id=ids[kind], kind=kind, cluster="c1", **{k: identity[k] for k in has[kind]},
                window=window, window_start=timestamp + n * size, window_end=timestamp + (n + 1) * size, metrics=metrics,
            ))
    return out


_WINDOWS = {"1m": 60, "1h": 3600}


def _windowed(names: Collection[str]) -> Callable[[str], bool]:
    wanted = set(names)
    return lambda metric: metric in wanted or metric.rsplit(".", 1)[-1] in wanted


class _Acc:
    """Running min, max, sum, count and last of one metric in one window (time order)."""

    __slots__ = ("min", "max", "sum", "count", "last")

    def __init__(self, v: float) -> None:
        self.min = self.max = self.sum = self.last = v
        self.count = 1

    def add(self, v: float) -> None:
        self.min = min(self.min, v)
        self.max = max(self.max, v)
        self.sum += v
        self.count += 1
        self.last = v

    def stats(self) -> MetricStats:
        return MetricStats(min=self.min, max=self.max, mean=self.sum / self.count, last=self.last, sum=self.sum, count=self.count)


def _cluster_sums(scrapes: list[NodeScrape]) -> Iterable[tuple[datetime, str, str, dict[str, str], str, float]]:
    """(time, kind, entity id, identity, metric, value) of the workload, namespace and cluster sums of each scrape time."""
    by_time: dict[tuple[str, datetime], list[NodeScrape]] = defaultdict(list)
    for s in scrapes:
        by_time[(s.cluster, s.timestamp)].append(s)
    for (c, ts), group in sorted(by_time.items(), key=lambda kv: kv[0][1]):
        sums: dict[tuple[str, str, tuple[tuple[str, str], ...]], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for s in group:
            alloc = s.node_stats.allocatable
            cl = sums[("cluster", f"{c}/-/-/-", ())]
            cl["nodes"] += 1
            cl["cpu_allocatable_cores"] += alloc.cpu_cores or 0.0
            cl["memory_allocatable_bytes"] += alloc.memory_bytes or 0
            for p in s.pods:
                targets = [cl, sums[("namespace", f"{c}/{p.namespace}/-/-", (("namespace", p.namespace),))]]
                if p.workload_name:
                    ident = (("namespace", p.namespace), ("workload", p.workload_name), ("workload_kind", p.workload_kind or ""))
                    targets.append(sums[("workload", f"{c}/{p.namespace}/workload:{p.workload_name}/-", ident)])
                for t in targets:
                    t["pods"] += 1
                    for field, v in (("cpu_cores", p.cpu_cores), ("memory_working_set_bytes", p.memory_working_set_bytes),
                                     ("cpu_request_cores", p.requests.cpu_cores), ("cpu_limit_cores", p.limits.cpu_cores),
                                     ("memory_request_bytes", p.requests.memory_bytes), ("memory_limit_bytes", p.limits.memory_bytes)):
                        if v is not None:
                            t[field] += v
        for (kind, eid, ident), values in sums.items():
            if kind == "cluster":
                if "cpu_cores" in values and values["cpu_allocatable_cores"]:
                    values["cpu_allocatable_share"] = values["cpu_cores"] / values["cpu_allocatable_cores"]
                if "memory_working_set_bytes" in values and values["memory_allocatable_bytes"]:
                    values["memory_allocatable_share"] = values["memory_working_set_bytes"] / values["memory_allocatable_bytes"]
            for field, v in values.items():
                yield ts, kind, eid, dict(ident), f"{kind}.{field}", float(v)


def _points(scrapes: list[NodeScrape], wanted: Callable[[str], bool]) -> Iterable[tuple[datetime, str, str, dict[str, str], str, float]]:
    for s in scrapes:
        for e in entities(s):
            ident = {k: v for k, v in e.labels.items() if k in _IDENTITY and v}
            eid = e.prefix[:-1]
            for metric, v in e.metrics:
                if v is not None and wanted(metric):
                    yield s.timestamp, e.kind, eid, ident, metric, float(v)


class _RollupBuilder:
    """Accumulates node scrapes (each scrape time in one :meth:`add`) into their ``EntityRollup``s: running
    statistics per entity, window and metric, not the samples."""

    def __init__(self, *, windows: Collection[str] = ("1m", "1h"), windowed_metrics: Collection[str] | None = None) -> None:
        self._wanted = _windowed(StreamsSettings().windowed_metrics if windowed_metrics is None else windowed_metrics)
        self._sizes = {w: _WINDOWS[w] for w in windows}
        # window -> (start, entity id) -> (kind, identity, metric -> running stats)
        self._groups: dict[str, dict[tuple[int, str], tuple[str, dict[str, str], dict[str, _Acc]]]] = {w: {} for w in windows}

    def add(self, scrapes: Iterable[NodeScrape]) -> None:
        scrapes = sorted(scrapes, key=lambda s: s.timestamp)
        for source in (_points(scrapes, self._wanted), _cluster_sums(scrapes)):
            for ts, kind, eid, ident, metric, v in source:
                epoch = int(ts.timestamp())
                for window, size in self._sizes.items():
                    key = (epoch // size * size, eid)
                    group = self._groups[window].get(key)
                    if group is None:
                        group = self._groups[window][key] = (kind, ident, {})
                    acc = group[2].get(metric)
                    if acc is None:
                        group[2][metric] = _Acc(v)
                    else:
                        acc.add(v)

    def records(self) -> list[EntityRollup]:
        """Every window seen so far (the last ones as if closed), sorted by window, window start and entity id."""
        out = []
        for window, size in self._sizes.items():
            for (start, eid), (kind, ident, metrics) in sorted(self._groups[window].items()):
                ws = datetime.fromtimestamp(start, UTC)
                out.append(EntityRollup(
                    entity_id=eid, kind=kind, cluster=eid.split("/", 1)[0], **ident, window=window, window_start=ws,
                    window_end=ws + timedelta(seconds=size), metrics={m: a.stats() for m, a in metrics.items()},
                ))
        return out


def entity_rollups(
    scrapes: Iterable[NodeScrape], *, windows: Collection[str] = ("1m", "1h"), windowed_metrics: Collection[str] | None = None
) -> list[EntityRollup]:
    """Every ``EntityRollup`` of these scrapes: each entity's windowed metrics per tumbling window (every window
    that has a sample, the last ones included as if closed), and the workload, namespace and cluster sums.

    ``windowed_metrics`` are names as in ``streams.windowed_metrics`` (full names or a field name matching
    every entity), by default that setting's default; the cluster-wide sums are always there. Sorted by
    window, window start and entity id.
    """
    builder = _RollupBuilder(windows=windows, windowed_metrics=windowed_metrics)
    builder.add(scrapes)
    return builder.records()
