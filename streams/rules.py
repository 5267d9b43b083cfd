"""Alert rules and alert state: entities, Events and anomalies in, AlertTransitions out.

Pure Python and synchronous; the Faust agents call it (reading
``kubepulse.metrics.v1``, ``kubepulse.events.v1`` and ``kubepulse.anomalies.v1``,
writing ``kubepulse.alerts.v1``). Rule files are described in the README
("Alert rules"); the default pack is ``streams/_rules/default_rules.yaml``.

The interface the agents code against (stable)
==============================================

Build once per worker::

    engine = RuleEngine.from_settings(settings)      # or RuleEngine(load_rules(path))

Feed it; every call returns the transitions to publish (usually none)::

    engine.observe_entity(entity, scrape.timestamp, state=st)   # models.series.Entity
    engine.observe_event(event, state=st)                        # models.records.KubeEvent
    engine.observe_anomaly(anomaly, state=st)                    # models.records.Anomaly
    engine.tick(now, state=st)                                   # timers, windows, staleness

Publish each :class:`~models.records.AlertTransition` to ``kubepulse.alerts.v1``
keyed by ``transition.fingerprint``. Only ``firing`` and ``resolved`` leave the
engine; ``pending`` stays inside.

State: one :class:`RuleState` per partition key
-----------------------------------------------

Alert state lives in small :class:`RuleState` objects, one per Kafka key the
input is partitioned by, so a partition's state moves with the partition:

=====================  ===========================================  =================================
input                  partition key                                helper
=====================  ===========================================  =================================
metrics (entities)     ``cluster/node`` (``NodeScrape.key``)        :func:`entity_partition_key`
events                 ``cluster/namespace/object`` (``event.key``)  ``KubeEvent.key``
anomalies              series id (``anomaly.key``)                   ``Anomaly.key``
=====================  ===========================================  =================================

The agent keeps live ``RuleState`` objects in memory (a dict by key) and uses a
Faust table with raw bytes values as their changelog::

    st = states.get(key)
    if st is None:                                   # first message for this key since start
        raw = table.get(key)
        st = states[key] = engine.state_from_bytes(raw) if raw else engine.new_state()
    out = []
    for entity in entities(scrape):
        out += engine.observe_entity(entity, scrape.timestamp, state=st)
    for tr in out:
        await alerts_topic.send(key=tr.fingerprint, value=tr)
    if st.dirty:                                     # write after sending, then clear
        table[key] = st.to_bytes()
        st.dirty = False

and on a timer (every 5-15 s) ``for key, st in states.items(): engine.tick(now, state=st)``
(then the same send / write-if-dirty). ``tick(now)`` without ``state`` ticks the
engine's own store (below). Drop a key's state when its partition is revoked.

Why this is exact after a restart: every series state records the timestamp
of the last observation folded into it, and an observation at or before it is
ignored. Messages re-delivered after a restart that the changelog already
contains are therefore no-ops; messages the changelog missed are folded in and
produce the same transitions as the first time, because transition times and
``sequence`` are computed from the data's timestamps, never from the wall
clock (``sequence`` is the transition time in ms × 2, + 1 for firing: strictly
increasing per fingerprint, so consumers drop a repeat with ``seq <= last``).
Writes are cheap: one value per partition key per message, only when changed;
a node's state holds only its alerting series plus the trend/rate data of
series that predict and rate rules select (tens of bytes each).

Without ``state=`` the engine keeps states itself, keyed as above, which suits
tests and the CLI: :meth:`RuleEngine.export_state` / :meth:`RuleEngine.import_state`
move one key's state in and out as bytes.

Costs: ``observe_entity`` looks each metric up in a dict of precompiled rules
(a metric no rule selects costs one lookup), and a threshold rule on a healthy
series keeps no state at all.

Errors: :class:`RulesError` (a ValueError) for a bad rule file, with one
``FILE:LINE:COLUMN: where: what`` line per problem. Observing never raises on
data the records' validation accepted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from models.records import AlertTransition, Anomaly, KubeEvent
from models.series import Entity
from streams._rules.engine import (
    AnomalyCompiled,
    Compiled,
    EventCompiled,
    RuleState,
    _MetricRule,
    anomaly_labels,
    compile_rule,
    event_labels,
    transition_sequence,
)
from streams._rules.errors import Problem, RulesError
from streams._rules.parse import METRIC_KIND, Rule, load_file, parse_rules

if TYPE_CHECKING:
    from models.settings import Settings

__all__ = [
    "RuleEngine",
    "RuleState",
    "Rule",
    "RulesError",
    "Problem",
    "load_rules",
    "load_default_rules",
    "parse_rules",
    "default_rules_path",
    "entity_partition_key",
    "transition_sequence",
    "DEFAULT_STALE_AFTER_S",
]

DEFAULT_STALE_AFTER_S = 300.0
"""A series not seen for this long resolves its alerts: Prometheus' 5-minute staleness."""


