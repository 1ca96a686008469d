"""Fixtures for the sender against the real Kafka and a real SMTP server (aiosmtpd on loopback).

Every test gets its own topic prefix (so its own consumer group), its own sink on a free port,
and short retry delays. Its topics are created before it publishes, as the sender creates them
(never by the broker on a first publish, with the broker's default partition count). Senders run
in process (`start_sender`) or, to be killed, as `nudge sender` processes (`sender_services`).
Servers, sender tasks and processes are stopped by fixture finalizers, also when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from senderkit import Cluster

from nudge.sender.cli import make_pool
from nudge.sender.service import SenderService, prepare_topics
from nudge.sender.sink import Faults, SmtpSink
from nudge.settings import Settings, SmtpSettings
from nudge.testing import Services


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[SmtpSink]:
    server = SmtpSink(tmp_path / "maildir", faults=Faults(seed=7))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def sender_settings(make_settings: Callable[..., Settings], sink: SmtpSink) -> Settings:
    return make_settings(
        smtp=SmtpSettings(host="127.0.0.1", port=sink.port, timeout=5.0),
        send_retry_base_seconds=0.3,
        send_max_attempts=4,
        sender_metrics_port=0,
        mail_from="Nudge Shop <shop@example.com>",
        public_base_url="https://nudge.example.com",
    )


@pytest.fixture
async def sender_services(services: Services, sender_settings: Settings) -> AsyncIterator[Services]:
    """`services` (nudge.testing) set to run `nudge sender` processes on this test's topics,
    against its sink: `services.start("sender")`. Their logs are JSON, warnings and up.

    They are stopped while the event loop still runs the sink: a sender drains into it on
    SIGTERM, and `services`' own (blocking) stop would leave it unanswered until the SIGKILL."""
    services.env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": sender_settings.kafka_bootstrap_servers,
            "SMTP_URL": f"smtp://127.0.0.1:{sender_settings.smtp.port}?timeout=5",
            "NUDGE_SEND_RETRY_BASE": "0.3",
            "NUDGE_TOKEN_SECRET": "test-secret",
            "NUDGE_LOG_LEVEL": "WARNING",
        }
    )
    try:
        yield services
    finally:
        await services.stop_all_async()


@pytest.fixture
async def cluster(sender_settings: Settings) -> AsyncIterator[Cluster]:
    """The test's topics, created as the sender creates them before anything is published
    (`prepare_topics`), and a producer to publish with. Afterwards, no topic of the test may have
    another partition count: one the broker created on a first publish would."""
    await prepare_topics(sender_settings)
    producer = AIOKafkaProducer(bootstrap_servers=sender_settings.kafka_bootstrap_servers)
    await producer.start()
    cluster = Cluster(settings=sender_settings, producer=producer)
    try:
        yield cluster
    finally:
        await producer.stop()
    wrong = await cluster.auto_created()
    assert not wrong, (
        f"topics with the broker's default partition count, not {sender_settings.topic_partitions}"
        f": {wrong}; something published to them before they were created"
    )


@pytest.fixture
async def start_sender(
    sender_settings: Settings,
) -> AsyncIterator[Callable[..., asyncio.Task[int]]]:
    """Start an in-process sender (as many as asked); all are drained at the end."""
    running: list[tuple[asyncio.Event, asyncio.Task[int]]] = []

    def start(settings: Settings | None = None) -> asyncio.Task[int]:
        chosen = settings or sender_settings
        stop = asyncio.Event()
        service = SenderService(chosen, mailer=make_pool(chosen))
        task = asyncio.create_task(service.run(stop))
        running.append((stop, task))
        return task

    yield start
    for stop, _ in running:
        stop.set()
    for _, task in running:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
