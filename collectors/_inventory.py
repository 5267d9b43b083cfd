"""Nodes, pods and their owners from the API server's lists: what a node scrape is joined with.

Pods are listed once per cluster per pass (not per node). ReplicaSets and
Jobs are cached between passes and relisted only when a pod names one the
cache does not know: an owner's own owner (ReplicaSet -> Deployment, Job ->
CronJob) is set at creation and practically never changes, so a relist per
pass would cost the API server a large list for no new information, while a
lazy relist still picks up every new rollout on the pass it appears.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kubernetes.utils.quantity import parse_quantity


@lru_cache(maxsize=4096)
def quantity(q: str) -> float:
    """Any resource quantity as a plain number: ``"250m"`` -> 0.25 (cores), ``"10Gi"`` -> 10737418240.0 (bytes), ``"10"`` -> 10.0."""
    return float(parse_quantity(q))


def cpu_cores(q: str) -> float:
    """CPU quantity to cores: ``"250m"`` -> 0.25."""
    return quantity(q)


@lru_cache(maxsize=4096)
def memory_bytes(q: str) -> int:
    """Memory quantity to bytes: ``"128Mi"`` -> 134217728."""
    return int(parse_quantity(q))


@dataclass(slots=True)
class ContainerInfo:
    cpu_request: float | None = None
    cpu_limit: float | None = None
    memory_request: int | None = None
    memory_limit: int | None = None
    restart_count: int | None = None
    last_terminated_reason: str | None = None


@dataclass(slots=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    node: str | None
    labels: dict[str, str]
    phase: str | None
    owner_kind: str | None
    owner_name: str | None
    containers: dict[str, ContainerInfo] = field(default_factory=dict)
    workload_kind: str | None = None
    workload_name: str | None = None

    def total(self, attr: str, *, every: bool) -> float | None:
        """Sum of a container amount; with ``every`` None unless all containers set it (a pod limit)."""
        values = [getattr(c, attr) for c in self.containers.values()]
        present = [v for v in values if v is not None]
        if not present or (every and len(present) != len(values)):
            return None
        return sum(present)


@dataclass(slots=True)
class NodeInfo:
    name: str
    allocatable_cpu: float | None
    allocatable_memory: int | None
    capacity_cpu: float | None
    capacity_memory: int | None
    conditions: dict[str, str]


def _res(d: dict[str, Any] | None, key: str, conv: Any) -> Any:
    v = (d or {}).get(key)
    return conv(str(v)) if v is not None else None


def parse_node(obj: dict[str, Any]) -> NodeInfo:
    status = obj.get("status") or {}
    alloc, cap = status.get("allocatable"), status.get("capacity")
    return NodeInfo(
        name=obj["metadata"]["name"],
        allocatable_cpu=_res(alloc, "cpu", cpu_cores),
        allocatable_memory=_res(alloc, "memory", memory_bytes),
        capacity_cpu=_res(cap, "cpu", cpu_cores),
        capacity_memory=_res(cap, "memory", memory_bytes),
        conditions={c["type"]: c["status"] for c in status.get("conditions") or () if "type" in c and "status" in c},
    )


def parse_pod(obj: dict[str, Any]) -> PodInfo:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    owner_kind = owner_name = None
    for ref in meta.get("ownerReferences") or ():
        if ref.get("controller"):
            owner_kind, owner_name = ref.get("kind"), ref.get("name")
            break
    pod = PodInfo(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta.get("uid", ""),
        node=spec.get("nodeName"),
        labels=dict(meta.get("labels") or {}),
        phase=status.get("phase"),
        owner_kind=owner_kind,
        owner_name=owner_name,
    )
    # Init containers are not in the Summary once done; only regular ones count.
    for c in spec.get("containers") or ():
        res = c.get("resources") or {}
        req, lim = res.get("requests"), res.get("limits")
        pod.containers[c["name"]] = ContainerInfo(
            cpu_request=_res(req, "cpu", cpu_cores),
            cpu_limit=_res(lim, "cpu", cpu_cores),
            memory_request=_res(req, "memory", memory_bytes),
            memory_limit=_res(lim, "memory", memory_bytes),
        )
    for cs in status.get("containerStatuses") or ():
        info = pod.containers.get(cs.get("name"))
        if info is None:
            continue
        info.restart_count = cs.get("restartCount")
        terminated = (cs.get("lastState") or {}).get("terminated") or {}
        info.last_terminated_reason = terminated.get("reason")
    return pod


def _controller(obj: dict[str, Any]) -> tuple[str, str] | None:
    for ref in obj["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            return ref["kind"], ref["name"]
    return None


class Owners:
    """Resolves a pod's workload through its ReplicaSet or Job, caching those between passes."""

    def __init__(self) -> None:
        self.replicasets: dict[tuple[str, str], tuple[str, str] | None] = {}
        self.jobs: dict[tuple[str, str], tuple[str, str] | None] = {}
        self.loaded = {"ReplicaSet": False, "Job": False}

    def unknown(self, pods: list[PodInfo]) -> set[str]:
        """Which of ReplicaSet/Job must be (re)listed to resolve ``pods``."""
        need: set[str] = set()
        for p in pods:
            if p.owner_kind == "ReplicaSet" and (p.namespace, p.owner_name) not in self.replicasets:
                need.add("ReplicaSet")
            elif p.owner_kind == "Job" and (p.namespace, p.owner_name) not in self.jobs:
                need.add("Job")
        return need

    def set_replicasets(self, items: list[dict[str, Any]]) -> None:
        # Replace, not merge: deleted ReplicaSets leave the cache with a relist.
        self.replicasets = {(o["metadata"]["namespace"], o["metadata"]["name"]): _controller(o) for o in items}
        self.loaded["ReplicaSet"] = True

    def set_jobs(self, items: list[dict[str, Any]]) -> None:
        self.jobs = {(o["metadata"]["namespace"], o["metadata"]["name"]): _controller(o) for o in items}
        self.loaded["Job"] = True

    def resolve(self, pod: PodInfo) -> None:
        kind, name = pod.owner_kind, pod.owner_name
        if kind == "ReplicaSet":
            up = self.replicasets.get((pod.namespace, name or ""))
            if up is not None:
                kind, name = up
        elif kind == "Job":
            up = self.jobs.get((pod.namespace, name or ""))
            if up is not None:
                kind, name = up
        pod.workload_kind, pod.workload_name = kind, name
