"""Helpers for the sender's integration tests: command factory and a view of the test's topics.

A plain module (not conftest) so tests can import it; pytest puts this directory on sys.path.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from nudge.codec import decode_delivery, encode_command
from nudge.commands import DeliveryRecord, SendCommand
from nudge.sender.retry import retry_topics
from nudge.settings import Settings
from nudge.testkafka import Record, read_topic, wait_until_caught_up
from nudge.topics import Topics


def daytime_now() -> datetime:
    """Now, in a fixed-offset zone where it is about 12:00: a marketing command made at this
    moment is outside the quiet hours and within its grace (nudge.sender.timeliness)."""
    now = datetime.now(UTC)
    offset = (12 - now.hour + 12) % 24 - 12  # in -12..11 hours
    return now.astimezone(timezone(timedelta(hours=offset)))


def make_command(**overrides: Any) -> SendCommand:
    """An order confirmation for 山田 花子, unique per call unless ids are given."""
    unique = uuid.uuid4().hex[:10]
    base: dict[str, Any] = {
        "command_id": f"c-{unique}",
        "idempotency_key": f"k-{unique}",
        "user_id": f"u-{unique}",
        "journey": "order_confirmation",
        "step": "confirmation",
        "kind": "transactional",
        "template": "order_confirmation",
        "locale": "ja",
        "to": f"hana-{unique}@example.jp",
        "created_at": datetime(2026, 11, 22, 10, 15, tzinfo=UTC),
        "variables": {
            "name": "山田 花子",
            "order_id": f"o-{unique}",
            "total": 9600,
            "currency": "JPY",
            "items": [{"name": "急須セット", "quantity": 2, "price": 4800}],
        },
    }
    base.update(overrides)
    return SendCommand(**base)


@dataclass
class Cluster:
    """The test's view of Kafka: publish commands, read what the sender wrote."""

    settings: Settings
    producer: AIOKafkaProducer
    topics: Topics = field(init=False)

    def __post_init__(self) -> None:
        self.topics = Topics(self.settings.topic_prefix)

    async def send(self, *commands: SendCommand, raw: bytes | None = None) -> None:
        for command in commands:
            await self.producer.send_and_wait(
                self.topics.send_commands, encode_command(command), key=command.user_id.encode()
            )
        if raw is not None:
            await self.producer.send_and_wait(self.topics.send_commands, raw, key=b"u-raw")

    async def read(self, topic: str, count: int, limit: float = 30.0) -> list[Record]:
        """Every record of `topic` once it holds `count` or more (TimeoutError after `limit` s)."""
        return await read_topic(
            self.settings.kafka_bootstrap_servers, topic, at_least=count, timeout=limit
        )

    async def deliveries(self, count: int, limit: float = 30.0) -> list[DeliveryRecord]:
        records = await self.read(self.topics.deliveries, count, limit)
        return [decode_delivery(r.value) for r in records]

    async def handled(self, limit: float = 30.0) -> None:
        """Wait until the sender has finished everything published so far, retries included.

        The sender commits a record only once its outcome is written (mail, delivery record,
        retry, dead letter), so when its group has committed every source topic to the end, no
        mail for those commands is still on its way (TimeoutError after `limit` s).
        """
        sources = [self.topics.send_commands, *retry_topics(self.topics)]
        await wait_until_caught_up(
            self.settings.kafka_bootstrap_servers, self.topics.sender_group, sources, timeout=limit
        )

    async def auto_created(self) -> dict[str, int]:
        """The test's topics whose partition count is not the one Nudge creates them with
        (`topic_partitions`), with their count: topics the broker made on their first use, with
        its default count (4 in deploy/local), because something published before creating them.
        """
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            # Every topic's metadata: asking about named ones could create a missing one.
            described = await admin.describe_topics()
        finally:
            await admin.close()
        return {
            t["topic"]: len(t["partitions"])
            for t in described
            if t["topic"].startswith(self.topics.prefix)
            and len(t["partitions"]) != self.settings.topic_partitions
        }
