"""Who sends a marketing mail, shown in its footer (Japan's Act on Specified Electronic Mail).

Article 4 of 特定電子メール法 wants every marketing (specified) mail to show the sender's name,
postal address and a contact for complaints and enquiries, besides the opt-out link: the layouts
print `NUDGE_SENDER_NAME`, `_ADDRESS` and `_CONTACT` in the footer of marketing mail, each only
if set, and the sender warns at start about those unset.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from email.message import EmailMessage

import pytest
from structlog.testing import capture_logs

from nudge.sender.cli import warn_if_sender_identity_incomplete
from nudge.sender.compose import compose
from nudge.sender.render import Renderer, sample_variables
from nudge.settings import Settings

from . import factories

SETTINGS = Settings(
    mail_from="Nudge Shop <shop@example.com>",
    public_base_url="https://nudge.example.com",
    token_secret=b"k" * 32,
    sender_name="株式会社ナッジ",
    sender_address="〒100-0005 東京都千代田区丸の内1-2-3",
    sender_contact="support@shop.example.jp / 03-1234-5678",
)
RENDERER = Renderer()
LABELS = {
    "ja": ("送信者：", "住所：", "お問い合わせ："),
    "en": ("Sender: ", "Address: ", "Contact: "),
}


def parts(settings: Settings, *, locale: str, kind: str = "marketing") -> tuple[str, str]:
    """The text and HTML parts of a real mail composed for a marketing (or other) command."""
    template = "cart_reminder_1" if kind == "marketing" else "order_confirmation"
    command = factories.command(
        kind=kind, template=template, locale=locale, variables=sample_variables()[template]
    )
    raw = compose(command, settings=settings, renderer=RENDERER, now=factories.NOW).raw
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text, html = (message.get_body((part,)) for part in ("plain", "html"))
    assert text is not None
    assert html is not None
    # The parts travel with CRLF line ends (SPEC §5); compare lines as the templates write them.
    return text.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


def identity_lines(settings: Settings, locale: str) -> list[str]:
    name, address, contact = LABELS[locale]
    return [
        f"{name}{settings.sender_name}",
        f"{address}{settings.sender_address}",
        f"{contact}{settings.sender_contact}",
    ]


@pytest.mark.parametrize("locale", ["ja", "en"])
def test_marketing_mail_shows_name_address_and_contact_in_both_parts(locale: str) -> None:
    text, html = parts(SETTINGS, locale=locale)
    lines = text.splitlines()
    for line in identity_lines(SETTINGS, locale):
        assert line in lines
        assert f"<br>{line}\n" in html
    # In the footer, after the shop's own lines and before the way to opt out.
    footer = text[text.index("\n--\n") :]
    assert footer.index(identity_lines(SETTINGS, locale)[0]) < footer.index("https://nudge")


@pytest.mark.parametrize("locale", ["ja", "en"])
@pytest.mark.parametrize("unset", ["sender_address", "sender_contact"])
def test_each_unset_line_is_left_out_and_the_others_stay(locale: str, unset: str) -> None:
    settings = replace(SETTINGS, **{unset: ""})
    text, html = parts(settings, locale=locale)
    name, address, contact = identity_lines(settings, locale)
    missing = address if unset == "sender_address" else contact
    kept = contact if unset == "sender_address" else address
    for part in (text, html):
        assert missing.strip() not in part
        assert kept in part
        assert name in part


@pytest.mark.parametrize("locale", ["ja", "en"])
@pytest.mark.parametrize(
    ("mail_from", "shown"),
    [("ナッジ商店 <shop@example.jp>", "ナッジ商店"), ("shop@example.jp", "example.jp")],
)
def test_without_a_sender_name_the_shop_name_is_shown(
    locale: str, mail_from: str, shown: str
) -> None:
    """The display name of NUDGE_MAIL_FROM, else its domain: what the mail calls the shop."""
    settings = replace(SETTINGS, mail_from=mail_from, sender_name="")
    text, html = parts(settings, locale=locale)
    sender = f"{LABELS[locale][0]}{shown}"
    assert sender in text.splitlines()
    assert f"<br>{sender}\n" in html


@pytest.mark.parametrize("locale", ["ja", "en"])
def test_the_identity_is_escaped_in_html_and_as_written_in_text(locale: str) -> None:
    hostile = '<a href="https://evil.example/">&amp;</a>'
    settings = replace(
        SETTINGS,
        sender_name=f"N{hostile}",
        sender_address=f"A{hostile}",
        sender_contact=f"support@shop.example.jp {hostile}",
    )
    text, html = parts(settings, locale=locale)
    escaped = "&lt;a href=&#34;https://evil.example/&#34;&gt;&amp;amp;&lt;/a&gt;"
    for line in identity_lines(settings, locale):
        assert line in text.splitlines()
        assert line.replace(hostile, escaped) in html
    assert 'evil.example/"' not in html


@pytest.mark.parametrize("locale", ["ja", "en"])
def test_transactional_mail_shows_no_sender_identity(locale: str) -> None:
    text, html = parts(SETTINGS, locale=locale, kind="transactional")
    for part in (text, html):
        for label in LABELS[locale]:
            assert label not in part
        assert SETTINGS.sender_address not in part
        assert SETTINGS.sender_contact not in part


def test_a_carrier_recipient_reads_the_identity_in_iso_2022_jp() -> None:
    """Legacy handsets get ISO-2022-JP; the footer's Japanese survives the conversion."""
    command = factories.command(
        kind="marketing",
        template="cart_reminder_1",
        to="hana@docomo.ne.jp",
        variables=sample_variables()["cart_reminder_1"],
    )
    raw = compose(command, settings=SETTINGS, renderer=RENDERER, now=factories.NOW).raw
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text = message.get_body(("plain",))
    assert text is not None
    assert text.get_content_charset() == "iso-2022-jp"
    for line in identity_lines(SETTINGS, "ja"):
        assert line in text.get_content().splitlines()


