"""MIME building (SPEC §5): headers, RFC 2047, parts, charsets, and no header injection."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.codec import is_clean_text
from nudge.commands import SendCommand
from nudge.errors import InvalidCommand, PermanentError
from nudge.sender.compose import charset_for, compose
from nudge.sender.mime import Mail, build, message_id_for
from nudge.sender.render import Renderer, sample_variables
from nudge.settings import Settings

from . import factories

NOW = datetime(2026, 11, 22, 1, 15, tzinfo=UTC)
SETTINGS = Settings(
    mail_from="Nudge Shop <shop@example.com>",
    public_base_url="https://nudge.example.com",
    token_secret=b"k" * 32,
)
RENDERER = Renderer()


def command(**overrides: object) -> SendCommand:
    """The shared order confirmation, with a key shaped like the engine's."""
    return factories.command(**{"idempotency_key": "order_confirmation:u-42:o-1001", **overrides})


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_transactional_mail_has_every_spec_header_and_two_utf8_parts() -> None:
    """Message-ID, Date, From, To, Subject (RFC 2047), X-Nudge-*, multipart/alternative."""
    composed = compose(command(), settings=SETTINGS, renderer=RENDERER, now=NOW)
    raw = composed.raw
    assert raw.isascii()
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = parse(raw)
    assert message["Message-ID"] == composed.message_id
    assert message["Date"].datetime == NOW
    assert message["From"].addresses[0].addr_spec == "shop@example.com"
    assert message["To"].addresses[0].display_name == "山田 花子"
    assert message["Subject"] == "ご注文ありがとうございます（ご注文番号：o-1001）"
    assert b"\r\nSubject: =?utf-8?b?" in raw
    assert message["X-Nudge-Idempotency-Key"] == "order_confirmation:u-42:o-1001"
    assert message["X-Nudge-Journey"] == "order_confirmation"
    assert message["X-Nudge-Step"] == "confirmation"
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/alternative"
    types = [part.get_content_type() for part in message.iter_parts()]
    assert types == ["text/plain", "text/html"]
    assert {part.get_content_charset() for part in message.iter_parts()} == {"utf-8"}
    assert "List-Unsubscribe" not in message


def test_marketing_mail_has_one_click_unsubscribe_and_tracking() -> None:
    """List-Unsubscribe (https, signed) + One-Click, a visible link, rewritten links, a pixel."""
    variables = sample_variables()["cart_reminder_1"]
    composed = compose(
        command(kind="marketing", template="cart_reminder_1", variables=variables),
        settings=SETTINGS,
        renderer=RENDERER,
        now=NOW,
    )
    message = parse(composed.raw)
    header = message["List-Unsubscribe"]
    assert header.startswith("<https://nudge.example.com/unsubscribe?token=")
    assert "." in header
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert header.strip("<>") in html
    assert "https://nudge.example.com/c/" in html  # the cart button goes through the redirect
    assert "https://nudge.example.com/o/" in html  # open pixel
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert header.strip("<>") in text


def test_tracking_can_be_switched_off() -> None:
    """With tracking disabled, links stay as written and there is no pixel."""
    settings = Settings(
        **{**{f: getattr(SETTINGS, f) for f in SETTINGS.__slots__}, "tracking_enabled": False}
    )
    variables = sample_variables()["cart_reminder_1"]
    composed = compose(
        command(kind="marketing", template="cart_reminder_1", variables=variables),
        settings=settings,
        renderer=RENDERER,
        now=NOW,
    )
    html = parse(composed.raw).get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "/c/" not in html
    assert "/o/" not in html


@pytest.mark.parametrize(
    "name",
    ["Hana\r\nBcc: victim@example.org", "Hana\nX-Evil: 1", "Hana\rX", "Ha\x00na", "Ha\u2028na"],
)
def test_control_characters_in_a_name_cannot_reach_a_header(name: str) -> None:
    """CR, LF, NUL and line separators in a value that reaches a header are refused."""
    variables = {**sample_variables()["order_confirmation"], "name": name}
    with pytest.raises(PermanentError) as caught:
        compose(command(variables=variables), settings=SETTINGS, renderer=RENDERER, now=NOW)
    assert caught.value.reason == "unsafe_header"


def test_control_characters_in_a_subject_variable_are_refused() -> None:
    """An order id with CRLF would break the Subject header: refused, not cleaned."""
    variables = {**sample_variables()["order_confirmation"], "order_id": "o-1\r\nBcc: x@y.z"}
    with pytest.raises(PermanentError, match=r"Subject|control"):
        compose(command(variables=variables), settings=SETTINGS, renderer=RENDERER, now=NOW)


