"""The handler sees every record of a stream partition, in offset order (pure).

A worker handed a partition's later records without earlier ones decides on a partial history
(a cart without the login that carried the consent), and the replay that later brings the earlier
ones takes the later ones for duplicates: a journey step is lost. Chaos runs showed it right after
processor kills and broker restarts, records dropped somewhere between the fetch and the agent
(docs/processor.md, Known limits). This watch stands where every upstream drop shows: before the
handler. Records past a hole are held back (not handled, never acked, so no commit passes them)
and the partition is read again from the first missing offset; a hole that comes back the same
after reading again `REREADS_BEFORE_ACCEPTING` times is one the log really has (records removed
by retention, a transaction marker Faust did not record) and is passed. `commit_limit` bounds
every commit to one past the records handled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from nudge.processor.ports import Record

# Readings again of the same hole (same first missing offset, same first record after it) before
# it is taken as the log's own.
REREADS_BEFORE_ACCEPTING: Final = 2
# Seconds a partition being read again may deliver only records past the hole (the stale ones
# already queued before the seek) before it is sought back again.
READ_AGAIN_AFTER: Final = 5.0


@dataclass(frozen=True, slots=True)
class Hole:
    """Records `expected` up to `got` (excluded) of a partition never reached the handler."""

    topic: str
    partition: int
    expected: int
    got: int


@dataclass(frozen=True, slots=True)
class Admission:
    """What a batch becomes: the records to handle, in order, and what to do about the rest."""

    handle: list[Record]
    # Past a hole: neither handled nor acked; they come again when the partition is read again.
    held: list[Record] = field(default_factory=list)
    read_again: list[Hole] = field(default_factory=list)  # seek each partition to `expected`
    accepted: list[Hole] = field(default_factory=list)  # came back the same: the log's own


@dataclass(slots=True)
class _ReadingAgain:
    hole: Hole
    times: int  # readings again that brought this same hole back
    since: float  # when the last seek was asked for


class OffsetWatch:
    """Per stream partition, the offset of the record the handler should see next.

    A newly assigned partition is expected at its committed offset, where Faust seeks it; then
    one past each record handled. A record below that is a replay (handled: the engine's event
    de-duplication and deterministic keys absorb it); one above is a hole, unless every missing
    offset is one the consumer knows the log does not hold (`absent`: transaction markers,
    compaction).
    """

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}
        self._reading_again: dict[tuple[str, int], _ReadingAgain] = {}

    def forget(self, keep: set[int]) -> None:
        """After a rebalance: partitions not in `keep` are expected at their committed offset
        again the next time they are assigned; kept ones go on from where they were."""
        for state in (self._next, self._reading_again):
            for key in [key for key in state if key[1] not in keep]:
                del state[key]

    def admit(
        self,
        records: Sequence[Record],
        committed: Callable[[str, int], int | None],
        absent: Callable[[str, int, int, int], bool],
        now: float,
    ) -> Admission:
        """Split a batch into the records the handler may see and those past a hole."""
        admission = Admission(handle=[])
        handle = admission.handle.append
        next_offsets = self._next
        reading_again = self._reading_again
        for record in records:
            key = (record.topic, record.partition)
            expected = next_offsets.get(key)
            if expected is None:
                expected = committed(record.topic, record.partition)
            offset = record.offset
            if (
                expected is None
                or offset <= expected
                or absent(record.topic, record.partition, expected, offset)
            ):
                next_offsets[key] = offset + 1
                if reading_again:
                    reading_again.pop(key, None)
                handle(record)
                continue
            hole = Hole(record.topic, record.partition, expected, offset)
            state = reading_again.get(key)
            if state is None or state.hole.expected != expected:
                reading_again[key] = _ReadingAgain(hole, times=0, since=now)
                next_offsets[key] = expected  # held at the hole, also for `commit_limit`
                admission.read_again.append(hole)
            elif offset <= state.hole.got:
                # Not one of the records queued behind the hole (those are all past it): what
                # reading again brought. The same hole again, or a smaller one.
                if offset == state.hole.got:
                    state.times += 1
                else:
                    state.hole, state.times = hole, 1
                if state.times >= REREADS_BEFORE_ACCEPTING:
                    del reading_again[key]
                    next_offsets[key] = offset + 1
                    admission.accepted.append(hole)
                    admission.handle.append(record)
                    continue
                state.since = now
                admission.read_again.append(hole)
            elif now - state.since >= READ_AGAIN_AFTER:
                # Only records past the hole for a while: the seek did not take (the partition
                # moved, a fetch in flight), or the log lost more meanwhile. Seek again.
                state.hole, state.times, state.since = hole, 0, now
                admission.read_again.append(hole)
            admission.held.append(record)
        return admission

    def move_past(self, records: Sequence[Record]) -> None:
        """These records were handled after all (a path that cannot read again): expect what
        follows them."""
        for record in records:
            key = (record.topic, record.partition)
            self._next[key] = record.offset + 1
            self._reading_again.pop(key, None)

    def commit_limit(self, topic: str, partition: int) -> int | None:
        """The highest offset a commit may name for this partition: one past the last record
        handled, or the start of the hole it is read again from (None: not known since the
        partition was assigned)."""
        return self._next.get((topic, partition))
