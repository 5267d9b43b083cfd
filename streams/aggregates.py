"""Reads kubepulse.rollups.v1 (per-node partial aggregates), writes kubepulse.rollups.v1 (cluster-wide workload, namespace and cluster rollups).

``streams.pipeline`` sums pod usage per node: for each closed window it
publishes per-node partials (series ids carry ``node:N``)::

    c/ns/workload:W/node:N/workload.cpu_cores     level workload
    c/ns/-/node:N/namespace.cpu_cores             level namespace
    c/-/node:N/-/node.pods_cpu_cores              level node (also memory and *_allocatable_share)

Two agents here add them up over all nodes of a cluster:

``route_node_partials``  kubepulse.rollups.v1 → kubepulse.aggregates-repartition.v1, keyed by cluster
    (rollups are keyed by series id, so one cluster's partials are spread over
    partitions; re-keying brings them to one partition, hence one worker). It
    looks at the key only: no decoding of the ~1,000 other rollups per node.
``aggregate_clusters``   kubepulse.aggregates-repartition.v1 → kubepulse.rollups.v1::

    c/ns/workload:W/-/workload.cpu_cores          level workload, node None
    c/ns/-/-/namespace.cpu_cores                  level namespace, node None
    c/-/-/-/cluster.pods_cpu_cores                level cluster (also pods_memory_working_set_bytes)
    c/-/-/-/cluster.cpu_allocatable_share         level cluster (memory too), if every node has its share

Its outputs have ``node`` None, so the router never routes them again.

Semantics of a summed rollup (per target, window and window start, over the
node partials that arrived): ``mean``, ``last`` and ``sum`` are the sums of
the nodes' values, which is exact for ``sum`` and ``last`` and, for ``mean``,
equals the mean of the cluster total when the nodes scrape at the same
cadence. Per-scrape cluster totals do not exist (nodes scrape independently),
so ``min``/``max`` are the sums of the nodes' minima/maxima: bounds of the
total, not its attained extremes. ``count`` is the number of node partials.
A cluster share divides by the cluster's allocatable, recovered per node as
``mean(pods usage) / mean(share)`` (exact while a node's allocatable is
constant in the window, since share = usage / allocatable per scrape); it is
left out if a contributing node has no share partial (allocatable unknown).

When a window is complete. The partials of one node reach kubepulse.rollups.v1
in window order, but spread over its partitions (keyed by series id), and a
consumer may read one partition well ahead of another (a backlog at start-up
or after a restart). So the router
forwards the source partition (header ``kp-src``) and the aggregator keeps a
watermark per cluster, window kind and source partition: the newest
``window_start`` it delivered. A bucket ``(cluster, window, start)`` closes,
and is published once, when every source partition that has carried this
cluster's partials is past ``start + 60 s + window_grace_s`` (strictly):
a node publishes window ``start + 60`` only once its event time passed that
window's end plus grace, so one whole further window of event time separates
the close from the last partial that could belong to the bucket (nodes
lagging the cluster by more than that are late). A partition that has not
delivered any partial of the cluster yet cannot hold a bucket (the aggregator
does not know it will), so a backlog read very unevenly at start-up can still
close a first window early: its late partials are then dropped and logged.
A source partition that
stops carrying the cluster (its series went away) would hold the buckets
forever, so a bucket also closes once the newest watermark is
``_STALLED_WINDOWS`` windows further. A partial for a closed bucket is dropped
(logged, counted in ``late``): nothing is published twice for a window.
Given the order partials arrive in, the outputs are deterministic.

State, and its trade-off. The open buckets live in memory, per worker, and
are dropped when partitions are revoked. They are small (at most a few open
windows per cluster) and the partials are on kubepulse.rollups.v1 anyway, so
a table was not worth a changelog write per partial. The cost: after a crash
or a rebalance, a bucket that was open is published from the partials read
after the offset the router/aggregator resumes at, so it can undercount once
(and a replayed, already closed window can be published again with those
partial values). Known gap, like the node windows': a cluster that goes
silent keeps its last buckets open until it sends data again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust

from models.records import Record, Rollup
from models.settings import Settings
from streams.codec import decode_or_dead_letter
from streams.topics import AGGREGATES_REPARTITION
from streams.windows import PANE_S

__all__ = ["ClusterAggregator", "partial_cluster", "register_aggregates"]

log = logging.getLogger(__name__)

_SUMMED_NODE_METRICS = ("node.pods_cpu_cores", "node.pods_memory_working_set_bytes")
_SHARES = {
    "node.pods_cpu_cores": ("node.pods_cpu_allocatable_share", "cluster.cpu_allocatable_share"),
    "node.pods_memory_working_set_bytes": ("node.pods_memory_allocatable_share", "cluster.memory_allocatable_share"),
}
_STALLED_WINDOWS = 5
"""A source partition this many windows behind the cluster's newest no longer holds its buckets open."""
_NODE_PARTIALS = frozenset(_SUMMED_NODE_METRICS) | {share for share, _ in _SHARES.values()}


