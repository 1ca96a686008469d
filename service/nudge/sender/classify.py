"""What to do with an SMTP reply: pure classification by reply code and RFC 3463 enhanced code.

    2xx                       → sent
    4xx, connection failures  → retry (exponential backoff with jitter, durable)
    5.1.x at RCPT or DATA, except 5.1.7 and 5.1.8 (a bad recipient address)
                              → bounce: record `bounced`, suppress the address for all mail
    550/551/553 at RCPT without an enhanced code, when the text says the user is unknown → bounce
    other 5xx                 → fail: record `failed`, dead-letter with reason `smtp_<code>`

Only a reply about the recipient may suppress it. X.1.7 and X.1.8 (RFC 3463) are about the
*sender's* address, and anything refused at MAIL FROM (or at connect) is about the sender or
the connection: suppressing the recipient for those would stop all its mail for our own fault.
With one recipient per transaction, a 5.1.x after DATA is about that recipient too.

RFC 3463 §2 says the class digits of the two codes must match; when a server sends a mismatched
pair we trust the basic code (what the SMTP state machine acts on) for retry-or-not, and use the
enhanced code's subject only to tell a bad address from other permanent failures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

Action = Literal["sent", "retry", "bounce", "fail"]
CONNECTION_ERROR: Final = -1  # pseudo reply code for "no reply": refused, dropped, timed out

# Stages whose reply is about the recipient (pool.py names them connect, mail, rcpt, data).
_RECIPIENT_STAGES: Final = frozenset({"rcpt", "data"})
# X.1.7 "bad sender's mailbox address syntax", X.1.8 "bad sender's system address" (RFC 3463).
_SENDER_ADDRESS_DETAILS: Final = frozenset({"7", "8"})

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_UNKNOWN_USER = re.compile(
    r"user unknown|unknown user|no such user|mailbox unavailable|does not exist|"
    r"recipient address rejected|invalid recipient|no mailbox",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One SMTP reply (or a connection failure, `code == CONNECTION_ERROR`)."""

    code: int
    message: str = ""
    stage: str = "data"  # connect, mail, rcpt, data: where in the transaction it came


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """The decision for one reply: an action, the enhanced code if any, and a short reason."""

    action: Action
    enhanced: str | None
    reason: str


def enhanced_code(message: str) -> str | None:
    """`5.1.1` from `5.1.1 <x@y>: Recipient address rejected`, or None."""
    match = _ENHANCED.match(message)
    if not match:
        return None
    return ".".join(match.groups())


def classify(reply: Reply) -> Verdict:
    """The action for `reply`; total over every input (unknown codes are retried or failed)."""
    if reply.code == CONNECTION_ERROR:
        return Verdict(action="retry", enhanced=None, reason="connection_error")
    enhanced = enhanced_code(reply.message)
    if 200 <= reply.code < 300:
        return Verdict(action="sent", enhanced=enhanced, reason="accepted")
    if 400 <= reply.code < 500:
        return Verdict(action="retry", enhanced=enhanced, reason=f"smtp_{reply.code}")
    if 500 <= reply.code < 600:
        if enhanced is not None:
            if _bad_recipient(enhanced, reply.stage):
                return Verdict(action="bounce", enhanced=enhanced, reason="bad_address")
            return Verdict(action="fail", enhanced=enhanced, reason=f"smtp_{reply.code}")
        unknown_user = _UNKNOWN_USER.search(reply.message) is not None
        if reply.stage == "rcpt" and reply.code in (550, 551, 553) and unknown_user:
            return Verdict(action="bounce", enhanced=None, reason="bad_address")
        return Verdict(action="fail", enhanced=None, reason=f"smtp_{reply.code}")
    # 1xx/3xx at the end of a transaction, or garbage: the server is confused; try again later.
    return Verdict(action="retry", enhanced=enhanced, reason=f"smtp_{reply.code}")


def _bad_recipient(enhanced: str, stage: str) -> bool:
    """Whether a permanent reply's enhanced code says the recipient's address is bad."""
    # 4.1.x inside a 5xx reply is inconsistent; the basic code says permanent. 2.1.x is not a
    # failure at all, whatever the basic code says: not a reason to suppress.
    klass, subject, detail = enhanced.split(".")
    return (
        klass != "2"
        and subject == "1"
        and detail not in _SENDER_ADDRESS_DETAILS
        and stage in _RECIPIENT_STAGES
    )
