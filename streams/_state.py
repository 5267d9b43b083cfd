"""Keyed state of the stream agents, written once and used by all: working copies, checkpoints, acks, clocks.

Every stateful agent (``process_scrapes``: a node's windows, detectors and
rules; ``process_events`` / ``process_quotas``: rule state per object;
``aggregate_clusters``: a cluster's open sums) keeps one
:class:`KeyedState`: the working copy of each key's state, loaded from its
Faust table on first use; which keys changed since they were last written,
and from which input offset on; the keys of each input partition (found in
the table after a restart, so a silent key is still ticked) with the
partition's event-time clock; and the keys to forget (tombstones).

A key's state may be several table entries (``chunks()``: a node is a header
and one entry per pod, see ``streams.pipeline``); its entries all go to the
changelog partition of its input partition, and the table's key index says
which entries belong to which key (``CHUNK_SEP``).

:class:`Checkpointer` then settles them. Every message an agent finishes is
*held*; about every ``streams.checkpoint_interval_s`` (each key on its own
phase, so the writes are spread in time), a key's changed entries are
written. A checkpoint:

1. serialises the due keys (synchronously: an agent queues a message's
   outputs and marks its key changed with no await in between, so a snapshot
   never holds a message without its outputs);
2. waits until every output queued so far is confirmed by the broker;
3. writes the entries to the changelog and waits for those too;
4. acks, per input partition, every held message below the oldest offset
   not yet in a written state (and not in the middle of being processed);
   Faust commits what is acked.

So a committed offset is always covered by written state, and a written
state never includes a message whose outputs could still be lost. Each
state records the input offset it includes, so the replay after a crash
skips what it already holds. A write that cannot be confirmed keeps the
input unacked; the outbox retries it, ``/readyz`` turns false, and after
``streams.write_failure_timeout_s`` the worker exits non-zero
(``Runtime.fatal``). A revocation checkpoints everything and bumps
``generation``: a message begun before it is dropped, not acked (its
partition may be someone else's now, and is replayed from the commit).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from datetime import UTC, datetime
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from streams import _metrics as M
from streams._runtime import Runtime, table_keys
from streams.errors import WriteFailed

__all__ = ["Stateful", "KeyedState", "Checkpointer", "PartitionClocks", "CHUNK_SEP", "bounded_time", "restamp"]

log = logging.getLogger(__name__)

CHUNK_SEP = b"\x1f"
"""Between a key and the id of one of its entries (``b"c1/n1\\x1fshop/cart-1"``); no name holds it."""

TP = tuple[str, int]


class Stateful(Protocol):
    """A key's working state: the entries that changed since the last call (None deletes one)."""

    def chunks(self, *, everything: bool = False) -> list[tuple[bytes, bytes | None]]: ...


