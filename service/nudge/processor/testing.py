"""Recording fakes of the processor's seams: a dict store, a list sink and a settable clock.

Shipped with the package (like `structlog.testing`) so that tests of the handler, and anyone
driving it offline, need no mocks and no Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from nudge.errors import PermanentError
from nudge.processor.ports import Output, Record, Write


@dataclass(slots=True)
class FakeClock:
    """A clock that stands still until told to move."""

    current: datetime = field(default_factory=lambda: datetime(2026, 11, 22, 1, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


@dataclass(slots=True)
class MemoryStore:
    """A state store in a dict; `writes` counts the keys written (set or deleted)."""

    data: dict[bytes, bytes] = field(default_factory=dict)
    writes: int = 0

    def get(self, key: bytes, record: Record) -> bytes | None:
        return self.data.get(key)

    async def write(self, writes: Sequence[Write]) -> None:
        for key, value, _record in writes:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value
            self.writes += 1

    def entries(self) -> Iterable[tuple[bytes, bytes]]:
        return list(self.data.items())


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    record: Record
    reason: str
    message: str
    failed_at: datetime


@dataclass(slots=True)
class RecordingSink:
    """Keeps what would have been produced; `store` (if given) snapshots how many state writes
    had happened whenever outputs were sent, to check the send-then-store order."""

    outputs: list[Output] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    store: MemoryStore | None = None
    writes_at_publish: list[int] = field(default_factory=list)

    async def send(self, outputs: Sequence[Output]) -> Awaitable[None]:
        self.outputs.extend(outputs)
        if self.store is not None and outputs:
            self.writes_at_publish.append(self.store.writes)
        return _acknowledged()

    async def dead_letter(
        self, record: Record, error: PermanentError, failed_at: datetime
    ) -> Awaitable[None]:
        self.dead_letters.append(
            DeadLetter(record=record, reason=error.reason, message=str(error), failed_at=failed_at)
        )
        return _acknowledged()

    def on(self, topic: str) -> list[Output]:
        return [output for output in self.outputs if output.topic == topic]


def _acknowledged() -> asyncio.Future[None]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done
