"""The walking skeleton: an event on Kafka becomes a mail in a real SMTP server's mailbox."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from nudge.deadletter import read_headers
from nudge.produce import publish
from nudge.topics import Topics

from .conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
REPO = Path(__file__).resolve().parents[3]


def order(event_id: str, user_id: str, email: str, locale: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "type": "order.completed",
            "user_id": user_id,
            "occurred_at": datetime.now(UTC).isoformat(),
            "properties": {
                "order_id": f"o-{event_id}",
                "total": 4800,
                "currency": "JPY",
                "items": [{"name": "Tea set", "quantity": 1, "price": 4800}],
            },
            "user": {"email": email, "name": "山田 花子", "locale": locale},
        }
    )


def test_an_order_becomes_a_confirmation_mail_in_japanese_and_english(full_stack: Stack) -> None:
    """order.completed on the events topic → processor → sender → an order confirmation mail."""
    lines = [
        order("e-ja", "u-ja", "hana@example.jp", "ja"),
        order("e-en", "u-en", "emma@example.com", "en"),
    ]
    asyncio.run(publish(full_stack.settings, lines))
    mails = full_stack.wait_for_mails(lambda found: len(found) >= 2)
    by_recipient = {str(mail["To"]): mail for mail in mails}
    assert len(mails) == 2
    ja = next(m for to, m in by_recipient.items() if "hana@example.jp" in to)
    en = next(m for to, m in by_recipient.items() if "emma@example.com" in to)
    for mail in (ja, en):
        assert mail["X-Nudge-Journey"] == "order_confirmation"
        assert mail["X-Nudge-Idempotency-Key"]
        assert mail.get_content_type() == "multipart/alternative"
    plain = ja.get_body(("plain",))
    assert plain is not None, "an order confirmation has a plain-text part"
    assert "o-e-ja" in str(ja["Subject"]) or "o-e-ja" in plain.get_content()
    assert any("\u3040" <= ch <= "\u30ff" for ch in str(ja["Subject"]))  # kana: Japanese copy
    assert str(en["Subject"]).isascii()


def test_bad_events_are_dead_lettered_and_the_stream_keeps_going(full_stack: Stack) -> None:
    """Bad JSON and a missing user_id go to events-dlt with a reason; the next event mails."""
    settings = full_stack.settings
    missing_user = orjson.dumps(
        {"event_id": "e-x", "type": "order.completed", "occurred_at": "2026-11-22T10:00:00Z"}
    )
    lines = [b"{not json", missing_user, order("e-ok", "u-ok", "ok@example.com", "en")]
    asyncio.run(publish(settings, lines))
    full_stack.wait_for_mails(lambda found: len(found) == 1)
    dead = full_stack.read(Topics.dead_letter(full_stack.topics.events), at_least=2)
    reasons = sorted(read_headers(record.headers)["nudge-error-reason"] for record in dead)
    assert reasons == ["malformed_json", "missing_field"]
    assert Counter(record.value for record in dead) == Counter([b"{not json", missing_user])
    message = next(
        read_headers(r.headers)["nudge-error-message"] for r in dead if r.value == missing_user
    )
    assert "user_id" in message


def test_live_metrics_of_processor_and_sender_pass_promtool(full_stack: Stack) -> None:
    """A scrape of the running services, after real traffic, is clean under promtool, and says
    that both are ready."""
    settings = full_stack.settings
    lines = [order(f"e-m{n}", f"u-m{n}", f"m{n}@example.com", "ja") for n in range(5)]
    asyncio.run(publish(settings, [*lines, b"{broken"]))
    full_stack.wait_for_mails(lambda found: len(found) == 5)
    urls = [f"{full_stack[name].base_url}/metrics" for name in ("processor", "sender")]
    result = subprocess.run(  # noqa: S603 (the project's own check script)
        [str(REPO / "deploy" / "checks" / "check-metrics.sh"), *urls],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("processor", "sender"):  # ready, and saying so where an alert can see it
        assert full_stack[name].metric("nudge_ready", service=name) == 1.0
