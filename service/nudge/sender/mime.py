"""Building the bytes of one mail (SPEC §5): pure, no I/O, no clock.

A `multipart/alternative` message with a text and an HTML part, CRLF line endings, 7-bit clean
(base64 bodies, RFC 2047 encoded words in headers), so it passes any SMTP server without
8BITMIME or SMTPUTF8. UTF-8 by default; ISO-2022-JP for legacy Japanese carrier domains when the
text can be expressed in it (otherwise UTF-8 again: a readable mail beats a rejected one).

Every header value is checked first: a CR, LF or other control character anywhere is an
`InvalidCommand` with reason `unsafe_header` — the command is dead-lettered, never "cleaned".
Values that go out as they are (addresses, Message-ID, X-Nudge-*, List-*) must be ASCII: a
non-ASCII recipient is `invalid_address` (no SMTPUTF8, RFC 6531), any other such value
`invalid_header`. Display names and the subject are RFC 2047-encoded instead.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from typing import Final, Literal

from nudge.codec import is_clean_text, is_valid_email
from nudge.errors import InvalidCommand
from nudge.logs import mask_email

Charset = Literal["utf-8", "iso-2022-jp"]
CRLF: Final = "\r\n"
MAX_NAME_CHARS: Final = 100
_PY_CODEC: Final = {"utf-8": "utf-8", "iso-2022-jp": "iso2022_jp"}
# Raw bytes per encoded word: `=?charset?b?…?=` stays within 75 characters (RFC 2047) and
# the first line, "Subject: " included, within 78 (RFC 5322).
_WORD_BYTES: Final = {"utf-8": 42, "iso-2022-jp": 36}


@dataclass(frozen=True, slots=True, kw_only=True)
class Mail:
    """Everything that goes into one message; `headers` are extra (X-Nudge-*, List-*)."""

    message_id: str
    date: datetime
    sender: str  # the From header as configured, e.g. "Nudge Shop <shop@example.com>"
    to_address: str
    to_name: str | None
    subject: str
    text: str
    html: str
    headers: tuple[tuple[str, str], ...] = ()
    charset: Charset = "utf-8"


def message_id_for(idempotency_key: str, domain: str) -> str:
    """Deterministic: a resend after an ambiguous crash carries the same Message-ID, which lets
    receiving systems and mail clients fold the two copies into one."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def check_header(name: str, value: str) -> str:
    """`value` if it may go into header `name`; `InvalidCommand(reason=unsafe_header)` if not."""
    if not is_clean_text(value):
        raise InvalidCommand(
            f"the {name} header would contain a control character (CR/LF?): {value[:60]!r}; "
            "fix the value at its source (event or template)",
            reason="unsafe_header",
        )
    return value


def check_raw_header(name: str, value: str) -> str:
    """`value` if it may go as it is (not encoded) into header `name`; `InvalidCommand` if not.

    Reason `unsafe_header` for a control character, `invalid_header` for a non-ASCII character.
    """
    check_header(name, value)
    if not value.isascii():
        raise InvalidCommand(
            f"the {name} header is written as it is and must be ASCII, but its value would be "
            f"{value[:60]!r}; use ASCII at its source (journey and step names in the journeys "
            "file, the idempotency key, NUDGE_PUBLIC_URL)",
            reason="invalid_header",
        )
    return value


def check_recipient(address: str) -> str:
    """`address` if it can be the To header and RCPT TO; `InvalidCommand(invalid_address)` if not.

    A non-ASCII address (`ｈａｎａ@example.jp`, `hana@日本.jp`) would need SMTPUTF8 (RFC 6531) or
    IDNA, which the sender does not do: it is refused, and the command dead-lettered.
    """
    if not address.isascii():
        local, at, _ = address.rpartition("@")
        where = "domain" if at and local.isascii() else "local part" if at else "text"
        raise InvalidCommand(
            f"the recipient address (field `to`, {mask_email(address)!r}) has non-ASCII "
            f"characters in its {where}; internationalised addresses (SMTPUTF8, IDNA) are not "
            "supported: fix the address at its source (full-width letters are a common slip)",
            reason="invalid_address",
        )
    if not is_valid_email(address):
        raise InvalidCommand(
            f"the recipient address (field `to`) {address[:80]!r} is not an email address",
            reason="invalid_address",
        )
    return address


def build(mail: Mail) -> bytes:
    """The complete message as bytes with CRLF line endings."""
    charset = mail.charset
    if charset != "utf-8" and not _encodable(mail, charset):
        charset = "utf-8"
    check_recipient(mail.to_address)
    check_header("From", mail.sender)
    check_header("Subject", mail.subject)
    check_raw_header("Message-ID", mail.message_id)
    for name, value in mail.headers:
        check_raw_header(name, value)
    if mail.to_name is not None:
        check_header("To", mail.to_name)
    boundary = "=_nudge_" + hashlib.sha256(mail.message_id.encode()).hexdigest()[:24]
    head = [
        f"Message-ID: {mail.message_id}",
        f"Date: {_date(mail.date.replace(microsecond=0))}",
        f"From: {_address(mail.sender, charset)}",
        f"To: {_to(mail.to_name, mail.to_address, charset, header_name='To')}",
        f"Subject: {_encode_text('Subject', mail.subject, charset)}",
        "MIME-Version: 1.0",
        *(f"{name}: {value}" for name, value in mail.headers),
        # Folded: on one line it is 80 characters, over RFC 5322's 78.
        "Content-Type: multipart/alternative;",
        f' boundary="{boundary}"',
        "",
        "This is a multi-part message in MIME format.",
        f"--{boundary}",
        "",
    ]
    # The parts are built as bytes: their base64 lines never need to be text.
    separator = f"\r\n--{boundary}\r\n".encode("ascii")
    return b"".join(
        [
            CRLF.join(head).encode("ascii"),
            _part("text/plain", mail.text, charset),
            separator,
            _part("text/html", _declare_charset(mail.html, charset), charset),
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        ]
    )