def partial_cluster(key: bytes | None) -> str | None:
    """The cluster of a per-node partial aggregate's series id (a rollup key), else None.

    >>> partial_cluster(b"c1/shop/workload:cart/node:n1/workload.cpu_cores")
    'c1'
    >>> partial_cluster(b"c1/shop/cart-1/cart/container.cpu_cores") is None
    True
    """
    if not key:
        return None
    parts = key.decode("utf-8", "replace").split("/", 4)
    if len(parts) != 5:
        return None
    cluster, _ns, pod, container, metric = parts
    if metric.startswith("workload.") and pod.startswith("workload:") and container.startswith("node:"):
        return cluster
    if metric.startswith("namespace.") and pod == "-" and container.startswith("node:"):
        return cluster
    if metric in _NODE_PARTIALS and pod.startswith("node:"):
        return cluster
    return None


@dataclass(slots=True)
class _Sum:
    """Running sums of one target's node partials in one bucket."""

    level: str
    namespace: str | None
    workload: str | None
    metric: str
    min: float = 0.0
    max: float = 0.0
    mean: float = 0.0
    last: float = 0.0
    sum: float = 0.0
    count: int = 0
    node_means: dict[str, float] = field(default_factory=dict)
    """Node → its partial's mean (a cluster share needs each node's allocatable)."""

    def add(self, r: Rollup) -> None:
        self.min += r.min
        self.max += r.max
        self.mean += r.mean
        self.last += r.last
        self.sum += r.sum
        self.count += 1
        self.node_means[r.node or ""] = r.mean


@dataclass(slots=True)
class _Bucket:
    end: datetime
    targets: dict[str, _Sum] = field(default_factory=dict)
    shares: dict[str, dict[str, float]] = field(default_factory=dict)
    """Share metric → node → mean share (to recover each node's allocatable)."""


def _target(r: Rollup) -> tuple[str, str, str | None, str | None, str] | None:
    """``(series id, level, namespace, workload, metric)`` of the cluster-wide rollup a node partial adds to."""
    c, ns, pod, _container, metric = r.series_id.split("/", 4)
    if r.level == "workload":
        return f"{c}/{ns}/{pod}/-/{metric}", "workload", r.namespace, r.workload or pod.removeprefix("workload:"), metric
    if r.level == "namespace":
        return f"{c}/{ns}/-/-/{metric}", "namespace", r.namespace, None, metric
    if r.level == "node" and metric in _SUMMED_NODE_METRICS:
        cm = "cluster." + metric.removeprefix("node.")
        return f"{c}/-/-/-/{cm}", "cluster", None, None, cm
    return None


