"""One pass over each node scrape: windows, anomaly scores and rules, with the node's state in one object.

``streams.app``'s agent reads kubepulse.metrics.v1 and calls
:meth:`Pipeline.process` per scrape; what comes back goes to
kubepulse.rollups.v1, kubepulse.anomalies.v1 and kubepulse.alerts.v1.

Why one pass and one state object per node: a scrape carries ~1,000 samples,
so decoding it once and walking ``models.series.entities`` once is what makes
100k samples/s per process possible, and keying the state by the metrics
topic's own key (``cluster/node``) keeps it co-partitioned with its input and
turns a hundred thousand per-series table entries into one per node. The
state is written to the table every ``checkpoint_interval_s``, not every
scrape (see ``streams.app`` for how offsets stay consistent with it).

Why it is fast (the worker's budget is 100k samples/s in one process): a
node's entities have the same shapes scrape after scrape, so everything that
depends only on a shape (which positions of ``Entity.metrics`` are windowed,
scored, selected by rules) is computed once per ``(kind, len(metrics))`` and
everything that depends on one entity (its window slots, its detectors) once
per entity prefix and node. Per scrape, windows take one vectorised fold
(``streams.windows``), detectors and rules run only on the samples they
select, and closed windows come out as ready-to-send JSON bytes
(``Outputs.rollup_records``), so publishing them costs no pydantic work.

Contract with the rule engine (``streams.rules.RuleEngine``, see its
docstring): one ``RuleState`` per partition key; for a node that is the
metrics key ``cluster/node``, and it travels inside this node's
:class:`NodeState` (as ``RuleState.to_bytes()`` in the table). Entities,
the node's own anomalies and ``tick`` are evaluated with ``state=`` that
state. Transition times and ``sequence`` numbers come from the data, so a
replay after a restart produces the same transitions with the same numbers.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Protocol

import numpy as np

from models.records import AlertTransition, Anomaly, KubeEvent, NodeScrape, Rollup
from models.series import METRICS, Entity, entities
from models.settings import Settings
from streams._rules.engine import observe_planned
from streams.scoring import anomaly, new_detector, scored_metric_names
from streams.windows import Windows

__all__ = ["Outputs", "NodeState", "Pipeline", "RuleEngineLike", "not_windowed", "windowed_metric_names"]

_STATE_VERSION = 2
_NAN = math.nan
_second = itemgetter(1)


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
    return metric.endswith(("_total", "capacity_bytes", "_limit_bytes", "_request_bytes", "inodes_free"))


def windowed_metric_names(selectors: Iterable[str] | None = None) -> frozenset[str]:
    """Full metric names that get rollups: ``selectors`` as in ``scored_metrics``, or (None) all but :func:`not_windowed`.

    >>> "pod.cpu_cores" in windowed_metric_names(), "pod.memory_page_faults_total" in windowed_metric_names()
    (True, False)
    >>> sorted(windowed_metric_names(["cpu_cores"]))[:2]
    ['container.cpu_cores', 'node.cpu_cores']
    """
    if selectors is None:
        return frozenset(m for names in METRICS.values() for m in names if not not_windowed(m))
    return scored_metric_names(selectors)


class Outputs:
    """What one scrape produced.

    ``rollup_records`` are ``(series id, JSON bytes)`` pairs ready for
    kubepulse.rollups.v1 (the key is the series id); ``rollups`` gives the
    same as :class:`Rollup` records, for tests and tools.
    """

    __slots__ = ("rollup_records", "anomalies", "transitions", "samples", "late_dropped", "replayed", "changed")

    def __init__(self) -> None:
        self.rollup_records: list[tuple[str, bytes]] = []
        self.anomalies: list[Anomaly] = []
        self.transitions: list[AlertTransition] = []
        self.samples = 0
        self.late_dropped = 0
        self.replayed = False
        self.changed = True
        """False only from :meth:`Pipeline.tick` when the node's state did not move (nothing to write)."""

    @property
    def rollups(self) -> list[Rollup]:
        return [Rollup.model_validate_json(v) for _, v in self.rollup_records]


