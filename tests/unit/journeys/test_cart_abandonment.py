"""cart_abandonment (SPEC §8): reminder_1 60 min after the last cart change, reminder_2 24 h
later with a time-limited discount, at most 2 per cart; an order or an empty cart ends it at once.
"""

from __future__ import annotations

from journeys.kit import HANA, SHIPPED, at, cart_add, ev, order, play
from nudge.journeys import Engine, UserState

T0 = at("2026-11-22 10:00")
LATER = at("2026-11-30 00:00")


def test_reminders_come_60_minutes_after_the_last_change_and_24_hours_after_that() -> None:
    """Two changes 20 min apart: reminder_1 60 min after the second, reminder_2 a day later."""
    played = play(
        [cart_add(T0, user=HANA), cart_add(at("2026-11-22 10:20"), product="p-2")], until=LATER
    )
    assert played.mails("cart_abandonment") == [
        ("cart_abandonment", "reminder_1", "2026-11-22 11:20"),
        ("cart_abandonment", "reminder_2", "2026-11-23 11:20"),
    ]


def test_reminder_1_lists_the_cart_and_reminder_2_adds_a_discount() -> None:
    """The cart's items and total reach reminder_1; reminder_2 adds a 10 % code valid 48 h."""
    played = play([cart_add(T0, user=HANA), cart_add(T0, product="p-2", price=1200)], until=LATER)
    first, second = [c for c in played.commands if c.journey == "cart_abandonment"]
    assert first.variables["cart_total"] == 6000
    assert [i["product_id"] for i in first.variables["items"]] == ["p-1", "p-2"]
    assert first.variables["currency"] == "JPY"
    assert second.variables["discount_percent"] == 10
    assert str(second.variables["discount_code"]).startswith("CART-")
    assert second.variables["discount_expires_at"] == "2026-11-25T11:00:00+09:00"


def test_an_order_cancels_pending_reminders_at_once() -> None:
    """An order 30 min after adding to the cart: no reminder, the pending step is `exited`."""
    played = play([cart_add(T0, user=HANA), order(at("2026-11-22 10:30"))], until=LATER)
    assert played.steps("cart_abandonment") == []
    assert ("reminder_1", "exited") in played.reasons("cart_abandonment")


def test_an_order_between_the_reminders_cancels_reminder_2() -> None:
    """After reminder_1, an order stops reminder_2."""
    played = play([cart_add(T0, user=HANA), order(at("2026-11-22 12:00"))], until=LATER)
    assert played.steps("cart_abandonment") == ["reminder_1"]


def test_emptying_the_cart_ends_the_journey() -> None:
    """Removing the only item exits; nothing is sent."""
    played = play(
        [
            cart_add(T0, user=HANA),
            ev("cart.item_removed", at("2026-11-22 10:10"), product_id="p-1"),
        ],
        until=LATER,
    )
    assert played.steps("cart_abandonment") == []
    assert ("reminder_1", "exited") in played.reasons("cart_abandonment")


def test_emptying_the_cart_between_the_reminders_cancels_reminder_2() -> None:
    """After reminder_1, removing the last item ends the run (`exited`); the next cart is a new
    cart with reminders of its own."""
    played = play(
        [
            cart_add(T0, user=HANA),
            ev("cart.item_removed", at("2026-11-22 12:00"), product_id="p-1"),
            cart_add(at("2026-11-24 10:00"), product="p-2"),
        ],
        until=LATER,
    )
    assert played.mails("cart_abandonment") == [
        ("cart_abandonment", "reminder_1", "2026-11-22 11:00"),
        ("cart_abandonment", "reminder_1", "2026-11-24 11:00"),
        ("cart_abandonment", "reminder_2", "2026-11-25 11:00"),
    ]
    assert ("reminder_2", "exited") in played.reasons("cart_abandonment")