class ClusterAggregator:
    """Sums the per-node partials of each cluster per window; returns the rollups of the windows that close.

    >>> from datetime import timedelta
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> def part(node, start, v):
    ...     s = t0 + timedelta(minutes=start)
    ...     return Rollup(series_id=f"c/ns/-/node:{node}/namespace.cpu_cores", level="namespace", cluster="c",
    ...                   node=node, namespace="ns", metric="namespace.cpu_cores", window="1m", window_start=s,
    ...                   window_end=s + timedelta(minutes=1), min=v, max=v, mean=v, last=v, sum=2 * v, count=2)
    >>> agg = ClusterAggregator(grace_s=0)
    >>> agg.add(part("a", 0, 1.0)) + agg.add(part("b", 0, 2.0)) + agg.add(part("a", 1, 1.0))
    []
    >>> [(r.series_id, r.mean, r.sum, r.count) for r in agg.add(part("a", 2, 1.0))]
    [('c/ns/-/-/namespace.cpu_cores', 3.0, 6.0, 2)]
    >>> agg.add(part("b", 0, 5.0)), agg.late
    ([], 1)
    """

    def __init__(self, *, grace_s: float) -> None:
        self.grace_s = grace_s
        self.buckets: dict[tuple[str, str], dict[int, _Bucket]] = {}
        """(cluster, window) → window start (epoch s) → open bucket."""
        self.watermark: dict[tuple[str, str], dict[int, int]] = {}
        """(cluster, window) → source partition → newest window start it delivered."""
        self.closed_through: dict[tuple[str, str], int] = {}
        self.late = 0
        """Partials dropped because their bucket had closed."""

    def clear(self) -> None:
        """Forget every open bucket (partitions were revoked: another worker may own these clusters now)."""
        self.buckets.clear()
        self.watermark.clear()
        self.closed_through.clear()

    def add(self, r: Rollup, *, source: int = 0) -> list[Rollup]:
        """Fold one node partial (read from rollups partition ``source``) in; return the rollups of the buckets it closes."""
        if r.node is None or r.level not in ("workload", "namespace", "node"):
            return []
        kind = (r.cluster, r.window)
        start = int(r.window_start.timestamp())
        if start <= self.closed_through.get(kind, -1 << 62):
            self.late += 1
            log.warning("partial %s of %s@%s arrived after its cluster window closed: dropped",
                        r.series_id, r.window, r.window_start.isoformat())
            return []
        bucket = self.buckets.setdefault(kind, {}).get(start)
        if bucket is None:
            bucket = self.buckets[kind][start] = _Bucket(end=r.window_end)
        if r.metric in _NODE_PARTIALS and r.metric not in _SUMMED_NODE_METRICS:
            bucket.shares.setdefault(r.metric, {})[r.node] = r.mean
        else:
            t = _target(r)
            if t is not None:
                sid, level, ns, wl, metric = t
                acc = bucket.targets.get(sid)
                if acc is None:
                    acc = bucket.targets[sid] = _Sum(level, ns, wl, metric)
                acc.add(r)
        marks = self.watermark.setdefault(kind, {})
        marks[source] = max(marks.get(source, start), start)
        low, high = min(marks.values()), max(marks.values())
        out: list[Rollup] = []
        open_ = self.buckets[kind]
        for s in sorted(open_):
            due = s + PANE_S + self.grace_s
            if not (low > due or high > due + _STALLED_WINDOWS * PANE_S):
                break
            out.extend(self._close(r.cluster, r.window, s, open_.pop(s)))
            self.closed_through[kind] = s
        return out

    def _close(self, cluster: str, window: str, start: int, b: _Bucket) -> list[Rollup]:
        begin = datetime.fromtimestamp(start, UTC)
        out = []
        for sid, a in sorted(b.targets.items()):
            out.append(self._rollup(sid, a, cluster, window, begin, b.end, scale=1.0))
            if a.level != "cluster":
                continue
            share_metric, cluster_share = _SHARES["node." + a.metric.removeprefix("cluster.")]
            shares = b.shares.get(share_metric, {})
            if any((shares.get(n) or 0.0) <= 0 for n in a.node_means):
                continue  # a node without allocatable (or idle, share 0): the cluster's is unknown
            # Each node's allocatable = its mean usage / its mean share (share = usage / allocatable per scrape).
            alloc = sum(mean / shares[n] for n, mean in sorted(a.node_means.items()))
            if alloc > 0:
                a2 = _Sum("cluster", None, None, cluster_share, count=a.count)
                out.append(self._rollup(f"{cluster}/-/-/-/{cluster_share}", a2, cluster, window, begin, b.end,
                                        scale=1.0 / alloc, values=a))
        return out

    @staticmethod
    def _rollup(sid: str, a: _Sum, cluster: str, window: str, begin: datetime, end: datetime, *, scale: float,
                values: _Sum | None = None) -> Rollup:
        v = values or a
        mn, mx, mean = v.min * scale, v.max * scale, v.mean * scale
        return Rollup(
            series_id=sid, level=a.level, cluster=cluster, node=None, namespace=a.namespace, workload=a.workload,
            metric=a.metric, window=window, window_start=begin, window_end=end,
            # Float sums can put the mean a hair outside [min, max]: clamp, as streams.windows does.
            min=mn, max=mx, mean=min(max(mean, mn), mx), last=v.last * scale, sum=v.sum * scale, count=a.count,
        )


