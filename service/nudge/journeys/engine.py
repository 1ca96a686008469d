"""The journey engine: pure functions of (state, input, now) → Outcome (docs/dev/contracts.md).

    on_event(state | None, event, now)      a behaviour event for this user
    on_due(state, now)                      the user's wake_at has passed (early or late is safe)
    on_delivery(state | None, record, now)  a delivery record for this user

No clock is read and no I/O happens here: the processor passes wall-clock `now`, the simulator
passes event time, and both get the same decisions. An event stamped later than `now` (a
publisher's clock ahead of ours) is taken as occurring at `now`, for every time derived from it.
Per event the order is: ignore it if stamped before the user's deletion, de-duplicate, erase on
deletion, merge the profile, update facts (cart, views, orders, activity, unsubscribe), attribute
conversions, exit runs (instant exits), start runs (triggers and re-entry), schedule calendar
runs, then fire everything due at `now`.

A deletion leaves a tombstone (`UserState.tombstone`: the deletion time, nothing else) for
`TOMBSTONE_MS`, so that the deleted user's events delivered late are ignored rather than
starting a new user from their profile; an event stamped at or after the deletion starts one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Final

from nudge.commands import DeliveryRecord, SendCommand
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
    note_consent_change,
    recent_touches,
    record_view,
)
from nudge.journeys.firing import Firing
from nudge.journeys.ids import event_digest
from nudge.journeys.localtime import from_ms, to_ms, zone
from nudge.journeys.outcome import Decision, Outcome, new_decision
from nudge.journeys.runs import Runs
from nudge.journeys.state import EVENT_DIGEST_BYTES, Run, UserState
from nudge.journeys.timing import Timing
from nudge.policy import ContactPolicy, withdrawal_matches

MAX_SUPPRESSED: Final = 4
# The longest address the codec accepts (`codec.is_valid_email`): no mail went to a longer one,
# so a delivery record naming one suppresses nothing (and stores nothing).
MAX_ADDRESS_LENGTH: Final = 254
# How long a deleted user's tombstone is kept after the deletion's own time, then erased. Events
# of one user arrive in publish order, but an app's offline outbox or a publisher's retry queue
# can deliver one stamped before the deletion after it; within this window it is recognised as
# the deleted user's and ignored (not a new user built from the deleted profile and mailed).
# A week outlasts the retry queues and app outboxes we know of, and keeps what outlives a
# deletion (an id and a time) short-lived. Not scaled by NUDGE_DELAY_SCALE: it is a tolerance
# for publishers' lateness, like the staleness grace, not a wait.
TOMBSTONE_MS: Final = 7 * 86_400_000
# (state, commands, decisions, wake-up in epoch ms, contact policy): an `Outcome` before the
# wake-up becomes a datetime.
Result = tuple[
    UserState | None,
    tuple[SendCommand, ...],
    tuple[Decision, ...],
    int | None,
    ContactPolicy | None,
]
# Event types with a fact of their own beyond activity time (`Engine._facts`).
_FACT_TYPES: Final = frozenset(
    {
        PRODUCT_VIEWED,
        CART_ITEM_ADDED,
        CART_ITEM_REMOVED,
        ORDER_COMPLETED,
        USER_SIGNED_UP,
        USER_UNSUBSCRIBED,
    }
)


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
        windows = [j.trigger.within_ms for j in self.journeys.values() if j.trigger.when]
        self._view_window = self.timing.scaled(max(windows, default=86_400_000))
        self._keep_seen = self.policies.remember_events * EVENT_DIGEST_BYTES
        self._default_tz = config.default_timezone
        self.firing = Firing(config, self.journeys, self.timing, self.policies)
        self.runs = Runs(self.journeys, self.timing, self.firing)

    # -- API -------------------------------------------------------------------------------
    def on_event(self, state: UserState | None, event: Event, now: datetime) -> Outcome:
        final, commands, decisions, wake, policy = self.decide(state, event, now, to_ms(now))
        return Outcome(
            state=final,
            commands=commands,
            decisions=decisions,
            wake_at=None if wake is None else from_ms(wake),
            policy=policy,
        )

    def on_due(self, state: UserState, now: datetime) -> Outcome:
        final, commands, decisions, wake, _ = self.fire_due(state, to_ms(now))
        return Outcome(
            state=final,
            commands=commands,
            decisions=decisions,
            wake_at=None if wake is None else from_ms(wake),
        )

    def on_delivery(
        self, state: UserState | None, record: DeliveryRecord, now: datetime
    ) -> Outcome:
        """A permanent address failure (5.1.x) suppresses that address for all mail (the last
        `MAX_SUPPRESSED` addresses are kept).

        A deleted user's tombstone records nothing (a mail sent before the deletion can bounce
        after it, and no address is kept for a deleted user).
        """
        if state is None:
            return Outcome(state=None)
        if state.tombstone:
            return Outcome(state=state, wake_at=self.wake_at(state))
        code = record.smtp_enhanced_code or ""
        address = record.to or state.email
        if (
            record.status != "bounced"
            or not code.startswith("5.1.")
            or not address
            or len(address) > MAX_ADDRESS_LENGTH
        ):
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
        """The earliest pending thing: a step due, a deferred send, a seasonal send; for a
        tombstone, its erasure."""
        due = self._next_due(state)
        return None if due is None else from_ms(due)

    # -- the same, as plain tuples with times in ms (what `on_*` wrap; `replay.py` calls these
    # directly: no Outcome, and no datetime round trip for the wake-up, per call) -------------
    def decide(self, state: UserState | None, event: Event, now: datetime, now_ms: int) -> Result:
        """`on_event` with `now_ms == to_ms(now)` given, returning a `Result` tuple."""
        # In the simulator now is the event's own time: skip the second conversion.
        occurred = now_ms if event.occurred_at is now else to_ms(event.occurred_at)
        if occurred > now_ms:
            # Stamped ahead of our clock (a publisher's clock skew): it happened now, or an "at
            # once" step would wait for the stamp and a 2099 login would pin last activity.
            occurred = now_ms
        is_new = state is None
        if state is not None and state.deleted_at is not None:
            if occurred < state.deleted_at:
                # The deleted user's, delivered late: it must not bring back their profile.
                return self._ignored(state, event, now, "before_deletion")
            if state.tombstone:
                # A new user, who still remembers the deletion against later stragglers.
                state = UserState(
                    user_id=event.user_id, seasonal_cursor=now_ms, deleted_at=state.deleted_at
                )
                is_new = True
        if state is None:
            state = UserState(user_id=event.user_id, seasonal_cursor=now_ms)
        digest = event_digest(event.event_id)
        if _seen(state.seen, digest):
            return self._ignored(state, event, now, "duplicate_event")
        event_type = event.type
        if event_type == USER_DELETED:
            return self._delete(state, event, now, occurred, now_ms)
        draft = Draft(state)
        draft.seen = (state.seen + digest)[-self._keep_seen :]
        if event_type not in KNOWN_TYPES:
            return self._ignored(draft.freeze(), event, now, "unknown_type")
        decisions: list[Decision] = []
        allowed_before = state.marketing_allowed
        orders_before = draft.orders
        if event.user is not None:
            calendar_before = (draft.birthday, draft.timezone, draft.signed_up)
            merge_profile(draft, event, occurred)
            calendar_changed = (draft.birthday, draft.timezone, draft.signed_up) != calendar_before
        else:
            calendar_changed = False
        tz = zone(draft.timezone, self._default_tz)
        if event_type in ACTIVITY and (draft.last_active is None or occurred > draft.last_active):
            draft.last_active = occurred
        if event_type in _FACT_TYPES:
            signed_up = draft.signed_up
            self._facts(draft, event, occurred, now, decisions)
            calendar_changed = calendar_changed or draft.signed_up != signed_up
        runs = self.runs
        exits = event_type in runs.exit_types
        if exits:
            runs.exit(draft, event, now, decisions)
        restarted: tuple[str, ...] = ()
        if event_type in runs.by_event:
            restarted = runs.trigger(draft, event, occurred, orders_before, tz, now, decisions)
        withdrawn: tuple[str, ...] = ()
        withdrawn_subjects: tuple[tuple[str, str, str], ...] = ()
        if (exits or restarted) and draft.touches:
            withdrawn, withdrawn_subjects = runs.withdrawals(draft, event, now_ms, restarted)
        if calendar_changed:
            runs.calendar(draft, now_ms, tz)
        commands = self.firing.fire(draft, now_ms, decisions, tz)
        if (withdrawn or withdrawn_subjects) and commands:
            # A mail made just now is not made before the withdrawal: one that a withdrawal
            # would match keeps it out (and, rarely, the earlier mail in the sender with it).
            withdrawn = tuple(j for j in withdrawn if not _made_now((j, "", ""), commands))
            withdrawn_subjects = tuple(w for w in withdrawn_subjects if not _made_now(w, commands))
        expire(draft, now_ms, self._view_window, self.policies.attribution_window_ms)
        final = draft.freeze()
        policy = None
        if is_new or final.marketing_allowed != allowed_before or withdrawn or withdrawn_subjects:
            policy = ContactPolicy(
                user_id=final.user_id,
                marketing_allowed=final.marketing_allowed,
                deleted=False,
                at=now,
                withdrawn=withdrawn,
                withdrawn_subjects=withdrawn_subjects,
            )
        wake = self.firing.next_due(final, tz)
        return final, tuple(commands), tuple(decisions), wake, policy

    def fire_due(self, state: UserState, now_ms: int) -> Result:
        """`on_due` at `now_ms`, returning a `Result` tuple."""
        erased = _erased_at(state)
        if erased is not None:
            if now_ms >= erased:
                return None, (), (), None, None  # the window for late events is over: erase
            return state, (), (), erased, None
        decisions: list[Decision] = []
        draft = Draft(state)
        tz = zone(state.timezone, self._default_tz)
        commands = self.firing.fire(draft, now_ms, decisions, tz)
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
        return final, tuple(commands), tuple(decisions), self.firing.next_due(final, tz), None

    # -- event handling --------------------------------------------------------------------
    def _ignored(self, state: UserState, event: Event, now: datetime, reason: str) -> Result:
        decision = new_decision(state.user_id, now, "ignored", reason, event_id=event.event_id)
        return state, (), (decision,), self._next_due(state), None

    def _next_due(self, state: UserState) -> int | None:
        """`Firing.next_due` in the state's zone; for a tombstone, the time it is erased."""
        erased = _erased_at(state)
        if erased is not None:
            return erased
        return self.firing.next_due(state, zone(state.timezone, self._default_tz))

    def _delete(
        self, state: UserState, event: Event, now: datetime, occurred: int, now_ms: int
    ) -> Result:
        """Erase everything known about the user and cancel what is pending; keep a tombstone
        with the deletion time until `TOMBSTONE_MS` after it (none once that has passed)."""
        decisions = [
            self.firing.cancelled(state.user_id, run, now, "deleted", event.event_id)
            for run in state.runs
            if run.journey in self.journeys
        ]
        policy = ContactPolicy(user_id=state.user_id, marketing_allowed=False, deleted=True, at=now)
        erased = occurred + TOMBSTONE_MS
        if erased <= now_ms:
            return None, (), tuple(decisions), None, policy
        tombstone = UserState(user_id=state.user_id, deleted_at=occurred)
        return tombstone, (), tuple(decisions), erased, policy

    def _facts(
        self, draft: Draft, event: Event, occurred: int, now: datetime, out: list[Decision]
    ) -> None:
        """Cart, views, orders, sign-up and unsubscribe (activity time is set by the caller)."""
        kind = event.type
        props = event.properties
        if kind == PRODUCT_VIEWED:
            draft.views = record_view(draft.views, props, occurred, self._view_window)
        elif kind == CART_ITEM_ADDED:
            draft.cart = add_to_cart(draft.cart, props)
        elif kind == CART_ITEM_REMOVED:
            product = props.get("product_id")
            draft.cart = tuple(item for item in draft.cart if item[0] != product)
        elif kind == ORDER_COMPLETED:
            # Only touches before the order can be its cause; later ones are kept for later
            # orders (a late order must not erase the record of a mail sent after it).
            window = self.policies.attribution_window_ms
            touches = recent_touches(draft.touches, occurred, window)
            conversion = attribute(draft.user_id, touches, event, now, self.config.currency)
            if conversion is not None:
                out.append(conversion)
            draft.orders += 1
            draft.cart = ()
        elif kind == USER_SIGNED_UP:
            if draft.signed_up is None:
                draft.signed_up = occurred
        elif kind == USER_UNSUBSCRIBED:
            # Always applied, however late (facts.consent_applies).
            note_consent_change(draft, occurred)
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


def _seen(seen: bytes, digest: bytes) -> bool:
    index = seen.find(digest)
    while index != -1:
        if index % EVENT_DIGEST_BYTES == 0:
            return True
        index = seen.find(digest, index + 1)
    return False


__all__ = ["Engine"]


def _erased_at(state: UserState) -> int | None:
    """When a deletion's tombstone is erased (`TOMBSTONE_MS` after the deletion); None for any
    other state."""
    if state.deleted_at is None or not state.tombstone:
        return None
    return state.deleted_at + TOMBSTONE_MS


def _made_now(withdrawal: tuple[str, str, str], commands: list[SendCommand]) -> bool:
    """Whether a mail made in this call is one the withdrawal would cover."""
    return any(withdrawal_matches(withdrawal, c.journey, c.variables) for c in commands)
