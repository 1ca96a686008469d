"""Starting on a broker that has just started: its group coordinator is not elected yet for a
moment, and neither service says "error" for it (a new user's first `make run`), while a
coordinator that never comes is still reported.

The election is replayed by `electing` (see its docstring): the shared broker elected its
coordinators long ago and must not be restarted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient
from electing import Electing, child_env

from nudge import admin
from nudge.admin import ensure_topics, wait_for_group_coordinator
from nudge.settings import Settings
from nudge.testing import Service, Services, free_port

pytestmark = pytest.mark.integration

ELECTION = 2.0  # seconds: about what a new single broker takes


def error_lines(service: Service) -> list[str]:
    """The lines of the service's log at ERROR or above (JSON lines; any other line counts when
    it says error, so that a line in another format cannot slip through)."""
    found = []
    for line in service.log_path.read_text(errors="replace").splitlines():
        try:
            level = str(orjson.loads(line).get("level", ""))
        except orjson.JSONDecodeError:
            level = "error" if "error" in line.lower() else ""
        if level in ("error", "critical", "exception"):
            found.append(line)
    return found


def test_the_processor_and_the_sender_start_without_an_error_while_the_coordinator_is_elected(
    services: Services, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Both wait until the broker names their group's coordinator before joining: they get
    ready, and their logs hold no ERROR line (it was `Group Coordinator Request failed:
    GroupCoordinatorNotAvailableError`, from aiokafka's consumer)."""
    record = tmp_path / "electing.log"
    services.env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "NUDGE_TOKEN_SECRET": "startup-secret-startup-secret",
            "SMTP_URL": f"smtp://127.0.0.1:{free_port()}",  # no mail is sent here
            **child_env(ELECTION, record),
        }
    )
    processor = services.start("processor", "--tick-interval", "0.2", "--session-timeout", "6")
    sender = services.start("sender")
    processor.wait_ready()
    sender.wait_ready()
    assert error_lines(processor) == []
    assert error_lines(sender) == []
    # Not vacuous: both processes met the election (each replaced answer is its pid).
    pids = {str(s.process.pid) for s in (processor, sender) if s.process is not None}
    assert set(record.read_text().split()) == pids


async def test_the_wait_ends_once_the_coordinator_is_elected_and_the_group_then_joins_quietly(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`wait_for_group_coordinator` asks until the broker names the coordinator; a consumer that
    joins the group afterwards logs nothing at ERROR."""
    settings = make_settings()
    group, topic = await fresh_group_and_topic(settings)
    electing = Electing(ELECTION)
    monkeypatch.setattr(AIOKafkaClient, "send", electing.around(AIOKafkaClient.send))
    caplog.set_level(logging.WARNING, logger="aiokafka")

    started = time.monotonic()
    await wait_for_group_coordinator(settings, group)
    waited = time.monotonic() - started
    assert electing.answered > 1
    assert ELECTION <= waited < ELECTION + 2

    assigned = await join(settings, group, topic)
    assert assigned
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_coordinator_still_missing_at_the_deadline_is_left_to_the_consumer_to_report(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The wait hides nothing: past its deadline it returns, and the consumer reports the
    missing coordinator at ERROR as it always did."""
    settings = make_settings()
    group, topic = await fresh_group_and_topic(settings)
    monkeypatch.setattr(admin, "COORDINATOR_WAIT", 0.3)
    electing = Electing(ELECTION + 3)
    monkeypatch.setattr(AIOKafkaClient, "send", electing.around(AIOKafkaClient.send))
    caplog.set_level(logging.WARNING, logger="aiokafka")

    started = time.monotonic()
    await wait_for_group_coordinator(settings, group)
    assert time.monotonic() - started < 1.5

    await join(settings, group, topic)  # joins once the election ends
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors
    assert all("GroupCoordinatorNotAvailableError" in message for message in errors)


async def fresh_group_and_topic(settings: Settings) -> tuple[str, str]:
    """A group no one has joined and a topic created for it."""
    topic = f"{settings.topic_prefix}joined"
    await ensure_topics(settings, [topic])
    return f"{settings.topic_prefix}group-{uuid.uuid4().hex[:6]}", topic


async def join(settings: Settings, group: str, topic: str, limit: float = 30.0) -> bool:
    """Start a consumer in `group` on `topic`; True once it has partitions assigned."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.subscribe([topic])
        async with asyncio.timeout(limit):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
        return True
    finally:
        await consumer.stop()
