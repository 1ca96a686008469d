"""Coupon and discount validity (docs/journeys.md): a first-purchase or winback coupon is good
until 23:59 local on the `valid_days`-th day after the mail is sent, a cart discount for
`valid_for` elapsed time; both reach the template as ISO 8601 in the user's time zone."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from journeys.kit import HANA, NEW_YORK, TOKYO, at, cart_add, ev, order, play
from nudge.journeys import Engine, parse_journeys
from nudge.journeys.variables import coupon_expires_at
from nudge.settings import SHIPPED_JOURNEYS

LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def _user(zone: ZoneInfo) -> dict[str, Any]:
    return {**HANA, "timezone": zone.key}


@pytest.mark.parametrize(
    ("ordered", "zone", "sent", "expires"),
    [
        # +1 h: sent 22 Nov 11:00, good through 22 Dec.
        ("2026-11-22 10:00", TOKYO, "2026-11-22 11:00", "2026-12-22T23:59:59+09:00"),
        # Due 21:30, deferred by quiet hours to 09:00: the days count from the actual send.
        ("2026-11-22 20:30", TOKYO, "2026-11-23 09:00", "2026-12-23T23:59:59+09:00"),
        # Sent on the user's 22 Nov (already 23 Nov in Tokyo): the user's date and offset.
        ("2026-11-22 15:00", LOS_ANGELES, "2026-11-22 16:00", "2026-12-22T23:59:59-08:00"),
        # Sent in summer time (-04:00), ends in winter time: 23:59 local, with winter's offset.
        ("2026-10-31 10:00", NEW_YORK, "2026-10-31 11:00", "2026-11-30T23:59:59-05:00"),
    ],
    ids=["tokyo", "tokyo after quiet hours", "los angeles", "new york across dst"],
)
def test_a_first_purchase_coupon_is_good_until_the_end_of_the_30th_local_day(
    ordered: str, zone: ZoneInfo, sent: str, expires: str
) -> None:
    """`coupon_expires_at` is 23:59:59 local on the send date + 30 days, in the user's zone."""
    played = play([order(at(ordered, zone), user=_user(zone))], until=at("2027-01-31 00:00"))
    (command,) = [c for c in played.commands if c.journey == "first_purchase"]
    assert command.created_at.strftime("%Y-%m-%d %H:%M") == sent
    assert command.variables["coupon_expires_at"] == expires


@pytest.mark.parametrize(
    ("active", "zone", "expires"),
    [
        ("2026-11-22 10:00", TOKYO, "2027-01-21T23:59:59+09:00"),
        ("2026-02-05 10:00", NEW_YORK, "2026-04-06T23:59:59-04:00"),
    ],
    ids=["tokyo", "new york across dst"],
)
def test_a_winback_coupon_is_good_for_30_days_from_its_mail(
    active: str, zone: ZoneInfo, expires: str
) -> None:
    """winback_1 goes 30 days after the last activity; its coupon 30 days after that."""
    login = ev("user.logged_in", at(active, zone), user=_user(zone))
    played = play([login], until=at("2027-12-31 00:00"))
    (command,) = [c for c in played.commands if c.step == "winback_1"]
    assert command.variables["coupon_expires_at"] == expires


def test_valid_days_from_the_journeys_file_is_used() -> None:
    """`valid_days: 7` on the thank_you step: good through the 7th day after sending."""
    text = SHIPPED_JOURNEYS.read_text(encoding="utf-8")
    line = "          valid_days: 30\n"  # first_purchase's params, one per line
    assert text.count(line) == 1
    engine = Engine(parse_journeys(text.replace(line, "          valid_days: 7\n")))
    played = play([order(at("2026-11-22 10:00"), user=HANA)], until=at("2026-12-31"), engine=engine)
    (command,) = [c for c in played.commands if c.journey == "first_purchase"]
    assert command.variables["coupon_expires_at"] == "2026-11-29T23:59:59+09:00"


@pytest.mark.parametrize(
    ("added", "zone", "expires"),
    [
        # reminder_2 on 23 Nov 10:00 + 48 h.
        ("2026-11-22 09:00", TOKYO, "2026-11-25T10:00:00+09:00"),
        # reminder_2 on 7 Mar 10:00 EST; the clocks go forward on 8 Mar: 48 h later is 11:00 EDT.
        ("2026-03-06 09:00", NEW_YORK, "2026-03-09T11:00:00-04:00"),
    ],
    ids=["tokyo", "new york across dst"],
)
def test_the_cart_discount_is_good_for_48_elapsed_hours(
    added: str, zone: ZoneInfo, expires: str
) -> None:
    """`discount_expires_at` is reminder_2's send time + `valid_for` (48 h), in the user's zone."""
    played = play([cart_add(at(added, zone), user=_user(zone))], until=at("2026-12-31 00:00"))
    (command,) = [c for c in played.commands if c.step == "reminder_2"]
    assert command.variables["discount_expires_at"] == expires


@pytest.mark.parametrize(
    ("now", "days", "expires"),
    [
        ("2026-11-22T00:00:00", 30, "2026-12-22T23:59:59+09:00"),
        ("2026-11-22T23:59:59", 1, "2026-11-23T23:59:59+09:00"),
        ("2026-12-31T12:00:00", 1, "2027-01-01T23:59:59+09:00"),
        ("2028-01-30T12:00:00", 30, "2028-02-29T23:59:59+09:00"),
    ],
)
def test_coupon_expires_at_counts_local_calendar_days(now: str, days: int, expires: str) -> None:
    """Midnight or a second before it, year end, a leap day: whole local days, ending 23:59:59."""
    sent = datetime.fromisoformat(now).replace(tzinfo=TOKYO)
    assert coupon_expires_at(sent, days) == expires
