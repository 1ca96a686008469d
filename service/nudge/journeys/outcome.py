"""What the engine returns: new state, commands to emit, decisions with reasons, next wake-up.

A `Decision` is written for every step the engine considered — sent or not, and why — and for
events it ignored or orders it attributed, so the processor can count them and `nudge simulate`
can report them. Reasons are short, closed codes (`REASONS`), safe as metric labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from nudge.commands import Kind, SendCommand
from nudge.journeys.state import NATIVE, UserState, become, builder
from nudge.policy import ContactPolicy

DecisionOutcome = Literal["sent", "skipped", "deferred", "ignored", "conversion", "recorded"]

REASONS: Final[dict[str, DecisionOutcome]] = {
    "sent": "sent",
    # skipped: the step is over for this run, nothing was sent
    "no_consent": "skipped",
    "unsubscribed": "skipped",
    "suppressed": "skipped",
    "no_address": "skipped",
    "frequency_capped": "skipped",
    "stale": "skipped",
    "holdout": "skipped",
    "exited": "skipped",
    "deleted": "skipped",
    "too_many_runs": "skipped",  # a journey's oldest pending run, past state.MAX_RUNS_PER_JOURNEY
    # deferred: the step stays pending until `until`
    "quiet_hours_deferred": "deferred",
    # ignored events
    "duplicate_event": "ignored",
    "unknown_type": "ignored",
    "before_deletion": "ignored",  # stamped before the user's deletion, delivered after it
    # conversions (an order after a marketing mail, or after a withheld one for holdout users)
    "conversion": "conversion",
    "holdout_conversion": "conversion",
    # facts recorded from delivery records
    "address_suppressed": "recorded",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One thing the engine decided, at virtual or wall-clock time `at`."""

    user_id: str
    at: datetime
    outcome: DecisionOutcome
    reason: str
    journey: str | None = None
    step: str | None = None
    kind: Kind | None = None
    variant: str | None = None
    command_id: str | None = None
    idempotency_key: str | None = None
    trigger_event_id: str | None = None
    event_id: str | None = None
    until: datetime | None = None
    revenue: float | None = None
    currency: str | None = None
    holdout: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The result of one engine call (docs/dev/contracts.md).

    `state` None means: erase this user (deletion). `wake_at` None means nothing is pending.
    `policy` is set when consent, unsubscribe or deletion changed (or the user is new), or an
    exit withdrew a journey's mail that may still wait in the sender, for the processor to
    publish on the contact-policy topic.
    """

    state: UserState | None
    commands: tuple[SendCommand, ...] = ()
    decisions: tuple[Decision, ...] = ()
    wake_at: datetime | None = None
    policy: ContactPolicy | None = None


# `SendCommand` (nudge.commands) is never compiled: always the builder.
_CommandBuilder: Final = builder(SendCommand)


def new_decision(
    user_id: str,
    at: datetime,
    outcome: DecisionOutcome,
    reason: str,
    *,
    journey: str | None = None,
    step: str | None = None,
    kind: Kind | None = None,
    variant: str | None = None,
    command_id: str | None = None,
    idempotency_key: str | None = None,
    trigger_event_id: str | None = None,
    event_id: str | None = None,
    until: datetime | None = None,
    revenue: float | None = None,
    currency: str | None = None,
    holdout: bool = False,
) -> Decision:
    """`Decision(...)`, built as `state.new_run` builds a run (a decision per step fired)."""
    if NATIVE:
        native = Decision.__new__(Decision)
        native.user_id = user_id  # type: ignore[misc]
        native.at = at  # type: ignore[misc]
        native.outcome = outcome  # type: ignore[misc]
        native.reason = reason  # type: ignore[misc]
        native.journey = journey  # type: ignore[misc]
        native.step = step  # type: ignore[misc]
        native.kind = kind  # type: ignore[misc]
        native.variant = variant  # type: ignore[misc]
        native.command_id = command_id  # type: ignore[misc]
        native.idempotency_key = idempotency_key  # type: ignore[misc]
        native.trigger_event_id = trigger_event_id  # type: ignore[misc]
        native.event_id = event_id  # type: ignore[misc]
        native.until = until  # type: ignore[misc]
        native.revenue = revenue  # type: ignore[misc]
        native.currency = currency  # type: ignore[misc]
        native.holdout = holdout  # type: ignore[misc]
        return native
    return Decision(
        user_id=user_id,
        at=at,
        outcome=outcome,
        reason=reason,
        journey=journey,
        step=step,
        kind=kind,
        variant=variant,
        command_id=command_id,
        idempotency_key=idempotency_key,
        trigger_event_id=trigger_event_id,
        event_id=event_id,
        until=until,
        revenue=revenue,
        currency=currency,
        holdout=holdout,
    )


def new_command(
    *,
    command_id: str,
    idempotency_key: str,
    user_id: str,
    journey: str,
    step: str,
    kind: Kind,
    template: str,
    locale: str,
    to: str,
    created_at: datetime,
    variables: Mapping[str, Any],
    variant: str | None,
    trigger_event_id: str | None,
    channel: str = "email",
) -> SendCommand:
    """`SendCommand(...)`, built as `state.new_run` builds a run (one per mail). A field added
    to `SendCommand` would be left unset here: `become` refuses nothing, but
    tests/unit/journeys/test_fastpaths.py compares the two constructors field by field."""
    c = _CommandBuilder()
    c.command_id = command_id
    c.idempotency_key = idempotency_key
    c.user_id = user_id
    c.journey = journey
    c.step = step
    c.kind = kind
    c.template = template
    c.locale = locale
    c.to = to
    c.created_at = created_at
    c.channel = channel
    c.variables = variables
    c.variant = variant
    c.trigger_event_id = trigger_event_id
    return become(c, SendCommand)
