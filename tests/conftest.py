"""Fixtures every test may use: isolated settings per test, and the real broker's address."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from nudge.settings import Settings


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
