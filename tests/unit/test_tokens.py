"""Signed link tokens: genuine ones verify; any change, other purpose or expiry does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nudge.tokens import InvalidToken, sign, verify

SECRET = b"k" * 32
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
PAYLOAD = {"u": "u-42", "c": "c-1", "j": "cart_abandonment"}


def token(**overrides: object) -> str:
    args: dict[str, object] = {
        "purpose": "unsubscribe",
        "secret": SECRET,
        "now": NOW,
        "ttl": timedelta(days=1),
    }
    args.update(overrides)
    return sign(PAYLOAD, **args)  # type: ignore[arg-type]


def test_a_genuine_token_gives_back_its_payload() -> None:
    """What was signed is what verification returns (without the expiry field)."""
    assert verify(token(), purpose="unsubscribe", secret=SECRET, now=NOW) == PAYLOAD


def test_changing_any_character_invalidates_the_token() -> None:
    """Every character counts, including the spare bits of each part's last base64 character."""
    original = token()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    for position, current in enumerate(original):
        for replacement in alphabet:
            if replacement == current:
                continue
            tampered = original[:position] + replacement + original[position + 1 :]
            with pytest.raises(InvalidToken):
                verify(tampered, purpose="unsubscribe", secret=SECRET, now=NOW)


def test_a_token_for_one_purpose_is_refused_for_another() -> None:
    """An open-pixel token cannot be replayed as an unsubscribe token."""
    with pytest.raises(InvalidToken, match="signature"):
        verify(token(purpose="open"), purpose="unsubscribe", secret=SECRET, now=NOW)


def test_another_secret_is_refused() -> None:
    """Tokens signed with another key (another deployment, a forger) do not verify."""
    with pytest.raises(InvalidToken, match="signature"):
        verify(token(secret=b"x" * 32), purpose="unsubscribe", secret=SECRET, now=NOW)


def test_an_expired_token_is_refused() -> None:
    """Past its time to live a token is refused even though its signature is good."""
    with pytest.raises(InvalidToken, match="expired"):
        verify(token(), purpose="unsubscribe", secret=SECRET, now=NOW + timedelta(days=2))


@pytest.mark.parametrize("garbage", ["", ".", "abc", "a.b.c", "!!!.???", "x" * 5000 + ".y"])
def test_garbage_is_refused_without_crashing(garbage: str) -> None:
    """Malformed input is an InvalidToken, never another exception."""
    with pytest.raises(InvalidToken):
        verify(garbage, purpose="unsubscribe", secret=SECRET, now=NOW)
