"""The sender's fast paths produce exactly what the slower general code did.

Each shortcut taken for CPU per mail (docs/sender.md, Performance) is pinned against the general
path it replaces: base64 body lines, the compiled-template cache, MAIL/RCPT paths without
`parseaddr`, and one batched write per outcome.
"""

from __future__ import annotations

import base64
import email
import email.policy
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import jinja2
import orjson
import pytest
from aiosmtplib.email import quote_address

from nudge.codec import encode_command
from nudge.commands import SendCommand
from nudge.errors import TemplateError
from nudge.sender import mime, render
from nudge.sender.deliver import Delivery, RecordingOutputs, Write
from nudge.sender.ledger import KeyLedger
from nudge.sender.mime import Mail, build
from nudge.sender.pool import RecordingMailer, _path
from nudge.sender.render import Renderer, sample_variables
from nudge.sender.suppression import Gate
from nudge.sender.throttle import DomainThrottle
from nudge.settings import Settings

NOW = datetime(2026, 11, 22, 1, 15, tzinfo=UTC)


def mail(**overrides: object) -> Mail:
    base: dict[str, object] = {
        "message_id": "<abc@example.com>",
        "date": NOW,
        "sender": "Nudge Shop <shop@example.com>",
        "to_address": "hana@docomo.ne.jp",
        "to_name": "山田 花子",
        "subject": "ご注文ありがとうございます【注文番号 o-1001】" * 3,
        "text": "こんにちは\n" * 40,
        "html": "<p>こんにちは</p>\n" * 40,
        "headers": (("X-Nudge-Journey", "order_confirmation"),),
    }
    base.update(overrides)
    return Mail(**base)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize("charset", ["utf-8", "iso-2022-jp"])
@pytest.mark.parametrize("size", [1, 56, 57, 58, 114, 4096])
def test_body_lines_are_those_of_encodebytes_and_decode_back(charset: str, size: int) -> None:
    """Base64 body lines are the 76-character lines `base64.encodebytes` would write."""
    text = ("あいう\n" * size)[:size]
    raw = build(mail(text=text, html=text, charset=charset))
    message = parse(raw)
    assert message["Subject"] == "ご注文ありがとうございます【注文番号 o-1001】" * 3
    assert message["To"].addresses[0].display_name == "山田 花子"
    assert message["X-Nudge-Journey"] == "order_confirmation"
    parts = list(message.iter_parts())
    assert [p.get_content_charset() for p in parts] == [charset, charset]
    for part in parts:
        assert part.get_content().replace("\r\n", "\n") == text
        body = part.get_payload()
        assert isinstance(body, str)
        data = text.replace("\n", "\r\n").encode("iso2022_jp" if charset != "utf-8" else "utf-8")
        assert body.split() == base64.encodebytes(data).decode().split()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))  # RFC 5322's hard limit


def _reference_part(content_type: str, body: str, charset: str) -> bytes:
    """A part as the text-line code wrote it before (session 6): normalise line ends as text,
    encode, `base64.encodebytes` lines, CRLF between the lines."""
    normalised = body.replace("\r\n", "\n").replace("\r", "\n")
    data = normalised.replace("\n", "\r\n").encode("utf-8" if charset == "utf-8" else "iso2022_jp")
    lines = base64.encodebytes(data).decode("ascii").splitlines() or [""]
    head = [
        f'Content-Type: {content_type}; charset="{charset}"',
        "Content-Transfer-Encoding: base64",
    ]
    return "\r\n".join([*head, "", *lines]).encode("ascii")


@pytest.mark.parametrize("charset", ["utf-8", "iso-2022-jp"])
def test_a_part_built_as_bytes_is_the_part_built_as_text_lines(charset: str) -> None:
    """CR, CRLF and LF line ends, Japanese, empty bodies: byte for byte what the text-line
    version wrote (CRLF is put into the encoded bytes now, faster)."""
    rng = random.Random(5)
    pieces = ["a", " ", "\n", "\r", "\r\n", "あ", "漢字", ".", "\r\r\n", "\n\n", "<p>", "=?"]
    for _ in range(400):
        body = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 300)))
        for content_type in ("text/plain", "text/html"):
            expected = _reference_part(content_type, body, charset)
            assert mime._part(content_type, body, charset) == expected, body  # type: ignore[arg-type]


def test_an_empty_body_still_has_its_empty_base64_line() -> None:
    """An empty part keeps the one empty line `encodebytes` gave it, so the MIME stays valid."""
    message = parse(build(mail(text="", html="")))
    assert [p.get_content() for p in message.iter_parts()] == ["", ""]


def test_the_compiled_template_cache_renders_like_a_fresh_renderer() -> None:
    """A template served from the cache renders what a new Renderer renders, every time."""
    cached = Renderer()
    variables = {**sample_variables()["order_confirmation"], "shop_name": "S", "shop_url": "u"}
    first = cached.render("order_confirmation", "ja", variables)
    again = cached.render("order_confirmation", "ja", {**variables, "order_id": "o-2"})
    fresh = Renderer().render("order_confirmation", "ja", {**variables, "order_id": "o-2"})
    assert again == fresh
    assert first != again