def default_rules_path() -> Path:
    """The default rule pack shipped inside the package."""
    return Path(str(resources.files("streams._rules").joinpath("default_rules.yaml")))


def load_rules(path: Path | str) -> list[Rule]:
    """Load one rule file; raise :class:`RulesError` with FILE:LINE:COLUMN for each problem."""
    return load_file(path)


def load_default_rules() -> list[Rule]:
    return load_file(default_rules_path())


def entity_partition_key(entity: Entity) -> str:
    """``cluster/node``: the metrics topic's key, under which an entity's state lives."""
    labels = entity.labels
    return f"{labels['cluster']}/{labels.get('node', '-')}"


class RuleEngine:
    """Evaluates rules on entities, Events and anomalies; keeps alert state; emits transitions."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        default_labels: Mapping[str, str] | None = None,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
    ) -> None:
        if stale_after_s <= 0:
            raise ValueError("stale_after_s must be positive")
        self.rules = list(rules)
        self.stale_after_s = stale_after_s
        self.default_labels = dict(default_labels or {})
        self.compiled: list[Compiled] = []
        # An alert defined twice in a group (a warning and a critical) is told
        # apart by severity, then by position: ids key the state, so they must
        # not depend on which of the two comes first.
        twice = {r.id for r in self.rules if sum(1 for o in self.rules if o.id == r.id) > 1}
        seen: dict[str, int] = {}
        for rule in self.rules:
            rid = f"{rule.id}/{rule.spec.severity}" if rule.id in twice else rule.id
            seen[rid] = seen.get(rid, 0) + 1
            if seen[rid] > 1:
                rid = f"{rid}#{seen[rid]}"
            self.compiled.append(compile_rule(rule, rid, default_labels=self.default_labels, stale_after=stale_after_s))
        self.rule_ids = {c.rid for c in self.compiled}
        self._by_metric: dict[str, tuple[_MetricRule, ...]] = {}
        self._by_reason: dict[str, tuple[EventCompiled, ...]] = {}
        self._anomaly: tuple[AnomalyCompiled, ...] = ()
        by_metric: dict[str, list[_MetricRule]] = {}
        by_reason: dict[str, list[EventCompiled]] = {}
        for c in self.compiled:
            if isinstance(c, _MetricRule):
                by_metric.setdefault(c.metric, []).append(c)
            elif isinstance(c, EventCompiled):
                for reason in c.reasons | c.resolve_reasons:
                    by_reason.setdefault(reason, []).append(c)
            elif isinstance(c, AnomalyCompiled):
                self._anomaly += (c,)
        self._by_metric = {m: tuple(v) for m, v in by_metric.items()}
        # Entity kinds (node, pod, container, volume, ...) no rule looks at are skipped whole.
        self._kinds = frozenset(METRIC_KIND.get(m, m.split(".", 1)[0]) for m in self._by_metric)
        self._by_reason = {r: tuple(v) for r, v in by_reason.items()}
        self._metric_rules = tuple(c for c in self.compiled if isinstance(c, _MetricRule))
        self._window_rules = tuple(c for c in self.compiled if not isinstance(c, _MetricRule))
        self._states: dict[str, RuleState] = {}

    # -- construction --------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings, *, default_labels: Mapping[str, str] | None = None) -> RuleEngine:
        """Rules from ``settings.streams.rules_files``; none given and ``use_default_rules`` -> the default pack."""
        files: Iterable[Path] = settings.streams.rules_files
        rules: list[Rule] = []
        problems: list[Problem] = []
        for f in files:
            try:
                rules += load_file(f)
            except RulesError as exc:
                problems += exc.problems
        if problems:
            raise RulesError(problems)
        if not settings.streams.rules_files and settings.streams.use_default_rules:
            rules = load_default_rules()
        stale = settings.streams.rules_stale_after_s
        return cls(rules, default_labels=default_labels, stale_after_s=stale)

    # -- state ---------------------------------------------------------------

    def new_state(self) -> RuleState:
        return RuleState()

    def state_from_bytes(self, data: bytes) -> RuleState:
        """A state written by :meth:`RuleState.to_bytes`; state of rules no longer loaded is dropped."""
        return RuleState.from_bytes(data, rule_ids=self.rule_ids)

    def state_for(self, key: str) -> RuleState:
        """The engine's own state for a partition key (created empty)."""
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = RuleState()
        return st

    def export_state(self, key: str) -> bytes | None:
        st = self._states.get(key)
        return st.to_bytes() if st is not None else None

    def import_state(self, key: str, data: bytes) -> None:
        self._states[key] = self.state_from_bytes(data)

    def drop_state(self, key: str) -> None:
        self._states.pop(key, None)

    @property
    def state_keys(self) -> list[str]:
        return list(self._states)

    # -- inputs --------------------------------------------------------------

    def entity_rules(self, names: tuple[str, ...]) -> tuple[tuple[int, tuple[_MetricRule, ...]], ...]:
        """Positions in an entity's metric names that rules select, with those rules.

        For callers that see the same entity shapes every scrape (streams.pipeline):
        ``streams._rules.engine.observe_planned(plan, ...)`` then evaluates exactly what
        :meth:`observe_entity` does without looking up every metric.
        """
        from streams._rules.engine import entity_plan

        return entity_plan(self._by_metric, names)

    def observe_entity(self, entity: Entity, ts: datetime, *, state: RuleState | None = None) -> list[AlertTransition]:
        """Evaluate every rule selecting one of the entity's metrics at scrape time ``ts``."""
        out: list[AlertTransition] = []
        if entity.kind not in self._kinds:
            return out
        by_metric = self._by_metric
        t = -1.0
        companions: dict[str, float | None] | None = None
        for name, value in entity.metrics:
            if value is None:
                continue
            rules = by_metric.get(name)
            if rules is None:
                continue
            if t < 0:
                t = ts.timestamp()
                if state is None:
                    state = self.state_for(entity_partition_key(entity))
                if t > state.clock:
                    state.clock = t
            for rule in rules:
                if rule.matchers and not rule.matches(entity.prefix, entity.labels):
                    continue
                if rule.needs_companions and companions is None:
                    companions = dict(entity.metrics)
                got = rule.observe(state, entity.prefix, entity.labels, value, t, companions)
                if got:
                    out += got
        return out

    def observe_event(self, event: KubeEvent, *, state: RuleState | None = None) -> list[AlertTransition]:
        """Count an Event against event rules, keyed by its involved object.

        Its time is ``last_seen`` (else ``first_seen``); an Event with neither
        counts at the latest time this state has seen, or is not counted when
        there is none (there is no honest time to put it at).
        """
        rules = self._by_reason.get(event.reason)
        if not rules:
            return []
        if state is None:
            state = self.state_for(event.key)
        when = event.timestamp
        if when is not None:
            t = when.timestamp()
        elif math.isfinite(state.clock):
            t = state.clock
        else:
            return []
        state.clock = max(state.clock, t)
        identity = event_labels(event)
        out: list[AlertTransition] = []
        for rule in rules:
            if not rule.selects(event):
                continue
            if rule.matchers and not all(m.matches(identity) for m in rule.matchers):
                continue
            out += rule.observe(state, event, identity, t)
        return out

    def observe_anomaly(self, anomaly: Anomaly, *, state: RuleState | None = None) -> list[AlertTransition]:
        """Count an anomaly of a series against anomaly rules (sustained scores page, blips do not)."""
        if not self._anomaly:
            return []
        if state is None:
            state = self.state_for(anomaly.key)
        t = anomaly.timestamp.timestamp()
        state.clock = max(state.clock, t)
        identity = anomaly_labels(anomaly)
        out: list[AlertTransition] = []
        for rule in self._anomaly:
            if not rule.selects(anomaly):
                continue
            if rule.matchers and not rule.matches(anomaly.series_id, identity):
                continue
            out += rule.observe(state, anomaly, identity, t)
        return out

    def tick(self, now: datetime, *, state: RuleState | None = None) -> list[AlertTransition]:
        """Advance time to ``now``: ``for`` timers and windows of events/anomalies, staleness, keep_firing_for.

        Transitions carry the instant they became due (computed from the data),
        not ``now``, so when ticks run does not change what is published.
        """
        t = now.timestamp()
        states = [state] if state is not None else list(self._states.values())
        out: list[AlertTransition] = []
        for st in states:
            before = len(out)
            changed = False
            for rule in self.compiled:
                rs = st.series.get(rule.rid)
                if not rs:
                    continue
                n = len(rs)
                rule.tick(rs, t, out)  # type: ignore[attr-defined]
                # Windows age even without output, so a window rule's state always changes.
                changed = changed or len(rs) != n or rule in self._window_rules
            if changed or len(out) != before:
                st.dirty = True
        return out

    def __repr__(self) -> str:
        return f"RuleEngine({len(self.compiled)} rules, {len(self._by_metric)} metrics)"
