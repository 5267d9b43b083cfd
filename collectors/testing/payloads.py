"""Builders of real-shaped Kubernetes objects for the test API server and tests.

Shapes follow core/v1 (Node, Pod, Event, ResourceQuota), apps/v1 ReplicaSet, batch/v1 Job,
kubelet ``stats/v1alpha1`` Summary and metrics.k8s.io/v1beta1 Node/PodMetrics,
with their JSON field names exactly. Values are whatever the test passes.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "rfc3339",
    "node",
    "pod",
    "container",
    "replicaset",
    "job",
    "event",
    "resourcequota",
    "horizontalpodautoscaler",
    "cpu",
    "memory",
    "fs",
    "interface",
    "container_stats",
    "volume_stats",
    "pod_stats",
    "summary",
    "node_metrics",
    "pod_metrics",
]

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def rfc3339(t: datetime | float) -> str:
    """metav1.Time as the API server writes it (seconds, ``Z``)."""
    if isinstance(t, (int, float)):
        t = datetime.fromtimestamp(t, timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uid() -> str:
    return str(uuid.uuid4())


# -- API objects ------------------------------------------------------------------


def node(name: str, *, cpu: str = "4", memory: str = "16Gi", conditions: dict[str, str] | None = None) -> dict[str, Any]:
    conds = {"Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False"}
    conds.update(conditions or {})
    return {
        "metadata": {"name": name, "uid": _uid(), "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "95Gi"},
            "conditions": [{"type": t, "status": s, "reason": f"Kubelet{t}"} for t, s in conds.items()],
        },
    }


def container(
    name: str,
    *,
    requests: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {"name": name, "image": f"example/{name}:1", "resources": resources}


def pod(
    namespace: str,
    name: str,
    *,
    node_name: str,
    containers: list[dict[str, Any]] | None = None,
    owner: tuple[str, str] | None = None,
    labels: dict[str, str] | None = None,
    uid: str | None = None,
    phase: str = "Running",
    restarts: dict[str, tuple[int, str | None]] | None = None,
) -> dict[str, Any]:
    """A Pod; ``restarts`` maps a container name to (restartCount, last terminated reason)."""
    containers = containers or [container("app")]
    meta: dict[str, Any] = {"namespace": namespace, "name": name, "uid": uid or _uid(), "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": _uid(), "controller": True}]
    statuses = []
    for c in containers:
        count, reason = (restarts or {}).get(c["name"], (0, None))
        st: dict[str, Any] = {"name": c["name"], "ready": True, "restartCount": count, "image": c["image"], "state": {"running": {}}}
        if reason:
            st["lastState"] = {"terminated": {"exitCode": 137, "reason": reason}}
        statuses.append(st)
    return {
        "metadata": meta,
        "spec": {"nodeName": node_name, "containers": containers},
        "status": {"phase": phase, "containerStatuses": statuses},
    }


def replicaset(namespace: str, name: str, *, deployment: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": namespace, "name": name, "uid": _uid()}
    if deployment:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "uid": _uid(), "controller": True}]
    return {"metadata": meta, "spec": {"replicas": 1}, "status": {"replicas": 1}}


def job(namespace: str, name: str, *, cronjob: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": namespace, "name": name, "uid": _uid()}
    if cronjob:
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cronjob, "uid": _uid(), "controller": True}]
    return {"metadata": meta, "spec": {}, "status": {}}


def event(
    namespace: str,
    *,
    reason: str,
    involved: tuple[str, str],
    message: str = "",
    type: str = "Warning",
    count: int = 1,
    first: datetime = T0,
    last: datetime | None = None,
    component: str = "kubelet",
    host: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` = (kind, name) in ``namespace``."""
    kind, obj = involved
    return {
        "metadata": {"namespace": namespace, "name": name or f"{obj}.{uuid.uuid4().hex[:16]}", "uid": _uid()},
        "involvedObject": {"kind": kind, "namespace": namespace if kind != "Node" else "", "name": obj, "uid": _uid(), "apiVersion": "v1"},
        "reason": reason,
        "message": message,
        "type": type,
        "count": count,
        "firstTimestamp": rfc3339(first),
        "lastTimestamp": rfc3339(last or first),
        "source": {"component": component, **({"host": host} if host else {})},
        "reportingComponent": component,
        "reportingInstance": host or "",
    }


def resourcequota(
    namespace: str,
    name: str,
    *,
    hard: dict[str, str],
    used: dict[str, str] | None = None,
    created: datetime = T0,
) -> dict[str, Any]:
    """A core/v1 ResourceQuota as a list item; ``used=None``: no status yet (the quota controller has not run).

    With ``used`` the status is what kube-controller-manager writes: ``status.hard``
    a copy of ``spec.hard`` and ``status.used`` one entry per hard resource.
    """
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace, "uid": _uid(), "creationTimestamp": rfc3339(created)},
        "spec": {"hard": dict(hard)},
    }
    obj["status"] = {"hard": dict(hard), "used": dict(used)} if used is not None else {}
    return obj


def horizontalpodautoscaler(
    namespace: str,
    name: str,
    *,
    target: tuple[str, str],
    metrics: list[dict[str, Any]],
    min_replicas: int = 1,
    max_replicas: int = 10,
    current: int | None = None,
    created: datetime = T0,
) -> dict[str, Any]:
    """An autoscaling/v2 HorizontalPodAutoscaler as a list item; ``target`` is (kind, name) of its scaleTargetRef."""
    kind, target_name = target
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace, "uid": _uid(), "creationTimestamp": rfc3339(created)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target_name},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": metrics,
        },
        "status": {"currentReplicas": current, "desiredReplicas": current} if current is not None else {},
    }
    return obj


