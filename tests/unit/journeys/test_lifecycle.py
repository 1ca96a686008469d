"""onboarding, winback, birthday, anniversary and seasonal (SPEC §8), in several time zones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from journeys.kit import (
    BERLIN,
    HANA,
    NEW_YORK,
    SHIPPED,
    TOKYO,
    at,
    cart_add,
    ev,
    order,
    play,
    signup,
)
from nudge.events import Event
from nudge.journeys import Engine, parse_journeys

T0 = at("2026-11-22 10:00")


def login(when: str, **kw: Any) -> Event:
    return ev("user.logged_in", at(when), **kw)


def test_onboarding_guides_after_a_day_and_tips_after_three() -> None:
    """Sign-up at 10:00: guide the next day at 10:00, tips three days after sign-up."""
    played = play([signup(T0)], until=at("2026-11-30 00:00"))
    assert played.mails("onboarding") == [
        ("onboarding", "guide", "2026-11-23 10:00"),
        ("onboarding", "tips", "2026-11-25 10:00"),
    ]


def test_unsubscribing_ends_onboarding() -> None:
    """An unsubscribe after sign-up cancels the pending tips; the reason is `unsubscribed`."""
    played = play(
        [signup(T0), ev("user.unsubscribed", at("2026-11-24 10:00"), scope="marketing")],
        until=at("2026-11-30 00:00"),
    )
    assert played.steps("onboarding") == ["guide"]
    assert ("tips", "unsubscribed") in played.reasons("onboarding")


def test_winback_after_30_and_180_days_without_activity() -> None:
    """Last activity on 22 Nov: winback_1 (10 % off) 30 days later, winback_2 after 180."""
    played = play([login("2026-11-22 10:00", user=HANA)], until=at("2027-06-01 00:00"))
    assert played.mails("winback") == [
        ("winback", "winback_1", "2026-12-22 10:00"),
        ("winback", "winback_2", "2027-05-21 10:00"),
    ]
    first = next(c for c in played.commands if c.step == "winback_1")
    assert first.variables["discount_percent"] == 10


# SPEC §8 names the activity: login, view, cart, order (and checkout, a cart change too).
ACTIVITY: dict[str, Callable[[str], Event]] = {
    "login": lambda when: login(when),
    "view": lambda when: ev("product.viewed", at(when), product_id="p-3"),
    "cart add": lambda when: cart_add(at(when)),
    "cart removal": lambda when: ev("cart.item_removed", at(when), product_id="p-3"),
    "checkout": lambda when: ev("checkout.started", at(when)),
    "order": lambda when: order(at(when)),
}


@pytest.mark.parametrize("activity", ACTIVITY.values(), ids=ACTIVITY.keys())
def test_any_activity_restarts_the_winback_clock(activity: Callable[[str], Event]) -> None:
    """Any activity on day 20 moves winback_1 to day 50."""
    played = play(
        [login("2026-11-22 10:00", user=HANA), activity("2026-12-12 10:00")],
        until=at("2027-01-20 00:00"),
    )
    assert played.mails("winback") == [("winback", "winback_1", "2027-01-11 10:00")]


def test_events_that_are_not_activity_do_not_restart_winback() -> None:
    """An email.opened is not activity: winback_1 still comes 30 days after the login."""
    played = play(
        [login("2026-11-22 10:00", user=HANA), ev("email.opened", at("2026-12-01 10:00"))],
        until=at("2026-12-23 00:00"),
    )
    assert played.mails("winback") == [("winback", "winback_1", "2026-12-22 10:00")]


@pytest.mark.parametrize(
    ("tz", "birthday", "expected"),
    [
        (TOKYO, "1990-12-01", ["2026-12-01 09:00", "2027-12-01 09:00"]),
        (NEW_YORK, "1990-12-01", ["2026-12-01 09:00", "2027-12-01 09:00"]),
        (BERLIN, "1990-03-29", ["2027-03-29 09:00"]),  # the day after the DST change
        (NEW_YORK, "1992-02-29", ["2027-02-28 09:00"]),  # leap day in a common year
    ],
)
def test_birthday_greeting_at_nine_local_once_a_year(
    tz: ZoneInfo, birthday: str, expected: list[str]
) -> None:
    """The greeting goes at 09:00 in the user's own zone on the day, once each year."""
    profile = {**HANA, "timezone": tz.key, "birthday": birthday}
    played = play(
        [ev("user.updated", at("2026-11-22 10:00", tz), user=profile)],
        until=at("2027-12-31 00:00", tz),
    )
    sent = [c.created_at for c in played.commands if c.journey == "birthday"]
    assert [s.strftime("%Y-%m-%d %H:%M") for s in sent] == expected
    assert all(s.utcoffset() == s.astimezone(tz).utcoffset() for s in sent)


