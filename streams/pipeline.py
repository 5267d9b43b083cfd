"""One pass over each node scrape: windows, anomaly scores and rules, with the node's state cut into small groups.

``streams.scrapes`` (the ``process_scrapes`` agent) reads kubepulse.metrics.v1
and calls :meth:`Pipeline.process` per scrape; what comes back goes to
kubepulse.rollups.v2 (per-entity rollups), kubepulse.anomalies.v1,
kubepulse.alerts.v1 and, for the cluster-wide sums, the internal
kubepulse.aggregates-repartition.v1.

Why one pass and one state object per node: a scrape carries thousands of
samples, so decoding it once and walking ``models.series.entities`` once is
what makes the throughput budget reachable, and keying the state by the
metrics topic's own key (``cluster/node``) keeps it co-partitioned with its
input.

Why groups. A node of 250 pods x 3 containers has ~20,000 windowed series; as
one changelog record its state would be megabytes, above a stock broker's
1 MiB limit. So a node's state is a :class:`Group` per pod (the pod, its
interfaces, volumes and containers: their window slots, detectors and rule
state) plus the node's own group (the node, its interfaces, and the per-node
partial sums of workloads and namespaces), each its own table entry of a few
kilobytes (:meth:`NodeState.chunks`). The node's header (event time, closed
windows, input offset) is written last in a checkpoint, after every group that
changed, and every group records the input offset it includes: a crash in the
middle of a checkpoint leaves groups newer than the header, never older, and
the replay applies each message only to the groups that do not hold it yet.
A pod that is gone is kept until its alerts went stale and its windows
closed, then its entry is deleted (a tombstone).

Why it is fast: a node's entities have the same shapes scrape after scrape, so
everything that depends only on a shape (which positions are windowed,
scored, selected by rules) is computed once per ``(kind, metric names)``, and
everything that depends on the node's entity set (slots, JSON heads) once per
layout change. Per scrape, windows take one vectorised fold
(``streams.windows``), detectors and rules run only on the samples they
select, and closed windows come out as ready-to-send JSON bytes.

Contract with the rule engine (``streams.rules.RuleEngine``): one
``RuleState`` per group. Entities, the group's anomalies and ``tick`` are
evaluated with ``state=`` that group's state. Transition times and
``sequence`` numbers come from the data, so a replay after a restart produces
the same transitions with the same numbers.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Protocol

import numpy as np

from models.records import AlertTransition, Anomaly, EntityRollup, KubeEvent, NodeScrape
from models.series import AGGREGATE_METRICS, METRICS, Entity, entities
from models.settings import Settings
from streams._rules.engine import observe_planned
from streams._state import CHUNK_SEP
from streams.scoring import anomaly, new_detector, scored_metric_names
from streams.windows import HOUR_S, PANE_S, EntitySlots, Windows

__all__ = ["Outputs", "NodeState", "Group", "Pipeline", "RuleEngineLike", "not_windowed", "windowed_metric_names",
           "CHUNK_SEP"]

_STATE_VERSION = 3
_NAN = math.nan
_second = itemgetter(1)
NODE_GROUP = ""
"""The id of the node's own group (the node, its interfaces, the per-node partial sums)."""

_ALWAYS_WINDOWED = frozenset(m for m in METRICS["node"] if m.startswith(("node.pods", "node.cpu_allocatable",
                                                                          "node.memory_allocatable")))


class RuleEngineLike(Protocol):
    """What the pipeline needs of ``streams.rules.RuleEngine`` (``entity_rules`` is optional: a faster path)."""

    def new_state(self) -> Any: ...
    def state_from_bytes(self, data: bytes) -> Any: ...
    def observe_entity(self, entity: Entity, ts: Any, *, state: Any = None) -> list[AlertTransition]: ...
    def observe_event(self, event: KubeEvent, *, state: Any = None) -> list[AlertTransition]: ...
    def observe_anomaly(self, anomaly: Anomaly, *, state: Any = None) -> list[AlertTransition]: ...
    def tick(self, now: Any, *, state: Any = None) -> list[AlertTransition]: ...


