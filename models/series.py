"""Series: how a node scrape is cut into the time series that rules and detectors see.

A series is ``(cluster, namespace, pod, container, metric)`` or the node's.
Its id always has five ``/``-separated slots, so it sorts and splits
predictably::

    prod-eu/shop/cart-7d9/cart/container.memory_working_set_bytes   a container
    prod-eu/shop/cart-7d9/-/pod.cpu_cores                           a pod
    prod-eu/shop/db-0/volume:data/volume.used_share                 a pod volume
    prod-eu/shop/cart-7d9/iface:eth0/pod.network.rx_bytes_per_s     a pod interface
    prod-eu/-/node:ip-10-0-1-7/-/node.memory_node_share             a node
    prod-eu/-/node:ip-10-0-1-7/iface:eth0/node.network.rx_errors_per_s
    prod-eu/shop/quota:compute/resource:requests.cpu/quota.used_share   a ResourceQuota's resource

Metric names are ``<entity>.<field>`` with the record's field names, so the
unit is in the name; these are what rule files select on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from models.records import Filesystem, Interface, NodeScrape, QuotaScrape

__all__ = ["Entity", "entities", "quota_entities", "series_id", "split_series_id", "METRICS", "AGGREGATE_METRICS"]

_USAGE = (
    "cpu_cores",
    "memory_working_set_bytes",
    "memory_rss_bytes",
    "memory_usage_bytes",
    "memory_page_faults_total",
    "memory_major_page_faults_total",
)
_SHARES = (
    "cpu_request_share",
    "cpu_limit_share",
    "cpu_node_share",
    "memory_request_share",
    "memory_limit_share",
    "memory_node_share",
)
_IFACE = ("rx_bytes_per_s", "tx_bytes_per_s", "rx_errors_per_s", "tx_errors_per_s")
_FS = ("used_bytes", "capacity_bytes", "available_bytes", "inodes_used", "inodes_free")
_NODE_SUMS = (
    "cpu_allocatable_cores",
    "memory_allocatable_bytes",
    "pods",
    "pods_cpu_cores",
    "pods_memory_working_set_bytes",
    "pods_cpu_request_cores",
    "pods_memory_request_bytes",
    "pods_cpu_limit_cores",
    "pods_memory_limit_bytes",
    "pods_cpu_allocatable_share",
    "pods_memory_allocatable_share",
    "pods_cpu_request_allocatable_share",
    "pods_memory_request_allocatable_share",
)
"""What the node's pods add up to, against what the node can give them (allocatable): the numbers capacity
planning reads (requests are what the scheduler counts) and what the cluster-wide sums are made of. Pods
that ended (phase Succeeded or Failed) hold no capacity and are left out."""

METRICS: dict[str, tuple[str, ...]] = {
    "node": tuple(f"node.{f}" for f in (*_USAGE, "memory_available_bytes", "cpu_node_share", "memory_node_share"))
    + tuple(f"node.fs.{f}" for f in (*_FS, "used_share"))
    + tuple(f"node.{f}" for f in _NODE_SUMS),
    "node_interface": tuple(f"node.network.{f}" for f in _IFACE),
    "pod": tuple(f"pod.{f}" for f in (*_USAGE, *_SHARES))
    + tuple(f"pod.ephemeral_storage.{f}" for f in (*_FS, "used_share")),
    "pod_interface": tuple(f"pod.network.{f}" for f in _IFACE),
    "container": tuple(f"container.{f}" for f in (*_USAGE, *_SHARES, "restart_count"))
    + tuple(f"container.rootfs.{f}" for f in ("used_bytes", "used_share"))
    + ("container.memory_limit_bytes", "container.memory_request_bytes", "container.cpu_request_cores",
       "container.cpu_limit_cores"),
    "volume": tuple(f"volume.{f}" for f in (*_FS, "used_share", "inodes_used_share")),
    "quota": ("quota.used", "quota.hard", "quota.used_share"),
}
"""Every metric name, by the kind of entity that carries it."""

_SUMS = ("cpu_cores", "memory_working_set_bytes", "cpu_request_cores", "cpu_limit_cores", "memory_request_bytes",
         "memory_limit_bytes", "pods")
AGGREGATE_METRICS: dict[str, tuple[str, ...]] = {
    "workload": tuple(f"workload.{f}" for f in _SUMS),
    "namespace": tuple(f"namespace.{f}" for f in _SUMS),
    "cluster": tuple(f"cluster.{f}" for f in _SUMS)
    + ("cluster.nodes", "cluster.cpu_allocatable_cores", "cluster.memory_allocatable_bytes",
       "cluster.cpu_allocatable_share", "cluster.memory_allocatable_share"),
}
"""Metrics of the cluster-wide rollups (``EntityRollup`` kinds workload, namespace, cluster): sums over the
cluster's pods (usage, requests and limits of their containers, and how many there are), and for the
cluster its nodes' allocatable and the pods' use as a share of it."""


@dataclass(slots=True)
class Entity:
    """One node, pod, container, volume or interface in one scrape.

    ``prefix`` is the series id without the metric; ``labels`` identify the
    entity (and carry workload and pvc for rule selectors and grouping);
    ``metrics`` pairs each metric name with its value, None where unknown.
    """

    kind: str
    prefix: str
    labels: dict[str, str]
    metrics: list[tuple[str, float | None]]


def series_id(prefix: str, metric: str) -> str:
    return prefix + metric


def split_series_id(sid: str) -> tuple[str, str, str, str, str]:
    """``cluster, namespace, pod, container, metric`` of a series id ('-' is empty).

    >>> split_series_id("c1/shop/cart-1/cart/container.cpu_cores")
    ('c1', 'shop', 'cart-1', 'cart', 'container.cpu_cores')
    """
    cluster, namespace, pod, container, metric = sid.split("/", 4)
    return cluster, namespace, pod, container, metric


def _fs(prefix: str, fs: Filesystem | None) -> list[tuple[str, float | None]]:
    if fs is None:
        return []
    return [
        (prefix + "used_bytes", fs.used_bytes),
        (prefix + "capacity_bytes", fs.capacity_bytes),
        (prefix + "available_bytes", fs.available_bytes),
        (prefix + "inodes_used", fs.inodes_used),
        (prefix + "inodes_free", fs.inodes_free),
        (prefix + "used_share", fs.used_share),
    ]


def _iface(prefix: str, i: Interface) -> list[tuple[str, float | None]]:
    return [
        (prefix + "rx_bytes_per_s", i.rx_bytes_per_s),
        (prefix + "tx_bytes_per_s", i.tx_bytes_per_s),
        (prefix + "rx_errors_per_s", i.rx_errors_per_s),
        (prefix + "tx_errors_per_s", i.tx_errors_per_s),
    ]


def _total(values: Iterator[float | None]) -> float | None:
    """The sum of the known values; None when none is known (an unknown is not a zero)."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _share(part: float | None, whole: float | None) -> float | None:
    return part / whole if part is not None and whole else None


