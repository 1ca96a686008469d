"""Building the signed URLs that go into a mail (the sender calls these while rendering).

Every URL carries a token from `nudge.tokens` for one purpose; the HTTP side (`nudge.links.web`)
verifies it. Click tokens embed the exact destination, so the redirect can only ever go to a URL
that was in the mail (no open redirect).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import unescape
from typing import Final
from urllib.parse import quote

from nudge.tokens import sign

UNSUBSCRIBE: Final = "unsubscribe"
OPEN: Final = "open"
CLICK: Final = "click"
# An unsubscribe link must keep working long after the mail was sent (RFC 8058 expects the URL
# to stay valid); tracking links need not outlive a campaign by much.
UNSUBSCRIBE_TTL: Final = timedelta(days=365)
TRACKING_TTL: Final = timedelta(days=90)

# Paths under the public base URL that `nudge web` serves; links to them are never rewritten.
OWN_ROUTES: Final = ("/unsubscribe", "/o/", "/c/")

_HREF = re.compile(r'(<a\b[^>]*?\bhref=")(https?://[^"]+)(")', re.IGNORECASE)


@dataclass(frozen=True, slots=True, kw_only=True)
class MailRef:
    """Which mail a link belongs to: enough to attribute an open, click or unsubscribe."""

    user_id: str
    command_id: str
    journey: str
    step: str
    variant: str | None
    locale: str

    def payload(self) -> dict[str, str | None]:
        return {
            "u": self.user_id,
            "c": self.command_id,
            "j": self.journey,
            "s": self.step,
            "v": self.variant,
            "l": self.locale,
        }


def unsubscribe_url(ref: MailRef, *, base_url: str, secret: bytes, now: datetime) -> str:
    token = sign(ref.payload(), purpose=UNSUBSCRIBE, secret=secret, now=now, ttl=UNSUBSCRIBE_TTL)
    return f"{base_url}/unsubscribe?token={token}"


def open_pixel_url(ref: MailRef, *, base_url: str, secret: bytes, now: datetime) -> str:
    token = sign(ref.payload(), purpose=OPEN, secret=secret, now=now, ttl=TRACKING_TTL)
    return f"{base_url}/o/{token}.gif"


def click_url(ref: MailRef, target: str, *, base_url: str, secret: bytes, now: datetime) -> str:
    payload = {**ref.payload(), "url": target}
    token = sign(payload, purpose=CLICK, secret=secret, now=now, ttl=TRACKING_TTL)
    return f"{base_url}/c/{quote(token, safe='.-_')}"


def rewrite_links(
    html: str,
    ref: MailRef,
    *,
    base_url: str,
    secret: bytes,
    now: datetime,
    skip: tuple[str, ...] = (),
) -> str:
    """Point every http(s) `<a href>` in rendered HTML at the click redirect.

    URLs starting with a prefix in `skip` (the unsubscribe link) and the link service's own
    routes are left alone; every other link is rewritten, also one on the same host (a shop may
    serve the link service under its own domain). The href in rendered HTML is escaped (`&amp;`),
    so it is unescaped before it goes into the token.
    """
    own = tuple(f"{base_url}{route}" for route in OWN_ROUTES)

    def replace(match: re.Match[str]) -> str:
        target = unescape(match.group(2))
        if target.startswith(skip) or target.startswith(own):
            return match.group(0)
        rewritten = click_url(ref, target, base_url=base_url, secret=secret, now=now)
        return f"{match.group(1)}{rewritten}{match.group(3)}"

    return _HREF.sub(replace, html)
