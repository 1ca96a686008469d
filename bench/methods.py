"""How the benchmarks turn samples into figures: one definition of each, shared and tested
(tests/unit/test_bench_methods.py), so that a p99 or a steady rate means the same everywhere.

- `percentile`: nearest rank, the value at rank ⌈q·n⌉ (1-based) of the sorted values; a p99 of
  100 values is the 99th, never the maximum. `median` is the middle value (the mean of the two
  middle ones for an even count). With `total`, the values that never came (a mail that did not
  arrive, a reminder never sent) count as infinitely late: a rank among them has no value (None).
- `drain`: the rates and CPU per item of a process draining a backlog, from (time, count, CPU)
  samples taken at one fixed interval: the first sample showing progress and the first showing
  the backlog done are each late by up to one interval, so with the same interval at both ends
  the lateness cancels out of `items / (done - first)`. CPU is divided by the items actually
  counted between the two samples it was read at.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

Sample = tuple[float, int, tuple[float, ...]]  # (monotonic time, items done so far, CPU seconds)


def _padded(values: Sequence[float], total: int | None) -> list[float]:
    ordered = sorted(values)
    if total is not None and total > len(ordered):
        ordered += [math.inf] * (total - len(ordered))
    return ordered


def percentile(values: Sequence[float], q: float, *, total: int | None = None) -> float | None:
    """The nearest-rank `q` quantile (0 < q <= 1); None for no values or a rank among the
    `total - len(values)` that never came."""
    ordered = _padded(values, total)
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered) - 1e-9))  # 0.99 * 50,000 is 49,500, not 49,501
    value = ordered[rank - 1]
    return None if math.isinf(value) else value


def median(values: Sequence[float], *, total: int | None = None) -> float | None:
    ordered = _padded(values, total)
    if not ordered:
        return None
    value = statistics.median(ordered)
    return None if math.isinf(value) else value


@dataclass(frozen=True, slots=True)
class Drain:
    """A drain of `items` seen through samples: when it showed (first), passed a tenth (tenth)
    and ended (done), and the CPU per item of each sampled process over first→done and over
    tenth→done (the steady part)."""

    items: int
    first: float
    tenth: float
    done: float
    cpu_per_item: tuple[float, ...]
    cpu_per_item_steady: tuple[float, ...]
    cpu_share: tuple[float, ...]  # CPU-seconds per second from first to done: cores used

    @property
    def rate(self) -> float:
        """Items per second from the first sample showing progress to the one showing all."""
        return self.items / (self.done - self.first)

    @property
    def steady_rate(self) -> float:
        """The nine tenths after the first tenth, per second."""
        return (self.items - self.items // 10) / (self.done - self.tenth)


def drain(samples: Sequence[Sample], *, baseline: int, items: int) -> Drain:
    """The drain of `items` past `baseline` in `samples` (taken at one fixed interval; the last
    shows the drain done). CPU is divided by the items counted between the two samples it was
    read at, not by the nominal share: a sample lands past the tenth by up to one interval."""
    first = next(s for s in samples if s[1] > baseline)
    tenth = next(s for s in samples if s[1] >= baseline + items // 10)
    done = next(s for s in samples if s[1] >= baseline + items)
    if done[0] <= tenth[0]:
        raise ValueError("the drain ended within one sampling interval: too few items to time")

    def per_item(start: Sample) -> tuple[float, ...]:
        counted = max(1, done[1] - start[1])
        return tuple((end - begin) / counted for begin, end in zip(start[2], done[2], strict=True))

    wall = done[0] - first[0]
    return Drain(
        items=items,
        first=first[0],
        tenth=tenth[0],
        done=done[0],
        cpu_per_item=per_item(first),
        cpu_per_item_steady=per_item(tenth),
        cpu_share=tuple((end - begin) / wall for begin, end in zip(first[2], done[2], strict=True)),
    )
