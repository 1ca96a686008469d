"""The seams of the processor: clock, state store, output sink and the engine it drives.

The record handler (`handler.py`) talks only to these Protocols. `app.py` plugs in Faust (a table,
topics, the wall clock); `testing.py` plugs in a dict, a list and a settable clock, so the whole
decode → decide → store → emit path runs in unit tests without Kafka.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from nudge.commands import DeliveryRecord, SendCommand
from nudge.errors import PermanentError
from nudge.events import Event
from nudge.policy import ContactPolicy


class Clock(Protocol):
    """Where `now` comes from; the processor is the only place in Nudge that reads the clock."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One consumed Kafka record, as the handler needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # The framework's own handle on the record (a Faust event): stores use it to address the
    # record's partition when a batch writes after the stream has moved on.
    context: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Output:
    """One record to produce."""

    topic: str
    key: bytes
    value: bytes


# One state write: key, new value (None: delete the key), and the record it happens for.
Write = tuple[bytes, bytes | None, Record]


class StateStore(Protocol):
    """Per-user values (bytes). Every access names the record it happens for: the value lives in
    that record's partition (Faust keeps one store per partition)."""

    def get(self, key: bytes, record: Record) -> bytes | None: ...

    async def write(self, writes: Sequence[Write]) -> None:
        """Store a batch's writes (each key at most once), in order."""
        ...

    def entries(self) -> Iterable[tuple[bytes, bytes]]:
        """Every (key, value) of the partitions this worker is active for."""
        ...


class Sink(Protocol):
    """Where records go."""

    async def send(self, outputs: Sequence[Output]) -> Awaitable[None]:
        """Hand `outputs` to the producer, in order; the result completes once the broker has
        acknowledged every one of them (and fails if it refused one)."""
        ...

    async def dead_letter(
        self, record: Record, error: PermanentError, failed_at: datetime
    ) -> Awaitable[None]:
        """Hand `record` untouched to the producer for `<topic>-dlt`, with headers naming `error`;
        the result completes once the broker has acknowledged it."""
        ...


class Outcome(Protocol):
    """What the engine returns for one call (docs/dev/contracts.md)."""

    @property
    def state(self) -> Any: ...

    @property
    def commands(self) -> Sequence[SendCommand]: ...

    @property
    def decisions(self) -> Sequence[Any]: ...

    @property
    def wake_at(self) -> datetime | None: ...

    @property
    def policy(self) -> ContactPolicy | None: ...


class JourneyEngine(Protocol):
    """The pure journey engine (nudge.journeys.Engine)."""

    def on_event(self, state: Any, event: Event, now: datetime) -> Outcome: ...

    def on_due(self, state: Any, now: datetime) -> Outcome: ...

    def on_delivery(self, state: Any, record: DeliveryRecord, now: datetime) -> Outcome: ...


class StateCodec(Protocol):
    """encode_state / decode_state of the engine."""

    def encode(self, state: Any) -> bytes: ...

    def decode(self, raw: bytes) -> Any: ...
