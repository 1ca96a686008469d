"""Events that arrive late (an app's offline outbox, a publisher's retry queue): one user's events
come in publish order, but an event's `occurred_at` can be older than events already applied. The
processor passes the arrival time as `now`, as these tests do; a late event must not undo what a
newer one established (SPEC §2, §8; docs/journeys.md, "Late events").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pytest

from journeys.kit import HANA, SHIPPED, at, cart_add, ev, order
from nudge.commands import DeliveryRecord
from nudge.events import Event
from nudge.journeys import Engine, UserState, decode_state, encode_state
from nudge.journeys.localtime import to_ms
from nudge.journeys.outcome import Outcome


def _arrive(
    engine: Engine, arrivals: Iterable[tuple[Event, datetime]], state: UserState | None = None
) -> Outcome:
    """Each event processed at its arrival time, in the order given; the last outcome."""
    outcome = Outcome(state=state)
    for event, arrival in arrivals:
        outcome = engine.on_event(outcome.state, event, arrival)
    return outcome


# -- deletion ---------------------------------------------------------------------------------
def _deleted_at_1010(engine: Engine) -> Outcome:
    """Signed up 10:00 with HANA's profile, a cart at 10:02, deleted at 10:10."""
    return _arrive(
        engine,
        [
            (ev("user.signed_up", at("2026-11-22 10:00"), user=HANA), at("2026-11-22 10:00")),
            (cart_add(at("2026-11-22 10:02")), at("2026-11-22 10:02")),
            (ev("user.deleted", at("2026-11-22 10:10")), at("2026-11-22 10:10")),
        ],
    )


def test_a_cart_add_stamped_before_the_deletion_and_arriving_after_it_is_ignored() -> None:
    """Deleted at 10:10; a cart add stamped 10:05, carrying the profile, arrives at 10:11. It is
    `ignored` as `before_deletion`: no state rebuilt from its profile, no reminder at 11:05."""
    engine = Engine(SHIPPED)
    deleted = _deleted_at_1010(engine)
    late = cart_add(at("2026-11-22 10:05"), user=HANA, event_id="c-late")
    outcome = engine.on_event(deleted.state, late, at("2026-11-22 10:11"))
    assert [(d.outcome, d.reason, d.event_id) for d in outcome.decisions] == [
        ("ignored", "before_deletion", "c-late")
    ]
    assert outcome.commands == ()
    assert outcome.policy is None
    assert outcome.state == deleted.state  # still only the tombstone
    assert outcome.state is not None
    assert (outcome.state.email, outcome.state.consent, outcome.state.runs) == (None, None, ())
    later = engine.on_due(outcome.state, at("2026-11-22 11:05"))
    assert (later.commands, later.decisions) == ((), ())


def test_deletion_keeps_only_the_deletion_time_for_7_days_then_erases_the_state() -> None:
    """user.deleted at 10:10 leaves a tombstone with nothing but the user id and the deletion
    time; it wakes on 29 Nov 10:10 and is erased then (state None), not before."""
    engine = Engine(SHIPPED)
    deleted = _deleted_at_1010(engine)
    assert deleted.state == UserState(user_id="u-1", deleted_at=to_ms(at("2026-11-22 10:10")))
    assert deleted.wake_at == at("2026-11-29 10:10")
    assert decode_state(encode_state(deleted.state)) == deleted.state
    assert len(encode_state(deleted.state)) < 128
    early = engine.on_due(deleted.state, at("2026-11-29 10:09"))
    assert (early.state, early.wake_at, early.decisions) == (deleted.state, deleted.wake_at, ())
    erased = engine.on_due(deleted.state, at("2026-11-29 10:10"))
    assert (erased.state, erased.wake_at, erased.commands, erased.decisions) == (None, None, (), ())


