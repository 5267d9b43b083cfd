"""Cluster-wide workload, namespace and cluster rollups, summed from the per-node partials of every node of a cluster.

``streams.pipeline`` sums pod usage per node: for each closed window it
publishes per-node partials (series ids carry ``node:N``) to
kubepulse.rollups.v1 like any rollup::

    c/ns/workload:W/node:N/workload.cpu_cores     level workload
    c/ns/-/node:N/namespace.cpu_cores             level namespace
    c/-/node:N/-/node.pods_cpu_cores              level node (also memory and *_allocatable_share)

The worker that produced them also sends them, keyed by cluster, to the
internal kubepulse.aggregates-repartition.v1 (:meth:`Aggregates.forward`):
rollups are keyed by series id, so one cluster's partials are spread over
partitions, and re-keying brings them to one partition, hence one worker.
Forwarding at the source costs a few records per node and window; reading
them back from the rollups topic would mean reading every rollup.
``aggregate_clusters`` (in every worker, same consumer group) sums them::

    c/ns/workload:W/-/workload.cpu_cores          level workload, node None
    c/ns/-/-/namespace.cpu_cores                  level namespace, node None
    c/-/-/-/cluster.pods_cpu_cores                level cluster (also pods_memory_working_set_bytes)
    c/-/-/-/cluster.cpu_allocatable_share         level cluster (memory too), if every node has its share

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

When a window is complete. One node's partials arrive in window order (one
worker publishes them, in order, to one partition). The aggregator keeps a
watermark per cluster, window kind and node: the newest ``window_start`` it
delivered. A bucket ``(cluster, window, start)`` closes, and is published
once, when every node that has carried this cluster's partials is past
``start + 60 s + window_grace_s`` (strictly): a node publishes window
``start + 60`` only once its event time passed that window's end plus grace,
so one whole further window of event time separates the close from the last
partial that could belong to the bucket. A node that stops sending would hold
the buckets forever, so a bucket also closes once the newest watermark is
``_STALLED_WINDOWS`` windows further; a cluster that stops sending altogether
is flushed by its partition's clock (as silent nodes are, ``streams._idle``).
A partial for a closed bucket is dropped and counted (``late``); a node's
second partial for one target of one bucket (the replay of its scrapes after
a crash re-sends them, byte for byte) is ignored. Given the order partials
arrive in, the outputs are deterministic.

State. Each cluster's open buckets and watermarks are one entry of the table
``cluster_to_aggregates`` (changelog-backed, keyed by cluster like the
repartition topic), checkpointed with the node states (``streams._checkpoint``):
input is acked only once the state that includes it is written, and the state
records the offset it includes, so after a crash the replay skips what it
already holds and no bucket is published from partial input.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust

from models.codec import decode_list
from models.errors import RecordError
from models.records import Rollup
from models.settings import Settings
from streams import _metrics as M
from streams._checkpoint import Checkpoints
from streams._idle import PartitionClocks
from streams.codec import encode
from streams.topics import AGGREGATES_REPARTITION
from streams.windows import PANE_S

__all__ = ["Aggregates", "ClusterAggregator", "forwardable", "partial_cluster"]

log = logging.getLogger(__name__)

_SUMMED_NODE_METRICS = ("node.pods_cpu_cores", "node.pods_memory_working_set_bytes")
_SHARES = {
    "node.pods_cpu_cores": ("node.pods_cpu_allocatable_share", "cluster.cpu_allocatable_share"),
    "node.pods_memory_working_set_bytes": ("node.pods_memory_allocatable_share", "cluster.memory_allocatable_share"),
}
_STATE_VERSION = 1
_STALLED_WINDOWS = 5
"""A source partition this many windows behind the cluster's newest no longer holds its buckets open."""
_NODE_PARTIALS = frozenset(_SUMMED_NODE_METRICS) | {share for share, _ in _SHARES.values()}


