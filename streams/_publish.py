"""Batched publishing of many keyed records to one topic: one record batch per partition instead of one send per record.

The worker publishes a rollup per series per closed window (hundreds per node
scrape); aiokafka's ``send()`` costs a coroutine, a future and a pure-Python
murmur2 hash per record, which at 100k samples/s is most of a core. Here a
call takes a list of ``(key, value)`` pairs, groups them by partition and
hands each group to the producer as one batch (``create_batch`` /
``BatchBuilder.append`` / ``send_batch``).

The key -> partition contract is kept: the partition is what aiokafka's
``DefaultPartitioner`` gives a keyed ``send()`` (murmur2 of the key over all
partitions, as Kafka's Java client does), computed once per key and cached,
since the same series keys come back every window.

Delivery: like ``send()``, :meth:`BatchPublisher.publish` returns once the
batches are queued in the producer's accumulator; ``producer.flush()`` (which
Faust awaits before committing offsets) waits for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from aiokafka.partitioner import DefaultPartitioner

__all__ = ["BatchPublisher", "partition_for", "partitions_for_keys"]

_CACHE_MAX = 2_000_000
"""Keys whose partition is remembered; beyond this the cache starts afresh (memory stays bounded)."""
_VECTOR_MIN = 64
"""Below this many new keys, hash them one by one (numpy's per-call cost is not worth it)."""
_M = np.uint32(0x5BD1E995)


def partition_for(key: bytes, partitions: Sequence[int], *, _p: DefaultPartitioner = DefaultPartitioner()) -> int:
    """The partition a keyed ``producer.send(topic, key=key)`` goes to (``partitions``: all, sorted)."""
    return _p(key, list(partitions), list(partitions))


def _murmur2_same_length(keys: list[bytes]) -> np.ndarray:
    """Kafka's murmur2 (as ``aiokafka.partitioner.murmur2``) of keys that all have one length, vectorised."""
    n, length = len(keys), len(keys[0])
    data = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(n, length)
    with np.errstate(over="ignore"):  # uint32 arithmetic wraps, as the Java int arithmetic it mirrors
        h = np.full(n, 0x9747B28C ^ length, dtype=np.uint32)
        body = length // 4 * 4
        if body:
            words = np.ascontiguousarray(data[:, :body]).view("<u4")
            for i in range(body // 4):
                k = words[:, i] * _M
                k ^= k >> np.uint32(24)
                k *= _M
                h *= _M
                h ^= k
        extra = length % 4
        if extra >= 3:
            h ^= data[:, body + 2].astype(np.uint32) << np.uint32(16)
        if extra >= 2:
            h ^= data[:, body + 1].astype(np.uint32) << np.uint32(8)
        if extra >= 1:
            h ^= data[:, body].astype(np.uint32)
            h *= _M
        h ^= h >> np.uint32(13)
        h *= _M
        h ^= h >> np.uint32(15)
    return h


def partitions_for_keys(keys: Sequence[bytes], partitions: Sequence[int]) -> list[int]:
    """:func:`partition_for` of many keys at once (keys grouped by length and hashed with numpy)."""
    parts = list(partitions)
    if len(keys) < _VECTOR_MIN:
        return [partition_for(k, parts) for k in keys]
    by_len: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        by_len.setdefault(len(k), []).append(i)
    out = [0] * len(keys)
    lookup = np.array(parts)
    for length, idx in by_len.items():
        if length == 0:
            for i in idx:
                out[i] = partition_for(keys[i], parts)
            continue
        h = _murmur2_same_length([keys[i] for i in idx])
        chosen = lookup[(h & np.uint32(0x7FFFFFFF)) % np.uint32(len(parts))].tolist()
        for i, p in zip(idx, chosen, strict=True):
            out[i] = p
    return out


class BatchPublisher:
    """Publishes ``(key, value)`` pairs to a topic through an aiokafka producer, one batch per partition.

    ``producer`` is an :class:`aiokafka.AIOKafkaProducer` (in a Faust worker,
    ``app.producer._producer``). Keys are ``str`` (encoded as UTF-8) so the
    partition cache can use the caller's own, already hashed, key strings.
    """

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self._partitions: dict[str, list[int]] = {}
        self._keys: dict[str, dict[str, int]] = {}
        """Per topic: key -> partition."""

    async def partitions(self, topic: str) -> list[int]:
        """All partitions of ``topic``, sorted; the key cache starts afresh when their number changes."""
        parts = self._partitions.get(topic)
        if parts is not None:
            # A cheap look at the producer's current metadata: partitions added to the topic move keys.
            known = self.producer.client.cluster.partitions_for_topic(topic)
            if known is not None and len(known) != len(parts):
                parts = None
        if parts is None:
            parts = self._partitions[topic] = sorted(await self.producer.partitions_for(topic))
            self._keys[topic] = {}
        return parts

    async def publish(self, topic: str, records: Sequence[tuple[str, bytes]]) -> int:
        """Queue ``records`` for ``topic``; returns how many were queued."""
        if not records:
            return 0
        parts = await self.partitions(topic)
        keys = self._keys[topic]
        if len(keys) > _CACHE_MAX:
            keys.clear()
        new = [key for key, _ in records if key not in keys]
        if new:
            new = list(dict.fromkeys(new))
            chosen = partitions_for_keys([k.encode() for k in new], parts) if len(parts) > 1 else [parts[0]] * len(new)
            keys.update(zip(new, chosen, strict=True))
        by_part: dict[int, list[tuple[str, bytes]]] = {}
        for key, value in records:
            p = keys[key]
            group = by_part.get(p)
            if group is None:
                group = by_part[p] = []
            group.append((key, value))
        producer = self.producer
        for partition, group in by_part.items():
            batch = producer.create_batch()
            for key, value in group:
                # Encoding the key here rather than caching its bytes keeps the cache at a dict entry per key.
                kb = key.encode()
                if batch.append(key=kb, value=value, timestamp=None) is None:
                    # The batch is full (max_batch_size): queue it and go on with a new one.
                    await producer.send_batch(batch, topic, partition=partition)
                    batch = producer.create_batch()
                    if batch.append(key=kb, value=value, timestamp=None) is None:
                        raise ValueError(f"a record of {len(value)} bytes does not fit in an empty batch for {topic}")
            await producer.send_batch(batch, topic, partition=partition)
        return len(records)