def _encodable(mail: Mail, charset: Charset) -> bool:
    # The From display name too: a shop called `㈱…` must not raise for every carrier recipient.
    try:
        for text in (mail.subject, mail.text, mail.html, mail.to_name or "", mail.sender):
            text.encode(_PY_CODEC[charset])
    except UnicodeEncodeError:
        return False
    return True


def _encode_text(header_name: str, value: str, charset: Charset) -> str:
    """RFC 2047 `B` encoded words of at most 75 characters, folded; plain ASCII stays plain."""
    # ASCII holding "=?" would be decoded by a reader as an encoded word (display spoofing, e.g.
    # a variable carrying `=?utf-8?b?…?=`): encode it ourselves, as `_to` does for names.
    if value.isascii() and "=?" not in value:
        if len(header_name) + len(value) < 76:
            return value
        return Header(value, "us-ascii", header_name=header_name).encode(linesep=CRLF)
    return f"{CRLF} ".join(_encoded_words(value, charset))


def _encoded_words(value: str, charset: Charset) -> list[str]:
    # email.header.Header does the same, several times slower; this runs for every mail.
    limit = _WORD_BYTES[charset]
    if charset == "utf-8":
        # Greedy, at character boundaries: cut each word at the last UTF-8 lead byte that keeps
        # it within `limit` bytes (a continuation byte, 10xxxxxx, is never a boundary).
        data = value.encode("utf-8")
        words: list[str] = []
        start, size = 0, len(data)
        while start < size:
            end = start + limit
            if end >= size:
                end = size
            else:
                while data[end] & 0xC0 == 0x80:
                    end -= 1
            words.append(_b_word(data[start:end], charset))
            start = end
        return words
    # ISO-2022-JP is stateful (escape sequences): measure each candidate chunk as encoded.
    codec = _PY_CODEC[charset]
    words = []
    chunk = ""
    for char in value:
        if chunk and len((chunk + char).encode(codec)) > limit:
            words.append(_word(chunk, charset))
            chunk = ""
        chunk += char
    if chunk:
        words.append(_word(chunk, charset))
    return words


def _word(text: str, charset: Charset) -> str:
    return _b_word(text.encode(_PY_CODEC[charset]), charset)


def _b_word(data: bytes, charset: Charset) -> str:
    return f"=?{charset}?b?{base64.b64encode(data).decode('ascii')}?="


def _to(name: str | None, address: str, charset: Charset, *, header_name: str) -> str:
    if not name or not name.strip():
        return address
    name = name[:MAX_NAME_CHARS]
    if name.isascii() and "=?" not in name:
        return formataddr((name, address))
    # Non-ASCII, or ASCII that a reader would decode as an encoded word: encode it ourselves.
    words = _encoded_words(name, charset)
    # The address goes on a line of its own when the last word's line would pass 78 characters.
    last = len(words[-1]) + (len(header_name) + 2 if len(words) == 1 else 1)
    space = f"{CRLF} " if last + 3 + len(address) > 78 else " "
    return f"{f'{CRLF} '.join(words)}{space}<{address}>"


@functools.lru_cache(maxsize=8)
def _date(moment: datetime) -> str:
    # The Date header has whole seconds: all mails of one second share one formatting.
    return format_datetime(moment)


@functools.lru_cache(maxsize=16)
def _address(configured: str, charset: Charset) -> str:
    name, address = parseaddr(configured)
    if not address or "@" not in address:
        raise InvalidCommand(f"NUDGE_MAIL_FROM={configured!r} has no address")
    if not address.isascii():
        raise InvalidCommand(
            f"NUDGE_MAIL_FROM={configured!r}: the address must be ASCII (no SMTPUTF8)",
            reason="invalid_header",
        )
    return _to(name or None, address, charset, header_name="From")


_META_UTF8 = re.compile(r"""<meta\s+charset=["']?utf-8["']?\s*/?>""", re.IGNORECASE)


def _declare_charset(html: str, charset: Charset) -> str:
    """The HTML with its `<meta charset>` naming the charset its part is really in.

    The layouts declare UTF-8; an ISO-2022-JP part that says otherwise in its own head is read
    as UTF-8 by a client (or a browser opening the saved part) that trusts the document.
    """
    if charset == "utf-8":
        return html
    return _META_UTF8.sub(f'<meta charset="{charset}">', html, count=1)


def _part(content_type: str, body: str, charset: Charset) -> bytes:
    """One part: its two headers, a blank line, and the body as base64 in 76-character lines,
    CRLF between lines (none after the last)."""
    if "\r" in body:  # templates render LF only; a CR can only come from a variable
        body = body.replace("\r\n", "\n").replace("\r", "\n")
    # CRLF in the encoded bytes: LF (0x0A) is never part of a multi-byte character in UTF-8 or
    # ISO-2022-JP (whose encoder is back in ASCII for it), and bytes replace faster than text.
    data = body.encode(_PY_CODEC[charset]).replace(b"\n", b"\r\n")
    # One C call and slicing into 76-character lines: what `base64.encodebytes` produces, without
    # its Python loop over 57-byte chunks.
    flat = binascii.b2a_base64(data, newline=False)
    lines = [flat[i : i + 76] for i in range(0, len(flat), 76)]
    headers = f'Content-Type: {content_type}; charset="{charset}"\r\n'
    return b"".join(
        [
            headers.encode("ascii"),
            b"Content-Transfer-Encoding: base64\r\n\r\n",
            b"\r\n".join(lines),
        ]
    )
