"""The sender's partitioner chooses exactly the partition aiokafka (and the Java client) would."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from nudge.partitioner import murmur2, partition_for

# Kafka's own test vectors (clients/src/test/.../UtilsTest.java), as signed 32-bit integers.
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "signed"), KAFKA_VECTORS)
def test_murmur2_matches_kafka_s_test_vectors(key: bytes, signed: int) -> None:
    assert murmur2(key) == signed & 0xFFFFFFFF


def test_murmur2_matches_aiokafka_on_keys_of_every_length() -> None:
    """Random keys of 0 to 300 bytes (every tail length, and past the cached word unpackers)."""
    rng = random.Random(2026)
    for length in range(301):
        for _ in range(20):
            key = rng.randbytes(length)
            assert murmur2(key) == aiokafka_murmur2(key), key


def test_a_keyed_record_goes_where_aiokafka_sends_it() -> None:
    rng = random.Random(11)
    for count in (1, 4, 7, 12):
        partitions = list(range(count))
        for _ in range(500):
            key = rng.randbytes(rng.randrange(0, 64))
            assert partition_for(key, partitions, partitions) == DefaultPartitioner()(
                key, partitions, partitions
            )


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    assert {partition_for(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
    assert partition_for(None, [0, 1], []) in {0, 1}