def _node_sums(scrape: NodeScrape) -> list[tuple[str, float | None]]:
    """``node.pods_*`` and allocatable (see ``_NODE_SUMS``), in that order."""
    alloc = scrape.node_stats.allocatable
    pods = [p for p in scrape.pods if p.phase not in ("Succeeded", "Failed")]
    cpu = _total(p.cpu_cores for p in pods)
    mem = _total(p.memory_working_set_bytes for p in pods)
    cpu_req = _total(p.requests.cpu_cores for p in pods)
    mem_req = _total(p.requests.memory_bytes for p in pods)
    return [
        ("node.cpu_allocatable_cores", alloc.cpu_cores),
        ("node.memory_allocatable_bytes", alloc.memory_bytes),
        ("node.pods", len(pods)),
        ("node.pods_cpu_cores", cpu),
        ("node.pods_memory_working_set_bytes", mem),
        ("node.pods_cpu_request_cores", cpu_req),
        ("node.pods_memory_request_bytes", mem_req),
        ("node.pods_cpu_limit_cores", _total(p.limits.cpu_cores for p in pods)),
        ("node.pods_memory_limit_bytes", _total(p.limits.memory_bytes for p in pods)),
        ("node.pods_cpu_allocatable_share", _share(cpu, alloc.cpu_cores)),
        ("node.pods_memory_allocatable_share", _share(mem, alloc.memory_bytes)),
        ("node.pods_cpu_request_allocatable_share", _share(cpu_req, alloc.cpu_cores)),
        ("node.pods_memory_request_allocatable_share", _share(mem_req, alloc.memory_bytes)),
    ]


