"""Token verification with key rotation: what is accepted, and which refusal each failure gets."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from nudge.links.errors import ExpiredToken, ForgedToken, MalformedToken
from nudge.links.keys import TokenKeys, parse_payload, verify_any, verify_link
from nudge.links.urls import CLICK, OPEN, UNSUBSCRIBE, MailRef
from nudge.tokens import MAX_PART, sign

from .conftest import NOW, OLD_SECRET, SECRET

DAY = timedelta(days=1)


def token(ref: MailRef, *, purpose: str = UNSUBSCRIBE, secret: bytes = SECRET, **extra: str) -> str:
    return sign({**ref.payload(), **extra}, purpose=purpose, secret=secret, now=NOW, ttl=DAY)


def test_a_token_signed_with_the_current_secret_gives_back_the_mail(
    ref: MailRef, keys: TokenKeys
) -> None:
    """A genuine unsubscribe token yields the exact MailRef the sender signed."""
    link = verify_link(token(ref), purpose=UNSUBSCRIBE, keys=keys, now=NOW)
    assert link.ref == ref
    assert link.url is None


def test_a_token_signed_with_a_retired_secret_is_still_accepted(
    ref: MailRef, keys: TokenKeys
) -> None:
    """After a rotation, links in mail signed with the previous secret keep working."""
    link = verify_link(token(ref, secret=OLD_SECRET), purpose=UNSUBSCRIBE, keys=keys, now=NOW)
    assert link.ref == ref


def test_a_retired_secret_no_longer_listed_is_refused(ref: MailRef) -> None:
    """Once a secret is dropped from the previous list, its tokens are forgeries."""
    with pytest.raises(ForgedToken):
        verify_link(
            token(ref, secret=OLD_SECRET), purpose=UNSUBSCRIBE, keys=TokenKeys(SECRET), now=NOW
        )


def test_a_token_for_another_purpose_is_refused_as_forged(ref: MailRef, keys: TokenKeys) -> None:
    """An open-pixel token cannot be replayed as an unsubscribe token."""
    with pytest.raises(ForgedToken):
        verify_link(token(ref, purpose=OPEN), purpose=UNSUBSCRIBE, keys=keys, now=NOW)


def test_a_tampered_payload_is_refused_as_forged(ref: MailRef, keys: TokenKeys) -> None:
    """Changing the user inside a token breaks its signature: nobody unsubscribes someone else."""
    genuine = token(ref)
    other = token(replace(ref, user_id="u-victim"), secret=b"attacker")
    forged = f"{other.split('.')[0]}.{genuine.split('.')[1]}"
    with pytest.raises(ForgedToken):
        verify_link(forged, purpose=UNSUBSCRIBE, keys=keys, now=NOW)


@pytest.mark.parametrize("secret", [SECRET, OLD_SECRET])
def test_an_expired_genuine_token_is_told_apart_from_a_forgery(
    ref: MailRef, keys: TokenKeys, secret: bytes
) -> None:
    """Past its expiry, a genuine token raises ExpiredToken (410), whichever secret signed it."""
    with pytest.raises(ExpiredToken):
        verify_link(token(ref, secret=secret), purpose=UNSUBSCRIBE, keys=keys, now=NOW + 2 * DAY)


@pytest.mark.parametrize("secret", [SECRET, OLD_SECRET])
def test_an_expired_genuine_token_can_be_accepted_marked_expired(
    ref: MailRef, keys: TokenKeys, secret: bytes
) -> None:
    """With accept_expired, a genuine expired click token gives its mail and URL, marked expired."""
    url = "https://shop.example/p-9"
    link = verify_link(
        token(ref, purpose=CLICK, secret=secret, url=url),
        purpose=CLICK,
        keys=keys,
        now=NOW + 2 * DAY,
        accept_expired=True,
    )
    assert (link.ref, link.url, link.expired) == (ref, url, True)


def test_an_unexpired_token_is_not_marked_expired(ref: MailRef, keys: TokenKeys) -> None:
    """accept_expired changes nothing for a token within its lifetime."""
    link = verify_link(token(ref), purpose=UNSUBSCRIBE, keys=keys, now=NOW, accept_expired=True)
    assert not link.expired


def test_accepting_expired_tokens_still_refuses_forgeries(ref: MailRef, keys: TokenKeys) -> None:
    """An expired token no known secret signed is a forgery (403), expired or not."""
    forged = token(ref, purpose=CLICK, secret=b"attacker", url="https://evil.example/")
    with pytest.raises(ForgedToken):
        verify_link(forged, purpose=CLICK, keys=keys, now=NOW + 2 * DAY, accept_expired=True)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "a.b.c",
        "no dots at all",
        "a b.c",
        "ab.c=",
        "x" * 9000 + ".y",
        "é.é",
        "ab.cd\n",
        "x" * (MAX_PART + 1) + "." + "y" * 43,
        "x" * 43 + "." + "y" * (MAX_PART + 1),
    ],
)
def test_something_not_shaped_like_a_token_is_malformed(keys: TokenKeys, text: str) -> None:
    """Empty, non-base64url input, or a part longer than `sign` makes (4,096 characters) is
    malformed (400), refused before any HMAC is computed; never taken for a forgery (403)."""
    with pytest.raises(MalformedToken):
        verify_any(text, purpose=UNSUBSCRIBE, secrets=keys.all, now=NOW)


def test_a_part_of_the_longest_length_is_checked_as_a_token(keys: TokenKeys) -> None:
    """4,096 characters is still token-shaped: such a token we did not sign is a forgery."""
    with pytest.raises(ForgedToken):
        verify_any("A" * MAX_PART + "." + "A" * 43, purpose=UNSUBSCRIBE, secrets=keys.all, now=NOW)


@pytest.mark.parametrize("missing", ["u", "c", "j", "s", "l"])
def test_a_payload_without_a_signed_field_is_malformed(ref: MailRef, missing: str) -> None:
    """A payload lacking a field we always sign is refused, not half-read."""
    payload = {k: v for k, v in ref.payload().items() if k != missing}
    with pytest.raises(MalformedToken):
        parse_payload(payload, purpose=UNSUBSCRIBE)


def test_a_click_token_carries_its_destination(ref: MailRef, keys: TokenKeys) -> None:
    """A click token yields the URL that was in the mail."""
    url = "https://shop.example/cart?x=1&y=2"
    link = verify_link(token(ref, purpose=CLICK, url=url), purpose=CLICK, keys=keys, now=NOW)
    assert link.url == url


def test_a_click_token_without_a_destination_is_malformed(ref: MailRef, keys: TokenKeys) -> None:
    """A click token must name where it goes; there is no default destination."""
    with pytest.raises(MalformedToken):
        verify_link(token(ref, purpose=CLICK), purpose=CLICK, keys=keys, now=NOW)
