"""Kafka's partition of a key, for many keys at once: what the worker's outbox batches by.

The worker publishes hundreds of keyed records per node scrape
(``streams._runtime.Outbox``); aiokafka's ``send()`` costs a coroutine, a
future and a pure-Python murmur2 hash per record. The outbox instead groups
records by partition and hands each group to the producer as one batch, and
the key -> partition contract is kept: the partition is what aiokafka's
``DefaultPartitioner`` gives a keyed ``send()`` (murmur2 of the key over all
partitions, as Kafka's Java client does), computed here once per new key
(vectorised with numpy) and cached by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from aiokafka.partitioner import DefaultPartitioner

__all__ = ["partition_for", "partitions_for_keys"]

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