def entities(scrape: NodeScrape) -> Iterator[Entity]:
    """Cut a node scrape into entities, node first, then each pod and its parts.

    >>> from datetime import datetime, timezone
    >>> from models.records import NodeScrape, PodSample, ContainerSample
    >>> s = NodeScrape(cluster="c1", node="n1", timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...     pods=[PodSample(namespace="shop", name="cart-1", containers=[ContainerSample(name="cart", cpu_cores=0.25)])])
    >>> [e.prefix for e in entities(s)]
    ['c1/-/node:n1/-/', 'c1/shop/cart-1/-/', 'c1/shop/cart-1/cart/']
    >>> dict(list(entities(s))[2].metrics)["container.cpu_cores"]
    0.25
    """
    c, n = scrape.cluster, scrape.node
    ns_ = scrape.node_stats
    node_prefix = f"{c}/-/node:{n}/"
    node_labels = {"cluster": c, "node": n}
    yield Entity(
        "node",
        node_prefix + "-/",
        node_labels,
        [
            ("node.cpu_cores", ns_.cpu_cores),
            ("node.memory_working_set_bytes", ns_.memory_working_set_bytes),
            ("node.memory_rss_bytes", ns_.memory_rss_bytes),
            ("node.memory_usage_bytes", ns_.memory_usage_bytes),
            ("node.memory_page_faults_total", ns_.memory_page_faults_total),
            ("node.memory_major_page_faults_total", ns_.memory_major_page_faults_total),
            ("node.memory_available_bytes", ns_.memory_available_bytes),
            ("node.cpu_node_share", ns_.cpu_node_share),
            ("node.memory_node_share", ns_.memory_node_share),
            *_fs("node.fs.", ns_.fs),
            *_node_sums(scrape),
        ],
    )
    for i in ns_.network:
        yield Entity(
            "node_interface", f"{node_prefix}iface:{i.name}/", {**node_labels, "interface": i.name}, _iface("node.network.", i)
        )
    for p in scrape.pods:
        pod_prefix = f"{c}/{p.namespace}/{p.name}/"
        pod_labels = {"cluster": c, "node": n, "namespace": p.namespace, "pod": p.name}
        if p.workload_name:
            pod_labels["workload"] = p.workload_name
            pod_labels["workload_kind"] = p.workload_kind or ""
        yield Entity(
            "pod",
            pod_prefix + "-/",
            pod_labels,
            [
                ("pod.cpu_cores", p.cpu_cores),
                ("pod.memory_working_set_bytes", p.memory_working_set_bytes),
                ("pod.memory_rss_bytes", p.memory_rss_bytes),
                ("pod.memory_usage_bytes", p.memory_usage_bytes),
                ("pod.memory_page_faults_total", p.memory_page_faults_total),
                ("pod.memory_major_page_faults_total", p.memory_major_page_faults_total),
                ("pod.cpu_request_share", p.cpu_request_share),
                ("pod.cpu_limit_share", p.cpu_limit_share),
                ("pod.cpu_node_share", p.cpu_node_share),
                ("pod.memory_request_share", p.memory_request_share),
                ("pod.memory_limit_share", p.memory_limit_share),
                ("pod.memory_node_share", p.memory_node_share),
                *_fs("pod.ephemeral_storage.", p.ephemeral_storage),
            ],
        )
        for i in p.network:
            yield Entity("pod_interface", f"{pod_prefix}iface:{i.name}/", {**pod_labels, "interface": i.name}, _iface("pod.network.", i))
        for v in p.volumes:
            labels = {**pod_labels, "volume": v.name}
            if v.pvc_name:
                labels["persistentvolumeclaim"] = v.pvc_name
            metrics = _fs("volume.", v)
            metrics.append(("volume.inodes_used_share", v.inodes_used / v.inodes if v.inodes and v.inodes_used is not None else None))
            yield Entity("volume", f"{pod_prefix}volume:{v.name}/", labels, metrics)
        for ct in p.containers:
            rootfs = ct.rootfs
            yield Entity(
                "container",
                f"{pod_prefix}{ct.name}/",
                {**pod_labels, "container": ct.name},
                [
                    ("container.cpu_cores", ct.cpu_cores),
                    ("container.memory_working_set_bytes", ct.memory_working_set_bytes),
                    ("container.memory_rss_bytes", ct.memory_rss_bytes),
                    ("container.memory_usage_bytes", ct.memory_usage_bytes),
                    ("container.memory_page_faults_total", ct.memory_page_faults_total),
                    ("container.memory_major_page_faults_total", ct.memory_major_page_faults_total),
                    ("container.cpu_request_share", ct.cpu_request_share),
                    ("container.cpu_limit_share", ct.cpu_limit_share),
                    ("container.cpu_node_share", ct.cpu_node_share),
                    ("container.memory_request_share", ct.memory_request_share),
                    ("container.memory_limit_share", ct.memory_limit_share),
                    ("container.memory_node_share", ct.memory_node_share),
                    ("container.restart_count", ct.restart_count),
                    ("container.rootfs.used_bytes", rootfs.used_bytes if rootfs else None),
                    ("container.rootfs.used_share", rootfs.used_share if rootfs else None),
                    ("container.memory_limit_bytes", ct.limits.memory_bytes),
                    ("container.memory_request_bytes", ct.requests.memory_bytes),
                    ("container.cpu_request_cores", ct.requests.cpu_cores),
                    ("container.cpu_limit_cores", ct.limits.cpu_cores),
                ],
            )