@pytest.mark.parametrize("locale", ["ja", "en"])
@pytest.mark.parametrize("address", ["", "A<&>"])
def test_the_footer_flattened_renders_what_jinja_renders(locale: str, address: str) -> None:
    """The new lines keep the layouts on the flattened fast path, rendering the same text."""
    flat, stock = Renderer(), Renderer(flat=False)
    variables = {
        **sample_variables()["cart_reminder_1"],
        "shop_name": "S",
        "shop_url": "https://s.example",
        "unsubscribe_url": "https://n.example/u",
        "sender_name": "N<&>",
        "sender_address": address,
        "sender_contact": "",
    }
    assert flat.render("cart_reminder_1", locale, variables) == stock.render(
        "cart_reminder_1", locale, variables
    )


@pytest.mark.parametrize(
    ("address", "contact", "named"),
    [
        ("", "", ["NUDGE_SENDER_ADDRESS", "NUDGE_SENDER_CONTACT"]),
        ("東京都千代田区丸の内1-2-3", "", ["NUDGE_SENDER_CONTACT"]),
        ("", "03-1234-5678", ["NUDGE_SENDER_ADDRESS"]),
    ],
)
def test_the_sender_warns_at_start_naming_what_is_unset(
    address: str, contact: str, named: list[str]
) -> None:
    settings = replace(SETTINGS, sender_address=address, sender_contact=contact)
    with capture_logs() as logged:
        warn_if_sender_identity_incomplete(settings)
    assert [entry["event"] for entry in logged] == ["sender.sender_identity_incomplete"]
    assert logged[0]["log_level"] == "warning"
    assert logged[0]["unset"] == named
    hint = logged[0]["hint"]
    assert all(name in hint for name in named)
    assert "Japan" in hint


def test_the_sender_does_not_warn_when_address_and_contact_are_set() -> None:
    with capture_logs() as logged:
        warn_if_sender_identity_incomplete(SETTINGS)
    assert logged == []
