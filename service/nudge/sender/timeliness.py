"""When a marketing mail may still go: quiet hours and the grace, checked again by the sender
right before each attempt (pure).

SPEC §8: marketing mail is never sent between 21:00 and 09:00 in the user's time zone, and a
marketing step more than its grace (default 1 h) late is skipped as `stale`, "not sent in a
burst". The engine applies both when a step comes due. The command then waits in the sender —
for an SMTP retry after a 4xx (30 s to 40 min apart), for a carrier's throttle, behind a backlog
after a sender outage — and could otherwise reach the user at 21:05 or at 03:00, or hours late
in a burst. So right before each attempt a marketing command is stopped when
- more than its journey's grace has passed since its `created_at` (when the engine sent it) →
  `stale`;
- it is within the quiet hours now, read in the offset of its `created_at` (the user's zone
  when the engine sent it, docs/dev/contracts.md) → `quiet_hours`. Not deferred to their end:
  the quiet hours last twelve hours, so the mail would be far past its grace by then.
Both rules come from the journeys file the processor reads (`NUDGE_JOURNEYS`: `policies.
quiet_hours`, each journey's `grace`), so the two agree. Transactional mail is never stopped here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from nudge.commands import SendCommand
from nudge.journeys.config import JourneysConfig, Policies
from nudge.journeys.localtime import is_quiet

_DEFAULTS = Policies()
# A journey's grace when the journeys file does not say (nudge.journeys.config.Journey).
DEFAULT_GRACE: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketingWindow:
    """The quiet hours and each journey's grace; `closed` says whether a marketing mail may go."""

    quiet_start: time = _DEFAULTS.quiet_start
    quiet_end: time = _DEFAULTS.quiet_end
    grace: Mapping[str, timedelta] = field(default_factory=dict)
    default_grace: timedelta = DEFAULT_GRACE

    @classmethod
    def from_journeys(cls, config: JourneysConfig) -> MarketingWindow:
        return cls(
            quiet_start=config.policies.quiet_start,
            quiet_end=config.policies.quiet_end,
            grace={j.name: timedelta(milliseconds=j.grace_ms) for j in config.journeys},
        )

    @property
    def longest_grace(self) -> timedelta:
        """How late any marketing mail may still go: how long a withdrawal must be kept."""
        return max((*self.grace.values(), self.default_grace))

    def closed(self, command: SendCommand, now: datetime) -> str | None:
        """Why `command` must not be sent at `now` (`stale`, `quiet_hours`), or None."""
        if command.kind != "marketing":
            return None
        made = command.created_at
        if now - made > self.grace.get(command.journey, self.default_grace):
            return "stale"
        if is_quiet(now.astimezone(made.tzinfo).time(), self.quiet_start, self.quiet_end):
            return "quiet_hours"
        return None