class _Shape:
    """What depends only on an entity's kind and metric names: positions windowed, scored, and its rules."""

    __slots__ = ("names", "win", "win_get", "scored", "rules", "pod_cpu", "pod_mem")

    def __init__(self, kind: str, names: tuple[str, ...], *, windowed: frozenset[str], scored: frozenset[str],
                 engine: Any) -> None:
        self.names = names
        self.win = tuple(j for j, m in enumerate(names) if m in windowed)
        # itemgetter of one position returns a value, not a 1-tuple: keep the shapes uniform.
        self.win_get = itemgetter(*self.win) if len(self.win) > 1 else (lambda vs, j=self.win: tuple(vs[i] for i in j))
        self.scored = tuple(j for j, m in enumerate(names) if m in scored)
        entity_rules = getattr(engine, "entity_rules", None)
        self.rules = entity_rules(names) if entity_rules is not None else None
        self.pod_cpu = names.index("pod.cpu_cores") if kind == "pod" and "pod.cpu_cores" in names else -1
        self.pod_mem = (names.index("pod.memory_working_set_bytes")
                        if kind == "pod" and "pod.memory_working_set_bytes" in names else -1)


class _EntityCache:
    """One entity of one node: its window slots and its detectors (by scored position)."""

    __slots__ = ("shape", "slots", "sids", "dets", "generation")

    def __init__(self, shape: _Shape, prefix: str, windows: Windows, detectors: dict[str, Any]) -> None:
        names = shape.names
        self.shape = shape
        self.slots = [windows.slot(prefix + names[j]) for j in shape.win]
        self.sids = [prefix + names[j] for j in shape.scored]
        self.dets = [detectors.get(sid) for sid in self.sids]
        self.generation = windows.generation


