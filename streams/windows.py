"""Event-time windows of one node's series: 1-minute and 1-hour tumbling windows, closed into per-entity rollups.

The windows live in :class:`streams.pipeline.NodeState` (one node, keyed like
kubepulse.metrics.v1, so co-partitioned with its input); ``streams.pipeline``
folds each scrape in and publishes what closes here to kubepulse.rollups.v2,
one :class:`~models.records.EntityRollup` per entity and window.

A 1-minute pane is ``[start, start + 60 s)`` on the sample timestamp. It
closes when the node's event time (the newest scrape seen) passes its end
plus ``window_grace_s``; a sample for a closed pane is late (dropped and
counted). A closing pane is published as the ``1m`` window and merged into
its hour's accumulator; an hour closes, and is published as the ``1h``
window, once the event time passes its end plus the grace (then every pane of
it has closed), so each sample is aggregated once for each window, and a node
silent for the last minutes of an hour still gets its hour published.

Layout, and why. A node has up to tens of thousands of windowed series and a
scrape touches nearly all of them, so the panes are columnar: every series
has a *slot* (an index, assigned by the pipeline's layout, one contiguous range
per entity), and a pane is one ``(6, capacity)`` float64 array whose rows are
min, max, sum, count, last and the last sample's time. A scrape is folded in
with a few whole-array operations, NaN standing for "no sample"; a pane costs
48 bytes per series. State written to the changelog is cut per slot range
(:meth:`Windows.chunk`), so a pod's windows travel with the rest of its state.

A closed window comes out as ready-to-send ``(entity id, JSON bytes)`` pairs,
byte-identical to ``models.codec.encode`` of the record :func:`rollups_of`
decodes them to: the JSON head of each entity (ids and names) is built once
per layout, not once per window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import numpy as np
import orjson

from models.records import EntityRollup

__all__ = ["PANE_S", "HOUR_S", "EntitySlots", "Windows", "rollups_of", "stats_json"]

PANE_S = 60
HOUR_S = 3600

MIN, MAX, SUM, COUNT, LAST, LAST_TS = range(6)
"""Rows of a pane array."""

_EMPTY = np.array([math.inf, -math.inf, 0.0, 0.0, math.nan, -math.inf])
"""A slot with no sample yet: min/max start at +-inf so the first sample wins both."""


class EntitySlots:
    """Where one entity's windowed series sit in its node's panes, and the JSON its rollups start with.

    ``head`` is the record's JSON up to (not including) ``window``: ``{"schema_version":2,...,"interface":null``;
    ``keys[i]`` is ``"metric name":`` of slot ``lo + i``, pre-encoded.
    """

    __slots__ = ("entity_id", "head", "lo", "keys")

    def __init__(self, entity_id: str, identity: dict[str, object], lo: int, metrics: Sequence[str]) -> None:
        self.entity_id = entity_id
        self.head = orjson.dumps({"schema_version": 2, "entity_id": entity_id, **identity})[:-1]
        self.lo = lo
        self.keys = [orjson.dumps(m) + b":" for m in metrics]

    @property
    def hi(self) -> int:
        return self.lo + len(self.keys)


def _stamp(t: int) -> bytes:
    # pydantic writes an aware UTC datetime with whole seconds as ...:SSZ; window bounds are whole minutes.
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()


def _merge_into(m: np.ndarray, q: np.ndarray) -> None:
    """Fold pane ``q`` into the accumulator ``m`` (both ``(6, n)``), the newer pane second."""
    np.minimum(m[MIN], q[MIN], out=m[MIN])
    np.maximum(m[MAX], q[MAX], out=m[MAX])
    m[SUM] += q[SUM]
    m[COUNT] += q[COUNT]
    newer = q[LAST_TS] >= m[LAST_TS]
    m[LAST] = np.where(newer, q[LAST], m[LAST])
    m[LAST_TS] = np.where(newer, q[LAST_TS], m[LAST_TS])


def stats_json(pane: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """Slots with samples in ``pane`` and, for each, its ``{"min":..,"count":..}`` JSON.

    One orjson call formats every number exactly as pydantic's serializer does
    (shortest round-trip repr); the rows are then cut apart (numbers never
    contain "," or "]").

    >>> p = np.repeat(_EMPTY[:, None], 3, axis=1); p[:, 1] = [1.0, 3.0, 4.0, 2, 3.0, 9.0]
    >>> idx, js = stats_json(p)
    >>> idx.tolist(), js[0]
    ([1], b'{"min":1.0,"max":3.0,"mean":2.0,"last":3.0,"sum":4.0,"count":2}')
    """
    idx = np.flatnonzero(pane[COUNT] > 0)
    if not len(idx):
        return idx, []
    sub = pane[:, idx]
    mn, mx, total, cnt = sub[MIN], sub[MAX], sub[SUM], sub[COUNT]
    # Float summation can put the mean a hair outside [min, max]; clamp so it is exact where it should be.
    mean = np.minimum(np.maximum(total / cnt, mn), mx)
    rows = orjson.dumps(np.stack((mn, mx, mean, sub[LAST], total)).T.tolist())[2:-2].split(b"],[")
    out = []
    for row, c in zip(rows, cnt.astype(np.int64).tolist(), strict=True):
        a, b, m, last, sm = row.split(b",")
        out.append(b'{"min":%s,"max":%s,"mean":%s,"last":%s,"sum":%s,"count":%d}' % (a, b, m, last, sm, c))
    return idx, out


def emit(out: list[tuple[str, bytes]], pane: np.ndarray, layout: Iterable[EntitySlots], window: bytes, start: int,
         end: int) -> None:
    """Append one EntityRollup per entity of ``layout`` with a sample in ``pane`` (``[start, end)``)."""
    idx, stats = stats_json(pane)
    if not stats:
        return
    at = np.full(pane.shape[1], -1, dtype=np.int64)
    at[idx] = np.arange(len(idx))
    at_list = at.tolist()
    mid = b',"window":"%s","window_start":"%s","window_end":"%s","metrics":{' % (window, _stamp(start), _stamp(end))
    for ent in layout:
        lo = ent.lo
        parts = [key + stats[k] for key, k in zip(ent.keys, at_list[lo:lo + len(ent.keys)]) if k >= 0]
        if parts:
            out.append((ent.entity_id, ent.head + mid + b",".join(parts) + b"}}"))


class Windows:
    """Open 1-minute panes and 1-hour accumulators of one node's series.

    >>> w = Windows(grace_s=0)
    >>> ent = EntitySlots("c/-/node:n/-", {"kind": "node", "cluster": "c", "node": "n"}, 0, ["node.cpu_cores"])
    >>> w.ensure(1)
    >>> w.fold(3600.0, np.array([1.0])); w.fold(3615.0, np.array([3.0]))
    0
    0
    >>> [(r.window, r.metrics["node.cpu_cores"].mean) for r in rollups_of(w.advance(3660.0, [ent]))]
    [('1m', 2.0)]
    >>> w.fold(3650.0, np.array([9.0]))     # its pane closed: a late scrape
    1
    >>> [(r.window, r.metrics["node.cpu_cores"].count) for r in rollups_of(w.advance(7200.0, [ent]))]
    [('1h', 2)]
    """

    __slots__ = ("grace_s", "open", "hours", "closed_through", "event_time", "capacity")

    def __init__(self, *, grace_s: float) -> None:
        self.grace_s = grace_s
        self.open: dict[int, np.ndarray] = {}
        """Pane start (epoch s) -> ``(6, capacity)`` array."""
        self.hours: dict[int, np.ndarray] = {}
        """Hour start (epoch s) -> the merge of its closed panes."""
        self.closed_through = 0
        """End (epoch s) of the newest closed pane: a sample before it is late."""
        self.event_time = 0.0
        self.capacity = 0

    # -- slots -----------------------------------------------------------------

    def _empty(self, n: int) -> np.ndarray:
        return np.repeat(_EMPTY[:, None], n, axis=1)

    def ensure(self, n: int) -> None:
        """Make room for slots ``0 .. n-1`` (growing geometrically, so growth is amortised)."""
        if n <= self.capacity:
            return
        new_cap = max(64, self.capacity + self.capacity // 4, n + n // 8)
        extra = self._empty(new_cap - self.capacity)
        for arrays in (self.open, self.hours):
            for start, p in arrays.items():
                arrays[start] = np.concatenate((p, extra), axis=1)
        self.capacity = new_cap

    def relayout(self, source: np.ndarray) -> None:
        """Renumber the slots: new slot ``i`` holds what old slot ``source[i]`` held (-1: a new, empty slot)."""
        n = len(source)
        cap = max(64, n + n // 8)
        keep = source >= 0
        for arrays in (self.open, self.hours):
            for start, p in arrays.items():
                q = self._empty(cap)
                q[:, :n][:, keep] = p[:, source[keep]]
                arrays[start] = q
        self.capacity = cap

    # -- samples -----------------------------------------------------------------

    def is_late(self, ts: float) -> bool:
        """True when the pane of ``ts`` has closed: a sample at ``ts`` would be dropped."""
        return int(ts // PANE_S) * PANE_S < self.closed_through

    def fold(self, ts: float, values: np.ndarray) -> int:
        """Fold one scrape (``values[i]`` for slot ``i``, NaN for none) into its pane; the samples dropped as late."""
        n = len(values)
        ok = values == values
        start = int(ts // PANE_S) * PANE_S
        if start < self.closed_through:
            return int(ok.sum())
        self.ensure(n)
        pane = self.open.get(start)
        if pane is None:
            pane = self.open[start] = self._empty(self.capacity)
        p = pane[:, :n]
        np.fmin(p[MIN], values, out=p[MIN])
        np.fmax(p[MAX], values, out=p[MAX])
        every = bool(ok.all())
        p[SUM] += values if every else np.where(ok, values, 0.0)
        p[COUNT] += ok
        newer = ok & (p[LAST_TS] <= ts)
        if every and newer.all():
            p[LAST] = values
            p[LAST_TS] = ts
        else:  # missing samples, or a straggler within the grace that must not replace a later ``last``
            p[LAST][newer] = values[newer]
            p[LAST_TS][newer] = ts
        return 0

    # -- closing -------------------------------------------------------------------

    def advance(self, ts: float, layout: Sequence[EntitySlots]) -> list[tuple[str, bytes]]:
        """Move the node's event time to ``ts``; the rollups of the windows that closed, as (key, JSON) pairs."""
        if ts > self.event_time:
            self.event_time = ts
        horizon = self.event_time - self.grace_s
        out: list[tuple[str, bytes]] = []
        for start in sorted(s for s in self.open if s + PANE_S <= horizon):
            pane = self.open.pop(start)
            end = start + PANE_S
            self.closed_through = max(self.closed_through, end)
            emit(out, pane, layout, b"1m", start, end)
            hour = start - start % HOUR_S
            acc = self.hours.get(hour)
            if acc is None:
                acc = self.hours[hour] = pane
            else:
                _merge_into(acc, pane)
            if end == hour + HOUR_S:
                # The hour's last minute: the hour goes out now, before any later minute does, so whoever
                # reads these in order (the cluster sums) has a node's hour before its next minute.
                emit(out, self.hours.pop(hour), layout, b"1h", hour, end)
        for hour in sorted(h for h in self.hours if h + HOUR_S <= horizon):
            emit(out, self.hours.pop(hour), layout, b"1h", hour, hour + HOUR_S)
        return out

    @property
    def empty(self) -> bool:
        """Nothing open: no sample waits for a window to close."""
        return not self.open and not self.hours

    # -- persistence -----------------------------------------------------------------

    def chunk(self, lo: int, hi: int) -> tuple[dict[int, bytes], dict[int, bytes]]:
        """Slots ``lo .. hi-1`` of every open pane and hour, as raw float64 bytes (for a changelog entry)."""
        return ({s: p[:, lo:hi].tobytes() for s, p in self.open.items()},
                {s: p[:, lo:hi].tobytes() for s, p in self.hours.items()})

    def load_chunk(self, lo: int, hi: int, chunk: tuple[dict[int, bytes], dict[int, bytes]]) -> None:
        """Put a :meth:`chunk` back at slots ``lo .. hi-1``, but for windows this node has closed since.

        The node's header (event time, ``closed_through``) is written after its chunks, so a chunk is as
        new as the header or newer; a window it holds that the header says closed was published already.
        """
        self.ensure(hi)
        n = hi - lo
        panes, hours = chunk
        horizon = self.event_time - self.grace_s
        for arrays, saved, closed in ((self.open, panes, lambda s: s < self.closed_through),
                                      (self.hours, hours, lambda s: s + HOUR_S <= horizon)):
            for start, raw in saved.items():
                if closed(start):
                    continue
                a = arrays.get(start)
                if a is None:
                    a = arrays[start] = self._empty(self.capacity)
                a[:, lo:hi] = np.frombuffer(raw, dtype=np.float64).reshape(6, n)

    def header(self) -> tuple[float, int, float]:
        return (self.grace_s, self.closed_through, self.event_time)

    @classmethod
    def from_header(cls, header: tuple[float, int, float]) -> Windows:
        grace, closed_through, event_time = header
        w = cls(grace_s=grace)
        w.closed_through, w.event_time = closed_through, event_time
        return w


def rollups_of(records: Iterable[tuple[str, bytes]]) -> list[EntityRollup]:
    """Published ``(key, JSON)`` pairs as records (tests and tools; the worker sends the bytes)."""
    return [EntityRollup.model_validate_json(v) for _, v in records]
