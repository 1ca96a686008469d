"""Errors of the link service, each mapped to one HTTP answer.

    tokens.InvalidToken          (ValueError) a link token that must not be acted on
    ├── MalformedToken           not shaped like a token, or a payload we never sign   → 400
    ├── ForgedToken              signature matches no known secret, or another purpose → 403
    └── ExpiredToken             genuine, but past its expiry (unsubscribe only)       → 410
    nudge.errors.TransientError
    └── SinkUnavailable          the event could not be written to Kafka now           → 503

The status is decided by the type, never by reading a message. No subclass of `InvalidToken` ever
leads to an event: a request that fails verification changes nothing.
"""

from __future__ import annotations

from typing import ClassVar

from nudge.errors import TransientError
from nudge.tokens import InvalidToken


class MalformedToken(InvalidToken):
    """The token is not `base64url.base64url`, is too long, or its payload lacks a field."""

    status: ClassVar[int] = 400


class ForgedToken(InvalidToken):
    """No current or previous secret signed this token for this purpose (tampered or misused)."""

    status: ClassVar[int] = 403


class ExpiredToken(InvalidToken):
    """The token is genuine but expired; a newer mail carries a fresh link."""

    status: ClassVar[int] = 410


class SinkUnavailable(TransientError):
    """Kafka did not accept the event in time; retry later (the broker may be down)."""


# What a link handler catches: every way a token can fail, each carrying its HTTP status.
TOKEN_ERRORS = (MalformedToken, ForgedToken, ExpiredToken)
TokenError = MalformedToken | ForgedToken | ExpiredToken
