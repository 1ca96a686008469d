"""The durable retry schedule: tiered retry topics, exponential backoff with jitter (pure parts).

A transient failure (4xx, connection error) re-publishes the command's original bytes to
`<prefix>internal.send-retry-<tier>`. Each tier has one constant delay (base × 3^(tier−1)), so
records in a tier become due in the order they were written: a tier's consumer only ever waits
for the record at its head, and a slow tier never holds up fresh commands or another tier.
Attempts beyond the last tier stay in the last tier. Jitter (±20 %) spreads a burst of retries
(e.g. after an outage) so they do not all hit the server in the same second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from nudge.topics import Topics

RETRY_TIERS: Final = 5
JITTER: Final = 0.2
ATTEMPT_HEADER: Final = "nudge-attempt"
DUE_HEADER: Final = "nudge-due-at"
LAST_REPLY_HEADER: Final = "nudge-last-reply"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPlan:
    """Where and when the next attempt of a command happens."""

    topic: str
    attempt: int  # the number of the next attempt (the first send is attempt 1)
    due_at: float  # epoch seconds


def tier_for(failed_attempt: int) -> int:
    """Attempt 1 failed → tier 1, …; attempts past the last tier stay in it."""
    return max(1, min(failed_attempt, RETRY_TIERS))


def tier_delay(tier: int, base_seconds: float) -> float:
    return base_seconds * float(3 ** (tier - 1))


def retry_topics(topics: Topics) -> list[str]:
    return [topics.internal(f"send-retry-{tier}") for tier in range(1, RETRY_TIERS + 1)]


def plan_retry(
    *, topics: Topics, failed_attempt: int, now: float, base_seconds: float, rand: float
) -> RetryPlan:
    """The retry for a command whose attempt `failed_attempt` failed; `rand` is in [0, 1)."""
    tier = tier_for(failed_attempt)
    delay = tier_delay(tier, base_seconds) * (1 + JITTER * (2 * rand - 1))
    return RetryPlan(
        topic=topics.internal(f"send-retry-{tier}"),
        attempt=failed_attempt + 1,
        due_at=now + delay,
    )


def retry_headers(plan: RetryPlan, last_reply: str) -> list[tuple[str, bytes]]:
    return [
        (ATTEMPT_HEADER, str(plan.attempt).encode()),
        (DUE_HEADER, f"{plan.due_at:.3f}".encode()),
        (LAST_REPLY_HEADER, last_reply.encode("utf-8", "replace")[:300]),
    ]


def read_retry_headers(headers: Sequence[tuple[str, bytes]]) -> tuple[int, float]:
    """(attempt, due_at) of a record; a fresh command is attempt 1, due at once (0)."""
    attempt, due = 1, 0.0
    for name, value in headers:
        try:
            if name == ATTEMPT_HEADER:
                attempt = max(1, int(value))
            elif name == DUE_HEADER:
                due = float(value)
        except ValueError:
            continue
    return attempt, due
