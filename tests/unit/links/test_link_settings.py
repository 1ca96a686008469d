"""The link service's settings: its port, the public URL default, and the token secrets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from nudge.errors import ConfigError
from nudge.links.routes import build_app
from nudge.links.sink import RecordingEventSink
from nudge.links.urls import MailRef, unsubscribe_url
from nudge.links.web import token_keys
from nudge.settings import Settings

from .conftest import NOW, FakeClock

Client = TestClient[web.Request, web.Application]
OLD = "old-secret-0123456789abcdef"
NEW = "new-secret-fedcba9876543210"


def test_defaults_point_mail_links_at_the_web_service() -> None:
    """`nudge web` listens on 8080 and mail links point there unless NUDGE_PUBLIC_URL says not."""
    settings = Settings.from_env({})
    assert settings.web_port == 8080
    assert settings.public_base_url == "http://127.0.0.1:8080"
    assert settings.token_secrets_previous == ()


def test_previous_secrets_are_a_comma_separated_list() -> None:
    """NUDGE_TOKEN_SECRET_PREVIOUS lists retired secrets, newest first; blanks are ignored."""
    settings = Settings.from_env(
        {"NUDGE_TOKEN_SECRET": "new", "NUDGE_TOKEN_SECRET_PREVIOUS": " old-1, ,old-2 "}
    )
    assert settings.token_secret == b"new"
    assert settings.token_secrets_previous == (b"old-1", b"old-2")


@pytest.mark.parametrize("written", [f"{OLD}\n", f"  {OLD}\r\n", f"\t{OLD} "])
def test_both_secret_variables_strip_surrounding_whitespace(written: str) -> None:
    """The current and the retired secrets read alike: a secret file's newline is not part of it."""
    current = Settings.from_env({"NUDGE_TOKEN_SECRET": written})
    retired = Settings.from_env({"NUDGE_TOKEN_SECRET": NEW, "NUDGE_TOKEN_SECRET_PREVIOUS": written})
    assert current.token_secret == OLD.encode()
    assert retired.token_secrets_previous == (OLD.encode(),)


def test_whitespace_inside_a_secret_is_kept() -> None:
    """Only surrounding whitespace goes; a secret with inner spaces is used as it is."""
    settings = Settings.from_env({"NUDGE_TOKEN_SECRET": " correct horse battery \n"})
    assert settings.token_secret == b"correct horse battery"


@pytest.mark.parametrize("secret", ["old secret with, a comma", "abc,", ","])
def test_a_comma_in_the_secret_is_refused_at_start(secret: str) -> None:
    """A comma could never be retired into the comma-separated list: a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"^NUDGE_TOKEN_SECRET contains a comma.*openssl"):
        Settings.from_env({"NUDGE_TOKEN_SECRET": secret})


def test_a_blank_secret_is_unset() -> None:
    """A secret of whitespace only is no secret: a random one per process, as when unset."""
    settings = Settings.from_env({"NUDGE_TOKEN_SECRET": " \n"})
    assert len(settings.token_secret) == 32
    assert settings.token_secret_random  # the sender and `nudge web` warn at start
    assert not Settings.from_env({"NUDGE_TOKEN_SECRET": "s3cret\n"}).token_secret_random


def test_secrets_never_appear_in_the_settings_repr() -> None:
    """Logging the settings object does not leak current or retired secrets."""
    settings = Settings.from_env(
        {"NUDGE_TOKEN_SECRET": "sekrit-now\n", "NUDGE_TOKEN_SECRET_PREVIOUS": "sekrit-old\n"}
    )
    assert "sekrit" not in repr(settings)


def test_a_bad_web_port_is_a_config_error() -> None:
    """NUDGE_WEB_PORT must be a whole number."""
    with pytest.raises(ConfigError, match="NUDGE_WEB_PORT"):
        Settings.from_env({"NUDGE_WEB_PORT": "eighty"})


OneClick = Callable[[dict[str, str], str], Awaitable[int]]


@pytest.fixture
async def one_click(clock: FakeClock) -> AsyncIterator[OneClick]:
    """POST the one-click body to a link, on a `nudge web` configured from an environment."""
    clients: list[Client] = []

    async def post(env: dict[str, str], url: str) -> int:
        app = build_app(
            sink=RecordingEventSink(),
            keys=token_keys(Settings.from_env(env)),
            clock=clock.now,
            monotonic=clock.monotonic,
        )
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        response = await client.post(URL(url).path_qs, data={"List-Unsubscribe": "One-Click"})
        return response.status

    yield post
    for client in clients:
        await client.close()


def link(ref: MailRef, secret: bytes) -> str:
    return unsubscribe_url(ref, base_url="http://links.example", secret=secret, now=NOW)


async def test_rotating_a_secret_with_a_trailing_newline_keeps_delivered_links_working(
    one_click: OneClick, ref: MailRef
) -> None:
    """docs/links.md's rotation with secrets read from files: the link the sender made with the
    old secret unsubscribes after `nudge web` moves to the new one and lists the old as previous,
    and stops only once the old secret is dropped."""
    old_sender = Settings.from_env({"NUDGE_TOKEN_SECRET": f"{OLD}\n"})
    delivered = link(ref, old_sender.token_secret)
    before = {"NUDGE_TOKEN_SECRET": f"{OLD}\n"}
    step_1 = {"NUDGE_TOKEN_SECRET": f"{NEW}\n", "NUDGE_TOKEN_SECRET_PREVIOUS": f"{OLD}\n"}
    assert await one_click(before, delivered) == 200
    assert await one_click(step_1, delivered) == 200
    new_sender = Settings.from_env({"NUDGE_TOKEN_SECRET": f"{NEW}\n"})
    assert await one_click(step_1, link(ref, new_sender.token_secret)) == 200
    step_3 = {"NUDGE_TOKEN_SECRET": f"{NEW}\n"}
    assert await one_click(step_3, delivered) == 403
