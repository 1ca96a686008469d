"""Firing what is due: each pending step goes through the policies and becomes a command, a
deferral or a skip with its reason; the run then advances, reschedules (yearly) or ends.

Seasonal sends are not stored per user until they are due: a cursor in the state says which
campaign slots were handled, and a due slot becomes an ordinary run for its one step.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from nudge.commands import SendCommand
from nudge.journeys.config import Journey, JourneysConfig, Policies
from nudge.journeys.draft import Draft
from nudge.journeys.ids import assign, command_id, idempotency_key
from nudge.journeys.localtime import from_ms
from nudge.journeys.outcome import Decision, DecisionOutcome, new_command, new_decision
from nudge.journeys.policies import gate, remember_send
from nudge.journeys.state import MAX_TOUCHES, Run, UserState, new_run, new_touch
from nudge.journeys.timing import Slot, Timing
from nudge.journeys.variables import SendContext, build

MAX_FIRINGS: Final = 256  # per call; a guard against a config that would loop forever
_PLAIN: Final = (None, False)  # no variant, not held out


class Firing:
    def __init__(
        self,
        config: JourneysConfig,
        journeys: Mapping[str, Journey],
        timing: Timing,
        policies: Policies,
    ) -> None:
        self.config = config
        self.journeys = journeys
        self.timing = timing
        self.policies = policies
        self._has_seasonal = any(j.trigger.calendar == "campaigns" for j in journeys.values())
        # The widest audience window of any campaign journey: no send later than last activity
        # plus this can have the user in its audience, so the wake-up search stops there.
        self._widest_audience = max(
            (
                j.trigger.active_within_ms
                for j in journeys.values()
                if j.trigger.calendar == "campaigns"
            ),
            default=0,
        )
        # Journeys with variants or a holdout: only those need the A/B hash per step fired.
        self._experiments = {j.name: bool(j.variants) or j.holdout > 0 for j in journeys.values()}
        self._campaigns = {
            (j.name, c.id): c
            for j in journeys.values()
            if j.trigger.calendar == "campaigns"
            for c in reversed(j.campaigns)  # reversed: the first of a repeated id wins, as before
        }
        # The last send time made a datetime: many users fire at the same instant (a seasonal
        # send at 10:00 local, the end of quiet hours), and datetimes are immutable.
        self._local: tuple[int, ZoneInfo, datetime] | None = None

    def next_due(self, state: UserState | Draft, tz: ZoneInfo) -> int | None:
        """The earliest due time of a run or a seasonal send; `tz` is the state's zone."""
        due: int | None = None
        for run in state.runs:
            if due is None or run.due < due:
                due = run.due
        seasonal = self._next_seasonal(state, tz)
        if seasonal is not None and (due is None or seasonal < due):
            return seasonal
        return due

    def fire(self, draft: Draft, now: int, out: list[Decision], tz: ZoneInfo) -> list[SendCommand]:
        """Send or settle everything due at or before `now`, in due-time order."""
        commands: list[SendCommand] = []
        if self._has_seasonal:
            self._materialize_seasonal(draft, now, tz)
        for run in draft.runs:
            if run.due <= now:
                break
        else:
            return commands  # the common case: an event with nothing due
        for _ in range(MAX_FIRINGS):
            due_runs = [r for r in draft.runs if r.due <= now]
            if not due_runs:
                break
            run = due_runs[0] if len(due_runs) == 1 else min(due_runs, key=_firing_order)
            self._fire_run(draft, run, now, out, commands, tz)
        return commands

    def cancelled(
        self, user_id: str, run: Run, now: datetime, reason: str, event_id: str | None
    ) -> Decision:
        journey = self.journeys.get(run.journey)
        step = journey.steps[run.step] if journey and run.step < len(journey.steps) else None
        return new_decision(
            user_id,
            now,
            "skipped",
            reason,
            journey=run.journey,
            step=step.name if step else None,
            kind=step.kind if step else None,
            trigger_event_id=_event_id(journey, run),
            event_id=event_id,
        )

    # -- seasonal --------------------------------------------------------------------------
    def _next_seasonal(self, state: UserState | Draft, tz: ZoneInfo) -> int | None:
        if not self._has_seasonal or state.last_active is None:
            return None
        last_active = state.last_active
        # The first send after the cursor the user is in the audience of: not always the next
        # one, since a journey with a wider window may have the user in a later send's audience
        # (the cursor moves when that one is due).
        times, slots = self.timing.slots(tz)
        for index in range(bisect_right(times, state.seasonal_cursor), len(slots)):
            slot = slots[index]
            if slot.due - last_active > self._widest_audience:
                return None  # in no audience from here on; activity recomputes the wake-up
            if self._in_audience(slot, last_active):
                return slot.due
        return None

    def _in_audience(self, slot: Slot, last_active: int) -> bool:
        """Only users active within the campaign journey's window are its audience."""
        window = self.timing.seasonal_journey(slot).trigger.active_within_ms
        return slot.due - last_active <= window

    def _materialize_seasonal(self, draft: Draft, now: int, tz: ZoneInfo) -> None:
        while True:
            batch = self.timing.next_slots(tz, draft.seasonal_cursor)
            if not batch or batch[0].due > now:
                return
            # The cursor passes a moment once, so every slot due at it becomes a run now.
            draft.seasonal_cursor = batch[0].due
            active = draft.last_active
            for slot in batch:
                if active is None or not self._in_audience(slot, active):
                    continue
                journey = self.timing.seasonal_journey(slot)
                campaign = journey.campaigns[slot.campaign]
                trigger_id = f"{journey.name}:{campaign.id}"
                name = journey.name
                run = new_run(name, slot.step, slot.due, slot.due, trigger_id, campaign.id, None)
                draft.runs = (*draft.runs, run)

    # -- one step --------------------------------------------------------------------------
    def _fire_run(
        self,
        draft: Draft,
        run: Run,
        now: int,
        out: list[Decision],
        commands: list[SendCommand],
        tz: ZoneInfo,
    ) -> None:
        journey = self.journeys.get(run.journey)
        runs = draft.runs
        others = () if len(runs) == 1 else tuple([r for r in runs if r is not run])
        if journey is None or run.step >= len(journey.steps):
            draft.runs = others  # the journey left the config: drop its runs quietly
            return
        step = journey.steps[run.step]
        user_id = draft.user_id
        variant, holdout = assign(journey, user_id) if self._experiments[journey.name] else _PLAIN
        template, params = step.template, step.params
        if variant is not None:
            chosen = next(v for v in journey.variants if v.name == variant)
            template = chosen.templates.get(step.name, template)
            params = {**params, **chosen.params.get(step.name, {})}
        local = self._local
        if local is not None and local[0] == now and local[1] is tz:
            at = local[2]
        else:
            at = from_ms(now, tz)
            self._local = (now, tz, at)
        verdict = gate(
            step.kind,
            run.due,
            now,
            journey.grace_ms,
            draft.email,
            draft.suppressed,
            draft.consent,
            draft.unsubscribed,
            draft.sent,
            holdout,
            tz,
            self.policies,
            at,
        )
        key = idempotency_key(user_id, journey.name, step.name, run.trigger_id)
        cid = command_id(key)
        until = None
        if verdict.verdict == "defer":
            assert verdict.until is not None  # noqa: S101 (gate sets it for every deferral)
            until = verdict.until
        outcome: DecisionOutcome = (
            "sent"
            if verdict.verdict == "send"
            else ("deferred" if until is not None else "skipped")
        )
        out.append(
            new_decision(
                user_id,
                at,
                outcome,
                verdict.reason,
                journey=journey.name,
                step=step.name,
                kind=step.kind,
                variant=variant,
                command_id=cid,
                idempotency_key=key,
                trigger_event_id=_event_id(journey, run),
                until=from_ms(until, tz) if until is not None else None,
                holdout=holdout,
            )
        )
        if until is not None:
            draft.runs = (*others, _moved(run, step=run.step, due=until))
            return
        if outcome == "sent":
            commands.append(
                self._command(
                    draft, journey, run, step.name, template, params, key, cid, at, variant
                )
            )
        if step.kind == "marketing" and (verdict.verdict == "send" or verdict.reason == "holdout"):
            if verdict.verdict == "send":
                draft.sent = remember_send(draft.sent, now, self.policies)
            touch = new_touch(journey.name, step.name, variant, now, holdout)
            draft.touches = (*draft.touches, touch)[-MAX_TOUCHES:]
        draft.runs = (*others, *self._advance(draft, journey, run, tz))

    def _advance(self, draft: Draft, journey: Journey, run: Run, tz: ZoneInfo) -> tuple[Run, ...]:
        calendar = journey.trigger.calendar
        if calendar == "campaigns":
            return ()
        if calendar is not None:
            # Yearly: the same day next year (the key still names the origin date and zone).
            origin_text = run.key.split("|", 1)[0]
            origin = date.fromisoformat(origin_text)
            offset = journey.trigger.years if calendar == "signup" else 0
            return (
                self.timing.yearly_run(
                    journey,
                    origin,
                    run.key,
                    first_year=origin.year + offset,
                    not_before=run.due + 1,
                    tz=tz,
                ),
            )
        following = run.step + 1
        if following >= len(journey.steps):
            return ()
        due = self.timing.step_due(journey, following, started=run.started, previous=run.due, tz=tz)
        return (_moved(run, step=following, due=due),)

    def _command(
        self,
        draft: Draft,
        journey: Journey,
        run: Run,
        step: str,
        template: str,
        params: Mapping[str, Any],
        key: str,
        cid: str,
        at: datetime,
        variant: str | None,
    ) -> SendCommand:
        campaign = self._campaigns.get((journey.name, run.key))
        variables = build(
            SendContext(
                state=draft,
                run=run,
                template=template,
                params=params,
                key=key,
                now=at,
                currency=self.config.currency,
                delay_scale=self.timing.scale,
                campaign=campaign,
            )
        )
        return new_command(
            command_id=cid,
            idempotency_key=key,
            user_id=draft.user_id,
            journey=journey.name,
            step=step,
            kind=journey.steps[run.step].kind,
            template=template,
            locale=draft.locale or self.config.default_locale,
            to=draft.email or "",
            created_at=at,
            variables=variables,
            variant=variant,
            trigger_event_id=_event_id(journey, run),
        )


def _moved(run: Run, *, step: int, due: int) -> Run:
    """`replace(run, step=..., due=...)`, spelled out: replace() is slow on the firing path."""
    return new_run(run.journey, step, due, run.started, run.trigger_id, run.key, run.data)


def _firing_order(run: Run) -> tuple[int, str, str, str]:
    return (run.due, run.journey, run.key, run.trigger_id)


def _event_id(journey: Journey | None, run: Run) -> str | None:
    """The triggering event's id; calendar runs have an occurrence instead, not an event."""
    if journey is None or journey.trigger.calendar is not None:
        return None
    return run.trigger_id
