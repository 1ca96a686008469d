"""Transactional journeys (SPEC §8): at once, whatever consent, quiet hours or the cap say."""

from __future__ import annotations

import pytest

from journeys.kit import HANA, at, cart_add, ev, order, play, signup
from nudge.events import Event

NIGHT = at("2026-11-22 23:30")
NO_CONSENT = {**HANA, "marketing_consent": False}


@pytest.mark.parametrize(
    ("event", "journey", "step", "template", "variables"),
    [
        (
            order(NIGHT, user=NO_CONSENT),
            "order_confirmation",
            "confirmation",
            "order_confirmation",
            {"order_id": "o-1", "total": 4800, "currency": "JPY"},
        ),
        (
            ev("order.shipped", NIGHT, user=NO_CONSENT, order_id="o-1", carrier="Yamato",
               tracking_number="1234", tracking_url="https://track.example/1234"),
            "shipping_notice",
            "notice",
            "shipping_notice",
            {"carrier": "Yamato", "tracking_number": "1234"},
        ),
        (
            ev("password_reset.requested", NIGHT, user=NO_CONSENT,
               reset_url="https://shop.example/reset/abc", expires_at="2026-11-23T00:30:00+09:00"),
            "password_reset",
            "reset_link",
            "password_reset",
            {"reset_url": "https://shop.example/reset/abc"},
        ),
        (
            ev("email_verification.requested", NIGHT, user=NO_CONSENT,
               verify_url="https://shop.example/verify/abc"),
            "email_verification",
            "verify",
            "email_verification",
            {"verify_url": "https://shop.example/verify/abc"},
        ),
        (signup(NIGHT, NO_CONSENT), "welcome", "welcome", "welcome", {}),
    ],
)  # fmt: skip
def test_transactional_mail_goes_at_once_even_at_night_without_consent(
    event: Event, journey: str, step: str, template: str, variables: dict[str, object]
) -> None:
    """Each transactional journey sends its one step at the event's time, ignoring consent and
    quiet hours, with the contract's variables."""
    played = play([event])
    command = next(c for c in played.commands if c.journey == journey)
    assert (command.step, command.template, command.kind) == (step, template, "transactional")
    assert command.created_at == NIGHT
    assert command.to == "hana@example.jp"
    assert command.locale == "ja"
    assert command.trigger_event_id == event.event_id
    assert {k: command.variables[k] for k in variables} == variables
    assert "name" in command.variables


def test_transactional_mail_ignores_the_frequency_cap() -> None:
    """Two marketing mails already went today (thank_you 11:00, reminder_1 12:00), the cap's
    most: a password reset at 12:30 still goes at once."""
    reset = ev(
        "password_reset.requested",
        at("2026-11-22 12:30"),
        reset_url="https://shop.example/reset/abc",
        expires_at="2026-11-22T13:00:00+09:00",
    )
    played = play(
        [order(at("2026-11-22 10:00"), user=HANA), cart_add(at("2026-11-22 11:00")), reset],
        until=at("2026-11-22 13:00"),
    )
    assert played.mails() == [
        ("order_confirmation", "confirmation", "2026-11-22 10:00"),
        ("first_purchase", "thank_you", "2026-11-22 11:00"),
        ("cart_abandonment", "reminder_1", "2026-11-22 12:00"),
        ("password_reset", "reset_link", "2026-11-22 12:30"),
    ]


def test_order_confirmation_lists_the_items() -> None:
    """The confirmation carries the order's items (name, quantity, price)."""
    (command,) = [c for c in play([order(NIGHT, user=HANA)]).commands if c.step == "confirmation"]
    assert command.variables["items"] == [
        {"product_id": "p-1", "name": "Tea set", "quantity": 1, "price": 4800}
    ]


def test_every_order_gets_its_own_confirmation() -> None:
    """Re-entry `always`: two orders, two confirmations with different idempotency keys."""
    played = play([order(NIGHT, user=HANA), order(at("2026-11-23 10:00"), order_id="o-2")])
    keys = [c.idempotency_key for c in played.commands if c.journey == "order_confirmation"]
    assert len(keys) == 2
    assert len(set(keys)) == 2


def test_welcome_is_sent_once_even_if_sign_up_repeats() -> None:
    """A second `user.signed_up` does not welcome the user again."""
    played = play([signup(NIGHT), signup(at("2026-11-24 10:00"))])
    assert played.steps("welcome") == ["welcome"]


def test_without_an_address_nothing_is_sent_and_the_reason_is_no_address() -> None:
    """A user whose profile has no email gets a `no_address` decision instead of a command."""
    played = play([order(NIGHT)])
    assert played.commands == []
    assert ("confirmation", "no_address") in played.reasons("order_confirmation")


def test_profile_locale_and_fields_accumulate_across_events() -> None:
    """The profile is built from every event's `user` object; locale comes from it."""
    played = play(
        [
            ev("user.updated", NIGHT, user={"email": "amy@example.com"}),
            ev("user.updated", NIGHT, user={"locale": "en", "name": "Amy"}),
            order(at("2026-11-23 10:00")),
        ]
    )
    (command,) = [c for c in played.commands if c.journey == "order_confirmation"]
    assert (command.to, command.locale, command.variables["name"]) == (
        "amy@example.com",
        "en",
        "Amy",
    )