def partial_cluster(key: bytes | str | None) -> str | None:
    """The cluster of a per-node partial aggregate's series id (a rollup key), else None.

    >>> partial_cluster(b"c1/shop/workload:cart/node:n1/workload.cpu_cores")
    'c1'
    >>> partial_cluster(b"c1/shop/cart-1/cart/container.cpu_cores") is None
    True
    """
    if not key:
        return None
    parts = (key.decode("utf-8", "replace") if isinstance(key, bytes) else key).split("/", 4)
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
        if (r.node or "") in self.node_means:
            return  # this node's partial is in already (a replay re-sent it)
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
    >>> agg.add(part("a", 2, 1.0))  # node b has not passed minute 0 yet
    []
    >>> [(r.series_id, r.mean, r.sum, r.count) for r in agg.add(part("b", 2, 2.0))]
    [('c/ns/-/-/namespace.cpu_cores', 3.0, 6.0, 2)]
    >>> agg.add(part("b", 0, 5.0)), agg.late
    ([], 1)
    """

    def __init__(self, *, grace_s: float) -> None:
        self.grace_s = grace_s
        self.offset = -1
        """Offset of the last repartition record applied (the worker skips a replayed one at or below it)."""
        self.newest_end = 0.0
        """Newest partial's window end (epoch s): the cluster's event time, to find a cluster gone silent."""
        self.buckets: dict[tuple[str, str], dict[int, _Bucket]] = {}
        """(cluster, window) → window start (epoch s) → open bucket."""
        self.watermark: dict[tuple[str, str], dict[Hashable, int]] = {}
        """(cluster, window) → source (node) → newest window start it delivered."""
        self.closed_through: dict[tuple[str, str], int] = {}
        self.late = 0
        """Partials dropped because their bucket had closed."""

    def dumps(self) -> bytes:
        return pickle.dumps((_STATE_VERSION, self.grace_s, self.offset, self.newest_end, self.buckets, self.watermark,
                             self.closed_through, self.late), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def loads(cls, data: bytes) -> ClusterAggregator:
        t = pickle.loads(data)  # our own changelog, never foreign input
        if t[0] != _STATE_VERSION:
            raise ValueError(f"aggregates state version {t[0]}, expected {_STATE_VERSION}")
        _, grace, offset, newest_end, buckets, watermark, closed_through, late = t
        agg = cls(grace_s=grace)
        agg.offset, agg.newest_end, agg.buckets, agg.watermark = offset, newest_end, buckets, watermark
        agg.closed_through, agg.late = closed_through, late
        return agg

    def flush(self) -> list[Rollup]:
        """Close every open bucket now (the cluster went silent): the rollups, in window order."""
        out: list[Rollup] = []
        for (cluster, window), open_ in self.buckets.items():
            for start in sorted(open_):
                out.extend(self._close(cluster, window, start, open_.pop(start)))
                self.closed_through[(cluster, window)] = start
        return out

    def add(self, r: Rollup, *, source: Hashable | None = None) -> list[Rollup]:
        """Fold one node partial in; return the rollups of the buckets it closes.

        ``source`` is what the watermarks are kept per: the partial's node unless given (its partials
        arrive in window order).
        """
        if r.node is None or r.level not in ("workload", "namespace", "node"):
            return []
        if source is None:
            source = r.node
        kind = (r.cluster, r.window)
        start = int(r.window_start.timestamp())
        self.newest_end = max(self.newest_end, r.window_end.timestamp())
        if start <= self.closed_through.get(kind, -1 << 62):
            self.late += 1
            log.info("partial %s of %s@%s arrived after its cluster window closed (late, or a replay): dropped",
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


SendMany = Callable[[str, list[tuple[str, bytes]]], Awaitable[None]]


def forwardable(key: str) -> bool:
    """Cheap test for a per-node partial's series id (the full check is :func:`partial_cluster`)."""
    return ("/workload." in key or "/namespace." in key or "/node.pods_" in key) and partial_cluster(key) is not None