def test_a_cached_template_still_names_a_missing_variable() -> None:
    """The cache holds templates, not outcomes: a later render with a missing variable fails."""
    renderer = Renderer()
    variables = {**sample_variables()["order_confirmation"], "shop_name": "S", "shop_url": "u"}
    renderer.render("order_confirmation", "en", variables)
    del variables["order_id"]
    with pytest.raises(TemplateError, match="order_id"):
        renderer.render("order_confirmation", "en", variables)


@pytest.mark.parametrize("locale", ["ja", "en"])
def test_plain_dict_globals_render_what_jinjas_chainmap_renders(
    locale: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every template renders the same with our snapshot globals as with Jinja's default."""
    ours = Renderer()
    monkeypatch.setattr(render._Environment, "make_globals", jinja2.Environment.make_globals)
    stock = Renderer()
    samples = sample_variables()
    for name in ours.template_names():
        variables = {**samples[name], "shop_name": "S", "shop_url": "https://shop.example"}
        variables.update(sender_name="N", sender_address="A", sender_contact="C")
        variables.setdefault("unsubscribe_url", "https://n.example/u?t=1")
        assert ours.render(name, locale, variables) == stock.render(name, locale, variables)
    template = stock.env.get_template(f"{locale}/order_confirmation.html")
    assert not isinstance(template.globals, dict)  # the monkeypatch did give Jinja's own


@pytest.mark.parametrize(
    "address",
    ["shop@example.com", "hana.yamada+tag@mail.example.co.jp", "a_b-c@x-y.example", "u1@d.jp"],
)
def test_plain_addresses_get_the_path_aiosmtplib_would_send(address: str) -> None:
    """For a plain address the shortcut sends the very `<address>` aiosmtplib would."""
    assert _path(address) == quote_address(address).encode("ascii")


@pytest.mark.parametrize(
    "address",
    ['"odd name"@example.com', "Hana <hana@example.jp>", "はな@example.jp", "a..b@example.com",
     "hana@localhost", ".a@example.com", "a@-"],
)  # fmt: skip
def test_unusual_addresses_are_left_to_aiosmtplib(address: str) -> None:
    """Anything but a plain dot-atom address takes aiosmtplib's own parsing path."""
    assert _path(address) is None


class CountingOutputs(RecordingOutputs):
    """Records, plus the size of every `write_many` call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    async def write_many(self, writes: Sequence[Write]) -> None:
        self.calls.append(len(writes))
        await super().write_many(writes)


async def test_sent_mail_costs_two_produce_calls() -> None:
    """`sending` alone (acknowledged before DATA), then `sent` + delivery record in one call."""
    outputs = CountingOutputs()
    delivery = Delivery(
        Settings(topic_prefix="t.", token_secret=b"k" * 32),
        mailer=RecordingMailer(),
        renderer=Renderer(),
        ledger=KeyLedger(),
        gate=Gate(),
        outputs=outputs,
        throttle=DomainThrottle([]),
        clock=lambda: NOW,
    )
    command = SendCommand(
        command_id="c-1",
        idempotency_key="k-1",
        user_id="u-1",
        journey="order_confirmation",
        step="confirmation",
        kind="transactional",
        template="order_confirmation",
        locale="ja",
        to="hana@example.jp",
        created_at=NOW,
        variables=sample_variables()["order_confirmation"],
    )

    class Record:
        topic, partition, offset, key = "t.send-commands", 0, 1, b"u-1"
        value = encode_command(command)

    await delivery.handle(Record(), 1)
    assert outputs.calls == [1, 2]
    topics = [topic for topic, *_ in outputs.records]
    assert topics == ["t.internal.sent-keys", "t.internal.sent-keys", "t.deliveries"]
    assert orjson.loads(outputs.records[1][2] or b"")["state"] == "sent"


def reference_variants() -> list[dict[str, object]]:
    return [
        {},
        {"unsubscribe_url": "https://n.example/u?t=1&x=<2>"},
        {"name": None},
        {"name": "<b>Hana & co</b>"},
    ]


@pytest.mark.parametrize("locale", ["ja", "en"])
def test_flattened_templates_render_what_jinja_renders(locale: str) -> None:
    """Every shipped template, flattened, renders exactly what Jinja's layout + macros render."""
    flat, stock = Renderer(), Renderer(flat=False)
    samples = sample_variables()
    for name in flat.template_names():
        for variant in reference_variants():
            variables = {**samples[name], "shop_name": "S<&>", "shop_url": "https://s.example"}
            variables.update(sender_name="N<&>", sender_address="A<&>", sender_contact="C<&>")
            variables.update(variant)
            assert flat.render(name, locale, variables) == stock.render(name, locale, variables)


@pytest.mark.parametrize("locale", ["ja", "en"])
def test_every_shipped_template_is_flattened(locale: str) -> None:
    """No shipped part silently falls back to the slow path (no blocks, no imports left)."""
    renderer = Renderer()
    samples = sample_variables()
    for name in renderer.template_names():
        renderer.render(name, locale, {**samples[name], "shop_name": "S", "shop_url": "u"})
    assert len(renderer._compiled) == 3 * len(renderer.template_names())
    for path, template in renderer._compiled.items():
        assert template.blocks == {}, path
        assert "get_template" not in str(template.root_render_func.__code__.co_names), path


def test_a_template_flattening_cannot_reproduce_is_rendered_by_jinja(tmp_path: Path) -> None:
    """`super()` (and other unsupported constructs) fall back to Jinja's ordinary compilation."""
    (tmp_path / "ja").mkdir()
    files = {
        "_layout.txt": "head {% block content %}layout{% endblock %} foot",
        "x.subject.txt": "subject {{ order_id }}",
        "x.txt": '{% extends "ja/_layout.txt" %}{% block content %}[{{ super() }}]{% endblock %}',
        "x.html": "<p>{{ order_id }}</p>",
    }
    for file, text in files.items():
        (tmp_path / "ja" / file).write_text(text)
    mail = Renderer(tmp_path).render("x", "ja", {"order_id": "<1>"})
    assert (mail.subject, mail.text, mail.html) == (
        "subject <1>",
        "head [layout] foot\n",
        "<p>&lt;1&gt;</p>",
    )


def test_a_flattened_template_still_names_a_missing_variable_inside_a_macro() -> None:
    """A variable missing where a macro uses it is still `missing_variable`, not an empty hole."""
    variables = {**sample_variables()["order_confirmation"], "shop_name": "S", "shop_url": "u"}
    variables["items"] = [{"name": "x", "price": "not a number"}]
    with pytest.raises(TemplateError):
        Renderer().render("order_confirmation", "en", variables)


def test_attribute_lookups_find_what_jinja_finds(tmp_path: Path) -> None:
    """Items, loop attributes, str methods and missing attributes: the same text or error."""
    (tmp_path / "ja").mkdir()
    body = (
        "{% for item in items %}{{ loop.index }}:{{ item.name }}/{{ item.keys }}"
        "/{{ item.items|default('-') }}/{{ item.name.upper() }}|{% endfor %}"
        "{{ order.id }}{{ order.missing|default('none') }}"
    )
    for file, text in {
        "x.subject.txt": "s",
        "x.txt": body,
        "x.html": "<p>{{ order.total }}</p>",
    }.items():
        (tmp_path / "ja" / file).write_text(text)
    variables = {"items": [{"name": "a"}, {"name": "b", "items": "x"}], "order": {"id": "o-1"}}
    flat, stock = Renderer(tmp_path), Renderer(tmp_path, flat=False)
    with pytest.raises(TemplateError) as flat_error:
        flat.render("x", "ja", variables)
    with pytest.raises(TemplateError) as stock_error:
        stock.render("x", "ja", variables)
    assert str(flat_error.value) == str(stock_error.value)
    assert "'total'" in str(flat_error.value)
    variables["order"]["total"] = 5
    assert flat.render("x", "ja", variables) == stock.render("x", "ja", variables)


def reference_words(value: str, codec: str, limit: int) -> list[bytes]:
    """The general greedy split: add characters while the encoded chunk fits in `limit`."""
    chunks: list[str] = []
    chunk = ""
    for char in value:
        if chunk and len((chunk + char).encode(codec)) > limit:
            chunks.append(chunk)
            chunk = ""
        chunk += char
    return [c.encode(codec) for c in [*chunks, chunk] if c]


@pytest.mark.parametrize("charset", ["utf-8", "iso-2022-jp"])
def test_encoded_words_split_where_the_greedy_character_loop_splits(charset: str) -> None:
    """The byte-boundary split of UTF-8 words gives the very words of the per-character loop."""
    codec = {"utf-8": "utf-8", "iso-2022-jp": "iso2022_jp"}[charset]
    alphabet = "aZ 9-日本語のご注文ありがとうございます【】" + (
        "ßé😀①" if charset == "utf-8" else ""
    )
    values = [alphabet * n for n in range(1, 6)]
    values += ["".join(alphabet[(i * 7 + n) % len(alphabet)] for i in range(n)) for n in range(90)]
    for value in values:
        words = mime._encoded_words(value, charset)  # type: ignore[arg-type]
        decoded = [base64.b64decode(w.split("?")[3]) for w in words]
        limit = mime._WORD_BYTES[charset]  # type: ignore[index]
        assert decoded == reference_words(value, codec, limit), value


def test_a_flattener_bug_costs_speed_never_a_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should flattening itself fail, the template is compiled by Jinja and renders the same."""

    def broken(*_args: object) -> None:
        raise RuntimeError("a bug in flatten")

    monkeypatch.setattr(render, "flatten", broken)
    variables = {**sample_variables()["order_confirmation"], "shop_name": "S", "shop_url": "u"}
    fallen_back = Renderer().render("order_confirmation", "ja", variables)
    monkeypatch.undo()
    assert fallen_back == Renderer().render("order_confirmation", "ja", variables)