def test_a_deletion_processed_more_than_7_days_after_its_stamp_erases_at_once() -> None:
    """A deletion stamped 1 Nov and processed 22 Nov has outlived its tombstone: state None."""
    engine = Engine(SHIPPED)
    state = engine.on_event(
        None, cart_add(at("2026-11-01 10:00"), user=HANA), at("2026-11-01 10:00")
    )
    outcome = engine.on_event(
        state.state, ev("user.deleted", at("2026-11-01 11:00")), at("2026-11-22 10:00")
    )
    assert (outcome.state, outcome.wake_at) == (None, None)
    assert outcome.policy is not None
    assert outcome.policy.deleted


def test_an_event_stamped_after_the_deletion_starts_a_new_user() -> None:
    """Deleted at 10:10, signed up again at 10:20: a new user, welcomed at once, who knows only
    the new profile; a straggler stamped 10:05 arriving after that is still ignored."""
    engine = Engine(SHIPPED)
    deleted = _deleted_at_1010(engine)
    again = ev("user.signed_up", at("2026-11-22 10:20"), user={"email": "new@example.jp"})
    outcome = engine.on_event(deleted.state, again, at("2026-11-22 10:20"))
    assert [(c.journey, c.to) for c in outcome.commands] == [("welcome", "new@example.jp")]
    assert outcome.state is not None
    assert (outcome.state.consent, outcome.state.cart) == (None, ())
    assert outcome.policy is not None
    assert not outcome.policy.deleted
    straggler = cart_add(at("2026-11-22 10:05"), user=HANA)
    late = engine.on_event(outcome.state, straggler, at("2026-11-22 10:21"))
    assert [d.reason for d in late.decisions] == ["before_deletion"]
    assert late.state == outcome.state


def test_a_delivery_record_for_a_deleted_user_is_ignored() -> None:
    """A bounce of a mail sent before the deletion, arriving after it, records nothing: the
    tombstone stays as it was (no address is kept for a deleted user)."""
    engine = Engine(SHIPPED)
    deleted = _deleted_at_1010(engine)
    bounce = DeliveryRecord(command_id="c", idempotency_key="k", user_id="u-1", status="bounced",
                            attempt=1, at=at("2026-11-22 10:12"), smtp_code=550,
                            smtp_enhanced_code="5.1.1", to="hana@example.jp")  # fmt: skip
    outcome = engine.on_delivery(deleted.state, bounce, at("2026-11-22 10:12"))
    assert (outcome.state, outcome.decisions, outcome.wake_at) == (
        deleted.state,
        (),
        deleted.wake_at,
    )


# -- post_purchase ----------------------------------------------------------------------------
def test_a_late_older_order_does_not_replace_the_newer_orders_sequence() -> None:
    """Order o-2 on 10 Nov, then o-1 stamped 1 Nov arrives: o-2's review_request still goes on
    14 Nov and its cross_sell on 1 Dec (only a newer order replaces the sequence)."""
    engine = Engine(SHIPPED)
    outcome = _arrive(
        engine,
        [
            (order(at("2026-11-10 12:00"), order_id="o-2", event_id="o-2", user=HANA),
             at("2026-11-10 12:00")),
            (order(at("2026-11-01 12:00"), order_id="o-1", event_id="o-1"),
             at("2026-11-10 12:05")),
        ],
    )  # fmt: skip
    assert outcome.state is not None
    review = engine.on_due(outcome.state, at("2026-11-14 12:00"))
    assert [(c.step, c.trigger_event_id) for c in review.commands] == [("review_request", "o-2")]
    assert review.state is not None
    cross = engine.on_due(review.state, at("2026-12-01 12:00"))
    assert [(c.step, c.trigger_event_id) for c in cross.commands] == [("cross_sell", "o-2")]


