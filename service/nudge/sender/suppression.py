"""The last-moment gate: suppressed addresses and each user's contact policy (pure).

Suppressions live in the compacted topic `<prefix>internal.suppressions` (key: the lower-cased
address); the sender writes one when a 5.1.x reply proves the address bad. Contact policies come
from the processor on `<prefix>internal.contact-policy` (`nudge.policy`). Both are rebuilt at
start and tailed, and checked right before sending, because state may have changed since the
command was made (SPEC §8: unsubscribe is effective for the next mail). A policy record can also
withdraw a journey's marketing mail made until then (a purchase ends the cart reminders): those
withdrawals add up per user; a later record of that user drops the ones older than the longest
grace (plus the clock margin), after which such a mail would be `stale` anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import orjson

from nudge.commands import SendCommand
from nudge.policy import ContactPolicy, decode_policy, withdrawal_matches

SUPPRESSIONS_TOPIC: Final = "suppressions"  # under Topics.internal()


def address_key(address: str) -> str:
    return address.strip().lower()


def encode_suppression(address: str, *, reason: str, code: str | None, at: datetime) -> bytes:
    return orjson.dumps(
        {"address": address_key(address), "reason": reason, "smtp_enhanced_code": code, "at": at}
    )


@dataclass(slots=True)
class Gate:
    """Suppressed addresses and contact policies, as known to this sender right now."""

    suppressed: dict[str, str] = field(default_factory=dict)
    policies: dict[str, ContactPolicy] = field(default_factory=dict)
    # user → (journey, variable, value) → when an exit withdrew that journey's mail made until
    # then: all of it when variable is "", else only mail whose variables[variable] is value.
    withdrawn: dict[str, dict[tuple[str, str, str], datetime]] = field(default_factory=dict)
    # How long a withdrawal matters: the longest grace of a marketing journey (`timeliness`)
    # plus the margin for the processor's and the sender's clocks.
    withdrawal_horizon: timedelta = timedelta(days=1)

    def apply_suppression(self, key: str, raw: bytes | None) -> None:
        if raw is None:  # a tombstone lifts the suppression (an operator's decision)
            self.suppressed.pop(key, None)
            return
        try:
            reason = str(orjson.loads(raw).get("reason") or "bounce")
        except (orjson.JSONDecodeError, AttributeError):
            reason = "bounce"
        self.suppressed[key] = reason

    def apply_policy(self, user_id: str, raw: bytes | None) -> None:
        """Apply one contact-policy record. An unreadable one raises `InvalidCommand` (the
        follower logs it) and leaves the user's previous policy and withdrawals as they were,
        rather than guess."""
        if raw is None:
            self.policies.pop(user_id, None)
            self.withdrawn.pop(user_id, None)
            return
        policy = decode_policy(raw)
        self.policies[user_id] = policy
        known = self.withdrawn.get(user_id)
        if known is None and not policy.withdrawn and not policy.withdrawn_subjects:
            return
        # The consent fields are replaced; withdrawals add up, each kept while a mail made
        # before it could still be on time.
        since = policy.at - self.withdrawal_horizon
        kept = {what: at for what, at in (known or {}).items() if at >= since}
        for what in policy.withdrawals:
            kept[what] = max(kept.get(what, policy.at), policy.at)
        if kept:
            self.withdrawn[user_id] = kept
        else:
            self.withdrawn.pop(user_id, None)

    def blocked(self, command: SendCommand) -> str | None:
        """Why `command` must not be sent now (a short reason), or None to go ahead."""
        if address_key(command.to) in self.suppressed:
            return "suppressed_address"
        policy = self.policies.get(command.user_id)
        if policy is None:
            return None  # the processor checked consent when it made the command
        if policy.deleted:
            return "user_deleted"
        if not policy.allows(command.kind):
            return "no_marketing_consent"
        if command.kind == "marketing":
            ended = self.withdrawn.get(command.user_id)
            if ended is not None and _withdrawn(command, ended):
                return "exited"  # e.g. a cart reminder made before the purchase
        return None


def _withdrawn(command: SendCommand, ended: dict[tuple[str, str, str], datetime]) -> bool:
    return any(
        command.created_at <= at and withdrawal_matches(what, command.journey, command.variables)
        for what, at in ended.items()
    )
