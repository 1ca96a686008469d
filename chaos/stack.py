"""The stack under test as real processes (processor, sender, optionally a private Kafka broker)
plus an in-process SMTP sink that records, for every accepted mail, its idempotency key and the
moment it was accepted.

Everything started here is stopped by `Stack.close()` (the runner calls it in a `finally`, also
on Ctrl-C). Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from nudge.sender.sink import Faults, SmtpSink

ROOT = Path(__file__).resolve().parent.parent
NUDGE = str(Path(sys.executable).with_name("nudge"))
KAFKA_SH = ROOT / "deploy" / "local" / "kafka.sh"

_KEY = re.compile(rb"^X-Nudge-Idempotency-Key:[ \t]*([^\r\n]+)", re.IGNORECASE | re.MULTILINE)
_BCC = re.compile(rb"^(Bcc|Cc):", re.IGNORECASE | re.MULTILINE)
_TO = re.compile(rb"^To:", re.IGNORECASE | re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


@dataclass
class Stack:
    """Processor and sender processes with their environment, logs and health ports."""

    workdir: Path
    bootstrap: str
    prefix: str
    smtp_port: int
    delay_scale: float
    journeys: Path
    partitions: int = 4
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ports = {"processor": free_port(), "sender": free_port()}
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "NUDGE_TOPIC_PREFIX": self.prefix,
            "NUDGE_JOURNEYS": str(self.journeys),
            "NUDGE_TOPIC_PARTITIONS": str(self.partitions),
            "NUDGE_DELAY_SCALE": repr(self.delay_scale),
            "NUDGE_TOKEN_SECRET": "chaos-secret-chaos-secret-chaos-secret",
            "NUDGE_PROCESSOR_PORT": str(self.ports["processor"]),
            "NUDGE_SENDER_PORT": str(self.ports["sender"]),
            "NUDGE_PUBLIC_URL": "http://127.0.0.1:9",
            "SMTP_URL": f"smtp://127.0.0.1:{self.smtp_port}?timeout=10",
            # Retries every 1, 3, 9, 27 s…: an outage of 30 s is waited out within the run.
            "NUDGE_SEND_RETRY_BASE": "1",
            "NUDGE_LOG_FORMAT": "json",
            "NUDGE_LOG_LEVEL": "WARNING",
            **self.extra_env,
        }

    def start(self, name: str) -> None:
        env = self.env
        state = self.workdir / "state" / name
        state.parent.mkdir(parents=True, exist_ok=True)
        env["NUDGE_STATE_DIR"] = str(state)
        log = (self.workdir / "logs" / f"{name}.log").open("ab")
        args = (
            [NUDGE, "processor", "--tick-interval", "0.5", "--session-timeout", "6"]
            if name == "processor"
            else [NUDGE, "sender"]
        )
        self.processes[name] = subprocess.Popen(  # noqa: S603 (our own CLI, fixed arguments)
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.starts[name] = self.starts.get(name, 0) + 1

    def kill(self, name: str) -> None:
        """SIGKILL: no drain, no commit, no goodbye to the group."""
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(10)

    def exited(self) -> dict[str, int]:
        """Processes that ended on their own since the last start, with their exit codes."""
        return {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}

    async def ready(self, name: str) -> bool:
        url = f"http://127.0.0.1:{self.ports[name]}/readyz"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
                session.get(url) as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def wait_ready(self, name: str, limit: float = 120.0) -> float:
        """Seconds until /readyz answered 200; raises RuntimeError when it never does."""
        started = time.monotonic()
        while time.monotonic() - started < limit:
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited during start:\n{self.log_tail(name)}")
            if await self.ready(name):
                return time.monotonic() - started
            await asyncio.sleep(0.25)
        raise RuntimeError(f"{name} not ready after {limit} s:\n{self.log_tail(name)}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.workdir / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    async def close(self) -> None:
        """SIGTERM every process (then SIGKILL after 20 s)."""
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            while process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(5)
