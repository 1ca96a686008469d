"""Creating Nudge's topics up front, with the partition count the deployment asks for, and
waiting until they (and a consumer group's coordinator) serve.

Relying on broker auto-creation would give every topic the broker's default partition count and
lose the co-partitioning of events, commands and deliveries by `user_id`.

Dead-letter topics are created accepting records a little larger than the broker's default limit:
a dead letter is the rejected record untouched plus headers, and the rejected record may be as
large as the broker allowed on its own topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from nudge.policy import CONTACT_POLICY_TOPIC, WITHDRAWALS_KEPT_MS
from nudge.settings import Settings
from nudge.topics import Topics

# Kafka's default `message.max.bytes` (1 MiB + 12): the largest record batch a broker accepts on a
# topic without its own `max.message.bytes`, so the largest record an app can publish to events.
BROKER_MAX_MESSAGE_BYTES: Final = 1_048_588
# What dead-lettering adds to such a record: the headers of `nudge.deadletter` (at most ~2.6 KB: a
# message cut at 2,048 bytes, a topic name of up to 249, six names, short values), with room to
# spare for a header added later.
DEAD_LETTER_HEADROOM: Final = 64 * 1024
# `max.message.bytes` of every `<topic>-dlt` Nudge creates, and the processor's producer limit
# (`producer_max_request_size`): a dead letter of the largest record the broker accepts fits both.
DEAD_LETTER_MAX_MESSAGE_BYTES: Final = BROKER_MAX_MESSAGE_BYTES + DEAD_LETTER_HEADROOM
_DEAD_LETTER_SUFFIX: Final = Topics.dead_letter("")
METADATA_WAIT: Final = 10.0  # seconds for new topics to appear in the metadata (`_known`)
# Seconds `wait_for_group_coordinator` waits for a broker to name a group's coordinator: a new
# single broker takes a few; one still without after this has a problem worth the consumer's ERROR.
COORDINATOR_WAIT: Final = 30.0
COORDINATOR_POLL: Final = 0.1  # seconds between two FindCoordinator requests while waiting


def public_topics(topics: Topics) -> list[str]:
    """The topics of SPEC §1: events, send-commands, deliveries and their dead-letter topics."""
    names = [topics.events, topics.send_commands, topics.deliveries]
    return names + [Topics.dead_letter(name) for name in names]


async def ensure_topics(
    settings: Settings, names: Iterable[str] | None = None, *, compacted: Iterable[str] = ()
) -> None:
    """Create the given topics (default: the public ones) if they do not exist yet."""
    topics = Topics(settings.topic_prefix)
    wanted = list(names) if names is not None else public_topics(topics)
    compacted_set = set(compacted)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs=topic_configs(name, compacted=name in compacted_set),
            )
            for name in wanted
            if name not in existing
        ]
        if missing:
            # Another process may create one between our list and create: that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
    if missing:
        await wait_until_serving(settings, [topic.name for topic in missing])


async def wait_until_serving(settings: Settings, names: list[str]) -> None:
    """Wait (up to the consumer's request timeout) until every partition of the topics just
    created answers an offset request.

    A consumer that starts at once asks for offsets before the new partitions' leaders serve
    them, and aiokafka logs `NotLeaderForPartitionError` at ERROR, then retries: harmless, but
    the first thing a new user of a healthy stack would read is "error". (The metadata names the
    leader before it serves, so waiting for the metadata is not enough.) `beginning_offsets`
    retries that quietly; a cluster slow to elect still works after the wait, with the retries.
    """
    await _known(settings, names)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        await consumer.start()
        partitions = [
            TopicPartition(name, partition)
            for name in names
            for partition in range(settings.topic_partitions)
        ]
        with contextlib.suppress(KafkaTimeoutError):
            await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()


async def wait_for_group_coordinator(settings: Settings, group: str) -> None:
    """Wait (up to `COORDINATOR_WAIT` seconds) until the broker names a coordinator for `group`.

    A broker that has just started has no group coordinator yet: the first FindCoordinator
    request makes it create `__consumer_offsets`, and it answers COORDINATOR_NOT_AVAILABLE until
    that topic's leaders serve. A consumer joining its group then logs `Group Coordinator Request
    failed: GroupCoordinatorNotAvailableError` at ERROR before its retry works: harmless, but
    what a new user of a healthy `make run` read first. The admin client's FindCoordinator logs
    nothing, so it asks until there is an answer. Not a filter on the consumer's log: an error
    that is not retriable (group not authorised), or a coordinator still missing at the deadline,
    is left to the consumer, which reports it as before.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        deadline = time.monotonic() + COORDINATOR_WAIT
        while True:
            try:
                await admin.find_coordinator(group)
            except KafkaError as err:
                if not err.retriable or time.monotonic() >= deadline:
                    return
                await asyncio.sleep(COORDINATOR_POLL)
            else:
                return
    finally:
        await admin.close()


def topic_configs(name: str, *, compacted: bool = False) -> dict[str, str]:
    """The configuration a topic Nudge creates gets (existing topics keep theirs)."""
    configs = {"cleanup.policy": "compact"} if compacted else {}
    if compacted and name.endswith(f".{CONTACT_POLICY_TOPIC}"):
        configs["min.compaction.lag.ms"] = str(WITHDRAWALS_KEPT_MS)  # see nudge.policy
    if name.endswith(_DEAD_LETTER_SUFFIX):
        configs["max.message.bytes"] = str(DEAD_LETTER_MAX_MESSAGE_BYTES)
    return configs


async def dead_letter_limits_below(settings: Settings, names: Iterable[str]) -> dict[str, int]:
    """The existing topics among `names` whose `max.message.bytes` is below
    `DEAD_LETTER_MAX_MESSAGE_BYTES` (dead-letter topics created before Nudge raised it), with
    their limit: a record as large as the broker accepts elsewhere cannot be dead-lettered there.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [name for name in names if name in existing]
        if not wanted:
            return {}
        responses = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name, configs={"max.message.bytes": None})
                for name in wanted
            ]
        )
    finally:
        await admin.close()
    low: dict[str, int] = {}
    for response in responses:
        for error_code, _message, _type, name, entries in response.resources:
            if error_code != 0:
                continue
            for entry in entries:
                key, value = entry[0], int(entry[1])
                if key == "max.message.bytes" and value < DEAD_LETTER_MAX_MESSAGE_BYTES:
                    low[name] = value
    return low


async def _known(settings: Settings, names: list[str]) -> None:
    """Wait (up to `METADATA_WAIT` seconds) until the broker's metadata lists the topics with a
    leader for every partition: a client asking about a topic a moment after its creation gets
    "unknown topic", which aiokafka logs at ERROR. The admin client's raw metadata logs nothing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        deadline = time.monotonic() + METADATA_WAIT
        while time.monotonic() < deadline:
            described = await admin.describe_topics(names)
            if len(described) == len(names) and all(
                topic["error_code"] == 0
                and topic["partitions"]
                and all(p["error_code"] == 0 and p["leader"] >= 0 for p in topic["partitions"])
                for topic in described
            ):
                return
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