def test_anniversary_one_year_after_sign_up_at_nine() -> None:
    """Signed up 22 Nov 2026: greeting on 22 Nov 2027 at 09:00 with years = 1."""
    played = play([signup(T0)], until=at("2027-11-23 00:00"))
    (command,) = [c for c in played.commands if c.journey == "anniversary"]
    assert command.created_at == at("2027-11-22 09:00")
    assert command.variables["years"] == 1


def test_seasonal_sends_pre_sale_launch_and_last_call_at_ten_local() -> None:
    """Active user: pre_sale 2 days before the start, launch on the first day, last_call on the
    last, each at 10:00 local."""
    played = play([login("2026-12-01 12:00", user=HANA)], until=at("2027-01-01 00:00"))
    year_end = [c for c in played.commands if c.variables.get("campaign") == "year_end_2026"]
    assert [(c.step, c.created_at) for c in year_end] == [
        ("pre_sale", at("2026-12-24 10:00")),
        ("launch", at("2026-12-26 10:00")),
        ("last_call", at("2026-12-31 10:00")),
    ]
    assert year_end[-1].variables["starts_on"] == "2026-12-26"


def test_seasonal_skips_users_inactive_for_90_days() -> None:
    """Last active in August: not in the audience of the December campaign."""
    played = play([login("2026-08-01 12:00", user=HANA)], until=at("2027-01-01 00:00"))
    assert played.steps("seasonal") == []


def test_seasonal_needs_consent() -> None:
    """A user without marketing consent gets a `no_consent` decision, not a mail."""
    played = play(
        [login("2026-12-01 12:00", user={**HANA, "marketing_consent": False})],
        until=at("2026-12-25 00:00"),
    )
    assert played.steps("seasonal") == []
    assert ("pre_sale", "no_consent") in played.reasons("seasonal")


def test_seasonal_in_new_york_time() -> None:
    """A New York user gets the campaign at 10:00 New York time."""
    profile = {**HANA, "timezone": "America/New_York"}
    played = play(
        [ev("user.logged_in", at("2026-12-01 12:00", NEW_YORK), user=profile)],
        until=at("2026-12-25 00:00", NEW_YORK),
    )
    (command,) = [c for c in played.commands if c.journey == "seasonal"]
    assert command.created_at == at("2026-12-24 10:00", NEW_YORK)


def test_seasonal_sends_both_campaigns_due_at_the_same_moment() -> None:
    """Shipped file: year_end_2026's last_call and new_year_2027's pre_sale (2 days before
    02 Jan) are both due 31 Dec 10:00; each is decided, and the cap lets both go."""
    played = play([login("2026-12-20 12:00", user=HANA)], until=at("2026-12-31 10:01"))
    on_the_31st = [
        (d.step, d.reason, d.at)
        for d in played.decisions
        if d.journey == "seasonal" and d.at >= at("2026-12-31 00:00")
    ]
    assert on_the_31st == [
        ("pre_sale", "sent", at("2026-12-31 10:00")),
        ("last_call", "sent", at("2026-12-31 10:00")),
    ]
    campaigns = [
        (c.variables["campaign"], c.step)
        for c in played.commands
        if c.journey == "seasonal" and c.created_at == at("2026-12-31 10:00")
    ]
    assert campaigns == [("new_year_2027", "pre_sale"), ("year_end_2026", "last_call")]


ONE_DAY_CAMPAIGN = """\
version: 1
journeys:
  seasonal:
    kind: marketing
    trigger: {calendar: campaigns, active_within: 90d}
    campaigns:
      - {id: flash, title: Flash sale, starts_on: 2026-12-26, ends_on: 2026-12-26}
    steps:
      - {name: pre_sale, template: seasonal_pre_sale, wait: {from: start, days: -2, at: "10:00"}}
      - {name: launch, template: seasonal_launch, wait: {from: start, at: "10:00"}}
      - {name: last_call, template: seasonal_last_call, wait: {from: end, at: "10:00"}}
"""


def test_a_one_day_campaign_sends_launch_and_last_call() -> None:
    """starts_on == ends_on: launch and last_call are due at the same moment, and both go."""
    engine = Engine(parse_journeys(ONE_DAY_CAMPAIGN))
    played = play(
        [login("2026-12-01 12:00", user=HANA)], until=at("2026-12-27 00:00"), engine=engine
    )
    assert played.mails("seasonal") == [
        ("seasonal", "pre_sale", "2026-12-24 10:00"),
        ("seasonal", "launch", "2026-12-26 10:00"),
        ("seasonal", "last_call", "2026-12-26 10:00"),
    ]


