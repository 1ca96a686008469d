"""Notices a table recovery that has stopped making progress: first seeks the recovering
changelog partitions back to what was read, then, if that does not help, gets the worker restarted.

Faust's recovery can wait forever for changelog records its consumer will never hand it (the
"No event received for active tp … since recovery start" hang, known in faust-streaming; seen
here once in 72 runs of the two-worker test under CPU load, docs/processor.md, Known limits).
The records are lost to the recovery, not to Kafka: a fetch still in flight from before the
rebalance can take them on the consumer thread after the recovery has sought its partitions, and
Faust's `getmany` then drops them (the flow is still stopped, or the partition is not yet among
the active ones) while the partition's position has moved past them. Changelog partitions have
no committed offsets, so nothing seeks them back, and the recovery waits for them forever.

So when records remain to be recovered and none has been read for `reseek_after` seconds, the
worker seeks those partitions back to the last offset the recovery read, as the recovery itself
does when it starts (`reseek`): the records are fetched again, and the recovery reads at most the
last record twice (it skips offsets it has already applied). If still none has been read after
`stall_after` seconds, the worker reports itself not alive (/livez 503), and an orchestrator's
liveness probe restarts it; a restarted worker recovers from its local RocksDB and the changelog
as usual. A slow recovery is not a stalled one: any record read resets both clocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class RecoveryWatch:
    """Samples of a recovery's progress → whether it has stalled (module docstring)."""

    stall_after: float  # seconds without a changelog record read while records remain; 0: never
    reseek_after: float = 0.0  # seconds without one before the partitions are sought; 0: never
    _read: int | None = None  # changelog offsets read so far (a sum), at the last progress
    _since: float = 0.0  # when the last progress was seen
    _sought: float | None = None  # when the partitions were last sought since that progress
    stalled: bool = False

    def sample(self, *, recovering: bool, remaining: int, read: int, now: float) -> bool:
        """Record one sample and return whether the recovery is stalled.

        `recovering`: a recovery is running; `remaining`: changelog records it still needs;
        `read`: a number that grows with every record it reads (the sum of its offsets).
        """
        if not recovering or remaining <= 0:
            self._read, self._sought, self.stalled = None, None, False
        elif read != self._read:
            self._read, self._since, self._sought, self.stalled = read, now, None, False
        else:
            self.stalled = self.stall_after > 0 and now - self._since >= self.stall_after
        return self.stalled

    def reseek_due(self, now: float) -> bool:
        """Whether to seek the recovering partitions back now: the last sample saw records remain,
        and nothing has been read for `reseek_after` seconds since the last progress or the last
        seek. Counts as a seek (the next one is due `reseek_after` seconds later)."""
        if self.reseek_after <= 0 or self._read is None:
            return False
        last = self._since if self._sought is None else self._sought
        if now - last < self.reseek_after:
            return False
        self._sought = now
        return True

    def seconds_stalled(self, now: float) -> float:
        return now - self._since if self.stalled else 0.0


async def reseek(app: Any) -> dict[Any, int]:
    """Seek the active changelog partitions whose recovery still has records to read back to the
    last offset it read (module docstring); what Faust's recovery seeks them to when it starts
    (its `_seek_offsets`: the last offset read, 0 when none). Returns the offsets sought: none
    when no recovery is reading (before its own seek the flow is stopped; a rebalance stops it
    too, and the next recovery seeks again) or the partitions are no longer assigned."""
    recovery = app.tables.recovery
    consumer = app.consumer
    if not recovery.in_recovery or not consumer.flow_active:
        return {}
    assigned = consumer.assignment()
    offsets = recovery.active_offsets
    wanted = {
        tp: max(offsets[tp], 0)
        for tp, left in recovery.active_remaining().items()
        if left > 0 and tp in assigned
    }
    if wanted:
        # Enqueued on the consumer thread before anything else can run here: a rebalance that
        # starts later seeks after it.
        await consumer.seek_wait(wanted)
    return wanted
