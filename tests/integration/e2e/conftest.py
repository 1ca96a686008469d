"""A whole Nudge stack as real processes: SMTP sink, processor, sender (and optionally links).

Each test gets its own topic prefix, state directory, maildir and free ports, so stacks never see
each other; every process is stopped when the test ends, also when it fails.
"""

from __future__ import annotations

import email
import email.policy
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest

NUDGE = str(Path(sys.executable).with_name("nudge"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Stack:
    """Handles on a running stack: its environment, mailbox and processes."""

    env: dict[str, str]
    maildir: Path
    logs: Path
    ports: dict[str, int]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str, ready_path: str | None = "/readyz") -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            # The child keeps its own copy of the descriptor; ours can close at once.
            self.processes[name] = subprocess.Popen(  # noqa: S603 (our own CLI, fixed arguments)
                [NUDGE, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        if ready_path is not None:
            self.wait_ready(name, ready_path)

    def start_sink(self) -> None:
        """`nudge smtp-sink` on this stack's port, storing mail in its maildir."""
        port = str(self.ports["smtp-sink"])
        self.start(
            "smtp-sink",
            "smtp-sink",
            "--port",
            port,
            "--maildir",
            str(self.maildir),
            ready_path=None,
        )

    def wait_ready(self, name: str, path: str, timeout: float = 90.0) -> None:
        url = f"http://127.0.0.1:{self.ports[name]}{path}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                pytest.fail(f"{name} exited early:\n{self.log(name)}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        pytest.fail(f"{name} not ready at {url} after {timeout} s:\n{self.log(name)}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def mails(self) -> list[EmailMessage]:
        found = sorted(self.maildir.glob("**/*.eml"), key=lambda p: p.stat().st_mtime)
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in found
        ]

    def wait_for_mails(
        self, predicate: Callable[[list[EmailMessage]], bool], timeout: float = 60.0
    ) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mails = self.mails()
            if predicate(mails):
                return mails
            time.sleep(0.25)
        logs = "\n".join(f"--- {n}\n{self.log(n)}" for n in ("processor", "sender", "smtp-sink"))
        pytest.fail(
            f"expected mails did not arrive in {timeout} s; got {len(self.mails())}\n{logs}"
        )


@pytest.fixture
def stack(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Stack]:
    """Environment and helpers for a stack; tests start the processes they need."""
    ports = {name: free_port() for name in ("smtp-sink", "processor", "sender", "web")}
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "NUDGE_TOPIC_PREFIX": topic_prefix,
        "NUDGE_STATE_DIR": str(tmp_path / "state"),
        "NUDGE_TOPIC_PARTITIONS": "2",
        "NUDGE_DELAY_SCALE": "0.001",
        "NUDGE_TOKEN_SECRET": "e2e-secret-e2e-secret-e2e-secret",
        "NUDGE_PROCESSOR_PORT": str(ports["processor"]),
        "NUDGE_SENDER_PORT": str(ports["sender"]),
        "NUDGE_WEB_PORT": str(ports["web"]),
        "NUDGE_PUBLIC_URL": f"http://127.0.0.1:{ports['web']}",
        "SMTP_URL": f"smtp://127.0.0.1:{ports['smtp-sink']}",
        "NUDGE_LOG_FORMAT": "json",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    running = Stack(env=env, maildir=tmp_path / "maildir", logs=logs, ports=ports)
    try:
        yield running
    finally:
        for name in list(running.processes):
            running.stop(name)


@pytest.fixture
def full_stack(stack: Stack) -> Stack:
    """SMTP sink, processor and sender running and ready."""
    stack.start_sink()
    stack.start("processor", "processor")
    stack.start("sender", "sender")
    return stack
