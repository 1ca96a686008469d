"""Kafka and Faust behind the processor's seams: the state table, the sink, the tick producer,
and creating and checking the topics before a worker starts.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Awaitable, Iterable, Sequence
from datetime import datetime
from typing import Any, Final

import faust
import faust.streams as faust_streams
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from nudge.admin import (
    DEAD_LETTER_MAX_MESSAGE_BYTES,
    dead_letter_limits_below,
    ensure_topics,
    wait_for_group_coordinator,
)
from nudge.deadletter import Source, headers
from nudge.errors import ConfigError, PermanentError
from nudge.processor.ports import Output, Record, Write
from nudge.settings import Settings
from nudge.topics import Topics

log = structlog.get_logger("nudge.processor")

TABLE_NAME: Final = "users"
TICKS: Final = "ticks"
CONTACT_POLICY: Final = "contact-policy"
TICKS_RETENTION_MS: Final = 3_600_000  # a tick is worthless once handled; keep an hour


class TableStore:
    """The state table as a `StateStore`, through Faust's `Table` API (every write sends its own
    changelog record). Used under `exactly_once`, where those records belong to the partition's
    transaction; `fastpath.DirectTableStore` is the at-least-once store.

    Faust's RocksDB store picks the partition database from the *current event*, which it sets
    while a stream yields one. The agent handles a batch after the stream has buffered it, so each
    access first makes its own record's event current again (`faust.streams._current_event` is the
    context variable `faust.current_event()` reads).
    """

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: bytes, record: Record) -> bytes | None:
        token = _enter(record)
        try:
            value: bytes | None = self.table.get(key)
            return value
        finally:
            _leave(token)

    async def write(self, writes: Sequence[Write]) -> None:
        for key, value, record in writes:
            token = _enter(record)
            try:
                if value is None:
                    with contextlib.suppress(KeyError):
                        del self.table[key]
                else:
                    self.table[key] = value
            finally:
                _leave(token)

    def entries(self) -> Iterable[tuple[bytes, bytes]]:
        items: Iterable[tuple[bytes, bytes]] = self.table.items()
        return items


def _enter(record: Record) -> Any:
    if record.context is None:
        return None
    return faust_streams._current_event.set(weakref.ref(record.context))


def _leave(token: Any) -> None:
    if token is not None:
        faust_streams._current_event.reset(token)


class KafkaSink:
    """Faust topics as a `Sink` (every record through `Topic.send`). Used under
    `exactly_once`; `fastpath.DirectSink` is the at-least-once sink."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._topics: dict[str, Any] = {}

    def topic(self, name: str) -> Any:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = self.app.topic(
                name, key_serializer="raw", value_serializer="raw"
            )
        return topic

    async def send(self, outputs: Sequence[Output]) -> Awaitable[None]:
        pending = [
            await self.topic(out.topic).send(key=out.key, value=out.value) for out in outputs
        ]
        return _all(pending)

    async def dead_letter(
        self, record: Record, error: PermanentError, failed_at: datetime
    ) -> Awaitable[None]:
        source = Source(topic=record.topic, partition=record.partition, offset=record.offset)
        sent = await self.topic(Topics.dead_letter(record.topic)).send(
            key=record.key,
            value=record.value,
            headers=headers(error, source, failed_at=failed_at.isoformat()),
        )
        return _all([sent])


async def _all(pending: Sequence[Awaitable[Any]]) -> None:
    for sent in pending:
        await sent


class TickSender:
    """Produces tick messages with a plain producer of its own, outside Faust's.

    Ticks are sent from a timer, outside stream iteration. Under `exactly_once` Faust's producer
    would put them in a transaction that no commit ever closes, and read-committed consumers stop
    at its first record (docs/processor.md); a non-transactional record is visible at once.
    """

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None

    async def send(self, partition: int) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, linger_ms=0)
            await producer.start()
            self._producer = producer
        await self._producer.send(self.topic, b"", partition=partition)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


async def prepare_topics(settings: Settings) -> None:
    """Create the processor's topics if missing, check they are co-partitioned, and wait until
    its consumer group has a coordinator (`wait_for_group_coordinator`)."""
    topics = Topics(settings.topic_prefix)
    policy = topics.internal(CONTACT_POLICY)
    changelog = f"{topics.processor_app_id}-{TABLE_NAME}-changelog"
    await ensure_topics(settings)
    # The changelog too, as Faust would create it (compacted, same partition count): when Faust
    # creates it at start, its consumer may not see it in its metadata yet at the first write and
    # count 0 partitions, and the table then refuses every write (PartitionsMismatch).
    await ensure_topics(settings, [policy, changelog], compacted=[policy, changelog])
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        ticks = topics.internal(TICKS)
        existing = set(await admin.list_topics())
        if ticks not in existing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            name=ticks,
                            num_partitions=settings.topic_partitions,
                            replication_factor=settings.topic_replication_factor,
                            topic_configs={"retention.ms": str(TICKS_RETENTION_MS)},
                        )
                    ]
                )
        # Only topics that exist: asking the broker about a missing one may auto-create it with
        # the broker's default partition count.
        names = [topics.events, topics.deliveries, ticks, changelog]
        described = await admin.describe_topics([n for n in names if n in existing | {ticks}])
    finally:
        await admin.close()
    wrong = {
        item["topic"]: len(item["partitions"])
        for item in described
        if item.get("error_code", 0) == 0
        and item["partitions"]
        and len(item["partitions"]) != settings.topic_partitions
    }
    if wrong:
        listing = ", ".join(f"{name} has {count}" for name, count in sorted(wrong.items()))
        raise ConfigError(
            f"NUDGE_TOPIC_PARTITIONS={settings.topic_partitions}, but {listing} partitions: "
            "events, deliveries, ticks and the state changelog must have the same count (state "
            "is placed by partition). Set NUDGE_TOPIC_PARTITIONS to the existing count, or use a "
            "new NUDGE_TOPIC_PREFIX."
        )
    await _warn_about_small_dead_letter_topics(settings, topics)
    # Faust's consumer joins the group named after the app id as soon as the worker starts.
    await wait_for_group_coordinator(settings, topics.processor_app_id)


async def _warn_about_small_dead_letter_topics(settings: Settings, topics: Topics) -> None:
    """Dead-letter topics created before Nudge raised their limit (docs/processor.md, Record
    sizes): the largest events the broker accepts could not be dead-lettered there, and the
    worker would stop on one. A warning with the fix, never a reason not to start."""
    names = [Topics.dead_letter(topics.events), Topics.dead_letter(topics.deliveries)]
    try:
        low = await dead_letter_limits_below(settings, names)
    except Exception as err:  # a check that cannot run only leaves the warning out
        log.warning("dead_letter_limits_unknown", error=repr(err))
        return
    for name, limit in sorted(low.items()):
        log.warning(
            "dead_letter_topic_limit_low",
            topic=name,
            max_message_bytes=limit,
            wanted=DEAD_LETTER_MAX_MESSAGE_BYTES,
            hint=(
                f"kafka-configs.sh --bootstrap-server … --alter --entity-type topics "
                f"--entity-name {name} --add-config max.message.bytes="
                f"{DEAD_LETTER_MAX_MESSAGE_BYTES}"
            ),
        )
