"""Compiled rules and the alert state machine: pending -> firing -> resolved.

Every rule reduces an input to one number per series (the value), and one
state machine turns values into transitions. The condition is a Schmitt
trigger: it is *entered* when ``value op threshold`` and *left* only when the
value crosses ``resolve_threshold`` the other way (the same value by default),
so a value hovering at the threshold pages once. ``for`` delays firing until
the condition has held that long; ``keep_firing_for`` (Prometheus 2.42's)
delays resolving.

Time comes only from the data (sample, event and anomaly timestamps) and the
``now`` given to ``tick``; every transition's time is computed from the data
(a stale series resolves at ``last seen + stale_after``, an event window at
the instant its events age out), never from when ``tick`` happened to run. So
the same inputs and state give the same transitions, with the same
``sequence``, whenever a replay happens.
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Literal

from models import fingerprint
from models.records import AlertTransition, Anomaly, KubeEvent
from streams._rules import spec, trend
from streams._rules.parse import Rule

__all__ = ["RuleState", "Series", "Compiled", "compile_rule", "transition_sequence", "event_labels", "anomaly_labels",
           "EntityPlan", "entity_plan", "observe_planned"]

INACTIVE, PENDING, FIRING = 0, 1, 2
_STATE_VERSION = 1


class Series:
    """The state of one rule on one series: phase, timers, last value, labels, and kind-specific data."""

    __slots__ = ("phase", "active_at", "left_at", "last_t", "value", "labels", "fp", "aux")

    def __init__(self) -> None:
        self.phase = INACTIVE
        self.active_at = 0.0
        self.left_at: float | None = None
        self.last_t = -math.inf
        self.value: float | None = None
        self.labels: dict[str, str] | None = None
        self.fp = ""
        self.aux: Any = None

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.phase, self.active_at, self.left_at, self.last_t, self.value, self.labels, self.fp, self.aux)

    def __setstate__(self, st: tuple[Any, ...]) -> None:
        self.phase, self.active_at, self.left_at, self.last_t, self.value, self.labels, self.fp, self.aux = st


class RuleState:
    """The rule state of one partition key (a node, an event's object, an anomaly's series).

    ``series`` maps rule id to series key to :class:`Series`. ``dirty`` turns
    true on every change; the caller clears it after writing the changelog.
    """

    __slots__ = ("series", "clock", "dirty")

    def __init__(self) -> None:
        self.series: dict[str, dict[str, Series]] = {}
        self.clock = -math.inf
        self.dirty = False

    def __len__(self) -> int:
        return sum(len(d) for d in self.series.values())

    def to_bytes(self) -> bytes:
        """Plain tuples in a pickle: compact, fast, and independent of class layout."""
        body = {rid: {k: s.__getstate__() for k, s in d.items()} for rid, d in self.series.items() if d}
        return pickle.dumps((_STATE_VERSION, self.clock, body), protocol=5)

    @classmethod
    def from_bytes(cls, data: bytes, *, rule_ids: set[str] | None = None) -> RuleState:
        """Rebuild a state; state of rules no longer loaded (``rule_ids``) is dropped."""
        version, clock, body = pickle.loads(data)  # our own changelog, never foreign input
        if version != _STATE_VERSION:
            raise ValueError(f"rule state version {version} is not {_STATE_VERSION}")
        st = cls()
        st.clock = clock
        for rid, d in body.items():
            if rule_ids is not None and rid not in rule_ids:
                continue
            series = {}
            for k, tup in d.items():
                s = Series.__new__(Series)
                s.__setstate__(tup)
                series[k] = s
            st.series[rid] = series
        return st


def transition_sequence(at: float, status: str) -> int:
    """A transition's ``sequence``: strictly increasing per fingerprint, computed from its time.

    Milliseconds since the epoch, doubled, plus one for ``firing``: a firing
    after a resolve in the same millisecond still sorts after it. A counter
    kept in state would restart at 1 once a resolved series is forgotten and a
    consumer deduplicating on ``(fingerprint, sequence)`` would drop the next
    page; a time-derived number never goes back and needs no state.
    """
    return int(round(at * 1000.0)) * 2 + (1 if status == "firing" else 0)


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(round(t, 6), tz=timezone.utc)


_OPS: dict[str, Callable[[float], Callable[[float], bool]]] = {
    ">": lambda thr: lambda v: v > thr,
    ">=": lambda thr: lambda v: v >= thr,
    "<": lambda thr: lambda v: v < thr,
    "<=": lambda thr: lambda v: v <= thr,
    "==": lambda thr: lambda v: v == thr,
    "!=": lambda thr: lambda v: v != thr,
}


class Compiled:
    """A rule ready to evaluate, with the state machine shared by every kind."""

    needs_companions = False

    def __init__(self, rule: Rule, rid: str, *, default_labels: Mapping[str, str], stale_after: float) -> None:
        self.rule = rule
        self.rid = rid
        sp = rule.spec
        self.alertname = sp.alert
        self.for_ = sp.for_
        self.kff = sp.keep_firing_for
        self.stale_after = stale_after
        self.matchers = rule.matchers
        self.templates = rule.annotations
        self.static = {**default_labels, **sp.labels, "alertname": sp.alert, "severity": sp.severity}
        self.threshold: float | None = None
        self._match_cache: dict[str, bool] = {}

    # -- selection ---------------------------------------------------------

    def matches(self, key: str, labels: Mapping[str, str]) -> bool:
        """Matchers against the identity labels, cached per series (regexes are not free)."""
        hit = self._match_cache.get(key)
        if hit is None:
            if len(self._match_cache) > 200_000:
                self._match_cache.clear()
            hit = all(m.matches(labels) for m in self.matchers)
            self._match_cache[key] = hit
        return hit

    def alert_labels(self, identity: Mapping[str, str]) -> dict[str, str]:
        # Prometheus' precedence: series labels, then the rule's, then alertname.
        labels = {k: v for k, v in identity.items() if v}
        labels.update(self.static)
        return labels

    # -- transitions -------------------------------------------------------

    def _transition(self, s: Series, status: Literal["firing", "resolved"], at: float) -> AlertTransition:
        labels = s.labels or {}
        value = s.value if s.value is not None and math.isfinite(s.value) else None
        annotations = {
            name: t.render(labels=labels, value=s.value, threshold=self.threshold, alertname=self.alertname)
            for name, t in self.templates.items()
        }
        return AlertTransition(
            fingerprint=s.fp,
            status=status,
            labels=dict(labels),
            annotations=annotations,
            starts_at=_dt(s.active_at),
            ends_at=_dt(at) if status == "resolved" else None,
            rule=self.rid,
            value=value,
            threshold=self.threshold,
            sequence=transition_sequence(at, status),
        )

    def _enter(self, s: Series, t: float, identity: Mapping[str, str], out: list[AlertTransition]) -> None:
        s.phase = PENDING
        s.active_at = t
        s.left_at = None
        s.labels = self.alert_labels(identity)
        s.fp = fingerprint(s.labels)
        if self.for_ <= 0:
            s.phase = FIRING
            out.append(self._transition(s, "firing", t))

    def _resolve(self, s: Series, at: float, out: list[AlertTransition]) -> None:
        out.append(self._transition(s, "resolved", at))
        self._forget(s)

    @staticmethod
    def _forget(s: Series) -> None:
        s.phase = INACTIVE
        s.left_at = None
        s.labels = None
        s.fp = ""

    def _leave(self, s: Series, t: float, out: list[AlertTransition]) -> None:
        """The condition stopped holding at ``t``."""
        if s.phase == PENDING:
            self._forget(s)
        elif s.phase == FIRING:
            if self.kff <= 0:
                self._resolve(s, t, out)
            elif s.left_at is None:
                s.left_at = t


class _MetricRule(Compiled):
    """Threshold, rate and predict rules: one value per observation of an entity."""

    enter: Callable[[float], bool]
    """Whether a value enters the condition (set by each kind)."""
    stay: Callable[[float], bool]
    """Whether a value keeps the condition once entered."""

    def __init__(self, rule: Rule, rid: str, **kw: Any) -> None:
        super().__init__(rule, rid, **kw)
        sp = rule.spec
        assert isinstance(sp, (spec.ThresholdRule, spec.PredictRule))  # rate rules are threshold rules
        self.metric: str = sp.metric
        guard = getattr(sp, "and_", None)
        self.guard: tuple[str, Callable[[float], bool]] | None = (guard.metric, _OPS[guard.op](guard.threshold)) if guard else None
        self.needs_companions = self.guard is not None

    def _guard_ok(self, companions: Mapping[str, float | None] | None) -> bool:
        if self.guard is None:
            return True
        v = companions.get(self.guard[0]) if companions else None
        return v is not None and self.guard[1](v)

    def _due(self, s: Series, t: float, out: list[AlertTransition]) -> None:
        """Before looking at time ``t``: staleness and keep_firing_for that expired on the way."""
        if t - s.last_t >= self.stale_after:
            if s.phase == FIRING:
                self._resolve(s, s.last_t + self.stale_after, out)
            else:
                self._forget(s)
        elif s.phase == FIRING and s.left_at is not None and t >= s.left_at + self.kff:
            self._resolve(s, s.left_at + self.kff, out)

    def step(
        self,
        rs: dict[str, Series],
        key: str,
        s: Series | None,
        t: float,
        value: float | None,
        enters: bool,
        stays: bool,
        identity: Mapping[str, str],
        out: list[AlertTransition],
        *,
        keep: bool = False,
    ) -> None:
        """Advance one series to observation ``(t, value)``; ``keep`` holds state while inactive."""
        if s is None:
            if not enters:
                return
            s = rs[key] = Series()
        else:
            self._due(s, t, out)
        s.last_t = t
        if value is None:
            # No evidence (too few points for a trend): hold the state, do not move.
            if s.phase == INACTIVE and not keep:
                del rs[key]
            return
        s.value = value
        if s.phase == INACTIVE:
            if enters:
                self._enter(s, t, identity, out)
        elif s.phase == PENDING:
            if not stays:
                self._forget(s)
            elif t - s.active_at >= self.for_:
                s.phase = FIRING
                out.append(self._transition(s, "firing", t))
        else:
            if stays:
                s.left_at = None
            else:
                self._leave(s, t, out)
        if s.phase == INACTIVE and not keep:
            del rs[key]

    def tick(self, rs: dict[str, Series], now: float, out: list[AlertTransition]) -> None:
        for key in list(rs):
            s = rs[key]
            if now - s.last_t >= self.stale_after:
                if s.phase == FIRING:
                    self._resolve(s, s.last_t + self.stale_after, out)
                del rs[key]
            elif s.phase == FIRING and s.left_at is not None and now >= s.left_at + self.kff:
                self._resolve(s, s.left_at + self.kff, out)
                if s.aux is None:
                    del rs[key]

    def _kept(self, st: RuleState, key: str, t: float) -> tuple[dict[str, Series], Series] | None:
        """The state of a series for a rule that keeps its history while inactive (rate, predict), created on first sight.

        None when ``t`` is already folded into it (a replay after restart).
        """
        rs = st.series.get(self.rid)
        if rs is None:
            rs = st.series[self.rid] = {}
        s = rs.get(key)
        if s is None:
            s = rs[key] = Series()
        elif t <= s.last_t:
            return None
        return rs, s

    def _settle(
        self, st: RuleState, kept: tuple[dict[str, Series], Series], key: str, t: float, value: float | None,
        identity: Mapping[str, str], companions: Mapping[str, float | None] | None,
    ) -> list[AlertTransition]:
        """Step a kept series to ``value`` (None: not enough evidence yet, hold) under ``enter``, ``stay`` and the guard."""
        rs, s = kept
        guard = self._guard_ok(companions)
        out: list[AlertTransition] = []
        enters = value is not None and self.enter(value) and guard
        stays = value is not None and self.stay(value) and guard
        self.step(rs, key, s, t, value, enters, stays, identity, out, keep=True)
        st.dirty = True
        return out

    def observe(self, st: RuleState, key: str, identity: Mapping[str, str], v: float, t: float, companions: Mapping[str, float | None] | None) -> list[AlertTransition] | None:
        raise NotImplementedError


class ThresholdCompiled(_MetricRule):
    def __init__(self, rule: Rule, rid: str, **kw: Any) -> None:
        super().__init__(rule, rid, **kw)
        sp = rule.spec
        assert isinstance(sp, spec.ThresholdRule)
        self.threshold = sp.threshold
        self.enter = _OPS[sp.op](sp.threshold)
        self.stay = _OPS[sp.op](sp.threshold if sp.resolve_threshold is None else sp.resolve_threshold)

    def observe(self, st: RuleState, key: str, identity: Mapping[str, str], v: float, t: float, companions: Mapping[str, float | None] | None) -> list[AlertTransition] | None:
        rs = st.series.get(self.rid)
        s = rs.get(key) if rs else None
        if s is None:
            # The hot path: no alert on this series and the value is fine.
            if not self.enter(v) or not self._guard_ok(companions):
                return None
            if rs is None:
                rs = st.series[self.rid] = {}
        elif t <= s.last_t:
            return None  # already folded into this state (a replay after restart)
        guard = self._guard_ok(companions)
        out: list[AlertTransition] = []
        self.step(rs, key, s, t, v, self.enter(v) and guard, self.stay(v) and guard, identity, out)
        st.dirty = True
        return out


class RateCompiled(ThresholdCompiled):
    """Change per second over ``window``: the increase over the window divided by the window.

    The window's points are kept as a step function (a point is stored only
    when the value changes, plus one anchor at or before the window's start),
    so a counter that rarely moves, like ``restart_count``, costs two points.
    """

    def __init__(self, rule: Rule, rid: str, **kw: Any) -> None:
        super().__init__(rule, rid, **kw)
        sp = rule.spec
        assert isinstance(sp, spec.RateRule)
        self.window = sp.window
        self.counter = sp.counter

    def _rate(self, pts: list[float], t: float, v: float) -> float | None:
        had_history = bool(pts)
        if not pts or pts[-1] != v:
            pts.extend((t, v))
        w0 = t - self.window
        while len(pts) >= 4 and pts[2] <= w0:
            del pts[:2]
        if not had_history:
            return None
        if self.counter:
            inc = 0.0
            for i in range(3, len(pts), 2):
                d = pts[i] - pts[i - 2]
                inc += d if d >= 0 else pts[i]
        else:
            inc = v - pts[1]
        return inc / self.window

    def observe(self, st: RuleState, key: str, identity: Mapping[str, str], v: float, t: float, companions: Mapping[str, float | None] | None) -> list[AlertTransition] | None:
        kept = self._kept(st, key, t)
        if kept is None:
            return None
        s = kept[1]
        if s.aux is None or t - s.last_t >= self.stale_after:
            s.aux = []  # new, or stale: the window starts again
        return self._settle(st, kept, key, t, self._rate(s.aux, t, v), identity, companions)


class PredictCompiled(_MetricRule):
    """Seconds until the trend of ``metric`` reaches its limit; fires at ``<= within``."""

    def __init__(self, rule: Rule, rid: str, **kw: Any) -> None:
        super().__init__(rule, rid, **kw)
        sp = rule.spec
        assert isinstance(sp, spec.PredictRule)
        self.sp = sp
        self.threshold = sp.within
        self.resolve_within = sp.resolve_within if sp.resolve_within is not None else sp.within
        self.enter = _OPS["<="](sp.within)
        self.stay = _OPS["<="](self.resolve_within)
        self.tau = sp.window / 2
        self.min_span = sp.min_span if sp.min_span is not None else sp.window / 4
        self.needs_companions = self.needs_companions or sp.limit_metric is not None

    def observe(self, st: RuleState, key: str, identity: Mapping[str, str], v: float, t: float, companions: Mapping[str, float | None] | None) -> list[AlertTransition] | None:
        sp = self.sp
        limit = sp.limit if sp.limit_metric is None else (companions or {}).get(sp.limit_metric)
        if limit is None or limit <= 0:
            return None  # no ceiling (a container without a memory limit): nothing to run out of
        kept = self._kept(st, key, t)
        if kept is None:
            return None
        s = kept[1]
        s.aux = trend.update(s.aux, t, v, tau=self.tau, window=sp.window)
        f = trend.fit(s.aux, min_points=sp.min_points, min_span=self.min_span, min_r2=sp.min_r2)
        tte: float | None
        if f is None:
            tte = 0.0 if v >= limit else None
        else:
            tte = 0.0 if v >= limit else trend.time_to_reach(f[0], f[1], limit)
        return self._settle(st, kept, key, t, tte, identity, companions)


class _WindowRule(Compiled):
    """Event and anomaly rules: the value is how many hits fall in the last ``window``."""

    def __init__(self, rule: Rule, rid: str, **kw: Any) -> None:
        super().__init__(rule, rid, **kw)
        sp = rule.spec
        assert isinstance(sp, spec.EventRule | spec.AnomalyRule)
        self.window = sp.window
        self.count = sp.count
        self.threshold = float(sp.count)
        # Remember an Event's count for this long, so an update of a known
        # Event adds only its increase even when it comes back after the window.
        self.uid_ttl = max(2 * sp.window, 3600.0)

    # aux = [hits: list[[t, n]], uids: dict[uid, [count, t]]]

    def advance(self, s: Series, now: float, out: list[AlertTransition]) -> None:
        """Play the timeline up to ``now``: fire when ``for`` elapses, let go as hits age out."""
        hits, uids = s.aux
        while True:
            expiry = hits[0][0] + self.window if hits else math.inf
            fire_due = s.active_at + self.for_ if s.phase == PENDING else math.inf
            res_due = s.left_at + self.kff if s.phase == FIRING and s.left_at is not None else math.inf
            nxt = min(expiry, fire_due, res_due)
            if nxt > now:
                break
            if fire_due == nxt:
                s.phase = FIRING
                out.append(self._transition(s, "firing", fire_due))
            elif res_due == nxt:
                self._resolve(s, res_due, out)
            else:
                while hits and hits[0][0] + self.window <= expiry:
                    hits.pop(0)
                s.value = float(sum(n for _, n in hits))
                if s.value < self.count:
                    self._leave(s, expiry, out)
        if uids:
            for uid in [u for u, (_, t) in uids.items() if t < now - self.uid_ttl]:
                del uids[uid]

    def hit(self, st: RuleState, key: str, identity: Mapping[str, str], t: float, n: float, out: list[AlertTransition]) -> Series:
        rs = st.series.setdefault(self.rid, {})
        s = rs.get(key)
        if s is None:
            s = rs[key] = Series()
            s.aux = [[], {}]
        t = max(t, s.last_t)  # an out-of-order hit counts as arriving now: the past is already played
        self.advance(s, t, out)
        if n > 0:
            s.aux[0].append([t, n])
            s.value = float(sum(x for _, x in s.aux[0]))
            if s.value >= self.count:
                if s.phase == INACTIVE:
                    self._enter(s, t, identity, out)
                elif s.phase == FIRING:
                    s.left_at = None
        s.last_t = t
        st.dirty = True
        return s

    def tick(self, rs: dict[str, Series], now: float, out: list[AlertTransition]) -> None:
        for key in list(rs):
            s = rs[key]
            self.advance(s, now, out)
            if s.phase == INACTIVE and not s.aux[0] and not s.aux[1]:
                del rs[key]


def event_labels(event: KubeEvent) -> dict[str, str]:
    """Identity labels of an Event's involved object: ``pod``/``node``/... named after its kind.

    >>> from models.records import ObjectRef
    >>> ev = KubeEvent(cluster="c1", uid="u", namespace="shop", name="e", reason="BackOff",
    ...     involved_object=ObjectRef(kind="Pod", name="cart-1", field_path="spec.containers{cart}"))
    >>> event_labels(ev)
    {'cluster': 'c1', 'namespace': 'shop', 'pod': 'cart-1', 'container': 'cart'}
    """
    obj = event.involved_object
    labels = {"cluster": event.cluster}
    ns = obj.namespace or event.namespace
    if ns and obj.kind != "Node":
        labels["namespace"] = ns
    labels[obj.kind.lower()] = obj.name
    if obj.field_path:
        m = _CONTAINER_PATH.search(obj.field_path)
        if m:
            labels["container"] = m.group(1)
    return labels


_CONTAINER_PATH = re.compile(r"(?:initC|ephemeralC|c)ontainers\{([^}]+)\}")


class EventCompiled(_WindowRule):
    def __init__(self, rule: Rule, rid: str, **kw: Any) -> None:
        super().__init__(rule, rid, **kw)
        sp = rule.spec
        assert isinstance(sp, spec.EventRule)
        self.reasons = frozenset(sp.reasons)
        self.event_type = sp.event_type
        self.kinds = frozenset(sp.involved_kinds)
        self.message = re.compile(sp.message) if sp.message else None
        self.resolve_reasons = frozenset(sp.resolve_reasons)

    def selects(self, event: KubeEvent) -> bool:
        if self.kinds and event.involved_object.kind not in self.kinds:
            return False
        if event.reason not in self.reasons:
            return True  # an all-clear reason: type and message filters are for the hits
        if self.event_type is not None and event.type != self.event_type:
            return False
        if self.kinds and event.involved_object.kind not in self.kinds:
            return False
        return self.message is None or self.message.search(event.message) is not None

    def observe(self, st: RuleState, event: KubeEvent, identity: Mapping[str, str], t: float) -> list[AlertTransition]:
        key = "/".join(identity.get(k, "") for k in sorted(identity))
        out: list[AlertTransition] = []
        rs = st.series.get(self.rid)
        s = rs.get(key) if rs else None
        if event.reason in self.resolve_reasons and event.reason not in self.reasons:
            if s is not None and t > s.last_t:
                # The all-clear (e.g. NodeHasSufficientMemory): forget the hits, let go now.
                self.advance(s, t, out)
                s.aux[0].clear()
                s.value = 0.0
                self._leave(s, t, out)
                s.last_t = t
                st.dirty = True
            return out
        known = s.aux[1].get(event.uid) if s is not None else None
        # Event.count is cumulative per Event object: count only the increase.
        n = event.count - known[0] if known else event.count
        if known and n <= 0:
            return out  # a repeat (relist, replay): nothing new happened
        s = self.hit(st, key, identity, t, max(n, 0), out)
        s.aux[1][event.uid] = [event.count, s.last_t]
        return out


def anomaly_labels(anomaly: Anomaly) -> dict[str, str]:
    labels = {"cluster": anomaly.cluster}
    for name in ("node", "namespace", "workload", "pod", "container"):
        v = getattr(anomaly, name)
        if v:
            labels[name] = v
    labels["metric"] = anomaly.metric
    return labels


class AnomalyCompiled(_WindowRule):
    def __init__(self, rule: Rule, rid: str, **kw: Any) -> None:
        super().__init__(rule, rid, **kw)
        sp = rule.spec
        assert isinstance(sp, spec.AnomalyRule)
        self.metrics = frozenset(sp.metrics)
        self.min_score = sp.min_score

    def selects(self, anomaly: Anomaly) -> bool:
        if self.metrics and anomaly.metric not in self.metrics:
            return False
        return self.min_score is None or anomaly.score >= self.min_score

    def observe(self, st: RuleState, anomaly: Anomaly, identity: Mapping[str, str], t: float) -> list[AlertTransition]:
        out: list[AlertTransition] = []
        rs = st.series.get(self.rid)
        s = rs.get(anomaly.series_id) if rs else None
        if s is not None and t <= s.last_t:
            return out  # already counted (a replay)
        self.hit(st, anomaly.series_id, identity, t, 1.0, out)
        return out


_KINDS: dict[str, type[Compiled]] = {
    "threshold": ThresholdCompiled,
    "rate": RateCompiled,
    "predict": PredictCompiled,
    "event": EventCompiled,
    "anomaly": AnomalyCompiled,
}


def compile_rule(rule: Rule, rid: str, *, default_labels: Mapping[str, str], stale_after: float) -> Compiled:
    return _KINDS[rule.kind](rule, rid, default_labels=default_labels, stale_after=stale_after)


EntityPlan = tuple[tuple[int, tuple[_MetricRule, ...]], ...]
"""Positions in an entity's ``metrics`` that rules select, each with those rules."""


def entity_plan(by_metric: Mapping[str, tuple[_MetricRule, ...]], names: tuple[str, ...]) -> EntityPlan:
    """The rules of one entity shape (its metric names in order): computed once per shape, not per scrape."""
    return tuple((j, by_metric[name]) for j, name in enumerate(names) if name in by_metric)


def observe_planned(plan: EntityPlan, prefix: str, labels: Mapping[str, str], metrics: list[tuple[str, float | None]],
                    t: float, state: RuleState) -> list[AlertTransition]:
    """``RuleEngine.observe_entity`` for an entity whose shape's rules are ``plan``, at time ``t`` (epoch s).

    The same evaluation, in the same order, without looking up every metric
    of the entity or converting the scrape time once per entity.
    """
    out: list[AlertTransition] = []
    companions: dict[str, float | None] | None = None
    clocked = False
    for j, rules in plan:
        value = metrics[j][1]
        if value is None:
            continue
        if not clocked:
            clocked = True
            if t > state.clock:
                state.clock = t
        for rule in rules:
            if rule.matchers and not rule.matches(prefix, labels):
                continue
            if rule.needs_companions and companions is None:
                companions = dict(metrics)
            got = rule.observe(state, prefix, labels, value, t, companions)
            if got:
                out += got
    return out
