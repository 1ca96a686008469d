"""Reading back what Nudge wrote to Kafka, for tests, the chaos run and benchmarks.

    records = await read_topic(bootstrap, topics.send_commands)             # what is there now
    dead = await read_topic(bootstrap, dlt, at_least=2, timeout=60)         # once 2 have landed
    [decode_delivery(r.value) for r in records]; read_headers(dead[0].headers)["nudge-error-reason"]
    await wait_until_caught_up(bootstrap, topics.sender_group, [topics.send_commands])  # handled

`read_topic` reads every partition of a topic from its beginning up to its end offsets at the time
of the read: records produced later are not waited for, so the answer is a snapshot, not a stream.
It uses no consumer group and commits nothing, so it never disturbs the services' own groups, and
it never creates a topic (a topic that does not exist yet has no records). Records come back raw,
as Kafka holds them; the product's own decoders (`nudge.codec`, `nudge.deadletter.read_headers`)
turn them into commands, deliveries and error reasons.

`wait_until_caught_up` waits until a service's consumer group has committed every partition of
its input topics to the end: for a service that commits a record only once everything it does
for that record is written (the sender), nothing it was given is still under way.

The process harness is `nudge.testing`; this module is its Kafka side (docs/dev/testing.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

POLL_INTERVAL = 0.2  # seconds between reads while waiting (`at_least`, `wait_until_caught_up`)


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One record as read back: raw key, value and headers, and where it sits in the topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]  # as Kafka carries them: `read_headers` gives text
    timestamp_ms: int  # the producer's create time


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    at_least: int = 0,
    timeout: float = 60.0,  # noqa: ASYNC109 (the error says how many records there were by then)
) -> list[Record]:
    """Every record of `topic` from its beginning to its end offsets at the time of the read, in
    partition order (each partition in offset order).

    With `at_least=n`, read the topic again until it holds `n` records (more may be returned).
    Raises TimeoutError, saying how many records there were, after `timeout` seconds.
    """
    found: list[Record] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                found = await _read_to_end(bootstrap, topic)
                if len(found) >= at_least:
                    return found
                await asyncio.sleep(POLL_INTERVAL)  # other processes write it: nothing to await
    except TimeoutError:
        wanted = f"not {at_least}" if at_least else "the read did not finish"
        raise TimeoutError(
            f"{topic}: {len(found)} records after {timeout:.0f} s ({wanted}); raise `timeout` "
            "if the machine is busy, or check that something writes to this topic"
        ) from None


async def wait_until_caught_up(
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    *,
    timeout: float = 60.0,  # noqa: ASYNC109 (the error says which partitions were behind)
) -> None:
    """Wait until consumer group `group` has committed every partition of `topics` up to the
    partition's end offset (a partition with no records needs no commit).

    The committed offsets are read before the end offsets, so a record written while the group
    commits is never taken as handled. Raises TimeoutError, naming the partitions still behind,
    after `timeout` seconds.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    # It learns each topic's leaders on its first lookup of end offsets, one topic per retry:
    # a short backoff keeps the first poll of six topics at tens of milliseconds, not 0.6 s.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, retry_backoff_ms=10)
    behind: dict[str, int] | str = "nothing read yet"
    await admin.start()
    try:
        await consumer.start()
        async with asyncio.timeout(timeout):
            while True:
                try:
                    behind = await _behind(admin, consumer, group, topics)
                except KafkaError as err:  # the group's coordinator moving or loading: ask again
                    behind = repr(err)
                if not behind:
                    return
                await asyncio.sleep(POLL_INTERVAL)  # another process commits: nothing to await
    except TimeoutError:
        raise TimeoutError(
            f"consumer group {group} not caught up after {timeout:.0f} s: records behind per "
            f"partition {behind}; raise `timeout` if the machine is busy"
        ) from None
    finally:
        await consumer.stop()
        await admin.close()


async def _behind(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str, topics: Sequence[str]
) -> dict[str, int]:
    """Records between `group`'s committed offset and the end, per partition that has any."""
    committed = await admin.list_consumer_group_offsets(group)  # first: see the docstring above
    # The metadata of every topic: asking about named ones could create a missing one.
    described = {t["topic"]: t for t in await admin.describe_topics() if t["error_code"] == 0}
    partitions = [
        TopicPartition(topic, p["partition"])
        for topic in topics
        if topic in described
        for p in sorted(described[topic]["partitions"], key=lambda p: p["partition"])
    ]
    ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    behind: dict[str, int] = {}
    for tp in partitions:
        done = committed[tp].offset if tp in committed else 0
        if ends[tp] > done:
            behind[f"{tp.topic}:{tp.partition}"] = ends[tp] - done
    return behind


async def _read_to_end(bootstrap: str, topic: str) -> list[Record]:
    """One snapshot of `topic`: all partitions, from the beginning to the end offsets now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,  # the chaos run reads 100,000 commands back
        fetch_max_wait_ms=50,  # offset lookups queue behind a fetch that waits for data
    )
    await consumer.start()
    try:
        # Subscribing asks the broker for the topic's metadata, which would create a missing
        # topic with the broker's default partition count: look first.
        if topic not in await consumer.topics():
            return []
        consumer.subscribe([topic])
        partitions = await _assigned(consumer)
        await consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        by_partition: dict[TopicPartition, list[Any]] = {tp: [] for tp in partitions}
        remaining = set(partitions)
        while True:
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if not remaining:
                break
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                by_partition[tp].extend(r for r in records if r.offset < ends[tp])
        return [_record(r) for tp in partitions for r in by_partition[tp]]
    finally:
        await consumer.stop()


async def _assigned(consumer: Any) -> list[TopicPartition]:
    """The partitions a subscribed consumer without a group reads: all of them, once the
    topic's metadata has arrived (aiokafka offers no event for that)."""
    while True:
        if assignment := consumer.assignment():
            return sorted(assignment)
        await asyncio.sleep(0.05)


def _record(consumed: Any) -> Record:
    """Our frozen copy of an aiokafka `ConsumerRecord`."""
    return Record(
        topic=consumed.topic,
        partition=consumed.partition,
        offset=consumed.offset,
        key=consumed.key,
        value=consumed.value,
        headers=tuple(consumed.headers),
        timestamp_ms=consumed.timestamp,
    )
