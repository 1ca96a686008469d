"""A whole Nudge stack as real processes: SMTP sink, processor, sender (and optionally web),
the mail they delivered and the topics they wrote.

Built on the `services` fixture (nudge.testing): each test gets its own topic prefix, state,
maildir and free ports, so stacks never see each other; every process is stopped when the test
ends, also when it fails.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from nudge.settings import Settings
from nudge.testing import Service, ServiceError, Services, wait_until
from nudge.testkafka import Record, read_topic
from nudge.topics import Topics


@dataclass
class Stack:
    """The test's services and the mailbox the SMTP sink writes to."""

    services: Services
    maildir: Path

    @property
    def env(self) -> dict[str, str]:
        """The environment every service gets (change it before starting them)."""
        return self.services.env

    @property
    def settings(self) -> Settings:
        """What the services read from that environment (topics, Kafka, secrets)."""
        return Settings.from_env(self.env)

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.topic_prefix)

    def __getitem__(self, name: str) -> Service:
        return self.services[name]

    def start(self, *names: str) -> None:
        """Start the named services (smtp-sink, web, processor, sender); wait until all are up."""
        for name in names:
            args = ("--maildir", str(self.maildir)) if name == "smtp-sink" else ()
            self.services.start(name, *args)
        for name in names:
            self.services[name].wait_ready()

    def mails(self) -> list[EmailMessage]:
        """Every mail the sink stored so far, oldest first."""
        found = sorted(self.maildir.glob("**/*.eml"), key=lambda p: p.stat().st_mtime)
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in found
        ]

    def read(self, topic: str, *, at_least: int = 0, timeout: float = 60.0) -> list[Record]:
        """Every record of `topic` now, or once it holds `at_least` (nudge.testkafka)."""
        bootstrap = self.settings.kafka_bootstrap_servers
        return asyncio.run(read_topic(bootstrap, topic, at_least=at_least, timeout=timeout))

    def wait_for_mails(
        self, predicate: Callable[[list[EmailMessage]], bool], timeout: float = 60.0
    ) -> list[EmailMessage]:
        """The mails, once `predicate(mails)` holds; fails with every service's log otherwise."""
        try:
            return wait_until(
                lambda: mails if predicate(mails := self.mails()) else None,
                timeout=timeout,
                failure=lambda: (
                    f"expected mails did not arrive in {timeout:.0f} s; got {len(self.mails())}\n"
                    + self.services.logs()
                ),
            )
        except ServiceError as err:
            pytest.fail(str(err))


@pytest.fixture
def stack(kafka_bootstrap: str, services: Services, tmp_path: Path) -> Stack:
    """The environment of a stack; tests start the services they need."""
    services.env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "NUDGE_DELAY_SCALE": "0.001",
            "NUDGE_TOKEN_SECRET": "e2e-secret-e2e-secret-e2e-secret",
            "NUDGE_PUBLIC_URL": services.url("web"),
            "SMTP_URL": f"smtp://127.0.0.1:{services.port('smtp-sink')}",
        }
    )
    return Stack(services=services, maildir=tmp_path / "maildir")


@pytest.fixture
def full_stack(stack: Stack) -> Stack:
    """SMTP sink, processor and sender running and ready."""
    stack.start("smtp-sink", "processor", "sender")
    return stack