TWO_AUDIENCES = """\
version: 1
journeys:
  members_flash:
    kind: marketing
    trigger: {calendar: campaigns, active_within: 7d}
    campaigns:
      - {id: flash, title: Members' flash sale, starts_on: 2026-12-10, ends_on: 2026-12-10}
    steps:
      - {name: launch, template: seasonal_launch, wait: {from: start, at: "10:00"}}
  big_sale:
    kind: marketing
    trigger: {calendar: campaigns, active_within: 90d}
    campaigns:
      - {id: big, title: Big sale, starts_on: 2026-12-20, ends_on: 2026-12-20}
    steps:
      - {name: launch, template: seasonal_launch, wait: {from: start, at: "10:00"}}
"""


def test_a_user_outside_the_next_campaigns_audience_still_wakes_for_a_wider_one() -> None:
    """Last active 25 Nov: outside the 7-day audience of the 10 Dec flash sale, inside the
    90-day one of the 20 Dec sale, which is sent on time (no other event wakes the user)."""
    engine = Engine(parse_journeys(TWO_AUDIENCES))
    played = play(
        [login("2026-11-25 12:00", user=HANA)], until=at("2026-12-21 00:00"), engine=engine
    )
    assert played.mails("members_flash") == []
    assert played.mails("big_sale") == [("big_sale", "launch", "2026-12-20 10:00")]


def test_seasonal_sends_due_together_still_meet_the_frequency_cap() -> None:
    """A cart reminder at 09:30 and two seasonal sends at 10:00: the cap (2 per 24 h) lets one
    seasonal send go and drops the other as `frequency_capped`, with a decision for each."""
    played = play(
        [
            login("2026-12-20 12:00", user=HANA),
            cart_add(at("2026-12-31 08:30")),
        ],
        until=at("2026-12-31 10:01"),
    )
    on_the_31st = [
        (d.step, d.reason)
        for d in played.decisions
        if d.journey in ("seasonal", "cart_abandonment") and d.at >= at("2026-12-31 09:00")
    ]
    assert on_the_31st == [
        ("reminder_1", "sent"),
        ("pre_sale", "sent"),
        ("last_call", "frequency_capped"),
    ]


@pytest.mark.parametrize("activity", ACTIVITY.values(), ids=ACTIVITY.keys())
def test_seasonal_counts_any_activity(activity: Callable[[str], Event]) -> None:
    """Any activity in October keeps a user last seen in August in the December audience."""
    played = play(
        [login("2026-08-01 12:00", user=HANA), activity("2026-10-01 12:00")],
        until=at("2026-12-25 00:00"),
    )
    assert played.steps("seasonal") == ["pre_sale"]


def test_an_opened_mail_is_not_activity_for_the_seasonal_audience() -> None:
    """An email.opened in October does not bring a user last seen in August back."""
    played = play(
        [login("2026-08-01 12:00", user=HANA), ev("email.opened", at("2026-10-01 12:00"))],
        until=at("2026-12-25 00:00"),
    )
    assert played.steps("seasonal") == []


def test_activity_right_after_a_winback_mail_withdraws_it_from_the_sender() -> None:
    """Win-back ends at any activity (a `restart` trigger): a login 10 minutes after winback_1
    was made withdraws it, so "we miss you" held back by an SMTP retry does not arrive after the
    user came back. A login a day later withdraws nothing (past the grace)."""
    engine = Engine(SHIPPED)
    state = engine.on_event(None, login("2026-11-22 10:00", user=HANA), T0).state
    assert state is not None
    due = engine.on_due(state, at("2026-12-22 10:00"))
    assert [c.step for c in due.commands] == ["winback_1"]
    assert due.state is not None
    back = engine.on_event(due.state, login("2026-12-22 10:10"), at("2026-12-22 10:10"))
    assert back.policy is not None
    assert back.policy.withdrawn == ("winback",)
    later = engine.on_event(due.state, login("2026-12-23 10:00"), at("2026-12-23 10:00"))
    assert later.policy is None


AT_ONCE = """\
version: 1
journeys:
  hello_again:
    kind: marketing
    trigger: {event: user.logged_in}
    reentry: restart
    steps:
      - {name: hello, template: winback_2, wait: {delay: 0m}}
"""


def test_a_restart_that_makes_a_new_mail_at_once_does_not_withdraw_it() -> None:
    """A restart whose first step is due at once makes its new mail in the same call as the
    withdrawal would be: that mail is not older than it, so nothing is withdrawn (the earlier
    one included)."""
    engine = Engine(parse_journeys(AT_ONCE))
    first = engine.on_event(None, login("2026-11-22 10:00", user=HANA), T0)
    assert [c.step for c in first.commands] == ["hello"]
    assert first.state is not None
    again = engine.on_event(first.state, login("2026-11-22 10:05"), at("2026-11-22 10:05"))
    assert [c.step for c in again.commands] == ["hello"]
    assert again.policy is None
