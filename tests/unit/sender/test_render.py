"""Templates: every one renders in ja and en; strict variables; escaping; locale fallback."""

from __future__ import annotations

import re
from datetime import timedelta, timezone

import pytest

from nudge.errors import TemplateError
from nudge.sender.render import LOCALES, Renderer, money, resolve_locale, sample_variables

RENDERER = Renderer()
SAMPLES = sample_variables()
NAMES = RENDERER.template_names()
MARKETING = {
    "onboarding_guide",
    "onboarding_tips",
    "cart_reminder_1",
    "cart_reminder_2",
    "browse_offer",
    "first_purchase_thank_you",
    "review_request",
    "cross_sell",
    "winback_1",
    "winback_2",
    "birthday",
    "anniversary",
    "seasonal_pre_sale",
    "seasonal_launch",
    "seasonal_last_call",
}
CONTRACT = {
    "order_confirmation",
    "shipping_notice",
    "password_reset",
    "email_verification",
    "welcome",
} | MARKETING


def test_every_template_of_the_contract_is_shipped_with_samples() -> None:
    """docs/dev/contracts.md lists these templates; each exists and has sample variables."""
    assert set(NAMES) == CONTRACT
    assert set(SAMPLES) == CONTRACT


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_every_template_renders_in_every_locale(name: str, locale: str) -> None:
    """Subject, text and HTML render with the sample variables; marketing shows unsubscribe."""
    variables = {
        **SAMPLES[name],
        "shop_name": "Nudge Shop",
        "shop_url": "https://shop.example.com",
    }
    if name in MARKETING:
        variables["unsubscribe_url"] = "https://shop.example.com/unsubscribe?token=t"
        variables.update(sender_name="Nudge Shop", sender_address="", sender_contact="")
    mail = RENDERER.render(name, locale, variables)
    assert mail.locale == locale
    assert mail.subject
    assert "\n" not in mail.subject
    assert mail.html.lstrip().startswith("<!DOCTYPE html>")
    assert f'lang="{locale}"' in mail.html
    expected_name = SAMPLES[name]["name"] or ("お客様" if locale == "ja" else "Hello there")
    assert expected_name in mail.text
    if name in MARKETING:
        assert "https://shop.example.com/unsubscribe?token=t" in mail.text
        assert 'href="https://shop.example.com/unsubscribe?token=t"' in mail.html
    else:
        assert "unsubscribe" not in mail.html.lower()
    if locale == "ja":
        assert re.search(r"[ぁ-んァ-ン]", mail.subject)
        assert "様" in mail.text or "お客様" in mail.text


@pytest.mark.parametrize(("locale", "greeting"), [("ja", "お客様"), ("en", "Hello there,")])
def test_a_missing_name_falls_back_to_a_polite_greeting(locale: str, greeting: str) -> None:
    """`name: null` (or absent) greets the customer generically, never `None`."""
    mail = RENDERER.render("welcome", locale, {"name": None, "shop_name": "S", "shop_url": "u"})
    assert mail.text.startswith(greeting)
    assert "None" not in mail.text
    bare = RENDERER.render("welcome", locale, {"shop_name": "S", "shop_url": "u"})
    assert bare.text.startswith(greeting)


@pytest.mark.parametrize(
    ("locale", "used"), [("ja-JP", "ja"), ("en_US", "en"), ("EN", "en"), ("fr", "ja"), (None, "ja")]
)
def test_unknown_locales_fall_back_to_japanese(locale: str | None, used: str) -> None:
    """Regional variants map to their language; anything unknown uses `ja` (SPEC default)."""
    assert resolve_locale(locale) == used


def test_a_missing_variable_names_template_and_variable() -> None:
    """StrictUndefined: no silent empty hole, an error an operator can act on."""
    with pytest.raises(TemplateError) as caught:
        RENDERER.render(
            "order_confirmation",
            "ja",
            {"name": "x", "items": [], "shop_name": "S", "shop_url": "u"},
        )
    assert caught.value.reason == "missing_variable"
    assert "ja/order_confirmation" in str(caught.value)
    assert "'order_id'" in str(caught.value)


def test_items_need_only_what_the_app_sends() -> None:
    """An item with only a product id still renders (name falls back to the id, no price)."""
    variables = {
        **SAMPLES["order_confirmation"],
        "items": [{"product_id": "p-9"}],
        "shop_name": "S",
        "shop_url": "u",
    }
    mail = RENDERER.render("order_confirmation", "en", variables)
    assert "- p-9 x" not in mail.text
    assert "- p-9" in mail.text


