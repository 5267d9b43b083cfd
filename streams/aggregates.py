"""Reads the internal kubepulse.aggregates-repartition.v1, writes kubepulse.rollups.v2: cluster-wide sums.

Each node's windows (``streams.pipeline``) also sum its pods per workload and
per namespace, as entities that never leave the worker
(``c/ns/workload:W/node:N``, ``c/ns/-/node:N``, metrics
``models.series.AGGREGATE_METRICS``). When a node's 1m or 1h window closes,
those partials and the node's own rollup travel, as one record (a JSON array
of EntityRollup) keyed by cluster, over the internal repartition topic
(:meth:`Aggregates.forward`): rollups are keyed by entity, so one cluster's
partials are spread over partitions, and re-keying brings them to one
partition, hence one worker. ``aggregate_clusters`` (in every worker, same
consumer group) sums them into::

    c/ns/workload:W/-   kind workload     workload.cpu_cores, ... workload.pods
    c/ns/-/-            kind namespace    namespace.cpu_cores, ...
    c/-/-/-             kind cluster      cluster.cpu_cores (the pods' use), requests, limits, pods, nodes,
                                          allocatable, and the pods' use as a share of allocatable

Semantics of a summed window (per target, window and start, over the node
partials that arrived): ``mean``, ``last`` and ``sum`` are the sums of the
nodes' values, which is exact for ``sum`` and ``last`` and, for ``mean``,
equals the mean of the cluster total when the nodes scrape at the same
cadence. Per-scrape cluster totals do not exist (nodes scrape independently),
so ``min``/``max`` are the sums of the nodes' minima/maxima: bounds of the
total, not its attained extremes. ``count`` is the number of node partials.
A cluster share divides the pods' use by the cluster's allocatable (the sum
of the nodes' mean allocatable in the window).

When a window is complete. One node's partials arrive in window order (one
worker publishes them, in order, to one partition). The aggregator keeps,
per cluster and node, the newest 1m window start it got (the node's
progress; its 1h partial of an hour comes in the same record as its last
1m partial of that hour, or earlier). A window ``[start, end)`` closes, and
is published once, when every node that carries the cluster is at or past
``end``; a node that stops sending would hold it forever, so it also closes
once the newest node is ``_STALLED_WINDOWS`` minutes further, and a cluster
that stops sending altogether is flushed by its partition's clock. A partial
for a closed window is dropped and counted (``late``); a node's second
partial for one target of one window (the replay of its scrapes after a crash
re-sends them, byte for byte) is ignored. Given the order partials arrive in,
the outputs are deterministic.

State. Each cluster's progress and open windows are entries of the table
``cluster_to_aggregates`` keyed by cluster (a header, and one entry per
namespace holding its workloads' and its own open sums, so a cluster of
thousands of workloads stays in small records), checkpointed like every
keyed state (``streams._state``).
"""

from __future__ import annotations

import logging
import pickle
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from models.codec import decode_list, encode
from models.errors import RecordError
from models.records import EntityRollup, MetricStats
from streams import _metrics as M
from streams._runtime import Runtime
from streams._state import CHUNK_SEP, Checkpointer, KeyedState
from streams.topics import AGGREGATES_REPARTITION
from streams.windows import HOUR_S, PANE_S

__all__ = ["Aggregates", "ClusterAggregator"]

log = logging.getLogger(__name__)

_STATE_VERSION = 2
_STALLED_WINDOWS = 5
"""A node this many minutes behind the cluster's newest no longer holds the cluster's windows open."""
_LENGTH = {"1m": PANE_S, "1h": HOUR_S}

_CLUSTER_OF_NODE = {
    "node.pods_cpu_cores": "cluster.cpu_cores",
    "node.pods_memory_working_set_bytes": "cluster.memory_working_set_bytes",
    "node.pods_cpu_request_cores": "cluster.cpu_request_cores",
    "node.pods_cpu_limit_cores": "cluster.cpu_limit_cores",
    "node.pods_memory_request_bytes": "cluster.memory_request_bytes",
    "node.pods_memory_limit_bytes": "cluster.memory_limit_bytes",
    "node.pods": "cluster.pods",
    "node.cpu_allocatable_cores": "cluster.cpu_allocatable_cores",
    "node.memory_allocatable_bytes": "cluster.memory_allocatable_bytes",
}
"""What of a node's rollup adds up to its cluster's."""
_CLUSTER_SHARES = (("cluster.cpu_allocatable_share", "cluster.cpu_cores", "cluster.cpu_allocatable_cores"),
                   ("cluster.memory_allocatable_share", "cluster.memory_working_set_bytes",
                    "cluster.memory_allocatable_bytes"))

