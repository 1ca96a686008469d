"""Which offsets may be committed while many commands are in flight at once (pure).

Commands of one partition finish out of order; an offset may only be committed once every
record before it has its outcome recorded. The tracker therefore commits, per partition, the
lowest offset still unfinished (Kafka's committed offset is "the next record to read"), or one
past the highest finished offset when nothing is in flight.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


@dataclass(slots=True)
class _Partition:
    in_flight: set[int] = field(default_factory=set)
    next_offset: int = -1  # one past the highest offset seen
    committed: int = -1


@dataclass(slots=True)
class OffsetTracker(Generic[P]):
    """Per-partition bookkeeping of started and finished offsets."""

    partitions: dict[P, _Partition] = field(default_factory=dict)

    def started(self, partition: P, offset: int) -> None:
        state = self.partitions.get(partition)
        if state is None:  # not setdefault: that would build a _Partition for every record
            state = self.partitions[partition] = _Partition()
        state.in_flight.add(offset)
        state.next_offset = max(state.next_offset, offset + 1)

    def finished(self, partition: P, offset: int) -> None:
        state = self.partitions.get(partition)
        if state is not None:
            state.in_flight.discard(offset)

    def in_flight(self, partition: P) -> int:
        state = self.partitions.get(partition)
        return len(state.in_flight) if state else 0

    def total_in_flight(self) -> int:
        return sum(len(state.in_flight) for state in self.partitions.values())

    def committable(self) -> dict[P, int]:
        """Offsets to commit now: only partitions whose safe position moved since last time."""
        result: dict[P, int] = {}
        for partition, state in self.partitions.items():
            if state.next_offset < 0:
                continue
            safe = min(state.in_flight) if state.in_flight else state.next_offset
            if safe > state.committed:
                result[partition] = safe
        return result

    def mark_committed(self, offsets: dict[P, int]) -> None:
        for partition, offset in offsets.items():
            state = self.partitions.get(partition)
            if state is not None:
                state.committed = max(state.committed, offset)

    def forget(self, partitions: Iterable[P]) -> None:
        """Drop partitions this process no longer owns (after a rebalance)."""
        for partition in partitions:
            self.partitions.pop(partition, None)
