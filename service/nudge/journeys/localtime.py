"""Wall-clock arithmetic in the user's time zone, DST-safe (zoneinfo), on epoch milliseconds.

Calendar rules — quiet hours, "09:00 on the birthday", "10:00 on the first campaign day" — are
computed by building the local wall-clock time and converting it, never by adding 24 h, so that
a daylight-saving change moves the instant and not the wall-clock time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(moment: datetime) -> int:
    """Integer milliseconds since the epoch (`moment` must be timezone-aware).

    Float seconds are exact enough: a double holds today's epoch milliseconds with ~0.2 µs to
    spare, and rounding makes sub-millisecond times deterministic.
    """
    return round(moment.timestamp() * 1000)


def from_ms(ms: int, zone: ZoneInfo | None = None) -> datetime:
    seconds, millis = divmod(ms, 1000)
    if zone is not None and not millis:
        # The same datetime as the UTC time's `astimezone(zone)` below (both are
        # `zone.fromutc` of the same instant, fold included; tests pin it across DST changes),
        # at a third of the cost: every decision's time is made here.
        return datetime.fromtimestamp(seconds, zone)
    moment = datetime.fromtimestamp(seconds, UTC)
    if millis:
        moment += timedelta(milliseconds=millis)
    return moment.astimezone(zone) if zone is not None else moment


@lru_cache(maxsize=1024)
def zone(name: str | None, default: str) -> ZoneInfo:
    """The user's zone, or the configured default when unknown or not an IANA name."""
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(default)


def at_local(day: date, clock: time, tz: ZoneInfo) -> int:
    """The instant the wall clock in `tz` shows `clock` on `day` (first one, at a DST fold)."""
    return to_ms(datetime.combine(day, clock, tzinfo=tz))


def local_date(ms: int, tz: ZoneInfo) -> date:
    return from_ms(ms, tz).date()


def next_local_time(ms: int, clock: time, tz: ZoneInfo) -> int:
    """The earliest instant at or after `ms` whose local time of day is `clock`."""
    day = local_date(ms, tz)
    candidate = at_local(day, clock, tz)
    if candidate < ms:
        candidate = at_local(day + timedelta(days=1), clock, tz)
    return candidate


def in_quiet_hours(ms: int, start: time, end: time, tz: ZoneInfo) -> bool:
    """True between `start` and `end` local time (a window that may wrap midnight)."""
    return is_quiet(from_ms(ms, tz).time(), start, end)


def is_quiet(clock: time, start: time, end: time) -> bool:
    """`in_quiet_hours` for a local time of day at hand (the firing path has it already)."""
    if start > end:
        return clock >= start or clock < end
    return start <= clock < end


def quiet_hours_end(ms: int, end: time, tz: ZoneInfo) -> int:
    """When the quiet hours that contain `ms` end: the next local `end` (e.g. 09:00)."""
    return next_local_time(ms, end, tz)


def yearly_date(year: int, month: int, day: int) -> date:
    """`month`/`day` in `year`; 29 February falls on 28 February in a common year."""
    if month == 2 and day == 29:
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28)
    return date(year, month, day)


def next_yearly(
    month: int, day: int, clock: time, tz: ZoneInfo, *, not_before: int, first_year: int
) -> tuple[int, date]:
    """The next yearly occurrence of month/day at `clock` local, at or after `not_before`."""
    year = max(first_year, local_date(not_before, tz).year)
    while True:
        when = yearly_date(year, month, day)
        ms = at_local(when, clock, tz)
        if ms >= not_before:
            return ms, when
        year += 1