def test_a_bad_recipient_address_is_refused() -> None:
    """An address with a space or no domain never reaches RCPT or the To header."""
    with pytest.raises(InvalidCommand) as caught:
        compose(
            command(to="hana@example.jp\r\nBcc: x@y.z"),
            settings=SETTINGS,
            renderer=RENDERER,
            now=NOW,
        )
    assert caught.value.reason == "invalid_address"


@pytest.mark.parametrize(
    ("address", "where"),
    [
        ("ｈａｎａ@example.jp", "local part"),
        ("hana@日本.jp", "domain"),
        ("hana@exämple.jp", "domain"),
    ],
)
def test_a_non_ascii_recipient_address_is_refused(address: str, where: str) -> None:
    """No SMTPUTF8: a full-width or internationalised address is `invalid_address`, naming `to`."""
    with pytest.raises(InvalidCommand) as caught:
        compose(command(to=address), settings=SETTINGS, renderer=RENDERER, now=NOW)
    assert caught.value.reason == "invalid_address"
    assert "field `to`" in str(caught.value)
    assert f"non-ASCII characters in its {where}" in str(caught.value)


@pytest.mark.parametrize(
    ("field", "header"),
    [
        ("journey", "X-Nudge-Journey"),
        ("step", "X-Nudge-Step"),
        ("idempotency_key", "X-Nudge-Idempotency-Key"),
    ],
)
def test_a_non_ascii_value_for_a_header_written_as_is_is_refused(field: str, header: str) -> None:
    """X-Nudge-* values go out unencoded, so they must be ASCII: `invalid_header`, named."""
    with pytest.raises(InvalidCommand) as caught:
        compose(command(**{field: "春のセール"}), settings=SETTINGS, renderer=RENDERER, now=NOW)
    assert caught.value.reason == "invalid_header"
    assert header in str(caught.value)
    assert "春のセール" in str(caught.value)


def test_an_encoded_word_in_an_ascii_subject_is_shown_as_written() -> None:
    """A variable carrying `=?utf-8?b?…?=` cannot make a client display other text (RFC 2047)."""
    spoof = "=?utf-8?b?5pSv5omV44GE44GM5aSx5pWX44GX44G+44GX44Gf?="  # "支払いが失敗しました"
    variables = {**sample_variables()["order_confirmation"], "order_id": spoof}
    composed = compose(
        command(locale="en", variables=variables), settings=SETTINGS, renderer=RENDERER, now=NOW
    )
    assert f"Subject: Thank you for your order ({spoof})".encode() not in composed.raw
    assert parse(composed.raw)["Subject"] == f"Thank you for your order ({spoof})"


def test_a_link_too_long_to_track_is_refused_naming_it() -> None:
    """A click token `verify` would refuse is never made: `link_too_long`, the value named."""
    variables = {**sample_variables()["browse_offer"], "product_id": "p" * 3500}
    with pytest.raises(PermanentError) as caught:
        compose(
            command(kind="marketing", template="browse_offer", variables=variables),
            settings=SETTINGS,
            renderer=RENDERER,
            now=NOW,
        )
    assert caught.value.reason == "link_too_long"
    assert "'url'" in str(caught.value)
    assert "https://shop.example.com/products/ppp" in str(caught.value)


@pytest.mark.parametrize(
    ("address", "charset"),
    [
        ("a@docomo.ne.jp", "iso-2022-jp"),
        ("a@EZWEB.NE.JP", "iso-2022-jp"),
        ("a@x.softbank.ne.jp", "iso-2022-jp"),
        ("a@notdocomo.ne.jp", "utf-8"),
        ("a@gmail.com", "utf-8"),
    ],
)
def test_charset_per_recipient_domain(address: str, charset: str) -> None:
    """Legacy carrier domains (and their subdomains) get ISO-2022-JP."""
    assert charset_for(address, SETTINGS.iso2022jp_domains) == charset


def test_iso_2022_jp_mail_decodes_to_the_same_text() -> None:
    """Subject, name and body survive ISO-2022-JP encoding."""
    composed = compose(
        command(to="hana@docomo.ne.jp"), settings=SETTINGS, renderer=RENDERER, now=NOW
    )
    message = parse(composed.raw)
    assert b"=?iso-2022-jp?b?" in composed.raw
    assert message["Subject"] == "ご注文ありがとうございます（ご注文番号：o-1001）"
    assert message["To"].addresses[0].display_name == "山田 花子"
    part = message.get_body(("plain",))
    assert part is not None
    assert part.get_content_charset() == "iso-2022-jp"
    assert "山田 花子 様" in part.get_content()


