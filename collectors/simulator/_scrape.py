"""One node's scrape of the simulated fleet: its containers', pods' and its own samples, built from their state.

Split by entity (container CPU and memory, the pod, its network and volumes, the
node) and called once per node and step, so it is the simulator's hot path: the
random numbers are drawn in one fixed order (see ``_container_sample``), which
keeps a fleet's output byte-identical for a seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime

from models.records import ContainerSample, Filesystem, Interface, NodeSample, NodeScrape, PodSample, Volume

from collectors.simulator._build import make
from collectors.simulator._layout import GiB, MiB, ClusterState, ContainerState, NodeState, PodState

__all__ = ["scrape_node"]

_LOG_ROTATE = 50 * MiB
"""kubelet keeps 5 files of containerLogMaxSize=10Mi: logs fall back by 10Mi past 50Mi."""
_INODE_BYTES = 16 * 1024


@dataclass(slots=True)
class _Disk:
    """The node's filesystem, as every filesystem sample on it reports it (containers share the nodefs)."""

    capacity: int
    available: int
    inodes: int
    inodes_free: int

    def filesystem(self, used: int, inodes_used: int, *, available: int | None = None) -> Filesystem:
        return make(
            Filesystem,
            {
                "used_bytes": used,
                "capacity_bytes": self.capacity,
                "available_bytes": self.available if available is None else available,
                "inodes_used": inodes_used,
                "inodes": self.inodes,
                "inodes_free": self.inodes_free,
            },
        )


@dataclass(slots=True)
class _Totals:
    """What a node's pods, or a pod's containers, add up to in one scrape (increments: pod and node counters never
    go back, even when a container restarts)."""

    disk_used: int
    """The node's filesystem (from its images) or the pod's ephemeral storage (from its emptyDirs)."""
    rx: float = 0.0
    tx: float = 0.0
    cpu_inc: float = 0.0
    ws: int = 0
    rss: int = 0
    usage: int = 0
    faults: int = 0
    major: int = 0
    rx_err: int = 0


def scrape_node(rng: random.Random, cl: ClusterState, node: NodeState, t: float, dt: float | None, ts: datetime, s_day: float) -> NodeScrape:
    """One node's scrape at ``t`` (``dt`` after the previous one, None on the first), advancing its counters."""
    gauss = rng.gauss
    fs_cap = node.fs_capacity
    fs_inodes = fs_cap // _INODE_BYTES
    disk = _Disk(fs_cap, max(0, fs_cap - (node.fs_used or node.images_used)), fs_inodes, fs_inodes - 250_000)
    nt = _Totals(
        rx=node.rx_base * (1 + 0.05 * gauss(0.0, 1.0)),
        tx=node.tx_base * (1 + 0.05 * gauss(0.0, 1.0)),
        disk_used=node.images_used + 2 * GiB,
    )
    pods_out = [_pod_sample(rng, node, pod, nt, disk, t, dt, s_day) for pod in node.pods]
    return make(
        NodeScrape,
        {
            "schema_version": 1,
            "cluster": cl.name,
            "node": node.name,
            "timestamp": ts,
            "source": "simulator",
            "node_stats": _node_sample(rng, node, nt, disk, dt),
            "pods": pods_out,
        },
    )