Stats = list[float]
"""``[min, max, mean, last, sum, count]`` of a summed metric."""


class _Window:
    """The open sums of one cluster window: target entity → metric → stats, and who has contributed."""

    __slots__ = ("targets", "nodes")

    def __init__(self) -> None:
        self.targets: dict[str, dict[str, Stats]] = {}
        self.nodes: dict[str, set[str]] = defaultdict(set)
        """Target → the nodes whose partial is in (a replayed partial is ignored)."""


def _target(r: EntityRollup) -> tuple[str, str, dict[str, str]] | None:
    """``(entity id, namespace chunk, metric renames)`` of the cluster-wide entity a node partial adds to."""
    if r.kind == "workload" and r.namespace and r.workload:
        return f"{r.cluster}/{r.namespace}/workload:{r.workload}/-", r.namespace, {}
    if r.kind == "namespace" and r.namespace:
        return f"{r.cluster}/{r.namespace}/-/-", r.namespace, {}
    if r.kind == "node":
        return f"{r.cluster}/-/-/-", "", _CLUSTER_OF_NODE
    return None


class ClusterAggregator:
    """Sums the node partials of one cluster per window; returns the records of the windows that close.

    >>> from datetime import timedelta
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> def part(node, minute, v):
    ...     s = t0 + timedelta(minutes=minute)
    ...     st = MetricStats(min=v, max=v, mean=v, last=v, sum=2 * v, count=2)
    ...     return EntityRollup(entity_id=f"c/ns/-/node:{node}", kind="namespace", cluster="c", node=node,
    ...                         namespace="ns", window="1m", window_start=s, window_end=s + timedelta(minutes=1),
    ...                         metrics={"namespace.cpu_cores": st})
    >>> agg = ClusterAggregator("c", grace_s=0)
    >>> agg.add(part("a", 0, 1.0)) + agg.add(part("b", 0, 2.0)) + agg.add(part("a", 1, 1.0))
    []
    >>> [(r.entity_id, r.metrics["namespace.cpu_cores"].mean, r.metrics["namespace.cpu_cores"].count)
    ...  for r in agg.add(part("b", 1, 2.0))]
    [('c/ns/-/-', 3.0, 2)]
    >>> agg.add(part("b", 0, 5.0)), agg.late
    ([], 1)
    """

    def __init__(self, cluster: str, *, grace_s: float) -> None:
        self.cluster = cluster
        self.grace_s = grace_s
        self.offset = -1
        """Offset of the last repartition record applied (a replayed one at or below it is skipped)."""
        self.newest_end = 0.0
        """Newest partial's window end (epoch s): the cluster's event time, to find a cluster gone silent."""
        self.progress: dict[str, int] = {}
        """Node → the newest 1m window start it delivered (or, from an hour, that hour's last minute)."""
        self.windows: dict[tuple[str, int], _Window] = {}
        """(window, start) → open sums."""
        self.closed_through: dict[str, int] = {}
        """Window kind → start of the newest window closed."""
        self.late = 0
        self.dirty: set[str] = set()
        """Namespace chunks ('' is the cluster's own) changed since the last :meth:`chunks`."""

    # -- input -------------------------------------------------------------------

    def add(self, r: EntityRollup) -> list[EntityRollup]:
        """Fold one node partial in; return the records of the windows it completes."""
        node = r.node
        target = _target(r)
        if node is None or target is None:
            return []
        start = int(r.window_start.timestamp())
        self.newest_end = max(self.newest_end, r.window_end.timestamp())
        # A node's 1h partial comes with (or after) its last 1m partial of that hour: it is that far too.
        reached = start if r.window == "1m" else int(r.window_end.timestamp()) - PANE_S
        if reached > self.progress.get(node, -1):
            self.progress[node] = reached
        if start <= self.closed_through.get(r.window, -(1 << 62)):
            self.late += 1
            log.info("partial %s of %s@%s arrived after its cluster window closed (late, or a replay): dropped",
                     r.entity_id, r.window, r.window_start.isoformat())
            return self._due()
        eid, chunk, renames = target
        w = self.windows.get((r.window, start))
        if w is None:
            w = self.windows[(r.window, start)] = _Window()
        if node not in w.nodes[eid]:
            w.nodes[eid].add(node)
            sums = w.targets.setdefault(eid, {})
            for metric, st in r.metrics.items():
                metric = renames.get(metric, metric) if renames else metric
                if renames and not metric.startswith("cluster."):
                    continue
                acc = sums.get(metric)
                if acc is None:
                    sums[metric] = [st.min, st.max, st.mean, st.last, st.sum, 1.0]
                else:
                    acc[0] += st.min
                    acc[1] += st.max
                    acc[2] += st.mean
                    acc[3] += st.last
                    acc[4] += st.sum
                    acc[5] += 1.0
            if renames:
                nodes = sums.setdefault("cluster.nodes", [0.0] * 6)
                for i in range(6):
                    nodes[i] += 1.0
            self.dirty.add(chunk)
        return self._due()

    def _due(self) -> list[EntityRollup]:
        if not self.progress:
            return []
        low, high = min(self.progress.values()), max(self.progress.values())
        out: list[EntityRollup] = []
        for window, start in sorted(self.windows, key=lambda k: (k[1] + _LENGTH[k[0]], k[0])):
            end = start + _LENGTH[window]
            if low >= end or high >= end + _STALLED_WINDOWS * PANE_S:
                out += self._close(window, start)
        return out

    def flush(self) -> list[EntityRollup]:
        """Close every open window now (the cluster went silent): the records, in window order."""
        out: list[EntityRollup] = []
        for window, start in sorted(self.windows, key=lambda k: (k[1] + _LENGTH[k[0]], k[0])):
            out += self._close(window, start)
        return out

    def _close(self, window: str, start: int) -> list[EntityRollup]:
        w = self.windows.pop((window, start))
        self.closed_through[window] = max(start, self.closed_through.get(window, start))
        self.dirty.update(_chunk_of(eid) for eid in w.targets)
        begin = datetime.fromtimestamp(start, UTC)
        end = datetime.fromtimestamp(start + _LENGTH[window], UTC)
        out = []
        for eid, sums in sorted(w.targets.items()):
            if eid.endswith("/-/-/-"):
                for share, usage, alloc in _CLUSTER_SHARES:
                    if usage in sums and sums.get(alloc, [0.0] * 6)[2] > 0:
                        a = sums[alloc][2]
                        u = sums[usage]
                        sums[share] = [u[0] / a, u[1] / a, u[2] / a, u[3] / a, u[4] / a, u[5]]
            _, ns, pod, _ = eid.split("/", 3)
            kind = "cluster" if ns == "-" else "namespace" if pod == "-" else "workload"
            metrics = {m: _stats(v) for m, v in sorted(sums.items())}
            out.append(EntityRollup.model_construct(
                entity_id=eid, kind=kind, cluster=self.cluster, node=None,
                namespace=None if ns == "-" else ns, workload=pod.removeprefix("workload:") if kind == "workload" else None,
                workload_kind=None, pod=None, container=None, volume=None, persistentvolumeclaim=None, interface=None,
                window=window, window_start=begin, window_end=end, metrics=metrics, schema_version=2))
        return out

    # -- persistence ---------------------------------------------------------------

    def chunks(self, *, everything: bool = False) -> list[tuple[bytes, bytes | None]]:
        """Table entries that changed: one per namespace (its targets' open sums), the header last."""
        key = self.cluster.encode()
        by_chunk: dict[str, dict[tuple[str, int], tuple[dict, dict]]] = defaultdict(dict)
        for wk, w in self.windows.items():
            for eid, sums in w.targets.items():
                c = _chunk_of(eid)
                if everything or c in self.dirty:
                    t, n = by_chunk[c].setdefault(wk, ({}, {}))
                    t[eid] = sums
                    n[eid] = w.nodes[eid]
        out: list[tuple[bytes, bytes | None]] = []
        for c in sorted(self.dirty | set(by_chunk)):
            data = by_chunk.get(c)
            out.append((key + CHUNK_SEP + c.encode(),
                        pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL) if data else None))
        self.dirty.clear()
        out.append((key, pickle.dumps((_STATE_VERSION, self.cluster, self.grace_s, self.offset, self.newest_end,
                                       self.progress, self.closed_through, self.late, sorted(self.windows)),
                                      protocol=pickle.HIGHEST_PROTOCOL)))
        return out

    @classmethod
    def loads(cls, header: bytes, entries: list[bytes]) -> ClusterAggregator:
        t = pickle.loads(header)  # our own changelog, never foreign input
        if t[0] != _STATE_VERSION:
            raise ValueError(f"aggregates state version {t[0]}, expected {_STATE_VERSION}")
        _, cluster, grace, offset, newest_end, progress, closed_through, late, open_ = t
        agg = cls(cluster, grace_s=grace)
        agg.offset, agg.newest_end, agg.progress, agg.closed_through, agg.late = (offset, newest_end, progress,
                                                                                  closed_through, late)
        agg.windows = {tuple(wk): _Window() for wk in open_}
        for raw in entries:
            for wk, (targets, nodes) in pickle.loads(raw).items():
                w = agg.windows.get(tuple(wk))
                if w is None:
                    continue  # closed after this entry was written (the header is newer)
                w.targets.update(targets)
                for eid, ns in nodes.items():
                    w.nodes[eid] = set(ns)
        return agg


