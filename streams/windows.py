"""Event-time windows of one node's series: 1-minute tumbling panes and 5-minute hops built from them.

The state lives in :class:`streams.pipeline.NodeState` (one Faust table entry
per node, keyed like kubepulse.metrics.v1, so it is co-partitioned with its
input); ``streams.pipeline`` feeds samples in and publishes what closes here
to kubepulse.rollups.v1.

A pane is ``[start, start + 60 s)`` on the sample timestamp. Panes close when
the node's event time (the newest scrape seen) passes their end plus
``window_grace_s``; a sample for a closed pane is dropped and counted. When a
pane closes it is published as the ``1m`` window, and the ``5m`` window that
ends with it (hop 1 minute) is the merge of that pane and the four before it,
so each sample is aggregated once, not five times.
"""

from __future__ import annotations

from datetime import UTC, datetime

from models.records import Rollup
from models.series import split_series_id

__all__ = ["PANE_S", "HOP_PANES", "Windows", "Agg", "level_of", "rollup"]

PANE_S = 60
HOP_PANES = 5
"""Panes in the hopping window: 5 one-minute panes make the 5-minute window."""

Agg = list  # [min, max, sum, count, last, last_ts]: a list, because it is updated in place per sample


def level_of(metric: str) -> str:
    """The Rollup level of a metric name (aggregates are named by their level, see streams.pipeline)."""
    if metric.startswith("workload."):
        return "workload"
    if metric.startswith("namespace."):
        return "namespace"
    if metric.startswith("node.pods_"):
        return "node"
    return "series"


def rollup(sid: str, agg: Agg, *, window: str, start: int, end: int, node: str, workloads: dict[str, str]) -> Rollup:
    """The Rollup record of one series' aggregate over ``[start, end)``."""
    cluster, namespace, pod, container, metric = split_series_id(sid)
    level = level_of(metric)
    workload = None
    if level == "workload":
        workload, pod = pod.removeprefix("workload:"), "-"
    elif level == "series" and pod != "-" and not pod.startswith("node:"):
        workload = workloads.get(f"{cluster}/{namespace}/{pod}/")
    mn, mx, total, count, last = agg[0], agg[1], agg[2], agg[3], agg[4]
    mean = total / count
    # Float summation can put the mean a hair outside [min, max]; clamp so it is exact where it should be.
    mean = mn if mean < mn else mx if mean > mx else mean
    return Rollup.model_construct(
        series_id=sid,
        level=level,
        cluster=cluster,
        node=node,
        namespace=None if namespace == "-" else namespace,
        workload=workload,
        pod=None if pod == "-" or pod.startswith("node:") else pod,
        container=None if container == "-" or container.startswith("node:") else container,
        metric=metric,
        window=window,
        window_start=datetime.fromtimestamp(start, UTC),
        window_end=datetime.fromtimestamp(end, UTC),
        min=mn,
        max=mx,
        mean=mean,
        last=last,
        sum=total,
        count=int(count),
        schema_version=1,
    )


def _merge(into: Agg | None, a: Agg) -> Agg:
    if into is None:
        return list(a)
    if a[0] < into[0]:
        into[0] = a[0]
    if a[1] > into[1]:
        into[1] = a[1]
    into[2] += a[2]
    into[3] += a[3]
    if a[5] >= into[5]:
        into[4], into[5] = a[4], a[5]
    return into


class Windows:
    """Open and recently closed panes of one node's series.

    >>> w = Windows(grace_s=0)
    >>> pane = w.pane_for(120.0)
    >>> Windows.add(pane, "c/-/node:n/-/node.cpu_cores", 1.0, 120.0)
    >>> Windows.add(w.pane_for(150.0), "c/-/node:n/-/node.cpu_cores", 3.0, 150.0)
    >>> [(r.window, r.min, r.max, r.mean, r.last, r.count) for r in w.advance(180.0, node="n")]
    [('1m', 1.0, 3.0, 2.0, 3.0, 2), ('5m', 1.0, 3.0, 2.0, 3.0, 2)]
    >>> w.pane_for(170.0) is None     # its pane closed: a late sample
    True
    """

    __slots__ = ("grace_s", "open", "closed", "closed_through", "event_time", "workloads")

    def __init__(self, *, grace_s: float) -> None:
        self.grace_s = grace_s
        self.open: dict[int, dict[str, Agg]] = {}
        self.closed: dict[int, dict[str, Agg]] = {}
        """The last HOP_PANES - 1 closed panes: the rest of the next 5-minute windows."""
        self.closed_through = 0
        """End (epoch s) of the newest closed pane: a sample before it is late."""
        self.event_time = 0.0
        self.workloads: dict[str, str] = {}
        """Pod series prefix to workload name, for the rollups' ``workload`` field."""

    def pane_for(self, ts: float) -> dict[str, Agg] | None:
        """The open pane a sample at ``ts`` goes to, or None when that pane has closed (late)."""
        start = int(ts // PANE_S) * PANE_S
        if start < self.closed_through:
            return None
        pane = self.open.get(start)
        if pane is None:
            pane = self.open[start] = {}
        return pane

    @staticmethod
    def add(pane: dict[str, Agg], sid: str, v: float, ts: float) -> None:
        a = pane.get(sid)
        if a is None:
            pane[sid] = [v, v, v, 1, v, ts]
            return
        if v < a[0]:
            a[0] = v
        if v > a[1]:
            a[1] = v
        a[2] += v
        a[3] += 1
        if ts >= a[5]:
            a[4] = v
            a[5] = ts

    def advance(self, ts: float, *, node: str) -> list[Rollup]:
        """Move the node's event time to ``ts`` and return the rollups of the panes that closed."""
        if ts > self.event_time:
            self.event_time = ts
        horizon = self.event_time - self.grace_s
        out: list[Rollup] = []
        for start in sorted(s for s in self.open if s + PANE_S <= horizon):
            pane = self.open.pop(start)
            end = start + PANE_S
            self.closed_through = max(self.closed_through, end)
            for sid, a in pane.items():
                out.append(rollup(sid, a, window="1m", start=start, end=end, node=node, workloads=self.workloads))
            hop_start = end - HOP_PANES * PANE_S
            merged: dict[str, Agg] = {}
            for s in sorted(self.closed):
                if s >= hop_start:
                    for sid, a in self.closed[s].items():
                        merged[sid] = _merge(merged.get(sid), a)
            for sid, a in pane.items():
                merged[sid] = _merge(merged.get(sid), a)
            for sid, a in merged.items():
                out.append(rollup(sid, a, window="5m", start=hop_start, end=end, node=node, workloads=self.workloads))
            self.closed[start] = pane
            for s in [s for s in self.closed if s <= end - HOP_PANES * PANE_S]:
                del self.closed[s]
        return out
