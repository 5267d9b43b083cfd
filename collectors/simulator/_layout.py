"""The simulated fleet's shape and mutable state: clusters, nodes, workloads, pods, containers.

Everything here is plain slotted objects (not pydantic): the generator updates
counters in place on every step and only builds records at the end. The
catalogue of workloads is small and familiar on purpose (a shop, payments,
search, a Kafka, kube-proxy and fluent-bit), so dashboards and alerts read
like a real cluster's.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from models.records import Resources

from collectors.simulator._build import resources

__all__ = [
    "ContainerState",
    "PodState",
    "VolumeState",
    "NodeState",
    "WorkloadState",
    "ClusterState",
    "build_clusters",
    "new_pod_name",
]

GiB = 1 << 30
MiB = 1 << 20

_CLUSTER_NAMES = ("prod-eu-west", "prod-us-east", "prod-ap-south", "staging-eu", "prod-us-west", "dev-eu")
_CLUSTER_UTC_OFFSET_H = (1, -5, 5.5, 1, -8, 1)
"""Local time of each cluster's users: the diurnal peak follows them."""
_NODE_TYPES = ((4, 16), (8, 32), (16, 64))
"""(cores, GiB) of the node groups: AWS m5.xlarge/2xlarge/4xlarge."""

# --------------------------------------------------------------------------
# Catalogue: (namespace, name, containers, network weight[, volume GiB])
# A container is (name, cpu weight, memory weight, has cpu limit, has memory limit):
# many real teams set no CPU limit (to avoid throttling) and a few set none at all.
# --------------------------------------------------------------------------
_C = tuple[str, float, float, bool, bool]
_DEPLOYMENTS: tuple[tuple[str, str, tuple[_C, ...], float], ...] = (
    ("shop", "frontend", (("frontend", 1.0, 1.0, True, True), ("envoy", 0.3, 0.3, True, True)), 2.0),
    ("shop", "cart", (("cart", 0.8, 0.8, False, True),), 1.0),
    ("shop", "checkout", (("checkout", 1.0, 1.2, True, True), ("istio-proxy", 0.2, 0.25, True, True)), 1.0),
    ("shop", "catalog", (("catalog", 0.6, 1.5, False, False),), 1.5),
    ("payments", "payments-api", (("api", 1.0, 1.0, True, True), ("istio-proxy", 0.2, 0.25, True, True)), 1.0),
    ("payments", "ledger-worker", (("worker", 1.5, 1.0, False, True),), 0.5),
    ("search", "search-api", (("api", 1.2, 1.0, False, True),), 1.5),
    (
        "search",
        "indexer",
        (("indexer", 1.5, 2.0, True, True), ("log-shipper", 0.2, 0.3, True, True), ("metrics-exporter", 0.1, 0.1, True, True)),
        0.8,
    ),
    ("platform", "ingress-nginx-controller", (("controller", 1.0, 0.8, False, True),), 3.0),
    ("platform", "cert-manager", (("cert-manager", 0.1, 0.3, False, False),), 0.1),
)
_STATEFULSETS: tuple[tuple[str, str, tuple[_C, ...], float, int], ...] = (
    ("payments", "postgres", (("postgres", 1.5, 3.0, False, True), ("postgres-exporter", 0.1, 0.1, True, True)), 1.0, 50),
    ("shop", "redis", (("redis", 0.5, 2.0, True, True),), 2.0, 10),
    ("search", "elasticsearch", (("elasticsearch", 2.0, 4.0, True, True),), 1.0, 100),
    ("data", "kafka", (("kafka", 1.5, 3.0, False, True),), 3.0, 200),
)
_DAEMONSETS: tuple[tuple[str, str, tuple[_C, ...], float], ...] = (
    ("kube-system", "kube-proxy", (("kube-proxy", 0.2, 0.3, False, False),), 0.2),
    ("monitoring", "fluent-bit", (("fluent-bit", 0.3, 0.3, True, True),), 0.3),
)
_PAD_CONTAINERS: tuple[_C, ...] = (("istio-proxy", 0.2, 0.25, True, True), ("log-shipper", 0.2, 0.3, True, True), ("metrics-exporter", 0.1, 0.1, True, True))

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes)."""


def _suffix(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_NAME_ALPHABET) for _ in range(n))


def new_uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass(slots=True, eq=False)
class ContainerState:
    name: str
    requests: Resources
    limits: Resources
    req_cpu: float
    req_mem: int
    lim_cpu: float | None
    lim_mem: int | None
    cpu_base: float
    """Cores at the diurnal mean."""
    cpu_noise: float
    """Relative standard deviation of CPU from one scrape to the next."""
    mem_base: int
    rss_ratio: float
    cache_bytes: int
    faults_per_cpu_s: float
    log_rate: float
    """Bytes of log written per second at the diurnal mean."""
    started_t: float
    cpu_total: float = 0.0
    prev_cpu_total: float | None = None
    faults: int = 0
    major_faults: int = 0
    mem_jitter: float = 0.0
    rootfs_used: int = 0
    logs_used: int = 0
    restart_count: int = 0
    last_reason: str | None = None
    # Incident overrides, set by collectors.simulator._incidents for the scrapes they cover.
    cpu_override: float | None = None
    mem_override: int | None = None
    crashing: bool = False


@dataclass(slots=True, eq=False)
class VolumeState:
    name: str
    pvc_name: str
    capacity: int
    used: float
    growth_per_s: float
    used_override: int | None = None


@dataclass(slots=True, eq=False)
class WorkloadState:
    cluster: str
    namespace: str
    name: str
    kind: str
    """Deployment, StatefulSet or DaemonSet."""
    specs: tuple[_C, ...]
    container_requests: list[tuple[Resources, Resources, float, int, float | None, int | None]]
    pod_requests: Resources
    pod_limits: Resources
    cpu_amp: float
    """Diurnal amplitude: 0.4 means +40% at the daily peak, -40% at the trough."""
    net_weight: float
    volume_gib: int = 0
    rs_hash: str = ""
    pods: list[PodState] = field(default_factory=list)
    use_share: tuple[float, float] | None = None
    """A scenario's fixed (CPU, memory) use at the daily mean as a share of the requests; None: drawn per container."""


