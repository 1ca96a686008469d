"""The sender's last check of SPEC §8's timing rules: no marketing mail in the quiet hours or past
its grace, however long it waited in the sender (nudge.sender.timeliness)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from nudge.journeys import parse_journeys
from nudge.sender.timeliness import MarketingWindow

from .factories import command

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
WINDOW = MarketingWindow()


def local(text: str, tz: ZoneInfo = TOKYO) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


@pytest.mark.parametrize(
    ("made", "attempt", "closed"),
    [
        ("2026-11-22 20:30", "2026-11-22 20:59:59", None),
        # a retry (or a backlog) that reaches the quiet hours: not sent at 21:00 or after
        ("2026-11-22 20:30", "2026-11-22 21:00:00", "quiet_hours"),
        ("2026-11-22 20:59", "2026-11-22 21:00:30", "quiet_hours"),
        ("2026-11-23 08:30", "2026-11-23 08:59:59", "quiet_hours"),
        ("2026-11-23 08:30", "2026-11-23 09:00:00", None),
        # the grace (1 h by default) counts from when the engine sent it
        ("2026-11-22 10:00", "2026-11-22 11:00:00", None),
        ("2026-11-22 10:00", "2026-11-22 11:00:01", "stale"),
        ("2026-11-22 10:00", "2026-11-22 18:00:00", "stale"),
    ],
)
def test_marketing_mail_goes_only_outside_the_quiet_hours_and_within_its_grace(
    made: str, attempt: str, closed: str | None
) -> None:
    """21:00–09:00 local → `quiet_hours`; more than the grace after `created_at` → `stale`."""
    marketing = command(kind="marketing", journey="cart_abandonment", created_at=local(made))
    assert WINDOW.closed(marketing, local(attempt)) == closed


@pytest.mark.parametrize("attempt", ["2026-11-22 23:30", "2026-11-25 03:00"])
def test_transactional_mail_is_never_stopped_by_the_clock(attempt: str) -> None:
    """SPEC §8: transactional mail ignores quiet hours; a late order confirmation still goes."""
    confirmation = command(created_at=local("2026-11-22 20:59"))
    assert WINDOW.closed(confirmation, local(attempt)) is None


def test_the_quiet_hours_are_the_users_as_the_engine_saw_them() -> None:
    """Read in the offset of `created_at` (the user's zone): 02:30 UTC is 21:30 in New York,
    quiet, while it is 11:30 in Tokyo."""
    now = datetime.fromisoformat("2026-11-23T02:30:00+00:00")
    in_new_york = command(kind="marketing", created_at=local("2026-11-22 21:20", NEW_YORK))
    in_tokyo = command(kind="marketing", created_at=local("2026-11-23 11:20"))
    assert WINDOW.closed(in_new_york, now) == "quiet_hours"
    assert WINDOW.closed(in_tokyo, now) is None


def test_quiet_hours_and_graces_come_from_the_journeys_file() -> None:
    """The processor's `policies.quiet_hours` and each journey's `grace`, so the two agree."""
    config = parse_journeys(
        """
version: 1
defaults: {grace: 30m}
policies:
  quiet_hours: {start: "22:00", end: "08:00"}
journeys:
  patient:
    grace: 3h
    trigger: {event: cart.item_added}
    steps: [{name: reminder_1, template: cart_reminder_1}]
  eager:
    trigger: {event: cart.item_added}
    steps: [{name: reminder_1, template: cart_reminder_1}]
"""
    )
    window = MarketingWindow.from_journeys(config)
    made = local("2026-11-22 10:00")
    late = made + timedelta(hours=2)
    assert (
        window.closed(command(kind="marketing", journey="patient", created_at=made), late) is None
    )
    assert window.closed(command(kind="marketing", journey="eager", created_at=made), late) == (
        "stale"
    )
    evening = command(kind="marketing", journey="patient", created_at=local("2026-11-22 21:30"))
    assert window.closed(evening, local("2026-11-22 21:45")) is None
    assert window.closed(evening, local("2026-11-22 22:00")) == "quiet_hours"
