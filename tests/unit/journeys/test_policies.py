"""The cross-journey policies of SPEC §8, applied in one place (nudge.journeys.policies)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from journeys.kit import BERLIN, HANA, NEW_YORK, SHIPPED, TOKYO, at, cart_add, ev, order, play
from nudge.commands import DeliveryRecord
from nudge.events import Event
from nudge.journeys import Engine, UserState
from nudge.journeys.localtime import from_ms, to_ms

T0 = at("2026-11-22 10:00")


@pytest.mark.parametrize(
    ("profile", "reason"),
    [
        ({**HANA, "marketing_consent": False}, "no_consent"),
        ({k: v for k, v in HANA.items() if k != "marketing_consent"}, "no_consent"),
    ],
    ids=["consent false", "consent unknown"],
)
def test_marketing_needs_explicit_opt_in(profile: dict[str, object], reason: str) -> None:
    """Without `marketing_consent: true` no marketing mail goes; the reason is recorded."""
    played = play([cart_add(T0, user=profile)], until=at("2026-11-24 00:00"))
    assert played.commands == []
    assert ("reminder_1", reason) in played.reasons("cart_abandonment")


@pytest.mark.parametrize("scope", ["marketing", "all"])
def test_unsubscribe_stops_marketing_but_not_transactional_mail(scope: str) -> None:
    """After an unsubscribe (either scope) no marketing goes; an order is still confirmed."""
    played = play(
        [
            ev("user.unsubscribed", T0, user=HANA, scope=scope),
            cart_add(at("2026-11-22 10:05")),
            order(at("2026-11-22 12:00")),
        ],
        until=at("2026-12-31 00:00"),
    )
    assert {c.kind for c in played.commands} == {"transactional"}
    assert played.steps("order_confirmation") == ["confirmation"]


def test_a_fresh_opt_in_after_an_unsubscribe_subscribes_again() -> None:
    """An event carrying `marketing_consent: true` after the unsubscribe re-enables marketing."""
    played = play(
        [
            ev("user.unsubscribed", T0, user=HANA, scope="marketing"),
            ev("user.updated", at("2026-11-23 10:00"), user={"marketing_consent": True}),
            cart_add(at("2026-11-23 10:05")),
        ],
        until=at("2026-11-23 12:00"),
    )
    assert played.steps("cart_abandonment") == ["reminder_1"]


def _consent_change(change: str, stamped: str) -> Event:
    when = at(f"2026-11-22 {stamped}")
    if change == "unsubscribe":
        return ev("user.unsubscribed", when, scope="marketing")
    return ev("user.updated", when, user={"marketing_consent": change == "opt_in"})


@pytest.mark.parametrize(
    ("changes", "allowed"),
    [
        # (change, stamped), in order of arrival: an opt-in older than the last change is
        # ignored; a withdrawal always applies, however late
        ([("unsubscribe", "10:00"), ("opt_in", "09:00")], False),
        ([("opt_out", "10:00"), ("opt_in", "09:00")], False),
        ([("opt_in", "10:00"), ("unsubscribe", "09:00")], False),
        ([("opt_in", "10:00"), ("opt_out", "09:00")], False),
        # …and a late withdrawal does not let an opt-in older than the last change through
        ([("opt_in", "10:00"), ("unsubscribe", "09:00"), ("opt_in", "09:30")], False),
        ([("opt_in", "10:00"), ("unsubscribe", "09:00"), ("opt_in", "10:15")], True),
        # in time order, or at the same time: the later arrival wins, as always
        ([("unsubscribe", "10:00"), ("opt_in", "10:30")], True),
        ([("unsubscribe", "10:00"), ("opt_in", "10:00")], True),
        ([("opt_in", "10:00"), ("unsubscribe", "10:30")], False),
    ],
    ids=[
        "late opt-in after unsubscribe",
        "late opt-in after opt-out",
        "late unsubscribe after opt-in",
        "late opt-out after opt-in",
        "late unsubscribe, then an opt-in older than the first opt-in",
        "late unsubscribe, then a newer opt-in",
        "opt-in after unsubscribe",
        "opt-in at the unsubscribe's time",
        "unsubscribe after opt-in",
    ],
)
def test_a_delayed_opt_in_does_not_override_a_newer_change_and_a_withdrawal_always_applies(
    changes: list[tuple[str, str]], allowed: bool
) -> None:
    """Signed up with consent at 08:00; the changes arrive from 10:45 on, one a minute."""
    engine = Engine(SHIPPED)
    signup = ev("user.signed_up", at("2026-11-22 08:00"), user=HANA)
    state = engine.on_event(None, signup, signup.occurred_at).state
    for minute, (change, stamped) in enumerate(changes):
        arrival = at(f"2026-11-22 10:{45 + minute}")
        state = engine.on_event(state, _consent_change(change, stamped), arrival).state
    assert state is not None
    assert state.marketing_allowed is allowed


def test_an_unsubscribed_user_gets_no_cart_reminder_after_a_delayed_opt_in() -> None:
    """Unsubscribe at 10:00, then a user.updated opt-in stamped 09:00 arrives at 10:31: the cart
    added at 10:32 gets no reminder (`unsubscribed`)."""
    engine = Engine(SHIPPED)
    state = None
    for event, arrival in [
        (ev("user.signed_up", at("2026-11-22 08:00"), user=HANA), "08:00"),
        (_consent_change("unsubscribe", "10:00"), "10:00"),
        (_consent_change("opt_in", "09:00"), "10:31"),
        (cart_add(at("2026-11-22 10:32")), "10:32"),
    ]:
        state = engine.on_event(state, event, at(f"2026-11-22 {arrival}")).state
    assert state is not None
    due = engine.on_due(state, at("2026-11-22 11:32"))
    assert [(d.step, d.reason) for d in due.decisions] == [("reminder_1", "unsubscribed")]


def test_unsubscribe_and_opt_in_publish_the_contact_policy() -> None:
    """The outcome carries a ContactPolicy whenever marketing permission changes."""
    engine = Engine(SHIPPED)
    first = engine.on_event(None, ev("user.updated", T0, user=HANA), T0)
    assert first.policy is not None
    assert first.policy.marketing_allowed
    same = engine.on_event(first.state, ev("user.logged_in", T0), T0)
    assert same.policy is None
    off = engine.on_event(same.state, ev("user.unsubscribed", T0, scope="marketing"), T0)
    assert off.policy is not None
    assert not off.policy.marketing_allowed
    assert not off.policy.deleted


@pytest.mark.parametrize(
    ("tz", "added", "reminder_1", "reminder_2"),
    [
        (TOKYO, "2026-11-22 20:30", "2026-11-23 09:00", "2026-11-24 09:00"),
        (TOKYO, "2026-11-22 07:00", "2026-11-22 09:00", "2026-11-23 09:00"),
        (TOKYO, "2026-11-22 19:59", "2026-11-22 20:59", "2026-11-23 20:59"),
        # The edges: due at 21:00 is quiet, due at 09:00 is not.
        (TOKYO, "2026-11-22 20:00", "2026-11-23 09:00", "2026-11-24 09:00"),
        (TOKYO, "2026-11-22 08:00", "2026-11-22 09:00", "2026-11-23 09:00"),
        # Daylight saving starts in New York on 8 March 2026: 09:00 EDT is 10.5 h after 22:30 EST.
        (NEW_YORK, "2026-03-07 21:30", "2026-03-08 09:00", "2026-03-09 09:00"),
        # And ends in Berlin on 25 October 2026: 09:00 CET, not 08:00 or 10:00.
        (BERLIN, "2026-10-24 20:30", "2026-10-25 09:00", "2026-10-26 09:00"),
    ],
)
def test_quiet_hours_defer_marketing_to_nine_local(
    tz: ZoneInfo, added: str, reminder_1: str, reminder_2: str
) -> None:
    """A reminder due between 21:00 and 09:00 local waits until 09:00 local, DST or not."""
    zone = tz
    profile = {**HANA, "timezone": zone.key}
    played = play(
        [cart_add(at(added, zone), user=profile)],
        until=at("2026-12-31 00:00", zone),
    )
    sent = [c.created_at for c in played.commands if c.journey == "cart_abandonment"]
    assert [s.strftime("%Y-%m-%d %H:%M") for s in sent] == [reminder_1, reminder_2]
    if sent[0] != at(added, zone) + timedelta(hours=1):
        assert ("reminder_1", "quiet_hours_deferred") in played.reasons("cart_abandonment")


def test_the_quiet_hours_deferral_says_until_when() -> None:
    """The deferral decision names the new send time."""
    played = play([cart_add(at("2026-11-22 20:30"), user=HANA)], until=at("2026-11-23 10:00"))
    (deferred,) = [d for d in played.decisions if d.reason == "quiet_hours_deferred"]
    assert deferred.until == at("2026-11-23 09:00")
    assert deferred.outcome == "deferred"


def test_at_most_two_marketing_mails_in_24_hours() -> None:
    """thank_you at 11:00, reminder_1 at 12:00; the browse offer at 12:40 is frequency_capped
    and dropped, while the order confirmation (transactional) is not counted."""
    view = "product.viewed"
    played = play(
        [
            order(T0, user=HANA),
            cart_add(at("2026-11-22 11:00")),
            ev(view, at("2026-11-22 12:00"), product_id="p-5"),
            ev(view, at("2026-11-22 12:05"), product_id="p-5"),
            ev(view, at("2026-11-22 12:10"), product_id="p-5"),
        ],
        until=at("2026-11-22 23:00"),
    )
    marketing = [c for c in played.commands if c.kind == "marketing"]
    assert [(c.journey, c.step) for c in marketing] == [
        ("first_purchase", "thank_you"),
        ("cart_abandonment", "reminder_1"),
    ]
    assert ("offer", "frequency_capped") in played.reasons("browse_abandonment")
    assert played.steps("order_confirmation") == ["confirmation"]


def test_the_cap_window_rolls() -> None:
    """24 h after the first of two mails, a third may go."""
    played = play(
        [order(T0, user=HANA), cart_add(at("2026-11-22 11:00"))], until=at("2026-11-24 00:00")
    )
    # thank_you 11:00, reminder_1 12:00, reminder_2 next day 12:00 (24 h after reminder_1).
    assert played.mails("cart_abandonment")[-1] == (
        "cart_abandonment",
        "reminder_2",
        "2026-11-23 12:00",
    )


def test_a_repeated_event_id_is_ignored() -> None:
    """The same event delivered twice confirms the order once; the repeat is `duplicate_event`."""
    first = order(T0, user=HANA, event_id="e-same")
    played = play([first, first])
    assert played.steps("order_confirmation") == ["confirmation"]
    assert (None, "duplicate_event") in played.reasons()


def test_de_duplication_memory_is_bounded() -> None:
    """Only the last `remember_events` ids are kept, so state does not grow with history."""
    engine = Engine(SHIPPED)
    state = None
    for index in range(100):
        state = engine.on_event(state, ev("user.logged_in", T0, event_id=f"x{index}"), T0).state
    assert state is not None
    assert len(state.seen) == SHIPPED.policies.remember_events * 6


def test_a_marketing_step_more_than_the_grace_late_is_stale_and_not_sent() -> None:
    """The processor was down: reminder_1 due 11:00 fires at 12:30, is skipped as `stale`; the
    next step keeps its own schedule."""
    engine = Engine(SHIPPED)
    state = engine.on_event(None, cart_add(T0, user=HANA), T0).state
    assert state is not None
    late = engine.on_due(state, at("2026-11-22 12:30"))
    assert late.commands == ()
    assert [(d.step, d.reason) for d in late.decisions] == [("reminder_1", "stale")]
    assert late.wake_at == at("2026-11-23 11:00")


def test_a_step_within_the_grace_is_sent_late_rather_than_dropped() -> None:
    """59 minutes late is still within the 1 h grace: sent, with created_at = now."""
    engine = Engine(SHIPPED)
    state = engine.on_event(None, cart_add(T0, user=HANA), T0).state
    assert state is not None
    outcome = engine.on_due(state, at("2026-11-22 11:59"))
    assert [c.step for c in outcome.commands] == ["reminder_1"]
    assert outcome.commands[0].created_at == at("2026-11-22 11:59")


def test_replaying_old_events_sends_transactional_but_not_stale_marketing() -> None:
    """An old log processed days later: confirmation (transactional) goes, the thank_you does
    not."""
    engine = Engine(SHIPPED)
    now = at("2026-11-29 10:00")
    outcome = engine.on_event(None, order(T0, user=HANA), now)
    assert [c.journey for c in outcome.commands] == ["order_confirmation"]
    assert ("first_purchase", "thank_you", "stale") in [
        (d.journey, d.step, d.reason) for d in outcome.decisions
    ]


# A publisher whose clock runs ahead of ours: its events are taken as occurring on arrival.
AHEAD = at("2026-11-22 19:00")  # stamped 9 h after T0, when it arrives


def test_a_password_reset_stamped_ahead_of_our_clock_goes_at_once() -> None:
    """Stamped 19:00, arriving 10:00: the reset link goes at 10:00, not 9 h late."""
    reset = ev("password_reset.requested", AHEAD, user=HANA,
               reset_url="https://shop.example/reset/abc",
               expires_at="2026-11-22T10:30:00+09:00")  # fmt: skip
    outcome = Engine(SHIPPED).on_event(None, reset, T0)
    assert [(c.journey, c.created_at) for c in outcome.commands] == [("password_reset", T0)]


def test_a_cart_change_stamped_ahead_waits_from_its_arrival() -> None:
    """Stamped 19:00, arriving 10:00: reminder_1 is due 60 min after 10:00."""
    outcome = Engine(SHIPPED).on_event(None, cart_add(AHEAD, user=HANA), T0)
    assert outcome.wake_at == at("2026-11-22 11:00")


def test_a_login_stamped_in_2099_is_activity_now() -> None:
    """A login stamped 2099 is activity at its arrival: winback_1 comes 30 days later."""
    engine = Engine(SHIPPED)
    login = ev("user.logged_in", at("2099-01-01 00:00"), user=HANA)
    first = engine.on_event(None, login, T0)
    assert first.state is not None
    assert first.state.last_active == to_ms(T0)
    assert first.wake_at == at("2026-12-22 10:00")
    later = engine.on_due(first.state, at("2026-12-22 10:00"))
    assert [c.step for c in later.commands] == ["winback_1"]


def test_on_due_early_changes_nothing() -> None:
    """Calling on_due before anything is due returns the same state and wake time."""
    engine = Engine(SHIPPED)
    first = engine.on_event(None, cart_add(T0, user=HANA), T0)
    assert first.state is not None
    early = engine.on_due(first.state, at("2026-11-22 10:30"))
    assert early.state is first.state
    assert (early.commands, early.decisions, early.wake_at) == ((), (), first.wake_at)


def test_deletion_erases_the_state_and_cancels_everything() -> None:
    """user.deleted: nothing but a tombstone with the deletion time is left (erased a week
    later, tests/unit/journeys/test_late_events.py), every pending step `deleted`, a deleted
    contact policy."""
    engine = Engine(SHIPPED)
    state = engine.on_event(None, cart_add(T0, user=HANA), T0).state
    outcome = engine.on_event(
        state, ev("user.deleted", at("2026-11-22 10:10")), at("2026-11-22 10:10")
    )
    assert outcome.state == UserState(user_id="u-1", deleted_at=to_ms(at("2026-11-22 10:10")))
    assert outcome.wake_at == at("2026-11-29 10:10")
    assert outcome.commands == ()
    assert ("cart_abandonment", "reminder_1", "deleted") in [
        (d.journey, d.step, d.reason) for d in outcome.decisions
    ]
    assert outcome.policy is not None
    assert outcome.policy.deleted


def test_nothing_is_sent_after_deletion() -> None:
    """A deleted user with a pending cart and sign-up sequence receives nothing more."""
    played = play(
        [cart_add(T0, user=HANA), ev("user.deleted", at("2026-11-22 10:10"))],
        until=at("2027-12-31 00:00"),
    )
    assert played.commands == []


def _bounce(code: str) -> DeliveryRecord:
    return DeliveryRecord(command_id="c", idempotency_key="k", user_id="u-1", status="bounced",
                          attempt=1, at=T0, smtp_code=550, smtp_enhanced_code=code,
                          to="hana@example.jp")  # fmt: skip


@pytest.mark.parametrize(
    ("code", "suppressed"),
    [("5.1.1", True), ("5.1.2", True), ("5.1.10", True), ("5.2.2", False), ("5.7.1", False)],
)
def test_a_permanent_address_bounce_suppresses_all_mail_to_that_address(
    code: str, suppressed: bool
) -> None:
    """After a 5.1.x bounce (bad mailbox, bad domain, null MX) even transactional mail is skipped
    as `suppressed`; other failures (a full mailbox, a policy refusal) do not suppress."""
    engine = Engine(SHIPPED)
    state = engine.on_event(None, ev("user.updated", T0, user=HANA), T0).state
    state = engine.on_delivery(state, _bounce(code), T0).state
    outcome = engine.on_event(state, order(at("2026-11-22 11:00")), at("2026-11-22 11:00"))
    sent = [c.journey for c in outcome.commands]
    assert ("order_confirmation" not in sent) is suppressed
    if suppressed:
        assert ("confirmation", "suppressed") in [(d.step, d.reason) for d in outcome.decisions]


def test_a_new_address_is_not_suppressed() -> None:
    """Suppression is per address: after the user changes email, mail flows again."""
    engine = Engine(SHIPPED)
    state = engine.on_event(None, ev("user.updated", T0, user=HANA), T0).state
    state = engine.on_delivery(state, _bounce("5.1.1"), T0).state
    state = engine.on_event(
        state, ev("user.updated", T0, user={"email": "new@example.jp"}), T0
    ).state
    outcome = engine.on_event(state, order(at("2026-11-22 11:00")), at("2026-11-22 11:00"))
    assert [c.to for c in outcome.commands] == ["new@example.jp"]


@pytest.mark.parametrize(("ordered", "converts"), [("2026-11-29 10:59", True),
                                                   ("2026-11-29 11:01", False)])  # fmt: skip
def test_an_order_within_7_days_of_a_marketing_mail_is_its_conversion(
    ordered: str, converts: bool
) -> None:
    """reminder_1 at 11:00 on 22 Nov; an order up to 7 days later is a conversion of
    cart_abandonment/reminder_1 with the order's revenue, a minute later it is none."""
    played = play(
        [
            cart_add(T0, user=HANA),
            ev("cart.item_removed", at("2026-11-22 11:30"), product_id="p-1"),
            order(at(ordered), total=12000),
        ]
    )
    conversions = [d for d in played.decisions if d.outcome == "conversion"]
    expected = [("cart_abandonment", "reminder_1", 12000.0, "JPY")] if converts else []
    assert [(d.journey, d.step, d.revenue, d.currency) for d in conversions] == expected


