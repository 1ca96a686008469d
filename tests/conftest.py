"""Fixtures every test may use: isolated settings per test, the real broker's address, and
`services` for running Nudge's own processes (nudge.testing; docs/dev/testing.md)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nudge.settings import Settings
from nudge.testing import Services


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test or run uses, so topics and consumer groups never collide."""
    return f"test-{uuid.uuid4().hex[:12]}."


@pytest.fixture
def kafka_bootstrap() -> str:
    """The real broker `make test` started (deploy/local/with-kafka.sh sets the variable)."""
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not servers:
        pytest.fail(
            "KAFKA_BOOTSTRAP_SERVERS is not set: run integration tests with `make test` "
            "or `make test-integration`, which start a local broker"
        )
    return servers


@pytest.fixture
def make_settings(topic_prefix: str, tmp_path: Any) -> Callable[..., Settings]:
    """Settings for one test: own topic prefix and state directory, overridable per field."""

    def factory(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "kafka_bootstrap_servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            "topic_prefix": topic_prefix,
            "state_dir": tmp_path / "state",
            "token_secret": b"test-secret-test-secret-test-sec",
            "topic_partitions": 2,
        }
        base.update(overrides)
        return Settings(**base)

    return factory


@pytest.fixture
def services(
    topic_prefix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Services]:
    """Nudge processes for one test: its own topic prefix, ports, state and logs (under
    `tmp_path`). Every one is stopped when the test ends; a failed test prints their logs."""
    running = Services(
        tmp_path,
        env={
            "NUDGE_TOPIC_PREFIX": topic_prefix,
            "NUDGE_TOPIC_PARTITIONS": "2",
            "NUDGE_LOG_FORMAT": "json",
        },
    )
    try:
        yield running
    finally:
        running.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed and running.started:
            print(running.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so fixtures can tell whether it failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
