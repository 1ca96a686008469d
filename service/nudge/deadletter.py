"""Dead-letter records: the original bytes, untouched, plus headers that say what went wrong.

SPEC §1: `<topic>-dlt` carries the original key and value; the headers name the error so an
operator can fix the producer (or the journeys file) and replay. Used by processor and sender.
"""

from __future__ import annotations

from dataclasses import dataclass

from nudge.errors import PermanentError

REASON = "nudge-error-reason"
MESSAGE = "nudge-error-message"
SOURCE_TOPIC = "nudge-source-topic"
SOURCE_PARTITION = "nudge-source-partition"
SOURCE_OFFSET = "nudge-source-offset"
FAILED_AT = "nudge-failed-at"
MAX_MESSAGE_BYTES = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """Where the rejected record was read from."""

    topic: str
    partition: int
    offset: int


def headers(error: PermanentError, source: Source, *, failed_at: str) -> list[tuple[str, bytes]]:
    """Kafka headers for a dead-lettered record (reason is a short code, message is for humans)."""
    message = str(error).encode("utf-8", "replace")[:MAX_MESSAGE_BYTES]
    return [
        (REASON, error.reason.encode()),
        (MESSAGE, message),
        (SOURCE_TOPIC, source.topic.encode()),
        (SOURCE_PARTITION, str(source.partition).encode()),
        (SOURCE_OFFSET, str(source.offset).encode()),
        (FAILED_AT, failed_at.encode()),
    ]


def read_headers(raw: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    """Headers of a dead-lettered record as text, for tests, tools and replays."""
    return {name: value.decode("utf-8", "replace") for name, value in raw}
