"""Signed, expiring tokens for links in mail: unsubscribe, open pixel, click redirect.

A token is `base64url(payload JSON) "." base64url(HMAC-SHA256(secret, purpose "|" payload))`. The
purpose is part of the MAC, so an open-pixel token cannot be replayed as an unsubscribe token, and
the payload carries its own expiry. Verification is constant-time and fails closed.

Each part is at most `MAX_PART` characters: `verify` refuses longer ones (it is fed by anyone on
the internet), so `sign` refuses to make them — a `PermanentError` (`link_too_long`) that
dead-letters the mail, instead of a link that could never work.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import orjson

from nudge.errors import PermanentError

MAX_PART: Final = 4096
"""The longest token part (base64url characters) `verify` accepts and `sign` produces."""


class InvalidToken(ValueError):
    """The token is malformed, tampered with, for another purpose, or expired."""


def sign(
    payload: Mapping[str, Any],
    *,
    purpose: str,
    secret: bytes,
    now: datetime,
    ttl: timedelta,
) -> str:
    """A token for `payload`, valid for `ttl`; `PermanentError` (`link_too_long`) if it would be
    longer than `verify` accepts."""
    body = dict(payload)
    body["exp"] = int((now + ttl).timestamp())
    raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    body_part = _b64(raw)
    if len(body_part) > MAX_PART:
        raise PermanentError(_too_long(payload, purpose, len(body_part)), reason="link_too_long")
    return f"{body_part}.{_b64(_mac(secret, purpose, raw))}"


def verify(token: str, *, purpose: str, secret: bytes, now: datetime) -> dict[str, Any]:
    """The payload of a genuine, unexpired token for `purpose`; `InvalidToken` otherwise."""
    try:
        body_part, mac_part = token.split(".")
        raw = _unb64(body_part)
        mac = _unb64(mac_part)
    except ValueError as err:
        raise InvalidToken("malformed token") from err
    if not hmac.compare_digest(mac, _mac(secret, purpose, raw)):
        raise InvalidToken("bad signature")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidToken("malformed payload") from err
    if not isinstance(body, dict) or not isinstance(body.get("exp"), int):
        raise InvalidToken("malformed payload")
    if body["exp"] < now.timestamp():
        raise InvalidToken("expired")
    del body["exp"]
    return body


def _too_long(payload: Mapping[str, Any], purpose: str, size: int) -> str:
    longest = max(payload, key=lambda name: len(str(payload[name])), default=None)
    shown = ""
    if longest is not None:
        value = repr(payload[longest])
        value = value if len(value) <= 120 else value[:120] + "…"
        shown = f"; its longest field {longest!r} is {value}"
    return (
        f"a {purpose} link's token would be {size} characters, more than the {MAX_PART} that "
        f"verification accepts, so the link could never work{shown}: shorten that value (a "
        "shorter URL, fewer query parameters)"
    )


def _mac(secret: bytes, purpose: str, raw: bytes) -> bytes:
    return hmac.new(secret, purpose.encode() + b"|" + raw, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or len(text) > MAX_PART:
        raise ValueError("bad length")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # Base64 lets several strings decode to the same bytes (the spare bits of the last character);
    # only the canonical one is accepted, so any change to a token's text invalidates it.
    if _b64(data) != text:
        raise ValueError("non-canonical base64")
    return data
