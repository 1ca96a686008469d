"""The processor's topics as `prepare_topics` creates them, against a stand-in admin client."""

from __future__ import annotations

from pathlib import Path

import pytest
from processor_fakes import FakeAdmin

from nudge import admin
from nudge.admin import DEAD_LETTER_MAX_MESSAGE_BYTES
from nudge.processor import kafka
from nudge.processor.kafka import prepare_topics
from nudge.settings import Settings


async def test_the_dead_letter_topics_take_a_dead_letter_of_the_largest_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every `-dlt` topic is created with `max.message.bytes` raised to what the processor's
    producer sends (the broker's default limit plus the dead-letter headers); the other topics
    keep the broker's default."""
    created: dict[str, dict[str, str]] = {}
    for module in (admin, kafka):
        monkeypatch.setattr(module, "AIOKafkaAdminClient", lambda **_: FakeAdmin(created))

    async def serving(_settings: Settings, _names: list[str]) -> None:
        """No broker here: the new topics serve at once."""

    monkeypatch.setattr(admin, "wait_until_serving", serving)
    settings = Settings(token_secret=b"x" * 32, state_dir=tmp_path, topic_prefix="t.")
    await prepare_topics(settings)
    limits = {name: configs.get("max.message.bytes") for name, configs in created.items()}
    dead_letter = str(DEAD_LETTER_MAX_MESSAGE_BYTES)
    assert {name for name, limit in limits.items() if limit == dead_letter} == {
        "t.events-dlt",
        "t.send-commands-dlt",
        "t.deliveries-dlt",
    }
    assert {name for name, limit in limits.items() if limit is None} == {
        "t.events",
        "t.send-commands",
        "t.deliveries",
        "t.internal.contact-policy",
        "t.internal.ticks",
        "t.processor-users-changelog",
    }
    assert created["t.processor-users-changelog"] == {"cleanup.policy": "compact"}
    # Withdrawals add up across a user's records: compaction must not drop one while it matters.
    assert created["t.internal.contact-policy"] == {
        "cleanup.policy": "compact",
        "min.compaction.lag.ms": str(7 * 24 * 3600 * 1000),
    }
