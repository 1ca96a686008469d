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

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

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

    `withdrawn`: marketing journeys an exit or a restart ended at `at`; their mail made at or
    before `at` must not go. `withdrawn_subjects`: (journey, variable, value) for an exit that
    names a subject (the product added to the cart ends that product's browse offer): only
    that journey's mail whose `variables[variable]` is `value` (`subject_text`). Unlike the
    consent fields, which the next record replaces, the sender remembers a withdrawal for as
    long as such a mail could still be on time (its grace).
    """

    user_id: str
    marketing_allowed: bool
    deleted: bool
    at: datetime
    withdrawn: tuple[str, ...] = ()
    withdrawn_subjects: tuple[tuple[str, str, str], ...] = ()

    @property
    def withdrawals(self) -> tuple[tuple[str, str, str], ...]:
        """Both kinds as (journey, variable, value), variable "" for the whole journey."""
        return (*((journey, "", "") for journey in self.withdrawn), *self.withdrawn_subjects)

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
            "withdrawn_subjects": policy.withdrawn_subjects,
        }
    )


def subject_text(value: object) -> str:
    """A subject id (a product or order id) as text, for the engine (`journeys.runs.subject`) and
    the sender alike: a string as it is, a number by its digits, anything else no subject ("")."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return ""


def withdrawal_matches(
    withdrawal: tuple[str, str, str], journey: str, variables: Mapping[str, Any]
) -> bool:
    """Whether a withdrawal (journey, variable, value) covers a mail of `journey` with
    `variables` (the engine and the sender both decide it here)."""
    wanted, variable, value = withdrawal
    return journey == wanted and (not variable or subject_text(variables.get(variable)) == value)


def decode_policy(raw: bytes) -> ContactPolicy:
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON object was expected, not {type(data).__name__}")
        withdrawn = data.get("withdrawn", [])  # absent from records older than withdrawals
        if not isinstance(withdrawn, list) or not all(isinstance(j, str) for j in withdrawn):
            raise TypeError(f"withdrawn must be a list of journey names, not {withdrawn!r}")
        subjects = data.get("withdrawn_subjects", [])
        if not isinstance(subjects, list) or not all(
            isinstance(w, list) and len(w) == 3 and all(isinstance(x, str) and x for x in w)
            for w in subjects
        ):
            raise TypeError(
                "withdrawn_subjects must be a list of [journey, variable, value], each a "
                f"non-empty string, not {subjects!r}"
            )
        return ContactPolicy(
            user_id=str(data["user_id"]),
            marketing_allowed=bool(data["marketing_allowed"]),
            deleted=bool(data["deleted"]),
            at=datetime.fromisoformat(data["at"]),
            withdrawn=tuple(withdrawn),
            withdrawn_subjects=tuple((w[0], w[1], w[2]) for w in subjects),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise InvalidCommand(f"unreadable contact-policy record: {err}") from err