class Aggregates:
    """The worker's side of the cluster aggregates: forward partials, and the ``aggregate_clusters`` agent."""

    def __init__(self, app: faust.App, settings: Settings, *, checkpoints: Checkpoints, guard: Any, table: Any,
                 send_many: SendMany, send_dead_letter: Callable[..., Awaitable[None]]) -> None:
        s = settings.streams
        k = settings.kafka
        self.topic = app.topic(
            AGGREGATES_REPARTITION.named(k.topic_prefix), key_serializer="raw", value_serializer="raw",
            partitions=k.topic_partitions, replicas=k.topic_replication, internal=True,
        )
        self.name = self.topic.get_topic_name()
        guard.topics.add(self.name)
        self.send_many = send_many
        cp = checkpoints
        cache: dict[bytes, ClusterAggregator] = cp.register(self.name, table, "cluster_to_aggregates")
        clocks = PartitionClocks(step_s=PANE_S)
        grace = s.window_grace_s

        @app.on_partitions_revoked.connect
        async def _reset_clocks(sender: Any, revoked: Any, **kw: Any) -> None:
            clocks.reset()  # the working copies are dropped by the checkpoints' revoke

        def load(key: bytes, partition: int) -> ClusterAggregator:
            agg = cache.get(key)
            if agg is None:
                raw = table.get(key)
                agg = cache[key] = ClusterAggregator.loads(raw) if raw else ClusterAggregator(grace_s=grace)
                clocks.keys[partition].add(key)
            return agg

        async def flush_silent(p: int) -> None:
            """Close the buckets of the clusters of partition ``p`` that sent nothing for ``rules_stale_after_s``."""
            now = clocks.time[p]
            tp = (self.name, p)
            for key in sorted(clocks.keys[p]):
                agg = load(key, p)
                idle = now - agg.newest_end
                if idle < s.rules_stale_after_s:
                    continue
                if idle >= s.node_state_ttl_s:
                    cp.forget_key(tp, key)
                    clocks.keys[p].discard(key)
                    continue
                out = agg.flush()
                if out:
                    M.SILENT_TICKS.labels("cluster_to_aggregates").inc()
                    cp.dirty[tp].add(key)
                    await send_many("rollups", [(r.series_id, encode(r)) for r in out])

        @app.agent(self.topic, name="aggregate_clusters")
        async def aggregate_clusters(stream: faust.StreamT) -> None:
            """Repartitioned partials → cluster-wide rollups on kubepulse.rollups.v1 (and dead letters)."""
            async for event in stream.noack().events():
                msg = event.message
                if not await guard.admit(msg):
                    continue
                p = msg.partition
                tp = (msg.topic, p)
                generation = cp.generation
                cp.busy.add(tp)
                try:
                    key = msg.key or b""
                    clocks.seed(p, table)
                    agg = load(key, p)
                    if msg.offset <= agg.offset:
                        M.DUPLICATES_SUPPRESSED.labels("input").inc()
                    else:
                        agg.offset = msg.offset
                        cp.dirty[tp].add(key)
                        try:
                            partials = decode_list(Rollup, msg.value)
                        except RecordError as exc:
                            await send_dead_letter(exc, stage="decode", message=msg)
                            partials = []
                        out = []
                        for r in partials:
                            out += agg.add(r)
                        if out:
                            await send_many("rollups", [(o.series_id, encode(o)) for o in out])
                        if partials and clocks.advance(p, max(r.window_end for r in partials).timestamp()):
                            await flush_silent(p)
                except Exception as exc:  # noqa: BLE001 - nothing escapes an agent: dead-letter and go on
                    log.exception("partial at %s[%s]@%s failed", msg.topic, p, msg.offset)
                    await send_dead_letter(exc, stage="aggregates", message=msg)
                await cp.done(tp, event, generation)

        self.agent = aggregate_clusters

    async def forward(self, cluster: str, records: list[tuple[str, bytes]]) -> None:
        """Send the per-node partials among a node's closed-window ``records`` to the repartition topic.

        As one record, a JSON array of the partials' Rollup JSON: one Kafka record per node and window
        close instead of one per partial (the topic is internal; ``models.codec.decode_list`` reads it).
        """
        partials = [v for k, v in records if forwardable(k)]
        if partials:
            await self.send_many("aggregates", [(cluster, b"[" + b",".join(partials) + b"]")])
