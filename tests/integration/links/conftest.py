"""`nudge web` as a real process against the real broker, one per test, always stopped after."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nudge.settings import Settings

NUDGE = str(Path(sys.executable).with_name("nudge"))
SECRET = "links-it-secret-links-it-secret-"


@dataclass
class WebProcess:
    """A running `nudge web`: its base URL, settings and log."""

    process: subprocess.Popen[bytes]
    base_url: str
    settings: Settings
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def web_process(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[WebProcess]:
    """Start `nudge web` with its own topic prefix and port; wait until /readyz says 200."""
    web = start_web(kafka_bootstrap, topic_prefix, tmp_path)
    try:
        wait_for(web, "/readyz")
        yield web
    finally:
        web.stop()


@pytest.fixture
def web_without_kafka(topic_prefix: str, tmp_path: Path) -> Iterator[WebProcess]:
    """`nudge web` pointed at a port where no broker listens; waits until /livez says 200."""
    web = start_web(f"127.0.0.1:{free_port()}", topic_prefix, tmp_path)
    try:
        wait_for(web, "/livez")
        yield web
    finally:
        web.stop()


def start_web(bootstrap: str, topic_prefix: str, tmp_path: Path) -> WebProcess:
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "NUDGE_TOPIC_PREFIX": topic_prefix,
        "NUDGE_TOPIC_PARTITIONS": "2",
        "NUDGE_TOKEN_SECRET": SECRET,
        "NUDGE_WEB_PORT": str(port),
        "NUDGE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "NUDGE_LOG_FORMAT": "json",
    }
    log_path = tmp_path / "web.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 (our own CLI, fixed arguments)
            [NUDGE, "web"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    return WebProcess(
        process=process,
        base_url=f"http://127.0.0.1:{port}",
        settings=Settings.from_env(env),
        log_path=log_path,
    )


def wait_for(web: WebProcess, path: str, timeout: float = 30.0) -> None:
    """Poll `path` until it answers 200; fail with the process's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if web.process.poll() is not None:
            pytest.fail(f"nudge web exited early:\n{web.log()}")
        try:
            with urllib.request.urlopen(f"{web.base_url}{path}", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"nudge web: {path} not 200 after {timeout} s:\n{web.log()}")
