"""When steps come due: relative waits (scaled), local times of day, dates, yearly and seasonal
occurrences. Pure functions of the config, the user's zone and epoch milliseconds."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

from nudge.journeys.config import Journey, JourneysConfig
from nudge.journeys.localtime import at_local, local_date, next_local_time, next_yearly
from nudge.journeys.state import Run, new_run

MORNING = time(9, 0)
SEASONAL_CLOCK = time(10, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Slot:
    """One seasonal send: journey, campaign and step, at `due` in one time zone."""

    due: int
    journey: int
    campaign: int
    step: int


class Timing:
    """Due-time arithmetic for one config and delay scale; caches seasonal slots per zone."""

    def __init__(self, config: JourneysConfig, delay_scale: float) -> None:
        self.config = config
        self.scale = delay_scale
        self._journeys = tuple(j for j in config.journeys if j.enabled)
        self._slots: dict[str, tuple[list[int], list[Slot]]] = {}
        self._memo: tuple[ZoneInfo, int, tuple[Slot, ...]] | None = None

    def scaled(self, ms: int) -> int:
        return ms if self.scale == 1.0 else round(ms * self.scale)

    def step_due(
        self, journey: Journey, index: int, *, started: int, previous: int, tz: ZoneInfo
    ) -> int:
        """When step `index` is due, given the trigger time and the previous step's due time."""
        wait = journey.steps[index].wait
        base = started if wait.anchor == "trigger" else previous
        due = base + self.scaled(wait.delay_ms)
        if wait.on is not None:
            return max(due, at_local(wait.on, wait.at or time(0), tz))
        if wait.at is not None:
            return next_local_time(due, wait.at, tz)
        return due

    def yearly_run(
        self,
        journey: Journey,
        anniversary_of: date,
        key: str,
        *,
        first_year: int,
        not_before: int,
        tz: ZoneInfo,
    ) -> Run:
        """The next birthday / sign-up anniversary run at or after `not_before`."""
        clock = journey.steps[0].wait.at or MORNING
        due, occurrence = next_yearly(
            anniversary_of.month,
            anniversary_of.day,
            clock,
            tz,
            not_before=not_before,
            first_year=first_year,
        )
        trigger_id = f"{journey.name}:{occurrence.isoformat()}"
        return new_run(journey.name, 0, due, due, trigger_id, key, None)

    def slots(self, tz: ZoneInfo) -> tuple[list[int], list[Slot]]:
        """Every seasonal send in zone `tz`, sorted by time (computed once per zone)."""
        cached = self._slots.get(tz.key)
        if cached is not None:
            return cached
        slots: list[Slot] = []
        for j_index, journey in enumerate(self._journeys):
            if journey.trigger.calendar != "campaigns":
                continue
            for c_index, campaign in enumerate(journey.campaigns):
                for s_index, step in enumerate(journey.steps):
                    day = campaign.ends_on if step.wait.anchor == "end" else campaign.starts_on
                    day += timedelta(days=step.wait.days)
                    due = at_local(day, step.wait.at or SEASONAL_CLOCK, tz)
                    slots.append(Slot(due=due, journey=j_index, campaign=c_index, step=s_index))
        slots.sort(key=lambda s: (s.due, s.journey, s.campaign, s.step))
        result = ([s.due for s in slots], slots)
        self._slots[tz.key] = result
        return result

    def next_slots(self, tz: ZoneInfo, cursor: int) -> tuple[Slot, ...]:
        """Every seasonal send due at the first moment strictly after `cursor`, in slot order.

        All of them, not the first: two campaigns (or two steps of a one-day campaign) can be
        due at one moment, and the cursor passes that moment once.
        """
        memo = self._memo
        if memo is not None and memo[0] is tz and memo[1] == cursor:
            return memo[2]  # firing and wake-up ask the same question within one call
        times, slots = self.slots(tz)
        start = bisect_right(times, cursor)
        end = bisect_right(times, times[start], lo=start) if start < len(times) else start
        batch = tuple(slots[start:end])
        self._memo = (tz, cursor, batch)
        return batch

    def seasonal_journey(self, slot: Slot) -> Journey:
        return self._journeys[slot.journey]

    def today(self, ms: int, tz: ZoneInfo) -> date:
        return local_date(ms, tz)
