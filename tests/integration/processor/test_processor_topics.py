"""Dead-letter topics against the real broker: their size limit, new and old (issue 4)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
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