# -- cart_abandonment -------------------------------------------------------------------------
def test_a_late_cart_add_does_not_shorten_the_wait_after_the_last_cart_change() -> None:
    """Adds stamped 10:30 (arriving 10:31) and 10:00 (arriving 10:32): the last change is 10:30,
    so reminder_1 goes at 11:30, with both items, and nothing at 11:00."""
    engine = Engine(SHIPPED)
    outcome = _arrive(
        engine,
        [
            (cart_add(at("2026-11-22 10:30"), product="p-2", user=HANA), at("2026-11-22 10:31")),
            (cart_add(at("2026-11-22 10:00"), product="p-1"), at("2026-11-22 10:32")),
        ],
    )
    assert outcome.wake_at == at("2026-11-22 11:30")
    assert outcome.state is not None
    assert engine.on_due(outcome.state, at("2026-11-22 11:00")).commands == ()
    due = engine.on_due(outcome.state, at("2026-11-22 11:30"))
    assert [(c.step, c.created_at) for c in due.commands] == [
        ("reminder_1", at("2026-11-22 11:30"))
    ]
    items = due.commands[0].variables["items"]
    assert sorted(i["product_id"] for i in items) == ["p-1", "p-2"]


# -- winback ----------------------------------------------------------------------------------
def test_a_late_older_login_does_not_move_the_winback_clock_back() -> None:
    """Login on 10 Nov, then a login stamped 1 Nov arrives: the last activity is 10 Nov, so
    winback_1 goes 30 days after it, on 10 Dec, and nothing on 1 Dec."""
    engine = Engine(SHIPPED)
    outcome = _arrive(
        engine,
        [
            (ev("user.logged_in", at("2026-11-10 12:00"), user=HANA), at("2026-11-10 12:00")),
            (ev("user.logged_in", at("2026-11-01 12:00")), at("2026-11-10 12:05")),
        ],
    )
    assert outcome.state is not None
    assert engine.on_due(outcome.state, at("2026-12-01 12:00")).commands == ()
    due = engine.on_due(outcome.state, at("2026-12-10 12:00"))
    assert [(c.step, c.created_at) for c in due.commands] == [("winback_1", at("2026-12-10 12:00"))]


# -- attribution ------------------------------------------------------------------------------
def test_a_late_order_keeps_the_record_of_a_mail_sent_after_it() -> None:
    """reminder_1 goes at 11:00; order o-A stamped 10:58 arrives at 11:05 (no conversion: it
    came before the mail). Order o-B on 24 Nov, within 7 days of the mail, converts it."""
    engine = Engine(SHIPPED)
    first = engine.on_event(
        None, cart_add(at("2026-11-22 10:00"), user=HANA), at("2026-11-22 10:00")
    )
    assert first.state is not None
    sent = engine.on_due(first.state, at("2026-11-22 11:00"))
    assert [c.step for c in sent.commands] == ["reminder_1"]
    late = order(at("2026-11-22 10:58"), order_id="o-A", total=1000)
    o_a = engine.on_event(sent.state, late, at("2026-11-22 11:05"))
    assert [d for d in o_a.decisions if d.outcome == "conversion"] == []
    o_b = engine.on_event(
        o_a.state, order(at("2026-11-24 12:00"), order_id="o-B", total=5000), at("2026-11-24 12:00")
    )
    conversions = [
        (d.journey, d.step, d.revenue) for d in o_b.decisions if d.outcome == "conversion"
    ]
    assert conversions == [("cart_abandonment", "reminder_1", 5000.0)]


# -- profile fields ---------------------------------------------------------------------------
def test_a_late_event_does_not_bring_back_the_old_address() -> None:
    """The address changes on 10 Nov; a login stamped 1 Nov, still carrying the old address,
    arrives on 11 Nov (an offline app's outbox). The password reset that follows goes to the new
    address, not to whoever has the old one now."""
    engine = Engine(SHIPPED)
    old = {**HANA, "email": "old@example.jp"}
    outcome = _arrive(
        engine,
        [
            (ev("user.signed_up", at("2026-10-01 10:00"), user=old), at("2026-10-01 10:00")),
            (ev("user.updated", at("2026-11-10 10:00"), user={"email": "new@example.jp"}),
             at("2026-11-10 10:00")),
            (ev("user.logged_in", at("2026-11-01 10:00"), user=old), at("2026-11-11 10:00")),
            (ev("password_reset.requested", at("2026-11-11 10:05"),
                reset_url="https://shop.example/r/1", expires_at="2026-11-11T11:05:00+09:00"),
             at("2026-11-11 10:05")),
        ],
    )  # fmt: skip
    assert [(c.journey, c.to) for c in outcome.commands] == [("password_reset", "new@example.jp")]
    assert outcome.state is not None
    assert outcome.state.email == "new@example.jp"


