"""The HTML a person sees: right language, a button that POSTs, nothing unescaped."""

from __future__ import annotations

import pytest

from nudge.links.pages import lang_of, render


@pytest.mark.parametrize(
    ("locale", "lang"),
    [
        ("ja", "ja"),
        ("ja-JP", "ja"),
        ("en", "en"),
        ("en-US", "en"),
        ("EN_gb", "en"),
        ("fr", "ja"),
        (None, "ja"),
        ("", "ja"),
    ],
)
def test_the_page_language_follows_the_locale(locale: str | None, lang: str) -> None:
    """English for en…, otherwise Japanese (the SPEC's default locale)."""
    assert lang_of(locale) == lang


def test_the_japanese_confirmation_page_has_a_button_that_posts_one_click() -> None:
    """The page asks in Japanese and its form sends the RFC 8058 body to the same URL."""
    html = render("confirm", lang="ja", token="abc.def")
    assert '<html lang="ja">' in html
    assert "配信を停止する" in html
    assert '<form method="post" action="unsubscribe?token=abc.def">' in html
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in html
    assert ">Unsubscribe<" not in html


def test_the_english_confirmation_page_is_in_english() -> None:
    """An English-speaking user sees English only."""
    html = render("confirm", lang="en", token="abc.def")
    assert '<html lang="en">' in html
    assert ">Unsubscribe</button>" in html
    assert "配信" not in html


def test_the_token_is_escaped_in_the_page() -> None:
    """Even a hostile token value cannot break out of the attribute."""
    html = render("confirm", lang="en", token='"><script>alert(1)</script>')
    assert "<script>" not in html
    assert "&#34;&gt;&lt;script&gt;" in html


@pytest.mark.parametrize(
    "page", ["invalid", "expired", "not_found", "not_allowed", "too_large", "unavailable"]
)
def test_error_pages_speak_both_languages(page: str) -> None:
    """Where no token can be trusted, the page is in Japanese and English and has no form."""
    html = render(page, lang=None)  # type: ignore[arg-type]
    assert 'lang="ja"' in html
    assert 'lang="en"' in html
    assert "<form" not in html


def test_the_expired_page_speaks_of_unsubscribe_links_only_it_is_used_for() -> None:
    """Only an unsubscribe link answers "expired" (an expired click redirects), so it says so."""
    assert "配信停止リンク" in render("expired", lang="ja")
    assert "unsubscribe link" in render("expired", lang="en")
