"""Durable per-user timers: the stored envelope, the per-partition due index and tick planning.

The durable truth is the state table: each value carries, before the engine's state bytes, the
user's next wake-up and the partition the user lives in (`pack` / `unpack`). The due index is an
in-memory min-heap per partition, rebuilt from the table after every rebalance, so nothing about
timers needs its own topic or table. Firing happens inside stream iteration (Faust only lets a
table change there): the planner decides which partitions need a tick message, the agent reads the
tick from the co-partitioned ticks topic and fires what the index says is due in that partition.

Cancelling is cheap: setting a user's wake-up to `None` (or to a later time) only updates a dict;
the stale heap entry is skipped when it surfaces (lazy deletion), and the heap is compacted when
stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from nudge.errors import PermanentError

# version (1 byte), wake-up as POSIX seconds (0.0: none), partition (2 bytes)
_HEADER: Final = struct.Struct(">BdH")
_VERSION: Final = 1
HEADER_SIZE: Final = _HEADER.size


class CorruptState(PermanentError):
    """A state-table value that is not a timer envelope; the operator must inspect the table."""

    reason = "corrupt_state"


@dataclass(frozen=True, slots=True)
class Stored:
    """One state-table value, unpacked: when the user wakes, where they live, the engine state."""

    wake_at: float | None
    partition: int
    state: bytes


def pack(state: bytes, wake_at: datetime | None, partition: int) -> bytes:
    """The table value for one user: a 11-byte header, then the engine's state bytes."""
    return _HEADER.pack(_VERSION, to_seconds(wake_at) if wake_at else 0.0, partition) + state


def unpack(raw: bytes) -> Stored:
    if len(raw) < HEADER_SIZE or raw[0] != _VERSION:
        raise CorruptState(
            f"a state value of {len(raw)} bytes has no version-{_VERSION} header; it was written "
            "by another program or version: stop the processor, delete the state directory and "
            "the changelog topic, and replay the events"
        )
    _, wake, partition = _HEADER.unpack_from(raw)
    return Stored(wake_at=wake or None, partition=partition, state=raw[HEADER_SIZE:])


def peek(raw: bytes) -> tuple[float | None, int]:
    """Wake-up and partition of a stored value without copying the state (index rebuilds)."""
    if len(raw) < HEADER_SIZE or raw[0] != _VERSION:
        return None, -1
    _, wake, partition = _HEADER.unpack_from(raw)
    return wake or None, partition


def to_seconds(moment: datetime) -> float:
    return moment.timestamp()


def from_seconds(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(slots=True)
class PartitionTimers:
    """Pending wake-ups of the users of one partition: a dict (truth) and a heap (order)."""

    wake: dict[str, float] = field(default_factory=dict)
    heap: list[tuple[float, str]] = field(default_factory=list)

    def set(self, user_id: str, wake_at: float | None) -> None:
        current = self.wake.get(user_id)
        if current == wake_at:
            return
        if wake_at is None:
            del self.wake[user_id]
        else:
            self.wake[user_id] = wake_at
            heapq.heappush(self.heap, (wake_at, user_id))
        if len(self.heap) > 2 * len(self.wake) + 1024:
            self._compact()

    def next_due(self) -> float | None:
        heap = self.heap
        while heap and self.wake.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float, limit: int) -> list[tuple[str, float]]:
        """Up to `limit` users due at `now`, earliest first; they leave the index."""
        due: list[tuple[str, float]] = []
        heap, wake = self.heap, self.wake
        while heap and len(due) < limit and heap[0][0] <= now:
            at, user_id = heapq.heappop(heap)
            if wake.get(user_id) == at:
                del wake[user_id]
                due.append((user_id, at))
        return due

    def _compact(self) -> None:
        self.heap = [(at, user_id) for user_id, at in self.wake.items()]
        heapq.heapify(self.heap)


@dataclass(slots=True)
class DueIndex:
    """The due index of every partition this worker has loaded since the last rebalance."""

    partitions: dict[int, PartitionTimers] = field(default_factory=dict)
    generation: int = 0  # bumped when everything is forgotten (a rebalance)

    def loaded(self, partition: int) -> bool:
        return partition in self.partitions

    def load(self, entries: Iterable[tuple[str, float | None, int]], wanted: set[int]) -> None:
        """Rebuild the `wanted` partitions from (user_id, wake_at, partition) table entries."""
        fresh = {p: PartitionTimers() for p in wanted}
        for user_id, wake_at, partition in entries:
            timers = fresh.get(partition)
            if timers is not None and wake_at is not None:
                timers.wake[user_id] = wake_at
        for timers in fresh.values():
            timers.heap = [(at, user_id) for user_id, at in timers.wake.items()]
            heapq.heapify(timers.heap)
        self.partitions.update(fresh)

    def forget(self, keep: set[int] | None = None) -> None:
        """Drop loaded partitions (all, or those not in `keep`) after a rebalance."""
        if keep is None:
            self.generation += 1
        for partition in list(self.partitions):
            if keep is None or partition not in keep:
                del self.partitions[partition]

    def set(self, partition: int, user_id: str, wake_at: float | None) -> None:
        """Record a wake-up; ignored for an unloaded partition (its rebuild reads the table)."""
        timers = self.partitions.get(partition)
        if timers is not None:
            timers.set(user_id, wake_at)

    def next_due(self, partition: int) -> float | None:
        timers = self.partitions.get(partition)
        return timers.next_due() if timers is not None else None

    def pop_due(self, partition: int, now: float, limit: int) -> list[tuple[str, float]]:
        timers = self.partitions.get(partition)
        return timers.pop_due(now, limit) if timers is not None else []

    def pending(self, partition: int) -> int:
        timers = self.partitions.get(partition)
        return len(timers.wake) if timers is not None else 0


@dataclass(slots=True)
class TickPlanner:
    """Which assigned partitions need a tick message now.

    A partition needs one when its index is not loaded yet (the tick makes the agent load it) or
    when its earliest wake-up has come. At most one tick per partition is in flight; one that was
    lost (e.g. its partition moved away and back) is re-sent after `resend_after` seconds.
    """

    resend_after: float
    in_flight: dict[int, float] = field(default_factory=dict)

    def plan(self, assigned: set[int], index: DueIndex, now: float, monotonic: float) -> list[int]:
        for partition in list(self.in_flight):
            if partition not in assigned:
                del self.in_flight[partition]
        wanted: list[int] = []
        for partition in sorted(assigned):
            if index.loaded(partition):
                next_due = index.next_due(partition)
                if next_due is None or next_due > now:
                    continue
            sent = self.in_flight.get(partition)
            if sent is not None and monotonic - sent < self.resend_after:
                continue
            self.in_flight[partition] = monotonic
            wanted.append(partition)
        return wanted

    def done(self, partition: int) -> None:
        """The agent handled a tick for `partition`: the next one may be sent."""
        self.in_flight.pop(partition, None)

    def reset(self) -> None:
        self.in_flight.clear()
