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

Layout, and why. A node has about a thousand windowed series and a scrape
touches all of them, so the panes are columnar: each series has a *slot*
(``index``: series id -> slot, fixed for the node), and a pane is one
``(6, capacity)`` float64 array whose rows are min, max, sum, count, last and
the last sample's time. A scrape is folded in with a handful of vectorised
operations instead of a thousand dict updates, and a pane costs 48 bytes per
series instead of a list and six floats. Slots of series that stopped
reporting are reclaimed by :meth:`Windows.compact` once they are the majority.

A closed window comes out as ready-to-send ``(series id, JSON bytes)``
pairs, byte-identical to ``models.codec.encode`` of the :class:`Rollup` it
stands for (:func:`rollup` gives that record): the JSON head of each series
(its id, level, names) is built once per slot, not once per window.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import orjson

from models.records import Rollup
from models.series import split_series_id

__all__ = ["PANE_S", "HOP_PANES", "Windows", "level_of", "rollup"]

PANE_S = 60
HOP_PANES = 5
"""Panes in the hopping window: 5 one-minute panes make the 5-minute window."""

MIN, MAX, SUM, COUNT, LAST, LAST_TS = range(6)
"""Rows of a pane array."""

_EMPTY = np.array([math.inf, -math.inf, 0.0, 0.0, math.nan, -math.inf])
"""A slot with no sample yet: min/max start at +-inf so the first sample wins both."""


def level_of(metric: str) -> str:
    """The Rollup level of a metric name (aggregates are named by their level, see streams.pipeline)."""
    if metric.startswith("workload."):
        return "workload"
    if metric.startswith("namespace."):
        return "namespace"
    if metric.startswith("node.pods_"):
        return "node"
    return "series"


def _identity(sid: str, *, node: str, workloads: dict[str, str]) -> dict[str, object]:
    """The fields of a series' Rollup that do not change between windows, in the record's field order."""
    cluster, namespace, pod, container, metric = split_series_id(sid)
    level = level_of(metric)
    workload = None
    if level == "workload":
        workload, pod = pod.removeprefix("workload:"), "-"
    elif level == "series" and pod != "-" and not pod.startswith("node:"):
        workload = workloads.get(f"{cluster}/{namespace}/{pod}/")
    return {
        "schema_version": 1,
        "series_id": sid,
        "level": level,
        "cluster": cluster,
        "node": node,
        "namespace": None if namespace == "-" else namespace,
        "workload": workload,
        "pod": None if pod == "-" or pod.startswith("node:") else pod,
        "container": None if container == "-" or container.startswith("node:") else container,
        "metric": metric,
    }


def _mean(mn: float, mx: float, total: float, count: float) -> float:
    """The mean of an aggregate, as :meth:`Windows._emit` computes it (vectorised there)."""
    mean = total / count
    # Float summation can put the mean a hair outside [min, max]; clamp so it is exact where it should be.
    return mn if mean < mn else mx if mean > mx else mean


def rollup(sid: str, agg: list[float], *, window: str, start: int, end: int, node: str,
           workloads: dict[str, str]) -> Rollup:
    """The Rollup record of one series' aggregate ``[min, max, sum, count, last]`` over ``[start, end)``.

    >>> r = rollup("c/-/node:n/-/node.cpu_cores", [1.0, 3.0, 4.0, 2, 3.0], window="1m", start=60, end=120,
    ...            node="n", workloads={})
    >>> (r.level, r.pod, r.mean, r.count, r.window_end.isoformat())
    ('series', None, 2.0, 2, '1970-01-01T00:02:00+00:00')
    """
    mn, mx, total, count, last = (float(x) for x in agg[:5])
    return Rollup.model_construct(
        **_identity(sid, node=node, workloads=workloads),
        window=window,
        window_start=datetime.fromtimestamp(start, UTC),
        window_end=datetime.fromtimestamp(end, UTC),
        min=mn,
        max=mx,
        mean=_mean(mn, mx, total, count),
        last=last,
        sum=total,
        count=int(count),
    )


