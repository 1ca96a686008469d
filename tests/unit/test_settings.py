"""Settings read from the environment: the base URLs every link in mail is built on."""

from __future__ import annotations

import pytest

from nudge.errors import ConfigError
from nudge.settings import Settings


@pytest.mark.parametrize("name", ["NUDGE_SHOP_URL", "NUDGE_PUBLIC_URL"])
@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("https://shop.example.jp", "https://shop.example.jp"),
        ("https://shop.example.jp/", "https://shop.example.jp"),
        (" http://127.0.0.1:8080/links/ \n", "http://127.0.0.1:8080/links"),
        ("HTTPS://Shop.Example.jp/ja", "HTTPS://Shop.Example.jp/ja"),
    ],
)
def test_a_base_url_is_read_without_its_trailing_slash(name: str, written: str, read: str) -> None:
    assert getattr(Settings.from_env({name: written}), _field(name)) == read


@pytest.mark.parametrize("name", ["NUDGE_SHOP_URL", "NUDGE_PUBLIC_URL"])
@pytest.mark.parametrize(
    "written",
    [
        "shop.example.jp",  # no scheme: every link would be relative, i.e. broken
        "//shop.example.jp",
        "javascript:alert(1)",
        "ftp://shop.example.jp",
        "https://",
        "https://shop example.jp",
        "https://shop.example.jp/?utm=x",  # paths are appended to it
        "https://shop.example.jp/#top",
        "https://shop.example.jp/\x00",
    ],
)
def test_a_base_url_that_is_not_an_absolute_web_url_is_refused_at_start(
    name: str, written: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: written})


def test_unset_base_urls_keep_their_defaults() -> None:
    settings = Settings.from_env({"NUDGE_SHOP_URL": " ", "NUDGE_PUBLIC_URL": ""})
    assert settings.shop_url == "https://shop.example.com"
    assert settings.public_base_url == "http://127.0.0.1:8080"


def _field(name: str) -> str:
    return {"NUDGE_SHOP_URL": "shop_url", "NUDGE_PUBLIC_URL": "public_base_url"}[name]