class NodeState:
    """Everything the worker remembers about one node: windows, detectors, rule state, input offset."""

    __slots__ = ("key", "offset", "windows", "detectors", "rules", "last_ts", "entities")

    def __init__(self, key: str, *, grace_s: float) -> None:
        self.key = key
        self.offset = -1
        """Offset of the last input applied: a replayed message at or below it is skipped."""
        self.windows = Windows(grace_s=grace_s)
        self.detectors: dict[str, Any] = {}
        self.rules: Any = None
        """The rule engine's RuleState of this node (bytes between loads() and Pipeline.attach())."""
        self.last_ts = 0.0
        """Timestamp of the newest scrape scored: detectors learn in time order only."""
        self.entities: dict[str, _EntityCache] = {}
        """Entity prefix -> its slots and detectors: derived, rebuilt after a load, never saved."""

    def dumps(self) -> bytes:
        return pickle.dumps(
            (_STATE_VERSION, self.key, self.offset, self.last_ts, self.windows.to_state(), self.detectors,
             self.rules.to_bytes() if hasattr(self.rules, "to_bytes") else self.rules),
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    @classmethod
    def loads(cls, data: bytes) -> NodeState:
        t = pickle.loads(data)  # our own changelog, never foreign input
        version = t[0]
        if version == 1:  # dict-of-lists panes (before columnar windows): convert
            (_, key, offset, last_ts, grace, w_open, w_closed, closed_through, event_time, workloads, detectors,
             rules) = t
            windows = Windows.from_dict_panes(grace_s=grace, w_open=w_open, w_closed=w_closed,
                                              closed_through=closed_through, event_time=event_time,
                                              workloads=workloads)
        elif version == _STATE_VERSION:
            _, key, offset, last_ts, wstate, detectors, rules = t
            windows = Windows.from_state(wstate)
        else:
            raise ValueError(f"node state version {version}, expected {_STATE_VERSION}")
        st = cls(key, grace_s=windows.grace_s)
        st.offset, st.last_ts, st.detectors, st.rules, st.windows = offset, last_ts, detectors, rules, windows
        return st


class Pipeline:
    """Windows, detectors and rules over node scrapes; holds no state of its own but the rule engine's."""

    def __init__(self, settings: Settings, *, engine: RuleEngineLike | None = None) -> None:
        s = settings.streams
        self.grace_s = s.window_grace_s
        self.threshold = s.anomaly_threshold
        self.detector_name = s.detector
        self.detector_label = new_detector(s.detector).name
        self.scored = scored_metric_names(s.scored_metrics)
        self.windowed = windowed_metric_names(s.windowed_metrics)
        self.engine = engine
        self._shapes: dict[tuple[str, int], _Shape] = {}

    def new_state(self, key: str) -> NodeState:
        return NodeState(key, grace_s=self.grace_s)

    def attach(self, state: NodeState) -> None:
        """Turn a loaded node's rule state (bytes) into the engine's RuleState."""
        if self.engine is None:
            return
        if state.rules is None:
            state.rules = self.engine.new_state()
        elif isinstance(state.rules, bytes):
            state.rules = self.engine.state_from_bytes(state.rules)

    def _shape(self, kind: str, metrics: list[tuple[str, float | None]]) -> _Shape:
        # An entity's metric names follow from its kind and how many it has (models.series builds
        # fixed lists; a missing filesystem drops its block): the names are checked once per shape.
        names = tuple(m for m, _ in metrics)
        sh = self._shapes.get((kind, len(names)))
        if sh is None or sh.names != names:
            sh = self._shapes[(kind, len(names))] = _Shape(kind, names, windowed=self.windowed, scored=self.scored,
                                                            engine=self.engine)
        return sh

    def tick(self, state: NodeState, now: float) -> Outputs:
        """Move a silent node's event time to ``now`` (seconds): close its windows, let its alerts go stale.

        The worker calls this for a node that sent nothing while its partition's
        event time moved on (see ``streams.app``): without it a node that went
        away would keep its last windows open and its alerts firing forever.
        Rollups and transitions come out as from :meth:`process`, with the
        times the data gives them (a stale alert resolves at ``last seen +
        rules_stale_after_s``), so when the tick runs does not change them.
        Detectors and ``last_ts`` are untouched: the node's next scrape is
        scored as usual, and a sample older than ``now - window_grace_s`` is
        late.
        """
        out = Outputs()
        w = state.windows
        before = (w.event_time, len(w.open), len(w.closed))
        out.rollup_records = w.advance(now, node=state.key.split("/", 1)[-1])
        changed = before != (w.event_time, len(w.open), len(w.closed))
        if self.engine is not None:
            if state.rules is None or isinstance(state.rules, bytes):
                self.attach(state)
            rstate = state.rules
            was_dirty, rstate.dirty = rstate.dirty, False
            out.transitions = self.engine.tick(datetime.fromtimestamp(now, UTC), state=rstate)
            changed = changed or rstate.dirty or bool(out.transitions)
            rstate.dirty = rstate.dirty or was_dirty
        out.changed = changed
        return out

    def process(self, state: NodeState, scrape: NodeScrape, *, offset: int = -1) -> Outputs:
        out = Outputs()
        if offset >= 0:
            if offset <= state.offset:
                out.replayed = True
                return out
            state.offset = offset
        ts_dt = scrape.timestamp
        ts = ts_dt.timestamp()
        node = scrape.node
        w = state.windows
        in_order = ts > state.last_ts
        if in_order:
            state.last_ts = ts
        detectors = state.detectors
        cache = state.entities
        gen = w.generation
        threshold = self.threshold
        engine = self.engine
        if engine is not None and (state.rules is None or isinstance(state.rules, bytes)):
            self.attach(state)
        rstate = state.rules
        fast_rules = engine is not None and hasattr(engine, "entity_rules")
        anomalies = out.anomalies
        transitions = out.transitions
        workloads = w.workloads
        shapes = self._shapes
        slots: list[int] = []
        values: list[float | None] = []
        samples = 0
        x: dict[str, float] = {}
        # Aggregates of pod usage (sum over the node's pods, per workload and namespace).
        agg: dict[str, float] = {}
        c = scrape.cluster
        n_entities = 0
        for ent in entities(scrape):
            n_entities += 1
            metrics = ent.metrics
            kind = ent.kind
            sh = shapes.get((kind, len(metrics)))
            if sh is None or sh.names[0] != metrics[0][0]:
                sh = self._shape(kind, metrics)
            prefix = ent.prefix
            ec = cache.get(prefix)
            if ec is None or ec.shape is not sh or ec.generation != gen:
                ec = cache[prefix] = _EntityCache(sh, prefix, w, detectors)
            vs = list(map(_second, metrics))
            nones = vs.count(None)
            samples += len(vs) - nones
            if sh.win:
                slots += ec.slots
                values += sh.win_get(vs)
            if in_order and sh.scored:
                dets = ec.dets
                for k, j in enumerate(sh.scored):
                    v = vs[j]
                    if v is None:
                        continue
                    det = dets[k]
                    if det is None:
                        sid = ec.sids[k]
                        det = detectors.get(sid)
                        if det is None:
                            det = detectors[sid] = new_detector(self.detector_name)
                        dets[k] = det
                    x["value"] = v
                    score = det.score_one(x, t=ts)
                    if score > threshold:
                        anomalies.append(
                            anomaly(ec.sids[k], node=node, ts=ts_dt, value=v, baseline=det.baseline, score=score,
                                    threshold=threshold, detector=self.detector_label, workloads=workloads)
                        )
                    det.learn_one(x, t=ts)
            if kind == "pod":
                labels = ent.labels
                wl = labels.get("workload")
                if wl:
                    # Keyed ``cluster/namespace/pod/`` as the rollups and anomalies look it up (the
                    # entity prefix ends in the pod's "-/" container slot).
                    workloads[prefix[:-2]] = wl
                ns = labels["namespace"]
                for j, field_ in ((sh.pod_cpu, "cpu_cores"), (sh.pod_mem, "memory_working_set_bytes")):
                    v = vs[j] if j >= 0 else None
                    if v is None:
                        continue
                    agg[field_] = agg.get(field_, 0.0) + v
                    k = f"{c}/{ns}/-/node:{node}/namespace.{field_}"
                    agg[k] = agg.get(k, 0.0) + v
                    if wl:
                        k = f"{c}/{ns}/workload:{wl}/node:{node}/workload.{field_}"
                        agg[k] = agg.get(k, 0.0) + v
            if engine is not None and in_order:
                if fast_rules:
                    if sh.rules:
                        got = observe_planned(sh.rules, prefix, ent.labels, metrics, ts, rstate)
                        if got:
                            transitions += got
                else:
                    transitions.extend(engine.observe_entity(ent, ts_dt, state=rstate))
        if agg:
            node_prefix = f"{c}/-/node:{node}/-/node.pods_"
            alloc = scrape.node_stats.allocatable
            slot = w.slot
            for field_, total in agg.items():
                if "/" in field_:
                    slots.append(slot(field_))
                    values.append(total)
                    continue
                slots.append(slot(node_prefix + field_))
                values.append(total)
                capacity = alloc.cpu_cores if field_ == "cpu_cores" else alloc.memory_bytes
                if capacity:
                    name = "cpu_allocatable_share" if field_ == "cpu_cores" else "memory_allocatable_share"
                    slots.append(slot(node_prefix + name))
                    values.append(total / capacity)
        late = 0
        if w.is_late(ts):
            late = samples  # the whole scrape is past its window's grace: every sample is dropped, and counted
        elif slots:
            vals = np.array([_NAN if v is None else v for v in values], dtype=float) if None in values \
                else np.array(values, dtype=float)
            w.add_many(ts, np.array(slots, dtype=np.intp), vals)
        if engine is not None and in_order:
            for a in anomalies:
                transitions.extend(engine.observe_anomaly(a, state=rstate))
            transitions.extend(engine.tick(ts_dt, state=rstate))
        out.rollup_records = w.advance(ts, node=node)
        if w.generation != gen or len(cache) > 2 * n_entities + 64:
            # Slots were renumbered, or many cached entities are gone (pods deleted): rebuild on the next scrape.
            cache.clear()
        out.samples = samples
        out.late_dropped = late
        return out
