"""Rule state per record key, kept in a Faust table and written with each message: Events and ResourceQuotas.

``process_events`` (key: the Event's involved object) and ``process_quotas``
(key: the ResourceQuota) read few records, so each message's rule state is
written to the table right away, with the message's offset: a message at or
below it (the replay after a crash) is skipped, and a transition replayed
before the write carries the same ``sequence`` and is dropped by
``PublishedAlerts``. Keys that fall silent are ticked from their partition's
event time (``streams._idle``), and an empty state is deleted.
"""

from __future__ import annotations

import pickle
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from models.records import AlertTransition
from streams import _metrics as M
from streams._idle import PartitionClocks

__all__ = ["KeyedRules"]

Observe = Callable[[Any], list[AlertTransition]]


class KeyedRules:
    """One table of ``(offset, RuleState bytes)`` per key, its partition clocks and its ticks."""

    def __init__(self, table: Any, engine: Any, *, name: str, step_s: float, lag_s: float,
                 publish: Callable[[list[AlertTransition]], Awaitable[None]]) -> None:
        self.table = table
        self.engine = engine
        self.name = name
        self.lag_s = lag_s
        """Silent keys are ticked to the partition's clock less this (a collector a little behind is not late)."""
        self.publish = publish
        self.clocks = PartitionClocks(step_s=step_s)

    async def apply(self, message: Any, key: bytes, when: datetime | None, observe: Observe) -> bool:
        """Run ``observe(state)`` for one message of ``key`` (at data time ``when``); False if it was a replay.

        Must run inside the agent reading ``message``: Faust writes the changelog to the current
        event's partition, which is the key's.
        """
        raw = self.table.get(key)
        if raw is not None:
            offset, rules_bytes = pickle.loads(raw)  # our own changelog, never foreign input
            if message.offset <= offset:
                M.DUPLICATES_SUPPRESSED.labels("input").inc()
                return False
            state = self.engine.state_from_bytes(rules_bytes)
        else:
            state = self.engine.new_state()
        transitions = list(observe(state))
        if when is not None:
            transitions += self.engine.tick(when, state=state)
        await self.publish(transitions)
        self.table[key] = pickle.dumps((message.offset, state.to_bytes()))
        p = message.partition
        clocks = self.clocks
        clocks.seed(p, self.table)
        clocks.keys[p].add(key)
        if when is not None and clocks.advance(p, when.timestamp()):
            await self._tick(p, skip=key)
        return True

    async def _tick(self, p: int, *, skip: bytes) -> None:
        """Tick the states of partition ``p`` to its clock less the lag; delete the empty ones."""
        now = datetime.fromtimestamp(self.clocks.time[p] - self.lag_s, UTC)
        keys = self.clocks.keys[p]
        for key in sorted(keys):
            if key == skip:
                continue
            raw = self.table.get(key)
            if raw is None:
                keys.discard(key)
                continue
            offset, rules_bytes = pickle.loads(raw)
            state = self.engine.state_from_bytes(rules_bytes)
            await self.publish(self.engine.tick(now, state=state))
            if not len(state):
                del self.table[key]
                keys.discard(key)
                M.STATES_FORGOTTEN.labels(self.name).inc()
            elif state.dirty:
                self.table[key] = pickle.dumps((offset, state.to_bytes()))
                M.SILENT_TICKS.labels(self.name).inc()

    def reset(self) -> None:
        """After a rebalance: the keys of each partition are learned again from the table."""
        self.clocks.reset()
