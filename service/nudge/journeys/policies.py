"""The send policies of SPEC §8, applied in this one place to every step that comes due.

Order of checks: staleness (marketing), address, suppression; then for marketing only consent,
unsubscribe, quiet hours (defer), frequency cap, holdout. Transactional mail is stopped only by a
missing or suppressed address (deletion erased the state before anything could come due).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from nudge.commands import Kind
from nudge.journeys.config import Policies
from nudge.journeys.localtime import is_quiet, quiet_hours_end

Verdict = Literal["send", "skip", "defer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Gate:
    """The verdict for one step now: send it, skip it (with reason), or defer it to `until`."""

    verdict: Verdict
    reason: str = "sent"
    until: int | None = None


# The verdicts that carry no time, built once (a frozen dataclass's constructor is slow, and
# compiled code calls it through the interpreter).
SEND = Gate(verdict="send")
STALE = Gate(verdict="skip", reason="stale")
NO_ADDRESS = Gate(verdict="skip", reason="no_address")
SUPPRESSED = Gate(verdict="skip", reason="suppressed")
UNSUBSCRIBED = Gate(verdict="skip", reason="unsubscribed")
NO_CONSENT = Gate(verdict="skip", reason="no_consent")
CAPPED = Gate(verdict="skip", reason="frequency_capped")
HOLDOUT = Gate(verdict="skip", reason="holdout")


def gate(
    kind: Kind,
    due: int,
    now: int,
    grace_ms: int,
    email: str | None,
    suppressed: tuple[str, ...],
    consent: bool | None,
    unsubscribed: str | None,
    sent: tuple[int, ...],
    holdout: bool,
    tz: ZoneInfo,
    policies: Policies,
    local: datetime,
) -> Gate:
    """The verdict for one step due at `due`, at `now` (`local` is `now` in the user's zone)."""
    if kind == "marketing" and now - due > grace_ms:
        # After an outage or a replay of old events: skip instead of sending a burst.
        return STALE
    if not email:
        return NO_ADDRESS
    if email in suppressed:
        return SUPPRESSED
    if kind == "transactional":
        return SEND
    if unsubscribed is not None:
        return UNSUBSCRIBED
    if consent is not True:
        return NO_CONSENT
    if is_quiet(local.time(), policies.quiet_start, policies.quiet_end):
        return Gate(
            verdict="defer",
            reason="quiet_hours_deferred",
            until=quiet_hours_end(now, policies.quiet_end, tz),
        )
    if capped(sent, now, policies):
        return CAPPED
    if holdout:
        return HOLDOUT
    return SEND


def capped(sent: tuple[int, ...], now: int, policies: Policies) -> bool:
    """True when `cap_max` marketing mails already went out in the rolling window before now."""
    recent = sum(1 for at in sent if now - at < policies.cap_window_ms)
    return recent >= policies.cap_max


def remember_send(sent: tuple[int, ...], now: int, policies: Policies) -> tuple[int, ...]:
    """The send times the cap needs: only the last `cap_max` can matter."""
    keep = max(policies.cap_max, 1)
    return (*sent, now)[-keep:]