def quota_entities(quota: QuotaScrape) -> Iterator[Entity]:
    """One entity per resource a ResourceQuota limits (its ``hard`` keys), in name order.

    ``quota.used_share`` is used / hard (None while the resource is not counted yet, or for a hard
    limit of 0, which nothing may use). A ``/`` in a resource name (``count/deployments.apps``) is
    written ``%2F`` in the series id, so the id keeps its five slots; the ``resource`` label keeps it.

    >>> from datetime import datetime, timezone
    >>> q = QuotaScrape(cluster="c1", namespace="shop", name="compute", timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...     hard={"requests.cpu": 4.0, "count/deployments.apps": 10}, used={"requests.cpu": 3.0})
    >>> [(e.prefix, e.labels["resource"], dict(e.metrics)["quota.used_share"]) for e in quota_entities(q)]
    [('c1/shop/quota:compute/resource:count%2Fdeployments.apps/', 'count/deployments.apps', None), \
('c1/shop/quota:compute/resource:requests.cpu/', 'requests.cpu', 0.75)]
    """
    c, ns, name = quota.cluster, quota.namespace, quota.name
    for resource in sorted(quota.hard):
        hard = quota.hard[resource]
        used = quota.used.get(resource)
        yield Entity(
            "quota",
            f"{c}/{ns}/quota:{name}/resource:{resource.replace('/', '%2F')}/",
            {"cluster": c, "namespace": ns, "resourcequota": name, "resource": resource},
            [
                ("quota.used", used),
                ("quota.hard", hard),
                ("quota.used_share", used / hard if used is not None and hard > 0 else None),
            ],
        )