def test_the_latest_marketing_mail_gets_the_conversion() -> None:
    """Last touch wins: an order after the review request converts that, not the thank_you."""
    played = play([order(T0, user=HANA), order(at("2026-11-27 10:00"), order_id="o-2")])
    conversions = [(d.journey, d.step) for d in played.decisions if d.outcome == "conversion"]
    assert conversions == [("post_purchase", "review_request")]


def test_delay_scale_shrinks_relative_waits_but_not_calendar_rules() -> None:
    """With NUDGE_DELAY_SCALE=0.001 reminder_1 comes 3.6 s after the cart change; the birthday
    still comes at 09:00 on the day."""
    engine = Engine(SHIPPED, delay_scale=0.001)
    profile = {**HANA, "birthday": "1990-11-23"}
    played = play([cart_add(T0, user=profile)], until=at("2026-11-23 10:00"), engine=engine)
    times = {(c.journey, c.step): c.created_at for c in played.commands}
    assert times[("cart_abandonment", "reminder_1")] == T0 + timedelta(seconds=3.6)
    assert times[("birthday", "greeting")] == at("2026-11-23 09:00")


@pytest.mark.parametrize(("last_view", "offered"), [(60, True), (100, False)])
def test_delay_scale_shrinks_the_browse_window(last_view: int, offered: bool) -> None:
    """SPEC §7: the scale multiplies every window too. At 0.001 the 24 h of three views are
    86.4 s: three views within 60 s bring the offer 1.8 s later, within 100 s nothing."""
    engine = Engine(SHIPPED, delay_scale=0.001)
    seconds = [0, last_view // 2, last_view]
    views = [
        ev("product.viewed", T0 + timedelta(seconds=s), product_id="p-5", user=HANA)
        for s in seconds
    ]
    played = play(views, until=at("2026-11-22 11:00"), engine=engine)
    expected = [T0 + timedelta(seconds=last_view + 1.8)] if offered else []
    assert [c.created_at for c in played.commands if c.journey == "browse_abandonment"] == expected


@pytest.mark.parametrize(("minutes", "converts"), [(9, True), (11, False)])
def test_delay_scale_shrinks_the_conversion_window(minutes: int, converts: bool) -> None:
    """At 0.001 the 7 days in which an order converts a mail are 604.8 s: an order 9 minutes
    after reminder_1 converts it, one 11 minutes after does not."""
    engine = Engine(SHIPPED, delay_scale=0.001)
    events = [
        cart_add(T0, user=HANA),
        ev("cart.item_removed", T0 + timedelta(seconds=10), product_id="p-1"),
        order(T0 + timedelta(minutes=minutes)),
    ]
    played = play(events, engine=engine)
    assert played.steps("cart_abandonment") == ["reminder_1"]
    conversions = [(d.journey, d.step) for d in played.decisions if d.outcome == "conversion"]
    assert conversions == ([("cart_abandonment", "reminder_1")] if converts else [])


@pytest.mark.parametrize(("first_view", "offered"), [(60, False), (100, True)])
def test_delay_scale_shrinks_the_frequency_cap_window(first_view: int, offered: bool) -> None:
    """At 0.001 the cap's 24 h are 86.4 s: after thank_you and reminder_1 at 3.6 s, a browse
    offer at 63.8 s is the third within the window (`frequency_capped`), one at 103.8 s goes."""
    engine = Engine(SHIPPED, delay_scale=0.001)
    views = [
        ev("product.viewed", T0 + timedelta(seconds=first_view + n), product_id="p-5")
        for n in range(3)
    ]
    events = [
        order(T0, user=HANA),
        cart_add(T0),
        ev("cart.item_removed", T0 + timedelta(seconds=10), product_id="p-1"),
        *views,
    ]
    played = play(events, until=at("2026-11-22 10:05"), engine=engine)
    assert played.reasons("browse_abandonment") == [
        ("offer", "sent" if offered else "frequency_capped")
    ]


def test_delay_scale_shrinks_the_once_per_product_period() -> None:
    """At 0.001 "once per product per 30 days" is once per 43.2 minutes: three more views after
    30 minutes bring nothing, after 50 minutes a second offer."""
    engine = Engine(SHIPPED, delay_scale=0.001)

    def three_views(minute: int) -> list[Event]:
        start = T0 + timedelta(minutes=minute)
        return [
            ev("product.viewed", start + timedelta(seconds=n), product_id="p-5") for n in range(3)
        ]

    events = [ev("user.updated", T0, user=HANA), *three_views(0), *three_views(30)]
    played = play([*events, *three_views(50)], until=at("2026-11-22 11:00"), engine=engine)
    offers = [c.created_at for c in played.commands if c.journey == "browse_abandonment"]
    assert offers == [T0 + timedelta(seconds=3.8), T0 + timedelta(minutes=50, seconds=3.8)]


def test_wake_at_is_the_earliest_pending_thing_in_utc() -> None:
    """After a cart change at 10:00 JST the next wake-up is 11:00 JST (02:00 UTC)."""
    outcome = Engine(SHIPPED).on_event(None, cart_add(T0, user=HANA), T0)
    assert outcome.wake_at == datetime.fromisoformat("2026-11-22T02:00:00+00:00")
    assert outcome.state is not None
    assert outcome.wake_at == from_ms(min(r.due for r in outcome.state.runs))