def test_unknown_and_hostile_template_names_are_template_errors() -> None:
    """A template that does not exist, or a path, is refused with a clear reason."""
    with pytest.raises(TemplateError) as caught:
        RENDERER.render("no_such_template", "ja", {})
    assert caught.value.reason == "template_not_found"
    with pytest.raises(TemplateError):
        RENDERER.render("../../etc/passwd", "ja", {})


def test_html_escapes_every_value_and_text_does_not() -> None:
    """A product name with markup is inert in HTML and readable in text."""
    variables = {
        **SAMPLES["browse_offer"],
        "product_name": '<script>alert("x")</script>&',
        "shop_name": "S",
        "shop_url": "https://s",
        "unsubscribe_url": "https://s/u",
        "sender_name": "S",
        "sender_address": "",
        "sender_contact": "",
    }
    mail = RENDERER.render("browse_offer", "en", variables)
    assert "<script>" not in mail.html
    assert "&lt;script&gt;" in mail.html
    assert '<script>alert("x")</script>&' in mail.text


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [(4800, "JPY", "¥4,800"), ("12000", "jpy", "¥12,000"), (12.5, "USD", "12.50 USD")],
)
def test_money(amount: object, currency: str, expected: str) -> None:
    """Amounts show in the currency's usual form."""
    assert money(amount, currency) == expected


@pytest.mark.parametrize("currency", ["JPY", "jpy ", None, "", "KRW", "USD", "eur"])
def test_money_of_an_integer_is_what_the_decimal_formatting_gives(currency: str | None) -> None:
    """Integers (the usual yen amounts) skip the Decimal round trip: the same text for zero,
    negatives, every digit count and huge values; a bool is still no amount."""
    amounts = [0, 1, -1, 999, 1000, -4800, 9600, 123456789, 10**30 + 7, -(10**25)]
    for amount in amounts:
        assert money(amount, currency) == money(str(amount), currency)
    with pytest.raises(ValueError, match="not an amount"):
        money(True, currency)


def test_when_formats_dates_for_the_locale() -> None:
    """ISO timestamps read naturally in Japanese and English."""
    base = {**SAMPLES["password_reset"], "shop_name": "S", "shop_url": "u"}
    assert "2026年11月22日 11:15" in RENDERER.render("password_reset", "ja", base).text
    assert "22 Nov 2026, 11:15" in RENDERER.render("password_reset", "en", base).text


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(
    ("template", "variable"),
    [
        ("shipping_notice", "tracking_url"),
        ("password_reset", "reset_url"),
        ("email_verification", "verify_url"),
    ],
)
@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "//evil.example/x",
        "/reset?t=1",
        "https:/evil",
        "",
        # nudge.weburl's rule, the same for every link in mail (tests/unit/test_weburl.py)
        "https://track.example@evil.example/",  # the reader takes `track.example` for the site
        "https://evil.example\\@track.example/",  # `\` is `/` to a browser: host evil.example
        "https://track.example/t 1",  # a space breaks the link in the text part
        "https://track.example:99999/t",
        "https://track.example/\u202et",  # a bidi override: the link reads reversed
    ],
)
def test_a_link_from_an_event_must_be_an_absolute_web_url(
    template: str, variable: str, url: str, locale: str
) -> None:
    """HTML escaping keeps a URL inside its `href`, not `javascript:` out of it: a link taken
    from an event that is not absolute http(s) is refused (`unsafe_url`), never sent."""
    variables = {**SAMPLES[template], variable: url, "shop_name": "S", "shop_url": "https://s"}
    with pytest.raises(TemplateError) as caught:
        RENDERER.render(template, locale, variables)
    assert caught.value.reason == "unsafe_url"


@pytest.mark.parametrize("url", ["https://track.example/1?a=1&b=2", "HTTP://k2k.example.jp/t"])
def test_absolute_web_links_from_events_are_kept(url: str) -> None:
    """http(s) links pass unchanged (a carrier's tracking page may still be plain http)."""
    variables = {**SAMPLES["shipping_notice"], "tracking_url": url, "shop_name": "S"}
    mail = RENDERER.render("shipping_notice", "ja", {**variables, "shop_url": "https://s"})
    assert url in mail.text
    assert f'href="{url.replace("&", "&amp;")}"' in mail.html


