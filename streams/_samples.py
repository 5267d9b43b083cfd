"""Records with every field set, for the indexing tests and benchmark (one of each kind, or many node scrapes).

Every optional field is populated, so a document built from these records
carries every field of its mapping: the tests use that to prove the table in
``streams._mappings`` and the documents agree.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models._fingerprint import fingerprint
from models.records import (
    AlertTransition,
    Anomaly,
    ContainerSample,
    DeadLetter,
    Filesystem,
    Incident,
    Interface,
    KubeEvent,
    NodeSample,
    NodeScrape,
    Notification,
    ObjectRef,
    PodSample,
    QuotaScrape,
    Record,
    Resources,
    EntityRollup,
    MetricStats,
    Volume,
)

__all__ = ["full_records", "node_scrape"]

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
    labels = {"alertname": "PodMemoryHigh", "severity": "critical", "cluster": "c1", "namespace": "ns0", "node": "n1", "pod": "p1", "container": "ct0"}
    sid = "c1/ns0/p1/ct0/container.memory_working_set_bytes"
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
        "rollups": EntityRollup(
            entity_id=sid.rsplit("/", 1)[0],
            kind="container",
            cluster="c1",
            node="n1",
            namespace="ns0",
            workload="wl0",
            workload_kind="Deployment",
            pod="p1",
            container="ct0",
            window="1m",
            window_start=timestamp,
            window_end=timestamp + timedelta(minutes=1),
            metrics={"container.memory_working_set_bytes": MetricStats(min=1.0, max=3.0, mean=2.0, last=2.5, sum=8.0,
                                                                       count=4)},
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
            occurred_at=timestamp,
        ),
    }
