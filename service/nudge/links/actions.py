"""What a verified link means: the behaviour event it produces (pure; time is an argument).

Event ids are deterministic, derived from the mail (`command_id`, `user_id`) and the action, never
from the token string (a mail re-rendered on an SMTP retry, or re-signed after a key rotation,
carries a different token for the same mail):

- unsubscribe: one id per mail. The one-click POST from the mailbox provider, the user's own click
  on the confirmation page, and a double click all collapse into one `user.unsubscribed`.
- open: one id per mail, so the stream carries *unique* opens: image proxies and privacy
  prefetchers (Apple Mail Privacy Protection) fetch a pixel many times, and the rate marketers
  compare is "mails opened / mails delivered".
- click: one id per mail and destination URL: unique clicks per link, the usual click rate;
  link scanners that follow every link once still count once.

Repeated opens and clicks are still counted as requests by the link service's own counters.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Final

from nudge.events import EMAIL_CLICKED, EMAIL_OPENED, USER_UNSUBSCRIBED, Event
from nudge.links.urls import MailRef

UNSUBSCRIBE_SCOPE: Final = "marketing"


def link_event_id(action: str, ref: MailRef, *extra: str) -> str:
    """`lnk-<action>-<32 hex>`: the same mail and action always give the same id."""
    material = "\x1f".join((action, ref.user_id, ref.command_id, *extra)).encode()
    return f"lnk-{action}-{hashlib.sha256(material).hexdigest()[:32]}"


def unsubscribe_event(ref: MailRef, *, now: datetime) -> Event:
    """`user.unsubscribed` {scope: marketing} naming the mail whose link was used."""
    return _event(
        "unsub",
        USER_UNSUBSCRIBED,
        ref,
        now,
        {"scope": UNSUBSCRIBE_SCOPE, **_mail_properties(ref)},
    )


def open_event(ref: MailRef, *, now: datetime) -> Event:
    """`email.opened` for the mail the pixel was in."""
    return _event("open", EMAIL_OPENED, ref, now, _mail_properties(ref))


def click_event(ref: MailRef, url: str, *, now: datetime) -> Event:
    """`email.clicked` {command_id, url} for one link of one mail."""
    return _event("click", EMAIL_CLICKED, ref, now, {**_mail_properties(ref), "url": url}, url)


def _mail_properties(ref: MailRef) -> dict[str, Any]:
    return {
        "command_id": ref.command_id,
        "journey": ref.journey,
        "step": ref.step,
        "variant": ref.variant,
    }


def _event(
    action: str,
    event_type: str,
    ref: MailRef,
    now: datetime,
    properties: dict[str, Any],
    *extra: str,
) -> Event:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return Event(
        event_id=link_event_id(action, ref, *extra),
        type=event_type,
        user_id=ref.user_id,
        occurred_at=now.astimezone(UTC),
        properties=properties,
    )
