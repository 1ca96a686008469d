"""From a send command to the bytes of its mail: the sender's pure core before SMTP.

Adds what the templates expect beyond the command's variables (`shop_name`, `shop_url`,
`sender_name`, `sender_address`, `sender_contact`, `unsubscribe_url` for marketing), renders,
rewrites links for tracking when enabled, and builds the MIME message with the SPEC §5 headers.
`now` is an argument, never read from a clock.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo

from nudge.commands import SendCommand
from nudge.links.urls import MailRef, open_pixel_url, rewrite_links, unsubscribe_url
from nudge.sender.mime import Charset, Mail, build, check_header, message_id_for
from nudge.sender.render import RenderedMail, Renderer
from nudge.settings import Settings

PREVIEW_TIMEZONE = ZoneInfo("Asia/Tokyo")


@dataclass(frozen=True, slots=True, kw_only=True)
class Composed:
    """A mail ready for SMTP: envelope sender and recipient, Message-ID, bytes."""

    envelope_from: str
    recipient: str
    message_id: str
    raw: bytes
    rendered: RenderedMail


def compose(
    command: SendCommand, *, settings: Settings, renderer: Renderer, now: datetime
) -> Composed:
    """Render and build the mail for `command`; a `PermanentError` if impossible.

    `TemplateError`, `InvalidCommand` (`unsafe_header`, `invalid_address`, `invalid_header`), or
    `link_too_long` from `nudge.tokens` for a link whose token the link service would refuse.
    """
    shop_name, envelope_from, domain = sender_identity(settings.mail_from)
    check_header("X-Nudge-Idempotency-Key", command.idempotency_key)
    base_url = settings.public_base_url
    shop_name = shop_name or domain
    variables: dict[str, Any] = {
        "name": None,
        **command.variables,
        "shop_name": shop_name,
        # The shop's own pages (cart, reviews, campaigns); links back to Nudge use base_url.
        "shop_url": settings.shop_url,
        # Who sends, where they are, whom to complain to: Japan's Act on Specified Electronic
        # Mail wants them in marketing mail, whose footer shows each one that is not empty.
        "sender_name": settings.sender_name or shop_name,
        "sender_address": settings.sender_address,
        "sender_contact": settings.sender_contact,
        # `created_at` is the processor's "now" in the user's time zone (docs/dev/contracts.md),
        # so its offset is the reader's: `when` shows event timestamps (often UTC) in it.
        "timezone": command.created_at.tzinfo,
    }
    marketing = command.kind == "marketing"
    unsubscribe = ""
    if marketing:  # only marketing links carry a reference to this mail
        ref = MailRef(
            user_id=command.user_id,
            command_id=command.command_id,
            journey=command.journey,
            step=command.step,
            variant=command.variant,
            locale=command.locale,
        )
        unsubscribe = unsubscribe_url(ref, base_url=base_url, secret=settings.token_secret, now=now)
        variables["unsubscribe_url"] = unsubscribe
    rendered = renderer.render(command.template, command.locale, variables)
    html = rendered.html
    if marketing and settings.tracking_enabled:
        html = rewrite_links(
            html, ref, base_url=base_url, secret=settings.token_secret, now=now, skip=(unsubscribe,)
        )
        pixel = open_pixel_url(ref, base_url=base_url, secret=settings.token_secret, now=now)
        tag = f'<img src="{pixel}" width="1" height="1" alt="" style="display:none">'
        html = html.replace("</body>", f"{tag}\n</body>", 1) if "</body>" in html else html + tag
    headers: list[tuple[str, str]] = [
        ("X-Nudge-Idempotency-Key", command.idempotency_key),
        ("X-Nudge-Journey", command.journey),
        ("X-Nudge-Step", command.step),
    ]
    if marketing:
        headers.append(("List-Unsubscribe", f"<{unsubscribe}>"))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    message_id = message_id_for(command.idempotency_key, domain)
    name = variables.get("name")
    mail = Mail(
        message_id=message_id,
        date=now,
        sender=settings.mail_from,
        to_address=command.to,
        to_name=str(name) if name else None,
        subject=rendered.subject,
        text=rendered.text,
        html=html,
        headers=tuple(headers),
        charset=charset_for(command.to, settings.iso2022jp_domains),
    )
    return Composed(
        envelope_from=envelope_from,
        recipient=command.to,
        message_id=message_id,
        raw=build(mail),
        rendered=rendered,
    )


@functools.lru_cache(maxsize=16)
def sender_identity(mail_from: str) -> tuple[str, str, str]:
    """(display name, envelope address, domain) of `NUDGE_MAIL_FROM`, parsed once."""
    name, address = parseaddr(mail_from)
    return name, address, address.rpartition("@")[2] or "localhost"


def charset_for(address: str, iso2022jp_domains: tuple[str, ...]) -> Charset:
    """ISO-2022-JP for a configured domain or any of its subdomains, UTF-8 otherwise."""
    domain = address.rpartition("@")[2].lower()
    for legacy in iso2022jp_domains:
        if domain == legacy or domain.endswith("." + legacy):
            return "iso-2022-jp"
    return "utf-8"


def preview_message(
    settings: Settings,
    *,
    template: str,
    locale: str,
    kind: str,
    to: str,
    variables: Mapping[str, Any],
    variables_from: str = "the variables",
    now: datetime | None = None,
) -> tuple[RenderedMail, bytes]:
    """What `nudge render` shows a marketer: the rendered parts and the full message.

    Times show in `Asia/Tokyo`, the SPEC §8 default time zone, as for a user who gave none.
    """
    moment = (now or datetime.now(UTC)).astimezone(PREVIEW_TIMEZONE)
    command = SendCommand(
        command_id=f"preview-{uuid.uuid4().hex[:8]}",
        idempotency_key=f"preview-{uuid.uuid4().hex}",
        user_id="preview",
        journey="preview",
        step=template,
        kind="marketing" if kind == "marketing" else "transactional",
        template=template,
        locale=locale,
        to=to,
        created_at=moment,
        variables=dict(variables),
    )
    composed = compose(
        command, settings=settings, renderer=Renderer(variables_from=variables_from), now=moment
    )
    return composed.rendered, composed.raw