# -- kubelet stats/v1alpha1 ----------------------------------------------------


def cpu(usage_core_nanoseconds: int, *, time: datetime | float, usage_nano_cores: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"time": rfc3339(time), "usageCoreNanoSeconds": usage_core_nanoseconds}
    if usage_nano_cores is not None:
        out["usageNanoCores"] = usage_nano_cores
    return out


def memory(
    working_set: int,
    *,
    time: datetime | float,
    rss: int | None = None,
    usage: int | None = None,
    available: int | None = None,
    page_faults: int = 0,
    major_page_faults: int = 0,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time": rfc3339(time),
        "workingSetBytes": working_set,
        "rssBytes": rss if rss is not None else working_set,
        "usageBytes": usage if usage is not None else working_set,
        "pageFaults": page_faults,
        "majorPageFaults": major_page_faults,
    }
    if available is not None:
        out["availableBytes"] = available
    return out


def fs(used: int, *, capacity: int, time: datetime | float = T0, inodes: int = 1_000_000, inodes_used: int = 1000) -> dict[str, Any]:
    return {
        "time": rfc3339(time),
        "availableBytes": capacity - used,
        "capacityBytes": capacity,
        "usedBytes": used,
        "inodesFree": inodes - inodes_used,
        "inodes": inodes,
        "inodesUsed": inodes_used,
    }


def interface(name: str, *, rx: int, tx: int, rx_errors: int = 0, tx_errors: int = 0) -> dict[str, Any]:
    return {"name": name, "rxBytes": rx, "rxErrors": rx_errors, "txBytes": tx, "txErrors": tx_errors}


def container_stats(
    name: str,
    *,
    time: datetime | float,
    cpu_ns: int,
    working_set: int,
    start: datetime | float = T0,
    rootfs_used: int = 4096,
    logs_used: int = 1024,
) -> dict[str, Any]:
    return {
        "name": name,
        "startTime": rfc3339(start),
        "cpu": cpu(cpu_ns, time=time),
        "memory": memory(working_set, time=time),
        "rootfs": fs(rootfs_used, capacity=100 * 2**30, time=time),
        "logs": fs(logs_used, capacity=100 * 2**30, time=time),
    }


def volume_stats(name: str, *, used: int, capacity: int, pvc: str | None = None, namespace: str = "default", inodes_used: int = 10) -> dict[str, Any]:
    out: dict[str, Any] = {**fs(used, capacity=capacity, inodes_used=inodes_used), "name": name}
    if pvc:
        out["pvcRef"] = {"name": pvc, "namespace": namespace}
    return out


def pod_stats(
    namespace: str,
    name: str,
    *,
    uid: str,
    time: datetime | float,
    cpu_ns: int,
    working_set: int,
    containers: list[dict[str, Any]],
    start: datetime | float = T0,
    interfaces: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    ephemeral_used: int = 8192,
) -> dict[str, Any]:
    ifaces = interfaces if interfaces is not None else [interface("eth0", rx=0, tx=0)]
    out: dict[str, Any] = {
        "podRef": {"name": name, "namespace": namespace, "uid": uid},
        "startTime": rfc3339(start),
        "containers": containers,
        "cpu": cpu(cpu_ns, time=time),
        "memory": memory(working_set, time=time),
        "network": {"time": rfc3339(time), **(ifaces[0] if ifaces else {}), "interfaces": ifaces},
        "ephemeral-storage": fs(ephemeral_used, capacity=100 * 2**30, time=time),
    }
    if volumes:
        out["volume"] = volumes
    return out


def summary(
    node_name: str,
    *,
    time: datetime | float,
    cpu_ns: int,
    working_set: int,
    pods: list[dict[str, Any]],
    start: datetime | float = T0,
    interfaces: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    ifaces = interfaces if interfaces is not None else [interface("eth0", rx=0, tx=0)]
    return {
        "node": {
            "nodeName": node_name,
            "systemContainers": [
                {"name": "kubelet", "startTime": rfc3339(start), "cpu": cpu(cpu_ns // 50, time=time), "memory": memory(working_set // 20, time=time)}
            ],
            "startTime": rfc3339(start),
            "cpu": cpu(cpu_ns, time=time),
            "memory": memory(working_set, time=time, available=max(0, 16 * 2**30 - working_set)),
            "network": {"time": rfc3339(time), **(ifaces[0] if ifaces else {}), "interfaces": ifaces},
            "fs": fs(20 * 2**30, capacity=100 * 2**30, time=time),
            "runtime": {"imageFs": fs(10 * 2**30, capacity=100 * 2**30, time=time)},
            "rlimit": {"time": rfc3339(time), "maxpid": 4194304, "curproc": 300},
        },
        "pods": pods,
    }


# -- metrics.k8s.io/v1beta1 ----------------------------------------------------------


def node_metrics(name: str, *, cpu: str, memory: str, timestamp: datetime = T0) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {}}, "timestamp": rfc3339(timestamp), "window": "20s", "usage": {"cpu": cpu, "memory": memory}}


def pod_metrics(namespace: str, name: str, *, containers: dict[str, tuple[str, str]], timestamp: datetime = T0) -> dict[str, Any]:
    """PodMetrics; ``containers`` maps a name to its (cpu, memory) quantities."""
    return {
        "metadata": {"namespace": namespace, "name": name, "labels": {}},
        "timestamp": rfc3339(timestamp),
        "window": "20s",
        "containers": [{"name": n, "usage": {"cpu": c, "memory": m}} for n, (c, m) in containers.items()],
    }
