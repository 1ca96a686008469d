"""The few HTML pages a person sees: unsubscribe confirmation, done, and the error pages.

Every error the service answers, token or not (404, 405, 408, 413, 429, 500, 503), is one of these
pages with the same headers, never a framework's bare text; only a request aiohttp cannot parse gets
aiohttp's own 400 (no route or middleware sees it: docs/links.md, Known limits).

Rendered with Jinja2 and autoescaping; the only dynamic value is the token (in the form's action),
which is escaped like everything else. Nothing from the request or the user's profile is shown.
The language comes from the verified token's locale (`en…` → English, anything else → Japanese,
SPEC §8's default); error pages, where no token can be trusted, show both languages.
"""

from __future__ import annotations

from typing import Final, Literal

import jinja2

Lang = Literal["ja", "en"]
PageName = Literal[
    "confirm",
    "done",
    "unavailable",
    "invalid",
    "expired",
    "not_found",
    "not_allowed",
    "too_large",
]

# Strict enough that the page can load nothing and post only to us; inline CSS is the one allowance.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

TEXT: Final[dict[Lang, dict[str, str]]] = {
    "ja": {
        "confirm_title": "配信停止の確認",
        "confirm_body": (
            "お知らせ・キャンペーンなどの広告宣伝メールの配信を停止します。"
            "ご注文・配送・パスワードなど、お取引に関するメールは引き続きお届けします。"
        ),
        "button": "配信を停止する",
        "done_title": "配信を停止しました",
        "done_body": (
            "今後、広告宣伝メールはお送りしません。お取引に関するメールは引き続きお届けします。"
        ),
        "unavailable_title": "ただいま処理できません",
        "unavailable_body": "しばらくしてから、もう一度お試しください。",
        "invalid_title": "このリンクは無効です",
        "invalid_body": "メールに記載のリンクを、変更せずにそのままお使いください。",
        # Only an unsubscribe link answers "expired": an expired click still redirects.
        "expired_title": "このリンクは有効期限が切れています",
        "expired_body": "より新しいメールに記載の配信停止リンクをお使いください。",
        "not_found_title": "ページが見つかりません",
        "not_found_body": "メールに記載のリンクをお使いください。",
        "not_allowed_title": "この方法ではご利用いただけません",
        "not_allowed_body": "メールに記載のリンクを、ブラウザでそのまま開いてください。",
        "too_large_title": "送信された内容が大きすぎます",
        "too_large_body": "メールに記載のリンクを、変更せずにそのままお使いください。",
    },
    "en": {
        "confirm_title": "Unsubscribe from marketing email",
        "confirm_body": (
            "You will no longer receive newsletters, offers and reminders from us. "
            "Emails about your orders, deliveries and account will still be sent."
        ),
        "button": "Unsubscribe",
        "done_title": "You are unsubscribed",
        "done_body": (
            "We will not send you marketing email any more. "
            "Emails about your orders, deliveries and account will still be sent."
        ),
        "unavailable_title": "We could not do that just now",
        "unavailable_body": "Please try again in a few minutes.",
        "invalid_title": "This link is not valid",
        "invalid_body": "Please use the link exactly as it appears in the email.",
        "expired_title": "This link has expired",
        "expired_body": "Please use the unsubscribe link in a more recent email from us.",
        "not_found_title": "Page not found",
        "not_found_body": "Please use the link exactly as it appears in the email.",
        "not_allowed_title": "This request is not supported",
        "not_allowed_body": "Please open the link from the email in your browser.",
        "too_large_title": "The request is too large",
        "too_large_body": "Please use the link exactly as it appears in the email.",
    },
}

_PAGE: Final = """<!doctype html>
<html lang="{{ langs[0] }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{ text[langs[0]][page ~ "_title"] }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem;
       line-height: 1.6; color: #222; }
button { font-size: 1rem; padding: .6rem 1.4rem; border-radius: .3rem; border: 1px solid #555;
         background: #fff; cursor: pointer; }
section + section { border-top: 1px solid #ddd; margin-top: 2rem; }
</style>
</head>
<body>
{% for lang in langs %}
<section lang="{{ lang }}">
<h1>{{ text[lang][page ~ "_title"] }}</h1>
<p>{{ text[lang][page ~ "_body"] }}</p>
{% if page == "confirm" and token %}
<form method="post" action="unsubscribe?token={{ token }}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">{{ text[lang]["button"] }}</button>
</form>
{% endif %}
</section>
{% endfor %}
</body>
</html>
"""

_ENV: Final = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_TEMPLATE: Final = _ENV.from_string(_PAGE)


def lang_of(locale: str | None) -> Lang:
    """The page language for a user's locale: English for `en…`, otherwise Japanese."""
    return "en" if locale and locale.lower().startswith("en") else "ja"


def render(page: PageName, *, lang: Lang | None = None, token: str | None = None) -> str:
    """One page in `lang`, or in Japanese and English when the language is not known."""
    langs: tuple[Lang, ...] = (lang,) if lang is not None else ("ja", "en")
    return _TEMPLATE.render(page=page, langs=langs, text=TEXT, token=token)
