"""Send commands (processor → sender, SPEC §3) and delivery records (sender → all, SPEC §4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

Kind = Literal["transactional", "marketing"]
KINDS: Final = frozenset({"transactional", "marketing"})

DeliveryStatus = Literal["sent", "deferred", "bounced", "failed", "suppressed", "duplicate"]
DELIVERY_STATUSES: Final = frozenset(
    {"sent", "deferred", "bounced", "failed", "suppressed", "duplicate"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendCommand:
    """One mail to send. `idempotency_key` is deterministic: a replay yields the same key."""

    command_id: str
    idempotency_key: str
    user_id: str
    journey: str
    step: str
    kind: Kind
    template: str
    locale: str
    to: str
    created_at: datetime
    channel: str = "email"
    variables: Mapping[str, Any] = field(default_factory=dict)
    variant: str | None = None
    trigger_event_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRecord:
    """What became of one send command attempt.

    The SPEC §4 fields, plus the command's journey, step, variant, kind and recipient so that the
    processor can feed the frequency cap, attribution and suppression without a join.
    """

    command_id: str
    idempotency_key: str
    user_id: str
    status: DeliveryStatus
    attempt: int
    at: datetime
    smtp_code: int | None = None
    smtp_enhanced_code: str | None = None
    message_id: str | None = None
    journey: str | None = None
    step: str | None = None
    variant: str | None = None
    kind: Kind | None = None
    to: str | None = None
    reason: str | None = None
