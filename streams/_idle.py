"""Event time per input partition, and the table keys each partition holds: how the worker finds silent keys.

A node that stops sending scrapes (deleted, crashed, its collector cut off)
gets no more input, so nothing would close its windows or let its alerts go
stale. The worker keeps, per input partition, the newest event time it has
processed (:class:`PartitionClocks`) and ticks the keys of that partition
that fell silent, at most once per ``step_s`` of event time. The clock is
data time, not wall time: a replay of the partition ticks the same keys the
same way, and the rule engine dates every transition from the data anyway.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["PartitionClocks", "table_keys"]


class PartitionClocks:
    """Newest event time and known keys per partition, since the last rebalance.

    >>> c = PartitionClocks(step_s=15)
    >>> c.advance(0, 91.0), c.advance(0, 104.0), c.advance(0, 95.0), c.advance(0, 121.0)
    (True, False, False, True)
    >>> c.time[0]
    121.0
    """

    def __init__(self, *, step_s: float) -> None:
        if step_s <= 0:
            raise ValueError("step_s must be positive")
        self.step_s = step_s
        self.time: dict[int, float] = {}
        self.keys: dict[int, set[bytes]] = defaultdict(set)
        self._step: dict[int, int] = {}
        self._seeded: set[int] = set()

    def seed(self, partition: int, table: Any) -> None:
        """Add the keys ``table`` holds for ``partition``, once per partition since the last reset.

        After a restart a silent key is only in the table: without this it would never be ticked.
        Once is enough: from then on the caller adds every key it loads.
        """
        if partition not in self._seeded:
            self._seeded.add(partition)
            self.keys[partition] |= table_keys(table, partition)

    def advance(self, partition: int, ts: float) -> bool:
        """Move ``partition``'s event time to ``ts`` (never back); True when it entered a new step.

        The first call for a partition (after start or a rebalance) is True: its keys are looked at once.
        """
        if ts > self.time.get(partition, float("-inf")):
            self.time[partition] = ts
        step = int(self.time[partition] // self.step_s)
        if self._step.get(partition) == step:
            return False
        self._step[partition] = step
        return True

    def reset(self) -> None:
        """After a rebalance: partitions and their keys are learned again from the table."""
        self.time.clear()
        self.keys.clear()
        self._step.clear()
        self._seeded.clear()


def table_keys(table: Any, partition: int) -> set[bytes]:
    """Keys a Faust table holds for ``partition`` after changelog recovery.

    Faust's in-memory store records each recovered key's changelog partition
    (``Store._key_partition``, faust-streaming 0.15): the changelog partition
    of a key is the input partition that wrote it. Keys this worker wrote
    itself are tracked by the caller. Re-check on a Faust upgrade: without
    that index this returns nothing, and a node silent since before a restart
    is only ticked once it sends again.
    """
    store = table.data
    index = getattr(store, "_key_partition", None) or {}
    return {k for k in list(store.keys()) if index.get(k) == partition}