def _chunk_of(eid: str) -> str:
    ns = eid.split("/", 2)[1]
    return "" if ns == "-" else ns


def _stats(v: Stats) -> MetricStats:
    mn, mx, mean = v[0], v[1], v[2]
    # Float sums can put the mean a hair outside [min, max]: clamp, as streams.windows does.
    return MetricStats.model_construct(min=mn, max=mx, mean=min(max(mean, mn), mx), last=v[3], sum=v[4],
                                       count=int(v[5]))


class Aggregates:
    """The worker's side of the cluster sums: :meth:`forward` the node partials, and the ``aggregate_clusters`` agent."""

    def __init__(self, rt: Runtime, cp: Checkpointer) -> None:
        s = rt.settings.streams
        self.rt = rt
        self.topic = rt.topic(AGGREGATES_REPARTITION, internal=True)
        self.name = self.topic.get_topic_name()
        grace = s.window_grace_s
        state = cp.register(self.name, KeyedState(
            rt.table("cluster_to_aggregates"), name="cluster_to_aggregates", step_s=PANE_S,
            load=lambda key, header, entries: ClusterAggregator.loads(header, entries),
            new=lambda key: ClusterAggregator(key.decode(), grace_s=grace)))

        def publish(records: list[EntityRollup]) -> None:
            if records:
                rt.send_many("rollups", [(r.entity_id, encode(r)) for r in records])

        def flush_silent(p: int, offset: int) -> None:
            """Close the windows of the clusters of partition ``p`` that sent nothing for ``rules_stale_after_s``."""
            now = state.clocks.time[p]
            for key in sorted(state.keys(p)):
                agg: ClusterAggregator = state.get(key, p)
                idle = now - agg.newest_end
                if idle < s.rules_stale_after_s:
                    continue
                if idle >= s.node_state_ttl_s:
                    state.forget(key, p)
                    continue
                out = agg.flush()
                if out:
                    M.SILENT_TICKS.labels(state.name).inc()
                    state.touch(key, p, offset)
                    publish(out)

        def handle(msg: Any) -> None:
            key, p = msg.key or b"", msg.partition
            agg: ClusterAggregator = state.get(key, p)
            if msg.offset <= agg.offset:
                M.DUPLICATES_SUPPRESSED.labels("input").inc()
                return
            agg.offset = msg.offset
            state.touch(key, p, msg.offset)
            try:
                partials = decode_list(EntityRollup, msg.value)
            except RecordError as exc:
                rt.dead_letter(exc, stage="decode", message=msg)
                return
            for r in partials:
                publish(agg.add(r))
            if partials and state.clocks.advance(p, max(r.window_end for r in partials).timestamp()):
                flush_silent(p, msg.offset)

        self.agent = cp.agent(self.topic, name="aggregate_clusters", stage="aggregates", handle=handle,
                              doc="Repartitioned node partials → cluster-wide rollups on kubepulse.rollups.v2.")

    def forward(self, cluster: str, partials: list[bytes]) -> None:
        """Queue one node's closed partials (and its node rollup) for its cluster, as one JSON-array record."""
        self.rt.outbox.put(self.name, [(cluster, b"[" + b",".join(partials) + b"]")])
