"""Durable timers: the stored envelope, the per-partition due index, and tick planning."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nudge.processor.timers import (
    CorruptState,
    DueIndex,
    PartitionTimers,
    TickPlanner,
    pack,
    peek,
    unpack,
)

WAKE = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("wake_at", "partition", "state"),
    [(WAKE, 0, b"{}"), (None, 3, b""), (WAKE, 65535, "状態".encode())],
)
def test_envelope_round_trips(wake_at: datetime | None, partition: int, state: bytes) -> None:
    """pack → unpack gives back wake-up, partition and the engine's bytes untouched."""
    raw = pack(state, wake_at, partition)
    stored = unpack(raw)
    assert stored.state == state
    assert stored.partition == partition
    assert stored.wake_at == (wake_at.timestamp() if wake_at else None)
    assert peek(raw) == (stored.wake_at, partition)


def test_a_value_without_header_is_reported_with_what_to_do() -> None:
    """Foreign bytes in the table raise CorruptState naming the fix; peek skips them."""
    with pytest.raises(CorruptState, match="delete the state directory"):
        unpack(b'{"user_id": "u-1"}')
    assert peek(b"xx") == (None, -1)


def test_due_users_come_out_earliest_first_and_leave_the_index() -> None:
    """pop_due returns users whose time has come, in order, at most `limit` of them."""
    timers = PartitionTimers()
    for user, at in [("c", 30.0), ("a", 10.0), ("b", 20.0), ("d", 99.0)]:
        timers.set(user, at)
    assert timers.pop_due(25.0, limit=10) == [("a", 10.0), ("b", 20.0)]
    assert timers.pop_due(50.0, limit=10) == [("c", 30.0)]
    assert timers.next_due() == 99.0
    assert len(timers.wake) == 1


def test_cancel_and_reschedule_are_cheap_and_exact() -> None:
    """A cancelled or moved wake-up never fires at its old time (lazy heap deletion)."""
    timers = PartitionTimers()
    timers.set("u", 10.0)
    timers.set("u", 40.0)
    timers.set("v", 15.0)
    timers.set("v", None)
    assert timers.pop_due(20.0, limit=10) == []
    assert timers.next_due() == 40.0
    assert timers.pop_due(40.0, limit=10) == [("u", 40.0)]


def test_the_heap_is_compacted_when_stale_entries_pile_up() -> None:
    """Rescheduling one user many times does not grow memory without bound."""
    timers = PartitionTimers()
    for n in range(5000):
        timers.set("u", float(n))
    assert len(timers.heap) <= 2 * len(timers.wake) + 1025
    assert timers.pop_due(1e9, limit=10) == [("u", 4999.0)]


def test_index_loads_only_wanted_partitions_and_ignores_unloaded_writes() -> None:
    """Rebuild buckets table entries by stored partition; writes to unloaded partitions wait."""
    index = DueIndex()
    index.load([("a", 5.0, 0), ("b", None, 0), ("c", 7.0, 1), ("d", 9.0, 2)], {0, 1})
    assert (index.pending(0), index.pending(1), index.loaded(2)) == (1, 1, False)
    index.set(2, "e", 1.0)
    assert index.pending(2) == 0
    index.forget(keep={1})
    assert (index.loaded(0), index.loaded(1)) == (False, True)


def test_planner_ticks_unloaded_and_due_partitions_once_in_flight() -> None:
    """A tick goes where the index must load or something is due, and not again until handled."""
    index = DueIndex()
    index.load([("a", 5.0, 0), ("b", 50.0, 1)], {0, 1})
    planner = TickPlanner(resend_after=10)
    assert planner.plan({0, 1, 2}, index, now=6.0, monotonic=100.0) == [0, 2]
    assert planner.plan({0, 1, 2}, index, now=6.0, monotonic=101.0) == []
    planner.done(0)
    assert planner.plan({0, 1, 2}, index, now=6.0, monotonic=102.0) == [0]
    assert planner.plan({0, 1, 2}, index, now=6.0, monotonic=120.0) == [0, 2]


def test_planner_forgets_partitions_that_moved_away() -> None:
    """In-flight marks of revoked partitions are dropped, so a returning partition ticks at once."""
    planner = TickPlanner(resend_after=10)
    index = DueIndex()
    assert planner.plan({0}, index, now=0.0, monotonic=0.0) == [0]
    assert planner.plan({1}, index, now=0.0, monotonic=1.0) == [1]
    assert planner.plan({0, 1}, index, now=0.0, monotonic=2.0) == [0]
