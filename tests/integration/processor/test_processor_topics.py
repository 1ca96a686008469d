"""Topics against the real broker: dead-letter size limits, new and old (issue 4), and topics
that serve as soon as `ensure_topics` returns."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from nudge.admin import (
    BROKER_MAX_MESSAGE_BYTES,
    DEAD_LETTER_MAX_MESSAGE_BYTES,
    dead_letter_limits_below,
    ensure_topics,
)
from nudge.settings import Settings
from nudge.topics import Topics

pytestmark = pytest.mark.integration


def test_a_dead_letter_topic_created_before_the_raised_limit_is_reported(
    kafka_bootstrap: str,
) -> None:
    """`ensure_topics` creates `-dlt` topics that take the largest record the broker accepts
    plus dead-letter headers; one created with the broker's default (an older deployment) is
    reported with its limit, so that the processor can warn with the fix."""
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=f"t-{uuid.uuid4().hex[:8]}."
    )
    topics = Topics(settings.topic_prefix)
    old = Topics.dead_letter(topics.events)
    new = Topics.dead_letter(topics.deliveries)

    async def scenario() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:  # as an older Nudge created it: no max.message.bytes of its own
            await admin.create_topics([NewTopic(name=old, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        await ensure_topics(settings, [new])
        return await dead_letter_limits_below(settings, [old, new, "no-such-topic-dlt"])

    low = asyncio.run(scenario())
    assert low == {old: BROKER_MAX_MESSAGE_BYTES}
    assert DEAD_LETTER_MAX_MESSAGE_BYTES > BROKER_MAX_MESSAGE_BYTES


def test_a_consumer_started_right_after_ensure_topics_logs_no_error(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Right after creating a topic, its partitions' leaders do not serve yet, and a consumer
    that starts at once logs `NotLeaderForPartitionError` at ERROR before its retry works: the
    first thing a new user of a healthy `make run` read was "error". `ensure_topics` returns
    only once the new partitions answer."""
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=f"t-{uuid.uuid4().hex[:8]}."
    )
    names = [f"{settings.topic_prefix}fresh-{n}" for n in range(6)]

    async def scenario() -> None:
        await ensure_topics(settings, names)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            consumer.assign(
                [TopicPartition(n, p) for n in names for p in range(settings.topic_partitions)]
            )
            for _ in range(3):
                await consumer.getmany(timeout_ms=200)
        finally:
            await consumer.stop()

    caplog.set_level(logging.WARNING, logger="aiokafka")
    asyncio.run(scenario())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