def _stamp(t: int) -> bytes:
    # pydantic writes an aware UTC datetime with whole seconds as ...:SSZ; window bounds are whole minutes.
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()


def _merge_into(m: np.ndarray, q: np.ndarray) -> None:
    """Fold pane ``q`` into the running merge ``m`` (both ``(6, n)``), the newer pane second."""
    np.minimum(m[MIN], q[MIN], out=m[MIN])
    np.maximum(m[MAX], q[MAX], out=m[MAX])
    m[SUM] += q[SUM]
    m[COUNT] += q[COUNT]
    newer = q[LAST_TS] >= m[LAST_TS]
    m[LAST] = np.where(newer, q[LAST], m[LAST])
    m[LAST_TS] = np.where(newer, q[LAST_TS], m[LAST_TS])


class Windows:
    """Open and recently closed panes of one node's series.

    >>> w = Windows(grace_s=0)
    >>> w.add(120.0, "c/-/node:n/-/node.cpu_cores", 1.0)
    True
    >>> w.add(150.0, "c/-/node:n/-/node.cpu_cores", 3.0)
    True
    >>> [(r.window, r.min, r.max, r.mean, r.last, r.count) for r in w.advance_records(180.0, node="n")]
    [('1m', 1.0, 3.0, 2.0, 3.0, 2), ('5m', 1.0, 3.0, 2.0, 3.0, 2)]
    >>> w.add(170.0, "c/-/node:n/-/node.cpu_cores", 2.0)     # its pane closed: a late sample
    False
    """

    __slots__ = ("grace_s", "open", "closed", "closed_through", "event_time", "workloads", "index", "sids", "heads",
                 "generation")

    def __init__(self, *, grace_s: float) -> None:
        self.grace_s = grace_s
        self.open: dict[int, np.ndarray] = {}
        """Pane start (epoch s) -> ``(6, capacity)`` array; every pane has the same capacity."""
        self.closed: dict[int, np.ndarray] = {}
        """The last HOP_PANES - 1 closed panes: the rest of the next 5-minute windows."""
        self.closed_through = 0
        """End (epoch s) of the newest closed pane: a sample before it is late."""
        self.event_time = 0.0
        self.workloads: dict[str, str] = {}
        """Pod series prefix to workload name, for the rollups' ``workload`` field."""
        self.index: dict[str, int] = {}
        self.sids: list[str] = []
        self.heads: list[bytes | None] = []
        """Per slot: the Rollup JSON up to and including ``metric`` (built when first published)."""
        self.generation = 0
        """Bumped when slots are renumbered (compaction): slot numbers cached elsewhere are then stale."""

    # -- slots ---------------------------------------------------------------

    @property
    def capacity(self) -> int:
        for p in self.open.values():
            return p.shape[1]
        for p in self.closed.values():
            return p.shape[1]
        return 0

    def slot(self, sid: str) -> int:
        """The slot of a series, allocated on first sight."""
        i = self.index.get(sid)
        if i is None:
            i = self.index[sid] = len(self.sids)
            self.sids.append(sid)
            self.heads.append(None)
        return i

    def _fit(self) -> None:
        """Grow every pane to hold every slot (geometrically, so growth is amortised)."""
        n = len(self.sids)
        cap = self.capacity
        if n <= cap:
            return
        new_cap = max(64, cap + cap // 4, n + n // 8)  # 1.25x: a node's slot count settles after its first scrape
        extra = np.repeat(_EMPTY[:, None], new_cap - cap, axis=1)
        for panes in (self.open, self.closed):
            for start, p in panes.items():
                panes[start] = np.concatenate((p, extra), axis=1)

    def _new_pane(self) -> np.ndarray:
        return np.repeat(_EMPTY[:, None], max(64, self.capacity, len(self.sids)), axis=1)

    def is_late(self, ts: float) -> bool:
        """True when the pane of ``ts`` has closed: a sample at ``ts`` would be dropped."""
        return int(ts // PANE_S) * PANE_S < self.closed_through

    def pane_for(self, ts: float) -> np.ndarray | None:
        """The open pane a sample at ``ts`` goes to, or None when that pane has closed (late)."""
        start = int(ts // PANE_S) * PANE_S
        if start < self.closed_through:
            return None
        pane = self.open.get(start)
        if pane is None:
            pane = self.open[start] = self._new_pane()
        return pane

    # -- samples -------------------------------------------------------------

    def add_many(self, ts: float, slots: np.ndarray, values: np.ndarray) -> int:
        """Fold one scrape's samples (distinct slots; NaN = no value) into their pane; returns how many were late."""
        ok = values == values
        if not ok.all():
            slots, values = slots[ok], values[ok]
        if not len(slots):
            return 0
        self._fit()
        pane = self.pane_for(ts)
        if pane is None:
            return len(slots)
        cur = pane[MIN, slots]
        pane[MIN, slots] = np.minimum(cur, values)
        pane[MAX, slots] = np.maximum(pane[MAX, slots], values)
        pane[SUM, slots] += values
        pane[COUNT, slots] += 1.0
        newer = pane[LAST_TS, slots] <= ts
        if newer.all():
            pane[LAST, slots] = values
            pane[LAST_TS, slots] = ts
        else:  # a straggler within the grace: it does not replace a later sample's ``last``
            pane[LAST, slots[newer]] = values[newer]
            pane[LAST_TS, slots[newer]] = ts
        return 0

    def add(self, ts: float, sid: str, v: float) -> bool:
        """Fold one sample in; False when it is late (its pane has closed)."""
        return not self.add_many(ts, np.array([self.slot(sid)], dtype=np.intp), np.array([v], dtype=float))

    # -- closing -------------------------------------------------------------

    def advance(self, ts: float, *, node: str) -> list[tuple[str, bytes]]:
        """Move the node's event time to ``ts``; the rollups of the panes that closed, as (key, JSON) pairs."""
        if ts > self.event_time:
            self.event_time = ts
        horizon = self.event_time - self.grace_s
        due = sorted(s for s in self.open if s + PANE_S <= horizon)
        if not due:
            return []
        out: list[tuple[str, bytes]] = []
        for start in due:
            pane = self.open.pop(start)
            end = start + PANE_S
            self.closed_through = max(self.closed_through, end)
            self._emit(out, pane, b"1m", start, end, node)
            hop_start = end - HOP_PANES * PANE_S
            merged: np.ndarray | None = None
            for s in sorted(self.closed):
                if s >= hop_start:
                    if merged is None:
                        merged = self.closed[s].copy()
                    else:
                        _merge_into(merged, self.closed[s])
            if merged is None:
                merged = pane
            else:
                _merge_into(merged, pane)
            self._emit(out, merged, b"5m", hop_start, end, node)
            self.closed[start] = pane
            for s in [s for s in self.closed if s <= end - HOP_PANES * PANE_S]:
                del self.closed[s]
        self._maybe_compact()
        return out

    def advance_records(self, ts: float, *, node: str) -> list[Rollup]:
        """:meth:`advance` as Rollup records (tests, tools; the worker sends the bytes)."""
        return [Rollup.model_validate_json(v) for _, v in self.advance(ts, node=node)]

    def _emit(self, out: list[tuple[str, bytes]], pane: np.ndarray, window: bytes, start: int, end: int,
              node: str) -> None:
        idx = np.flatnonzero(pane[COUNT] > 0)
        if not len(idx):
            return
        sub = pane[:, idx]
        mn, mx, total, cnt = sub[MIN], sub[MAX], sub[SUM], sub[COUNT]
        # Float summation can put the mean a hair outside [min, max]; clamp so it is exact where it should be.
        mean = np.minimum(np.maximum(total / cnt, mn), mx)
        # One orjson call formats every number of the window exactly as pydantic's serializer does
        # (shortest round-trip repr); the rows are then cut apart. Numbers never contain "," or "]".
        rows = orjson.dumps(np.stack((mn, mx, mean, sub[LAST], total)).T.tolist())[2:-2].split(b"],[")
        counts = cnt.astype(np.int64).tolist()
        mid = b',"window":"%s","window_start":"%s","window_end":"%s","min":' % (window, _stamp(start), _stamp(end))
        heads, sids, dumps, workloads = self.heads, self.sids, orjson.dumps, self.workloads
        for i, row, c in zip(idx.tolist(), rows, counts, strict=True):
            head = heads[i]
            if head is None:
                head = heads[i] = dumps(_identity(sids[i], node=node, workloads=workloads))[:-1]
            a, b, m, last, sm = row.split(b",")
            out.append((sids[i], b'%s%s%s,"max":%s,"mean":%s,"last":%s,"sum":%s,"count":%d}'
                        % (head, mid, a, b, m, last, sm, c)))

    # -- housekeeping ----------------------------------------------------------

    def _maybe_compact(self) -> None:
        n = len(self.sids)
        if n < 1024:
            return
        live = np.zeros(self.capacity, dtype=bool)
        for panes in (self.open, self.closed):
            for p in panes.values():
                live |= p[COUNT] > 0
        if int(live[:n].sum()) * 2 < n:
            self.compact(live[:n])

    def compact(self, live: np.ndarray | None = None) -> None:
        """Drop the slots of series with no sample in any retained pane and renumber the rest."""
        n = len(self.sids)
        if live is None:
            live = np.zeros(n, dtype=bool)
            for panes in (self.open, self.closed):
                for p in panes.values():
                    live |= p[COUNT, :n] > 0
        keep = np.flatnonzero(live)
        self.sids = [self.sids[i] for i in keep.tolist()]
        self.heads = [self.heads[i] for i in keep.tolist()]
        self.index = {sid: i for i, sid in enumerate(self.sids)}
        cap = max(64, len(self.sids))
        for panes in (self.open, self.closed):
            for start, p in panes.items():
                q = np.repeat(_EMPTY[:, None], cap, axis=1)
                q[:, : len(keep)] = p[:, keep]
                panes[start] = q
        self.generation += 1

    # -- persistence -----------------------------------------------------------

    def to_state(self) -> tuple:
        """Plain data for a pickle: panes trimmed to the used slots."""
        n = len(self.sids)
        return (self.grace_s, self.sids, {s: p[:, :n] for s, p in self.open.items()},
                {s: p[:, :n] for s, p in self.closed.items()}, self.closed_through, self.event_time,
                self.workloads)

    @classmethod
    def from_state(cls, state: tuple) -> Windows:
        grace, sids, w_open, w_closed, closed_through, event_time, workloads = state
        w = cls(grace_s=grace)
        w.sids = list(sids)
        w.index = {sid: i for i, sid in enumerate(w.sids)}
        w.heads = [None] * len(w.sids)
        w.open, w.closed = dict(w_open), dict(w_closed)
        w.closed_through, w.event_time, w.workloads = closed_through, event_time, workloads
        # Loaded panes have exactly len(sids) columns; make them one capacity again.
        cap = max(64, len(w.sids))
        for panes in (w.open, w.closed):
            for start, p in panes.items():
                q = np.repeat(_EMPTY[:, None], cap, axis=1)
                q[:, : p.shape[1]] = p
                panes[start] = q
        return w

    @classmethod
    def from_dict_panes(cls, *, grace_s: float, w_open: dict, w_closed: dict, closed_through: int,
                        event_time: float, workloads: dict[str, str]) -> Windows:
        """Windows from the earlier layout (``{start: {sid: [min, max, sum, count, last, last_ts]}}``)."""
        w = cls(grace_s=grace_s)
        w.closed_through, w.event_time, w.workloads = closed_through, event_time, workloads
        for panes_in, panes_out in ((w_open, w.open), (w_closed, w.closed)):
            for start, pane in panes_in.items():
                for sid in pane:
                    w.slot(sid)
                w._fit()
                p = panes_out[start] = w._new_pane()
                w._fit()
                for sid, a in pane.items():
                    p[:, w.index[sid]] = [float(x) for x in a[:6]]
        w._fit()
        return w
