"""Killing the sender process mid-batch (SIGKILL) and starting it again loses no mail."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from senderkit import Cluster, make_command

from nudge.sender.sink import SmtpSink
from nudge.settings import Settings

pytestmark = pytest.mark.integration


def _spawn_sender(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "NUDGE_TOPIC_PREFIX": settings.topic_prefix,
        "SMTP_URL": f"smtp://127.0.0.1:{settings.smtp.port}?timeout=5",
        "NUDGE_SENDER_PORT": "0",
        "NUDGE_SEND_RETRY_BASE": "0.3",
        "NUDGE_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "NUDGE_TOKEN_SECRET": "test-secret",
        "NUDGE_LOG_LEVEL": "WARNING",
    }
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "nudge.cli", "sender"], env=env, stdout=handle, stderr=handle
        )


def _ambiguous_reported(log: Path) -> int:
    counts = [
        orjson.loads(line)["count"]
        for line in log.read_bytes().splitlines()
        if line.startswith(b"{") and b'"sender.ambiguous_keys"' in line
    ]
    return max(counts, default=0)


@pytest.fixture
def processes() -> list[subprocess.Popen[bytes]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started  # type: ignore[misc]
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.timeout(150)
async def test_sigkill_mid_batch_then_restart_loses_nothing(
    cluster: Cluster,
    sink: SmtpSink,
    sender_settings: Settings,
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """Every command is delivered after a SIGKILL mid-batch; a mail is sent twice only if its
    key was caught between "sending" and the recorded reply (reported as ambiguous)."""
    sink.faults.delay = 0.02  # ~8 connections x 50 mails/s: the batch takes a few seconds
    commands = [make_command() for _ in range(300)]
    processes.append(_spawn_sender(sender_settings, tmp_path / "sender.log"))
    await cluster.send(*commands)
    async with asyncio.timeout(60):
        await sink.wait_for(60)
    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait(10)
    killed_at = sink.count
    assert killed_at < len(commands), "the batch finished before the kill; slow the sink down"
    processes.append(_spawn_sender(sender_settings, tmp_path / "sender.log"))
    async with asyncio.timeout(90):
        received = await sink.wait_for(len(commands))
    await asyncio.sleep(1.5)
    keys = Counter(r.message()["X-Nudge-Idempotency-Key"] for r in sink.received)
    assert set(keys) == {c.idempotency_key for c in commands}, "lost mail"
    resent = sum(n - 1 for n in keys.values())
    if resent:  # only keys the restarted sender found ambiguous may have been sent twice
        assert resent <= _ambiguous_reported(tmp_path / "sender.log")
    assert len(received) == len(commands) + resent
    print(f"killed after {killed_at} mails; {resent} resent (ambiguous window)")


@pytest.mark.timeout(120)
async def test_sigterm_drains_in_flight_mail_and_restart_sends_no_duplicate(
    cluster: Cluster,
    sink: SmtpSink,
    sender_settings: Settings,
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """SIGTERM finishes what is in flight, commits and exits 0; a restart sends the rest once."""
    sink.faults.delay = 0.02
    commands = [make_command() for _ in range(200)]
    processes.append(_spawn_sender(sender_settings, tmp_path / "sender.log"))
    await cluster.send(*commands)
    async with asyncio.timeout(60):
        await sink.wait_for(40)
    processes[0].send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(processes[0].wait, 60) == 0
    processes.append(_spawn_sender(sender_settings, tmp_path / "sender.log"))
    async with asyncio.timeout(90):
        await sink.wait_for(len(commands))
    await asyncio.sleep(1.5)
    keys = Counter(r.message()["X-Nudge-Idempotency-Key"] for r in sink.received)
    assert set(keys) == {c.idempotency_key for c in commands}
    assert max(keys.values()) == 1, "a graceful stop must not leave ambiguous keys"
