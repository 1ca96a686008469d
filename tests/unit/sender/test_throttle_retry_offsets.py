"""Token buckets, the retry schedule and the offset tracker: small pure pieces, as tables."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from nudge.sender.offsets import OffsetTracker
from nudge.sender.retry import (
    JITTER,
    RETRY_TIERS,
    plan_retry,
    read_retry_headers,
    retry_headers,
    tier_delay,
    tier_for,
)
from nudge.sender.throttle import DomainThrottle, TokenBucket
from nudge.topics import Topics


def test_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    """A full bucket of 2 at 2/s: two at once, then one every half second, in FIFO order."""
    bucket = TokenBucket.full(2.0, now=0.0)
    waits = [bucket.take(0.0) for _ in range(4)]
    assert waits == [0.0, 0.0, 0.5, 1.0]


def test_bucket_refills_with_time_but_never_beyond_burst() -> None:
    """Idle time refills tokens up to the burst size, not more."""
    bucket = TokenBucket.full(1.0, burst=3.0, now=0.0)
    for _ in range(3):
        bucket.take(0.0)
    assert bucket.take(100.0) == 0.0
    assert bucket.tokens == pytest.approx(2.0)


async def test_domain_throttle_matches_subdomains_and_leaves_others_alone() -> None:
    """`docomo.ne.jp` throttles `x@docomo.ne.jp` and subdomains; gmail.com is not throttled."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    waited = {"domain": "docomo.ne.jp", "kind": "rate"}
    before = REGISTRY.get_sample_value("nudge_sender_throttle_wait_seconds_total", waited) or 0
    throttle = DomainThrottle([("docomo.ne.jp", 1.0)], clock=lambda: 0.0, sleep=sleep)
    assert await throttle.acquire("a@docomo.ne.jp") == 0.0
    assert await throttle.acquire("b@mail.docomo.ne.jp") == 1.0
    assert await throttle.acquire("c@gmail.com") == 0.0
    assert await throttle.acquire("D@DOCOMO.NE.JP") == 2.0
    assert slept == [1.0, 2.0]
    after = REGISTRY.get_sample_value("nudge_sender_throttle_wait_seconds_total", waited)
    assert after == before + 3.0  # counted under the configured domain, subdomains included


async def test_a_domain_session_cap_lets_that_many_transactions_in_at_once() -> None:
    """A cap of 2 for docomo.ne.jp (and its subdomains): the third transaction waits until one
    ends, and its wait is counted; another domain has no cap and never waits."""
    waited = {"domain": "docomo.ne.jp", "kind": "sessions"}
    before = REGISTRY.get_sample_value("nudge_sender_throttle_wait_seconds_total", waited) or 0
    throttle = DomainThrottle([], sessions=[("docomo.ne.jp", 2)])
    inside: list[str] = []
    most = 0
    release = asyncio.Event()

    async def transaction(to: str) -> None:
        nonlocal most
        async with throttle.session(to):
            inside.append(to)
            most = max(most, sum(a.endswith("docomo.ne.jp") for a in inside))
            await release.wait()
            inside.remove(to)

    tasks = [
        asyncio.create_task(transaction(to))
        for to in ("a@docomo.ne.jp", "b@mail.docomo.ne.jp", "c@docomo.ne.jp", "d@gmail.com")
    ]
    await asyncio.sleep(0.01)
    assert sorted(inside) == ["a@docomo.ne.jp", "b@mail.docomo.ne.jp", "d@gmail.com"]
    release.set()
    await asyncio.gather(*tasks)
    assert most == 2
    assert inside == []
    after = REGISTRY.get_sample_value("nudge_sender_throttle_wait_seconds_total", waited) or 0
    assert after > before


@pytest.mark.parametrize(
    ("failed_attempt", "tier"),
    [(0, 1), (1, 1), (2, 2), (5, 5), (6, RETRY_TIERS), (99, RETRY_TIERS)],
)
def test_tier_for_attempt(failed_attempt: int, tier: int) -> None:
    """Each failed attempt moves one tier up; past the last tier it stays there."""
    assert tier_for(failed_attempt) == tier


def test_backoff_is_exponential_per_tier() -> None:
    """Tier delays grow ×3 from the configured base."""
    assert [tier_delay(t, 30.0) for t in range(1, 6)] == [30.0, 90.0, 270.0, 810.0, 2430.0]


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.999])
def test_plan_retry_applies_bounded_jitter(rand: float) -> None:
    """The due time is the tier delay ±20 %, the topic names the tier, the attempt counts up."""
    plan = plan_retry(
        topics=Topics("p."), failed_attempt=2, now=1000.0, base_seconds=10.0, rand=rand
    )
    assert plan.topic == "p.internal.send-retry-2"
    assert plan.attempt == 3
    assert 1000 + 30 * (1 - JITTER) <= plan.due_at <= 1000 + 30 * (1 + JITTER)


def test_retry_headers_round_trip_and_default_to_a_fresh_command() -> None:
    """Headers carry attempt and due time; a record without them is attempt 1, due now."""
    plan = plan_retry(topics=Topics(), failed_attempt=1, now=50.0, base_seconds=1.0, rand=0.5)
    attempt, due = read_retry_headers(retry_headers(plan, "451 busy"))
    assert (attempt, due) == (2, pytest.approx(51.0, abs=0.001))
    assert read_retry_headers([]) == (1, 0.0)
    assert read_retry_headers([("nudge-attempt", b"x")]) == (1, 0.0)


def test_offsets_commit_only_up_to_the_lowest_unfinished() -> None:
    """Out-of-order completion never commits past a record still in flight."""
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.started("p0", offset)
    tracker.finished("p0", 11)
    tracker.finished("p0", 12)
    assert tracker.committable() == {"p0": 10}
    tracker.mark_committed({"p0": 10})
    assert tracker.committable() == {}
    tracker.finished("p0", 10)
    assert tracker.committable() == {"p0": 13}
    tracker.mark_committed({"p0": 13})
    tracker.forget(["p0"])
    assert tracker.total_in_flight() == 0
