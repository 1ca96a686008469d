"""Factories shared by the sender's unit tests."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from nudge.commands import SendCommand
from nudge.sender.render import sample_variables

NOW = datetime(2026, 11, 22, 1, 15, tzinfo=UTC)
# `created_at` is the engine's "now" in the user's zone (docs/dev/contracts.md): 10:15 in Tokyo.
MADE = NOW.astimezone(ZoneInfo("Asia/Tokyo"))


def command(**overrides: object) -> SendCommand:
    """An order confirmation for Hana, in Japanese; any field can be overridden."""
    base: dict[str, object] = {
        "command_id": "c-1",
        "idempotency_key": "k-1",
        "user_id": "u-42",
        "journey": "order_confirmation",
        "step": "confirmation",
        "kind": "transactional",
        "template": "order_confirmation",
        "locale": "ja",
        "to": "hana@example.jp",
        "created_at": MADE,
        "variables": sample_variables()["order_confirmation"],
    }
    base.update(overrides)
    return SendCommand(**base)  # type: ignore[arg-type]
