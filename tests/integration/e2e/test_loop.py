"""The whole loop through the real stack: Kafka, processor, sender, SMTP sink and `nudge web`.

Two consenting users abandon a cart and get the first reminder (marketing). One unsubscribes with
the URL from the mail's `List-Unsubscribe` header (after seeing the confirmation page); a tampered
copy of the other's URL is refused. Both then view a product three times: only the one still
subscribed gets the browse offer (marketing), while both still get their order confirmation
(transactional). The order after the offer is a conversion of that journey, step and A/B variant
in the processor's /metrics, and `nudge simulate --report` over the same events agrees. Last, a
click on a rewritten link redirects to the original URL and is counted by variant.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import re
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from nudge.codec import decode_delivery
from nudge.produce import publish
from nudge.settings import SHIPPED_JOURNEYS
from nudge.testing import NUDGE, wait_until
from nudge.testkafka import Record

from .conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ONE_CLICK = b"List-Unsubscribe=One-Click"
PRODUCT = "p-7"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Let a test see the 302 itself instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http(
    url: str, *, method: str = "GET", body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request, no redirects followed; (status, headers, body) also for 4xx answers."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def daytime_zone(now: datetime) -> str:
    """A fixed-offset IANA zone where it is mid-day now, so quiet hours never defer the test."""
    for offset in sorted(range(-12, 15), key=lambda h: abs(h - 9)):
        if 10 <= (now.hour + offset) % 24 <= 17:
            return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"
    raise AssertionError("unreachable: some offset is always mid-day")


def ab_journeys(path: Path) -> Path:
    """The shipped journeys with an A/B split on the cart and browse journeys (no holdout)."""
    config = yaml.safe_load(SHIPPED_JOURNEYS.read_text())
    for name in ("cart_abandonment", "browse_abandonment"):
        config["journeys"][name]["variants"] = [
            {"name": "A", "weight": 0.5},
            {"name": "B", "weight": 0.5},
        ]
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    return path


class Users:
    """Event factories for the test's users, all consenting, in a zone where it is daytime."""

    def __init__(self, run: str, zone: str) -> None:
        self.run = run
        self.zone = zone
        self.count = 0
        self.introduced: set[str] = set()

    def address(self, user: str) -> str:
        return f"{user}-{self.run}@example.com"

    def event(self, user: str, kind: str, properties: dict[str, Any]) -> bytes:
        self.count += 1
        event: dict[str, Any] = {
            "event_id": f"e-{self.run}-{self.count}",
            "type": kind,
            "user_id": f"{user}-{self.run}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "properties": properties,
        }
        if user not in self.introduced:
            # SPEC §2: `user` carries the profile fields that changed. Consent sent again later
            # would be a fresh opt-in and undo the unsubscribe, so only the first event has it.
            self.introduced.add(user)
            event["user"] = {
                "email": self.address(user),
                "name": "Test User",
                "locale": "en",
                "timezone": self.zone,
                "marketing_consent": True,
            }
        return orjson.dumps(event)

    def cart_add(self, user: str) -> bytes:
        item = {"product_id": "p-1", "name": "Tea set", "price": 4800, "quantity": 1}
        return self.event(user, "cart.item_added", item)

    def view(self, user: str) -> bytes:
        return self.event(user, "product.viewed", {"product_id": PRODUCT})

    def order(self, user: str) -> bytes:
        return self.event(
            user,
            "order.completed",
            {
                "order_id": f"o-{user}-{self.run}",
                "total": 4800,
                "currency": "JPY",
                "items": [{"name": "Tea set", "quantity": 1, "price": 4800}],
            },
        )


def journey_of(mail: EmailMessage) -> str:
    """`journey/step` of a received mail, from its X-Nudge-Journey and X-Nudge-Step headers."""
    return f"{mail['X-Nudge-Journey']}/{mail['X-Nudge-Step']}"


def mails_to(mails: list[EmailMessage], address: str) -> list[EmailMessage]:
    return [mail for mail in mails if address in str(mail["To"])]


def has(journey: str, address: str) -> Callable[[list[EmailMessage]], bool]:
    return lambda mails: any(journey_of(m) == journey for m in mails_to(mails, address))


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(("html",))
    assert part is not None, "a marketing mail has an HTML part"
    return str(part.get_content())


def token_payload(url: str) -> dict[str, Any]:
    """Read (without verifying) the payload of the token at the end of a link URL."""
    token = re.split(r"[/=]", url)[-1].removesuffix(".gif")
    body = token.split(".")[0]
    data: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return data