@dataclass(slots=True, eq=False)
class PodState:
    workload: WorkloadState
    name: str
    uid: str
    labels: dict[str, str]
    node: NodeState
    containers: list[ContainerState]
    created_t: float
    rx_base: float
    tx_base: float
    cpu_total: float = 0.0
    prev_cpu_total: float | None = None
    faults: int = 0
    major_faults: int = 0
    rx_total: int = 0
    tx_total: int = 0
    rx_err_total: int = 0
    tx_err_total: int = 0
    prev_net: tuple[int, int, int, int] | None = None
    emptydir_used: int = 0
    volume: VolumeState | None = None
    # network_storm override: (added rx bytes/s, added tx bytes/s, rx errors/s)
    net_storm: tuple[float, float, float] | None = None
    busy: bool = False
    """Under an injected incident: churn, restarts and evictions leave it alone."""


@dataclass(slots=True, eq=False)
class NodeState:
    cluster: str
    name: str
    cpu_capacity: float
    mem_capacity: int
    cpu_alloc: float
    mem_alloc: int
    allocatable: Resources
    capacity: Resources
    fs_capacity: int
    images_used: int
    system_cpu: float
    system_mem: int
    rx_base: float
    tx_base: float
    pods: list[PodState] = field(default_factory=list)
    cpu_total: float = 0.0
    prev_cpu_total: float | None = None
    faults: int = 0
    major_faults: int = 0
    rx_total: int = 0
    tx_total: int = 0
    rx_err_total: int = 0
    tx_err_total: int = 0
    prev_net: tuple[int, int, int, int] | None = None
    fs_used: int = 0
    pressure_frac: float = 0.0
    """node_memory_pressure ramp (0 none, 1 full): memory outside pods grows until only
    ``pressure_available`` bytes are left."""
    pressure_available: int = 0
    memory_pressure: bool = False
    busy: bool = False


@dataclass(slots=True, eq=False)
class ClusterState:
    name: str
    utc_offset_s: float
    nodes: list[NodeState]
    workloads: list[WorkloadState]
    resource_version: int = 1000

    def next_rv(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)


def new_pod_name(rng: random.Random, wl: WorkloadState, ordinal: int) -> str:
    if wl.kind == "StatefulSet":
        return f"{wl.name}-{ordinal}"
    if wl.kind == "Deployment":
        return f"{wl.name}-{wl.rs_hash}-{_suffix(rng, 5)}"
    return f"{wl.name}-{_suffix(rng, 5)}"