def _source_of(headers: Any) -> int:
    """The rollups partition the router read a partial from (0 if absent: then one watermark per cluster)."""
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    for k, v in items:
        if k == "kp-src":
            return int(v)
    return 0


SendRecord = Callable[[str, str, Record], Awaitable[None]]


def register_aggregates(app: faust.App, settings: Settings, *, rollups_topic: faust.TopicT, send: SendRecord,
                        send_dead_letter: Callable[..., Awaitable[None]]) -> tuple[Any, Any]:
    """Add the two agents to ``app``; ``send(name, key, record)`` publishes to a named output ("rollups")."""
    k = settings.kafka
    repartition = app.topic(
        AGGREGATES_REPARTITION.named(k.topic_prefix), key_serializer="raw", value_serializer="raw",
        partitions=k.topic_partitions, replicas=k.topic_replication, internal=True,
    )
    aggregator = ClusterAggregator(grace_s=settings.streams.window_grace_s)

    @app.on_partitions_revoked.connect
    async def _forget_open_buckets(sender: Any, revoked: Any, **kw: Any) -> None:
        aggregator.clear()

    @app.agent(rollups_topic, name="route_node_partials")
    async def route_node_partials(stream: faust.StreamT) -> None:
        """kubepulse.rollups.v1 (per-node partials only) → repartition topic keyed by cluster."""
        async for event in stream.events():
            msg = event.message
            cluster = partial_cluster(msg.key)
            if cluster is not None:
                await repartition.send(key=cluster.encode(), value=msg.value,
                                       headers=[("kp-src", str(msg.partition).encode())])

    @app.agent(repartition, name="aggregate_clusters")
    async def aggregate_clusters(stream: faust.StreamT) -> None:
        """Repartitioned partials → cluster-wide rollups on kubepulse.rollups.v1 (and dead letters)."""
        async for event in stream.events():
            msg = event.message
            try:
                r = decode_or_dead_letter(Rollup, msg.value, source_topic=msg.topic, partition=msg.partition,
                                          offset=msg.offset, key=msg.key)
                if not isinstance(r, Rollup):
                    await send("deadletter", r.source_topic, r)
                    continue
                for out in aggregator.add(r, source=_source_of(msg.headers)):
                    await send("rollups", out.series_id, out)
            except Exception as exc:  # noqa: BLE001 - nothing escapes an agent: dead-letter and go on
                log.exception("partial at %s[%s]@%s failed", msg.topic, msg.partition, msg.offset)
                await send_dead_letter(exc, stage="aggregates", message=msg)

    app.kubepulse_aggregator = aggregator  # type: ignore[attr-defined]
    return route_node_partials, aggregate_clusters