def test_a_cart_gets_at_most_two_reminders_however_often_it_changes() -> None:
    """Changes after reminder_2 do not start a new sequence for the same cart."""
    played = play(
        [
            cart_add(T0, user=HANA),
            cart_add(at("2026-11-24 10:00"), product="p-2"),
            cart_add(at("2026-11-25 10:00"), product="p-3"),
        ],
        until=LATER,
    )
    assert played.steps("cart_abandonment") == ["reminder_1", "reminder_2"]


def test_a_new_cart_after_an_order_gets_its_own_reminders() -> None:
    """The order closes the cart; a later cart starts a fresh sequence."""
    played = play(
        [
            cart_add(T0, user=HANA),
            order(at("2026-11-22 12:00")),
            cart_add(at("2026-11-26 10:00"), product="p-9"),
        ],
        until=LATER,
    )
    assert played.mails("cart_abandonment") == [
        ("cart_abandonment", "reminder_1", "2026-11-22 11:00"),
        ("cart_abandonment", "reminder_1", "2026-11-26 11:00"),
        ("cart_abandonment", "reminder_2", "2026-11-27 11:00"),
    ]


def test_the_reminder_keeps_its_idempotency_key_on_replay() -> None:
    """The same events replayed give the same keys and command ids."""
    events = [cart_add(T0, user=HANA, event_id="e-a"), cart_add(T0, event_id="e-b")]
    first = play(events, until=LATER).commands
    second = play(events, until=LATER).commands
    assert [c.idempotency_key for c in first] == [c.idempotency_key for c in second]
    assert [c.command_id for c in first] == [c.command_id for c in second]


def _after_reminder_1() -> tuple[Engine, UserState]:
    """Hana's cart, and reminder_1 made at 11:00 (the sender may not have sent it yet)."""
    engine = Engine(SHIPPED)
    added = engine.on_event(None, cart_add(T0, user=HANA), T0)
    assert added.state is not None
    due = engine.on_due(added.state, at("2026-11-22 11:00"))
    assert [c.step for c in due.commands] == ["reminder_1"]
    assert due.state is not None
    return engine, due.state


def test_an_order_within_the_grace_of_a_reminder_withdraws_it_from_the_sender() -> None:
    """An order 20 min after reminder_1 was made publishes a contact policy withdrawing the
    journey's mail made until the order: a reminder held back by an SMTP retry never arrives
    after the purchase. Consent is unchanged."""
    engine, state = _after_reminder_1()
    ordered = engine.on_event(state, order(at("2026-11-22 11:20")), at("2026-11-22 11:20"))
    assert ordered.policy is not None
    assert ordered.policy.withdrawn == ("cart_abandonment",)
    assert ordered.policy.at == at("2026-11-22 11:20")
    assert ordered.policy.marketing_allowed
    assert not ordered.policy.deleted


def test_emptying_the_cart_right_after_a_reminder_withdraws_it_too() -> None:
    """Removing the last item is an exit (`exit_when: cart_empty`) like the order."""
    engine, state = _after_reminder_1()
    when = at("2026-11-22 11:05")
    emptied = engine.on_event(state, ev("cart.item_removed", when, product_id="p-1"), when)
    assert emptied.policy is not None
    assert emptied.policy.withdrawn == ("cart_abandonment",)


def test_an_order_after_the_reminders_grace_withdraws_nothing() -> None:
    """Past the journey's grace (1 h) and a 5-minute margin for the two services' clocks, the
    sender drops that mail as `stale` anyway: no policy. Within the margin it is withdrawn."""
    engine, state = _after_reminder_1()
    ordered = engine.on_event(state, order(at("2026-11-22 12:04")), at("2026-11-22 12:04"))
    assert ordered.policy is not None
    assert ordered.policy.withdrawn == ("cart_abandonment",)
    ordered = engine.on_event(state, order(at("2026-11-22 12:06")), at("2026-11-22 12:06"))
    assert ordered.policy is None
