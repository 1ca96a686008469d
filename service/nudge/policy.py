"""The contact policy of one user, published by the processor for the sender's last check.

The processor owns consent, unsubscribe and deletion; it writes the latest `ContactPolicy` of a
user to the compacted topic `<prefix>internal.contact-policy` (key `user_id`) whenever it changes
(created with `min.compaction.lag.ms` = `WITHDRAWALS_KEPT_MS`, see below).
The sender reads that topic from the beginning at start and tails it, so a command made before an
unsubscribe is still stopped right before sending (SPEC §8, issue 5).

A record also names the marketing journeys the user's event has just ended or restarted
(`withdrawn`: a purchase ends the cart reminders, any activity restarts win-back) while a mail of
theirs may still wait in the sender, so that a reminder held back by an SMTP retry is not
delivered after the purchase. Withdrawals add up across a user's records (a later consent change
does not cancel one), so the topic keeps every record uncompacted for `WITHDRAWALS_KEPT_MS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import orjson

from nudge.errors import InvalidCommand

CONTACT_POLICY_TOPIC = "contact-policy"  # under Topics.internal()
# Added to a journey's grace when deciding whether its mail may still wait in the sender: the
# processor's and the sender's clocks may differ by this much.
WITHDRAWAL_MARGIN_MS: Final = 300_000
# Kept uncompacted at least this long (the topic's `min.compaction.lag.ms`): withdrawals add up
# across a user's records, so a restarted sender must still read each one while it matters.
WITHDRAWALS_KEPT_MS: Final = 7 * 24 * 3_600_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactPolicy:
    """What may be sent to a user now. Transactional mail needs only `not deleted`.

    `withdrawn`: marketing journeys an exit ended at `at`; their mail made at or before `at`
    must not go. Unlike the consent fields, which the next record replaces, the sender
    remembers a withdrawal for as long as such a mail could still be on time (its grace).
    """

    user_id: str
    marketing_allowed: bool
    deleted: bool
    at: datetime
    withdrawn: tuple[str, ...] = ()

    def allows(self, kind: str) -> bool:
        if self.deleted:
            return False
        return kind == "transactional" or self.marketing_allowed


def encode_policy(policy: ContactPolicy) -> bytes:
    return orjson.dumps(
        {
            "user_id": policy.user_id,
            "marketing_allowed": policy.marketing_allowed,
            "deleted": policy.deleted,
            "at": policy.at,
            "withdrawn": policy.withdrawn,
        }
    )


def decode_policy(raw: bytes) -> ContactPolicy:
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON object was expected, not {type(data).__name__}")
        withdrawn = data.get("withdrawn", [])  # absent from records older than withdrawals
        if not isinstance(withdrawn, list) or not all(isinstance(j, str) for j in withdrawn):
            raise TypeError(f"withdrawn must be a list of journey names, not {withdrawn!r}")
        return ContactPolicy(
            user_id=str(data["user_id"]),
            marketing_allowed=bool(data["marketing_allowed"]),
            deleted=bool(data["deleted"]),
            at=datetime.fromisoformat(data["at"]),
            withdrawn=tuple(withdrawn),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise InvalidCommand(f"unreadable contact-policy record: {err}") from err
