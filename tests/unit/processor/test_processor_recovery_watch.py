"""A table recovery that reads nothing while records remain is stalled; a slow one is not."""

from __future__ import annotations

from nudge.processor.recovery_watch import RecoveryWatch


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
