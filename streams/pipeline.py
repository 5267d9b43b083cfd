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

Contract with the rule engine (``streams.rules.RuleEngine``, see its
docstring): one ``RuleState`` per partition key; for a node that is the
metrics key ``cluster/node``, and it travels inside this node's
:class:`NodeState` (as ``RuleState.to_bytes()`` in the table). Entities,
the node's own anomalies and ``tick`` are evaluated with ``state=`` that
state. Transition times and ``sequence`` numbers come from the data, so a
replay after a restart produces the same transitions with the same numbers.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any, Protocol

from models.records import AlertTransition, Anomaly, KubeEvent, NodeScrape, Rollup
from models.series import Entity, entities
from models.settings import Settings
from streams.scoring import anomaly, new_detector, scored_metric_names
from streams.windows import Windows

__all__ = ["Outputs", "NodeState", "Pipeline", "RuleEngineLike", "not_windowed"]

_STATE_VERSION = 1


class RuleEngineLike(Protocol):
    """What the pipeline needs of ``streams.rules.RuleEngine``."""

    def new_state(self) -> Any: ...
    def state_from_bytes(self, data: bytes) -> Any: ...
    def observe_entity(self, entity: Entity, ts: Any, *, state: Any = None) -> list[AlertTransition]: ...
    def observe_event(self, event: KubeEvent, *, state: Any = None) -> list[AlertTransition]: ...
    def observe_anomaly(self, anomaly: Anomaly, *, state: Any = None) -> list[AlertTransition]: ...
    def tick(self, now: Any, *, state: Any = None) -> list[AlertTransition]: ...


def not_windowed(metric: str) -> bool:
    """Metrics without rollups: counters (their rates are windowed), capacities and configured amounts."""
    return metric.endswith(("_total", "capacity_bytes", "_limit_bytes", "_request_bytes", "inodes_free"))


@dataclass(slots=True)
class Outputs:
    """What one scrape produced."""

    rollups: list[Rollup] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    transitions: list[AlertTransition] = field(default_factory=list)
    samples: int = 0
    late_dropped: int = 0
    replayed: bool = False


class NodeState:
    """Everything the worker remembers about one node: windows, detectors, rule state, input offset."""

    __slots__ = ("key", "offset", "windows", "detectors", "rules", "last_ts")

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

    def dumps(self) -> bytes:
        w = self.windows
        return pickle.dumps(
            (_STATE_VERSION, self.key, self.offset, self.last_ts, w.grace_s, w.open, w.closed, w.closed_through,
             w.event_time, w.workloads, self.detectors,
             self.rules.to_bytes() if hasattr(self.rules, "to_bytes") else self.rules),
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    @classmethod
    def loads(cls, data: bytes) -> NodeState:
        (version, key, offset, last_ts, grace, w_open, w_closed, closed_through, event_time, workloads, detectors,
         rules) = pickle.loads(data)
        if version != _STATE_VERSION:
            raise ValueError(f"node state version {version}, expected {_STATE_VERSION}")
        st = cls(key, grace_s=grace)
        st.offset, st.last_ts, st.detectors, st.rules = offset, last_ts, detectors, rules
        w = st.windows
        w.open, w.closed, w.closed_through, w.event_time, w.workloads = w_open, w_closed, closed_through, event_time, workloads
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
        self.engine = engine
        self._windowed: dict[str, bool] = {}

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
        pane = w.pane_for(ts)
        in_order = ts > state.last_ts
        if in_order:
            state.last_ts = ts
        scored = self.scored
        detectors = state.detectors
        windowed = self._windowed
        threshold = self.threshold
        engine = self.engine
        if engine is not None and (state.rules is None or isinstance(state.rules, bytes)):
            self.attach(state)
        rstate = state.rules
        anomalies = out.anomalies
        transitions = out.transitions
        workloads = w.workloads
        add = Windows.add
        samples = 0
        late = 0
        # Aggregates of pod usage (sum over the node's pods, per workload and namespace).
        agg: dict[str, float] = {}
        c = scrape.cluster
        for ent in entities(scrape):
            prefix = ent.prefix
            is_pod = ent.kind == "pod"
            if is_pod:
                labels = ent.labels
                wl = labels.get("workload")
                if wl:
                    workloads[prefix] = wl
            for metric, v in ent.metrics:
                if v is None:
                    continue
                samples += 1
                sid = prefix + metric
                if pane is None:
                    late += 1
                else:
                    win = windowed.get(metric)
                    if win is None:
                        win = windowed[metric] = not not_windowed(metric)
                    if win:
                        add(pane, sid, v, ts)
                if in_order and metric in scored:
                    det = detectors.get(sid)
                    if det is None:
                        det = detectors[sid] = new_detector(self.detector_name)
                    x = {"value": v}
                    score = det.score_one(x, t=ts)
                    if score > threshold:
                        anomalies.append(
                            anomaly(sid, node=node, ts=ts_dt, value=v, baseline=det.baseline, score=score,
                                    threshold=threshold, detector=self.detector_label, workloads=workloads)
                        )
                    det.learn_one(x, t=ts)
                if is_pod and (metric == "pod.cpu_cores" or metric == "pod.memory_working_set_bytes"):
                    field_ = metric[4:]
                    ns = labels["namespace"]
                    agg[field_] = agg.get(field_, 0.0) + v
                    k = f"{c}/{ns}/-/node:{node}/namespace.{field_}"
                    agg[k] = agg.get(k, 0.0) + v
                    if wl:
                        k = f"{c}/{ns}/workload:{wl}/node:{node}/workload.{field_}"
                        agg[k] = agg.get(k, 0.0) + v
            if engine is not None and in_order:
                transitions.extend(engine.observe_entity(ent, ts_dt, state=rstate))
        if pane is not None and agg:
            node_prefix = f"{c}/-/node:{node}/-/node.pods_"
            alloc = scrape.node_stats.allocatable
            for field_, total in list(agg.items()):
                if "/" in field_:
                    add(pane, field_, total, ts)
                    continue
                add(pane, node_prefix + field_, total, ts)
                capacity = alloc.cpu_cores if field_ == "cpu_cores" else alloc.memory_bytes
                if capacity:
                    name = "cpu_allocatable_share" if field_ == "cpu_cores" else "memory_allocatable_share"
                    add(pane, node_prefix + name, total / capacity, ts)
        if engine is not None and in_order:
            for a in anomalies:
                transitions.extend(engine.observe_anomaly(a, state=rstate))
            transitions.extend(engine.tick(ts_dt, state=rstate))
        out.rollups = w.advance(ts, node=node)
        out.samples = samples
        out.late_dropped = late
        return out
