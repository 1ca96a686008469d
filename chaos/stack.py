"""The stack under test: processor and sender as real processes (`nudge.testing.Services` with
the run's environment), optionally a private Kafka broker, and an in-process SMTP sink that
records, for every accepted mail, its idempotency key and the moment it was accepted.

Everything started here is stopped by `Stack.close()` (the runner calls it in a `finally`, also
on Ctrl-C). Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nudge.sender.sink import Faults, SmtpSink
from nudge.testing import Service, ServiceError, Services, free_port

__all__ = ["Accepted", "Broker", "RecordingSink", "Stack", "free_port"]

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = ROOT / "deploy" / "local" / "kafka.sh"
# Due timers checked every 0.5 s; a killed worker's partitions move on after 6 s of silence.
PROCESSOR_ARGS = ("--tick-interval", "0.5", "--session-timeout", "6")

_KEY = re.compile(rb"^X-Nudge-Idempotency-Key:[ \t]*([^\r\n]+)", re.IGNORECASE | re.MULTILINE)
_BCC = re.compile(rb"^(Bcc|Cc):", re.IGNORECASE | re.MULTILINE)
_TO = re.compile(rb"^To:", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Accepted:
    """One mail the sink answered 250 to."""

    key: str
    at: float  # time.time() when accepted
    injected: bool  # its header block shows an injected header or a second recipient
    rcpt: str = ""  # the envelope recipient(s), comma-separated


class RecordingSink(SmtpSink):
    """`nudge.sender.sink.SmtpSink` keeping only (key, time) per mail instead of the bytes."""

    def __init__(self, *, port: int, faults: Faults) -> None:
        super().__init__(None, port=port, faults=faults, keep=False)
        self.accepted: list[Accepted] = []

    def store(self, mail_from: str, rcpt_tos: tuple[str, ...], content: bytes) -> str:
        raw = content if isinstance(content, bytes) else str(content).encode()
        end = raw.find(b"\r\n\r\n")
        head = raw[: end if end >= 0 else raw.find(b"\n\n")]
        match = _KEY.search(head)
        key = match.group(1).strip().decode("ascii", "replace") if match else "<no key>"
        injected = len(rcpt_tos) != 1 or bool(_BCC.search(head)) or len(_TO.findall(head)) != 1
        rcpt = ",".join(rcpt_tos)
        self.accepted.append(Accepted(key=key, at=time.time(), injected=injected, rcpt=rcpt))
        return super().store(mail_from, rcpt_tos, content)

    @property
    def listening(self) -> bool:
        return self._server is not None

    def unique_keys(self) -> set[str]:
        return {a.key for a in self.accepted}


@dataclass
class Broker:
    """A private single-node broker (deploy/local/kafka.sh) on its own port and directory, so
    restarting it disturbs nobody else. Its data directory is wiped at every `start(fresh=True)`."""

    port: int
    home: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "NUDGE_KAFKA_PORT": str(self.port),
            "NUDGE_KAFKA_HOME": str(self.home),
        }

    def _prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        libs = self.home / "libs"
        shared = ROOT / ".cache" / "kafka" / "libs"
        if not libs.exists() and shared.is_dir():
            libs.symlink_to(shared.resolve())  # no second download of the jars

    async def start(self, *, fresh: bool = False) -> None:
        self._prepare()
        if fresh:
            await self.stop()
            shutil.rmtree(self.home / f"data-{self.port}", ignore_errors=True)
        await asyncio.to_thread(
            subprocess.run,
            [str(KAFKA_SH), "start"],
            env=self._env(),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def stop(self) -> None:
        if not (self.home / f"broker-{self.port}.pid").exists():
            return
        await asyncio.to_thread(
            subprocess.run,
            [str(KAFKA_SH), "stop"],
            env=self._env(),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


class Stack(Services):
    """Processor and sender (`start("processor")`, `start("sender")`) with the run's environment;
    logs in `workdir/logs/<name>.log`, state in `workdir/state/<name>`."""

    def __init__(
        self,
        *,
        workdir: Path,
        bootstrap: str,
        prefix: str,
        smtp_port: int,
        delay_scale: float,
        journeys: Path,
        partitions: int = 4,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "NUDGE_TOPIC_PREFIX": prefix,
            "NUDGE_JOURNEYS": str(journeys),
            "NUDGE_TOPIC_PARTITIONS": str(partitions),
            "NUDGE_DELAY_SCALE": repr(delay_scale),
            "NUDGE_TOKEN_SECRET": "chaos-secret-chaos-secret-chaos-secret",
            "NUDGE_PUBLIC_URL": "http://127.0.0.1:9",
            "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}?timeout=10",
            # Retries every 1, 3, 9, 27 s…: an outage of 30 s is waited out within the run.
            "NUDGE_SEND_RETRY_BASE": "1",
            "NUDGE_LOG_FORMAT": "json",
            "NUDGE_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        super().__init__(workdir, env=env)

    def start(
        self,
        name: str,
        *args: str,
        command: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Service:
        """Start `name` with the run's arguments (the processor's short tick and session)."""
        if not args and (command or name) == "processor":
            args = PROCESSOR_ARGS
        return super().start(name, *args, command=command, env=env)

    async def wait_ready(self, name: str, limit: float = 120.0) -> float:
        """Seconds from its last start until /readyz answered 200; ServiceError (a RuntimeError,
        quoting its log) when it exits or is not ready within `limit` s."""
        service = self[name]
        try:
            async with asyncio.timeout(limit):
                return await service.wait_ready_async()
        except TimeoutError:
            raise ServiceError(f"{name} not ready after {limit:.0f} s:\n{service.log()}") from None

    async def ready(self, name: str) -> bool:
        """One probe of /readyz."""
        return await asyncio.to_thread(self[name].is_ready)

    async def close(self) -> None:
        """SIGTERM every process (then SIGKILL after 20 s), without stalling the in-process sink
        a draining sender still talks to."""
        await self.stop_all_async()