def test_every_link_in_a_template_is_the_shop_s_or_checked() -> None:
    """A template author cannot forget the check: every `href` starts with `shop_url`, is the
    unsubscribe link, or passes a variable through `link_url`."""
    allowed = re.compile(r"\{\{ (shop_url|unsubscribe_url) \}\}|\{\{ \w+\|link_url \}\}")
    for path in sorted(RENDERER.root.glob("*/*.html")):
        for href in re.findall(r'href="([^"]*)"', path.read_text()):
            assert allowed.match(href), f"{path.name}: href={href!r}"


@pytest.mark.parametrize(
    ("locale", "shown"), [("ja", "2026年11月22日 11:15"), ("en", "22 Nov 2026, 11:15")]
)
def test_timestamps_show_in_the_reader_s_time_zone(locale: str, shown: str) -> None:
    """An app that writes `expires_at` in UTC means 11:15 in Tokyo, not 02:15."""
    tokyo = timezone(timedelta(hours=9))
    variables = {
        **SAMPLES["password_reset"],
        "expires_at": "2026-11-22T02:15:00Z",
        "shop_name": "S",
        "shop_url": "https://s",
    }
    mail = RENDERER.render("password_reset", locale, {**variables, "timezone": tokyo})
    assert shown in mail.text
    assert shown in mail.html
    # Without a time zone (or for a timestamp without offset) the time shows as written.
    assert "02:15" in RENDERER.render("password_reset", locale, variables).text


@pytest.mark.parametrize(
    ("locale", "text_line", "html_cells"),
    [
        (
            "ja",
            "有効期限：2026年12月22日 23:59まで",
            ("有効期限</th>", ">2026年12月22日 23:59まで</td>"),
        ),
        ("en", "Valid until: 22 Dec 2026, 23:59", ("Valid until</th>", ">22 Dec 2026, 23:59</td>")),
    ],
)
@pytest.mark.parametrize("template", ["first_purchase_thank_you", "winback_1"])
def test_a_coupon_says_until_when_it_is_valid(
    template: str, locale: str, text_line: str, html_cells: tuple[str, str]
) -> None:
    """The coupon mails show `coupon_expires_at` in their text and HTML parts."""
    variables = {
        **SAMPLES[template],
        "coupon_expires_at": "2026-12-22T23:59:59+09:00",
        "shop_name": "S",
        "shop_url": "https://s",
        "timezone": timezone(timedelta(hours=9)),
    }
    mail = RENDERER.render(template, locale, variables)
    assert text_line in mail.text.splitlines()
    assert all(cell in mail.html for cell in html_cells), mail.html


@pytest.mark.parametrize(
    ("template", "variable", "expires", "ja", "en"),
    [
        ("first_purchase_thank_you", "coupon_expires_at", "2026-11-30T23:59:59-05:00",
         "有効期限：2026年11月30日 23:59まで", "Valid until: 30 Nov 2026, 23:59"),
        ("winback_1", "coupon_expires_at", "2026-11-30T23:59:59-05:00",
         "有効期限：2026年11月30日 23:59まで", "Valid until: 30 Nov 2026, 23:59"),
        ("cart_reminder_2", "discount_expires_at", "2026-11-02T10:00:00-05:00",
         "有効期限：2026年11月2日 10:00まで", "Valid until: 2 Nov 2026, 10:00"),
    ],
)  # fmt: skip
def test_an_expiry_across_a_dst_change_shows_the_user_s_wall_clock(
    template: str, variable: str, expires: str, ja: str, en: str
) -> None:
    """Sent in New York's summer time (`timezone` -04:00), valid into winter time (-05:00): the
    engine's local expiry shows as written, not converted to 00:59 the next day (or 11:00)."""
    variables = {
        **SAMPLES[template],
        variable: expires,
        "shop_name": "S",
        "shop_url": "https://s",
        "timezone": timezone(timedelta(hours=-4)),
    }
    assert ja in RENDERER.render(template, "ja", variables).text.splitlines()
    assert en in RENDERER.render(template, "en", variables).text.splitlines()


def test_a_null_currency_is_the_default_not_none() -> None:
    """`"currency": null` in an order event shows yen, not `4,800.00 NONE`."""
    assert money(4800, None) == "¥4,800"
    variables = {**SAMPLES["order_confirmation"], "currency": None, "shop_name": "S"}
    mail = RENDERER.render("order_confirmation", "ja", {**variables, "shop_url": "https://s"})
    assert "お支払い合計：¥9,600" in mail.text
    assert "NONE" not in mail.text + mail.html
