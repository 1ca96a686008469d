"""The handler sees every record of a stream partition in offset order: records past a hole are
held back and the partition is read again from the hole; a hole the log really has is passed."""

from __future__ import annotations

from nudge.processor.offsetwatch import (
    READ_AGAIN_AFTER,
    REREADS_BEFORE_ACCEPTING,
    Hole,
    OffsetWatch,
)
from nudge.processor.ports import Record


def records(topic: str, partition: int, *offsets: int) -> list[Record]:
    return [
        Record(topic=topic, partition=partition, offset=offset, key=b"u", value=b"{}")
        for offset in offsets
    ]


def offsets(batch: list[Record]) -> list[int]:
    return [record.offset for record in batch]


def committed_at(**offsets: int) -> object:
    return lambda topic, partition: offsets.get(f"{topic}{partition}")


def nothing_absent(topic: str, partition: int, start: int, end: int) -> bool:
    return False


def test_records_from_the_committed_offset_on_are_all_handled() -> None:
    watch = OffsetWatch()
    committed = committed_at(events0=10)
    first = watch.admit(records("events", 0, 10, 11, 12), committed, nothing_absent, 0.0)
    assert offsets(first.handle) == [10, 11, 12]
    assert (first.held, first.read_again) == ([], [])
    assert offsets(
        watch.admit(records("events", 0, 13), committed, nothing_absent, 0.0).handle
    ) == [13]
    assert watch.commit_limit("events", 0) == 14


def test_a_partition_taken_over_past_its_committed_offset_is_read_again_from_it() -> None:
    """What lost a confirmation in chaos: the worker's first records started after the login.
    None of them is handled; the partition is read again from the committed offset."""
    watch = OffsetWatch()
    committed = committed_at(events3=200)
    found = watch.admit(records("events", 3, 203, 204), committed, nothing_absent, 0.0)
    assert found.handle == []
    assert offsets(found.held) == [203, 204]
    assert found.read_again == [Hole("events", 3, 200, 203)]
    assert watch.commit_limit("events", 3) == 200  # no commit passes the hole
    again = watch.admit(records("events", 3, 200, 201, 202, 203), committed, nothing_absent, 1.0)
    assert offsets(again.handle) == [200, 201, 202, 203]
    assert (again.held, again.read_again) == ([], [])


def test_records_before_the_hole_and_of_other_partitions_are_handled() -> None:
    watch = OffsetWatch()
    committed = committed_at(events0=10, events1=50)
    batch = records("events", 0, 10, 11, 15, 16) + records("events", 1, 50, 51)
    found = watch.admit(batch, committed, nothing_absent, 0.0)
    assert [(r.partition, r.offset) for r in found.handle] == [(0, 10), (0, 11), (1, 50), (1, 51)]
    assert offsets(found.held) == [15, 16]
    assert found.read_again == [Hole("events", 0, 12, 15)]


def test_records_already_queued_past_the_hole_are_held_without_seeking_again() -> None:
    """After the seek, the stale records still queued arrive before the ones read again."""
    watch = OffsetWatch()
    committed = committed_at(events0=10)
    watch.admit(records("events", 0, 12), committed, nothing_absent, 0.0)
    stale = watch.admit(records("events", 0, 13, 14), committed, nothing_absent, 1.0)
    assert (stale.handle, stale.read_again) == ([], [])
    assert offsets(stale.held) == [13, 14]


def test_a_partition_that_keeps_coming_past_the_hole_is_sought_again() -> None:
    """A seek lost (the partition moved, a fetch in flight): after a while, seek once more."""
    watch = OffsetWatch()
    committed = committed_at(events0=10)
    watch.admit(records("events", 0, 12), committed, nothing_absent, 0.0)
    later = watch.admit(records("events", 0, 20), committed, nothing_absent, READ_AGAIN_AFTER)
    assert later.read_again == [Hole("events", 0, 10, 20)]
    assert offsets(later.held) == [20]