def pod_labels(wl: WorkloadState, name: str) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": wl.name, "app.kubernetes.io/part-of": wl.namespace}
    if wl.kind == "Deployment":
        labels["pod-template-hash"] = wl.rs_hash
    elif wl.kind == "StatefulSet":
        labels["statefulset.kubernetes.io/pod-name"] = name
    else:
        labels["controller-revision-hash"] = wl.rs_hash
    return labels


def new_container(rng: random.Random, wl: WorkloadState, index: int, t: float, *, age: float) -> ContainerState:
    """A container of ``wl``'s pod template that has run for ``age`` seconds at ``t`` (0: starts now)."""
    fresh = age == 0
    name = wl.specs[index][0]
    req, lim, req_cpu, req_mem, lim_cpu, lim_mem = wl.container_requests[index]
    cpu_base = req_cpu * rng.uniform(0.3, 0.7)
    mem_base = int(req_mem * rng.uniform(0.5, 0.8))
    if wl.use_share is not None:  # a scenario's known truth (collectors.simulator._scenarios), after the same draws
        cpu_base, mem_base = req_cpu * wl.use_share[0], int(req_mem * wl.use_share[1])
    if lim_mem is not None:
        # Leave room under the limit: normal load must never look like a leak.
        mem_base = min(mem_base, int(lim_mem * 0.55))
    c = ContainerState(
        name=name,
        requests=req,
        limits=lim,
        req_cpu=req_cpu,
        req_mem=req_mem,
        lim_cpu=lim_cpu,
        lim_mem=lim_mem,
        cpu_base=cpu_base,
        cpu_noise=rng.uniform(0.04, 0.08),
        mem_base=mem_base,
        rss_ratio=rng.uniform(0.7, 0.95),
        cache_bytes=int(mem_base * rng.uniform(0.05, 0.3)),
        faults_per_cpu_s=rng.uniform(500, 3000),
        log_rate=rng.uniform(50, 1500),
        started_t=t - age,
    )
    c.cpu_total = cpu_base * age
    c.faults = int(c.cpu_total * c.faults_per_cpu_s)
    c.rootfs_used = int(rng.uniform(0.1, 60) * MiB)
    c.logs_used = int(rng.uniform(0, 40) * MiB) if not fresh else 0
    return c


def new_pod(rng: random.Random, wl: WorkloadState, node: NodeState, ordinal: int, t: float, *, fresh: bool) -> PodState:
    name = new_pod_name(rng, wl, ordinal)
    rx = wl.net_weight * rng.uniform(30_000, 300_000)
    age = 0.0 if fresh else rng.uniform(3600, 14 * 86400)
    pod = PodState(
        workload=wl,
        name=name,
        uid=new_uid(rng),
        labels=pod_labels(wl, name),
        node=node,
        containers=[new_container(rng, wl, i, t, age=age) for i in range(len(wl.specs))],
        created_t=t - age,
        rx_base=rx,
        tx_base=rx * rng.uniform(0.4, 1.5),
    )
    pod.cpu_total = sum(c.cpu_total for c in pod.containers)
    pod.faults = sum(c.faults for c in pod.containers)
    pod.rx_total = int(pod.rx_base * age)
    pod.tx_total = int(pod.tx_base * age)
    pod.emptydir_used = int(rng.uniform(0, 200) * MiB) if rng.random() < 0.3 else 0
    if wl.volume_gib:
        cap = wl.volume_gib * GiB
        pod.volume = VolumeState(
            name="data",
            pvc_name=f"data-{name}",
            capacity=cap,
            used=cap * rng.uniform(0.2, 0.5),
            # Databases grow a few percent of their volume a day: a normal slope
            # that must not trip "disk full in < 4 h".
            growth_per_s=cap * rng.uniform(0.001, 0.02) / 86400,
        )
    return pod


def _round_cpu(x: float) -> float:
    return max(0.01, round(x * 200) / 200)  # 5 millicores, as people write "125m"


