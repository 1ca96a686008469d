"""Notices a table recovery that has stopped making progress, so that the worker gets restarted.

Faust's recovery can wait forever for changelog records its consumer will never hand it (the
"No event received for active tp … since recovery start" hang, known in faust-streaming; seen
here once in 72 runs of the two-worker test under CPU load, docs/processor.md, Known limits).
Such a worker answers /livez and never becomes ready, and its partitions send nothing until
someone restarts it; a restarted worker recovers from its local RocksDB and the changelog
as usual. So when records remain to be recovered and none has been read for `stall_after`
seconds, the worker reports itself not alive (/livez 503), and an orchestrator's liveness probe
restarts it. A slow recovery is not a stalled one: any record read resets the clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RecoveryWatch:
    """Samples of a recovery's progress → whether it has stalled (module docstring)."""

    stall_after: float  # seconds without a changelog record read while records remain
    _read: int | None = None  # changelog offsets read so far (a sum), at the last progress
    _since: float = 0.0  # when the last progress was seen
    stalled: bool = False

    def sample(self, *, recovering: bool, remaining: int, read: int, now: float) -> bool:
        """Record one sample and return whether the recovery is stalled.

        `recovering`: a recovery is running; `remaining`: changelog records it still needs;
        `read`: a number that grows with every record it reads (the sum of its offsets).
        """
        if not recovering or remaining <= 0:
            self._read, self.stalled = None, False
        elif read != self._read:
            self._read, self._since, self.stalled = read, now, False
        else:
            self.stalled = now - self._since >= self.stall_after
        return self.stalled

    def seconds_stalled(self, now: float) -> float:
        return now - self._since if self.stalled else 0.0
