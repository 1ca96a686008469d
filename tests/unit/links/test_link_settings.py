"""The link service's settings: its port, the public URL default, and retired token secrets."""

from __future__ import annotations

import pytest

from nudge.errors import ConfigError
from nudge.settings import Settings


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


def test_secrets_never_appear_in_the_settings_repr() -> None:
    """Logging the settings object does not leak current or retired secrets."""
    settings = Settings.from_env(
        {"NUDGE_TOKEN_SECRET": "sekrit-now", "NUDGE_TOKEN_SECRET_PREVIOUS": "sekrit-old"}
    )
    assert "sekrit" not in repr(settings)


def test_a_bad_web_port_is_a_config_error() -> None:
    """NUDGE_WEB_PORT must be a whole number."""
    with pytest.raises(ConfigError, match="NUDGE_WEB_PORT"):
        Settings.from_env({"NUDGE_WEB_PORT": "eighty"})
