"""A table recovery that reads nothing while records remain is sought back, then stalled; a slow
one is neither."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from faust.types import TP

from nudge.processor.recovery_watch import RecoveryWatch, reseek


def test_a_recovery_that_reads_nothing_for_the_limit_is_stalled() -> None:
    watch = RecoveryWatch(stall_after=120)
    assert not watch.sample(recovering=True, remaining=40, read=1_000, now=0)
    assert not watch.sample(recovering=True, remaining=40, read=1_000, now=119)
    assert watch.sample(recovering=True, remaining=40, read=1_000, now=120)
    assert watch.seconds_stalled(now=130) == 130


def test_any_record_read_restarts_the_clock() -> None:
    """A recovery of a million users is slow, not stalled: it reads something every sample."""
    watch = RecoveryWatch(stall_after=120)
    for n, now in enumerate(range(0, 600, 5)):
        assert not watch.sample(recovering=True, remaining=10_000, read=n, now=now)
    assert not watch.sample(recovering=True, remaining=10_000, read=n, now=595 + 119)


def test_a_stalled_recovery_that_moves_again_is_no_longer_stalled() -> None:
    watch = RecoveryWatch(stall_after=10)
    watch.sample(recovering=True, remaining=5, read=7, now=0)
    assert watch.sample(recovering=True, remaining=5, read=7, now=10)
    assert not watch.sample(recovering=True, remaining=2, read=10, now=15)
    assert watch.seconds_stalled(now=16) == 0


def test_nothing_left_to_read_or_no_recovery_is_never_stalled() -> None:
    """A finished recovery (nothing remains) or none at all: the clock starts afresh next time."""
    watch = RecoveryWatch(stall_after=10)
    watch.sample(recovering=True, remaining=5, read=7, now=0)
    assert not watch.sample(recovering=True, remaining=0, read=7, now=50)
    assert not watch.sample(recovering=False, remaining=5, read=7, now=60)
    assert not watch.sample(recovering=True, remaining=5, read=7, now=65)
    assert watch.sample(recovering=True, remaining=5, read=7, now=75)


def test_a_recovery_that_reads_nothing_is_sought_back_before_it_is_stalled() -> None:
    """`reseek_after` seconds without a record: seek the partitions back (once per period), long
    before the liveness limit."""
    watch = RecoveryWatch(stall_after=120, reseek_after=10)
    watch.sample(recovering=True, remaining=5, read=7, now=0)
    assert not watch.reseek_due(now=5)
    assert not watch.sample(recovering=True, remaining=5, read=7, now=10)
    assert watch.reseek_due(now=10)
    assert not watch.reseek_due(now=15)  # just sought: give the fetch time
    assert watch.reseek_due(now=20)
    assert not watch.sample(recovering=True, remaining=4, read=8, now=25)  # it reads again
    assert not watch.reseek_due(now=30)
    assert watch.reseek_due(now=35)


def test_no_seek_back_without_records_to_recover_or_when_turned_off() -> None:
    watch = RecoveryWatch(stall_after=120, reseek_after=10)
    assert not watch.reseek_due(now=100)  # no sample yet
    watch.sample(recovering=True, remaining=0, read=7, now=0)
    assert not watch.reseek_due(now=100)
    watch.sample(recovering=False, remaining=5, read=7, now=100)
    assert not watch.reseek_due(now=200)
    off = RecoveryWatch(stall_after=0, reseek_after=0)
    off.sample(recovering=True, remaining=5, read=7, now=0)
    assert not off.sample(recovering=True, remaining=5, read=7, now=1_000)  # 0: never stalled
    assert not off.reseek_due(now=1_000)


CHANGELOG_0, CHANGELOG_1, CHANGELOG_2 = (TP("app-users-changelog", p) for p in range(3))


class StuckRecovery:
    """What `reseek` reads of Faust's recovery and consumer: partition 0 has read up to offset 41
    of 50, partition 1 nothing yet (-1) of 3, partition 2 is done."""

    def __init__(self) -> None:
        self.in_recovery = True
        self.active_offsets = Counter({CHANGELOG_0: 41, CHANGELOG_1: -1, CHANGELOG_2: 9})
        self.highwaters = {CHANGELOG_0: 50, CHANGELOG_1: 3, CHANGELOG_2: 9}
        self.flow_active = True
        self.assigned = {CHANGELOG_0, CHANGELOG_1, CHANGELOG_2}
        self.sought: list[dict[TP, int]] = []
        self.app = SimpleNamespace(tables=SimpleNamespace(recovery=self), consumer=self)

    def active_remaining(self) -> Counter[TP]:
        return Counter({tp: hw - self.active_offsets[tp] for tp, hw in self.highwaters.items()})

    def assignment(self) -> set[TP]:
        return self.assigned

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.sought.append(dict(partitions))


async def test_the_partitions_with_records_left_are_sought_back_to_the_last_offset_read() -> None:
    """As Faust's recovery seeks them when it starts: the last offset read (it skips it when read
    again), 0 when none was; a partition already recovered stays where it is."""
    stuck = StuckRecovery()
    assert await reseek(stuck.app) == {CHANGELOG_0: 41, CHANGELOG_1: 0}
    assert stuck.sought == [{CHANGELOG_0: 41, CHANGELOG_1: 0}]


async def test_no_seek_back_while_the_flow_is_stopped_or_after_the_recovery() -> None:
    """A stopped flow is a rebalance (its recovery seeks the partitions itself); a partition
    revoked meanwhile is not sought."""
    stuck = StuckRecovery()
    stuck.flow_active = False
    assert await reseek(stuck.app) == {}
    stuck.flow_active, stuck.in_recovery = True, False
    assert await reseek(stuck.app) == {}
    stuck.in_recovery, stuck.assigned = True, {CHANGELOG_1}
    assert await reseek(stuck.app) == {CHANGELOG_1: 0}
    assert stuck.sought == [{CHANGELOG_1: 0}]