def event_log(records: list[Record]) -> bytes:
    """Events read back from the topic as a JSONL log ordered by occurred_at, for simulate."""
    values = [r.value for r in records if r.value is not None]
    return b"".join(v + b"\n" for v in sorted(values, key=lambda v: orjson.loads(v)["occurred_at"]))


def require_stack_commands() -> None:
    """Fail loudly, not vacuously, when a service this test needs has not been built yet."""
    missing = [
        module
        for module in ("nudge.processor.cli", "nudge.sender.cli", "nudge.sender.sink")
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        pytest.fail(f"the full loop needs {', '.join(missing)}, which do not exist yet")


def test_the_loop_unsubscribe_click_and_conversion(stack: Stack, tmp_path: Path) -> None:
    """Unsubscribe stops the next marketing mail but not transactional; clicks and orders count."""
    require_stack_commands()
    stack.env["NUDGE_JOURNEYS"] = str(ab_journeys(tmp_path / "journeys.yaml"))
    stack.start("smtp-sink", "web", "processor", "sender")
    settings = stack.settings
    web, processor = stack["web"].base_url, stack["processor"]
    users = Users(uuid.uuid4().hex[:8], daytime_zone(datetime.now(UTC)))
    leaver, stayer = users.address("leaver"), users.address("stayer")

    # 1. Both abandon a cart and get reminder_1, a marketing mail with one-click unsubscribe.
    asyncio.run(publish(settings, [users.cart_add("leaver"), users.cart_add("stayer")]))
    reminder = "cart_abandonment/reminder_1"
    mails = stack.wait_for_mails(
        lambda found: has(reminder, leaver)(found) and has(reminder, stayer)(found), timeout=60
    )
    leaver_reminder = mails_to(mails, leaver)[0]
    stayer_reminder = mails_to(mails, stayer)[0]
    assert leaver_reminder["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = str(leaver_reminder["List-Unsubscribe"]).strip("<>")
    assert unsubscribe.startswith(f"{web}/unsubscribe?token=")

    # 2. A tampered copy of the stayer's unsubscribe URL is refused and changes nothing.
    stayer_unsubscribe = str(stayer_reminder["List-Unsubscribe"]).strip("<>")
    forged = stayer_unsubscribe.replace("?token=", "?token=x", 1)
    assert http(forged, method="POST", body=ONE_CLICK)[0] in (400, 403)
    flipped = stayer_unsubscribe[:-1] + ("A" if stayer_unsubscribe[-1] != "A" else "B")
    assert http(flipped, method="POST", body=ONE_CLICK)[0] == 403

    # 3. The leaver sees the confirmation page, then unsubscribes with one click (RFC 8058).
    status, headers, page = http(unsubscribe)
    assert status == 200
    assert "Unsubscribe" in page.decode()
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert http(unsubscribe, method="POST", body=ONE_CLICK)[0] == 200

    # 4. Once the processor has read the unsubscribe, both view one product three times.
    processor.wait_for_metric("nudge_events_consumed_total", 1, type="user.unsubscribed")
    views = [users.view(user) for _ in range(3) for user in ("leaver", "stayer")]
    asyncio.run(publish(settings, views))
    offer = "browse_abandonment/offer"
    mails = stack.wait_for_mails(has(offer, stayer), timeout=60)
    # The leaver's offer comes due too, and is skipped as unsubscribed; only then may the orders
    # below end the journey (an order first would cancel the offer for another reason).
    processor.wait_for_metric(
        "nudge_not_sent_total", 1, journey="browse_abandonment", step="offer", reason="unsubscribed"
    )

    # 5. Both order: transactional mail reaches both, marketing only the stayer.
    asyncio.run(publish(settings, [users.order("leaver"), users.order("stayer")]))
    confirmation = "order_confirmation/confirmation"
    mails = stack.wait_for_mails(
        lambda found: has(confirmation, leaver)(found) and has(confirmation, stayer)(found),
        timeout=60,
    )
    leaver_journeys = sorted(journey_of(m) for m in mails_to(mails, leaver))
    assert leaver_journeys == sorted([reminder, confirmation]), (
        f"after unsubscribing, the leaver must get transactional mail only: {leaver_journeys}"
    )
    stayer_offer = next(m for m in mails_to(mails, stayer) if journey_of(m) == offer)

    # 6. The stayer's order is a conversion of the browse offer, for its variant, with revenue.
    pixel = re.search(r'src="([^"]+/o/[^"]+\.gif)"', html_of(stayer_offer))
    assert pixel is not None, "a tracked marketing mail carries an open pixel"
    offer_variant = token_payload(pixel.group(1))["v"]
    labels = {"journey": "browse_abandonment", "step": "offer", "variant": offer_variant}
    processor.wait_for_metric("nudge_conversions_total", 1, **labels)
    revenue = processor.metric("nudge_conversion_revenue_total", currency="JPY", **labels)
    assert revenue == 4800

    # 7. Offline and live agree: `nudge simulate --report` over the same events (as read back
    #    from the events topic, the link service's unsubscribe included) finds the same
    #    conversion and revenue for that journey, step and variant.
    events_log = tmp_path / "events.jsonl"
    events_log.write_bytes(event_log(stack.read(stack.topics.events)))
    report_path = tmp_path / "report.json"
    simulate = subprocess.run(  # noqa: S603 (our own CLI, fixed arguments)
        [
            NUDGE,
            "simulate",
            "--events",
            str(events_log),
            "--report",
            str(report_path),
            "--out",
            str(tmp_path / "commands.jsonl"),
        ],
        env=stack.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert simulate.returncode == 0, simulate.stderr.decode()[-2000:]
    offline = orjson.loads(report_path.read_bytes())["journeys"]["browse_abandonment"]
    assert offline["variants"][offer_variant]["conversions"] == processor.metric(
        "nudge_conversions_total", **labels
    )
    assert offline["variants"][offer_variant]["revenue"] == {"JPY": revenue}

    # 8. The stayer clicks a rewritten link: 302 to the original URL, counted by variant.
    links = re.findall(r'href="([^"]+)"', html_of(stayer_reminder))
    clicks = [link for link in links if link.startswith(f"{web}/c/")]
    assert clicks, f"no rewritten link in the reminder; its links: {links}"
    click = clicks[0]
    status, headers, _ = http(click)
    assert status == 302
    original = token_payload(click)["url"]
    assert headers["Location"] == original
    cart_variant = token_payload(click)["v"]
    assert cart_variant in ("A", "B")
    stack["web"].wait_for_metric(
        "nudge_clicks_total", 1, journey="cart_abandonment", step="reminder_1", variant=cart_variant
    )

    # The mail's own links must lead to the shop, not to the link service (which 404s them).
    assert not original.startswith(f"{web}/"), (
        f"the reminder's link {original!r} points at the link service (NUDGE_PUBLIC_URL), not at "
        "the shop: the sender fills the templates' base_url with public_base_url"
    )


def test_a_reminder_greylisted_until_after_the_order_is_never_sent(stack: Stack) -> None:
    """The SMTP server answers the cart reminder 451, as a greylisting carrier does. While the
    sender waits to retry, the user orders: the processor withdraws the cart journey on the
    contact-policy topic, the retry is `suppressed` / `exited`, and the user gets the order's
    mail but never the reminder."""
    # The retry comes 8-12 s after the 451: the order reaches the sender well before it (about
    # 0.2 s here), on a busy CI machine too.
    stack.env["NUDGE_SEND_RETRY_BASE"] = "10"
    stack.services.start("smtp-sink", "--maildir", str(stack.maildir), "--fail-first", "1")
    stack.start("processor", "sender")
    stack["smtp-sink"].wait_ready()
    settings = stack.settings
    users = Users(uuid.uuid4().hex[:8], daytime_zone(datetime.now(UTC)))
    buyer = users.address("buyer")

    asyncio.run(publish(settings, [users.cart_add("buyer")]))
    [deferred] = [decode_delivery(r.value) for r in stack.read(stack.topics.deliveries, at_least=1)]
    # The reminder (the only mail so far) met the greylisting server.
    assert (deferred.user_id, deferred.status, deferred.smtp_code) == (
        f"buyer-{users.run}",
        "deferred",
        451,
    )

    asyncio.run(publish(settings, [users.order("buyer")]))
    confirmation = "order_confirmation/confirmation"
    stack.wait_for_mails(has(confirmation, buyer), timeout=60)
    outcomes = wait_until(
        lambda: (
            [
                (d.status, d.reason, d.attempt)
                for r in stack.read(stack.topics.deliveries)
                if (d := decode_delivery(r.value)).idempotency_key == deferred.idempotency_key
                and d.status != "deferred"
            ]
            or None
        ),
        timeout=60,
        failure=lambda: "the greylisted reminder got no outcome\n" + stack.services.logs(),
    )
    assert outcomes == [("suppressed", "exited", 2)]
    journeys = {journey_of(m) for m in mails_to(stack.mails(), buyer)}
    assert "cart_abandonment/reminder_1" not in journeys
    assert confirmation in journeys