def test_a_late_events_fields_that_nothing_newer_set_still_apply() -> None:
    """Only the address changed on 10 Nov. A late event stamped 5 Nov carries an address, a
    name, a locale, a time zone and a birthday: its address loses to the newer one, the rest
    applies (nothing newer set them), and the birthday greeting is scheduled from it."""
    engine = Engine(SHIPPED)
    late_profile = {
        "email": "mid@example.jp",
        "name": "山田 花子",
        "locale": "en",
        "timezone": "Europe/Berlin",
        "birthday": "1990-12-01",
    }
    outcome = _arrive(
        engine,
        [
            (ev("user.signed_up", at("2026-10-01 10:00"),
                user={"email": "old@example.jp", "marketing_consent": True}),
             at("2026-10-01 10:00")),
            (ev("user.updated", at("2026-11-10 10:00"), user={"email": "new@example.jp"}),
             at("2026-11-10 10:00")),
            (ev("user.updated", at("2026-11-05 10:00"), user=late_profile),
             at("2026-11-11 10:00")),
        ],
    )  # fmt: skip
    state = outcome.state
    assert state is not None
    assert (state.email, state.name, state.locale, state.timezone, state.birthday) == (
        "new@example.jp",
        "山田 花子",
        "en",
        "Europe/Berlin",
        "1990-12-01",
    )
    assert [r.key for r in state.runs if r.journey == "birthday"] == ["1990-12-01|Europe/Berlin"]


@pytest.mark.parametrize(
    ("field", "older", "newer"),
    [
        ("email", "old@example.jp", "new@example.jp"),
        ("name", "旧姓 花子", "山田 花子"),
        ("locale", "ja", "en"),
        ("timezone", "Asia/Tokyo", "America/New_York"),
        ("birthday", "1990-05-01", "1990-06-01"),
    ],
)
@pytest.mark.parametrize("late", [True, False], ids=["older-arrives-last", "in-order"])
def test_each_profile_field_keeps_the_value_of_the_newest_event_that_set_it(
    field: str, older: str, newer: str, late: bool
) -> None:
    """Whichever order they arrive in, the value stamped 10 Nov beats the one stamped 1 Nov;
    a late arrival changes nothing the user would notice (no calendar run moves either)."""
    engine = Engine(SHIPPED)
    first = (
        ev("user.updated", at("2026-11-01 10:00"), user={field: older}),
        at("2026-11-01 10:00"),
    )
    second = (
        ev("user.updated", at("2026-11-10 10:00"), user={field: newer}),
        at("2026-11-10 10:00"),
    )
    in_order = _arrive(engine, [first, second])
    arrivals = [second, (first[0], at("2026-11-11 10:00"))] if late else [first, second]
    outcome = _arrive(engine, arrivals)
    assert outcome.state is not None
    assert getattr(outcome.state, field) == newer
    assert in_order.state is not None
    assert outcome.state.runs == in_order.state.runs


def test_at_equal_stamps_the_later_arrival_wins() -> None:
    """Two events stamped the same millisecond with different addresses: the one applied last
    wins, as it always has."""
    engine = Engine(SHIPPED)
    when = at("2026-11-10 10:00")
    outcome = _arrive(
        engine,
        [
            (ev("user.updated", when, user={"email": "a@example.jp"}), when),
            (ev("user.updated", when, user={"email": "b@example.jp"}), at("2026-11-10 10:01")),
        ],
    )
    assert outcome.state is not None
    assert outcome.state.email == "b@example.jp"
