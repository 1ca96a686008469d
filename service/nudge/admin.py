"""Creating Nudge's topics up front, with the partition count the deployment asks for.

Relying on broker auto-creation would give every topic the broker's default partition count and
lose the co-partitioning of events, commands and deliveries by `user_id`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from nudge.settings import Settings
from nudge.topics import Topics


def public_topics(topics: Topics) -> list[str]:
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
                topic_configs={"cleanup.policy": "compact"} if name in compacted_set else {},
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