def not_windowed(metric: str) -> bool:
    """Metrics without rollups: counters (their rates are windowed), capacities and configured amounts."""
    if metric in _ALWAYS_WINDOWED:
        return False
    return metric.endswith(("_total", "capacity_bytes", "_limit_bytes", "_request_bytes", "inodes_free"))


def windowed_metric_names(selectors: Iterable[str] | None = None) -> frozenset[str]:
    """Full metric names that get rollups: ``selectors`` as in ``scored_metrics``, or (None) all but :func:`not_windowed`.

    The node's sums of its pods (``node.pods_*``) and its allocatable always do: capacity planning and the
    cluster-wide sums read them.

    >>> "pod.cpu_cores" in windowed_metric_names(), "pod.memory_page_faults_total" in windowed_metric_names()
    (True, False)
    >>> sorted(windowed_metric_names(["cpu_cores"]))[:3]
    ['container.cpu_cores', 'node.cpu_allocatable_cores', 'node.cpu_cores']
    """
    if selectors is None:
        return frozenset(m for names in METRICS.values() for m in names if not not_windowed(m))
    return scored_metric_names(selectors) | _ALWAYS_WINDOWED


# --------------------------------------------------------------------------
# Shapes, entities, groups
# --------------------------------------------------------------------------


class _Shape:
    """What depends only on an entity's kind and metric names: positions windowed, scored, and its rules."""

    __slots__ = ("names", "win", "win_names", "win_values", "scored", "rules")

    def __init__(self, names: tuple[str, ...], *, windowed: frozenset[str], scored: frozenset[str],
                 engine: Any) -> None:
        self.names = names
        self.win = tuple(j for j, m in enumerate(names) if m in windowed)
        self.win_names = tuple(names[j] for j in self.win)
        # The windowed values of an entity's value list in one C call (a tuple, also for one position).
        win = self.win
        self.win_values = itemgetter(*win) if len(win) > 1 else (lambda vs, j=win[0]: (vs[j],)) if win else None
        self.scored = tuple(j for j, m in enumerate(names) if m in scored)
        entity_rules = getattr(engine, "entity_rules", None)
        self.rules = entity_rules(names) if entity_rules is not None else None


_IDENTITY = ("kind", "cluster", "node", "namespace", "workload", "workload_kind", "pod", "container", "volume",
             "persistentvolumeclaim", "interface")
"""EntityRollup's identity fields, in the record's field order (the JSON head must match ``encode``)."""


def identity(kind: str, labels: dict[str, str]) -> dict[str, object]:
    """The identity fields of an entity's EntityRollup from its labels (``kind`` as in ``models.series``)."""
    out: dict[str, object] = {"kind": kind}
    for name in _IDENTITY[1:]:
        out[name] = labels.get(name) or None
    return out


class _Ent:
    """One entity of a group: kind, series prefix, labels, shape, first slot and its detectors."""

    __slots__ = ("kind", "prefix", "labels", "shape", "lo", "dets")

    def __init__(self, kind: str, prefix: str, labels: dict[str, str], shape: _Shape) -> None:
        self.kind = kind
        self.prefix = prefix
        self.labels = labels
        self.shape = shape
        self.lo = -1
        self.dets: list[Any] = [None] * len(shape.scored)