def test_text_iso_2022_jp_cannot_express_falls_back_to_utf8() -> None:
    """An emoji (outside JIS X 0208) makes the whole mail UTF-8 rather than unreadable."""
    mail = Mail(
        message_id="<a@b>",
        date=NOW,
        sender="S <s@example.com>",
        to_address="a@docomo.ne.jp",
        to_name="花子 🌸",
        subject="こんにちは",
        text="本文",
        html="<p>本文</p>",
        charset="iso-2022-jp",
    )
    message = parse(build(mail))
    assert message["To"].addresses[0].display_name == "花子 🌸"
    assert {p.get_content_charset() for p in message.iter_parts()} == {"utf-8"}


def test_message_id_is_deterministic_per_idempotency_key() -> None:
    """A resend of one key carries the same Message-ID, so receivers can fold duplicates."""
    assert message_id_for("k1", "example.com") == message_id_for("k1", "example.com")
    assert message_id_for("k1", "example.com") != message_id_for("k2", "example.com")


def test_long_subjects_are_folded_below_the_line_limit() -> None:
    """RFC 5322: no header line longer than 998 octets, encoded words ≤ 75 characters."""
    mail = Mail(
        message_id="<a@b>",
        date=NOW,
        sender="S <s@example.com>",
        to_address="a@example.jp",
        to_name=None,
        subject="お知らせ" * 60,
        text="t",
        html="h",
    )
    raw = build(mail)
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    subject_lines = head[head.index(next(x for x in head if x.startswith(b"Subject:"))) :][:9]
    assert max(len(line) for line in subject_lines) <= 78
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert parse(raw)["Subject"] == "お知らせ" * 60


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=40), order_id=st.text(min_size=1, max_size=20))
def test_no_value_can_add_or_break_a_header(name: str, order_id: str) -> None:
    """Property (SPEC §5): whatever the name and order id, the mail has exactly the usual
    headers and the name reads back unchanged — or the command is refused as unsafe."""
    variables = {**sample_variables()["order_confirmation"], "name": name, "order_id": order_id}
    if not (is_clean_text(name) and is_clean_text(order_id)):
        with pytest.raises(PermanentError) as caught:
            compose(command(variables=variables), settings=SETTINGS, renderer=RENDERER, now=NOW)
        assert caught.value.reason == "unsafe_header"
        return
    composed = compose(command(variables=variables), settings=SETTINGS, renderer=RENDERER, now=NOW)
    message = parse(composed.raw)
    assert sorted(message.keys()) == sorted(BASELINE_HEADERS)
    if name.strip():
        assert message["To"].addresses[0].addr_spec == "hana@example.jp"
    assert message["Subject"] == f"ご注文ありがとうございます（ご注文番号：{order_id}）"
    if name.strip():  # whitespace between encoded words is not significant (RFC 2047 §6.2)
        shown = message["To"].addresses[0].display_name
        assert "".join(shown.split()) == "".join(name[:100].split())


BASELINE_HEADERS = [
    "Message-ID",
    "Date",
    "From",
    "To",
    "Subject",
    "MIME-Version",
    "X-Nudge-Idempotency-Key",
    "X-Nudge-Journey",
    "X-Nudge-Step",
    "Content-Type",
]


def test_a_reset_link_expiry_in_utc_shows_in_the_user_s_time_zone() -> None:
    """`created_at` carries the user's zone; an `expires_at` the app wrote in UTC is shown in it."""
    variables = {**sample_variables()["password_reset"], "expires_at": "2026-11-22T02:15:00Z"}
    composed = compose(
        command(
            template="password_reset",
            variables=variables,
            created_at=NOW.astimezone(ZoneInfo("Asia/Tokyo")),
        ),
        settings=SETTINGS,
        renderer=RENDERER,
        now=NOW,
    )
    text = parse(composed.raw).get_body(("plain",))
    assert text is not None
    assert "このリンクの有効期限は2026年11月22日 11:15までです。" in text.get_content()


