"""`nudge web` as a real process (the `services` fixture), one per test, always stopped after."""

from __future__ import annotations

import pytest

from nudge.testing import Service, Services, free_port

SECRET = "links-it-secret-links-it-secret-"


@pytest.fixture
def web_process(kafka_bootstrap: str, services: Services) -> Service:
    """`nudge web` with its own topic prefix and port, once /readyz says 200."""
    web = start_web(services, kafka_bootstrap)
    web.wait_ready(30)
    return web


@pytest.fixture
def web_without_kafka(services: Services) -> Service:
    """`nudge web` pointed at a port where no broker listens, once /livez says 200."""
    web = start_web(services, f"127.0.0.1:{free_port()}")
    web.wait_ready(30, path="/livez")
    return web


def start_web(services: Services, bootstrap: str) -> Service:
    return services.start(
        "web",
        env={
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "NUDGE_TOKEN_SECRET": SECRET,
            "NUDGE_PUBLIC_URL": services.url("web"),
        },
    )