class PartitionClocks:
    """Newest event time per partition, and whether it entered a new step: when to look for silent keys.

    A key that stops getting input (a node deleted, crashed, its collector cut
    off) would otherwise never close its windows or let its alerts go stale.
    The clock is data time, not wall time: a replay ticks the same keys the
    same way, and the rule engine dates every transition from the data anyway.

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
        self._step: dict[int, int] = {}

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
        self.time.clear()
        self._step.clear()


def bounded_time(ts: datetime, *, received: float | None, max_skew_s: float) -> datetime:
    """A scrape's timestamp, but no later than Kafka's receive time (epoch s) plus ``max_skew_s``.

    >>> t = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    >>> bounded_time(t, received=t.timestamp() - 600, max_skew_s=120).isoformat()
    '2026-01-01T00:02:00+00:00'
    >>> bounded_time(t, received=t.timestamp(), max_skew_s=120) == t
    True
    """
    if received is None or received <= 0:
        return ts
    limit = received + max_skew_s
    if ts.timestamp() <= limit:
        return ts
    return datetime.fromtimestamp(limit, UTC)


def restamp(record: Any, *, received: float | None, max_skew_s: float, topic: str) -> datetime | None:
    """Bound a record's own time(s) (``timestamp``, ``first_seen``, ``last_seen``) by :func:`bounded_time`.

    Returns the record's time after it (None when it has none); the record is changed in place, and
    the change counted (``kubepulse_stream_clock_clamped_total`` of ``topic``), only when it was too far ahead.

    >>> from models.records import KubeEvent, ObjectRef
    >>> ev = KubeEvent(cluster="c", uid="u", namespace="n", name="e", reason="BackOff", last_seen=datetime(9999, 12, 31,
    ...                tzinfo=UTC), involved_object=ObjectRef(kind="Pod", name="p"))
    >>> restamp(ev, received=1_767_225_600.0, max_skew_s=120, topic="t").isoformat(), ev.last_seen.year
    ('2026-01-01T00:02:00+00:00', 2026)
    """
    when = getattr(record, "timestamp", None)
    if when is None:
        return None
    bounded = bounded_time(when, received=received, max_skew_s=max_skew_s)
    if bounded != when:
        for name in ("timestamp", "first_seen", "last_seen"):
            t = getattr(type(record), name, None)
            if isinstance(t, property):
                continue  # derived (KubeEvent.timestamp): its sources are bounded instead
            v = getattr(record, name, None)
            if v is not None and v > bounded:
                setattr(record, name, bounded)
        M.CLOCK_CLAMPED.labels(topic).inc()
    return bounded


def _phase(key: bytes) -> float:
    """A key's own fraction in [0, 1): spreads the keys' checkpoints over the interval."""
    return (zlib.crc32(key) & 0xFFFF) / 0x10000


class KeyedState:
    """The working copies of one table's keys, what changed, what to forget, and the keys of each partition.

    ``load(key, header, entries)`` rebuilds a key's state from its table entries (``header`` is the
    entry under the key itself, ``entries`` those under ``key + CHUNK_SEP + ...``); ``new(key)`` makes a
    fresh one. Both return an object with ``chunks()`` (:class:`Stateful`).
    """

    def __init__(self, table: Any, *, name: str, load: Callable[[bytes, bytes, list[bytes]], Any],
                 new: Callable[[bytes], Any], step_s: float) -> None:
        self.table = table
        self.name = name
        self._load = load
        self._new = new
        self.cache: dict[bytes, Any] = {}
        self.partition_of: dict[bytes, int] = {}
        self.dirty: dict[bytes, tuple[int, float]] = {}
        """Key → (first input offset applied since it was last written, monotonic time of that)."""
        self.forgotten: dict[bytes, int] = {}
        """Key → partition, for keys whose entries are deleted at the next checkpoint."""
        self.clocks = PartitionClocks(step_s=step_s)
        self._keys: dict[int, set[bytes]] = defaultdict(set)
        self._entries: dict[bytes, set[bytes]] = defaultdict(set)
        """Key → the keys of its other table entries (``key + CHUNK_SEP + ...``)."""
        self._seeded: set[int] = set()

    # -- keys ----------------------------------------------------------------------

    def keys(self, partition: int) -> set[bytes]:
        """The keys of ``partition``: those in the table (after recovery, found once) and those used since."""
        if partition not in self._seeded:
            self._seeded.add(partition)
            for k in table_keys(self.table, partition):
                owner = k.split(CHUNK_SEP, 1)[0]
                self._keys[partition].add(owner)
                if owner != k:
                    self._entries[owner].add(k)
        return self._keys[partition]

    def get(self, key: bytes, partition: int) -> Any:
        """The working state of ``key`` (loaded from the table, or new)."""
        st = self.cache.get(key)
        if st is None:
            store = self.table.data
            self.keys(partition).add(key)
            header = store.get(key)
            if header is None:
                st = self._new(key)
            else:
                st = self._load(key, header, [store[k] for k in sorted(self._entries.get(key, ())) if k in store])
            self.cache[key] = st
            self.partition_of[key] = partition
        return st

    def touch(self, key: bytes, partition: int, offset: int) -> None:
        """``key``'s state now includes the message at ``offset`` (of ``partition``): it must be written."""
        if key not in self.dirty:
            self.dirty[key] = (offset, time.monotonic())
        self.partition_of[key] = partition

    def forget(self, key: bytes, partition: int) -> None:
        """Drop ``key``: its working copy now, its table entries at the next checkpoint."""
        self.cache.pop(key, None)
        self.dirty.pop(key, None)
        self._keys[partition].discard(key)
        self.forgotten[key] = partition
        M.STATES_FORGOTTEN.labels(self.name).inc()

    def frontier(self, partition: int) -> int | None:
        """The oldest input offset of ``partition`` that no written state includes yet (None: there is none)."""
        offsets = [o for k, (o, _) in self.dirty.items() if self.partition_of.get(k) == partition]
        return min(offsets) if offsets else None

    # -- checkpoints ---------------------------------------------------------------

    def due(self, *, interval_s: float, everything: bool) -> list[bytes]:
        """Keys whose changes have waited their interval (each key's own: between 1 and 1.5 intervals)."""
        if everything:
            return list(self.dirty)
        now = time.monotonic()
        return [k for k, (_, since) in self.dirty.items() if now - since >= interval_s * (1.0 + 0.5 * _phase(k))]

    def snapshot(self, keys: Iterable[bytes], *, everything: bool = False) -> dict[int, list[tuple[bytes, bytes | None]]]:
        """Serialise ``keys`` (and the tombstones of forgotten keys), by partition; they are clean afterwards."""
        out: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)
        for key in keys:
            st = self.cache.get(key)
            self.dirty.pop(key, None)
            if st is None:
                continue
            entries = st.chunks(everything=everything)
            out[self.partition_of[key]].extend(entries)
            known = self._entries[key]
            for k, v in entries:
                if k != key:
                    (known.discard if v is None else known.add)(k)
        for key, partition in self.forgotten.items():
            if key in self.cache:
                continue  # it got input again before this checkpoint: kept
            out[partition].extend((k, None) for k in [*sorted(self._entries.pop(key, ())), key])
        self.forgotten.clear()
        return out

    def revoked(self) -> None:
        """After a rebalance: working copies and partitions are learned again from the table."""
        self.cache.clear()
        self.partition_of.clear()
        self.dirty.clear()
        self.forgotten.clear()
        self._keys.clear()
        self._entries.clear()
        self._seeded.clear()
        self.clocks.reset()


