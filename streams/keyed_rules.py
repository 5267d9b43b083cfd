"""Reads kubepulse.events.v1 and kubepulse.quotas.v1, writes kubepulse.alerts.v1: rule state per record key.

``process_events`` (key: the Event's involved object) counts Events against
event rules (OOMKilled, CrashLoopBackOff, Evicted...); ``process_quotas``
(key: the ResourceQuota) evaluates quota rules (KubeQuotaAlmostFull...). Each
key's ``RuleState`` and the input offset it includes is one entry of a table
(``event_key_to_rules``, ``quota_key_to_rules``), checkpointed like every
keyed state (``streams._state``): a message at or below the offset is a
replay and skipped, a transition replayed before the write carries the same
``sequence`` and is dropped by ``Runtime.publish_transitions``. Keys that fall
silent are ticked from their partition's event time (less the window grace,
so a collector a little behind is not late), and an empty state is deleted.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from models.records import AlertTransition, DeadLetter, Record
from streams import _metrics as M
from streams._runtime import Runtime
from streams._state import Checkpointer, KeyedState, restamp
from streams.codec import decode_or_dead_letter
from streams.topics import TopicSpec

__all__ = ["RulesOfKey", "register_keyed_rules"]

log = logging.getLogger(__name__)

TICK_STEP_S = 60.0
"""How often (partition event time) the keys of a partition are ticked."""


class RulesOfKey:
    """One key's rule state and the input offset it includes (one table entry)."""

    __slots__ = ("key", "offset", "rules", "last_ts")

    def __init__(self, key: bytes, rules: Any, *, offset: int = -1) -> None:
        self.key = key
        self.offset = offset
        self.rules = rules
        self.last_ts = 0.0

    def chunks(self, *, everything: bool = False) -> list[tuple[bytes, bytes | None]]:
        return [(self.key, pickle.dumps((self.offset, self.rules.to_bytes()), protocol=pickle.HIGHEST_PROTOCOL))]


Observe = Callable[[Any, Any], list[AlertTransition]]


def register_keyed_rules(rt: Runtime, cp: Checkpointer, *, spec: TopicSpec, name: str, table: str, engine: Any,
                         observe: Observe) -> Any:
    """An agent reading ``spec``'s records: ``observe(record, rule state)`` per record key, transitions out."""
    s = rt.settings.streams
    model: type[Record] = spec.value_type
    topic = rt.topic(spec)

    def load(key: bytes, header: bytes, entries: list[bytes]) -> RulesOfKey:
        offset, rules = pickle.loads(header)  # our own changelog, never foreign input
        return RulesOfKey(key, engine.state_from_bytes(rules), offset=offset)

    state = cp.register(topic.get_topic_name(), KeyedState(
        rt.table(table), name=table, step_s=TICK_STEP_S, load=load,
        new=lambda key: RulesOfKey(key, engine.new_state())))

    def get(key: bytes, p: int) -> RulesOfKey:
        return state.get(key, p)  # type: ignore[no-any-return]

    def tick(p: int, offset: int, *, skip: bytes) -> None:
        """Tick the states of partition ``p`` to its clock less the grace; forget the empty ones."""
        now = datetime.fromtimestamp(state.clocks.time[p] - s.window_grace_s, UTC)
        for key in sorted(state.keys(p)):
            if key == skip:
                continue
            st = get(key, p)
            rt.publish_transitions(engine.tick(now, state=st.rules))
            if not len(st.rules):
                state.forget(key, p)
            elif st.rules.dirty:
                st.rules.dirty = False
                state.touch(key, p, offset)
                M.SILENT_TICKS.labels(table).inc()

    def handle(msg: Any) -> None:
        if engine is None:
            return
        rec = decode_or_dead_letter(model, msg.value, source_topic=msg.topic, partition=msg.partition,
                                    offset=msg.offset, key=msg.key)
        if isinstance(rec, DeadLetter):
            rt.send_dead_letter(rec)
            return
        key, p = rec.key.encode(), msg.partition
        st = get(key, p)
        if msg.offset <= st.offset:
            M.DUPLICATES_SUPPRESSED.labels("input").inc()
            return
        st.offset = msg.offset
        # An object's time is its own (an Event's last seen), but no later than Kafka's receive time plus the
        # allowed skew: an Event stamped 9999-12-31 would move the partition's clock and age everyone out.
        when = restamp(rec, received=msg.timestamp, max_skew_s=s.max_clock_skew_s, topic=msg.topic)
        transitions = list(observe(rec, st.rules))
        if when is not None:
            transitions += engine.tick(when, state=st.rules)
        rt.publish_transitions(transitions)
        state.touch(key, p, msg.offset)
        if when is not None and state.clocks.advance(p, when.timestamp()):
            tick(p, msg.offset, skip=key)

    return cp.agent(topic, name=name, stage="rules", handle=handle,
                    doc=f"{spec.name} → kubepulse.alerts.v1 ({name}: rule state per {spec.key}).")
