"""Real `nudge processor` subprocesses against the real broker, and topic helpers.

Each test gets its own topic prefix; each processor its own state directory and port. Every
process a test starts is killed when the test ends, also when it fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from nudge.topics import Topics

NUDGE = str(Path(sys.executable).with_name("nudge"))
# Marketing mail waits out 21:00–09:00 local time: tests pick a zone where it is day now.
ZONES = ("Asia/Tokyo", "Europe/London", "America/New_York", "Asia/Kolkata", "Pacific/Honolulu")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def daytime_zone() -> str:
    """A time zone where it is between 10:00 and 19:00 now (no quiet hours during the test)."""
    for name in ZONES:
        if 10 <= datetime.now(ZoneInfo(name)).hour < 19:
            return name
    return "Asia/Tokyo"  # pragma: no cover - some listed zone is always in its day


@dataclass
class Worker:
    """One `nudge processor` subprocess."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    def partitions(self) -> set[int] | None:
        """The partitions /readyz reports, or None when not ready."""
        status, body = self.get("/readyz")
        if status != 200:
            return None
        listed = body.split("partitions:", 1)[1].strip() if "partitions:" in body else ""
        return {int(p) for p in listed.split(",") if p}

    def wait_ready(
        self, timeout: float = 60.0, partitions: Callable[[set[int]], bool] | None = None
    ) -> set[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            owned = self.partitions()
            if owned is not None and (partitions is None or partitions(owned)):
                return owned
            time.sleep(0.2)
        pytest.fail(f"{self.name} not ready after {timeout} s:\n{self.log()}")

    def metric(self, name: str) -> float:
        """Sum of every sample of one metric family in /metrics."""
        _, body = self.get("/metrics")
        total = 0.0
        for line in body.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@dataclass
class Cluster:
    """Starts processors sharing one prefix; remembers them to kill them at the end."""

    env: dict[str, str]
    tmp: Path
    workers: list[Worker] = field(default_factory=list)

    def start(self, name: str, **env: str) -> Worker:
        port = free_port()
        state = self.tmp / f"state-{name}"
        log_path = self.tmp / f"{name}.log"
        full_env = {
            **self.env,
            "NUDGE_STATE_DIR": str(state),
            "NUDGE_PROCESSOR_PORT": str(port),
            **env,
        }
        args = [NUDGE, "processor", "--tick-interval", "0.2", "--session-timeout", "6"]
        with log_path.open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 (our own CLI, fixed arguments)
                args, env=full_env, stdout=log, stderr=subprocess.STDOUT
            )
        worker = Worker(name=name, port=port, process=process, log_path=log_path)
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.log()}" for w in self.workers)


@pytest.fixture
def cluster(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "NUDGE_TOPIC_PREFIX": topic_prefix,
        "NUDGE_TOPIC_PARTITIONS": "2",
        "NUDGE_DELAY_SCALE": "0.001",
        "NUDGE_TOKEN_SECRET": "processor-secret-processor-secret",
        "NUDGE_LOG_FORMAT": "json",
    }
    cluster = Cluster(env=env, tmp=tmp_path)
    try:
        yield cluster
    finally:
        for worker in cluster.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(10)
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(cluster.logs())


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

    def read(self, topic: str, timeout: float = 2.0) -> list[Any]:
        """Every record currently in `topic` (all partitions), read from the beginning."""

        async def run() -> list[Any]:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
            await consumer.start()
            try:
                partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    await consumer._client.force_metadata_update()
                    partitions = consumer.partitions_for_topic(topic) or set()
                tps = [TopicPartition(topic, p) for p in partitions]
                if not tps:
                    return []
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                ends = await consumer.end_offsets(tps)
                found: list[Any] = []
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    positions = [await consumer.position(tp) for tp in tps]
                    if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                        break
                    batch = await consumer.getmany(timeout_ms=200)
                    for records in batch.values():
                        found.extend(records)
                return found
            finally:
                await consumer.stop()

        return asyncio.run(run())

    def commands(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.read(self.topics.send_commands)]

    def wait_for_commands(
        self,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float,
        logs: Callable[[], str],
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.commands()
            if predicate(found):
                return found
            time.sleep(0.3)
        pytest.fail(f"commands not as expected after {timeout} s: {self.commands()}\n{logs()}")


@pytest.fixture
def kafka(kafka_bootstrap: str, topic_prefix: str) -> Kafka:
    return Kafka(kafka_bootstrap, topic_prefix)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
