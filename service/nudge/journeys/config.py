"""The journeys model: what a journeys file declares, as frozen values (loading is `loader.py`).

A journey is a trigger, a list of steps each with a wait and a template, the events that end it,
a re-entry rule, optional A/B variants and a holdout share. Durations are milliseconds; calendar
values (times of day, dates) stay in local wall-clock terms and are resolved per user time zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any, Final, Literal

from nudge.catalog import shipped_templates
from nudge.commands import Kind

Calendar = Literal["birthday", "signup", "campaigns"]
Condition = Literal["cart_not_empty", "first_order", "repeat_view"]
ReentryMode = Literal["always", "restart", "debounce", "once", "once_per"]
Anchor = Literal["previous", "trigger", "start", "end"]

CONDITIONS: Final = frozenset({"cart_not_empty", "first_order", "repeat_view"})
CALENDARS: Final = frozenset({"birthday", "signup", "campaigns"})
REENTRY_MODES: Final = frozenset({"always", "restart", "debounce", "once", "once_per"})
EXIT_CONDITIONS: Final = frozenset({"cart_empty"})

# Templates the sender ships (nudge/templates/, docs/dev/contracts.md); a journeys file may
# declare more.
BUILTIN_TEMPLATES: Final = shipped_templates()


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    """When a step comes due.

    Relative part: `delay_ms` after the anchor — the previous step (or the trigger, for the first
    step) when `anchor` is `previous`, the trigger when `trigger`; seasonal steps anchor on the
    campaign's `start` or `end` day shifted by `days`. Calendar part: `at` moves the time to the
    next wall-clock time of day in the user's zone; `on` fixes a date. Only the relative part is
    multiplied by `NUDGE_DELAY_SCALE`.
    """

    delay_ms: int = 0
    anchor: Anchor = "previous"
    at: time | None = None
    on: date | None = None
    days: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    name: str
    template: str
    kind: Kind
    wait: Wait = field(default_factory=Wait)
    params: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Trigger:
    """What starts a journey: events (optionally with a condition) or a calendar rule."""

    events: tuple[str, ...] = ()
    when: Condition | None = None
    views: int = 3
    within_ms: int = 86_400_000
    calendar: Calendar | None = None
    years: int = 1
    active_within_ms: int = 90 * 86_400_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Reentry:
    """What a new trigger does while (or after) the journey ran for this user."""

    mode: ReentryMode = "always"
    per: str | None = None
    for_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Exit:
    """An event that ends a pending run; `same` narrows it to the run's subject (a product)."""

    event: str
    same: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    name: str
    weight: float
    templates: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Campaign:
    id: str
    title: str
    starts_on: date
    ends_on: date


@dataclass(frozen=True, slots=True, kw_only=True)
class Journey:
    name: str
    kind: Kind
    trigger: Trigger
    steps: tuple[Step, ...]
    reentry: Reentry = field(default_factory=Reentry)
    exits: tuple[Exit, ...] = ()
    exit_when: tuple[str, ...] = ()
    variants: tuple[Variant, ...] = ()
    holdout: float = 0.0
    grace_ms: int = 3_600_000
    campaigns: tuple[Campaign, ...] = ()
    enabled: bool = True
    line: int = 0

    def step_index(self, name: str) -> int:
        for index, step in enumerate(self.steps):
            if step.name == name:
                return index
        raise KeyError(name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policies:
    """Cross-journey rules (SPEC §8); the engine applies them in one place (`policies.py`)."""

    quiet_start: time = time(21, 0)
    quiet_end: time = time(9, 0)
    cap_max: int = 2
    cap_window_ms: int = 86_400_000
    attribution_window_ms: int = 7 * 86_400_000
    remember_events: int = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class JourneysConfig:
    journeys: tuple[Journey, ...]
    policies: Policies = field(default_factory=Policies)
    default_locale: str = "ja"
    default_timezone: str = "Asia/Tokyo"
    currency: str = "JPY"
    templates: frozenset[str] = BUILTIN_TEMPLATES
    source: str = "<memory>"

    def journey(self, name: str) -> Journey:
        for journey in self.journeys:
            if journey.name == name:
                return journey
        raise KeyError(name)