def test_a_hole_that_comes_back_the_same_after_reading_again_is_the_logs_own() -> None:
    """Retention removed the records (a group behind the log start), or a transaction marker
    stands where Faust records no gap: after two readings again, the records flow on."""
    watch = OffsetWatch()
    committed = committed_at(events0=100)
    hole = Hole("events", 0, 100, 140)
    assert watch.admit(records("events", 0, 140), committed, nothing_absent, 0.0).read_again == [
        hole
    ]
    for reading in range(1, REREADS_BEFORE_ACCEPTING):
        again = watch.admit(records("events", 0, 140, 141), committed, nothing_absent, reading)
        assert again.read_again == [hole]
        assert again.handle == []
    passed = watch.admit(records("events", 0, 140, 141), committed, nothing_absent, 9.0)
    assert passed.accepted == [hole]
    assert offsets(passed.handle) == [140, 141]
    assert watch.commit_limit("events", 0) == 142


def test_a_replay_below_the_expected_offset_is_handled() -> None:
    """Faust seeks back to the committed offset after a rebalance: records handled before come
    again (event de-duplication absorbs them)."""
    watch = OffsetWatch()
    committed = committed_at(events0=10)
    watch.admit(records("events", 0, 10, 11, 12), committed, nothing_absent, 0.0)
    assert offsets(
        watch.admit(records("events", 0, 10, 11), committed, nothing_absent, 0.0).handle
    ) == [
        10,
        11,
    ]


def test_offsets_the_log_does_not_hold_are_no_hole() -> None:
    watch = OffsetWatch()
    markers = {(11, 12)}

    def absent(topic: str, partition: int, start: int, end: int) -> bool:
        return (start, end) in markers

    found = watch.admit(records("events", 0, 10, 12), committed_at(events0=10), absent, 0.0)
    assert offsets(found.handle) == [10, 12]


def test_without_a_committed_offset_the_first_record_sets_the_start() -> None:
    watch = OffsetWatch()
    found = watch.admit(records("ticks", 1, 40, 41), committed_at(), nothing_absent, 0.0)
    assert offsets(found.handle) == [40, 41]


def test_a_rebalance_forgets_the_partitions_that_left_and_keeps_the_others() -> None:
    watch = OffsetWatch()
    committed = committed_at(events0=0, events1=0)
    watch.admit(
        records("events", 0, 0, 1) + records("events", 1, 0, 1), committed, nothing_absent, 0.0
    )
    watch.admit(records("events", 1, 9), committed, nothing_absent, 0.0)  # being read again
    watch.forget(keep={0})
    # Partition 1 comes back: expected at its committed offset (5) again, not at 2.
    found = watch.admit(
        records("events", 0, 2) + records("events", 1, 5),
        committed_at(events1=5),
        nothing_absent,
        0.0,
    )
    assert [(r.partition, r.offset) for r in found.handle] == [(0, 2), (1, 5)]


def test_moving_past_held_records_expects_what_follows_them() -> None:
    """Faust's own paths ack what they hand over: the watch reports the hole and goes on."""
    watch = OffsetWatch()
    found = watch.admit(records("events", 0, 15), committed_at(events0=10), nothing_absent, 0.0)
    watch.move_past(found.held)
    assert watch.commit_limit("events", 0) == 16
    assert offsets(
        watch.admit(records("events", 0, 16), committed_at(), nothing_absent, 0.0).handle
    ) == [16]


def test_a_smaller_hole_brought_by_reading_again_is_read_again_in_its_turn() -> None:
    """Records 10 to 14 were dropped upstream, and 10 itself is a transaction marker at a fetch
    boundary: reading again brings 11, which is no stale record (those are all past 15)."""
    watch = OffsetWatch()
    committed = committed_at(events0=10)
    watch.admit(records("events", 0, 15, 16), committed, nothing_absent, 0.0)
    again = watch.admit(records("events", 0, 11, 12), committed, nothing_absent, 1.0)
    assert again.read_again == [Hole("events", 0, 10, 11)]
    assert again.handle == []
    passed = watch.admit(records("events", 0, 11, 12), committed, nothing_absent, 2.0)
    assert passed.accepted == [Hole("events", 0, 10, 11)]
    assert offsets(passed.handle) == [11, 12]
