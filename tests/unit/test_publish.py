"""Partitioning of streams._publish: the same partition as aiokafka's keyed send, however many keys at once."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner, murmur2

from streams._publish import _murmur2_same_length, partitions_for_keys


def test_vectorised_murmur2_equals_kafkas_murmur2_for_every_length_and_byte() -> None:
    rnd = random.Random(5)
    for length in range(1, 40):
        keys = [bytes(rnd.randrange(256) for _ in range(length)) for _ in range(20)]
        assert _murmur2_same_length(keys).tolist() == [murmur2(k) for k in keys], f"length {length}"


def test_partitions_of_many_keys_are_those_of_the_default_partitioner() -> None:
    keys = [f"c1/ns{i % 9}/pod-{i}-{'x' * (i % 13)}/app/container.cpu_cores".encode() for i in range(2000)] + [b"k"]
    parts = [0, 1, 2, 3, 4, 5, 6]
    expected = [DefaultPartitioner()(k, parts, parts) for k in keys]
    assert partitions_for_keys(keys, parts) == expected
    assert partitions_for_keys(keys[:10], parts) == expected[:10]
    assert len(set(expected)) == 7