def test_a_javascript_tracking_link_is_dead_lettered_not_sent() -> None:
    """A `tracking_url` that is not http(s) makes the command a PermanentError (`unsafe_url`)."""
    variables = {**sample_variables()["shipping_notice"], "tracking_url": "javascript:alert(1)"}
    with pytest.raises(PermanentError) as caught:
        compose(
            command(template="shipping_notice", variables=variables),
            settings=SETTINGS,
            renderer=RENDERER,
            now=NOW,
        )
    assert caught.value.reason == "unsafe_url"


@pytest.mark.parametrize("to", ["hana@example.jp", "hana@docomo.ne.jp"])
@pytest.mark.parametrize(
    ("name", "shop"),
    [
        ("株式会社ナッジ商事 東京本社 営業部 山田 花子", "Nudge Shop"),
        ("山田 花子", "ナッジ・ショップ 東京本店 オンラインストア"),
        ("山田", "Nudge Shop"),
    ],
)
def test_every_header_line_is_within_78_characters(to: str, name: str, shop: str) -> None:
    """RFC 5322 §2.1.1: To, From (with long non-ASCII names) and the multipart Content-Type are
    folded; the names still read back."""
    settings = Settings(
        mail_from=f"{shop} <shop@example.com>",
        public_base_url="https://nudge.example.com",
        token_secret=b"k" * 32,
    )
    variables = {**sample_variables()["order_confirmation"], "name": name}
    raw = compose(
        command(to=to, variables=variables), settings=settings, renderer=RENDERER, now=NOW
    ).raw
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    message = parse(raw)
    # Python's parser keeps the folding space between encoded words of a name; RFC 2047 §6.2
    # says to drop it (as mail clients do), so only the non-space characters are compared.
    assert "".join(message["To"].addresses[0].display_name.split()) == "".join(name.split())
    assert "".join(message["From"].addresses[0].display_name.split()) == "".join(shop.split())
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]


def test_an_iso_2022_jp_html_part_declares_that_charset_in_its_head() -> None:
    """The layouts say `<meta charset="utf-8">`; in an ISO-2022-JP part that would contradict
    the part's Content-Type for any client or browser that reads the document's own head."""
    composed = compose(
        command(to="hana@docomo.ne.jp"), settings=SETTINGS, renderer=RENDERER, now=NOW
    )
    html = parse(composed.raw).get_body(("html",))
    assert html is not None
    assert html.get_content_charset() == "iso-2022-jp"
    assert '<meta charset="iso-2022-jp">' in html.get_content()
    assert "utf-8" not in html.get_content().lower()
    utf8 = parse(compose(command(), settings=SETTINGS, renderer=RENDERER, now=NOW).raw)
    body = utf8.get_body(("html",))
    assert body is not None
    assert '<meta charset="utf-8">' in body.get_content()


@pytest.mark.parametrize("shop", ["㈱ナッジ", "髙島屋オンライン", "ﾅｯｼﾞ"])
def test_a_shop_name_iso_2022_jp_cannot_express_falls_back_to_utf8(shop: str) -> None:
    """The From display name counts too: it must not raise for every carrier recipient."""
    mail = Mail(
        message_id="<a@b>",
        date=NOW,
        sender=f"{shop} <s@example.com>",
        to_address="a@docomo.ne.jp",
        to_name="山田 花子",
        subject="こんにちは",
        text="本文",
        html="<p>本文</p>",
        charset="iso-2022-jp",
    )
    message = parse(build(mail))
    assert message["From"].addresses[0].display_name == shop
    assert {p.get_content_charset() for p in message.iter_parts()} == {"utf-8"}


@pytest.mark.parametrize("text", ["①", "㈱", "髙", "﨑", "😀", "ｱｲｳ", "～"])
def test_a_name_or_item_outside_jis_x_0208_is_never_mangled(text: str) -> None:
    """A carrier recipient whose name or item has such a character gets the mail in UTF-8, with
    the name and item exactly as written (never `?`, never an exception)."""
    variables = {
        **sample_variables()["order_confirmation"],
        "name": f"山田{text}花子",
        "items": [{"name": f"急須{text}", "quantity": 1, "price": 4800}],
    }
    message = parse(
        compose(
            command(to="hana@docomo.ne.jp", variables=variables),
            settings=SETTINGS,
            renderer=RENDERER,
            now=NOW,
        ).raw
    )
    assert message["To"].addresses[0].display_name == f"山田{text}花子"
    parts = list(message.iter_parts())
    assert {part.get_content_charset() for part in parts} == {"utf-8"}
    assert f"山田{text}花子 様" in parts[0].get_content()
    assert f"急須{text}" in parts[1].get_content()