class Group:
    """A pod (with its interfaces, volumes and containers), or the node itself: one table entry of state.

    ``offset`` is the last input offset applied to it (a replayed message at or below it is skipped),
    ``last_ts`` the newest scrape it was in, ``rules`` its RuleState (bytes until the engine attaches it).
    """

    __slots__ = ("gid", "ents", "offset", "last_ts", "rules", "dirty")

    def __init__(self, gid: str) -> None:
        self.gid = gid
        self.ents: list[_Ent] = []
        self.offset = -1
        self.last_ts = 0.0
        self.rules: Any = None
        self.dirty = True

    @property
    def signature(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return tuple((e.prefix, e.shape.names) for e in self.ents)

    @property
    def width(self) -> int:
        return sum(len(e.shape.win) for e in self.ents)


class NodeState:
    """Everything the worker remembers about one node: its windows and its groups.

    ``offset`` (the header's) is the last input offset applied to every group; ``removed`` holds the
    ids of groups whose table entries must be deleted at the next checkpoint.
    """

    __slots__ = ("key", "cluster", "node", "offset", "last_ts", "windows", "groups", "layout", "partial_ids",
                 "width", "removed", "dirty")

    def __init__(self, key: str, *, grace_s: float) -> None:
        self.key = key
        self.cluster, _, self.node = key.partition("/")
        self.offset = -1
        self.last_ts = 0.0
        """Timestamp of the newest scrape scored: detectors learn in time order only."""
        self.windows = Windows(grace_s=grace_s)
        self.groups: dict[str, Group] = {}
        self.layout: list[EntitySlots] = []
        """Derived from the groups (slots, JSON heads): rebuilt when they change, never saved."""
        self.partial_ids: frozenset[str] = frozenset()
        self.width = 0
        """Slots in use (the layout's total)."""
        self.removed: set[str] = set()
        self.dirty = True

    # -- persistence -------------------------------------------------------------

    def chunk_key(self, gid: str) -> bytes:
        return self.key.encode() + CHUNK_SEP + gid.encode()

    def chunks(self, *, everything: bool = False) -> list[tuple[bytes, bytes | None]]:
        """The table entries that changed since the last call: groups first, the header last; None deletes one."""
        out: list[tuple[bytes, bytes | None]] = [(self.chunk_key(gid), None) for gid in sorted(self.removed)]
        for g in self.groups.values():
            if g.dirty or everything:
                out.append((self.chunk_key(g.gid), self._dump_group(g)))
                g.dirty = False
        self.removed.clear()
        out.append((self.key.encode(), pickle.dumps((_STATE_VERSION, self.key, self.offset, self.last_ts,
                                                     self.windows.header()), protocol=pickle.HIGHEST_PROTOCOL)))
        self.dirty = False
        return out

    def _dump_group(self, g: Group) -> bytes:
        ents = [(e.kind, e.prefix, e.labels, e.shape.names, [_det_bytes(d) for d in e.dets]) for e in g.ents]
        lo = g.ents[0].lo if g.ents else 0
        windows = self.windows.chunk(lo, lo + g.width)
        rules = g.rules.to_bytes() if hasattr(g.rules, "to_bytes") else g.rules
        return pickle.dumps((_STATE_VERSION, g.gid, g.offset, g.last_ts, ents, windows, rules),
                            protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def loads(cls, header: bytes, groups: Iterable[bytes], pipeline: Pipeline) -> NodeState:
        """A node from its header and its groups' entries (as :meth:`chunks` wrote them)."""
        version, key, offset, last_ts, wheader = pickle.loads(header)  # our own changelog, never foreign input
        if version != _STATE_VERSION:
            raise ValueError(f"node state version {version}, expected {_STATE_VERSION}")
        st = cls(key, grace_s=wheader[0])
        st.windows = Windows.from_header(wheader)
        st.offset, st.last_ts = offset, last_ts
        saved: list[tuple[Group, Any]] = []
        for raw in groups:
            version, gid, g_offset, g_last, ents, windows, rules = pickle.loads(raw)
            g = Group(gid)
            g.offset, g.last_ts, g.rules, g.dirty = g_offset, g_last, rules, False
            for kind, prefix, labels, names, dets in ents:
                e = _Ent(kind, prefix, labels, pipeline.shape(names))
                e.dets = [_det_loads(d) for d in dets] if len(dets) == len(e.dets) else e.dets
                g.ents.append(e)
            st.groups[gid] = g
            saved.append((g, windows))
        pipeline.relayout(st, fresh=True)
        for g, windows in saved:
            if g.ents:
                lo = g.ents[0].lo
                st.windows.load_chunk(lo, lo + g.width, windows)
        st.dirty = False
        return st


def _det_bytes(det: Any) -> bytes | None:
    if det is None:
        return None
    to_bytes = getattr(det, "to_bytes", None)
    return to_bytes() if to_bytes is not None else pickle.dumps(det, protocol=pickle.HIGHEST_PROTOCOL)


def _det_loads(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        from models.detectors import detector_from_bytes  # type: ignore[attr-defined]
    except ImportError:
        return pickle.loads(data)  # our own changelog, never foreign input
    return detector_from_bytes(data)


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------


class Outputs:
    """What one scrape (or tick) produced.

    ``rollup_records`` are ``(entity id, JSON bytes)`` pairs ready for
    kubepulse.rollups.v2; ``partials`` the node's closed windows for the
    cluster-wide sums (its node entity and its per-node workload and namespace
    partials); ``rollups`` gives the records, for tests and tools.
    """

    __slots__ = ("rollup_records", "partials", "anomalies", "transitions", "samples", "late_dropped", "replayed",
                 "changed")

    def __init__(self) -> None:
        self.rollup_records: list[tuple[str, bytes]] = []
        self.partials: list[bytes] = []
        self.anomalies: list[Anomaly] = []
        self.transitions: list[AlertTransition] = []
        self.samples = 0
        self.late_dropped = 0
        self.replayed = False
        self.changed = True
        """False only from :meth:`Pipeline.tick` when the node's state did not move (nothing to write)."""

    @property
    def rollups(self) -> list[EntityRollup]:
        return [EntityRollup.model_validate_json(v) for _, v in self.rollup_records]


# --------------------------------------------------------------------------
# Per-node partial sums of workloads and namespaces
# --------------------------------------------------------------------------

_PARTIAL_FIELDS = tuple(m.split(".", 1)[1] for m in AGGREGATE_METRICS["workload"])


def _partials(scrape: NodeScrape) -> Iterator[Entity]:
    """The node's share of each workload's and namespace's sums (``models.series.AGGREGATE_METRICS``).

    Entity ids carry the node in the container slot (``c/ns/workload:W/node:N``, ``c/ns/-/node:N``), so
    they never collide with a public entity; they travel only on the internal repartition topic.
    """
    c, n = scrape.cluster, scrape.node
    sums: dict[tuple[str, str], list[float | None]] = {}
    for p in scrape.pods:
        if p.phase in ("Succeeded", "Failed"):
            continue
        vals = (p.cpu_cores, p.memory_working_set_bytes, p.requests.cpu_cores, p.limits.cpu_cores,
                p.requests.memory_bytes, p.limits.memory_bytes, 1.0)
        keys = [(p.namespace, "")]
        if p.workload_name:
            keys.append((p.namespace, p.workload_name))
        for k in keys:
            acc = sums.get(k)
            if acc is None:
                acc = sums[k] = [None] * len(vals)
            for i, v in enumerate(vals):
                if v is not None:
                    acc[i] = v if acc[i] is None else acc[i] + v
    for (ns, wl), acc in sorted(sums.items()):
        level = "workload" if wl else "namespace"
        prefix = f"{c}/{ns}/workload:{wl}/node:{n}/" if wl else f"{c}/{ns}/-/node:{n}/"
        labels = {"cluster": c, "node": n, "namespace": ns}
        if wl:
            labels["workload"] = wl
        yield Entity(level, prefix, labels, [(f"{level}.{f}", v) for f, v in zip(_PARTIAL_FIELDS, acc, strict=True)])


def _group_entities(scrape: NodeScrape) -> Iterator[tuple[str, list[Entity]]]:
    """The scrape's entities cut into groups: the node's own first, then one per pod (``namespace/name``)."""
    gid = NODE_GROUP
    ents: list[Entity] = []
    for ent in entities(scrape):
        if ent.kind == "pod":
            yield gid, ents
            gid, ents = ent.prefix.split("/", 1)[1][:-3], []  # "c/ns/pod/-/" -> "ns/pod"
        ents.append(ent)
    yield gid, ents


# --------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------


class _Fold:
    """What one scrape adds to the node's windows: slot numbers, their values, and how many samples it held."""

    __slots__ = ("slots", "values", "samples")

    def __init__(self) -> None:
        self.slots: list[int] = []
        self.values: list[float | None] = []
        self.samples = 0


class Pipeline:
    """Windows, detectors and rules over node scrapes; holds no state of its own but the rule engine's."""

    def __init__(self, settings: Settings, *, engine: RuleEngineLike | None = None) -> None:
        s = settings.streams
        self.grace_s = s.window_grace_s
        self.stale_s = s.rules_stale_after_s
        self.threshold = s.anomaly_threshold
        self.detector_name = s.detector
        self.detector_label = new_detector(s.detector).name
        self.scored = scored_metric_names(s.scored_metrics)
        self.windowed = windowed_metric_names(s.windowed_metrics) | frozenset(
            m for names in AGGREGATE_METRICS.values() for m in names)
        self.engine = engine
        self._fast_rules = engine is not None and hasattr(engine, "entity_rules")
        self._shapes: dict[tuple[str, ...], _Shape] = {}
        self._x: dict[str, float] = {}
        """The one-key dict handed to score_one/learn_one (River's ``x``), reused for every sample."""

    def new_state(self, key: str) -> NodeState:
        return NodeState(key, grace_s=self.grace_s)

    def shape(self, names: tuple[str, ...]) -> _Shape:
        sh = self._shapes.get(names)
        if sh is None:
            sh = self._shapes[names] = _Shape(names, windowed=self.windowed, scored=self.scored, engine=self.engine)
        return sh

    def _rules_of(self, g: Group) -> Any:
        """The group's RuleState (turning saved bytes into the engine's state on first use)."""
        if self.engine is None:
            return None
        if g.rules is None:
            g.rules = self.engine.new_state()
        elif isinstance(g.rules, bytes):
            g.rules = self.engine.state_from_bytes(g.rules)
        return g.rules

    # -- layout ------------------------------------------------------------------

    def relayout(self, st: NodeState, *, fresh: bool = False) -> None:
        """Give every group's entities contiguous slots and rebuild the JSON heads (after groups changed).

        ``fresh``: the windows hold nothing yet (a load): slots are assigned, nothing is moved.
        """
        old = {e.prefix: e.lo for g in st.groups.values() for e in g.ents}
        source: list[int] = []
        layout: list[EntitySlots] = []
        partial_ids = set()
        lo = 0
        for gid in sorted(st.groups, key=lambda k: (k != NODE_GROUP, k)):
            for e in st.groups[gid].ents:
                k = len(e.shape.win)
                was = -1 if fresh else old.get(e.prefix, -1)
                source.extend(range(was, was + k) if was >= 0 else [-1] * k)
                e.lo = lo
                if k:
                    eid = e.prefix[:-1]
                    layout.append(EntitySlots(eid, identity(e.kind, e.labels), lo, e.shape.win_names))
                    if e.kind in ("workload", "namespace"):
                        partial_ids.add(eid)
                lo += k
        if fresh:
            st.windows.ensure(lo)
        else:
            st.windows.relayout(np.array(source, dtype=np.intp))
        st.layout = layout
        st.partial_ids = frozenset(partial_ids)
        st.width = lo

    def _sync_groups(self, st: NodeState, grouped: list[tuple[str, list[Entity]]]) -> None:
        """Make the node's groups match the scrape's entities; relayout if anything changed."""
        changed = False
        for gid, ents in grouped:
            g = st.groups.get(gid)
            if g is None:
                g = st.groups[gid] = Group(gid)
                st.removed.discard(gid)
            if len(g.ents) == len(ents) and all(
                    e.prefix == x.prefix and e.shape.names[0] == x.metrics[0][0] and len(e.shape.names) == len(x.metrics)
                    for e, x in zip(g.ents, ents, strict=True)):
                continue
            by_prefix = {e.prefix: e for e in g.ents}
            new = []
            for x in ents:
                sh = self.shape(tuple(m for m, _ in x.metrics))
                e = by_prefix.get(x.prefix)
                if e is None or e.shape is not sh:
                    kept = e
                    e = _Ent(x.kind, x.prefix, x.labels, sh)
                    if kept is not None:  # same series, other shape (a filesystem appeared): keep the detectors
                        dets = dict(zip((kept.shape.names[j] for j in kept.shape.scored), kept.dets, strict=True))
                        e.dets = [dets.get(sh.names[j]) for j in sh.scored]
                else:
                    e.labels = x.labels
                new.append(e)
            g.ents = new
            g.dirty = changed = True
        if changed:
            self.relayout(st)

    def _absent(self, st: NodeState, ts: float, out: Outputs, present: set[str]) -> None:
        """Groups missing from this scrape (pods gone): their alerts go stale, and after an hour they are dropped.

        An hour (plus a pane and the grace) after its last sample every window the group had data in has
        closed and been published, and its alerts resolved long before (``rules_stale_after_s``), so its
        entry can go.
        """
        gone = [gid for gid in st.groups if gid not in present]
        if not gone:
            return
        when = datetime.fromtimestamp(ts, UTC)
        retire_after = max(self.stale_s, HOUR_S + PANE_S + self.grace_s)
        dropped = False
        for gid in gone:
            g = st.groups[gid]
            rstate = self._rules_of(g)
            if rstate is not None and len(rstate):
                got = self.engine.tick(when, state=rstate)  # type: ignore[union-attr]
                if got or rstate.dirty:
                    out.transitions += got
                    g.dirty = True
            if ts - g.last_ts >= retire_after:
                del st.groups[gid]
                st.removed.add(gid)
                dropped = True
        if dropped:
            self.relayout(st)

    # -- scrapes -----------------------------------------------------------------

    def process(self, st: NodeState, scrape: NodeScrape, *, offset: int = -1) -> Outputs:
        """Fold one scrape into the node's windows, detectors and rules; what it closes and raises comes back."""
        out = Outputs()
        if 0 <= offset <= st.offset:
            out.replayed = True
            return out
        ts = scrape.timestamp.timestamp()
        in_order = ts > st.last_ts
        grouped = list(_group_entities(scrape))
        grouped[0][1].extend(_partials(scrape))
        self._sync_groups(st, grouped)
        fold = _Fold()
        for gid, ents in grouped:
            g = st.groups[gid]
            if 0 <= offset <= g.offset:
                continue  # this group's entry already holds this message (written after the header)
            if offset >= 0:
                g.offset = offset
            g.last_ts = max(g.last_ts, ts)
            g.dirty = True
            self._group(g, ents, scrape, fold, out, in_order=in_order)
        if offset >= 0:
            st.offset = offset
        if in_order:
            st.last_ts = ts
        if fold.slots:
            vals = np.full(st.width, _NAN)
            vals[np.array(fold.slots, dtype=np.intp)] = np.array(fold.values, dtype=np.float64)  # None -> NaN
            out.late_dropped = st.windows.fold(ts, vals)
        self._close(st, ts, out)
        self._absent(st, ts, out, {gid for gid, _ in grouped})
        st.dirty = True
        out.samples = fold.samples
        return out

    def _group(self, g: Group, ents: list[Entity], scrape: NodeScrape, fold: _Fold, out: Outputs, *,
               in_order: bool) -> None:
        """One group's entities: their window values into ``fold``, detectors and rules (in time order only).

        Each scored sample is scored, then learned (``score_learn``, one call); one above the threshold is
        an anomaly, and goes to the group's rules before the entity's own samples do.
        """
        ts_dt = scrape.timestamp
        ts = ts_dt.timestamp()
        engine = self.engine
        rstate = self._rules_of(g) if in_order else None
        transitions = out.transitions
        threshold = self.threshold
        fast_rules = self._fast_rules
        slots, values = fold.slots, fold.values
        samples = 0
        workloads: dict[str, str] = {}
        for e, ent in zip(g.ents, ents, strict=True):
            metrics = ent.metrics
            sh = e.shape
            vs = list(map(_second, metrics))
            samples += len(vs) - vs.count(None)
            win_values = sh.win_values
            if win_values is not None:
                lo = e.lo
                slots.extend(range(lo, lo + len(sh.win)))
                values.extend(win_values(vs))
            if ent.kind == "pod" and "workload" in ent.labels:
                workloads[e.prefix[:-2]] = ent.labels["workload"]
            if in_order and sh.scored:
                dets = e.dets
                for k, j in enumerate(sh.scored):
                    v = vs[j]
                    if v is None:
                        continue
                    det = dets[k]
                    if det is None:
                        # The metric's unit sets the default detector's resolution (streams.scoring).
                        det = dets[k] = new_detector(self.detector_name, metric=sh.names[j])
                    # A score above the threshold comes back before the sample is learned.
                    score = det.score_learn(v, ts, threshold)
                    if score > threshold:
                        self._anomaly(e, j, v, det, score, scrape, workloads, out, rstate)
            if rstate is None:
                continue
            if fast_rules:
                if sh.rules:
                    got = observe_planned(sh.rules, e.prefix, ent.labels, metrics, ts, rstate)
                    if got:
                        transitions += got
            else:
                transitions.extend(engine.observe_entity(ent, ts_dt, state=rstate))  # type: ignore[union-attr]
        fold.samples += samples
        if rstate is not None and len(rstate):
            transitions.extend(engine.tick(ts_dt, state=rstate))  # type: ignore[union-attr]

    def _anomaly(self, e: _Ent, j: int, v: float, det: Any, score: float, scrape: NodeScrape,
                 workloads: dict[str, str], out: Outputs, rstate: Any) -> None:
        """A score above the threshold: the anomaly (with the baseline it was judged against), then learn the sample."""
        a = anomaly(e.prefix + e.shape.names[j], node=scrape.node, ts=scrape.timestamp, value=v,
                    baseline=det.baseline, score=score, threshold=self.threshold, detector=self.detector_label,
                    workloads=workloads)
        x = self._x
        x["value"] = v
        det.learn_one(x, t=scrape.timestamp.timestamp())
        out.anomalies.append(a)
        if rstate is not None:
            out.transitions.extend(self.engine.observe_anomaly(a, state=rstate))  # type: ignore[union-attr]

    def _close(self, st: NodeState, ts: float, out: Outputs) -> bool:
        """Close the windows ``ts`` completes: public rollups to ``out.rollup_records``, partials to ``out.partials``."""
        closed = st.windows.advance(ts, st.layout)
        if not closed:
            return False
        partial_ids = st.partial_ids
        node_id = f"{st.cluster}/-/node:{st.node}/-"
        for key, value in closed:
            if key in partial_ids:
                out.partials.append(value)
            else:
                out.rollup_records.append((key, value))
                if key == node_id:
                    out.partials.append(value)
        for g in st.groups.values():
            g.dirty = True  # their panes moved on: the entries must say so
        return True

    def flush(self, st: NodeState) -> Outputs:
        """Close every open window of a node about to be forgotten (its open hour included)."""
        out = Outputs()
        self._close(st, st.windows.event_time + HOUR_S + PANE_S + self.grace_s, out)
        return out

    def tick(self, st: NodeState, now: float) -> Outputs:
        """Move a silent node's event time to ``now`` (seconds): close its windows, let its alerts go stale.

        The worker calls this for a node that sent nothing while its partition's
        event time moved on (see ``streams.scrapes``): without it a node that went
        away would keep its last windows open and its alerts firing forever.
        Rollups and transitions come out as from :meth:`process`, with the
        times the data gives them (a stale alert resolves at ``last seen +
        rules_stale_after_s``), so when the tick runs does not change them.
        Detectors and ``last_ts`` are untouched: the node's next scrape is
        scored as usual, and a sample older than ``now - window_grace_s`` is
        late.
        """
        out = Outputs()
        changed = self._close(st, now, out)
        if self.engine is not None:
            when = datetime.fromtimestamp(now, UTC)
            for g in st.groups.values():
                rstate = self._rules_of(g)
                if not len(rstate):
                    continue
                was_dirty, rstate.dirty = rstate.dirty, False
                got = self.engine.tick(when, state=rstate)
                if got or rstate.dirty:
                    out.transitions += got
                    g.dirty = changed = True
                rstate.dirty = rstate.dirty or was_dirty
        if changed:
            st.dirty = True
        out.changed = changed
        return out