def _lag(rt: Runtime, msg: Any) -> None:
    """``kubepulse_stream_consumer_lag``: records of the message's partition behind it (0: caught up)."""
    try:
        highwater = rt.app.consumer.highwater(msg.tp)
    except Exception:  # noqa: BLE001 - not known yet (just assigned): nothing to report
        return
    if highwater is not None:
        M.CONSUMER_LAG.labels(msg.topic, str(msg.partition)).set(max(0, highwater - msg.offset - 1))


class Checkpointer:
    """Holds finished messages until the state that includes them is written, then acks them (see the module doc)."""

    def __init__(self, runtime: Runtime, *, interval_s: float) -> None:
        self.runtime = runtime
        self.interval_s = interval_s
        self.states: dict[str, KeyedState] = {}
        """Input topic name → the state its agent keeps."""
        self.held: dict[TP, deque[tuple[int, Any]]] = defaultdict(deque)
        self.busy: dict[TP, int] = {}
        """Input partition → offset of the message an agent is in the middle of."""
        self.generation = 0
        self._lock = asyncio.Lock()
        app = runtime.app

        @app.on_partitions_revoked.connect
        async def _revoked(sender: Any, revoked: Any, **kw: Any) -> None:
            # Write what is done (a clean handover: whoever gets a partition next skips everything up to
            # here), then drop the working copies: Faust seeks every assigned partition back to its
            # committed offset, and the table plus that replay rebuild them.
            await self.run(everything=True)
            self.generation += 1
            self.held.clear()
            self.busy.clear()
            M.HELD_MESSAGES.set(0)
            for st in self.states.values():
                st.revoked()
            runtime.guard.reset()

        @app.on_before_shutdown.connect
        async def _shutdown(sender: Any, **kw: Any) -> None:
            # The consumer commits what is acked when it stops, after this: a clean stop replays nothing.
            await self.run(everything=True)

        @app.timer(1.0)
        async def checkpoint_due_keys() -> None:
            """Write the keys whose interval is up and ack what they cover; repair stalled partitions."""
            await self.run()
            if not app.rebalancing:
                await runtime.guard.repair_stalls()

    def register(self, topic: str, state: KeyedState) -> KeyedState:
        self.states[topic] = state
        return state

    def agent(self, topic: Any, *, name: str, stage: str, handle: Callable[[Any], None], doc: str) -> Any:
        """Register the agent ``name`` reading ``topic``: ``handle(message)`` per message, then hold it.

        ``handle`` is synchronous: it changes the key's state (``KeyedState.touch``) and queues the
        outputs together, with no await in between, so a checkpoint never snapshots one without the
        other. Whatever it raises becomes a dead letter of ``stage``: nothing escapes an agent.
        """
        rt = self.runtime
        rt.input(topic)

        async def agent(stream: Any) -> None:
            async for event in stream.noack().events():
                msg = event.message
                if not await rt.guard.admit(msg):
                    continue  # not acked: it is read again, in order (see OffsetGuard)
                M.RECORDS_IN.labels(msg.topic).inc()
                generation = self.begin(msg)
                await rt.prepare()
                try:
                    handle(msg)
                except Exception as exc:  # noqa: BLE001 - nothing escapes an agent: dead-letter and go on
                    log.exception("%s: message at %s[%s]@%s failed", name, msg.topic, msg.partition, msg.offset)
                    rt.dead_letter(exc, stage=stage, message=msg)
                self.end(event, generation)
                _lag(rt, msg)
                await rt.outbox.drain()

        agent.__doc__ = doc
        return rt.app.agent(topic, name=name)(agent)

    # -- messages --------------------------------------------------------------------

    def begin(self, message: Any) -> int:
        """An agent starts on ``message``; returns the generation to hand to :meth:`end`."""
        self.busy[(message.topic, message.partition)] = message.offset
        return self.generation

    def end(self, event: Any, generation: int) -> None:
        """An agent finished ``event``: hold it until its state is written. Begun before a revocation: dropped."""
        msg = event.message
        tp = (msg.topic, msg.partition)
        if self.busy.get(tp) == msg.offset:
            del self.busy[tp]
        if generation != self.generation:
            return
        # Held for up to a checkpoint interval: keep the offset, not the payload (a whole node scrape).
        msg.value = None
        event.value = None
        self.held[tp].append((msg.offset, event))
        M.HELD_MESSAGES.inc()

    # -- checkpoints -------------------------------------------------------------------

    async def run(self, *, everything: bool = False) -> None:
        """Write due (or all) changed keys, then ack what written state covers. Exits the worker on WriteFailed."""
        try:
            await self._run(everything=everything)
        except WriteFailed as exc:
            self.runtime.fatal(exc)

    async def _run(self, *, everything: bool) -> None:
        rt = self.runtime
        async with self._lock:
            generation = self.generation
            t0 = time.monotonic()
            writes: list[tuple[KeyedState, int, list[tuple[bytes, bytes | None]]]] = []
            for st in self.states.values():
                keys = st.due(interval_s=self.interval_s, everything=everything)
                for partition, entries in st.snapshot(keys, everything=False).items():
                    writes.append((st, partition, entries))
            # Outputs first: a state on the changelog says its messages are done, so their outputs must be out.
            await rt.outbox.confirm()
            if generation != self.generation:
                return  # revoked meanwhile: the replay redoes this work where the partition went
            for st, partition, entries in writes:
                rt.write_table(st.table, partition, entries)
                M.CHECKPOINTS.labels(st.name).inc(len(entries))
                M.CHECKPOINT_BYTES.labels(st.name).inc(sum(len(v) for _, v in entries if v))
            if writes:
                await rt.outbox.confirm()
                log.debug("checkpoint: %d entries in %.3f s", sum(len(e) for _, _, e in writes),
                          time.monotonic() - t0)
            if generation == self.generation:
                self._ack()

    def _ack(self) -> None:
        """Ack each partition's held messages below its frontier (the oldest offset not in written state)."""
        acked = 0
        for tp, held in self.held.items():
            topic, partition = tp
            st = self.states.get(topic)
            limits = [o for o in (st.frontier(partition) if st is not None else None, self.busy.get(tp))
                      if o is not None]
            frontier = min(limits) if limits else None
            while held and (frontier is None or held[0][0] < frontier):
                _, event = held.popleft()
                event.ack()
                acked += 1
        if acked:
            M.HELD_MESSAGES.dec(acked)
