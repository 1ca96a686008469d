"""Verifying link tokens against the current secret and any retired ones (key rotation).

`nudge.tokens.verify` checks one secret. Rotating that secret would break every link in mail
already delivered (unsubscribe links live for a year), so the link service accepts a token signed
by the current secret or by any secret listed in `NUDGE_TOKEN_SECRET_PREVIOUS`; new links are
always signed with the current one. See docs/links.md for the rotation procedure.

The answer distinguishes a token we never signed (403) from a genuine but expired one (410) without
parsing error messages: a token whose signature verifies when checked at the epoch is genuine, so
its failure now can only be the expiry. The same check lets a caller accept a genuine but expired
token (`verify_link(accept_expired=True)`): the click redirect and the pixel do, because for them
the lifetime limits what is recorded, not where a genuine link may go.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from nudge.links.errors import ExpiredToken, ForgedToken, MalformedToken
from nudge.links.urls import CLICK, MailRef
from nudge.tokens import MAX_PART, InvalidToken, verify

# What `nudge.tokens.sign` can make: two base64url parts of at most `MAX_PART` characters each.
# Anything else is malformed (400), checked before any HMAC; `tokens.verify` refuses it too, but
# as an `InvalidToken` like a bad signature, which would make it a forgery (403).
_SHAPE: Final = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_PART}}}\.[A-Za-z0-9_-]{{1,{MAX_PART}}}")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_FIELDS: Final = ("u", "c", "j", "s", "l")


@dataclass(frozen=True, slots=True)
class TokenKeys:
    """The secret that signs new links, then the retired ones still accepted, newest first."""

    current: bytes
    previous: tuple[bytes, ...] = ()

    @property
    def all(self) -> tuple[bytes, ...]:
        return (self.current, *self.previous)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedLink:
    """What a genuine token says: the mail it came from and, for a click, where it points."""

    ref: MailRef
    url: str | None = None
    expired: bool = False  # genuine but past its expiry; only with `accept_expired`


def verify_any(
    token: str, *, purpose: str, secrets: Sequence[bytes], now: datetime
) -> dict[str, Any]:
    """The payload of `token` if any of `secrets` signed it for `purpose` and it has not expired.

    Raises `MalformedToken`, `ForgedToken` or `ExpiredToken`. Every secret is tried even after a
    genuine-but-expired match, so timing does not reveal which secret signed a token.
    """
    payload, expired = _genuine(token, purpose=purpose, secrets=secrets, now=now)
    if expired:
        raise ExpiredToken("this link has expired")
    return payload


def verify_link(
    token: str, *, purpose: str, keys: TokenKeys, now: datetime, accept_expired: bool = False
) -> VerifiedLink:
    """Verify `token` and read the mail reference (and, for clicks, the destination) in it.

    With `accept_expired`, a genuine but expired token is returned marked `expired` instead of
    raising `ExpiredToken`: for links whose expiry only limits what is recorded (click, pixel).
    """
    payload, expired = _genuine(token, purpose=purpose, secrets=keys.all, now=now)
    if expired and not accept_expired:
        raise ExpiredToken("this link has expired")
    link = parse_payload(payload, purpose=purpose)
    return replace(link, expired=True) if expired else link


def _genuine(
    token: str, *, purpose: str, secrets: Sequence[bytes], now: datetime
) -> tuple[dict[str, Any], bool]:
    """The payload of a token one of `secrets` signed for `purpose`, and whether it has expired.

    Raises `MalformedToken` or `ForgedToken`; an unexpired match wins over an expired one.
    """
    if _SHAPE.fullmatch(token) is None:
        raise MalformedToken(f"the token is not two base64url parts of 1-{MAX_PART} characters")
    payload: dict[str, Any] | None = None
    expired: dict[str, Any] | None = None
    for secret in secrets:
        try:
            found = verify(token, purpose=purpose, secret=secret, now=now)
        except InvalidToken:
            try:
                stale = verify(token, purpose=purpose, secret=secret, now=_EPOCH)
            except InvalidToken:
                continue
            if expired is None:
                expired = stale
            continue
        if payload is None:
            payload = found
    if payload is not None:
        return payload, False
    if expired is not None:
        return expired, True
    raise ForgedToken(f"no known secret signed this token for {purpose!r}")


def parse_payload(payload: dict[str, Any], *, purpose: str) -> VerifiedLink:
    """Turn a verified payload back into a `MailRef`; a field we always sign missing → 400."""
    for name in _FIELDS:
        if not isinstance(payload.get(name), str) or not payload[name]:
            raise MalformedToken(f"the token payload lacks {name!r}")
    variant = payload.get("v")
    if variant is not None and not isinstance(variant, str):
        raise MalformedToken("the token payload has a non-string variant")
    ref = MailRef(
        user_id=payload["u"],
        command_id=payload["c"],
        journey=payload["j"],
        step=payload["s"],
        variant=variant,
        locale=payload["l"],
    )
    if purpose != CLICK:
        return VerifiedLink(ref=ref)
    url = payload.get("url")
    if not isinstance(url, str) or not url:
        raise MalformedToken("a click token carries no destination")
    return VerifiedLink(ref=ref, url=url)
