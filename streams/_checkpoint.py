"""Checkpoints of the worker's keyed state: write what changed to its table, then ack the input it includes.

Agents that keep state per key (``process_scrapes``: a node's windows,
detectors and rules; ``aggregate_clusters``: a cluster's open buckets) read
their input with ``noack()``, keep working copies in memory, and mark keys
dirty per input partition. :meth:`Checkpoints.checkpoint` then, for every
input partition not in the middle of a message:

1. serialises its dirty states (no message is half done there),
2. waits until every output sent so far is on its topic,
3. writes the states to the table's changelog, on the input partition
   (tombstones for forgotten keys),
4. acks the partition's messages; Faust commits them later, flushing the
   changelog first.

So a committed offset is always covered by a written state, and a written
state never includes a message whose outputs could still be lost. Each state
records the input offset it includes, so the replay after a crash skips what
it already holds. A revocation bumps ``generation``: a message or checkpoint
begun before it is dropped, not acked (its partition may be someone else's).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from streams import _metrics as M

__all__ = ["Checkpoints", "Stateful"]

TP = tuple[str, int]


class Stateful(Protocol):
    def dumps(self) -> bytes: ...


class _Table:
    __slots__ = ("table", "name", "cache")

    def __init__(self, table: Any, name: str) -> None:
        self.table = table
        self.name = name
        self.cache: dict[bytes, Stateful] = {}


class Checkpoints:
    """Dirty keys, held messages and forgotten keys per input partition, and the checkpoint that settles them."""

    def __init__(self, *, interval_s: float, flush: Callable[[], Awaitable[None]]) -> None:
        self.interval_s = interval_s
        self._flush = flush
        self._tables: dict[str, _Table] = {}
        self.pending: dict[TP, list[Any]] = defaultdict(list)
        self.dirty: dict[TP, set[bytes]] = defaultdict(set)
        self.forget: dict[TP, set[bytes]] = defaultdict(set)
        self.busy: set[TP] = set()
        """Input partitions of the messages agents are in the middle of: their states may be ahead of the outputs sent."""
        self.generation = 0
        self.last = time.monotonic()
        self._lock = asyncio.Lock()

    def register(self, topic: str, table: Any, name: str) -> dict[bytes, Any]:
        """State of the agent reading ``topic`` lives in ``table``; returns the working copies (key → state)."""
        t = self._tables[topic] = _Table(table, name)
        return t.cache

    def forget_key(self, tp: TP, key: bytes) -> None:
        """Drop ``key``'s working copy; its table entry is deleted (a tombstone) at the next checkpoint."""
        self._tables[tp[0]].cache.pop(key, None)
        self.dirty[tp].discard(key)
        self.forget[tp].add(key)

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval_s

    async def done(self, tp: TP, event: Any, generation: int) -> None:
        """An agent finished a message begun at ``generation``: ack it at the next checkpoint (now if due).

        Revoked while it was in flight, it is dropped instead: its partition is replayed from the
        commit, here or on another worker, and acking it could commit past unwritten state.
        """
        self.busy.discard(tp)
        if generation == self.generation:
            self.pending[tp].append(event)
        if self.due():
            await self.checkpoint()

    async def checkpoint(self) -> int:
        """Write the changed states, then ack the messages they include; return how many states were written."""
        async with self._lock:
            generation = self.generation
            snapshot: list[tuple[TP, _Table, list[tuple[bytes, bytes]], list[bytes], list[Any]]] = []
            for tp in list(self.pending):
                if tp in self.busy:
                    continue
                t = self._tables[tp[0]]
                writes = [(key, t.cache[key].dumps()) for key in self.dirty.pop(tp, ()) if key in t.cache]
                # A forgotten key that got input again before this checkpoint is back in the cache: keep it.
                drops = [key for key in self.forget.pop(tp, ()) if key not in t.cache]
                snapshot.append((tp, t, writes, drops, self.pending.pop(tp)))
            self.last = time.monotonic()
            if not snapshot:
                return 0
            await self._flush()
            if generation != self.generation:
                return 0  # revoked meanwhile: the replay redoes this work where the partition went
            written = 0
            for (_topic, p), t, writes, drops, events in snapshot:
                for key, data in writes:
                    # Not `table[key] = data`: Faust takes the changelog partition from the current
                    # event, and a checkpoint also runs from the timer and the rebalance hook.
                    t.table.data[key] = data
                    t.table.send_changelog(p, key, data)
                    M.CHECKPOINTS.labels(t.name).inc()
                    M.CHECKPOINT_BYTES.labels(t.name).inc(len(data))
                for key in drops:
                    t.table.data.pop(key, None)
                    t.table.send_changelog(p, key, None, value_serializer="raw")  # a tombstone
                    M.STATES_FORGOTTEN.labels(t.name).inc()
                written += len(writes)
                for ev in events:
                    ev.ack()
            return written

    def revoked(self) -> None:
        """After the revoke hook's checkpoint: drop every working copy (the table and the replay rebuild them)."""
        self.generation += 1
        for t in self._tables.values():
            t.cache.clear()
        self.dirty.clear()
        self.pending.clear()
        self.forget.clear()