def _pod_sample(rng: random.Random, node: NodeState, pod: PodState, nt: _Totals, disk: _Disk, t: float,
                dt: float | None, s_day: float) -> PodSample:
    """One pod's sample and its containers'; adds the pod's use to ``nt``."""
    wl = pod.workload
    f = 1.0 + wl.cpu_amp * s_day
    fm = 1.0 + 0.1 * wl.cpu_amp * s_day
    pt = _Totals(disk_used=pod.emptydir_used)
    cs_out = [_container_sample(rng, node, c, pt, disk, t, dt, f, fm) for c in pod.containers]
    # Pod level: the pod cgroup's counter keeps counting across container restarts.
    pod.cpu_total += pt.cpu_inc
    nt.cpu_inc += pt.cpu_inc
    prev = pod.prev_cpu_total
    pcores = (pod.cpu_total - prev) / dt if prev is not None and dt else None
    pod.prev_cpu_total = pod.cpu_total
    pod.faults += pt.faults
    pod.major_faults += pt.major
    nt.ws += pt.ws
    nt.faults += pt.faults
    nt.major += pt.major
    nt.disk_used += pt.disk_used
    iface = _pod_network(rng, pod, nt, f, dt)
    volumes = _volumes(pod, dt)
    req, lim = wl.pod_requests, wl.pod_limits
    alloc_cpu, alloc_mem = node.cpu_alloc, node.mem_alloc
    pod_ws, eph_used = pt.ws, pt.disk_used
    p_req_cpu, p_req_mem, p_lim_cpu, p_lim_mem = req.cpu_cores, req.memory_bytes, lim.cpu_cores, lim.memory_bytes
    return make(
        PodSample,
        {
            "cpu_request_share": pcores / p_req_cpu if pcores is not None and p_req_cpu else None,
            "cpu_limit_share": pcores / p_lim_cpu if pcores is not None and p_lim_cpu else None,
            "cpu_node_share": pcores / alloc_cpu if pcores is not None else None,
            "memory_request_share": pod_ws / p_req_mem if p_req_mem else None,
            "memory_limit_share": pod_ws / p_lim_mem if p_lim_mem else None,
            "memory_node_share": pod_ws / alloc_mem,
            "cpu_cores": pcores,
            "cpu_usage_seconds_total": pod.cpu_total,
            "memory_working_set_bytes": pod_ws,
            "memory_rss_bytes": pt.rss,
            "memory_usage_bytes": pt.usage,
            "memory_available_bytes": p_lim_mem - pod_ws if p_lim_mem is not None else None,
            "memory_page_faults_total": pod.faults,
            "memory_major_page_faults_total": pod.major_faults,
            "namespace": wl.namespace,
            "name": pod.name,
            "uid": pod.uid,
            "workload_kind": wl.kind,
            "workload_name": wl.name,
            "labels": dict(pod.labels),
            "phase": "Running",
            "requests": req,
            "limits": lim,
            "network": [iface],
            "ephemeral_storage": disk.filesystem(eph_used, eph_used // 8192 + 40),
            "volumes": volumes,
            "containers": cs_out,
        },
    )


def _container_sample(rng: random.Random, node: NodeState, c: ContainerState, pt: _Totals, disk: _Disk, t: float,
                      dt: float | None, f: float, fm: float) -> ContainerSample:
    """One container's sample; adds its use to ``pt``."""
    # Draw the same random numbers whatever the container's state, so an
    # incident on one container leaves every other series exactly as it was.
    g_cpu = rng.gauss(0.0, 1.0)
    g_mem = rng.gauss(0.0, 1.0)
    r_major = rng.random()
    age = t - c.started_t
    cores = _container_cpu(c, pt, dt, age, f, g_cpu, r_major)
    ws, rss, usage = _container_memory(c, pt, age, fm, g_mem)
    lim_cpu, lim_mem = c.lim_cpu, c.lim_mem
    alloc_cpu, alloc_mem = node.cpu_alloc, node.mem_alloc
    if cores is None:
        crs = cls_ = cns = None
    else:
        crs = cores / c.req_cpu
        cls_ = cores / lim_cpu if lim_cpu else None
        cns = cores / alloc_cpu
    return make(
        ContainerSample,
        {
            "cpu_request_share": crs,
            "cpu_limit_share": cls_,
            "cpu_node_share": cns,
            "memory_request_share": ws / c.req_mem,
            "memory_limit_share": ws / lim_mem if lim_mem else None,
            "memory_node_share": ws / alloc_mem,
            "cpu_cores": cores,
            "cpu_usage_seconds_total": c.cpu_total,
            "memory_working_set_bytes": ws,
            "memory_rss_bytes": rss,
            "memory_usage_bytes": usage,
            "memory_available_bytes": lim_mem - ws if lim_mem is not None else None,
            "memory_page_faults_total": c.faults,
            "memory_major_page_faults_total": c.major_faults,
            "name": c.name,
            "requests": c.requests,
            "limits": c.limits,
            "rootfs": disk.filesystem(c.rootfs_used, c.rootfs_used // 8192 + 12),
            "logs": disk.filesystem(c.logs_used, 1 + c.logs_used // (10 * MiB)),
            "restart_count": c.restart_count,
            "last_terminated_reason": c.last_reason,
        },
    )


def _pod_network(rng: random.Random, pod: PodState, nt: _Totals, f: float, dt: float | None) -> Interface:
    """The pod's eth0 (its sandbox's, which survives container restarts); adds its traffic to ``nt``."""
    nf = 1.0 + 0.1 * rng.gauss(0.0, 1.0)
    rx_rate = pod.rx_base * f * nf
    tx_rate = pod.tx_base * f * nf
    storm = pod.net_storm
    if dt is not None:
        err_rx = 1 if rng.random() < 0.0005 else 0  # a rare dropped packet
        if storm is not None:
            rx_rate += storm[0] * (0.5 + 0.5 * nf)
            tx_rate += storm[1]
            err_rx += int(storm[2] * dt)
        pod.rx_total += int(rx_rate * dt)
        pod.tx_total += int(tx_rate * dt)
        pod.rx_err_total += err_rx
        nt.rx += rx_rate
        nt.tx += tx_rate
        nt.rx_err += err_rx
    return _eth0(pod, dt)


def _node_sample(rng: random.Random, node: NodeState, nt: _Totals, disk: _Disk, dt: float | None) -> NodeSample:
    """The node: its pods plus the system (kubelet, containerd, the OS), plus any incident."""
    sys_rate = node.system_cpu * (1.0 + 0.05 * rng.gauss(0.0, 1.0))
    if dt is not None:
        nt.cpu_inc += sys_rate * dt
        node.cpu_total += nt.cpu_inc
    prev = node.prev_cpu_total
    ncores = (node.cpu_total - prev) / dt if prev is not None and dt else None
    node.prev_cpu_total = node.cpu_total
    node_ws = nt.ws + node.system_mem
    if node.pressure_frac > 0:
        hog = max(0, node.mem_capacity - node.pressure_available - node_ws)
        node_ws += int(hog * node.pressure_frac)
    if node_ws > node.mem_capacity:
        node_ws = node.mem_capacity
    node_usage = min(node.mem_capacity, node_ws + node.mem_capacity // 8)
    node.faults += nt.faults
    node.major_faults += nt.major
    if dt is not None:
        node.rx_total += int(nt.rx * dt)
        node.tx_total += int(nt.tx * dt)
        node.rx_err_total += nt.rx_err
    iface = _eth0(node, dt)
    fs_used = min(nt.disk_used, disk.capacity)
    node.fs_used = fs_used
    available = disk.capacity - fs_used
    pressure = "True" if node.memory_pressure else "False"
    return make(
        NodeSample,
        {
            "cpu_cores": ncores,
            "cpu_usage_seconds_total": node.cpu_total,
            "memory_working_set_bytes": node_ws,
            "memory_rss_bytes": int(node_ws * 0.8),
            "memory_usage_bytes": node_usage,
            "memory_available_bytes": node.mem_capacity - node_ws,
            "memory_page_faults_total": node.faults,
            "memory_major_page_faults_total": node.major_faults,
            "allocatable": node.allocatable,
            "capacity": node.capacity,
            "cpu_node_share": ncores / node.cpu_alloc if ncores is not None else None,
            "memory_node_share": node_ws / node.mem_alloc,
            "network": [iface],
            "fs": disk.filesystem(fs_used, 250_000, available=available),
            "imagefs": disk.filesystem(node.images_used, 250_000, available=available),
            "conditions": {"Ready": "True", "MemoryPressure": pressure, "DiskPressure": "False", "PIDPressure": "False"},
        },
    )


def _container_cpu(c: ContainerState, pt: _Totals, dt: float | None, age: float, f: float, g_cpu: float,
                   r_major: float) -> float | None:
    """Advance the container's CPU, fault and log counters by ``dt``; its cores since the previous scrape."""
    if c.crashing:
        rate = 0.003
    elif c.cpu_override is not None:
        rate = c.cpu_override * (1.0 + 0.02 * g_cpu)
    else:
        rate = c.cpu_base * f * (1.0 + c.cpu_noise * g_cpu)
    if rate < 0.0005:
        rate = 0.0005
    lim_cpu = c.lim_cpu
    if lim_cpu is not None and rate > lim_cpu:
        rate = lim_cpu  # CFS quota: usage never exceeds the limit, it is throttled
    if dt is not None:
        run = dt if dt < age else age
        if run > 0:
            inc = rate * run
            c.cpu_total += inc
            pt.cpu_inc += inc
            fl = int(inc * c.faults_per_cpu_s)
            c.faults += fl
            pt.faults += fl
            if r_major < 0.02:
                c.major_faults += 1
                pt.major += 1
            c.logs_used += int(c.log_rate * f * run)
            if c.logs_used > _LOG_ROTATE:
                c.logs_used -= 10 * MiB
    prev = c.prev_cpu_total
    cores = (c.cpu_total - prev) / dt if prev is not None and dt else None
    c.prev_cpu_total = c.cpu_total
    return cores


def _container_memory(c: ContainerState, pt: _Totals, age: float, fm: float, g_mem: float) -> tuple[int, int, int]:
    """The container's working set, RSS and usage now; adds them (and its disk use) to ``pt``."""
    lim_mem = c.lim_mem
    c.mem_jitter = 0.9 * c.mem_jitter + 0.01 * g_mem
    if c.crashing:
        ws = int(c.mem_base * 0.08)
    elif c.mem_override is not None:
        ws = c.mem_override
    else:
        w = c.mem_base * fm * (1.0 + c.mem_jitter)
        if age < 1800:
            w *= 1.0 - 0.5 * math.exp(-age / 240.0)
        ws = int(w)
        if lim_mem is not None and ws > lim_mem * 0.9:
            ws = int(lim_mem * 0.9)
    rss = int(ws * c.rss_ratio)
    usage = ws + c.cache_bytes
    if lim_mem is not None and usage > lim_mem:
        usage = lim_mem
    pt.ws += ws
    pt.rss += rss
    pt.usage += usage
    pt.disk_used += c.rootfs_used + c.logs_used
    return ws, rss, usage


def _eth0(owner: PodState | NodeState, dt: float | None) -> Interface:
    """eth0 of a pod or node: its counters, and their rates since the previous scrape (none on the first)."""
    totals = (owner.rx_total, owner.tx_total, owner.rx_err_total, owner.tx_err_total)
    pn = owner.prev_net
    if pn is not None and dt:
        rates: tuple[float | None, ...] = ((totals[0] - pn[0]) / dt, (totals[1] - pn[1]) / dt, (totals[2] - pn[2]) / dt, (totals[3] - pn[3]) / dt)
    else:
        rates = (None, None, None, None)
    owner.prev_net = totals
    return make(
        Interface,
        {
            "name": "eth0",
            "rx_bytes_total": totals[0],
            "tx_bytes_total": totals[1],
            "rx_errors_total": totals[2],
            "tx_errors_total": totals[3],
            "rx_bytes_per_s": rates[0],
            "tx_bytes_per_s": rates[1],
            "rx_errors_per_s": rates[2],
            "tx_errors_per_s": rates[3],
        },
    )


def _volumes(pod: PodState, dt: float | None) -> list[Volume]:
    """The pod's persistent volume, grown by ``dt`` (none when it has no volume)."""
    v = pod.volume
    if v is None:
        return []
    if dt is not None:
        v.used += v.growth_per_s * dt
    used = v.used_override if v.used_override is not None else int(v.used)
    if used > v.capacity:
        used = v.capacity
    v_inodes = v.capacity // _INODE_BYTES
    v_iused = used // (64 * 1024) + 100
    return [
        make(
            Volume,
            {
                "used_bytes": used,
                "capacity_bytes": v.capacity,
                "available_bytes": v.capacity - used,
                "inodes_used": v_iused,
                "inodes": v_inodes,
                "inodes_free": v_inodes - v_iused,
                "name": v.name,
                "pvc_name": v.pvc_name,
            },
        )
    ]
