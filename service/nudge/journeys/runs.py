"""Starting and ending runs: triggers and their conditions, re-entry rules, instant exits, and the
yearly calendar runs (birthday, sign-up anniversary) a profile change reschedules.

Everything an event type can do here is looked up once per type (`_by_event`, `_exits`), so an
event only touches the journeys it can affect.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from zoneinfo import ZoneInfo

from nudge.events import CART_ITEM_REMOVED, ORDER_COMPLETED, Event
from nudge.journeys.config import Journey
from nudge.journeys.draft import Draft
from nudge.journeys.firing import Firing
from nudge.journeys.localtime import from_ms
from nudge.journeys.outcome import Decision
from nudge.journeys.state import (
    FOREVER,
    MAX_MARKS_PER_JOURNEY,
    MAX_RUNS_PER_JOURNEY,
    Mark,
    Run,
    new_run,
)
from nudge.journeys.timing import Timing
from nudge.journeys.variables import capture, capture_names
from nudge.policy import WITHDRAWAL_MARGIN_MS, subject_text

_CART_CHANGES = frozenset({CART_ITEM_REMOVED, ORDER_COMPLETED})


class Runs:
    """The start/exit rules of the enabled journeys, indexed by event type."""

    def __init__(self, journeys: Mapping[str, Journey], timing: Timing, firing: Firing) -> None:
        self.timing = timing
        self.firing = firing
        by_event: dict[str, list[Journey]] = {}
        exits: dict[str, list[Journey]] = {}
        for journey in journeys.values():
            for event_type in journey.trigger.events:
                by_event.setdefault(event_type, []).append(journey)
            for exit_rule in journey.exits:
                if journey not in exits.setdefault(exit_rule.event, []):
                    exits[exit_rule.event].append(journey)
        self.by_event = {k: tuple(v) for k, v in by_event.items()}
        self.exits = {k: tuple(v) for k, v in exits.items()}
        self.cart_exits = frozenset(
            j.name for j in journeys.values() if "cart_empty" in j.exit_when
        )
        # Event types that can end a run: `exit` is not called for the others.
        self.exit_types = frozenset(self.exits) | (
            _CART_CHANGES if self.cart_exits else frozenset()
        )
        # Per event type, the journeys it ends whatever the run's subject (no `same:`), and
        # each journey's grace: for `withdrawals`.
        self.plain_exits = {
            event_type: frozenset(
                j.name for j in js if any(r.event == event_type and r.same is None for r in j.exits)
            )
            for event_type, js in self.exits.items()
        }
        # Per event type, (journey, subject) of the exits that name one (`same: product`).
        self.subject_exits = {
            event_type: tuple(
                (j.name, r.same) for j in js for r in j.exits if r.event == event_type and r.same
            )
            for event_type, js in self.exits.items()
        }
        self.grace_ms = {j.name: j.grace_ms for j in journeys.values()}
        self.longest_grace_ms = max(self.grace_ms.values(), default=0)
        self.birthday = tuple(j for j in journeys.values() if j.trigger.calendar == "birthday")
        self.signup = tuple(j for j in journeys.values() if j.trigger.calendar == "signup")
        self.captures = {
            j.name: capture_names(
                tuple(
                    sorted(
                        {s.template for s in j.steps}
                        | {t for v in j.variants for t in v.templates.values()}
                    )
                )
            )
            for j in journeys.values()
        }
        # The run's subject (product, order) for re-entry and exits that name one.
        self.subjects = {
            j.name: j.reentry.per or next((e.same for e in j.exits if e.same), None)
            for j in journeys.values()
        }
        # Scaled once: `repeat_view` windows, re-entry periods and the first step's due time.
        self.view_windows = {j.name: timing.scaled(j.trigger.within_ms) for j in journeys.values()}
        self.reentry_ms = {j.name: timing.scaled(j.reentry.for_ms) for j in journeys.values()}
        # The first step's wait when it is a plain delay (no time of day or date): its due time
        # is then the trigger's time plus this, with no call into `Timing`.
        self.first_delay = {
            j.name: timing.scaled(j.steps[0].wait.delay_ms)
            if j.steps and j.steps[0].wait.at is None and j.steps[0].wait.on is None
            else None
            for j in journeys.values()
        }

    def exit(self, draft: Draft, event: Event, now: datetime, out: list[Decision]) -> None:
        """Instant exits: a run whose exit event arrives (or whose cart empties) ends now."""
        event_type = event.type
        exiting = self.exits.get(event_type, ())
        cart_empty = not draft.cart and event_type in _CART_CHANGES
        if not exiting and not (cart_empty and self.cart_exits):
            return
        names = {j.name: j for j in exiting}
        ended = {n for n, j in names.items() if j.reentry.mode == "debounce"}
        if cart_empty:
            ended |= self.cart_exits
        if ended and draft.marks:
            # A debounced journey's sequence is over for this subject (the cart): re-arm it.
            draft.marks = tuple(m for m in draft.marks if m[0] not in ended)
        kept: list[Run] = []
        for run in draft.runs:
            journey = names.get(run.journey)
            ends = cart_empty and run.journey in self.cart_exits
            if journey is not None and not ends:
                for rule in journey.exits:
                    if rule.event == event_type and (
                        rule.same is None or subject(event, rule.same) == run.key
                    ):
                        ends = True
                        break
            if ends:
                out.append(self.firing.cancelled(draft.user_id, run, now, "exited", event.event_id))
            else:
                kept.append(run)
        draft.runs = tuple(kept)

    def withdrawals(
        self, draft: Draft, event: Event, now_ms: int, restarted: tuple[str, ...]
    ) -> tuple[tuple[str, ...], tuple[tuple[str, str, str], ...]]:
        """What of the mail this event makes moot may still wait in the sender: the journeys it
        ends or restarts, and (journey, variable, value) for an exit that names a subject.

        Call after `exit` and `trigger` (`restarted`: the `restart` journeys it started again, as
        any activity restarts win-back), before firing. A mail made within its journey's grace
        can still be unsent (an SMTP retry after a 4xx, a carrier's throttle, a backlog); the
        contact policy names these (`ContactPolicy.withdrawn`, `withdrawn_subjects`) and the
        sender drops the matching mail made until now, so a cart reminder does not arrive after
        the purchase. An exit with `same: product` withdraws only mail whose `product_id`
        variable is the event's product: the touch does not record which product its mail was
        about, the command does. The window is the grace plus `WITHDRAWAL_MARGIN_MS`, for the
        two services' clocks.
        """
        touches = draft.touches
        # Touches are kept in the order made: when the latest is past every grace, all are.
        if not touches or touches[-1].at < now_ms - self.longest_grace_ms - WITHDRAWAL_MARGIN_MS:
            return (), ()
        event_type = event.type
        ended = self.plain_exits.get(event_type, frozenset())
        if self.cart_exits and not draft.cart and event_type in _CART_CHANGES:
            ended = ended | self.cart_exits
        if restarted:
            ended = ended | frozenset(restarted)
        about = self.subject_exits.get(event_type, ())
        if not ended and not about:
            return (), ()
        recent = {
            touch.journey
            for touch in touches
            if not touch.holdout
            and touch.at >= now_ms - self.grace_ms[touch.journey] - WITHDRAWAL_MARGIN_MS
        }
        subjects: set[tuple[str, str, str]] = set()
        for journey, name in about:
            value = subject(event, name)
            if journey in recent and value:
                subjects.add((journey, f"{name}_id", value))
        return tuple(sorted(ended & recent)), tuple(sorted(subjects))

    def trigger(
        self,
        draft: Draft,
        event: Event,
        occurred: int,
        orders_before: int,
        tz: ZoneInfo,
        now: datetime,
        out: list[Decision],
    ) -> tuple[str, ...]:
        """Start the runs `event` triggers; returns the `restart` journeys it started again."""
        journeys = self.by_event.get(event.type)
        if not journeys:
            return ()
        restarted: list[str] = []
        for journey in journeys:
            trigger = journey.trigger
            when = trigger.when
            if when is not None:
                if when == "cart_not_empty" and not draft.cart:
                    continue
                if when == "first_order" and orders_before != 0:
                    continue
                if when == "repeat_view":
                    product = event.properties.get("product_id")
                    horizon = occurred - self.view_windows[journey.name]
                    count = 0
                    for p, at in draft.views:
                        if p == product and at > horizon:
                            count += 1
                    if count < trigger.views:
                        continue
            if self.start(draft, journey, event, occurred, tz, now, out) and (
                journey.reentry.mode == "restart"
            ):
                restarted.append(journey.name)
        return tuple(restarted)

    def start(
        self,
        draft: Draft,
        journey: Journey,
        event: Event,
        occurred: int,
        tz: ZoneInfo,
        now: datetime,
        out: list[Decision],
    ) -> bool:
        """Start a run of `journey` unless its re-entry rule says no; whether it started."""
        name = journey.name
        mode = journey.reentry.mode
        subject_name = self.subjects[name]
        key = subject(event, subject_name) if subject_name else ""
        runs = draft.runs
        # restart and debounce: only a trigger at least as new as the running one's replaces it.
        # An older one is a late delivery (the run already counts from a newer order, cart
        # change or activity); at equal times the later arrival wins, as always.
        if mode == "restart":
            # The common case (win-back on every activity): replace this journey's run, if any.
            kept: list[Run] = []
            for r in runs:
                if r.journey != name:
                    kept.append(r)
                elif r.started > occurred:
                    return False
            runs = tuple(kept)
        elif mode == "debounce":
            existing = [r for r in runs if r.journey == name]
            if existing and existing[0].step != 0:
                return False  # the first step went: keep this run (one sequence per cart)
            if existing and existing[0].started > occurred:
                return False  # the wait already runs from a later cart change
            if not existing and any(m == name for m, _ in draft.marks):
                return False  # this cart had its sequence already; an exit (order, empty) re-arms
            runs = tuple(r for r in runs if r.journey != name)
            if not existing:
                draft.marks = (*draft.marks, (name, FOREVER))
        elif mode in ("once", "once_per"):
            mark = name if mode == "once" else f"{name}:{key}"
            if any(
                m == mark and (until == FOREVER or until > occurred) for m, until in draft.marks
            ):
                return False
            until = FOREVER if mode == "once" else occurred + self.reentry_ms[name]
            live = [m for m in draft.marks if (m[1] == FOREVER or m[1] > occurred) and m[0] != mark]
            if mode == "once_per":
                live = _within_mark_limit(live, f"{name}:")
            draft.marks = (*live, (mark, until))
        if mode == "always" or mode == "once_per":
            # The only modes with a run per trigger (or per subject): bounded per journey.
            runs = self._within_run_limit(draft.user_id, runs, name, now, event.event_id, out)
        delay = self.first_delay[name]
        if delay is None:
            due = self.timing.step_due(journey, 0, started=occurred, previous=occurred, tz=tz)
        else:
            due = occurred + delay
        names = self.captures[name]
        # Most runs keep no trigger properties (win-back on every activity event).
        data = capture(names, event.properties) if names != () else None
        run = new_run(name, 0, due, occurred, event.event_id, key, data)
        draft.runs = (*runs, run)
        return True

    def _within_run_limit(
        self,
        user_id: str,
        runs: tuple[Run, ...],
        name: str,
        now: datetime,
        event_id: str,
        out: list[Decision],
    ) -> tuple[Run, ...]:
        """`runs` with room for one more run of journey `name`: beyond `MAX_RUNS_PER_JOURNEY`
        pending, the oldest (by trigger time) is dropped as `too_many_runs`."""
        mine = [r for r in runs if r.journey == name]
        excess = len(mine) - MAX_RUNS_PER_JOURNEY + 1
        if excess <= 0:
            return runs
        mine.sort(key=lambda r: (r.started, r.due, r.trigger_id))
        dropped = mine[:excess]
        for run in dropped:
            out.append(self.firing.cancelled(user_id, run, now, "too_many_runs", event_id))
        return tuple([r for r in runs if not any(r is d for d in dropped)])

    def calendar(self, draft: Draft, now_ms: int, tz: ZoneInfo) -> None:
        """(Re)schedule birthday and anniversary runs after the profile or sign-up changed."""
        runs = list(draft.runs)
        for journey, origin, offset in (
            *((j, _date(draft.birthday), 0) for j in self.birthday),
            *((j, _signup_date(draft.signed_up, tz), j.trigger.years) for j in self.signup),
        ):
            key = f"{origin.isoformat()}|{tz.key}" if origin is not None else ""
            current = next((r for r in runs if r.journey == journey.name), None)
            if current is not None and current.key == key:
                continue
            runs = [r for r in runs if r.journey != journey.name]
            if origin is not None:
                runs.append(
                    self.timing.yearly_run(
                        journey,
                        origin,
                        key,
                        first_year=origin.year + offset,
                        not_before=now_ms,
                        tz=tz,
                    )
                )
        draft.runs = tuple(runs)


def subject(event: Event, name: str | None) -> str:
    """The event's product or order id (at most `codec.MAX_ID_LENGTH` characters when a string);
    a number stands for its digits, and anything else for no subject (`subject_text`)."""
    return subject_text(event.properties.get(f"{name}_id"))


def _within_mark_limit(marks: list[Mark], prefix: str) -> list[Mark]:
    """`marks` with room for one more subject mark (`prefix` + id) of a `once_per` journey: beyond
    `MAX_MARKS_PER_JOURNEY`, the subjects whose re-entry period ends first are forgotten."""
    mine = [m for m in marks if m[1] != FOREVER and m[0].startswith(prefix)]
    excess = len(mine) - MAX_MARKS_PER_JOURNEY + 1
    if excess <= 0:
        return marks
    mine.sort(key=lambda m: m[1])
    forgotten = {m[0] for m in mine[:excess]}
    return [m for m in marks if m[0] not in forgotten]


def _date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _signup_date(signed_up: int | None, tz: ZoneInfo) -> date | None:
    return None if signed_up is None else from_ms(signed_up, tz).date()
