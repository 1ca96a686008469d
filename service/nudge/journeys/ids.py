"""Deterministic identifiers: idempotency keys, command ids, coupon codes, A/B buckets.

Everything here is a hash of its inputs, never random and never time-based, so that replaying the
same events gives the same keys (the sender delivers one key at most once) and a user stays in
the same variant for the life of a journey.
"""

from __future__ import annotations

from hashlib import blake2b

from nudge.journeys.config import Journey
from nudge.journeys.state import EVENT_DIGEST_BYTES

_SEP = "\x1f"  # a unit separator cannot occur in ids (the codec rejects control characters)


# Hashers with their parameters set, copied per use: the same digests as building one with
# `blake2b(data, digest_size=..., person=...)`, without parsing those parameters each time
# (two ids per step fired are on the engine's hot path).
_IDEM = blake2b(digest_size=16, person=b"nudge-idem")
_CMD = blake2b(digest_size=16, person=b"nudge-cmd")
_CODE = blake2b(digest_size=5, person=b"nudge-code")
_EVENT = blake2b(digest_size=EVENT_DIGEST_BYTES)
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648, as base64.b32encode


def idempotency_key(user_id: str, journey: str, step: str, anchor: str) -> str:
    """Hash of user, journey, step and the anchoring trigger (event id or calendar occurrence)."""
    h = _IDEM.copy()
    h.update(_SEP.join((user_id, journey, step, anchor)).encode())
    return h.hexdigest()


def command_id(key: str) -> str:
    """A UUID-shaped id derived from the idempotency key (one command per key)."""
    hasher = _CMD.copy()
    hasher.update(key.encode())
    h = hasher.hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def code(prefix: str, key: str) -> str:
    """A short coupon code, e.g. `CART-7K2M9QXA`, stable for one mail."""
    hasher = _CODE.copy()
    hasher.update(key.encode())
    # base64.b32encode of 5 bytes (exactly 8 characters, no padding), without the pure-Python
    # loop of the 3.11 standard library.
    n = int.from_bytes(hasher.digest(), "big")
    chars = _B32
    return (
        f"{prefix}-{chars[n >> 35]}{chars[(n >> 30) & 31]}{chars[(n >> 25) & 31]}"
        f"{chars[(n >> 20) & 31]}{chars[(n >> 15) & 31]}{chars[(n >> 10) & 31]}"
        f"{chars[(n >> 5) & 31]}{chars[n & 31]}"
    )


def event_digest(event_id: str) -> bytes:
    """A 48-bit digest of an event id: the de-duplication memory holds these, not the ids."""
    hasher = _EVENT.copy()
    hasher.update(event_id.encode())
    return hasher.digest()


def bucket(user_id: str, journey: str) -> float:
    """A stable number in [0, 1) for this user and journey."""
    digest = blake2b(f"{user_id}{_SEP}{journey}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign(journey: Journey, user_id: str) -> tuple[str | None, bool]:
    """(variant, in_holdout): the holdout takes the lowest share, variants split the rest."""
    if not journey.variants and journey.holdout <= 0:
        return None, False
    u = bucket(user_id, journey.name)
    if u < journey.holdout:
        return None, True
    if not journey.variants:
        return None, False
    u = (u - journey.holdout) / (1.0 - journey.holdout)
    total = sum(v.weight for v in journey.variants)
    edge = 0.0
    for variant in journey.variants:
        edge += variant.weight / total
        if u < edge:
            return variant.name, False
    return journey.variants[-1].name, False
