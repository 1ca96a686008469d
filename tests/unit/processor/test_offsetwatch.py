"""The handler sees every record of a stream partition in offset order, or a hole is reported."""

from __future__ import annotations

from nudge.processor.offsetwatch import Hole, OffsetWatch
from nudge.processor.ports import Record


def records(topic: str, partition: int, *offsets: int) -> list[Record]:
    return [
        Record(topic=topic, partition=partition, offset=offset, key=b"u", value=b"{}")
        for offset in offsets
    ]


def committed_at(**offsets: int) -> object:
    return lambda topic, partition: offsets.get(f"{topic}{partition}")


def nothing_absent(topic: str, partition: int, start: int, end: int) -> bool:
    return False


def test_records_from_the_committed_offset_on_leave_no_hole() -> None:
    watch = OffsetWatch()
    committed = committed_at(events0=10)
    assert watch.holes(records("events", 0, 10, 11, 12), committed, nothing_absent) == []
    assert watch.holes(records("events", 0, 13), committed, nothing_absent) == []


def test_a_partition_taken_over_past_its_committed_offset_is_a_hole() -> None:
    """What lost a confirmation in chaos: the worker's first records start after the login."""
    watch = OffsetWatch()
    found = watch.holes(records("events", 3, 203, 204), committed_at(events3=200), nothing_absent)
    assert found == [Hole("events", 3, 200, 203)]


def test_a_hole_between_batches_is_reported_and_a_replay_below_is_not() -> None:
    watch = OffsetWatch()
    committed = committed_at(events0=10)
    watch.holes(records("events", 0, 10, 11), committed, nothing_absent)
    assert watch.holes(records("events", 0, 15), committed, nothing_absent) == [
        Hole("events", 0, 12, 15)
    ]
    assert watch.holes(records("events", 0, 12, 13, 14), committed, nothing_absent) == []


def test_offsets_the_log_does_not_hold_are_no_hole() -> None:
    watch = OffsetWatch()
    markers = {(11, 12)}

    def absent(topic: str, partition: int, start: int, end: int) -> bool:
        return (start, end) in markers

    assert watch.holes(records("events", 0, 10, 12), committed_at(events0=10), absent) == []


def test_without_a_committed_offset_the_first_record_sets_the_start() -> None:
    watch = OffsetWatch()
    assert watch.holes(records("ticks", 1, 40, 41), committed_at(), nothing_absent) == []


def test_a_rebalance_forgets_the_partitions_that_left_and_keeps_the_others() -> None:
    watch = OffsetWatch()
    committed = committed_at(events0=0, events1=0)
    watch.holes(records("events", 0, 0, 1) + records("events", 1, 0, 1), committed, nothing_absent)
    watch.forget(keep={0})
    # Partition 1 comes back: expected at its committed offset (5) again, not at 2.
    assert (
        watch.holes(
            records("events", 0, 2) + records("events", 1, 5),
            committed_at(events1=5),
            nothing_absent,
        )
        == []
    )
