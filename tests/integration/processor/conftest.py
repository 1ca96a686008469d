"""Real `nudge processor` workers against the real broker (via the `services` fixture), and
topic helpers.

Each test gets its own topic prefix; each worker its own state directory and port. Every process
a test starts is stopped when the test ends, also when it fails (then its log is printed).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from nudge.testing import Service, ServiceError, Services, wait_until
from nudge.testkafka import Record, read_topic
from nudge.topics import Topics

# Marketing mail waits out 21:00–09:00 local time: tests pick a zone where it is day now.
ZONES = ("Asia/Tokyo", "Europe/London", "America/New_York", "Asia/Kolkata", "Pacific/Honolulu")
# Short ticks and a short session, so timers fire promptly and a dead worker leaves the group soon.
PROCESSOR_ARGS = ("--tick-interval", "0.2", "--session-timeout", "6")


def daytime_zone() -> str:
    """A time zone where it is between 10:00 and 19:00 now (no quiet hours during the test)."""
    for name in ZONES:
        if 10 <= datetime.now(ZoneInfo(name)).hour < 19:
            return name
    return "Asia/Tokyo"  # pragma: no cover - some listed zone is always in its day


def partition_of(user_id: str, partitions: int) -> int:
    """The partition of a user's records: Kafka's default partitioner (murmur2 of the key), which
    the tests' producer and the processor's both use, for events and commands alike."""
    return int(murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


def one_user_per_partition(stem: str, partitions: int) -> list[str]:
    """A user id in each partition, in partition order: the first `stem-<n>` landing there."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        found.setdefault(partition_of(f"{stem}-{n}", partitions), f"{stem}-{n}")
        n += 1
    return [found[p] for p in range(partitions)]


def owned_partitions(readyz: str) -> set[int]:
    """The partitions a processor's /readyz answer lists (`ready partitions: 0,1`)."""
    listed = readyz.split("partitions:", 1)[1].strip() if "partitions:" in readyz else ""
    return {int(p) for p in listed.split(",") if p}


@dataclass
class Worker:
    """One `nudge processor` worker: a harness service, ready when it owns partitions."""

    service: Service

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def port(self) -> int:
        return self.service.port

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.service.process

    @property
    def log_path(self) -> Path:
        return self.service.log_path

    def get(self, path: str) -> tuple[int, str]:
        return self.service.get(path)

    def partitions(self) -> set[int] | None:
        """The partitions /readyz reports, or None when not ready."""
        status, body = self.get("/readyz")
        return owned_partitions(body) if status == 200 else None

    def wait_ready(
        self, timeout: float = 60.0, partitions: Callable[[set[int]], bool] | None = None
    ) -> set[int]:
        """Wait until ready (and, if given, `partitions(owned)` holds); returns the partitions."""
        owned: set[int] = set()

        def holds(readyz: str) -> bool:
            nonlocal owned
            owned = owned_partitions(readyz)
            return partitions is None or partitions(owned)

        self.service.wait_ready(timeout, until=holds)
        return owned

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of one metric in /metrics (those with `labels`, if given)."""
        return self.service.metric(name, **labels)

    def wait_for_metric(
        self, name: str, minimum: float, timeout: float = 30.0, **labels: str
    ) -> float:
        """Wait until `metric(name, **labels)` reaches `minimum`; returns its value."""
        return self.service.wait_for_metric(name, minimum, timeout, **labels)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        return self.service.stop(sig, timeout)

    def log(self) -> str:
        return self.service.log()


@dataclass
class Cluster:
    """Starts processors sharing one topic prefix (and `env`)."""

    services: Services

    @property
    def env(self) -> dict[str, str]:
        return self.services.env

    @property
    def workers(self) -> list[Worker]:
        return [Worker(s) for s in self.services.started.values() if s.command == "processor"]

    def start(self, name: str, **env: str) -> Worker:
        """A new worker `name` (a name not used before gets a fresh state directory)."""
        return Worker(self.services.start(name, *PROCESSOR_ARGS, command="processor", env=env))

    def logs(self) -> str:
        return self.services.logs()


@pytest.fixture
def cluster(kafka_bootstrap: str, services: Services) -> Cluster:
    services.env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "NUDGE_DELAY_SCALE": "0.001",
            "NUDGE_TOKEN_SECRET": "processor-secret-processor-secret",
        }
    )
    return Cluster(services)


def event(
    type_: str, user_id: str, *, event_id: str, zone: str, **properties: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "user_id": user_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "properties": properties,
        "user": {
            "email": f"{user_id}@example.com",
            "timezone": zone,
            "locale": "en",
            "marketing_consent": True,
        },
    }


class Kafka:
    """Produce to and read from the test's topics with plain aiokafka clients."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.topics = Topics(prefix)

    def produce(self, records: list[tuple[bytes | None, bytes]], topic: str | None = None) -> None:
        async def run() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
            await producer.start()
            try:
                for key, value in records:
                    await producer.send_and_wait(topic or self.topics.events, value, key=key)
            finally:
                await producer.stop()

        asyncio.run(run())

    def send_events(self, *events: dict[str, Any]) -> None:
        self.produce([(e["user_id"].encode(), orjson.dumps(e)) for e in events])

    def read(self, topic: str, *, at_least: int = 0, timeout: float = 30.0) -> list[Record]:
        """Every record in `topic` now (all partitions), read from the beginning; with
        `at_least`, once there are that many (nudge.testkafka)."""
        return asyncio.run(read_topic(self.bootstrap, topic, at_least=at_least, timeout=timeout))

    def commands(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value or b"") for r in self.read(self.topics.send_commands)]

    def wait_for_commands(
        self,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float,
        logs: Callable[[], str],
    ) -> list[dict[str, Any]]:
        """The commands on send-commands, once `predicate(commands)` holds."""
        try:
            return wait_until(
                lambda: found if predicate(found := self.commands()) else None,
                timeout=timeout,
                interval=0.3,
                failure=lambda: (
                    f"commands not as expected after {timeout} s: {self.commands()}\n{logs()}"
                ),
            )
        except ServiceError as err:
            pytest.fail(str(err))


@pytest.fixture
def kafka(kafka_bootstrap: str, topic_prefix: str) -> Kafka:
    return Kafka(kafka_bootstrap, topic_prefix)