def _round_mem(x: float) -> int:
    return max(16 * MiB, int(x // (16 * MiB)) * 16 * MiB)


def _workload(
    rng: random.Random,
    cluster: str,
    kind: str,
    namespace: str,
    name: str,
    specs: tuple[_C, ...],
    net_weight: float,
    cpu_unit: float,
    mem_unit: float,
    *,
    volume_gib: int = 0,
) -> WorkloadState:
    total_w_cpu = sum(s[1] for s in specs)
    total_w_mem = sum(s[2] for s in specs)
    size = rng.uniform(0.6, 1.4) * (0.3 if kind == "DaemonSet" else 1.0)
    reqs = []
    for _cname, wc, wm, has_cpu_lim, has_mem_lim in specs:
        req_cpu = _round_cpu(cpu_unit * size * wc / total_w_cpu)
        req_mem = _round_mem(mem_unit * size * wm / total_w_mem)
        lim_cpu = _round_cpu(req_cpu * rng.choice((1.5, 2.0, 4.0))) if has_cpu_lim else None
        lim_mem = _round_mem(req_mem * rng.uniform(1.5, 2.0)) if has_mem_lim else None
        reqs.append((resources(req_cpu, req_mem), resources(lim_cpu, lim_mem), req_cpu, req_mem, lim_cpu, lim_mem))
    # Kubernetes' pod-level view: requests add up; the pod has a limit only when
    # every container has one (otherwise its cgroup is unbounded).
    pod_req = resources(round(sum(r[2] for r in reqs), 3), sum(r[3] for r in reqs))
    lim_cpus = [r[4] for r in reqs]
    lim_mems = [r[5] for r in reqs]
    pod_lim = resources(
        round(sum(x for x in lim_cpus if x is not None), 3) if all(x is not None for x in lim_cpus) else None,
        sum(x for x in lim_mems if x is not None) if all(x is not None for x in lim_mems) else None,
    )
    return WorkloadState(
        cluster=cluster,
        namespace=namespace,
        name=name,
        kind=kind,
        specs=specs,
        container_requests=reqs,
        pod_requests=pod_req,
        pod_limits=pod_lim,
        cpu_amp=rng.uniform(0.05, 0.15) if kind == "DaemonSet" else rng.uniform(0.25, 0.5),
        net_weight=net_weight,
        volume_gib=volume_gib,
        rs_hash=_suffix(rng, 10 if kind == "Deployment" else 9),
    )


def _pad(specs: tuple[_C, ...], n: int | None) -> tuple[_C, ...]:
    if n is None:
        return specs
    out = list(specs[:n])
    for extra in _PAD_CONTAINERS:
        if len(out) >= n:
            break
        if all(extra[0] != s[0] for s in out):
            out.append(extra)
    while len(out) < n:
        out.append((f"sidecar-{len(out)}", 0.1, 0.1, True, True))
    return tuple(out)


def build_clusters(
    rng: random.Random,
    *,
    clusters: int,
    nodes_per_cluster: int,
    pods_per_node: int,
    containers_per_pod: int | None,
    t: float,
) -> list[ClusterState]:
    """The fleet as it is at time ``t``: pods placed, counters as if running for hours or days."""
    out = []
    for ci in range(clusters):
        base = _CLUSTER_NAMES[ci % len(_CLUSTER_NAMES)]
        cname = base if ci < len(_CLUSTER_NAMES) else f"{base}-{ci // len(_CLUSTER_NAMES) + 1}"
        cores, gib = _NODE_TYPES[ci % len(_NODE_TYPES)]
        cpu_cap = float(cores)
        mem_cap = gib * GiB
        # kube-reserved + system-reserved + eviction threshold, roughly what EKS sets.
        cpu_alloc = cpu_cap - 0.08 - 0.01 * cores
        mem_alloc = mem_cap - int((0.6 + 0.06 * gib) * GiB)
        nodes = [_node(rng, cname, ci, ni, cpu_cap, mem_cap, cpu_alloc, mem_alloc) for ni in range(nodes_per_cluster)]
        # Budget per pod slot: the scheduler packs nodes to roughly half of allocatable requests.
        cpu_unit = cpu_alloc * rng.uniform(0.45, 0.6) / pods_per_node
        mem_unit = mem_alloc * rng.uniform(0.4, 0.55) / pods_per_node
        n_ds = 0 if pods_per_node < 3 else (1 if pods_per_node < 6 else 2)
        workloads, plan = _workloads(rng, cname, n_ds, nodes_per_cluster * (pods_per_node - n_ds), containers_per_pod, cpu_unit, mem_unit)
        _place(rng, nodes, workloads[:n_ds], plan, t)
        out.append(ClusterState(name=cname, utc_offset_s=_CLUSTER_UTC_OFFSET_H[ci % len(_CLUSTER_UTC_OFFSET_H)] * 3600, nodes=nodes, workloads=workloads))
    return out


def _node(rng: random.Random, cname: str, ci: int, ni: int, cpu_cap: float, mem_cap: int, cpu_alloc: float, mem_alloc: int) -> NodeState:
    """Node ``ni`` of cluster ``ci``, its disk, system use and traffic drawn (in this order) from ``rng``."""
    return NodeState(
        cluster=cname,
        name=f"ip-10-{ci}-{ni // 200}-{ni % 200 + 10}.ec2.internal",
        cpu_capacity=cpu_cap,
        mem_capacity=mem_cap,
        cpu_alloc=cpu_alloc,
        mem_alloc=mem_alloc,
        allocatable=resources(cpu_alloc, mem_alloc),
        capacity=resources(cpu_cap, mem_cap),
        fs_capacity=rng.choice((80, 100, 120)) * GiB,
        images_used=int(rng.uniform(6, 15) * GiB),
        system_cpu=rng.uniform(0.08, 0.2),
        system_mem=int(rng.uniform(0.6, 1.0) * GiB),
        rx_base=rng.uniform(5_000, 20_000),
        tx_base=rng.uniform(5_000, 20_000),
    )


def _workloads(rng: random.Random, cname: str, n_ds: int, slots: int, containers_per_pod: int | None, cpu_unit: float,
               mem_unit: float) -> tuple[list[WorkloadState], list[tuple[WorkloadState, int]]]:
    """A cluster's workloads (DaemonSets first) and the (workload, ordinal) of each of its ``slots`` non-DaemonSet pods."""
    workloads: list[WorkloadState] = []
    for ns, name, specs, netw in _DAEMONSETS[:n_ds]:
        workloads.append(
            _workload(rng, cname, "DaemonSet", ns, name, _pad(specs, containers_per_pod), netw, cpu_unit, mem_unit)
        )
    # About a fifth of the pods are StatefulSet replicas (3 each), the rest Deployments.
    sts_pods = min(max(1 if slots >= 2 else 0, slots // 5), 3 * len(_STATEFULSETS))
    plan: list[tuple[WorkloadState, int]] = []
    for i, (ns, name, specs, netw, vol) in enumerate(_STATEFULSETS):
        replicas = min(3, sts_pods - 3 * i)
        if replicas <= 0:
            break
        wl = _workload(
            rng, cname, "StatefulSet", ns, name, _pad(specs, containers_per_pod), netw, cpu_unit, mem_unit, volume_gib=vol
        )
        workloads.append(wl)
        plan.extend((wl, o) for o in range(replicas))
    dep_slots = slots - len(plan)
    deps = [
        _workload(rng, cname, "Deployment", ns, name, _pad(specs, containers_per_pod), netw, cpu_unit, mem_unit)
        for ns, name, specs, netw in _DEPLOYMENTS[: max(1, min(len(_DEPLOYMENTS), dep_slots))]
    ]
    workloads.extend(deps)
    for k in range(dep_slots):
        plan.append((deps[k % len(deps)], k // len(deps)))
    return workloads, plan


def _place(rng: random.Random, nodes: list[NodeState], daemonsets: list[WorkloadState], plan: list[tuple[WorkloadState, int]],
           t: float) -> None:
    """Shuffle the plan onto the nodes round-robin, add a DaemonSet pod to every node, and start the nodes' counters."""
    rng.shuffle(plan)
    for k, (wl, ordinal) in enumerate(plan):
        node = nodes[k % len(nodes)]
        pod = new_pod(rng, wl, node, ordinal, t, fresh=False)
        wl.pods.append(pod)
        node.pods.append(pod)
    for wl in daemonsets:
        for node in nodes:
            pod = new_pod(rng, wl, node, 0, t, fresh=False)
            wl.pods.append(pod)
            node.pods.insert(0, pod)
    for node in nodes:
        node.cpu_total = sum(p.cpu_total for p in node.pods) + node.system_cpu * 86400 * 7
        node.faults = sum(p.faults for p in node.pods)
        node.rx_total = sum(p.rx_total for p in node.pods) + int(node.rx_base * 86400 * 7)
        node.tx_total = sum(p.tx_total for p in node.pods) + int(node.tx_base * 86400 * 7)
