"""The journey engine: pure functions of (state, input, now) → Outcome (docs/dev/contracts.md).

    on_event(state | None, event, now)      a behaviour event for this user
    on_due(state, now)                      the user's wake_at has passed (early or late is safe)
    on_delivery(state | None, record, now)  a delivery record for this user

No clock is read and no I/O happens here: the processor passes wall-clock `now`, the simulator
passes event time, and both get the same decisions. Per event the order is: de-duplicate, erase
on deletion, merge the profile, update facts (cart, views, orders, activity, unsubscribe), attribute
conversions, exit runs (instant exits), start runs (triggers and re-entry), schedule calendar runs,
then fire everything due at `now`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from typing import Any, Final

from nudge.commands import DeliveryRecord
from nudge.events import (
    CART_ITEM_ADDED,
    CART_ITEM_REMOVED,
    KNOWN_TYPES,
    ORDER_COMPLETED,
    PRODUCT_VIEWED,
    UNSUBSCRIBE_SCOPES,
    USER_DELETED,
    USER_SIGNED_UP,
    USER_UNSUBSCRIBED,
    Event,
)
from nudge.journeys.config import Journey, JourneysConfig
from nudge.journeys.draft import Draft
from nudge.journeys.facts import (
    ACTIVITY,
    add_to_cart,
    attribute,
    expire,
    merge_profile,
    recent_touches,
    record_view,
)
from nudge.journeys.firing import Firing
from nudge.journeys.ids import event_digest
from nudge.journeys.localtime import from_ms, to_ms, zone
from nudge.journeys.outcome import Decision, Outcome
from nudge.journeys.state import (
    EVENT_DIGEST_BYTES,
    FOREVER,
    Run,
    UserState,
)
from nudge.journeys.timing import Timing
from nudge.journeys.variables import capture, capture_names
from nudge.policy import ContactPolicy

MAX_SUPPRESSED: Final = 4


class Engine:
    """Decides, for one user at a time, what to send and when (pure; see module docstring)."""

    def __init__(self, config: JourneysConfig, *, delay_scale: float = 1.0) -> None:
        if not delay_scale > 0:
            raise ValueError("delay_scale must be greater than 0")
        self.config = config
        self.timing = Timing(config, delay_scale)
        self.policies = replace(
            config.policies,
            cap_window_ms=self.timing.scaled(config.policies.cap_window_ms),
            attribution_window_ms=self.timing.scaled(config.policies.attribution_window_ms),
        )
        self.journeys: dict[str, Journey] = {j.name: j for j in config.journeys if j.enabled}
        by_event: dict[str, list[Journey]] = {}
        exits: dict[str, list[Journey]] = {}
        for journey in self.journeys.values():
            for event_type in journey.trigger.events:
                by_event.setdefault(event_type, []).append(journey)
            for exit_rule in journey.exits:
                if journey not in exits.setdefault(exit_rule.event, []):
                    exits[exit_rule.event].append(journey)
        self._by_event = {k: tuple(v) for k, v in by_event.items()}
        self._exits = {k: tuple(v) for k, v in exits.items()}
        self._cart_exits = frozenset(
            j.name for j in self.journeys.values() if "cart_empty" in j.exit_when
        )
        self._birthday = tuple(
            j for j in self.journeys.values() if j.trigger.calendar == "birthday"
        )
        self._signup = tuple(j for j in self.journeys.values() if j.trigger.calendar == "signup")
        windows = [j.trigger.within_ms for j in self.journeys.values() if j.trigger.when]
        self._view_window = self.timing.scaled(max(windows, default=86_400_000))
        self._capture = {
            j.name: capture_names(
                tuple(
                    sorted(
                        {s.template for s in j.steps}
                        | {t for v in j.variants for t in v.templates.values()}
                    )
                )
            )
            for j in self.journeys.values()
        }
        # The run's subject (product, order) for re-entry and exits that name one.
        self._subjects = {
            j.name: j.reentry.per or next((e.same for e in j.exits if e.same), None)
            for j in self.journeys.values()
        }
        self.firing = Firing(config, self.journeys, self.timing, self.policies)

    # -- API -------------------------------------------------------------------------------
    def on_event(self, state: UserState | None, event: Event, now: datetime) -> Outcome:
        now_ms = to_ms(now)
        is_new = state is None
        if state is None:
            state = UserState(user_id=event.user_id, seasonal_cursor=now_ms)
        digest = event_digest(event.event_id)
        if _seen(state.seen, digest):
            return self._ignored(state, event, now, "duplicate_event")
        if event.type == USER_DELETED:
            return self._delete(state, event, now)
        draft = Draft(state)
        keep = self.policies.remember_events * EVENT_DIGEST_BYTES
        draft.seen = (state.seen + digest)[-keep:]
        if event.type not in KNOWN_TYPES:
            return self._ignored(draft.freeze(), event, now, "unknown_type")
        decisions: list[Decision] = []
        allowed_before = state.marketing_allowed
        calendar_before = (draft.birthday, draft.timezone, draft.signed_up)
        # In the simulator now is the event's own time: skip the second conversion.
        occurred = now_ms if event.occurred_at is now else to_ms(event.occurred_at)
        orders_before = draft.orders
        merge_profile(draft, event)
        self._facts(draft, event, occurred, now, decisions)
        self._exit(draft, event, now, decisions)
        self._trigger(draft, event, occurred, orders_before)
        if (draft.birthday, draft.timezone, draft.signed_up) != calendar_before:
            self._calendar(draft, now_ms)
        commands = self.firing.fire(draft, now_ms, decisions)
        expire(draft, now_ms, self._view_window, self.policies.attribution_window_ms)
        final = draft.freeze()
        policy = None
        if is_new or final.marketing_allowed != allowed_before:
            policy = ContactPolicy(
                user_id=final.user_id,
                marketing_allowed=final.marketing_allowed,
                deleted=False,
                at=now,
            )
        return Outcome(
            state=final,
            commands=tuple(commands),
            decisions=tuple(decisions),
            wake_at=self.wake_at(final),
            policy=policy,
        )

    def on_due(self, state: UserState, now: datetime) -> Outcome:
        decisions: list[Decision] = []
        draft = Draft(state)
        now_ms = to_ms(now)
        commands = self.firing.fire(draft, now_ms, decisions)
        expire(draft, now_ms, self._view_window, self.policies.attribution_window_ms)
        unchanged = (
            not commands
            and not decisions
            and draft.runs is state.runs
            and draft.views is state.views
            and draft.touches is state.touches
            and draft.marks is state.marks
            and draft.seasonal_cursor == state.seasonal_cursor
        )
        # The same object when nothing changed, so the processor can skip a state write.
        final = state if unchanged else draft.freeze()
        return Outcome(
            state=final,
            commands=tuple(commands),
            decisions=tuple(decisions),
            wake_at=self.wake_at(final),
        )

    def on_delivery(
        self, state: UserState | None, record: DeliveryRecord, now: datetime
    ) -> Outcome:
        """A permanent address failure (5.1.x) suppresses that address for all mail."""
        if state is None:
            return Outcome(state=None)
        code = record.smtp_enhanced_code or ""
        address = record.to or state.email
        if record.status != "bounced" or not code.startswith("5.1.") or not address:
            return Outcome(state=state, wake_at=self.wake_at(state))
        if address in state.suppressed:
            return Outcome(state=state, wake_at=self.wake_at(state))
        final = replace(state, suppressed=(*state.suppressed, address)[-MAX_SUPPRESSED:])
        decision = Decision(
            user_id=state.user_id,
            at=now,
            outcome="recorded",
            reason="address_suppressed",
            journey=record.journey,
            step=record.step,
            kind=record.kind,
            command_id=record.command_id,
            idempotency_key=record.idempotency_key,
        )
        return Outcome(state=final, decisions=(decision,), wake_at=self.wake_at(final))

    def wake_at(self, state: UserState) -> datetime | None:
        """The earliest pending thing: a step due, a deferred send, a seasonal send."""
        due = self.firing.next_due(state)
        return None if due is None else from_ms(due)

    # -- event handling --------------------------------------------------------------------
    def _ignored(self, state: UserState, event: Event, now: datetime, reason: str) -> Outcome:
        decision = Decision(
            user_id=state.user_id, at=now, outcome="ignored", reason=reason, event_id=event.event_id
        )
        return Outcome(state=state, decisions=(decision,), wake_at=self.wake_at(state))

    def _delete(self, state: UserState, event: Event, now: datetime) -> Outcome:
        decisions = [
            self.firing.cancelled(state.user_id, run, now, "deleted", event.event_id)
            for run in state.runs
            if run.journey in self.journeys
        ]
        policy = ContactPolicy(user_id=state.user_id, marketing_allowed=False, deleted=True, at=now)
        return Outcome(state=None, decisions=tuple(decisions), policy=policy)

    def _facts(
        self, draft: Draft, event: Event, occurred: int, now: datetime, out: list[Decision]
    ) -> None:
        kind = event.type
        props = event.properties
        if kind in ACTIVITY and (draft.last_active is None or occurred > draft.last_active):
            draft.last_active = occurred
        if kind == CART_ITEM_ADDED:
            draft.cart = add_to_cart(draft.cart, props)
        elif kind == CART_ITEM_REMOVED:
            product = props.get("product_id")
            draft.cart = tuple(item for item in draft.cart if item[0] != product)
        elif kind == PRODUCT_VIEWED:
            draft.views = record_view(draft.views, props, occurred, self._view_window)
        elif kind == ORDER_COMPLETED:
            window = self.policies.attribution_window_ms
            draft.touches = recent_touches(draft.touches, occurred, window)
            conversion = attribute(draft, event, now, self.config.currency)
            if conversion is not None:
                out.append(conversion)
            draft.orders += 1
            draft.cart = ()
        elif kind == USER_SIGNED_UP:
            if draft.signed_up is None:
                draft.signed_up = occurred
        elif kind == USER_UNSUBSCRIBED:
            scope = props.get("scope")
            draft.unsubscribed = scope if scope in UNSUBSCRIBE_SCOPES else "marketing"
            draft.consent = False
            kept: list[Run] = []
            for run in draft.runs:
                journey = self.journeys.get(run.journey)
                # Calendar runs stay: they are skipped as `unsubscribed` when due and come back
                # the next year, so a later opt-in needs no rescheduling.
                if (
                    journey is not None
                    and journey.kind == "marketing"
                    and journey.trigger.calendar is None
                ):
                    out.append(
                        self.firing.cancelled(
                            draft.user_id, run, now, "unsubscribed", event.event_id
                        )
                    )
                else:
                    kept.append(run)
            draft.runs = tuple(kept)

    def _exit(self, draft: Draft, event: Event, now: datetime, out: list[Decision]) -> None:
        """Instant exits: a run whose exit event arrives (or whose cart empties) ends now."""
        exiting = self._exits.get(event.type, ())
        cart_empty = not draft.cart and event.type in (CART_ITEM_REMOVED, ORDER_COMPLETED)
        if not exiting and not (cart_empty and self._cart_exits):
            return
        names = {j.name: j for j in exiting}
        ended = {n for n, j in names.items() if j.reentry.mode == "debounce"}
        if cart_empty:
            ended |= self._cart_exits
        if ended and draft.marks:
            # A debounced journey's sequence is over for this subject (the cart): re-arm it.
            draft.marks = tuple(m for m in draft.marks if m[0] not in ended)
        kept: list[Run] = []
        for run in draft.runs:
            journey = names.get(run.journey)
            ends = cart_empty and run.journey in self._cart_exits
            if journey is not None and not ends:
                for rule in journey.exits:
                    if rule.event == event.type and (
                        rule.same is None or _subject(event, rule.same) == run.key
                    ):
                        ends = True
                        break
            if ends:
                out.append(self.firing.cancelled(draft.user_id, run, now, "exited", event.event_id))
            else:
                kept.append(run)
        draft.runs = tuple(kept)

    def _trigger(self, draft: Draft, event: Event, occurred: int, orders_before: int) -> None:
        journeys = self._by_event.get(event.type)
        if not journeys:
            return
        tz = zone(draft.timezone, self.config.default_timezone)
        for journey in journeys:
            trigger = journey.trigger
            if trigger.when == "cart_not_empty" and not draft.cart:
                continue
            if trigger.when == "first_order" and orders_before != 0:
                continue
            if trigger.when == "repeat_view":
                product = event.properties.get("product_id")
                horizon = occurred - self.timing.scaled(trigger.within_ms)
                count = sum(1 for p, at in draft.views if p == product and at > horizon)
                if count < trigger.views:
                    continue
            self._start(draft, journey, event, occurred, tz)

    def _start(self, draft: Draft, journey: Journey, event: Event, occurred: int, tz: Any) -> None:
        reentry = journey.reentry
        subject = self._subjects[journey.name]
        key = _subject(event, subject) if subject else ""
        runs = draft.runs
        existing = [r for r in runs if r.journey == journey.name]
        if reentry.mode == "debounce":
            if existing and existing[0].step != 0:
                return  # the first step went: keep this run (one sequence per cart)
            if not existing and any(m == journey.name for m, _ in draft.marks):
                return  # this cart had its sequence already; an exit (order, empty) re-arms
            runs = tuple(r for r in runs if r.journey != journey.name)
            if not existing:
                draft.marks = (*draft.marks, (journey.name, FOREVER))
        elif reentry.mode == "restart":
            runs = tuple(r for r in runs if r.journey != journey.name)
        elif reentry.mode in ("once", "once_per"):
            mark = journey.name if reentry.mode == "once" else f"{journey.name}:{key}"
            if any(
                m == mark and (until == FOREVER or until > occurred) for m, until in draft.marks
            ):
                return
            until = (
                FOREVER if reentry.mode == "once" else occurred + self.timing.scaled(reentry.for_ms)
            )
            live = [m for m in draft.marks if m[1] == FOREVER or m[1] > occurred]
            draft.marks = (*(m for m in live if m[0] != mark), (mark, until))
        due = self.timing.step_due(journey, 0, started=occurred, previous=occurred, tz=tz)
        run = Run(
            journey=journey.name,
            step=0,
            due=due,
            started=occurred,
            trigger_id=event.event_id,
            key=key,
            data=capture(self._capture[journey.name], event.properties),
        )
        draft.runs = (*runs, run)

    def _calendar(self, draft: Draft, now_ms: int) -> None:
        """(Re)schedule birthday and anniversary runs after the profile or sign-up changed."""
        tz = zone(draft.timezone, self.config.default_timezone)
        runs = list(draft.runs)
        for journey, origin, offset in (
            *((j, _date(draft.birthday), 0) for j in self._birthday),
            *((j, _signup_date(draft.signed_up, tz), j.trigger.years) for j in self._signup),
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


def _seen(seen: bytes, digest: bytes) -> bool:
    index = seen.find(digest)
    while index != -1:
        if index % EVENT_DIGEST_BYTES == 0:
            return True
        index = seen.find(digest, index + 1)
    return False


def _subject(event: Event, subject: str | None) -> str:
    value = event.properties.get(f"{subject}_id")
    return str(value) if value is not None else ""


def _date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _signup_date(signed_up: int | None, tz: Any) -> date | None:
    return None if signed_up is None else from_ms(signed_up, tz).date()


__all__ = ["Engine"]
