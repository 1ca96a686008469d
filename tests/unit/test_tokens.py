"""Signed link tokens: genuine ones verify; any change, other purpose or expiry does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nudge.errors import PermanentError
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


@pytest.mark.parametrize("length", [2_900, 3_000, 3_050, 3_100, 3_500, 10_000])
def test_every_token_sign_makes_verifies(length: int) -> None:
    """`sign` and `verify` agree on the longest token: what is signed verifies, or is refused
    when signed (`link_too_long`, naming the value) — never a link that can not work."""
    payload = {**PAYLOAD, "url": "https://shop.example.com/?q=" + "x" * length}
    refused: PermanentError | None = None
    try:
        signed = sign(payload, purpose="click", secret=SECRET, now=NOW, ttl=timedelta(days=1))
    except PermanentError as err:
        refused = err
    if refused is None:
        assert verify(signed, purpose="click", secret=SECRET, now=NOW) == payload
    else:
        assert refused.reason == "link_too_long"
        assert "'url'" in str(refused)
        assert "https://shop.example.com/?q=xxx" in str(refused)


def test_a_url_too_long_for_a_token_is_refused_when_signed() -> None:
    """A 3,500-character target would make a token over the verify limit: refused at once."""
    payload = {**PAYLOAD, "url": "https://shop.example.com/?q=" + "x" * 3_500}
    with pytest.raises(PermanentError, match="more than the 4096") as caught:
        sign(payload, purpose="click", secret=SECRET, now=NOW, ttl=timedelta(days=1))
    assert caught.value.reason == "link_too_long"
