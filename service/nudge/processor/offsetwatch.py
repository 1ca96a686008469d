"""Watch that the handler sees every record of a stream partition, in offset order (pure).

A worker handed a partition's later records without earlier ones decides on a partial history
(a cart without the login that carried the consent), and the replay that later brings the earlier
ones takes the later ones for duplicates: a journey step is lost. Chaos runs showed it after
processor kills (docs/processor.md, Known limits). This watch reports such a hole where it
reaches the handler, whatever dropped the records upstream, and bounds what may be committed:
never past the records handed to the handler (`commit_limit`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nudge.processor.ports import Record


@dataclass(frozen=True, slots=True)
class Hole:
    """Records `expected` up to `got` (excluded) of a partition never reached the handler."""

    topic: str
    partition: int
    expected: int
    got: int


class OffsetWatch:
    """Per stream partition, the offset of the record the handler should see next.

    A newly assigned partition is expected at its committed offset, where Faust seeks it; then
    one past each record handed over. A record below that is a replay (fine); one
    above is a hole, unless every missing offset is one the consumer knows the log does not hold
    (`absent`: transaction markers, compaction).
    """

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}

    def forget(self, keep: set[int]) -> None:
        """After a rebalance: partitions not in `keep` are expected at their committed offset
        again the next time they are assigned; kept ones go on from where they were."""
        for key in [key for key in self._next if key[1] not in keep]:
            del self._next[key]

    def holes(
        self,
        records: Sequence[Record],
        committed: Callable[[str, int], int | None],
        absent: Callable[[str, int, int, int], bool],
    ) -> list[Hole]:
        found = []
        next_offsets = self._next
        for record in records:
            key = (record.topic, record.partition)
            expected = next_offsets.get(key)
            if expected is None:
                expected = committed(record.topic, record.partition)
            offset = record.offset
            if (
                expected is not None
                and offset > expected
                and not absent(record.topic, record.partition, expected, offset)
            ):
                found.append(Hole(record.topic, record.partition, expected, offset))
            next_offsets[key] = offset + 1
        return found

    def commit_limit(self, topic: str, partition: int) -> int | None:
        """The highest offset a commit may name for this partition: one past the last record
        handed to the handler (None: not known since the partition was assigned)."""
        return self._next.get((topic, partition))
